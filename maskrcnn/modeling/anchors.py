"""Anchor generator: one set of cell anchors per pyramid level, tiled over the feature map.

Shapes: L levels; level l has a Hl x Wl feature map and A = len(ratios) * len(sizes_l) cell anchors;
the output is (sum_l Hl * Wl * A, 4) xyxy boxes in padded-image pixels, the same for every image.

Order (matches torchvision so that its RPN objectness / delta channels line up): level by level; within
a level location-major (row y, then column x) and, per location, ratio-major then size. Cell anchors are
centred on (0, 0) at the top-left corner of each cell: ``x = col * stride``.

``rounding=True`` is torchvision's convention: cell anchors rounded to integers, and the stride of a
level taken as ``padded_size // feature_size`` (which differs from 64 on P6 when H/32 is odd).
``rounding=False`` is detectron2's: exact cell anchors and the known strides.
"""

from __future__ import annotations

import torch
from torch import nn


def cell_anchors(sizes, aspect_ratios, *, rounding: bool) -> torch.Tensor:
    """(len(ratios) * len(sizes), 4) anchors centred on 0, ratio-major (ratio = height / width)."""
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)  # (ratios * sizes,)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    base = torch.stack([-ws, -hs, ws, hs], dim=1) / 2
    return base.round() if rounding else base


class AnchorGenerator(nn.Module):
    def __init__(self, *, sizes, aspect_ratios=(0.5, 1.0, 2.0), strides, rounding: bool = True):
        super().__init__()
        # sizes: one entry per level (a number or a tuple of numbers)
        self.sizes = [tuple(s) if isinstance(s, (tuple, list)) else (s,) for s in sizes]
        self.aspect_ratios = tuple(aspect_ratios)
        self.strides = list(strides)
        if len(self.sizes) != len(self.strides):
            raise ValueError(f"{len(self.sizes)} anchor sizes for {len(self.strides)} feature levels")
        self.rounding = rounding
        self.cells = [cell_anchors(s, self.aspect_ratios, rounding=rounding) for s in self.sizes]
        self._cache: dict = {}

    @property
    def num_anchors_per_location(self) -> int:
        return len(self.aspect_ratios) * len(self.sizes[0])

    def _level_strides(self, grid_sizes, image_size) -> list:
        if self.rounding:
            return [(image_size[0] // h, image_size[1] // w) for h, w in grid_sizes]
        return [(s, s) for s in self.strides]

    def forward(self, grid_sizes, image_size, *, device=None, dtype=torch.float32) -> tuple:
        """grid_sizes: [(Hl, Wl)] per level; image_size: padded (H, W).

        Returns (anchors (sum Hl*Wl*A, 4), num_anchors_per_level [Hl*Wl*A]).
        """
        grid_sizes = [(int(h), int(w)) for h, w in grid_sizes]
        key = (tuple(grid_sizes), tuple(int(s) for s in image_size), str(device), dtype)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        out = []
        strides = self._level_strides(grid_sizes, image_size)
        for (h, w), (sy, sx), cell in zip(grid_sizes, strides, self.cells):
            xs = torch.arange(w, dtype=torch.float32) * sx
            ys = torch.arange(h, dtype=torch.float32) * sy
            yy, xx = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)  # (H*W, 1, 4)
            out.append((shifts + cell.view(1, -1, 4)).reshape(-1, 4))  # (H*W*A, 4)
        anchors = torch.cat(out).to(device=device, dtype=dtype)
        result = (anchors, [len(a) for a in out])
        if len(self._cache) > 16:  # bounded: multi-scale training sees many sizes
            self._cache.clear()
        self._cache[key] = result
        return result

