"""RoIAlign (He et al., 2017) with torchvision's exact semantics and a hand-written backward.

Shape glossary:
    N        images in the feature batch
    C        channels
    H, W     feature map height and width
    R        RoIs
    PH, PW   pooled output height and width
    S        sample points enumerated along one axis of one RoI
    Ly, Lx   rows / columns of the feature window read for one RoI
    Ky, Kx   rows / columns of nonzero weight of one bin (inference path)

Each output bin averages ``gh x gw`` bilinear samples. The bilinear weight of a sample factorises into
a row part and a column part, and so does the ``1 / (gh * gw)`` average, so for one RoI

    out[c] = Ay @ F[c, rows, cols] @ Bx^T

where ``Ay`` (PH, Ly) holds the summed row weights of each bin's samples and ``Bx`` (PW, Lx) the
column weights. The RoI's window is gathered once from a channels-last view of the map and both
contractions are batched matrix products (BLAS, all cores): ``Ay`` over the (Ly, Lx*C) window, then
``Bx`` per (RoI, bin row) over (Lx, C), so the bins land in (PH, PW, C) order with no transposition
and the output is returned in channels_last memory. The backward pass is the transpose:
``grad_window = Ay^T @ grad_out @ Bx`` scattered back with ``index_add_``. The window is either the
contiguous range of rows touched by the samples or, when that is longer, the list of sample taps
itself (two per sample, duplicates allowed), so a huge box never reads more than twice its samples
and samples outside ``[-1, H]`` (which contribute 0, as in torchvision) are never enumerated.
RoIs are grouped by window shape (a chunk pads its windows to its largest Ly and Lx) and processed
in chunks of bounded memory, padding included. The sampling itself (where each bin's samples fall,
their bilinear taps, the windows and chunks) is ``sampling.RoIAlignPlan``, shared with the mask
targets (``mask_targets.crop_and_resize_masks``).

The autograd path (``roi_align_levels``, and ``roi_align`` as its one-map case) pools the RoIs of
several maps (FPN levels) as one autograd node: one plan for all RoIs, each level's chunks reading
that level's rows, every chunk's bins written straight into their output rows.

Performance note: a channels_last feature map is read in place and gets a channels_last gradient;
a contiguous (NCHW) map costs one layout copy in forward and one in backward. A consumer that needs
channel-major rows (the box head's ``flatten``) pays one transposition forward and one backward.

Inference (no gradient needed) takes another route, ``_roi_align_taps``: each bin is the weighted sum
of its own taps, the (rows x columns) of nonzero weight, ``Ky x Kx <= 4 x 4`` with two samples per
bin, computed by one ``embedding_bag`` over the map's (N*H*W, C) rows per chunk of RoIs and written
straight into the output. It moves far less memory than gathering windows (a chunk's windows are
padded to its largest RoI, then multiplied as dense matrices), and it pools the RoIs of several maps
with one plan (MultiScaleRoIAlign). The backward pass needs the window plan, so training keeps it.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .sampling import AxisPlan, RoIAlignPlan

__all__ = ["roi_align", "roi_align_into", "roi_align_levels", "convert_boxes_to_roi_format",
           "check_roi_boxes"]

BoxesArg = Union[Tensor, Sequence[Tensor]]

# Elements of one gathered (n, Ly, Lx, C) window batch, padding included: bounds memory whatever the
# box sizes. 1 << 20 measured alike; 1 << 18 slower (per-chunk overhead of many small chunks).
_CHUNK_ELEMENTS = 1 << 22
# Most padding a window chunk may carry: its padded windows over the RoIs' own, in elements.
_CHUNK_WASTE = 1.25
# Elements of one inference chunk: its (n*PH*PW, C) bins plus its taps' index and weight buffers.
# A few MB: the buffers stay in cache and are recycled by the allocator, where fresh buffers of tens
# of MB would cost a page fault every 4 KiB on first touch.
_TAP_CHUNK_ELEMENTS = 1 << 20


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise ValueError(f"output_size must be an int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def convert_boxes_to_roi_format(boxes: Sequence[Tensor]) -> Tensor:
    """List of per-image (Li, 4) boxes -> (sum Li, 5) rows ``(batch_index, x1, y1, x2, y2)``."""
    if len(boxes) == 0:
        return torch.zeros((0, 5))
    dtype, device = boxes[0].dtype, boxes[0].device
    idx = torch.cat([torch.full((b.shape[0], 1), i, dtype=dtype, device=device) for i, b in enumerate(boxes)])
    return torch.cat((idx, torch.cat([b.to(dtype) for b in boxes])), dim=1)  # (sum Li, 5)


def check_pool_input(input: Tensor, output_size: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    """Validate a pooling op's feature map and output size; returns (PH, PW)."""
    if not isinstance(input, Tensor) or input.dim() != 4:
        got = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
        raise ValueError(f"{name}: input must be a Tensor (N, C, H, W), got {got}")
    if not input.is_floating_point():
        raise ValueError(f"{name}: input must be floating point, got {input.dtype}")
    ph, pw = _pair(output_size)
    if ph <= 0 or pw <= 0:
        raise ValueError(f"{name}: output_size must be positive, got {(ph, pw)}")
    return ph, pw


def check_roi_boxes(boxes: BoxesArg, num_images: int, name: str) -> Tensor:
    """Validate ``boxes`` (Tensor[K, 5] or list of Tensor[L, 4]) and return the (K, 5) form."""
    if isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
                shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise ValueError(f"{name}: boxes[{i}] must be a Tensor[L, 4], got {shape}")
        if len(boxes) > num_images:
            raise ValueError(f"{name}: {len(boxes)} box lists for a batch of {num_images} images")
        rois = convert_boxes_to_roi_format(boxes)
    elif isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"{name}: boxes must be Tensor[K, 5] (batch_index, x1, y1, x2, y2) "
                             f"or a list of Tensor[L, 4], got shape {tuple(boxes.shape)}")
        rois = boxes
        if rois.shape[0] > 0:
            bidx = rois[:, 0]
            bad = ~torch.isfinite(bidx) | (bidx < 0) | (bidx >= num_images) | (bidx != torch.floor(bidx))
            if bool(bad.any()):
                raise ValueError(f"{name}: batch indices in boxes[:, 0] must be integers in "
                                 f"[0, {num_images}), got {bidx[bad][:5].tolist()}")
    else:
        raise ValueError(f"{name}: boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], "
                         f"got {type(boxes).__name__}")
    return rois


def chunk_bounds(sorted_cost: Tensor, budget: int, *sizes: Tensor) -> List[Tuple[int, ...]]:
    """Cut RoIs (already sorted by cost) into consecutive chunks of about ``budget`` elements.

    sorted_cost: (R,) elements one RoI needs; sizes: (R,) per-RoI window sizes whose chunk maximum
    the caller pads to. Returns ``(begin, end, max size 0, max size 1, ...)`` per chunk. A RoI larger
    than the budget gets a chunk of its own.
    """
    if sorted_cost.numel() == 0:
        return []
    start = torch.cumsum(sorted_cost, 0) - sorted_cost  # (R,) elements before each RoI
    chunk_id = torch.div(start, budget, rounding_mode="floor")
    _, counts = torch.unique_consecutive(chunk_id, return_counts=True)
    ends = torch.cumsum(counts, 0)
    seg = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)  # (R,)
    maxima = [torch.zeros(counts.numel(), dtype=s.dtype, device=s.device).scatter_reduce_(
        0, seg, s, reduce="amax") for s in sizes]  # (chunks,) each
    rows = zip((ends - counts).tolist(), ends.tolist(), *[m.clamp(min=1).tolist() for m in maxima])
    return [tuple(int(v) for v in row) for row in rows]


def _on_empty_map(maps: Sequence[Tensor], level: Tensor) -> Tensor:
    """(R,) bool: the RoIs whose map has no cells (they pool to zeros and take no part in a plan)."""
    return torch.tensor([m.numel() == 0 for m in maps], device=level.device)[level]


def _plan_over_maps(maps: Sequence[Tensor], level: Tensor, rois: Tensor, output_size: Tuple[int, int],
                    spatial_scales: Sequence[float], sampling_ratio: int, aligned: bool) -> RoIAlignPlan:
    """One sampling plan for RoIs spread over several maps, RoI i on ``maps[level[i]]`` (per-RoI map
    sizes and scales), computed in float64 when a map is float64, else float32. Planning is many
    small ops: one plan for all maps costs far less than one per map with a few RoIs each."""
    dev = rois.device
    dt = torch.float64 if any(m.dtype == torch.float64 for m in maps) else torch.float32
    height = torch.tensor([m.shape[2] for m in maps], device=dev)[level]  # (R,)
    width = torch.tensor([m.shape[3] for m in maps], device=dev)[level]
    scale = torch.tensor([float(v) for v in spatial_scales], dtype=dt, device=dev)[level]
    return RoIAlignPlan(rois, height, width, output_size, scale, sampling_ratio, aligned, dt)


def _bin_taps(axis: AxisPlan) -> Tuple[Tensor, Tensor, Tensor]:
    """Each bin's taps of nonzero weight along one axis, packed to the front.

    Returns rows (R, P, K) int64, weights (R, P, K) and (R,) the most taps any bin of the RoI has;
    K is the most over all RoIs. Padding taps read row 0 with weight 0.
    """
    w = axis.weights  # (R, P, L)
    used = w != 0
    count = used.sum(dim=2)  # (R, P)
    k = max(int(count.max()), 1)
    # slot of each used tap among its bin's used taps; unused ones go to a spare column, cut below
    slot = torch.where(used, torch.cumsum(used, dim=2) - 1, k)  # (R, P, L)
    shape = (w.shape[0], w.shape[1], k + 1)
    rows = torch.zeros(shape, dtype=torch.long, device=w.device)
    rows.scatter_(2, slot, axis.index[:, None, :].expand_as(w))
    weights = torch.zeros(shape, dtype=w.dtype, device=w.device).scatter_(2, slot, w)
    return rows[:, :, :k], weights[:, :, :k], count.amax(dim=1)


def _roi_align_taps(out: Tensor, out_rows: Tensor, maps: Sequence[Tensor], level: Tensor, rois: Tensor,
                    output_size: Tuple[int, int], spatial_scales: Sequence[float], sampling_ratio: int,
                    aligned: bool) -> None:
    """Forward only, no autograd: ``out[out_rows[i]]`` = RoI ``i`` pooled from ``maps[level[i]]``.

    out: (K', C, PH, PW); out_rows, level: (R,) int64; rois: (R, 5); maps: (N, C, Hl, Wl) each.
    Each bin is the weighted sum of its own taps (rows x columns of nonzero weight): one
    ``embedding_bag`` over the map's (N*H*W, C) channels-last rows per chunk. Unlike the window path
    it reads nothing it does not use (a chunk's windows are mostly padding once RoIs of different
    shapes share it), writes no window copy, and puts each chunk's bins straight into their final
    place. One plan serves all maps: planning is many small ops, costly next to a level's few RoIs.
    """
    ph, pw = output_size
    empty = _on_empty_map(maps, level)  # (R,)
    if bool(empty.any()):  # nothing to sample: zeros
        out.index_fill_(0, out_rows[empty], 0)
        keep = ~empty
        out_rows, level, rois = out_rows[keep], level[keep], rois[keep]
    if rois.shape[0] == 0:
        return
    c = maps[0].shape[1]
    plan = _plan_over_maps(maps, level, rois, output_size, spatial_scales, sampling_ratio, aligned)
    dt, height, width = plan.y.weights.dtype, plan.height, plan.width  # (R,) map sizes
    rows, wy, ky = _bin_taps(plan.y)  # (R, PH, Ky), (R, PH, Ky), (R,)
    cols, wx, kx = _bin_taps(plan.x)  # (R, PW, Kx), (R, PW, Kx), (R,)
    # flat index of each tap row's column 0 in its map's (N*H*W) rows
    rows = (plan.batch * height * width)[:, None, None] + rows * width[:, None, None]
    cost = ph * pw * (c + 4 * ky * kx)  # (R,) bins plus index/weight buffers
    # Order RoIs by map, then by taps (each chunk pads its RoIs to its largest bin), then by position
    # (row-major flat index of the first tap): overlapping RoIs follow each other and find their
    # feature rows still in cache.
    order = torch.argsort(rows[:, 0, 0] + cols[:, 0, 0])
    order = order[torch.argsort(cost[order], stable=True)]
    order = order[torch.argsort(level[order], stable=True)]
    rows, wy, cols, wx, dest = rows[order], wy[order], cols[order], wx[order], out_rows[order]
    cost, ky, kx = cost[order], ky[order], kx[order]
    begin = 0
    for lv, count in enumerate(torch.bincount(level, minlength=len(maps)).tolist()):
        if count == 0:
            continue
        feat = maps[lv].to(dt).permute(0, 2, 3, 1).reshape(-1, c).contiguous()  # (N*H*W, C)
        seg = slice(begin, begin + count)
        for b, e, kyc, kxc in chunk_bounds(cost[seg], _TAP_CHUNK_ELEMENTS, ky[seg], kx[seg]):
            b, e = b + begin, e + begin
            m = e - b
            # (n, PH, PW, Ky, Kx) map row and weight of every tap of every bin
            taps = rows[b:e, :, None, :kyc, None] + cols[b:e, None, :, None, :kxc]
            weights = wy[b:e, :, None, :kyc, None] * wx[b:e, None, :, None, :kxc]
            bins = F.embedding_bag(taps.view(m * ph * pw, kyc * kxc), feat, mode="sum",
                                   per_sample_weights=weights.view(m * ph * pw, kyc * kxc))  # (n*PH*PW, C)
            out.index_copy_(0, dest[b:e], bins.view(m, ph, pw, c).permute(0, 3, 1, 2).to(out.dtype))
        begin += count


def _check_maps(maps: Sequence[Tensor], scales: Sequence[float],
                output_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """Validate several maps pooled together (one scale each, same batch and channels): (PH, PW)."""
    if len(scales) != len(maps):
        raise ValueError(f"roi_align: {len(scales)} spatial scales for {len(maps)} feature maps")
    ph, pw = check_pool_input(maps[0], output_size, "roi_align")
    for m in maps[1:]:
        check_pool_input(m, output_size, "roi_align")
        if m.shape[:2] != maps[0].shape[:2]:
            raise ValueError(f"roi_align: maps differ in batch or channels: {tuple(m.shape)} vs "
                             f"{tuple(maps[0].shape)}")
    return ph, pw


def roi_align_into(out: Tensor, out_rows: Tensor, maps: Union[Tensor, Sequence[Tensor]], rois: Tensor,
                   output_size: Union[int, Sequence[int]], spatial_scale: Union[float, Sequence[float]] = 1.0,
                   sampling_ratio: int = -1, aligned: bool = False, level: Optional[Tensor] = None) -> None:
    """``out[out_rows] = roi_align(maps, rois, ...)`` without autograd and without a temporary.

    out: (K', C, PH, PW); out_rows: (K,) int64 distinct rows of ``out``; rois: Tensor[K, 5]. ``maps``
    may be a list of (N, C, Hl, Wl) maps with one ``spatial_scale`` each, ``level`` (K,) int64 then
    naming each RoI's map (MultiScaleRoIAlign at inference: all levels in one call).
    """
    maps = [maps] if isinstance(maps, Tensor) else list(maps)
    scales = list(spatial_scale) if isinstance(spatial_scale, (list, tuple)) else [spatial_scale]
    ph, pw = _check_maps(maps, scales, output_size)
    rois = check_roi_boxes(rois, maps[0].shape[0], "roi_align").to(device=maps[0].device)
    if level is None:
        level = torch.zeros(rois.shape[0], dtype=torch.long, device=rois.device)
    _no_grad_taps(out, out_rows, maps, level, rois, (ph, pw), scales, sampling_ratio, aligned)


def _no_grad_taps(out: Tensor, out_rows: Tensor, maps: List[Tensor], level: Tensor, rois: Tensor,
                  output_size: Tuple[int, int], scales: Sequence[float], sampling_ratio: int,
                  aligned: bool) -> None:
    # autocast would lower the index/weight arithmetic: the op computes in float32/float64 itself
    with torch.autocast(device_type=rois.device.type, enabled=False), torch.no_grad():
        _roi_align_taps(out, out_rows, maps, level, rois, output_size, [float(v) for v in scales],
                        int(sampling_ratio), bool(aligned))


def _map_is_channels_last(m: Tensor) -> bool:
    return m.is_contiguous(memory_format=torch.channels_last) and not m.is_contiguous()


class _RoIAlignLevels(torch.autograd.Function):
    """RoIAlign of RoIs spread over several maps (FPN levels) as one autograd node.

    Inputs: rois (R, 5), level (R,) int64 map of each RoI, then the maps (N, C, Hl, Wl) themselves (so
    that autograd hands back one gradient per map). One plan covers all RoIs; each level's chunks read
    that level's channels-last rows and write straight into the output's rows. Output (R, C, PH, PW)
    in channels_last memory, i.e. (R, PH, PW, C) rows: the layout both contractions produce without
    a transposition (see ``_forward``).
    """

    @staticmethod
    def forward(ctx, rois: Tensor, level: Tensor, output_size: Tuple[int, int],
                spatial_scales: Tuple[float, ...], sampling_ratio: int, aligned: bool,
                *maps: Tensor) -> Tensor:
        # autocast would run the matmuls in low precision: the op computes in float32/float64 itself
        with torch.autocast(device_type=rois.device.type, enabled=False):
            return _RoIAlignLevels._forward(ctx, rois, level, output_size, spatial_scales, sampling_ratio,
                                            aligned, maps)

    @staticmethod
    def _forward(ctx, rois: Tensor, level: Tensor, output_size: Tuple[int, int],
                 spatial_scales: Tuple[float, ...], sampling_ratio: int, aligned: bool,
                 maps: Sequence[Tensor]) -> Tensor:
        ph, pw = output_size
        c = maps[0].shape[1]
        dt = torch.float64 if any(m.dtype == torch.float64 for m in maps) else torch.float32
        ctx.map_shapes = [tuple(m.shape) for m in maps]
        ctx.map_dtypes = [m.dtype for m in maps]
        ctx.channels_last = [_map_is_channels_last(m) for m in maps]
        empty = _on_empty_map(maps, level)  # (R,) pool to zeros, not planned
        dest = None  # output row of each planned RoI, None when all are planned
        out = torch.empty((rois.shape[0], ph, pw, c), dtype=dt, device=rois.device)  # (R, PH, PW, C)
        if bool(empty.any()):
            out.zero_()
            dest = torch.nonzero(~empty).flatten()
            rois, level = rois[dest], level[dest]
        ctx.plan, ctx.dest = None, dest
        if rois.shape[0] > 0:
            plan = _plan_over_maps(maps, level, rois, output_size, spatial_scales, sampling_ratio, aligned)
            plan.plan_windows(c, budget=_CHUNK_ELEMENTS, waste=_CHUNK_WASTE, level=level,
                              num_levels=len(maps))
            ctx.plan = plan
            for lv, chunks in enumerate(plan.level_chunks):
                if not chunks:
                    continue
                feat = maps[lv].to(dt).permute(0, 2, 3, 1).reshape(-1, c)  # (N*H*W, C) channels-last rows
                for begin, end, ly, lx in chunks:
                    sel, flat, ay, bx = plan.chunk(begin, end, ly, lx)
                    m = sel.shape[0]
                    win = feat.index_select(0, flat).view(m, ly, lx * c)  # (n, Ly, Lx*C)
                    t = torch.bmm(ay, win).view(m * ph, lx, c)  # (n*PH, Lx, C)
                    # the x contraction per (RoI, bin row): lands in (PH, PW, C) order, no transposition
                    bx_rows = bx[:, None].expand(m, ph, pw, lx).reshape(m * ph, pw, lx)  # (n*PH, PW, Lx)
                    rows = sel if dest is None else dest[sel]
                    out.index_copy_(0, rows, torch.bmm(bx_rows, t).view(m, ph, pw, c))
        # (R, C, PH, PW) view of the (R, PH, PW, C) rows: channels_last memory
        return out.permute(0, 3, 1, 2).to(maps[0].dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        with torch.autocast(device_type=grad_output.device.type, enabled=False):
            grads = _RoIAlignLevels._backward(ctx, grad_output)
        return (None,) * 6 + tuple(grads)

    @staticmethod
    def _backward(ctx, grad_output: Tensor) -> List[Optional[Tensor]]:
        """The forward's transpose: ``grad_window = Ay^T @ grad_out @ Bx`` per chunk, added into each
        level's (N*H*W, C) rows. Levels without RoIs get no gradient (None)."""
        plan, dest = ctx.plan, ctx.dest
        grads: List[Optional[Tensor]] = [None] * len(ctx.map_shapes)
        if plan is None:
            return grads
        dt = plan.y.weights.dtype
        grad = grad_output.to(dt)
        _, c, ph, pw = grad.shape
        # (R, PH, PW, C) rows, as the forward returned them; a gradient that arrives NCHW (a flattening
        # head) is transposed a chunk at a time instead (cache-sized; a whole-tensor transposition
        # measured slower)
        grad_rows = grad.permute(0, 2, 3, 1) if _map_is_channels_last(grad) else None
        for lv, chunks in enumerate(plan.level_chunks):
            if not chunks:
                continue
            n, _, h, w = ctx.map_shapes[lv]
            grad_feat = torch.zeros((n * h * w, c), dtype=dt, device=grad.device)
            for begin, end, ly, lx in chunks:
                sel, flat, ay, bx = plan.chunk(begin, end, ly, lx)
                m = sel.shape[0]
                rows = sel if dest is None else dest[sel]
                if grad_rows is not None:
                    g = grad_rows.index_select(0, rows).view(m, ph, pw * c)  # (n, PH, PW*C)
                else:
                    g = grad.index_select(0, rows).permute(0, 2, 3, 1).reshape(m, ph, pw * c)
                t = torch.bmm(ay.transpose(1, 2), g).view(m * ly, pw, c)  # (n*Ly, PW, C)
                bxt_rows = bx.transpose(1, 2)[:, None].expand(m, ly, lx, pw).reshape(m * ly, lx, pw)
                gwin = torch.bmm(bxt_rows, t)  # (n*Ly, Lx, C): the window's rows in gather order
                grad_feat.index_add_(0, flat, gwin.view(m * ly * lx, c))
            grad_map = grad_feat.view(n, h, w, c).permute(0, 3, 1, 2)  # (N, C, H, W) view, channels-last
            if not ctx.channels_last[lv]:
                grad_map = grad_map.contiguous()
            grads[lv] = grad_map.to(ctx.map_dtypes[lv])
        return grads


def roi_align_levels(maps: Sequence[Tensor], rois: Tensor, level: Tensor,
                     output_size: Union[int, Sequence[int]], spatial_scales: Sequence[float],
                     sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """RoIAlign of each RoI on its own map, differentiable: -> (R, C, PH, PW) in channels_last memory.

    maps: (N, C, Hl, Wl) per level, one ``spatial_scales`` entry each; rois: Tensor[R, 5]; level: (R,)
    int64 map of each RoI. Row ``i`` equals ``roi_align(maps[level[i]], rois[i:i+1], ...)``. The result
    is channels_last (strides of (R, PH, PW, C)): use ``reshape``, not ``view``, to flatten it.
    """
    maps = list(maps)
    ph, pw = _check_maps(maps, spatial_scales, output_size)
    rois = check_roi_boxes(rois, maps[0].shape[0], "roi_align").to(device=maps[0].device)
    level = level.to(device=rois.device, dtype=torch.long)
    if level.shape != (rois.shape[0],):
        raise ValueError(f"roi_align: level must be ({rois.shape[0]},), got {tuple(level.shape)}")
    return _RoIAlignLevels.apply(rois, level, (ph, pw), tuple(float(s) for s in spatial_scales),
                                 int(sampling_ratio), bool(aligned), *maps)


def roi_align(input: Tensor, boxes: BoxesArg, output_size: Union[int, Sequence[int]],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """RoIAlign: (N, C, H, W) features, boxes -> (K, C, PH, PW), exactly as torchvision computes it.

    boxes: Tensor[K, 5] rows ``(batch_index, x1, y1, x2, y2)`` or a list of per-image Tensor[L, 4],
    in input-image coordinates (multiplied by ``spatial_scale``). ``sampling_ratio <= 0`` samples
    ``ceil(roi_size / output_size)`` points per bin; ``aligned=True`` shifts boxes by -0.5 pixel
    (detectron2's convention), ``aligned=False`` clamps RoI sizes to >= 1. Boxes with non-finite
    coordinates, and inverted boxes in aligned adaptive mode, pool to zeros. float16/bfloat16 inputs
    are computed in float32 and returned in their own dtype. With autograd the result is in
    channels_last memory (see ``roi_align_levels``), without it contiguous.
    """
    ph, pw = check_pool_input(input, output_size, "roi_align")
    rois = check_roi_boxes(boxes, input.shape[0], "roi_align")
    rois = rois.to(device=input.device)
    if not (torch.is_grad_enabled() and (input.requires_grad or rois.requires_grad)):
        # no gradient needed: the forward-only path (see _roi_align_taps), several times faster
        r = rois.shape[0]
        out = input.new_empty((r, input.shape[1], ph, pw))
        all_rows = torch.arange(r, device=input.device)
        _no_grad_taps(out, all_rows, [input], torch.zeros_like(all_rows), rois, (ph, pw), [spatial_scale],
                      sampling_ratio, aligned)
        return out
    level = torch.zeros(rois.shape[0], dtype=torch.long, device=rois.device)
    return _RoIAlignLevels.apply(rois, level, (ph, pw), (float(spatial_scale),), int(sampling_ratio),
                                 bool(aligned), input)
