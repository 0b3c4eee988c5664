"""RPN head layout and proposal selection, box post-processing, mask and keypoint decoding."""

import math

import pytest
import torch
import torch.nn.functional as F

from maskrcnn.modeling.box_head import BoxHead, BoxPredictor, postprocess_boxes
from maskrcnn.modeling.keypoint_head import KeypointHead, heatmaps_to_keypoints
from maskrcnn.modeling.mask_head import MaskHead, head_mask_probs, mask_probs_for_labels
from maskrcnn.modeling.rpn import RPNHead, select_proposals
from maskrcnn.ops import BoxCoder


def test_rpn_head_layout_is_location_major_then_anchor():
    head = RPNHead(in_channels=4, num_anchors=3)
    x = torch.randn(2, 4, 5, 6)
    obj, deltas = head([x])
    assert obj.shape == (2, 5 * 6 * 3) and deltas.shape == (2, 5 * 6 * 3, 4)
    raw_o = head.objectness(head.convs[0](x))  # (N, A, H, W)
    raw_d = head.deltas(head.convs[0](x))  # (N, 4A, H, W)
    n, y, xx, a = 1, 3, 4, 2
    idx = (y * 6 + xx) * 3 + a
    torch.testing.assert_close(obj[n, idx], raw_o[n, a, y, xx])
    torch.testing.assert_close(deltas[n, idx], raw_d[n, 4 * a:4 * a + 4, y, xx])


def test_select_proposals_topk_per_level_nms_per_level_clip():
    coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
    # level 0: three anchors, two identical; level 1: one anchor identical to level 0's
    anchors = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10],
                            [-5, -5, 50, 50.0]])
    logits = torch.tensor([[3.0, 2.0, -1.0, 1.0, 0.5]])
    deltas = torch.zeros(1, 5, 4)
    boxes, scores = select_proposals(
        anchors, logits, deltas, [3, 2], [(40, 40)], box_coder=coder, pre_nms_topk=2, post_nms_topk=10,
        nms_thresh=0.7, min_size=1e-3, score_thresh=0.0,
    )
    # level 0 keeps its top 2 (3.0, 2.0), NMS drops the duplicate; level 1 keeps both of its anchors
    # (the duplicate across levels survives: NMS is per level); the big box is clipped to the image
    expected = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 40, 40.0]])
    torch.testing.assert_close(boxes[0], expected)
    torch.testing.assert_close(scores[0], torch.sigmoid(torch.tensor([3.0, 1.0, 0.5])))


def test_postprocess_boxes_drops_background_thresholds_and_nms_per_class():
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    proposals = [torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60.0]])]
    # K = 3; RoI 0 and 1 overlap (IoU 0.82): class 1 keeps only RoI 0, class 2 only RoI 1; RoI 2 is
    # background (0.97) and its object scores are under the threshold
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.1, 0.5, 0.4], [0.97, 0.02, 0.01]])
    logits = probs.log()
    dets = postprocess_boxes(logits, torch.zeros(3, 12), proposals, [(100, 100)], box_coder=coder,
                             score_thresh=0.05, nms_thresh=0.5, detections_per_image=10)[0]
    assert dets["labels"].tolist() == [1, 2]
    torch.testing.assert_close(dets["scores"], torch.tensor([0.6, 0.4]))
    torch.testing.assert_close(dets["boxes"][1], proposals[0][1])
    assert dets["labels"].dtype == torch.int64
    capped = postprocess_boxes(logits, torch.zeros(3, 12), proposals, [(100, 100)], box_coder=coder,
                               score_thresh=0.05, nms_thresh=0.5, detections_per_image=1)[0]
    assert capped["labels"].tolist() == [1]


def test_head_shapes_and_mask_channel_pick():
    assert BoxHead(in_channels=8, pool_size=7, num_convs=4, conv_dim=8, num_fcs=1, fc_dim=16,
                   norm="bn").eval()(torch.randn(3, 8, 7, 7)).shape == (3, 16)
    cls, box = BoxPredictor(in_features=16, num_classes=5)(torch.randn(3, 16))
    assert cls.shape == (3, 5) and box.shape == (3, 20)
    logits = MaskHead(in_channels=8, num_classes=5, conv_dim=8)(torch.randn(3, 8, 14, 14))
    assert logits.shape == (3, 5, 28, 28)
    probs = mask_probs_for_labels(logits, torch.tensor([4, 0, 2]))
    assert probs.shape == (3, 1, 28, 28)
    torch.testing.assert_close(probs[2, 0], logits[2, 2].sigmoid())
    heat = KeypointHead(in_channels=8, num_keypoints=17, num_convs=2, conv_dim=8)(torch.randn(2, 8, 14, 14))
    assert heat.shape == (2, 17, 56, 56)


@pytest.mark.parametrize("class_agnostic", [False, True])
@pytest.mark.parametrize("mode", ["sigmoid", "softmax"])
def test_head_mask_probs_reads_only_each_detections_channel_as_the_full_logits_do(class_agnostic, mode):
    torch.manual_seed(0)
    head = MaskHead(in_channels=8, num_classes=6, conv_dim=16, class_agnostic=class_agnostic).eval()
    torch.nn.init.normal_(head.predictor.bias)  # the gathered bias must be each RoI's own
    x, labels = torch.randn(5, 8, 14, 14), torch.tensor([5, 0, 3, 3, 1])
    with torch.no_grad():
        full = mask_probs_for_labels(head(x), head.channels_for(labels), mode=mode)  # all K channels
        picked = head_mask_probs(head, x, labels, mode=mode)
        empty = head_mask_probs(head, x[:0], labels[:0], mode=mode)
    assert picked.shape == (5, 1, 28, 28) and empty.shape == (0, 1, 28, 28)
    torch.testing.assert_close(picked, full, rtol=1e-5, atol=1e-6)


def test_head_mask_probs_skips_the_full_predictor_only_where_nothing_else_would_run(monkeypatch):
    torch.manual_seed(0)
    head = MaskHead(in_channels=8, num_classes=6, conv_dim=16).eval()
    x, labels = torch.randn(3, 8, 14, 14), torch.tensor([5, 0, 3])
    with torch.no_grad():
        want = mask_probs_for_labels(head(x), labels)

        def refuse(*args):
            raise AssertionError("the full predictor ran")

        with monkeypatch.context() as m:  # sigmoid masks of a plain head: only the read channels
            m.setattr(head.predictor, "forward", refuse)
            torch.testing.assert_close(head_mask_probs(head, x, labels), want, rtol=1e-5, atol=1e-6)
        seen = []  # a caller's hook on the head sees its whole output
        handle = head.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
        torch.testing.assert_close(head_mask_probs(head, x, labels), want)
        handle.remove()
        assert seen == [(3, 6, 28, 28)]

        class Halved(MaskHead):  # a subclass's own forward is what it computes
            def forward(self, x):
                return super().forward(x) / 2

        halved = Halved(in_channels=8, num_classes=6, conv_dim=16).eval()
        halved.load_state_dict(head.state_dict())
        torch.testing.assert_close(head_mask_probs(halved, x, labels),
                                   mask_probs_for_labels(head(x) / 2, labels))


def _keypoints_loop(maps, rois):
    """Reference from the definition, one RoI at a time with F.interpolate(bicubic)."""
    out, scores = [], []
    for m, r in zip(maps, rois):
        w = max(float(r[2] - r[0]), 1.0)
        h = max(float(r[3] - r[1]), 1.0)
        wc, hc = math.ceil(w), math.ceil(h)
        up = F.interpolate(m[:, None], size=(hc, wc), mode="bicubic", align_corners=False)[:, 0]
        pos = up.reshape(len(m), -1).argmax(1)
        xi, yi = pos % wc, pos // wc
        x = (xi.float() + 0.5) * (w / wc) + r[0]
        y = (yi.float() + 0.5) * (h / hc) + r[1]
        out.append(torch.stack([x, y, torch.ones_like(x)], 1))
        scores.append(up[torch.arange(len(m)), yi, xi])
    return torch.stack(out), torch.stack(scores)


def test_heatmaps_to_keypoints_matches_per_roi_bicubic():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(6, 4, 56, 56, generator=g)
    rois = torch.tensor([[10, 20, 73.4, 51.2], [0, 0, 0.5, 0.3], [5, 5, 200, 120], [3.3, 4.4, 40, 90],
                         [0, 0, 56, 56], [7, 1, 8.5, 300]])
    kps, scores = heatmaps_to_keypoints(maps, rois, max_elements=4 * 200 * 300)  # forces chunking
    ref_kps, ref_scores = _keypoints_loop(maps, rois)
    torch.testing.assert_close(kps, ref_kps, rtol=0, atol=1e-4)
    torch.testing.assert_close(scores, ref_scores, rtol=1e-4, atol=1e-4)
    empty = heatmaps_to_keypoints(maps[:0], rois[:0])
    assert empty[0].shape == (0, 4, 3) and empty[1].shape == (0, 4)


def test_softmax_keypoint_scores_are_detectron2s():
    """score="softmax": the peak's share of the spatial softmax over the 56 x 56 heatmap, normalised by
    the heatmap (not the resized map), exp(peak - peak) / sum(exp(heatmap - peak)), written per RoI from
    that definition; positions are those of the default."""
    g = torch.Generator().manual_seed(1)
    maps = torch.randn(4, 3, 56, 56, generator=g) * 3
    rois = torch.tensor([[10, 20, 73.4, 51.2], [0, 0, 0.5, 0.3], [5, 5, 200, 120], [3.3, 4.4, 40, 90]])
    kps, scores = heatmaps_to_keypoints(maps, rois, score="softmax")
    ref_kps, peaks = _keypoints_loop(maps, rois)
    ref = torch.stack([
        torch.stack([torch.exp(m[k] - peaks[i, k]).sum().reciprocal() for k in range(3)])
        for i, m in enumerate(maps)])
    torch.testing.assert_close(kps, ref_kps, rtol=0, atol=1e-4)
    torch.testing.assert_close(scores, ref, rtol=1e-4, atol=1e-6)
    assert bool(((scores > 0) & (scores <= 1)).all())
    with pytest.raises(ValueError, match="keypoint score must be one of"):
        heatmaps_to_keypoints(maps, rois, score="probability")
