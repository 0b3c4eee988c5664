"""Multi-scale RoI pooling over an FPN pyramid (or one level, the C4 design).

Shape glossary:
    N        images
    Ri       RoIs of image i; R = sum Ri
    C        channels (the same on every level)
    P        pooled size (output_size)

Each RoI is pooled from one level, chosen by the FPN paper's rule (Lin et al., 2017, eq. 1):
``k = floor(k0 + log2(sqrt(area) / s0) + eps)``, clamped to the levels present, where a level's
number is ``log2(stride)``. torchvision uses ``eps = 1e-6``.
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Union

import torch
from torch import Tensor, nn

from .roi_align import _pair, roi_align, roi_align_into, roi_align_levels
from .roi_pool import roi_pool

__all__ = ["MultiScaleRoIAlign", "assign_levels", "POOLERS"]

POOLERS = ("roialign", "roipool")  # model.roi_heads.pooler: bilinear samples, or RoIPool's max over cells


def assign_levels(boxes: Tensor, *, min_level: int, max_level: int, canonical_level: int = 4,
                  canonical_box_size: int = 224, eps: float = 1e-6) -> Tensor:
    """FPN level index (0 = ``min_level``) of each (R, 4) box -> (R,) int64."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    size = torch.sqrt(area)
    levels = torch.floor(canonical_level + torch.log2(size / canonical_box_size) + eps)
    # NaN (e.g. inverted boxes: negative area) goes to the finest level rather than crashing
    levels = levels.nan_to_num(float(min_level)).clamp(min=min_level, max=max_level)
    return levels.to(torch.long) - min_level


class MultiScaleRoIAlign(nn.Module):
    """Pools each RoI from its FPN level: (features dict, per-image boxes) -> (R, C, P, P).

    featmap_names: the levels to use, e.g. ("p2", "p3", "p4", "p5"); strides: their strides, e.g.
    {"p2": 4, ...} (powers of two). Output rows follow the concatenated per-image boxes.
    pooler="roipool" uses RoIPool (the paper's ablation) instead of RoIAlign. With autograd (training)
    the RoIAlign output is in channels_last memory (``roi_align_levels``): flatten it with ``reshape``.
    """

    def __init__(self, *, featmap_names: Sequence[str], strides: Union[Dict[str, int], Sequence[int]],
                 output_size: Union[int, Sequence[int]], sampling_ratio: int, aligned: bool = False,
                 canonical_level: int = 4, canonical_box_size: int = 224, pooler: str = "roialign",
                 eps: float = 1e-6):
        super().__init__()
        self.featmap_names = list(featmap_names)
        if not self.featmap_names:
            raise ValueError("MultiScaleRoIAlign: featmap_names is empty")
        if isinstance(strides, dict):
            missing = [n for n in self.featmap_names if n not in strides]
            if missing:
                raise ValueError(f"MultiScaleRoIAlign: strides has no entry for {missing}")
            stride_list = [int(strides[n]) for n in self.featmap_names]
        else:
            stride_list = [int(s) for s in strides]
            if len(stride_list) != len(self.featmap_names):
                raise ValueError(f"MultiScaleRoIAlign: {len(stride_list)} strides for "
                                 f"{len(self.featmap_names)} feature maps")
        if pooler not in POOLERS:
            raise ValueError(f"MultiScaleRoIAlign: pooler must be one of {POOLERS}, got {pooler!r}")
        levels = [round(math.log2(s)) for s in stride_list]
        if any(2 ** lv != s for lv, s in zip(levels, stride_list)):
            raise ValueError(f"MultiScaleRoIAlign: strides must be powers of two, got {stride_list}")
        if levels != list(range(levels[0], levels[0] + len(levels))):
            raise ValueError(f"MultiScaleRoIAlign: strides must be consecutive powers of two in "
                             f"increasing order, got {stride_list}")
        self.strides = stride_list
        self.output_size = _pair(output_size)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.canonical_level = int(canonical_level)
        self.canonical_box_size = int(canonical_box_size)
        self.pooler = pooler
        self.eps = float(eps)
        self.min_level, self.max_level = levels[0], levels[-1]

    def _pool(self, feature: Tensor, rois: Tensor, stride: int) -> Tensor:
        if self.pooler == "roipool":
            return roi_pool(feature, rois, self.output_size, 1.0 / stride)
        return roi_align(feature, rois, self.output_size, 1.0 / stride, self.sampling_ratio, self.aligned)

    def forward(self, features: Dict[str, Tensor], boxes: List[Tensor]) -> Tensor:
        missing = [n for n in self.featmap_names if n not in features]
        if missing:
            raise ValueError(f"MultiScaleRoIAlign: features has no level {missing} "
                             f"(got {sorted(features)})")
        maps = [features[n] for n in self.featmap_names]
        num_images = maps[0].shape[0]
        if len(boxes) != num_images:
            raise ValueError(f"MultiScaleRoIAlign: {len(boxes)} box lists for {num_images} images")
        device = maps[0].device
        # RoIs keep the boxes' precision (float32 at least): level assignment and sampling must not
        # be rounded to a bfloat16 feature map's dtype
        dtype = torch.promote_types(boxes[0].dtype, torch.float32) if boxes else torch.float32
        rois = torch.cat([
            torch.cat((torch.full((b.shape[0], 1), i, dtype=dtype, device=device),
                       b.to(device=device, dtype=dtype)), dim=1)
            for i, b in enumerate(boxes)
        ]) if boxes else torch.zeros((0, 5), dtype=dtype, device=device)  # (R, 5)
        if len(maps) == 1:
            return self._pool(maps[0], rois, self.strides[0])
        levels = assign_levels(rois[:, 1:], min_level=self.min_level, max_level=self.max_level,
                               canonical_level=self.canonical_level,
                               canonical_box_size=self.canonical_box_size, eps=self.eps)  # (R,)
        scales = [1.0 / s for s in self.strides]
        if self.pooler == "roialign":
            if torch.is_grad_enabled() and any(m.requires_grad for m in maps):
                # training: all levels in one autograd node (one plan, no per-level copies), output
                # in channels_last memory (see roi_align_levels)
                return roi_align_levels(maps, rois, levels, self.output_size, scales, self.sampling_ratio,
                                        self.aligned)
            # without autograd all levels are pooled in one call, straight into their rows of ``out``
            out = maps[0].new_empty((rois.shape[0], maps[0].shape[1], *self.output_size))  # (R, C, P, P)
            roi_align_into(out, torch.arange(rois.shape[0], device=device), maps, rois, self.output_size,
                           scales, self.sampling_ratio, self.aligned, level=levels)
            return out
        # RoIPool: every row is written by exactly one level, so an uninitialised buffer filled in place
        # is enough (autograd routes each level's gradient back through index_copy_)
        out = maps[0].new_empty((rois.shape[0], maps[0].shape[1], *self.output_size))  # (R, C, P, P)
        for lv, (feature, stride) in enumerate(zip(maps, self.strides)):
            idx = torch.nonzero(levels == lv).flatten()
            if idx.numel() == 0:
                continue
            out.index_copy_(0, idx, self._pool(feature, rois[idx], stride).to(out.dtype))
        return out
