"""RoIPool (Fast R-CNN max pooling over quantised bins) with torchvision's semantics and a hand-written
backward that routes each output gradient to the input element it took its maximum from.

Shape glossary:
    N, C, H, W   feature batch, channels, height, width
    R            RoIs
    PH, PW       pooled output size
    BH, BW       largest bin height / width (in feature pixels) in a chunk of RoIs

Box corners are rounded (half away from zero) after scaling, the RoI size is ``end - start + 1``
(at least 1), bin ``p`` spans ``[floor(p * bin), ceil((p + 1) * bin))`` clipped to the map, an empty
bin outputs 0, and ties keep the first maximum in row-major order.

The max over a bin is separable: first over the bin's rows for every column of the RoI (gathered
from a channels-last view), then over the bin's columns. RoIs are sorted by size and processed in
chunks of bounded memory. The flat index of each maximum is kept for the backward scatter.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
from torch import Tensor

from .roi_align import BoxesArg, check_pool_input, check_roi_boxes, chunk_bounds

__all__ = ["roi_pool"]

_CHUNK_ELEMENTS = 1 << 22


def _round_half_away(x: Tensor) -> Tensor:
    """C's ``round``: halves go away from zero (torch.round goes to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _bins(start: Tensor, end: Tensor, pooled: int, extent: int, dt: torch.dtype):
    """Per-RoI bin bounds along one axis: (R,) rounded corners -> (R, P) start and end (exclusive)."""
    size = (end - start + 1).clamp(min=1).to(dt)  # (R,)
    bin_size = size / pooled
    p = torch.arange(pooled, device=start.device, dtype=dt)
    lo = torch.floor(p[None, :] * bin_size[:, None]).to(torch.long) + start[:, None]  # (R, P)
    hi = torch.ceil((p[None, :] + 1) * bin_size[:, None]).to(torch.long) + start[:, None]
    return lo.clamp(0, extent), hi.clamp(0, extent)


class _RoIPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input: Tensor, rois: Tensor, output_size: Tuple[int, int], spatial_scale: float):
        n, c, h, w = input.shape
        ph, pw = output_size
        r = rois.shape[0]
        dev = input.device
        dt = torch.float64 if input.dtype == torch.float64 else torch.float32
        ctx.input_shape, ctx.input_dtype = (n, c, h, w), input.dtype
        ctx.channels_last = (input.is_contiguous(memory_format=torch.channels_last)
                             and not input.is_contiguous())
        out = torch.zeros((r, ph, pw, c), dtype=dt, device=dev)
        argmax = torch.full((r, ph, pw, c), -1, dtype=torch.long, device=dev)
        ctx.argmax = argmax
        if r == 0 or input.numel() == 0:
            return out.permute(0, 3, 1, 2).to(input.dtype)
        coords = rois[:, 1:].to(dt) * spatial_scale
        finite = torch.isfinite(coords).all(dim=1)  # non-finite boxes get empty bins (zeros)
        coords = torch.where(finite[:, None], coords, torch.full_like(coords, -1e9))
        corners = _round_half_away(coords).clamp(-(2**40), 2**40).to(torch.long)  # (R, 4)
        ys, ye = _bins(corners[:, 1], corners[:, 3], ph, h, dt)  # (R, PH)
        xs, xe = _bins(corners[:, 0], corners[:, 2], pw, w, dt)  # (R, PW)
        bh_r = (ye - ys).clamp(min=0).amax(dim=1)  # (R,) tallest bin
        bw_r = (xe - xs).clamp(min=0).amax(dim=1)
        x0 = xs[:, 0]
        lx_r = (xe.amax(dim=1) - x0).clamp(min=0)  # (R,) columns spanned by the RoI's bins
        batch = rois[:, 0].to(torch.long)
        feat = input.to(dt).permute(0, 2, 3, 1).reshape(n * h * w, c)  # (N*H*W, C) channels-last rows
        # Separable max: over each bin's rows for every column (stage 1), then over the bin's columns.
        # RoIs sorted by stage-1 volume so that chunks pad little; chunks bounded in elements.
        cost = bh_r.clamp(min=1) * lx_r.clamp(min=1)  # (R,)
        order = torch.argsort(cost)
        chunks = chunk_bounds(cost[order] * (ph * c), _CHUNK_ELEMENTS, bh_r[order], bw_r[order], lx_r[order])
        cols_all = torch.arange(w, device=dev)
        for begin, end, bh, bw, lx in chunks:
            sel = order[begin:end]
            m = end - begin
            # rows past a bin's end repeat its last row: the max is unchanged and, coming later,
            # never wins a tie (first occurrence), so no masking pass is needed
            rows = torch.minimum(ys[sel, :, None] + torch.arange(bh, device=dev), ye[sel, :, None] - 1)
            rows = rows.clamp(0, h - 1)  # (n, PH, BH)
            cols = x0[sel, None] + cols_all[:lx]  # (n, Lx)
            flat = (batch[sel, None, None, None] * (h * w) + rows[..., None] * w
                    + cols.clamp(max=w - 1)[:, None, None, :])  # (n, PH, BH, Lx)
            vals = feat.index_select(0, flat.reshape(-1)).view(m, ph, bh, lx, c)  # (n, PH, BH, Lx, C)
            v1, a1 = vals.max(dim=2)  # (n, PH, Lx, C): column maxima, first (topmost) row on ties
            del vals
            row1 = torch.gather(rows, 2, a1.flatten(2)).view(m, ph, lx, c)  # map row of each maximum

            cidx = (xs[sel] - x0[sel, None])[:, :, None] + torch.arange(bw, device=dev)  # (n, PW, BW)
            col_ok = (cidx + x0[sel, None, None]) < xe[sel, :, None]
            cidx = cidx.clamp(max=lx - 1)  # column within the RoI's window
            gidx = cidx.reshape(m, 1, pw * bw, 1).expand(m, ph, pw * bw, c)
            v2 = torch.gather(v1, 2, gidx).view(m, ph, pw, bw, c)  # (n, PH, PW, BW, C)
            v2 = v2.masked_fill(~col_ok[:, None, :, :, None], float("-inf"))
            best, a2 = v2.max(dim=3)  # (n, PH, PW, C): the leftmost column on ties
            col_abs = (cidx + x0[sel, None, None]).clamp(max=w - 1)  # (n, PW, BW)
            win_col = torch.gather(cidx[:, None, :, :, None].expand(m, ph, pw, bw, c), 3, a2[..., None])
            win_col = win_col.view(m, ph, pw, c)  # window column of each maximum
            pos = torch.gather(row1, 2, win_col) * w + (win_col + x0[sel, None, None, None]).clamp(max=w - 1)
            # torchvision keeps the first maximum in row-major order: a tie between columns whose
            # maxima sit on different rows can prefer a later column; fix those few entries
            empty = (ye[sel] <= ys[sel])[:, :, None] | (xe[sel] <= xs[sel])[:, None, :]  # (n, PH, PW)
            no_max = empty[..., None] | (best == float("-inf"))
            # (a bin without a maximum, e.g. one clipped off the map, is no tie: all its columns are -inf)
            tied = ((v2 == best[:, :, :, None]).sum(dim=3) > 1) & ~no_max
            if bool(tied.any()):
                i0, i1, i2, i3 = torch.nonzero(tied, as_tuple=True)
                cand_rows = row1[i0, i1, :, i3].gather(1, cidx[i0, i2])  # (T, BW)
                cand_key = cand_rows * w + col_abs[i0, i2]
                ok = (v2[i0, i1, i2, :, i3] == best[i0, i1, i2, i3][:, None]) & col_ok[i0, i2]
                big = torch.full_like(cand_key, 2**62)
                pos[i0, i1, i2, i3] = torch.where(ok, cand_key, big).amin(dim=1)
            out[sel] = torch.where(empty[..., None], torch.zeros_like(best),
                                   best.clamp(min=-torch.finfo(torch.float32).max))
            src = (batch[sel, None, None, None] * (h * w) + pos) * c + torch.arange(c, device=dev)
            argmax[sel] = torch.where(no_max, torch.full_like(src, -1), src)
        return out.permute(0, 3, 1, 2).contiguous().to(input.dtype)  # (R, C, PH, PW)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        n, c, h, w = ctx.input_shape
        dt = torch.float64 if ctx.input_dtype == torch.float64 else torch.float32
        # flat channels-last gradient plus one spare slot that collects the bins without a maximum
        grad_feat = torch.zeros(n * h * w * c + 1, dtype=dt, device=grad_output.device)
        idx = ctx.argmax.reshape(-1)  # (R*PH*PW*C,)
        idx = torch.where(idx >= 0, idx, torch.full_like(idx, n * h * w * c))
        g = grad_output.to(dt).permute(0, 2, 3, 1).reshape(-1)  # same order as argmax
        grad_feat.scatter_add_(0, idx, g)
        grad_input = grad_feat[:-1].view(n, h, w, c).permute(0, 3, 1, 2)
        if not ctx.channels_last:
            grad_input = grad_input.contiguous()
        return grad_input.to(ctx.input_dtype), None, None, None


def roi_pool(input: Tensor, boxes: BoxesArg, output_size: Union[int, Sequence[int]],
             spatial_scale: float = 1.0) -> Tensor:
    """RoIPool: (N, C, H, W), boxes (Tensor[K, 5] or list of Tensor[L, 4]) -> (K, C, PH, PW)."""
    ph, pw = check_pool_input(input, output_size, "roi_pool")
    rois = check_roi_boxes(boxes, input.shape[0], "roi_pool").to(device=input.device)
    return _RoIPoolFunction.apply(input, rois, (ph, pw), float(spatial_scale))
