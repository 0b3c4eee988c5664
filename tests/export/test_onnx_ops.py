"""The two ONNX operators of the exported graph, run by onnxruntime, against our eager ops.

NonMaxSuppression (per batch and class, score floor) against ``ops.nms``; RoiAlign (aligned or not,
fixed and adaptive sampling) against ``ops.roi_align`` (torchvision's semantics). Each graph is tiny,
so export and run take well under a second.
"""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from maskrcnn.ops import nms as eager_nms
from maskrcnn.ops.roi_align import roi_align as eager_roi_align

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from maskrcnn.export import onnx_ops  # noqa: E402


def _run(module, inputs: tuple, names: list, dynamic: dict, feed: tuple) -> list:
    onnx_ops.register_symbolics()
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buf, input_names=names, dynamic_axes=dynamic,
                          opset_version=onnx_ops.ONNX_OPSET, dynamo=False)
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    return session.run(None, {n: t.numpy() for n, t in zip(names, feed)})


def _boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 30 + 1
    return torch.cat((xy, xy + wh), dim=1)  # (n, 4), overlapping often


class _NMS(torch.nn.Module):
    def forward(self, boxes, scores):
        return onnx_ops.nms(boxes, scores, max_per_class=7, iou_threshold=0.5, score_threshold=-0.5)


def test_nms_operator_equals_our_nms_per_batch_and_class():
    boxes = torch.stack([_boxes(60, 1), _boxes(60, 2)])  # (B=2, N, 4)
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(2, 3, 60, generator=g)  # (B, C=3, N)
    scores[0, 1, :20] = -1.0  # below the floor: never kept
    trace_in = (torch.stack([_boxes(9, 4)] * 2), torch.rand(2, 3, 9, generator=g))
    (sel,) = _run(_NMS(), trace_in, ["boxes", "scores"],
                  {"boxes": {1: "n"}, "scores": {2: "n"}}, (boxes, scores))
    sel = torch.from_numpy(sel)
    for b in range(2):
        for c in range(3):
            s = scores[b, c]
            cand = torch.nonzero(s > -0.5).flatten()
            want = cand[eager_nms(boxes[b, cand], s[cand], 0.5)][:7]
            got = sel[(sel[:, 0] == b) & (sel[:, 1] == c), 2]
            assert got.tolist() == want.tolist(), (b, c)
    assert not ((sel[:, 0] == 0) & (sel[:, 1] == 1) & (sel[:, 2] < 20)).any()


def test_nms_operator_with_nothing_above_the_floor_returns_no_rows():
    boxes = _boxes(5, 5)[None]
    (sel,) = _run(_NMS(), (boxes, torch.rand(1, 1, 5)), ["boxes", "scores"],
                  {"boxes": {1: "n"}, "scores": {2: "n"}}, (boxes, torch.full((1, 1, 5), -1.0)))
    assert sel.shape == (0, 3)
    empty = torch.zeros(1, 0, 4)
    (sel,) = _run(_NMS(), (boxes, torch.rand(1, 1, 5)), ["boxes", "scores"],
                  {"boxes": {1: "n"}, "scores": {2: "n"}}, (empty, torch.zeros(1, 1, 0)))
    assert sel.shape == (0, 3)


@pytest.mark.parametrize("aligned,sampling_ratio", [(False, 2), (True, 0), (False, 0)])
def test_roi_align_operator_equals_our_roi_align(aligned, sampling_ratio):
    class Align(torch.nn.Module):
        def forward(self, feature, boxes):
            return onnx_ops.roi_align(feature, boxes, output_size=7, spatial_scale=0.25,
                                      sampling_ratio=sampling_ratio, aligned=aligned)

    g = torch.Generator().manual_seed(0)
    feature = torch.randn(1, 4, 30, 40, generator=g)
    boxes = _boxes(25, 6) * 1.5  # some reach past the map's border (160 x 120 pixels at stride 4)
    boxes[0] = torch.tensor([10.0, 10.0, 10.5, 10.2])  # smaller than a cell
    (got,) = _run(Align(), (feature, _boxes(3, 7)), ["feature", "boxes"],
                  {"feature": {2: "h", 3: "w"}, "boxes": {0: "r"}}, (feature, boxes))
    rois = torch.cat((torch.zeros(25, 1), boxes), dim=1)
    want = eager_roi_align(feature, rois, 7, 0.25, sampling_ratio, aligned)
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-5, atol=1e-5)
