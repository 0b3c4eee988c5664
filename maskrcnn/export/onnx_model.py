"""The whole Mask R-CNN as one traceable module, for ONNX export only.

Shapes: one image (3, H, W) float RGB in [0, 1] (already resized), padded to (1, 3, Hp, Wp) with Hp, Wp
multiples of ``size_divisibility``; L pyramid levels, level l with Hl x Wl locations and A anchors per
location (R_l = Hl * Wl * A); T proposal candidates (sum over levels of min(pre_nms_topk, R_l)); P
proposals; K classes incl. background; D detections; M mask resolution (28); J keypoints, Hk heatmap
size (56).

``OnnxMaskRCNN(model)`` reuses the model's modules (backbone, FPN, RPN head, RoI heads) and re-states,
with operators a tracer can record with dynamic sizes, the parts of inference that branch on data in
eager mode: anchors from the feature sizes, per-level top-k with k = min(pre_nms_topk, R_l), NMS
(ONNX ``NonMaxSuppression``, per level for the RPN and per class for the detections: each class is
its own NMS batch, so there is no coordinate offset), FPN level assignment and RoIAlign (ONNX
``RoiAlign``). Every threshold and order is the eager path's (``modeling/rpn.select_proposals``,
``modeling/box_head.postprocess_boxes``, ``ops/poolers.MultiScaleRoIAlign``).

Outputs: ``boxes`` (D, 4) xyxy in the input image's pixels, ``labels`` (D,) int64 in 1..K-1,
``scores`` (D,), ``masks`` (D, 1, M, M) probabilities of the predicted class (models with a mask
head; M = 14 for C4 models, whose res5 halves the pooled 14 x 14); keypoint models add
``keypoint_heatmaps`` (D, J, Hk, Hk) logits (decoded to keypoints by ``heatmaps_to_keypoints`` at
run time, as in eager mode). D may be 0.

The model must be the plain one ``build_model`` returns (or with batch norm folded): the CPU
speed-ups of ``modeling.fuse`` (Winograd, oneDNN fused additions) are kernels of this library, and the
INT8 parts of ``maskrcnn quantize`` are PyTorch's quantized kernels, not operators a runtime knows;
RoIPool (the paper's ablation) has no ONNX form with RoIAlign's box convention. ``export_problem``
says which, before any tracing (torch's exporter would fail deep inside, after printing its whole
graph on stdout).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.export import onnx_ops
from maskrcnn.modeling.mask_head import head_mask_probs

# NMS scores of candidates that must never be kept (too small, below the threshold, other level):
# below every sigmoid / softmax score, and below the operator's score threshold
_DROPPED = -1.0
_NMS_SCORE_FLOOR = -0.5


def _clip(boxes: Tensor, h: Tensor, w: Tensor) -> Tensor:
    """(..., 4) boxes clamped to [0, w] x [0, h] (h, w: 0-dim float tensors traced from the shape)."""
    x = torch.minimum(boxes[..., 0::2].clamp(min=0), w)  # (..., 2)
    y = torch.minimum(boxes[..., 1::2].clamp(min=0), h)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def _big_enough(boxes: Tensor, min_size: float) -> Tensor:
    return ((boxes[..., 2] - boxes[..., 0]) >= min_size) & ((boxes[..., 3] - boxes[..., 1]) >= min_size)


def _topk_count(n, k_max: int) -> Tensor:
    """min(k_max, n) as a 0-dim int64 tensor that follows n's traced size."""
    return torch.clamp(torch.as_tensor(n, dtype=torch.int64), max=k_max)


def export_problem(model: nn.Module) -> Optional[str]:
    """Why ``model`` cannot become an ONNX graph (one phrase), or None when it can."""
    from maskrcnn.ops.fused_conv import ConvAdd
    from maskrcnn.ops.winograd import WinogradConv2d

    int8 = list(getattr(model, "int8_parts", None) or [])
    if int8:
        return (f"its {', '.join(int8)} run INT8 (PyTorch's quantized kernels have no ONNX operators); "
                "export the float model")
    roi = model.roi_heads
    poolers = (("box", roi.box_pooler), ("mask", roi.mask_pooler), ("keypoint", roi.keypoint_pooler))
    for name, pooler in poolers:
        if pooler is not None and pooler.pooler != "roialign":
            return f"the {name} pooler is {pooler.pooler!r}; ONNX has RoiAlign only"
    kernels = sorted({type(m).__name__ for m in model.modules() if isinstance(m, (WinogradConv2d, ConvAdd))})
    if kernels:
        return (f"it runs this library's CPU kernels ({', '.join(kernels)}); export the plain model "
                "(Predictor with optimise=False, or winograd=False and fused_add=False)")
    return None


class OnnxMaskRCNN(nn.Module):
    """One image -> (boxes, labels, scores[, masks][, keypoint_heatmaps]); see the module docstring."""

    def __init__(self, model: nn.Module):
        super().__init__()
        problem = export_problem(model)
        if problem:
            raise ValueError(f"cannot export this model to ONNX: {problem}")
        roi = model.roi_heads
        self.model = model
        self.masks = roi.mask_head is not None
        self.keypoints = roi.keypoint_head is not None
        anchors = model.rpn.anchor_generator
        self.anchor_rounding = anchors.rounding
        self.anchor_strides = list(anchors.strides)
        for i, cell in enumerate(anchors.cells):
            self.register_buffer(f"cell_anchors_{i}", cell.clone(), persistent=False)  # (A, 4)

    def output_names(self) -> list:
        return (["boxes", "labels", "scores"] + (["masks"] if self.masks else [])
                + (["keypoint_heatmaps"] if self.keypoints else []))

    # ------------------------------------------------------------------------------------------
    def forward(self, image: Tensor) -> tuple:
        model = self.model
        h, w = image.shape[1], image.shape[2]
        d = max(1, int(model.size_divisibility))  # 0: no padding multiple (detectron2's C4 models)
        x = (image - model.pixel_mean) / model.pixel_std  # (3, H, W)
        x = F.pad(x, (0, (w + d - 1) // d * d - w, 0, (h + d - 1) // d * d - h))[None]  # (1, 3, Hp, Wp)
        feats = model.features(x)  # name -> (1, C, Hl, Wl)
        hf = torch.as_tensor(h, dtype=torch.float32)
        wf = torch.as_tensor(w, dtype=torch.float32)
        proposals = self._proposals([feats[n] for n in model.rpn_in_features], x, hf, wf)  # (P, 4)
        boxes, scores, labels = self._detections(feats, proposals, hf, wf)
        roi = model.roi_heads
        out = (boxes, labels, scores)
        if self.masks:
            # (D, 1, M, M): the predicted class's channel (the one channel of a class-agnostic head), read
            # as the model was trained (sigmoid, or softmax for the softmax ablation)
            pooled = self._pool(roi.mask_pooler, feats, boxes)  # (D, C, S, S)
            out += (head_mask_probs(roi.mask_head, pooled, labels, mode=roi.mask_loss.mode),)
        if self.keypoints:
            out += (roi.keypoint_head(self._pool(roi.keypoint_pooler, feats, boxes)),)  # (D, J, Hk, Hk)
        return out

    # ------------------------------------------------------------------------------------------
    def _anchors(self, level: int, feature: Tensor, padded: Tensor) -> Tensor:
        """(Hl * Wl * A, 4) anchors of one level, in the order of ``modeling/anchors.py``."""
        hl, wl = feature.shape[2], feature.shape[3]
        if self.anchor_rounding:  # torchvision: the stride is padded size // feature size
            sy, sx = padded.shape[2] // hl, padded.shape[3] // wl
        else:
            sy = sx = self.anchor_strides[level]
        xs = torch.arange(wl, dtype=torch.float32) * sx
        ys = torch.arange(hl, dtype=torch.float32) * sy
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)  # (Hl*Wl, 1, 4)
        cell = getattr(self, f"cell_anchors_{level}")
        return (shifts + cell.view(1, -1, 4)).reshape(-1, 4)  # (Hl*Wl*A, 4)

    def _proposals(self, features: list, padded: Tensor, h: Tensor, w: Tensor) -> Tensor:
        """RPN: per-level top-k on the logits, decode, clip, drop small / low boxes, NMS within each
        level, the post_nms_topk best overall -> (P, 4) by decreasing score."""
        rpn = self.model.rpn
        s = rpn.proposals_test
        boxes, scores, levels = [], [], []
        for lvl, feature in enumerate(features):
            logits, deltas = rpn.head([feature])  # (1, R_l), (1, R_l, 4)
            k = _topk_count(logits.shape[1], s.pre_nms_topk)
            top, idx = logits[0].topk(k)  # (k,)
            anchors = self._anchors(lvl, feature, padded)[idx]  # (k, 4)
            boxes.append(rpn.box_coder.decode(deltas[0][idx], anchors))  # (k, 4)
            scores.append(top.sigmoid())
            levels.append(torch.full_like(idx, lvl))
        boxes = _clip(torch.cat(boxes), h, w)  # (T, 4)
        scores, levels = torch.cat(scores), torch.cat(levels)  # (T,)
        valid = _big_enough(boxes, s.min_size) & (scores >= s.score_thresh)
        per_level = torch.arange(len(features))[:, None] == levels[None, :]  # (L, T): NMS class = level
        nms_scores = torch.where(per_level & valid[None], scores[None], torch.full_like(scores, _DROPPED))
        keep = onnx_ops.nms(boxes[None], nms_scores[None], max_per_class=s.post_nms_topk,
                            iou_threshold=s.nms_thresh, score_threshold=_NMS_SCORE_FLOOR)[:, 2]  # (S,)
        kept_scores = scores[keep]
        _, order = kept_scores.topk(_topk_count(keep.shape[0], s.post_nms_topk))
        return boxes[keep[order]]  # (P, 4)

    def _pool(self, pooler, features: dict, boxes: Tensor) -> Tensor:
        """``MultiScaleRoIAlign`` for one image: each box from its FPN level -> (R, C, S, S), through
        res5 in the C4 design."""
        from maskrcnn.ops.poolers import assign_levels

        size = pooler.output_size[0]
        if pooler.output_size[1] != size:
            raise ValueError(f"export: pooled size must be square, got {pooler.output_size}")
        maps = [features[n] for n in pooler.featmap_names]

        def align(feature, stride, rois):
            return onnx_ops.roi_align(feature, rois, output_size=size, spatial_scale=1.0 / stride,
                                      sampling_ratio=pooler.sampling_ratio, aligned=pooler.aligned)

        if len(maps) == 1:
            out = align(maps[0], pooler.strides[0], boxes)
        else:
            levels = assign_levels(boxes, min_level=pooler.min_level, max_level=pooler.max_level,
                                   canonical_level=pooler.canonical_level,
                                   canonical_box_size=pooler.canonical_box_size, eps=pooler.eps)  # (R,)
            pooled, rows = [], []
            for lvl, (feature, stride) in enumerate(zip(maps, pooler.strides)):
                idx = torch.nonzero(levels == lvl).flatten()  # (R_l,)
                pooled.append(align(feature, stride, boxes[idx]))
                rows.append(idx)
            rows = torch.cat(rows)  # (R,) the box of each pooled row
            # inverse permutation: where each box's pooled row is
            where = torch.zeros_like(rows).scatter(0, rows, torch.arange(rows.shape[0]))
            out = torch.cat(pooled)[where]
        res5 = self.model.roi_heads.res5
        return res5(out) if res5 is not None else out

    def _detections(self, features: dict, proposals: Tensor, h: Tensor, w: Tensor) -> tuple:
        """Box head, class-specific decoding, score threshold, per-class NMS, the best
        ``detections_per_image`` -> boxes (D, 4), scores (D,), labels (D,) by decreasing score."""
        roi = self.model.roi_heads
        det = roi.detections
        class_logits, box_regression = roi.box_predictor(roi.box_head(self._pool(roi.box_pooler, features,
                                                                                proposals)))
        k = class_logits.shape[1]
        boxes = roi.box_coder.decode(box_regression, proposals).view(-1, k, 4)  # (P, K, 4)
        boxes = _clip(boxes, h, w)[:, 1:]  # (P, K-1, 4): no background
        scores = F.softmax(class_logits, dim=-1)[:, 1:]  # (P, K-1)
        valid = (scores > det.score_thresh) & _big_enough(boxes, 1e-2)  # postprocess_boxes' min_size
        nms_scores = torch.where(valid, scores, torch.full_like(scores, _DROPPED))
        # each class is an NMS batch of its own boxes: (K-1, P, 4), scores (K-1, 1, P)
        sel = onnx_ops.nms(boxes.transpose(0, 1), nms_scores.t()[:, None],
                           max_per_class=det.detections_per_image, iou_threshold=det.nms_thresh,
                           score_threshold=_NMS_SCORE_FLOOR)  # (S, 3)
        cls, row = sel[:, 0], sel[:, 2]
        kept = scores[row, cls]  # (S,)
        top, order = kept.topk(_topk_count(kept.shape[0], det.detections_per_image))  # (D,)
        cls, row = cls[order], row[order]
        return boxes[row, cls], top, cls + 1
