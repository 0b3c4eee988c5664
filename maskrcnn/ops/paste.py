"""Pasting predicted masks into the image: each detection's S x S probabilities into its box.

Shapes: D detections with boxes (D, 4) xyxy image pixels and probabilities (D, 1, S, S) at the
head's resolution S (28); an image is H x W; B boxes of one chunk; L window rows of a chunk.

- ``method="torchvision"`` equals torchvision's ``paste_masks_in_image``: the S x S mask padded by one
  zero cell, the box enlarged by (S + 2) / S and truncated to integers, the padded mask bilinearly
  resized (align_corners=False) to the integer box size (x2 - x1 + 1) and placed.
- ``method="grid_sample"`` is detectron2's: each pixel centre inside the image is mapped into the
  S x S grid through the float box and sampled bilinearly with zero padding (``F.grid_sample``,
  align_corners=False); more accurate (no integer rounding of the box).

Both resample separably (``sampling.bilinear_taps``, border "clamp" and "zeros"): a box's image is
``Wy @ mask @ Wx^T`` with small per-box interpolation matrices. Boxes are processed in chunks (sorted
by the rows they cover) with batched matmuls, never with a Python loop over boxes; each chunk computes
only the image rows its boxes cover, over the full width, so whole rows are copied into place.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .sampling import bilinear_taps

__all__ = ["PASTE_METHODS", "paste_masks_as_rles", "paste_masks_in_image", "paste_row_windows"]

PASTE_METHODS = ("torchvision", "grid_sample")
_CHUNK_ELEMENTS = 1 << 24  # bound on a chunk's (boxes x window rows x image width) work buffer


def _scatter_taps(n_cols: int, low, high, w_low, w_high) -> torch.Tensor:
    """Dense interpolation matrices (B, L, n_cols) from (B, L) taps; out-of-range indices must carry
    zero weight (they are clamped)."""
    out = w_low.new_zeros(low.shape[0], low.shape[1], n_cols)
    out.scatter_add_(2, low.clamp(0, n_cols - 1)[..., None], w_low[..., None])
    out.scatter_add_(2, high.clamp(0, n_cols - 1)[..., None], w_high[..., None])
    return out


def _window_starts(lo: torch.Tensor, length: int, size: int) -> torch.Tensor:
    """Start of a ``length``-long window beginning at ``lo`` but kept inside [0, size): the extra pixels
    a window then covers get zero weight, so writing them is harmless."""
    return torch.minimum(lo.clamp(min=0), torch.full_like(lo, max(size - length, 0)))


def _chunks(areas: torch.Tensor):
    """Index chunks of boxes, sorted by window area, each bounded in (boxes x max area) work."""
    order = torch.argsort(areas)
    sorted_areas = areas[order].tolist()
    start = 0
    n = len(sorted_areas)
    while start < n:
        stop = start + 1
        while stop < n and (stop + 1 - start) * max(sorted_areas[stop], 1) <= _CHUNK_ELEMENTS:
            stop += 1
        yield order[start:stop]
        start = stop


def _torchvision_axis(lo_box: torch.Tensor, hi_box: torch.Tensor, n_in: int, n_pixels: int):
    """Window and 1-D bilinear taps for torchvision's paste along one axis.

    lo_box, hi_box (D,) int64: the enlarged, truncated box. The padded mask (n_in cells) is resized to
    n_out = max(hi - lo + 1, 1) pixels placed from pixel lo; pixels [max(lo, 0), min(hi + 1, n)) are
    written. Returns (first pixel, window length, fn(pixels (B, L), box indices (B,)) -> taps)."""
    n_out = (hi_box - lo_box + 1).clamp(min=1)
    first = lo_box.clamp(min=0)
    last = torch.minimum(hi_box + 1, torch.full_like(hi_box, n_pixels))  # exclusive
    length = (last - first).clamp(min=0)

    def taps(pos: torch.Tensor, idx: torch.Tensor):
        j = pos - lo_box[idx, None]  # (B, L) index into the resized box
        valid = (pos >= first[idx, None]) & (pos < last[idx, None])
        # PyTorch's bilinear resize (align_corners=False), in float32 as its CPU kernel computes it; an
        # identity resize (ratio exactly 1) lands on the cells themselves and copies exactly.
        ratio = (torch.tensor(float(n_in), dtype=torch.float32) / n_out[idx].to(torch.float32))[:, None]
        src = ratio * (j.to(torch.float32) + 0.5) - 0.5
        return bilinear_taps(src, n_in, border="clamp", valid=valid)

    return first, length, taps


def _grid_sample_axis(lo_box: torch.Tensor, hi_box: torch.Tensor, n_in: int, n_pixels: int):
    """Window and 1-D taps of bilinear grid sampling with zero padding (align_corners=False) of n_in
    cells spread over the float box [lo, hi), sampled at pixel centres."""
    extent = hi_box - lo_box
    margin = extent.abs() / (2 * n_in)  # samples up to half a cell outside the box still get weight
    finite = torch.isfinite(lo_box) & torch.isfinite(hi_box) & (extent > 0)
    lo_w = torch.where(finite, torch.floor(lo_box - margin) - 1, torch.zeros_like(lo_box))
    hi_w = torch.where(finite, torch.ceil(hi_box + margin) + 1, torch.zeros_like(hi_box))
    first = lo_w.clamp(0, n_pixels).long()
    last = hi_w.clamp(0, n_pixels).long()
    length = (last - first).clamp(min=0)

    def taps(pos: torch.Tensor, idx: torch.Tensor):
        centre = pos.to(torch.float32) + 0.5  # (B, L)
        g = (centre - lo_box[idx, None]) / extent[idx, None] * 2 - 1  # normalised grid coordinate
        src = ((g + 1) * n_in - 1) / 2  # grid_sample's unnormalisation, align_corners=False
        ok = finite[idx, None] & torch.isfinite(src)
        src = torch.where(ok, src, torch.full_like(src, -10.0))
        return bilinear_taps(src, n_in, border="zeros", valid=ok)

    return first, length, taps


def _zeros(*shape: int, dtype: torch.dtype, device) -> torch.Tensor:
    """A zero tensor; on the CPU backed by calloc'd memory (numpy), whose pages the OS maps lazily, so
    rows that no mask touches cost neither a page fault nor a memset (most of a (D, H, W) stack)."""
    if torch.device(device).type != "cpu":
        return torch.zeros(shape, dtype=dtype, device=device)
    np_dtype = {torch.float32: np.float32, torch.bool: np.bool_}[dtype]
    return torch.from_numpy(np.zeros(shape, dtype=np_dtype))


def _torchvision_boxes(boxes: torch.Tensor, mask_size: int) -> torch.Tensor:
    """torchvision's expand_boxes by (S + 2) / S in float32, then truncation to int64."""
    scale = float(mask_size + 2) / mask_size
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    w_half = w_half * scale
    h_half = h_half * scale
    expanded = torch.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], dim=1)
    return expanded.to(torch.int64)


def paste_masks_in_image(
    mask_probs: torch.Tensor,
    boxes: torch.Tensor,
    image_size: Sequence[int],
    *,
    method: str = "torchvision",
    threshold: Optional[float] = None,
) -> torch.Tensor:
    """Place each detection's S x S mask probabilities into its box in an H x W image.

    mask_probs (D, 1, S, S) or (D, S, S); boxes (D, 4) xyxy in image pixels. Returns (D, H, W) float
    probabilities, or bool ``probabilities > threshold`` when a threshold is given (computed chunk by
    chunk, so the float image stack is never held in memory)."""
    mask_probs = _check_paste_args(mask_probs, boxes, method)
    height, width = int(image_size[0]), int(image_size[1])
    n_det = mask_probs.shape[0]
    out_dtype = torch.bool if threshold is not None else torch.float32
    out = _zeros(n_det, height, width, dtype=out_dtype, device=mask_probs.device)
    out_rows = out.view(n_det * height, width)  # (D*H, W)
    for idx, rows, window in paste_row_windows(mask_probs, boxes, (height, width), method=method,
                                               threshold=threshold):
        flat_rows = idx[:, None] * height + rows  # (B, L) rows of the (D*H, W) view
        out_rows.index_copy_(0, flat_rows.reshape(-1), window.reshape(-1, width))
    return out


def paste_masks_as_rles(
    mask_probs: torch.Tensor,
    boxes: torch.Tensor,
    image_size: Sequence[int],
    *,
    method: str = "torchvision",
    threshold: float = 0.5,
) -> list:
    """COCO compressed RLE dicts of ``paste_masks_in_image(..., threshold=threshold)``, bit for bit,
    without ever holding an image-sized mask: each chunk's row windows are encoded as they are computed
    (``mask_codec.row_windows_to_runs``), so memory stays bounded by the chunk whatever H x W and D."""
    from maskrcnn.data.mask_codec import compress_runs, row_windows_to_runs

    mask_probs = _check_paste_args(mask_probs, boxes, method)
    height, width = int(image_size[0]), int(image_size[1])
    n_det = mask_probs.shape[0]
    runs = [np.array([height * width], dtype=np.int64)] * n_det  # boxes pasting nothing: all zeros
    for idx, rows, window in paste_row_windows(mask_probs, boxes, (height, width), method=method,
                                               threshold=threshold):
        for i, r in zip(idx.tolist(), row_windows_to_runs(window.cpu(), rows[:, 0].cpu(), height)):
            runs[i] = r
    return compress_runs(runs, height, width)


def _check_paste_args(mask_probs: torch.Tensor, boxes: torch.Tensor, method: str) -> torch.Tensor:
    """Validated (D, S, S) probabilities."""
    if method not in PASTE_METHODS:
        raise ValueError(f"paste method must be one of {PASTE_METHODS}, got {method!r}")
    if mask_probs.dim() == 4:
        if mask_probs.shape[1] != 1:
            raise ValueError(f"mask_probs must be (D, 1, S, S), got shape {tuple(mask_probs.shape)}")
        mask_probs = mask_probs[:, 0]
    if mask_probs.dim() != 3:
        raise ValueError(f"mask_probs must be (D, 1, S, S) or (D, S, S), got shape {tuple(mask_probs.shape)}")
    if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] != mask_probs.shape[0]:
        raise ValueError(f"boxes must be ({mask_probs.shape[0]}, 4), got shape {tuple(boxes.shape)}")
    return mask_probs


def paste_row_windows(
    mask_probs: torch.Tensor,
    boxes: torch.Tensor,
    image_size: Sequence[int],
    *,
    method: str = "torchvision",
    threshold: Optional[float] = None,
):
    """The pasted masks chunk by chunk: yields ``(idx (B,), rows (B, L), window (B, L, W))``, detection
    ``idx[b]``'s image rows ``rows[b]`` (consecutive) at full width, float or, with a threshold, bool.
    Rows not yielded for a detection are zero; detections pasting nothing are never yielded."""
    mask_probs = _check_paste_args(mask_probs, boxes, method)
    height, width = int(image_size[0]), int(image_size[1])
    device = mask_probs.device
    if mask_probs.shape[0] == 0 or height == 0 or width == 0:
        return
    probs = mask_probs.to(torch.float32)
    boxes = boxes.to(device=device, dtype=torch.float32)
    if method == "torchvision":
        # torchvision pads the mask by one zero cell on each side and enlarges the box to match.
        probs = torch.nn.functional.pad(probs, (1, 1, 1, 1))  # (D, S+2, S+2)
        finite = torch.isfinite(boxes).all(dim=1)
        int_boxes = _torchvision_boxes(
            torch.where(finite[:, None], boxes, torch.zeros_like(boxes)), mask_probs.shape[-1]
        )
        # A non-finite box pastes nothing: an empty window (hi < lo).
        int_boxes[~finite] = torch.tensor([0, 0, -2, -2], device=device)
        y_first, y_len, y_taps = _torchvision_axis(int_boxes[:, 1], int_boxes[:, 3], probs.shape[-2], height)
        x_first, x_len, x_taps = _torchvision_axis(int_boxes[:, 0], int_boxes[:, 2], probs.shape[-1], width)
    else:
        y_first, y_len, y_taps = _grid_sample_axis(boxes[:, 1], boxes[:, 3], probs.shape[-2], height)
        x_first, x_len, x_taps = _grid_sample_axis(boxes[:, 0], boxes[:, 2], probs.shape[-1], width)
    # Each chunk of boxes computes only its boxes' row windows, over the full image width, with two
    # batched matmuls; callers copy whole rows into place (a cheap row index, no per-pixel index).
    nonempty = torch.nonzero((y_len > 0) & (x_len > 0)).flatten()
    if nonempty.numel() == 0:
        return
    cols = torch.arange(width, device=device)
    for chunk in _chunks(y_len[nonempty] * width):
        idx = nonempty[chunk]
        ly = int(y_len[idx].max())
        y0 = _window_starts(y_first[idx], ly, height)  # (B,)
        rows = y0[:, None] + torch.arange(ly, device=device)  # (B, L) image rows of each window
        wy = _scatter_taps(probs.shape[-2], *y_taps(rows, idx))  # (B, L, S')
        wx = _scatter_taps(probs.shape[-1], *x_taps(cols.expand(len(idx), -1), idx))  # (B, W, S')
        window = (wy @ probs[idx]) @ wx.transpose(1, 2)  # (B, L, W)
        if threshold is not None:
            window = window > threshold
        yield idx, rows, window
