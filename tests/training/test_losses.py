"""RPN, Fast R-CNN, mask and keypoint losses on tiny hand-made inputs."""

import math

import pytest
import torch
import torch.nn.functional as F

from maskrcnn.modeling.matcher import BalancedSampler, Matcher
from maskrcnn.modeling.roi_losses import (
    fast_rcnn_losses,
    keypoint_losses,
    keypoint_targets,
    mask_losses,
    project_masks,
    sample_proposals,
    with_visible_keypoints,
)
from maskrcnn.modeling.rpn_loss import BoxRegressionLoss, rpn_losses
from maskrcnn.ops import BoxCoder

# The RPN's and the RoI heads' matching and sampling as build_model makes them from the default config.
RPN_PARTS = dict(
    matcher=Matcher(high_threshold=0.7, low_threshold=0.3, allow_low_quality_matches=True),
    sampler=BalancedSampler(batch_size_per_image=256, positive_fraction=0.5),
)
SMOOTH_L1 = BoxRegressionLoss(kind="smooth_l1", beta=1.0 / 9.0)
ROI_MATCHER = Matcher(high_threshold=0.5, low_threshold=0.5, allow_low_quality_matches=False)


def _softplus(x):
    return math.log1p(math.exp(x))


def _smooth_l1(d, beta=1 / 9):
    d = abs(d)
    return 0.5 * d * d / beta if d < beta else d - 0.5 * beta


def _rpn_inputs():
    anchors = torch.tensor(
        [
            [0.0, 0, 10, 10],  # IoU 1 with the gt: positive
            [0.0, 0, 10, 20],  # IoU 0.5: ignored
            [20.0, 20, 30, 30],  # IoU 0: negative
            [0.0, 0, 5, 5],  # IoU 0.25: negative
        ]
    )
    objectness = torch.tensor([[2.0, 0.5, -1.0, 0.0]], requires_grad=True)
    deltas = torch.zeros(1, 4, 4)
    deltas[0, 0] = torch.tensor([0.1, 0.0, 0.0, -0.2])
    deltas[0, 1] = 5.0  # an ignored anchor's deltas never count
    deltas.requires_grad_(True)
    return anchors, objectness, deltas


def test_rpn_losses_hand_computed():
    anchors, objectness, deltas = _rpn_inputs()
    gt = [torch.tensor([[0.0, 0, 10, 10]])]
    out = rpn_losses([anchors], objectness, deltas, gt, box_coder=BoxCoder(weights=(1.0, 1.0, 1.0, 1.0)),
                     box_loss=SMOOTH_L1, **RPN_PARTS)
    # 3 sampled anchors (1 positive, 2 negatives; the ignored one not sampled)
    want_cls = (_softplus(-2.0) + _softplus(-1.0) + _softplus(0.0)) / 3
    want_box = (_smooth_l1(0.1) + _smooth_l1(0.2)) / 3
    assert out["loss_rpn_cls"].item() == pytest.approx(want_cls, rel=1e-5)
    assert out["loss_rpn_box"].item() == pytest.approx(want_box, rel=1e-5)
    (out["loss_rpn_cls"] + out["loss_rpn_box"]).backward()
    assert objectness.grad[0, 1] == 0 and deltas.grad[0, 1:].abs().sum() == 0


def test_rpn_losses_l1_crowd_and_empty_gt():
    anchors, objectness, deltas = _rpn_inputs()
    coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
    out = rpn_losses(
        [anchors], objectness, deltas, [torch.tensor([[0.0, 0, 10, 10]])], box_coder=coder,
        box_loss=BoxRegressionLoss(kind="l1"), **RPN_PARTS,
    )
    assert out["loss_rpn_box"].item() == pytest.approx(0.3 / 3, rel=1e-5)
    # Empty gt: all 4 anchors negative, no box loss.
    out = rpn_losses([anchors], objectness, deltas, [torch.zeros(0, 4)], box_coder=coder, box_loss=SMOOTH_L1,
                     **RPN_PARTS)
    want = (_softplus(2.0) + _softplus(0.5) + _softplus(-1.0) + _softplus(0.0)) / 4
    assert out["loss_rpn_cls"].item() == pytest.approx(want, rel=1e-5)
    assert out["loss_rpn_box"].item() == 0
    # The same box marked crowd: its anchors (0 and 1, IoU >= 0.3) are ignored, not negatives.
    out = rpn_losses(
        [anchors],
        objectness,
        deltas,
        [torch.tensor([[0.0, 0, 10, 10]])],
        gt_ignore=[torch.tensor([True])],
        box_coder=coder,
        box_loss=SMOOTH_L1,
        **RPN_PARTS,
    )
    want = (_softplus(-1.0) + _softplus(0.0)) / 2
    assert out["loss_rpn_cls"].item() == pytest.approx(want, rel=1e-5)


def test_fast_rcnn_losses_hand_computed():
    logits = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]], requires_grad=True)
    labels = torch.tensor([1, 0, 2])
    box_reg = torch.zeros(3, 12)
    box_reg[0, 4:8] = torch.tensor([0.5, 0.0, 0.0, 0.0])  # class 1 of sample 0
    box_reg[0, 8:12] = 9.0  # other class of a positive: ignored
    box_reg[1] = 7.0  # a background sample: ignored
    box_reg[2, 8:12] = torch.tensor([0.0, 0.05, 0.0, 0.0])
    targets = torch.zeros(3, 4)
    out = fast_rcnn_losses(logits, box_reg, labels, targets, box_loss=SMOOTH_L1)
    log_softmax = torch.log_softmax(logits.detach(), 1)
    want_cls = -(log_softmax[0, 1] + log_softmax[1, 0] + log_softmax[2, 2]).item() / 3
    want_box = (_smooth_l1(0.5) + _smooth_l1(0.05)) / 3
    assert out["loss_cls"].item() == pytest.approx(want_cls, rel=1e-5)
    assert out["loss_box"].item() == pytest.approx(want_box, rel=1e-5)


def test_sample_proposals_appends_gt_and_labels():
    gt = [torch.tensor([[0.0, 0, 10, 10], [50.0, 50, 70, 70]]), torch.zeros(0, 4)]
    labels = [torch.tensor([3, 1]), torch.zeros(0, dtype=torch.int64)]
    props = [
        torch.tensor([[0.0, 0, 10, 11], [100.0, 100, 110, 110], [50.0, 50, 70, 72]]),
        torch.tensor([[0.0, 0, 10, 10], [5.0, 5, 8, 8]]),
    ]
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    out = sample_proposals(
        props, gt, labels, matcher=ROI_MATCHER,
        sampler=BalancedSampler(batch_size_per_image=512, positive_fraction=0.25), box_coder=coder,
    )
    a = out[0]
    assert a["proposals"].shape == (5, 4)  # 3 proposals + 2 gts, all sampled
    assert torch.equal(a["proposals"][3:], gt[0])
    assert a["labels"].tolist() == [3, 0, 1, 3, 1]
    assert a["matched_gt"].tolist() == [0, -1, 1, 0, 1]
    assert a["regression_targets"][1].abs().sum() == 0 and a["regression_targets"][3].abs().sum() == 0
    assert a["regression_targets"][0, 3].item() == pytest.approx(-5 * math.log(11 / 10), rel=1e-4)
    b = out[1]  # no gt: everything background
    assert b["labels"].tolist() == [0, 0] and b["matched_gt"].tolist() == [-1, -1]
    # positive_fraction caps positives: 4 positives available, at most 1 of a batch of 4
    out = sample_proposals(props[:1], gt[:1], labels[:1], matcher=ROI_MATCHER,
                           sampler=BalancedSampler(batch_size_per_image=4, positive_fraction=0.25))
    assert int((out[0]["labels"] > 0).sum()) == 1 and out[0]["labels"].numel() == 2


def test_project_masks_crop_and_resize():
    mask = torch.zeros(2, 20, 20, dtype=torch.uint8)
    mask[0, :, :10] = 1  # left half
    mask[1] = 1
    props = torch.tensor([[0.0, 0, 20, 20], [4.0, 4, 12, 12]])
    t = project_masks(mask, props, torch.tensor([0, 1]), size=4)
    assert t.shape == (2, 4, 4)
    # RoIAlign (aligned=False, 5 samples per 5-pixel bin at x = 0.5 .. 4.5 + bin start): the sample at
    # x = 9.5 sits between a 1-column and a 0-column.
    assert torch.allclose(t[0, 0], torch.tensor([1.0, 0.9, 0.0, 0.0]), atol=1e-6)
    assert torch.allclose(t[1], torch.ones(4, 4))


def test_aligned_mask_targets_paste_back_onto_their_mask():
    """A perfect 28x28 target of a small object, pasted back at 0.5: with the aligned conventions
    (aligned targets, grid_sample paste) it covers its mask almost exactly; torchvision's conventions
    (aligned=False targets, its paste) lose several percent of IoU to half-pixel shifts."""
    from maskrcnn.ops import paste_masks_in_image

    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    gt = (((yy - 31.3) ** 2 + (xx - 29.8) ** 2) < 14.5**2) | ((yy - 40).abs() < 3) & ((xx - 30).abs() < 22)
    ys, xs = torch.nonzero(gt, as_tuple=True)
    box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()[None]  # (1, 4)

    def round_trip_iou(aligned, paste):
        target = project_masks(gt[None].to(torch.uint8), box, torch.tensor([0]), size=28, aligned=aligned)
        pasted = paste_masks_in_image(target[:, None], box, (64, 64), method=paste, threshold=0.5)[0]
        return float((pasted & gt).sum() / (pasted | gt).sum())

    aligned_iou = round_trip_iou(True, "grid_sample")
    torchvision_iou = round_trip_iou(False, "torchvision")
    assert aligned_iou > 0.98, aligned_iou
    assert torchvision_iou < aligned_iou - 0.01, (torchvision_iou, aligned_iou)


def test_mask_loss_only_on_gt_class():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 5, 5, requires_grad=True)
    labels = torch.tensor([1, 3, 1])
    targets = (torch.rand(3, 5, 5) > 0.5).float()
    loss = mask_losses(logits, labels, targets)["loss_mask"]
    want = F.binary_cross_entropy_with_logits(logits[[0, 1, 2], [1, 3, 1]], targets)
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    other = logits.detach().clone()
    other[:, 0] += 10.0
    other[:, 2] -= 3.0
    other[1, 1] = 100.0
    assert mask_losses(other, labels, targets)["loss_mask"].item() == pytest.approx(loss.item(), rel=1e-6)
    loss.backward()
    assert logits.grad[:, 0].abs().sum() == 0 and logits.grad[0, 1].abs().sum() > 0


def test_mask_loss_softmax_mode():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.tensor([2, 1])
    targets = (torch.rand(2, 4, 4) > 0.5).float()
    loss = mask_losses(logits, labels, targets, mode="softmax")["loss_mask"]
    logp = torch.log_softmax(logits, 1)
    total = 0.0
    for i in range(2):
        for y in range(4):
            for x in range(4):
                c = int(labels[i]) if targets[i, y, x] > 0.5 else 0
                total -= logp[i, c, y, x].item()
    assert loss.item() == pytest.approx(total / 32, rel=1e-5)
    with pytest.raises(ValueError, match="mode"):
        mask_losses(logits, labels, targets, mode="focal")


def test_mask_loss_empty_is_zero_and_connected():
    logits = torch.randn(0, 4, 28, 28, requires_grad=True)
    loss = mask_losses(logits, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 28, 28))["loss_mask"]
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None


def test_keypoint_targets_and_loss():
    kps = torch.tensor([[[2.0, 3.0, 2.0], [10.0, 10.0, 1.0], [5.0, 5.0, 0.0], [20.0, 1.0, 2.0]]])  # (1, 4, 3)
    props = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    t, v = keypoint_targets(kps, props, torch.tensor([0]), size=5)
    # scale 5 / 10: (2, 3) -> cell (x 1, y 1) -> 6; (10, 10) on the right/bottom edge -> (4, 4) -> 24;
    # invisible -> not valid; x = 20 outside -> not valid
    assert v.tolist() == [[True, True, False, False]]
    assert t[0, :2].tolist() == [6, 24]
    logits = torch.zeros(1, 4, 5, 5, requires_grad=True)
    loss = keypoint_losses(logits, t, v)["loss_keypoint"]
    assert loss.item() == pytest.approx(math.log(25), rel=1e-6)
    none = keypoint_losses(logits, t, torch.zeros_like(v))["loss_keypoint"]
    assert none.item() == 0 and none.requires_grad


def test_only_rois_with_a_labelled_keypoint_inside_go_to_the_keypoint_head():
    kps = torch.tensor([
        [[2.0, 3.0, 2.0], [30.0, 30.0, 2.0]],  # gt 0: one keypoint in [0, 10]^2, one far away
        [[5.0, 5.0, 0.0], [6.0, 6.0, 0.0]],  # gt 1: nothing labelled (a person with no keypoint)
        [[10.0, 10.0, 1.0], [0.0, 0.0, 0.0]],  # gt 2: labelled but hidden, on the box's corner
    ])  # (3, 2, 3)
    props = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 25.0, 25.0], [0.0, 0.0, 10.0, 10.0],
                          [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    matched = torch.tensor([0, 0, 1, 2, -1])  # the last one is background
    assert with_visible_keypoints(kps, props, matched).tolist() == [True, False, False, True, False]
    assert with_visible_keypoints(kps[:0], props, matched).tolist() == [False] * 5
