"""Box utilities: areas, IoU, clipping, small-box removal, format conversion and the box coder.

Shape glossary:
    N, M   numbers of boxes
    R      number of proposals (rows) given to the coder
    k      boxes per row in ``BoxCoder.decode`` (one per class in the box head)

Boxes are absolute ``(x1, y1, x2, y2)`` pixels. Widths are ``x2 - x1`` (no ``+ 1``), as in torchvision
and detectron2, so that trained weights from either transfer unchanged.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
from torch import Tensor

__all__ = [
    "box_area",
    "box_iou",
    "pairwise_intersection",
    "clip_boxes_to_image",
    "flip_boxes",
    "remove_small_boxes",
    "box_xyxy_to_xywh",
    "box_xywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_cxcywh_to_xyxy",
    "BoxCoder",
]


def box_area(boxes: Tensor) -> Tensor:
    """Area of (N, 4) xyxy boxes -> (N,). Inverted boxes give negative areas, as torchvision's."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def pairwise_intersection(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection areas of every pair: (N, 4), (M, 4) -> (N, M)."""
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = (rb - lt).clamp(min=0)  # (N, M, 2)
    return wh[..., 0] * wh[..., 1]


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU: (N, 4), (M, 4) -> (N, M), computed as torchvision does (inter / union)."""
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    inter = pairwise_intersection(boxes1, boxes2)
    union = area1[:, None] + area2[None, :] - inter  # (N, M)
    return inter / union


def clip_boxes_to_image(boxes: Tensor, size_hw: Sequence[int]) -> Tensor:
    """Clamp (..., 4) boxes to an image of ``size_hw = (height, width)``: x into [0, W], y into [0, H]."""
    height, width = int(size_hw[0]), int(size_hw[1])
    x = boxes[..., 0::2].clamp(min=0, max=width)  # (..., 2)
    y = boxes[..., 1::2].clamp(min=0, max=height)  # (..., 2)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (int64) of the (N, 4) boxes whose width and height are both >= ``min_size``."""
    ws = boxes[:, 2] - boxes[:, 0]
    hs = boxes[:, 3] - boxes[:, 1]
    keep = (ws >= min_size) & (hs >= min_size)
    return torch.where(keep)[0]


def flip_boxes(boxes: Tensor, width: int) -> Tensor:
    """(D, 4) xyxy boxes in an image ``width`` pixels wide -> their mirror images (D, 4): x -> width - x,
    so x1 and x2 swap roles (pixel edges, not centres: a box [0, w) mirrors to [width - w, width))."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def box_xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """(..., 4) corners -> (x, y, width, height) (the COCO format)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)


def box_xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) (x, y, width, height) -> corners."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack((x, y, x + w, y + h), dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) corners -> (centre x, centre y, width, height)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) (centre x, centre y, width, height) -> corners."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def _sizes_and_centres(boxes: Tensor) -> tuple:
    """(R, 4) xyxy -> widths, heights, centre x, centre y, each (R,) (no +1: torchvision's arithmetic)."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return widths, heights, boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights


class BoxCoder:
    """Encodes boxes as deltas ``(dx, dy, dw, dh)`` relative to proposals, and decodes them back.

    ``dx = wx * (gx - px) / pw``, ``dw = ww * log(gw / pw)`` (centres and sizes), the R-CNN
    parameterisation. ``decode`` clamps ``dw, dh`` to ``bbox_xform_clip`` so that ``exp`` cannot
    overflow on an untrained network.
    """

    def __init__(self, *, weights: Tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
                 bbox_xform_clip: float = math.log(1000.0 / 16)):
        if len(weights) != 4:
            raise ValueError(f"BoxCoder weights must have 4 values, got {weights!r}")
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = float(bbox_xform_clip)

    def encode(self, gt_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Deltas taking each proposal to its matched ground truth: (R, 4), (R, 4) -> (R, 4).

        Empty inputs give an empty (0, 4) result. Computed in the proposals' dtype.
        """
        if gt_boxes.shape != proposals.shape or gt_boxes.shape[-1:] != (4,):
            raise ValueError(
                f"BoxCoder.encode needs gt_boxes and proposals of the same shape (R, 4), "
                f"got {tuple(gt_boxes.shape)} and {tuple(proposals.shape)}")
        gt_boxes = gt_boxes.to(proposals.dtype)
        wx, wy, ww, wh = self.weights
        pw, ph, px, py = _sizes_and_centres(proposals)
        gw, gh, gx, gy = _sizes_and_centres(gt_boxes)
        dx = wx * (gx - px) / pw
        dy = wy * (gy - py) / ph
        dw = ww * torch.log(gw / pw)
        dh = wh * torch.log(gh / ph)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def decode(self, deltas: Tensor, proposals: Tensor) -> Tensor:
        """Apply (R, 4k) deltas to (R, 4) proposals -> (R, 4k) boxes (k boxes per proposal)."""
        if deltas.dim() != 2 or deltas.shape[1] % 4 != 0 or proposals.shape != (deltas.shape[0], 4):
            raise ValueError(
                f"BoxCoder.decode needs deltas (R, 4k) and proposals (R, 4), "
                f"got {tuple(deltas.shape)} and {tuple(proposals.shape)}")
        proposals = proposals.to(deltas.dtype)
        wx, wy, ww, wh = self.weights
        widths, heights, ctr_x, ctr_y = _sizes_and_centres(proposals)

        dx = deltas[:, 0::4] / wx  # (R, k)
        dy = deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.bbox_xform_clip)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.bbox_xform_clip)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]  # (R, k)
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        # same operation order as torchvision (0.5 * (exp(dw) * w)) so decoded boxes match bit for bit
        half_w = 0.5 * (torch.exp(dw) * widths[:, None])
        half_h = 0.5 * (torch.exp(dh) * heights[:, None])
        boxes = torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h,
                             pred_ctr_x + half_w, pred_ctr_y + half_h), dim=2)  # (R, k, 4)
        return boxes.flatten(1)  # (R, 4k)
