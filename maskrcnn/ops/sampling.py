"""Bilinear sampling along one axis, and RoIAlign's sampling plan built from it.

Shape glossary:
    R        RoIs (or boxes)
    P        output cells along the axis (pooled bins, mask cells or image pixels)
    S        sample points enumerated along one axis of one RoI
    L        window slots: source rows (or columns) one RoI reads

Every resampling op here is separable: RoIAlign's bin averages (feature pooling, mask targets),
PyTorch's bilinear resize and ``grid_sample`` (mask pasting) each act on rows and columns
independently. ``bilinear_taps`` is the one place that turns float sample positions (in source-cell
units, cell ``i`` centred at ``i``) into the two source cells each sample reads and their weights;
the ops differ only in their border rule:

    "roi_align"  samples outside [-1, n] read nothing; the rest are clamped into [0, n - 1], the last
                 cell read with weight 1 (torchvision's ``bilinear_interpolate``);
    "clamp"      PyTorch's bilinear resize (align_corners=False): positions clamped at 0 and the last
                 cell repeated past the end;
    "zeros"      ``grid_sample``'s zero padding: cells outside [0, n) read as 0.

``roi_align_axis`` lays out RoIAlign's samples along one axis and sums their taps into a per-RoI
(P, L) weight matrix over a window of source rows; ``RoIAlignPlan`` does both axes of a set of RoIs
and cuts them into chunks of similar window shape. ``roi_align`` (features, with a hand-written
backward) and ``crop_and_resize_masks`` (mask targets) both run on this plan, so they sample alike.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor

__all__ = ["BORDERS", "AxisPlan", "RoIAlignPlan", "bilinear_taps", "roi_align_axis"]

BORDERS = ("roi_align", "clamp", "zeros")


def bilinear_taps(pos: Tensor, n: Union[int, Tensor], *, border: str,
                  valid: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Linear interpolation taps of samples at ``pos`` (any shape) over ``n`` source cells.

    ``n``: an int or an int64 tensor broadcastable to ``pos`` (RoIs on maps of different sizes);
    ``valid``: optional bool mask of samples that exist at all (others get zero weight).
    Returns (low, high, w_low, w_high), each shaped like ``pos``: int64 cell indices, always in
    [0, n) for "roi_align" and "clamp" and possibly outside it (with zero weight) for "zeros".
    """
    dt = pos.dtype
    if border == "roi_align":
        ok = (pos >= -1.0) & (pos <= n)  # NaN -> False
        ok = ok if valid is None else ok & valid
        y = torch.where(ok, pos.clamp(min=0.0), torch.zeros_like(pos))
        low = y.floor().to(torch.long)  # y >= 0, so floor is C's truncation
        last = torch.as_tensor(n - 1, dtype=torch.long, device=pos.device)
        at_end = low >= last
        low = torch.where(at_end, last, low)
        high = torch.where(at_end, low, low + 1)
        y = torch.where(at_end, low.to(dt), y)
        frac = y - low.to(dt)
        zero = torch.zeros_like(frac)
        return low, high, torch.where(ok, 1.0 - frac, zero), torch.where(ok, frac, zero)
    if border == "clamp":
        # the arithmetic of PyTorch's CPU kernel (area_pixel_compute_source_index and friends)
        src = pos.clamp(min=0.0)
        low = src.floor().long().clamp(max=n - 1)
        frac = (src - low.to(dt)).clamp(0.0, 1.0)
        high = torch.where(low < n - 1, low + 1, low)
        w_low, w_high = 1.0 - frac, frac
        if valid is not None:
            w_low, w_high = w_low * valid.to(dt), w_high * valid.to(dt)
        return low, high, w_low, w_high
    if border == "zeros":
        low = pos.floor().long()
        frac = pos - low.to(dt)
        high = low + 1
        ok_low = (low >= 0) & (low < n)
        ok_high = (high >= 0) & (high < n)
        if valid is not None:
            ok_low, ok_high = ok_low & valid, ok_high & valid
        return low, high, (1.0 - frac) * ok_low.to(dt), frac * ok_high.to(dt)
    raise ValueError(f"border must be one of {BORDERS}, got {border!r}")


class AxisPlan:
    """Per-RoI sampling along one axis: the window (slot -> row) and the (R, P, L) weights."""

    __slots__ = ("index", "weights", "length")

    def __init__(self, index: Tensor, weights: Tensor, length: Tensor):
        self.index = index  # (R, L) int64 row (or column) of each window slot, always in range
        self.weights = weights  # (R, P, L) summed bilinear weights / samples per bin
        self.length = length  # (R,) slots actually used


def roi_align_axis(start: Tensor, size: Tensor, pooled: int, grid: Tensor,
                   extent: Union[int, Tensor]) -> AxisPlan:
    """RoIAlign's sampling plan along one axis.

    start, size: (R,) RoI start and size in feature coordinates (offset and clamp applied);
    grid: (R,) int64 samples per bin (0 means no sample); extent: map size along the axis (>= 1), an
    int or (R,) int64 when the RoIs come from maps of different sizes.
    Sample ``k = p * g + i`` sits at ``start + p * bin + (i + 0.5) * bin / g`` (torchvision's order of
    operations, so that samples landing exactly on -1 or ``extent`` are decided identically).
    The window is the contiguous range of rows touched by the samples or, when that is longer, the
    list of sample taps itself (two per sample), so a huge box never reads more than twice its samples.
    """
    r = start.shape[0]
    dev, dt = start.device, start.dtype
    ext = torch.as_tensor(extent, dtype=torch.long, device=dev).expand(r)  # (R,)
    ext_f = ext.to(dt)  # integers: exact in float32 below 2**24
    bin_size = size / pooled
    total = grid * pooled  # (R,) samples along the axis
    # Only samples inside [-1, extent] count: enumerate a range of k that covers them all.
    step = bin_size / grid.clamp(min=1).to(dt)
    span = torch.where(step != 0, (ext_f + 1.0) / step.abs(), torch.full_like(step, math.inf))
    n_enum = torch.minimum(total.to(dt), span.nan_to_num(math.inf).ceil() + 4).to(torch.long)  # (R,)
    first = torch.minimum((-1.0 - start) / step, (ext_f - start) / step) - 0.5
    first = torch.where(step != 0, first, torch.zeros_like(first)).nan_to_num(0.0, 0.0, 0.0)
    k_lo = first.clamp(min=-1.0, max=float(2**40)).floor().to(torch.long) - 2
    k_lo = torch.minimum(k_lo, total - n_enum).clamp(min=0)  # (R,)

    s_max = int(n_enum.max()) if r > 0 else 0
    s_max = max(s_max, 1)
    j = torch.arange(s_max, device=dev)
    k = k_lo[:, None] + j[None, :]  # (R, S)
    g = grid.clamp(min=1)[:, None]
    p = torch.div(k, g, rounding_mode="floor")  # (R, S) bin of each sample
    i = k - p * g
    pos = (start[:, None] + p.to(dt) * bin_size[:, None]) + ((i.to(dt) + 0.5) * bin_size[:, None]) / g.to(dt)
    # (R, S) samples that read something (bilinear_taps applies the same range rule)
    valid = (j[None, :] < n_enum[:, None]) & (pos >= -1.0) & (pos <= ext_f[:, None])  # NaN -> False
    low, high, w_low, w_high = bilinear_taps(pos, ext_f[:, None], border="roi_align", valid=valid)
    inv_g = 1.0 / g.to(dt)
    w_low, w_high = w_low * inv_g, w_high * inv_g  # average over the bin's samples

    # Window: contiguous rows [lo, hi] touched by valid samples, or the taps themselves if shorter.
    big = torch.full_like(low, 2**62)
    row_lo = torch.where(valid, low, big).amin(dim=1)  # (R,)
    row_hi = torch.where(valid, high, -big).amax(dim=1)
    any_valid = valid.any(dim=1)
    row_lo = torch.where(any_valid, row_lo, torch.zeros_like(row_lo))
    contiguous_len = torch.where(any_valid, row_hi - row_lo + 1, torch.ones_like(row_lo))
    taps_len = 2 * n_enum.clamp(min=1)
    use_window = contiguous_len <= taps_len  # (R,)
    length = torch.where(use_window, contiguous_len, taps_len)
    l_max = int(length.max()) if r > 0 else 1

    slot_w = torch.arange(l_max, device=dev)
    index = torch.where(use_window[:, None], row_lo[:, None] + slot_w[None, :],
                        torch.zeros((r, l_max), dtype=torch.long, device=dev))  # (R, L)
    # tap mode: slot 2j holds sample j's low row, slot 2j+1 its high row
    tap_rows = torch.stack((low, high), dim=2).reshape(r, 2 * s_max)  # (R, 2S)
    n_tap = min(2 * s_max, l_max)
    index[:, :n_tap] = torch.where(use_window[:, None], index[:, :n_tap], tap_rows[:, :n_tap])
    index = torch.minimum(index.clamp_(min=0), (ext - 1)[:, None])

    slot_low = torch.where(use_window[:, None], low - row_lo[:, None], 2 * j[None, :])  # (R, S)
    slot_high = torch.where(use_window[:, None], high - row_lo[:, None], 2 * j[None, :] + 1)
    p_safe = p.clamp(0, pooled - 1)
    flat = torch.cat((p_safe * l_max + slot_low.clamp(0, l_max - 1),
                      p_safe * l_max + slot_high.clamp(0, l_max - 1)), dim=1)  # (R, 2S)
    weights = torch.zeros((r, pooled * l_max), dtype=dt, device=dev)
    weights.scatter_add_(1, flat, torch.cat((w_low, w_high), dim=1))
    return AxisPlan(index, weights.view(r, pooled, l_max), length)


def _shape_order(ly: Tensor, lx: Tensor) -> Tensor:
    """Order RoIs by window shape: by ``Ly`` class (``Ly`` rounded up to 1/8 of its magnitude), then by
    ``Lx``, then by ``Ly``. A chunk pads every window to its largest ``Ly`` and ``Lx``: sorting by area
    alone would put a tall and a wide window of equal area in one chunk, padded to a square several
    times their size. ly, lx: (R,) int64 window lengths -> (R,) permutation."""
    # classes of width 2**(floor(log2 Ly) - 3): windows of one class differ by at most ~1/8 in Ly
    step = torch.exp2((torch.log2(ly.clamp(min=1).double()).floor() - 3).clamp(min=0)).long()
    ly_class = torch.div(ly + step - 1, step, rounding_mode="floor") * step  # (R,) Ly rounded up
    order = torch.argsort(ly, stable=True)
    order = order[torch.argsort(lx[order], stable=True)]
    return order[torch.argsort(ly_class[order], stable=True)]


def _window_chunks(ly: List[int], lx: List[int], channels: int, budget: int,
                   waste: float) -> List[Tuple[int, int, int, int]]:
    """Cut RoIs (in window-shape order) into consecutive chunks ``(begin, end, max Ly, max Lx)``.

    A chunk's gathered windows are ``n * max Ly * max Lx * channels`` elements: a chunk ends before the
    RoI that would take that padded size past ``budget`` or past ``waste`` times the RoIs' own
    windows. A RoI larger than the budget gets a chunk of its own.
    """
    chunks: List[Tuple[int, int, int, int]] = []
    begin, my, mx, real = 0, 0, 0, 0
    for i, (y, x) in enumerate(zip(ly, lx)):
        y, x = max(y, 1), max(x, 1)  # an empty window still reads (and pads to) one cell
        ny, nx = max(my, y), max(mx, x)
        padded = (i + 1 - begin) * ny * nx
        if i > begin and (padded * channels > budget or padded > waste * (real + y * x)):
            chunks.append((begin, i, my, mx))
            begin, ny, nx, real = i, y, x, 0
        my, mx, real = ny, nx, real + y * x
    if ly:
        chunks.append((begin, len(ly), my, mx))
    return chunks


class RoIAlignPlan:
    """RoIAlign's sampling of a set of RoIs: both axes' plans and, for the window path, the chunks.

    A RoI's output is ``Ay @ F[rows, cols] @ Bx^T`` with ``Ay = y.weights`` (PH, Ly) over the rows
    ``y.index`` and ``Bx = x.weights`` (PW, Lx) over the columns ``x.index`` of its map ``batch``.
    """

    def __init__(self, rois: Tensor, height: Union[int, Tensor], width: Union[int, Tensor],
                 pooled: Tuple[int, int], spatial_scale: Union[float, Tensor], sampling_ratio: int,
                 aligned: bool, dt: torch.dtype):
        """rois (R, 5) ``(batch_index, x1, y1, x2, y2)``; height, width, spatial_scale: of the map, or
        (R,) per RoI (RoIs from several maps); dt: the computation's float dtype."""
        rois = rois.to(dt)
        finite = torch.isfinite(rois[:, 1:]).all(dim=1)  # (R,) non-finite boxes pool to zero
        coords = torch.where(finite[:, None], rois[:, 1:], torch.zeros_like(rois[:, 1:]))
        offset = 0.5 if aligned else 0.0
        x1 = coords[:, 0] * spatial_scale - offset
        y1 = coords[:, 1] * spatial_scale - offset
        x2 = coords[:, 2] * spatial_scale - offset
        y2 = coords[:, 3] * spatial_scale - offset
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:
            roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
        ph, pw = pooled
        if sampling_ratio > 0:
            gh = torch.full(roi_h.shape, sampling_ratio, dtype=torch.long, device=rois.device)
            gw = gh.clone()
        else:
            # adaptive: ceil(roi / pooled); inverted boxes (aligned mode) get no samples
            gh = torch.ceil(roi_h / ph).clamp(min=0, max=2**40).to(torch.long)
            gw = torch.ceil(roi_w / pw).clamp(min=0, max=2**40).to(torch.long)
        gh = torch.where(finite, gh, torch.zeros_like(gh))
        gw = torch.where(finite, gw, torch.zeros_like(gw))
        self.y = roi_align_axis(y1, roi_h, ph, gh, height)
        self.x = roi_align_axis(x1, roi_w, pw, gw, width)
        self.batch = rois[:, 0].to(torch.long)
        self.height, self.width = height, width
        self.order: Tensor = self.batch  # set with the window chunks by plan_windows()
        self.chunks: List[Tuple[int, int, int, int]] = []
        self.level_chunks: List[List[Tuple[int, int, int, int]]] = []

    def plan_windows(self, channels: int, *, budget: int, waste: float, level: Optional[Tensor] = None,
                     num_levels: int = 1) -> None:
        """Window chunks: RoIs grouped by window shape so each chunk pads little, each chunk's padded
        windows at most ``budget`` elements (of ``channels`` each) and ``waste`` times their own.

        level: optional (R,) int64 map of each RoI (in ``[0, num_levels)``): RoIs are then ordered by
        map first, no chunk mixes maps, and ``level_chunks[l]`` lists map ``l``'s chunks (the RoIs of
        one map keep the order, and so the chunks, that a plan of those RoIs alone would give)."""
        self.order = _shape_order(self.y.length, self.x.length)
        if level is None:
            counts = [self.order.numel()]
        else:
            self.order = self.order[torch.argsort(level[self.order], stable=True)]
            counts = torch.bincount(level, minlength=num_levels).tolist()
        ly, lx = self.y.length[self.order].tolist(), self.x.length[self.order].tolist()
        self.level_chunks, begin = [], 0
        for count in counts:
            end = begin + count
            chunks = _window_chunks(ly[begin:end], lx[begin:end], channels, budget, waste)
            self.level_chunks.append([(b + begin, e + begin, my, mx) for b, e, my, mx in chunks])
            begin = end
        self.chunks = [c for chunks in self.level_chunks for c in chunks]

    def chunk(self, begin: int, end: int, ly: int, lx: int):
        """Window indices (n*Ly*Lx,) into the flattened (N*H*W) map of the chunk's RoIs and the
        chunk's weights: sel (n,) RoIs, flat (n*Ly*Lx,), Ay (n, PH, Ly), Bx (n, PW, Lx)."""
        sel = self.order[begin:end]
        rows = self.y.index[sel, :ly]  # (n, Ly)
        cols = self.x.index[sel, :lx]  # (n, Lx)
        # map sizes: ints, or (R,) per RoI when the RoIs come from maps of several sizes
        height = self.height[sel] if isinstance(self.height, Tensor) else self.height
        width = self.width[sel] if isinstance(self.width, Tensor) else self.width
        base = self.batch[sel] * (height * width)  # (n,) first row of each RoI's image
        width = width[:, None, None] if isinstance(width, Tensor) else width
        flat = base[:, None, None] + rows[:, :, None] * width + cols[:, None, :]  # (n, Ly, Lx)
        return sel, flat.reshape(-1), self.y.weights[sel, :, :ly], self.x.weights[sel, :, :lx]

