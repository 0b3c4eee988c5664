"""Two ONNX operators the exported graph needs, as ``torch.autograd.Function``s with a ``symbolic``.

Shapes: B batches (or classes laid out as batches), C score classes, N boxes, S selected boxes,
R RoIs, Ch channels, H x W a feature map, P x P the pooled size.

Both are ``torch.library`` custom operators (namespace ``maskrcnn_export``) whose ONNX form is
registered by ``register_symbolics`` before tracing.

``nms``: ONNX ``NonMaxSuppression``. Our own NMS (``ops/nms.py``) is fast in eager mode because it
branches on the data (sparse windows, blocks); a traced copy of it would freeze one branch, so the
graph uses the standard operator instead. The eager ``forward`` (run while tracing, never in the
library's own inference path) computes the same result with ``ops.nms`` so the trace sees real
shapes. A box is kept when its score is above ``score_threshold`` and its IoU with every kept,
higher-scoring box of its (batch, class) is at most ``iou_threshold`` (torchvision's rule).

``roi_align``: ONNX ``RoiAlign`` (opset 16: ``coordinate_transformation_mode`` says whether the
box is shifted by half a pixel, torchvision's ``aligned``). Its eager ``forward`` is our
``ops.roi_align``, whose semantics (sampling grid, adaptive ratio, out-of-map samples) are
torchvision's, which are the ONNX operator's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maskrcnn.ops import nms as _nms
from maskrcnn.ops.roi_align import roi_align as _roi_align

ONNX_OPSET = 17  # RoiAlign needs 16 (half_pixel mode); 17 is what onnxruntime >= 1.11 runs fully


@torch.library.custom_op("maskrcnn_export::nms", mutates_args=())
def _nms_op(boxes: Tensor, scores: Tensor, max_per_class: int, iou_threshold: float,
            score_threshold: float) -> Tensor:
    rows = []
    for b in range(boxes.shape[0]):
        for c in range(scores.shape[1]):
            s = scores[b, c]  # (N,)
            cand = torch.nonzero(s > score_threshold).flatten()
            keep = cand[_nms(boxes[b, cand], s[cand], iou_threshold)][:max_per_class]
            bc = torch.tensor([b, c], dtype=torch.int64).expand(keep.numel(), 2)
            rows.append(torch.cat((bc, keep[:, None]), dim=1))
    return torch.cat(rows) if rows else torch.zeros((0, 3), dtype=torch.int64)


def _nms_symbolic(g, boxes, scores, max_per_class, iou_threshold, score_threshold):
    from torch.onnx import symbolic_helper

    max_per_class = symbolic_helper._get_const(max_per_class, "i", "max_per_class")
    iou_threshold = symbolic_helper._get_const(iou_threshold, "f", "iou_threshold")
    score_threshold = symbolic_helper._get_const(score_threshold, "f", "score_threshold")
    return g.op(
        "NonMaxSuppression", boxes, scores,
        g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.int64)),
        g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
        g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
    )  # fmt: skip


def nms(boxes: Tensor, scores: Tensor, *, max_per_class: int, iou_threshold: float,
        score_threshold: float) -> Tensor:
    """boxes (B, N, 4) xyxy, scores (B, C, N) -> (S, 3) int64 rows (batch, class, box index)."""
    return _nms_op(boxes, scores, int(max_per_class), float(iou_threshold), float(score_threshold))


@torch.library.custom_op("maskrcnn_export::roi_align", mutates_args=())
def _roi_align_op(feature: Tensor, boxes: Tensor, output_size: int, spatial_scale: float,
                  sampling_ratio: int, aligned: bool) -> Tensor:
    rois = torch.cat((boxes.new_zeros((boxes.shape[0], 1)), boxes), dim=1)  # (R, 5), image 0
    return _roi_align(feature, rois, output_size, spatial_scale, sampling_ratio, aligned)


def _roi_align_symbolic(g, feature, boxes, output_size, spatial_scale, sampling_ratio, aligned):
    from torch.onnx import symbolic_helper

    output_size = symbolic_helper._get_const(output_size, "i", "output_size")
    spatial_scale = symbolic_helper._get_const(spatial_scale, "f", "spatial_scale")
    sampling_ratio = symbolic_helper._get_const(sampling_ratio, "i", "sampling_ratio")
    aligned = symbolic_helper._get_const(aligned, "b", "aligned")
    # one image: every RoI reads batch index 0; (R,) zeros shaped like the boxes' first column
    first = g.op("Gather", boxes, g.op("Constant", value_t=torch.tensor(0)), axis_i=1)  # (R,)
    batch_idx = g.op("Cast", g.op("Mul", first, g.op("Constant", value_t=torch.tensor(0.0))), to_i=7)
    return g.op(
        "RoiAlign", feature, boxes, batch_idx, mode_s="avg", output_height_i=output_size,
        output_width_i=output_size, sampling_ratio_i=max(sampling_ratio, 0),
        spatial_scale_f=spatial_scale,
        coordinate_transformation_mode_s="half_pixel" if aligned else "output_half_pixel",
    )  # fmt: skip


def roi_align(feature: Tensor, boxes: Tensor, *, output_size: int, spatial_scale: float,
              sampling_ratio: int, aligned: bool) -> Tensor:
    """feature (1, Ch, H, W), boxes (R, 4) in image pixels -> (R, Ch, P, P)."""
    return _roi_align_op(feature, boxes, int(output_size), float(spatial_scale), int(sampling_ratio),
                         bool(aligned))


def register_symbolics() -> None:
    """Tell torch's TorchScript-based exporter how to write the two operators (idempotent)."""
    from torch.onnx import register_custom_op_symbolic

    register_custom_op_symbolic("maskrcnn_export::nms", _nms_symbolic, ONNX_OPSET)
    register_custom_op_symbolic("maskrcnn_export::roi_align", _roi_align_symbolic, ONNX_OPSET)
