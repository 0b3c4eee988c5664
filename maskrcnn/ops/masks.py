"""Instance masks: COCO segmentations to bitmaps, bitmaps to RLE, mask targets and mask pasting.

Shapes: M instance masks (M, H, W) at image size; R RoIs with boxes (R, 4) xyxy pixels; D detections
with predicted probabilities (D, 1, S, S) at the head's resolution S (28); an image is H x W.

All resampling here is separable: bilinear interpolation, RoIAlign's bin averages and grid sampling
of an axis-aligned box each act on rows and columns independently, so a box's result is
``Wy @ mask @ Wx^T`` with small per-box interpolation matrices Wy (rows) and Wx (columns). Boxes are
processed together in chunks (sorted by size) with batched matmuls, never with a Python loop over boxes:
mask targets read only each box's window of its mask; pasting computes only the image rows a box
covers (over the full width, so whole rows can be copied into place without a per-pixel index).

- ``paste_masks_in_image(method="torchvision")`` equals torchvision's ``paste_masks_in_image``: the
  S x S mask padded by one zero pixel, the box enlarged by (S + 2) / S and truncated to integers, the
  padded mask bilinearly resized (align_corners=False) to the integer box size (x2 - x1 + 1) and placed.
- ``method="grid_sample"`` is detectron2's: each pixel centre inside the image is mapped into the
  S x S grid through the float box and sampled bilinearly with zero padding (``F.grid_sample``,
  align_corners=False); more accurate (no integer rounding of the box).
- ``crop_and_resize_masks`` equals torchvision's ``project_masks_on_boxes``: ``roi_align`` of the
  float mask with the box, spatial_scale 1, adaptive sampling (ceil(box size / S) points per bin),
  aligned=False.
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence, Union

import numpy as np
import pycocotools.mask as mask_utils
import torch

__all__ = [
    "annotation_to_mask",
    "crop_and_resize_masks",
    "mask_to_rle",
    "masks_to_rles",
    "paste_masks_in_image",
    "rle_counts_from_string",
]

PASTE_METHODS = ("torchvision", "grid_sample")
_CHUNK_ELEMENTS = 1 << 24  # bound on a chunk's (boxes x window rows x window columns) work buffer


# --------------------------------------------------------------------------------------------
# COCO segmentations -> bitmaps, bitmaps -> RLE


def rle_counts_from_string(counts: Union[str, bytes]) -> np.ndarray:
    """Run lengths (int64) from COCO's compressed RLE string (6 bits a character, offset 48, runs after
    the second stored as differences to the run two before)."""
    if isinstance(counts, str):
        counts = counts.encode("ascii", errors="replace")
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if c.min() < 0 or c.max() > 63:
        raise ValueError("compressed RLE counts contain characters outside the encoding's range")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("compressed RLE counts are truncated (last value unfinished)")
    ends = np.flatnonzero(~more)  # index of each value's last character
    starts = np.concatenate([[0], ends[:-1] + 1])
    group = np.repeat(np.arange(ends.size), ends - starts + 1)  # value index of each character
    k = np.arange(c.size) - starts[group]  # position of the character within its value
    if k.max() > 11:
        raise ValueError("compressed RLE counts hold a value too large for any image")
    values = np.zeros(ends.size, dtype=np.int64)
    np.add.at(values, group, (c & 0x1F) << (5 * k))
    negative = (c[ends] & 0x10) != 0  # sign bit of each value's last character
    values[negative] -= np.int64(1) << (5 * (ends - starts + 1)[negative])
    counts_out = values.copy()
    counts_out[1::2] = np.cumsum(values[1::2])  # odd runs: differences from two before, from run 1 on
    if values.size > 2:
        counts_out[2::2] = np.cumsum(values[2::2])  # even runs from run 2 on (run 0 is absolute)
    return counts_out


def _decode_counts(counts: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 from run lengths (column-major, starting with a run of zeros)."""
    if counts.size and counts.min() < 0:
        raise ValueError("RLE counts contain a negative run length")
    total = int(counts.sum())
    if total != height * width:
        raise ValueError(f"RLE counts cover {total} pixels, the mask has {height}x{width}={height * width}")
    values = (np.arange(counts.size) % 2).astype(np.uint8)
    flat = np.repeat(values, counts)
    return np.ascontiguousarray(flat.reshape(width, height).T)  # column-major runs -> (H, W)


def _check_rle_size(size, height: int, width: int) -> None:
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"RLE 'size' must be [height, width], got {size!r}")
    if int(size[0]) != height or int(size[1]) != width:
        raise ValueError(f"RLE size {list(size)} does not match the image size [{height}, {width}]")


def annotation_to_mask(segmentation, height: int, width: int) -> torch.Tensor:
    """A COCO ``segmentation`` (polygons, compressed RLE or uncompressed RLE) as an (H, W) uint8 mask.

    Polygons with fewer than 3 points are dropped (as detectron2 does); raises ValueError when nothing
    valid remains or the RLE is malformed, so that callers can skip the annotation with a reason.
    """
    height, width = int(height), int(width)
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            raise ValueError("RLE segmentation needs 'counts' and 'size'")
        _check_rle_size(segmentation["size"], height, width)
        counts = segmentation["counts"]
        if isinstance(counts, (str, bytes)):
            runs = rle_counts_from_string(counts)
        elif isinstance(counts, (list, tuple)):
            if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in counts):
                raise ValueError("uncompressed RLE counts must be integers")
            runs = np.asarray(counts, dtype=np.int64)
        else:
            raise ValueError(f"RLE counts must be a string or a list, got {type(counts).__name__}")
        return torch.from_numpy(_decode_counts(runs, height, width))
    if isinstance(segmentation, (list, tuple)):
        polygons = []
        for poly in segmentation:
            if not isinstance(poly, (list, tuple)) or len(poly) % 2:
                raise ValueError("a polygon must be a flat list [x1, y1, x2, y2, ...] of even length")
            if len(poly) < 6:
                continue  # a point or a line covers no area
            coords = np.asarray(poly, dtype=np.float64)
            if not np.isfinite(coords).all():
                raise ValueError("polygon coordinates must be finite numbers")
            polygons.append(coords.tolist())
        if not polygons:
            raise ValueError("segmentation has no polygon with at least 3 points")
        with warnings.catch_warnings():  # pycocotools' numpy 2 DeprecationWarning is not ours to show
            warnings.simplefilter("ignore", DeprecationWarning)
            rles = mask_utils.frPyObjects(polygons, height, width)
            decoded = mask_utils.decode(mask_utils.merge(rles))
        return torch.from_numpy(np.ascontiguousarray(decoded))
    raise ValueError(
        f"segmentation must be a list of polygons or an RLE dict, got {type(segmentation).__name__}"
    )


# Masks converted per pycocotools call: bounds the temporary (n, W, H) copy to ~128 MB whatever the
# image size (100 full-size masks of a 12-megapixel photo are 1.2 GB).
_RLE_CHUNK_PIXELS = 1 << 27


def masks_to_rles(masks: torch.Tensor) -> list:
    """COCO compressed RLE dicts ({"size": [H, W], "counts": str}) for (D, H, W) masks (> 0 is on)."""
    if masks.dim() != 3:
        raise ValueError(f"masks must be (D, H, W), got shape {tuple(masks.shape)}")
    d, h, w = masks.shape
    per_call = max(1, _RLE_CHUNK_PIXELS // max(h * w, 1))
    out = []
    for start in range(0, d, per_call):
        chunk = masks[start : start + per_call]
        chunk = chunk if chunk.dtype == torch.bool else chunk > 0
        # pycocotools reads (H, W, n) uint8 in Fortran order, which is (n, W, H) in C order: one
        # transposing copy, then a zero-copy view (bool and uint8 share their byte layout)
        cwh = chunk.transpose(1, 2).contiguous().cpu().view(torch.uint8)  # (n, W, H)
        array = cwh.numpy().transpose(2, 1, 0)  # (H, W, n), Fortran-contiguous
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            rles = mask_utils.encode(array)
        out.extend({"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
                   for r in rles)
    return out


def mask_to_rle(mask: torch.Tensor) -> dict:
    """COCO compressed RLE ({"size": [H, W], "counts": str}) of one (H, W) mask."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(mask.shape)}")
    return masks_to_rles(mask[None])[0]


# --------------------------------------------------------------------------------------------
# Separable resampling machinery


def _scatter_taps(n_cols: int, taps: Sequence[tuple]) -> torch.Tensor:
    """Dense interpolation matrices (B, L, n_cols) from taps [(index (B, L, T), weight (B, L, T)), ...];
    out-of-range indices must carry zero weight (they are clamped)."""
    index0, weight0 = taps[0]
    out = weight0.new_zeros(index0.shape[0], index0.shape[1], n_cols)
    for index, weight in taps:
        out.scatter_add_(2, index.clamp(0, n_cols - 1), weight)
    return out


def _window_starts(lo: torch.Tensor, length: int, size: int) -> torch.Tensor:
    """Start of a ``length``-long window beginning at ``lo`` but kept inside [0, size): the extra pixels
    a window then covers get zero weight, so writing or reading them is harmless."""
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


# --------------------------------------------------------------------------------------------
# Mask targets (RoIAlign of the ground-truth masks)


def _roi_align_axis(start, end, out_size: int, n_pixels: int, sampling_ratio: int):
    """1-D RoIAlign taps (aligned=False, spatial scale 1) for R boxes along one axis.

    Returns (index (R, out, 2G), weight (R, out, 2G)) of source pixels, where G samples per bin are
    averaged; samples outside [-1, n] contribute nothing, as in RoIAlign's bilinear_interpolate."""
    extent = (end - start).clamp(min=1.0)  # (R,)
    bin_size = extent / out_size
    if sampling_ratio > 0:
        grid = torch.full_like(extent, float(sampling_ratio))
    else:
        grid = torch.ceil(extent / out_size)  # adaptive: ceil(roi size / output size) samples per bin
    g_max = int(grid.max().item()) if grid.numel() else 1
    p = torch.arange(out_size, dtype=start.dtype, device=start.device)
    k = torch.arange(g_max, dtype=start.dtype, device=start.device)
    # Sample positions (R, out, G): bin start plus (k + 0.5) sub-steps of the bin.
    pos = (
        start[:, None, None]
        + p[None, :, None] * bin_size[:, None, None]
        + (k[None, None, :] + 0.5) * (bin_size / grid)[:, None, None]
    )
    used = (k[None, None, :] < grid[:, None, None]) & (pos >= -1.0) & (pos <= n_pixels)
    pos = pos.clamp(min=0.0)
    low = pos.floor().long()
    at_edge = low >= n_pixels - 1
    low = torch.where(at_edge, torch.full_like(low, n_pixels - 1), low)
    high = torch.where(at_edge, low, low + 1)
    pos = torch.where(at_edge, low.to(pos.dtype), pos)
    frac = pos - low.to(pos.dtype)
    scale = used.to(pos.dtype) / grid[:, None, None]  # average over the bin's samples
    index = torch.cat([low, high], dim=2)  # (R, out, 2G)
    weight = torch.cat([(1.0 - frac) * scale, frac * scale], dim=2)  # (R, out, 2G)
    return index, weight


def crop_and_resize_masks(
    masks: torch.Tensor,
    boxes: torch.Tensor,
    size: int,
    *,
    indices: Optional[torch.Tensor] = None,
    sampling_ratio: int = -1,
) -> torch.Tensor:
    """Mask targets: each box's region of its mask resampled to (size, size) floats in [0, 1].

    masks (M, H, W) uint8/bool/float; boxes (R, 4) xyxy in mask pixels; ``indices`` (R,) picks the
    mask of each box (default: box r uses mask r, R == M). Same values as torchvision's
    ``roi_align(masks[:, None], rois, (size, size), 1.0)`` (adaptive sampling, aligned=False).
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be (M, H, W), got shape {tuple(masks.shape)}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (R, 4), got shape {tuple(boxes.shape)}")
    if indices is None and boxes.shape[0] > 0:
        if boxes.shape[0] != masks.shape[0]:
            raise ValueError(f"{boxes.shape[0]} boxes for {masks.shape[0]} masks: pass indices")
        indices = torch.arange(boxes.shape[0], device=boxes.device)
    dtype = boxes.dtype if boxes.dtype.is_floating_point else torch.float32
    n_rois = boxes.shape[0]
    out = torch.zeros(n_rois, size, size, dtype=dtype, device=boxes.device)
    if n_rois == 0 or masks.shape[0] == 0:
        return out
    height, width = masks.shape[-2:]
    boxes = torch.nan_to_num(boxes.to(dtype), nan=0.0, posinf=1e8, neginf=-1e8)
    iy, wy = _roi_align_axis(boxes[:, 1], boxes[:, 3], size, height, sampling_ratio)  # (R, S, 2G)
    ix, wx = _roi_align_axis(boxes[:, 0], boxes[:, 2], size, width, sampling_ratio)
    # Each box touches rows lo_y..hi_y (and columns lo_x..hi_x) of its mask: only that window is read.
    big = torch.iinfo(torch.int64).max
    lo_y = torch.where(wy > 0, iy, big).amin(dim=(1, 2)).clamp(max=height - 1)
    hi_y = torch.where(wy > 0, iy, -1).amax(dim=(1, 2)).clamp(min=0)
    lo_x = torch.where(wx > 0, ix, big).amin(dim=(1, 2)).clamp(max=width - 1)
    hi_x = torch.where(wx > 0, ix, -1).amax(dim=(1, 2)).clamp(min=0)
    len_y = (hi_y - lo_y + 1).clamp(min=1)
    len_x = (hi_x - lo_x + 1).clamp(min=1)
    for chunk in _chunks(len_y * len_x):
        ly, lx = int(len_y[chunk].max()), int(len_x[chunk].max())
        y0 = _window_starts(lo_y[chunk], ly, height)  # (B,)
        x0 = _window_starts(lo_x[chunk], lx, width)
        ay = _scatter_taps(ly, [(iy[chunk] - y0[:, None, None], wy[chunk])])  # (B, S, ly)
        ax = _scatter_taps(lx, [(ix[chunk] - x0[:, None, None], wx[chunk])])  # (B, S, lx)
        rows = y0[:, None] + torch.arange(ly, device=boxes.device)  # (B, ly)
        cols = x0[:, None] + torch.arange(lx, device=boxes.device)  # (B, lx)
        flat_rows = (indices[chunk][:, None] * height + rows) * width  # (B, ly)
        window = masks.reshape(-1)[flat_rows[:, :, None] + cols[:, None, :]].to(dtype)  # (B, ly, lx)
        out[chunk] = ay @ window @ ax.transpose(1, 2)  # (B, S, S)
    return out


# --------------------------------------------------------------------------------------------
# Pasting predicted masks into the image


def _torchvision_axis(lo_box: torch.Tensor, hi_box: torch.Tensor, n_in: int, n_pixels: int):
    """Window and 1-D bilinear taps for torchvision's paste along one axis.

    lo_box, hi_box (D,) int64: the enlarged, truncated box. The padded mask (n_in cells) is resized to
    n_out = max(hi - lo + 1, 1) pixels placed from pixel lo; pixels [max(lo, 0), min(hi + 1, n)) are
    written. Returns (first pixel, window length, fn(positions (B, L), box indices (B,)) -> taps)."""
    n_out = (hi_box - lo_box + 1).clamp(min=1)
    first = lo_box.clamp(min=0)
    last = torch.minimum(hi_box + 1, torch.full_like(hi_box, n_pixels))  # exclusive
    length = (last - first).clamp(min=0)

    def taps(pos: torch.Tensor, idx: torch.Tensor):
        j = pos - lo_box[idx, None]  # (B, L) index into the resized box
        valid = (pos >= first[idx, None]) & (pos < last[idx, None])
        # PyTorch's bilinear resize (align_corners=False), in float32 as its CPU kernel computes it.
        ratio = (torch.tensor(float(n_in), dtype=torch.float32) / n_out[idx].to(torch.float32))[:, None]
        src = (ratio * (j.to(torch.float32) + 0.5) - 0.5).clamp(min=0.0)
        i0 = src.floor().long().clamp(max=n_in - 1)
        l1 = (src - i0.to(torch.float32)).clamp(0.0, 1.0)
        i1 = torch.where(i0 < n_in - 1, i0 + 1, i0)
        same = n_out[idx, None] == n_in  # an identity resize copies exactly
        l1 = torch.where(same, torch.zeros_like(l1), l1)
        v = valid.to(torch.float32)
        return [(i0[..., None], ((1.0 - l1) * v)[..., None]), (i1[..., None], (l1 * v)[..., None])]

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
        i0 = src.floor().long()
        l1 = src - i0.to(torch.float32)
        i1 = i0 + 1
        w0 = (1.0 - l1) * ((i0 >= 0) & (i0 < n_in) & ok).to(torch.float32)
        w1 = l1 * ((i1 >= 0) & (i1 < n_in) & ok).to(torch.float32)
        return [(i0[..., None], w0[..., None]), (i1[..., None], w1[..., None])]

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
    height, width = int(image_size[0]), int(image_size[1])
    n_det = mask_probs.shape[0]
    device = mask_probs.device
    out_dtype = torch.bool if threshold is not None else torch.float32
    out = _zeros(n_det, height, width, dtype=out_dtype, device=device)
    if n_det == 0 or height == 0 or width == 0:
        return out
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
    # batched matmuls; whole rows are then copied into place (a cheap row index, no per-pixel index).
    nonempty = torch.nonzero((y_len > 0) & (x_len > 0)).flatten()
    if nonempty.numel() == 0:
        return out
    out_rows = out.view(n_det * height, width)  # (D*H, W)
    cols = torch.arange(width, device=device)
    for chunk in _chunks(y_len[nonempty] * width):
        idx = nonempty[chunk]
        ly = int(y_len[idx].max())
        y0 = _window_starts(y_first[idx], ly, height)  # (B,)
        rows = y0[:, None] + torch.arange(ly, device=device)  # (B, ly) image rows of each window
        wy = _scatter_taps(probs.shape[-2], y_taps(rows, idx))  # (B, ly, S')
        wx = _scatter_taps(probs.shape[-1], x_taps(cols.expand(len(idx), -1), idx))  # (B, W, S')
        window = (wy @ probs[idx]) @ wx.transpose(1, 2)  # (B, ly, W)
        if threshold is not None:
            window = window > threshold
        flat_rows = idx[:, None] * height + rows  # (B, ly) rows of the (D*H, W) view
        out_rows.index_copy_(0, flat_rows.reshape(-1), window.reshape(-1, width))
    return out
