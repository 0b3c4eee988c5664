"""RPN training through the head evaluated at the sampled anchors only (``RPNHead.outputs_at``) against
the dense reference (the dense head with autograd, then ``rpn_losses``): same losses, same gradients,
same sampled anchors and generator use; heads with a norm keep the dense path."""

import pytest
import torch

from maskrcnn.modeling.anchors import AnchorGenerator
from maskrcnn.modeling.matcher import BalancedSampler, Matcher, match_boxes
from maskrcnn.modeling.rpn import RPN, ProposalSettings, RPNHead, locate_anchors
from maskrcnn.modeling.rpn_loss import BoxRegressionLoss, sample_anchors
from maskrcnn.ops import BoxCoder, box_iou

PADDED = (48, 64)
GRIDS = [(12, 16), (6, 8), (3, 4)]  # strides 4, 8, 16


def _rpn(*, channels=8, num_convs=1, norm="none", dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    head = RPNHead(in_channels=channels, num_anchors=3, num_convs=num_convs, norm=norm)
    with torch.no_grad():  # weights large enough that ReLUs and biases matter
        for p in head.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    settings = ProposalSettings(pre_nms_topk=50, post_nms_topk=20)
    rpn = RPN(
        head=head, anchor_generator=AnchorGenerator(sizes=(8, 16, 32), strides=(4, 8, 16)),
        box_coder=BoxCoder(weights=(1.0, 1.0, 1.0, 1.0)), proposals_train=settings, proposals_test=settings,
        matcher=Matcher(high_threshold=0.6, low_threshold=0.3, allow_low_quality_matches=True),
        sampler=BalancedSampler(batch_size_per_image=40, positive_fraction=0.5),
        box_loss=BoxRegressionLoss(kind="smooth_l1", beta=1.0 / 9.0), loss_weight=0.5,
    )
    return rpn.to(dtype).train()


def _features(channels=8, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, channels, h, w, generator=g, dtype=dtype) for h, w in GRIDS]


def _targets(empty=False):
    # image 0: two objects and a crowd box; image 1: no objects at all (every anchor negative)
    boxes = torch.tensor([[2.0, 3.0, 20.0, 25.0], [30.0, 10.0, 60.0, 44.0], [0.0, 30.0, 16.0, 46.0]])
    first = {"boxes": boxes[:0] if empty else boxes, "iscrowd": torch.tensor([0, 0, 1][:0 if empty else 3])}
    return [first, {"boxes": torch.zeros(0, 4), "iscrowd": torch.zeros(0, dtype=torch.int64)}]


def _run(rpn, feats, targets, *, dense, seed=7):
    """Losses, gradients (head parameters, then each level's features), proposals, generator state."""
    feats = [f.clone().requires_grad_(True) for f in feats]
    if dense:  # the reference: the path RPN.forward takes for heads it cannot evaluate at locations
        rpn.head.evaluates_at_locations = lambda: False
    g = torch.Generator().manual_seed(seed)
    proposals, losses = rpn(feats, [PADDED, (40, 60)], PADDED, targets, generator=g)
    rpn.head.__dict__.pop("evaluates_at_locations", None)
    params = list(rpn.head.parameters())
    grads = torch.autograd.grad(sum(losses.values()), params + feats, allow_unused=False)
    return losses, grads, proposals, g.get_state()


@pytest.mark.parametrize("num_convs", [1, 2, 0])
@pytest.mark.parametrize("empty", [False, True])
def test_sampled_head_matches_dense_losses_and_gradients(num_convs, empty):
    rpn = _rpn(num_convs=num_convs)
    assert rpn.head.evaluates_at_locations()
    feats, targets = _features(), _targets(empty)
    ref = _run(rpn, feats, targets, dense=True)
    new = _run(rpn, feats, targets, dense=False)
    for key in ("loss_rpn_cls", "loss_rpn_box"):
        torch.testing.assert_close(new[0][key], ref[0][key], rtol=1e-10, atol=1e-12)
    if empty:
        assert ref[0]["loss_rpn_box"] == 0
    else:
        assert ref[0]["loss_rpn_box"] > 0
    for a, b in zip(new[1], ref[1]):  # every head parameter and every level's features
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert all(g.abs().sum() > 0 for g in ref[1][-3:])  # every level got some gradient
    for a, b in zip(new[2], ref[2]):  # proposals come from the dense head either way
        torch.testing.assert_close(a, b)
    assert torch.equal(new[3], ref[3])  # the generator consumed the same way


def test_same_seed_same_samples_and_crowd_ignored():
    rpn = _rpn()
    anchors, _ = rpn.anchor_generator(GRIDS, PADDED, dtype=torch.float64)
    targets = _targets()
    kwargs = dict(box_coder=rpn.box_coder, matcher=rpn.matcher, sampler=rpn.sampler,
                  gt_ignore=[t["iscrowd"].bool() for t in targets])
    gt = [t["boxes"].double() for t in targets]
    a = sample_anchors([anchors] * 2, gt, generator=torch.Generator().manual_seed(3), **kwargs)
    b = sample_anchors([anchors] * 2, gt, generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(a.image, b.image) and torch.equal(a.anchor, b.anchor)
    assert torch.equal(a.positive, b.positive) and torch.equal(a.reg_targets, b.reg_targets)
    # the sampler's own draws, image by image, on the same generator state
    g = torch.Generator().manual_seed(3)
    for i in range(2):
        sampled = a.anchor[a.image == i]
        assert torch.all(sampled[1:] > sampled[:-1])  # increasing within an image
        matched = match_boxes(gt[i], anchors, rpn.matcher, gt_ignore=kwargs["gt_ignore"][i])
        lab = torch.full_like(matched, -1)
        lab[matched >= 0] = 1
        lab[matched == Matcher.BELOW_LOW_THRESHOLD] = 0
        pos, neg = rpn.sampler(lab, generator=g)
        assert torch.equal(sampled, torch.nonzero(pos | neg).squeeze(1))
        assert torch.equal(a.positive[a.image == i], pos[sampled])
    # no anchor overlapping the crowd box enough is a negative (they are ignored)
    crowd_iou = box_iou(gt[0][2:], anchors[a.anchor[a.image == 0]])[0]
    assert torch.all(crowd_iou[~a.positive[a.image == 0]] < rpn.matcher.low_threshold)
    assert a.reg_targets.shape == (int(a.positive.sum()), 4) and int(a.positive[a.image == 1].sum()) == 0


def test_locate_anchors_follows_the_generator_order():
    gen = AnchorGenerator(sizes=(8, 16, 32), strides=(4, 8, 16))
    anchors, per_level = gen(GRIDS, PADDED)
    r = torch.arange(len(anchors))
    level, y, x, a = locate_anchors(r, GRIDS, 3)
    assert torch.bincount(level).tolist() == per_level
    stride = torch.tensor([4.0, 8.0, 16.0])[level]
    cells = torch.stack(gen.cells)[level, a]  # (R, 4)
    shift = torch.stack([x * stride, y * stride, x * stride, y * stride], dim=1)
    torch.testing.assert_close(anchors, cells + shift)


@pytest.mark.parametrize("num_convs", [1, 2])
def test_outputs_at_equals_dense_head_everywhere(num_convs):
    head = _rpn(num_convs=num_convs).head
    feats = _features()
    obj, deltas = head(feats)  # (N, R), (N, R, 4)
    r = torch.arange(obj.shape[1]).repeat(2)
    image = torch.arange(2).repeat_interleave(obj.shape[1])
    o, d = head.outputs_at(feats, image, *locate_anchors(r, GRIDS, 3))
    torch.testing.assert_close(o, obj.reshape(-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(d, deltas.reshape(-1, 4), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", ["gn", "bn", "frozen_bn"])
def test_heads_with_a_norm_train_densely(norm):
    rpn = _rpn(channels=32, norm=norm)
    assert not rpn.head.evaluates_at_locations()
    feats = _features(channels=32)
    ref = _run(rpn, feats, _targets(), dense=True)
    new = _run(rpn, feats, _targets(), dense=False)
    for key in ("loss_rpn_cls", "loss_rpn_box"):
        torch.testing.assert_close(new[0][key], ref[0][key], rtol=1e-10, atol=1e-12)
    for a, b in zip(new[1], ref[1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_swapped_in_modules_train_densely():
    rpn = _rpn()
    rpn.head.convs[0].conv = torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2).double()
    assert not rpn.head.evaluates_at_locations()


def test_bfloat16_autocast_and_no_grad():
    rpn = _rpn(dtype=torch.float32)
    feats = _features(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = _run(rpn, feats, _targets(), dense=True)
        new = _run(rpn, feats, _targets(), dense=False)
    for key in ("loss_rpn_cls", "loss_rpn_box"):
        torch.testing.assert_close(new[0][key].float(), ref[0][key].float(), rtol=2e-2, atol=1e-3)
    for a, b in zip(new[1], ref[1]):  # every parameter gets a gradient (DDP needs them all)
        assert a is not None and torch.isfinite(a).all()
        torch.testing.assert_close(a.float(), b.float(), rtol=0.1, atol=0.1 * float(b.abs().max()) + 1e-6)
    # without autograd (validation losses): the dense outputs are indexed, same values
    with torch.no_grad():
        g = torch.Generator().manual_seed(7)
        _, losses = rpn(feats, [PADDED, (40, 60)], PADDED, _targets(), generator=g)
    with torch.enable_grad():
        want = _run(rpn, feats, _targets(), dense=True)[0]
    for key in losses:
        torch.testing.assert_close(losses[key], want[key])


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_features_and_device(device):
    rpn = _rpn().to(device)
    feats = [f.to(device).contiguous(memory_format=torch.channels_last) for f in _features()]
    targets = [{k: v.to(device) for k, v in t.items()} for t in _targets()]
    ref = _run(rpn, feats, targets, dense=True)
    new = _run(rpn, feats, targets, dense=False)
    for key in ("loss_rpn_cls", "loss_rpn_box"):
        torch.testing.assert_close(new[0][key], ref[0][key], rtol=1e-10, atol=1e-12)
    for a, b in zip(new[1], ref[1]):
        assert a.device == b.device
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_head_gradients_come_back_in_the_weights_own_strides(layout):
    # A channels_last (3, C, 1, 1) weight (CPU training) got its gradient through the sampled head with
    # standard strides: DDP then warned "Grad strides do not match bucket view strides" on every run.
    rpn = _rpn(dtype=torch.float32)
    for p in rpn.head.parameters():
        if p.dim() == 4:
            p.data = p.data.clone(memory_format=layout)
    assert rpn.head.evaluates_at_locations()
    feats = [f.float() for f in _features()]
    _, losses = rpn(feats, [PADDED, (40, 60)], PADDED, _targets(), generator=torch.Generator().manual_seed(7))
    sum(losses.values()).backward()
    strides = {n: (p.stride(), p.grad.stride()) for n, p in rpn.head.named_parameters()}
    assert all(a == b for a, b in strides.values()), strides
    assert strides["deltas.weight"][0] == ((8, 1, 8, 8) if layout == torch.channels_last else (8, 1, 1, 1))
