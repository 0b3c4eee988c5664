"""Slow float64 loop references for the ops, written from their definitions; used by the tests only.

Shape glossary: N, C, H, W feature batch; R RoIs; PH, PW pooled size; N boxes for NMS.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["roi_align_loop", "roi_pool_loop", "nms_loop"]


def _bilinear(feat: Tensor, y: float, x: float) -> Tensor:
    """Value of (C, H, W) ``feat`` at (y, x) with torchvision's border rules -> (C,)."""
    _, h, w = feat.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return feat.new_zeros(feat.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * feat[:, y0, x0] + hy * lx * feat[:, y0, x1]
            + ly * hx * feat[:, y1, x0] + ly * lx * feat[:, y1, x1])


def roi_align_loop(input: Tensor, rois: Tensor, output_size, spatial_scale: float, sampling_ratio: int,
                   aligned: bool) -> Tensor:
    """RoIAlign by explicit loops over RoIs, bins and samples: (N, C, H, W), (R, 5) -> (R, C, PH, PW)."""
    ph_n, pw_n = output_size
    out = input.new_zeros((rois.shape[0], input.shape[1], ph_n, pw_n))
    off = 0.5 if aligned else 0.0
    for r, roi in enumerate(rois.tolist()):
        feat = input[int(roi[0])]
        x1, y1, x2, y2 = (v * spatial_scale - off for v in roi[1:])
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph_n, rw / pw_n
        gh = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rh / ph_n), 0)
        gw = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rw / pw_n), 0)
        count = max(gh * gw, 1)
        for ph in range(ph_n):
            for pw in range(pw_n):
                acc = input.new_zeros(input.shape[1])
                for iy in range(gh):
                    y = y1 + ph * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        x = x1 + pw * bw + (ix + 0.5) * bw / gw
                        acc = acc + _bilinear(feat, y, x)
                out[r, :, ph, pw] = acc / count
    return out


def roi_pool_loop(input: Tensor, rois: Tensor, output_size, spatial_scale: float) -> Tensor:
    """Max RoIPool by explicit loops: (N, C, H, W), (R, 5) -> (R, C, PH, PW)."""
    ph_n, pw_n = output_size
    _, c, h, w = input.shape
    out = input.new_zeros((rois.shape[0], c, ph_n, pw_n))

    def rnd(v: float) -> int:  # C's round: halves away from zero
        return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)

    for r, roi in enumerate(rois.tolist()):
        feat = input[int(roi[0])]
        x1, y1, x2, y2 = (rnd(v * spatial_scale) for v in roi[1:])
        rh, rw = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        for ph in range(ph_n):
            hs = min(max(math.floor(ph * rh / ph_n) + y1, 0), h)
            he = min(max(math.ceil((ph + 1) * rh / ph_n) + y1, 0), h)
            for pw in range(pw_n):
                ws = min(max(math.floor(pw * rw / pw_n) + x1, 0), w)
                we = min(max(math.ceil((pw + 1) * rw / pw_n) + x1, 0), w)
                if he > hs and we > ws:
                    out[r, :, ph, pw] = feat[:, hs:he, ws:we].amax(dim=(1, 2))
    return out


def nms_loop(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS, one box at a time (stable descending score order) -> kept indices."""
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    b = boxes.double()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        xx1 = torch.clamp(b[:, 0], min=float(b[i, 0]))
        yy1 = torch.clamp(b[:, 1], min=float(b[i, 1]))
        xx2 = torch.clamp(b[:, 2], max=float(b[i, 2]))
        yy2 = torch.clamp(b[:, 3], max=float(b[i, 3]))
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (area[i] + area - inter)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long)
