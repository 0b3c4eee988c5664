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

Each bin's maximum is a running maximum over its offsets in row-major order: one row of C channels
per bin gathered from a channels-last view at each step, all bins of a chunk of RoIs at once (RoIs
sorted by bin area, chunks bounded in work). The flat index of each maximum is kept for the backward
scatter.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
from torch import Tensor

from .roi_align import BoxesArg, check_pool_input, check_roi_boxes, chunk_bounds

__all__ = ["roi_pool"]

_CHUNK_ELEMENTS = 1 << 20  # bins x channels x offsets of one chunk (a few MB a step)


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
    def forward(ctx, input: Tensor, rois: Tensor, output_size: Tuple[int, int], spatial_scale: float,
                track: bool):
        n, c, h, w = input.shape
        ph, pw = output_size
        r = rois.shape[0]
        dev = input.device
        dt = torch.float64 if input.dtype == torch.float64 else torch.float32
        ctx.input_shape, ctx.input_dtype = (n, c, h, w), input.dtype
        ctx.channels_last = (input.is_contiguous(memory_format=torch.channels_last)
                             and not input.is_contiguous())
        # track: keep where each maximum came from, for the backward (not when no gradient is recorded)
        if r == 0 or input.numel() == 0:
            ctx.order = torch.arange(r, device=dev)
            ctx.argmax = torch.zeros((r, ph, pw, c), dtype=torch.long, device=dev) if track else None
            return torch.zeros((r, c, ph, pw), dtype=input.dtype, device=dev)
        coords = rois[:, 1:].to(dt) * spatial_scale
        finite = torch.isfinite(coords).all(dim=1)  # non-finite boxes get empty bins (zeros)
        coords = torch.where(finite[:, None], coords, torch.full_like(coords, -1e9))
        corners = _round_half_away(coords).clamp(-(2**40), 2**40).to(torch.long)  # (R, 4)
        ys, ye = _bins(corners[:, 1], corners[:, 3], ph, h, dt)  # (R, PH)
        xs, xe = _bins(corners[:, 0], corners[:, 2], pw, w, dt)  # (R, PW)
        bh_r = (ye - ys).clamp(min=0).amax(dim=1)  # (R,) tallest bin
        bw_r = (xe - xs).clamp(min=0).amax(dim=1)  # (R,) widest bin
        batch = rois[:, 0].to(torch.long)
        feat = input.to(dt).permute(0, 2, 3, 1).reshape(n * h * w, c)  # (N*H*W, C) channels-last rows
        # RoIs sorted by bin area, chunks bounded in work (bins x channels x offsets), so that a chunk
        # pads its bins to sizes close to their own
        area = bh_r.clamp(min=1) * bw_r.clamp(min=1)  # (R,)
        order = torch.argsort(area)
        chunks = chunk_bounds(area[order] * (ph * pw * c), _CHUNK_ELEMENTS, bh_r[order], bw_r[order])
        # results in that order (each chunk a contiguous slice), put back in the RoIs' order at the end;
        # argmax stays sorted (the backward reads the output gradient in the same order): 1 + the flat
        # channels-last index of each maximum, 0 where a bin has none
        out = torch.empty((r, ph, pw, c), dtype=dt, device=dev)
        argmax = torch.empty((r, ph, pw, c), dtype=torch.long, device=dev) if track else None
        ctx.argmax, ctx.order = argmax, order
        lowest = -torch.finfo(torch.float32).max  # torchvision's starting maximum: -FLT_MAX
        # one spare row of -inf that offsets outside their bin read: never greater than the maximum. NaN
        # is never greater either (torchvision's ">"), so it is read as -inf: the same outcome
        feat = torch.cat((feat, feat.new_full((1, c), float("-inf"))))
        nan = torch.isnan(feat)
        if bool(nan.any()):
            feat.masked_fill_(nan, float("-inf"))
        outside = n * h * w
        # the map row of each maximum is tracked as a float: exact below 2**24 rows in float32
        track_dt = dt if outside < 2**24 else torch.float64
        for begin, end, bh, bw in chunks:
            sel = order[begin:end]
            m = end - begin
            y0, y1 = ys[sel][:, :, None], ye[sel][:, :, None]  # (n, PH, 1)
            x0, x1 = xs[sel][:, None, :], xe[sel][:, None, :]  # (n, 1, PW)
            base = batch[sel, None, None] * (h * w)  # (n, 1, 1)
            # the map row read at every offset of every bin, offsets first: (BH, BW, n, PH, PW)
            dy = torch.arange(bh, device=dev)[:, None, None, None, None]
            dx = torch.arange(bw, device=dev)[None, :, None, None, None]
            row, col = y0 + dy, x0 + dx
            flat = base + row.clamp(max=h - 1) * w + col.clamp(max=w - 1)
            flat = torch.where((row < y1) & (col < x1), flat, outside).view(bh * bw, -1)  # (BH*BW, n*PH*PW)
            best = out[begin:end].fill_(lowest)  # (n, PH, PW, C), in place
            if track:  # the map row of each maximum (-1: none yet), updated by the lerp below
                where_max = torch.full((m, ph, pw, c), -1.0, dtype=track_dt, device=dev)
                greater = torch.empty((m, ph, pw, c), dtype=track_dt, device=dev)
                rows_read = flat.to(track_dt).view(bh * bw, m, ph, pw, 1)
            # the offsets in row-major order, each taken only where strictly greater (torchvision's
            # rule): the first maximum in row-major order wins ties; a bin holding nothing greater than
            # -FLT_MAX (or nothing at all) keeps -FLT_MAX (0 when empty) and routes no gradient
            for k in range(bh * bw):
                vals = feat.index_select(0, flat[k]).view(m, ph, pw, c)
                if track:  # the row read where the value is greater: a 0/1 lerp, far cheaper than a
                    torch.gt(vals, best, out=greater)  # masked fill
                    where_max.lerp_(rows_read[k], greater)
                torch.maximum(best, vals, out=best)
            empty = (y1 <= y0) | (x1 <= x0)  # (n, PH, PW)
            if bool(empty.any()):  # empty bins pool to 0 (their maximum is still -FLT_MAX)
                torch.where(empty[..., None], best.new_zeros(()), best, out=best)
            if track:  # row -1 (no maximum) gives index 0 after the clamp
                index = where_max.long().mul_(c).add_(torch.arange(c, device=dev))
                torch.add(index.clamp_(min=-1), 1, out=argmax[begin:end])
        # back in the RoIs' order and in (R, C, PH, PW) layout, in one copy
        out = out.permute(0, 3, 1, 2).index_select(0, torch.argsort(order))
        return out.contiguous().to(input.dtype)  # (R, C, PH, PW)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        n, c, h, w = ctx.input_shape
        dt = torch.float64 if ctx.input_dtype == torch.float64 else torch.float32
        # flat channels-last gradient after one spare slot (index 0) that collects the bins without a
        # maximum; the output gradient read in the RoI order argmax was written in
        grad_feat = torch.zeros(n * h * w * c + 1, dtype=dt, device=grad_output.device)
        g = grad_output.to(dt).permute(0, 2, 3, 1).index_select(0, ctx.order)  # (R, PH, PW, C)
        grad_feat.scatter_add_(0, ctx.argmax.reshape(-1), g.reshape(-1))
        grad_input = grad_feat[1:].view(n, h, w, c).permute(0, 3, 1, 2)
        if not ctx.channels_last:
            grad_input = grad_input.contiguous()
        return grad_input.to(ctx.input_dtype), None, None, None, None


def roi_pool(input: Tensor, boxes: BoxesArg, output_size: Union[int, Sequence[int]],
             spatial_scale: float = 1.0) -> Tensor:
    """RoIPool: (N, C, H, W), boxes (Tensor[K, 5] or list of Tensor[L, 4]) -> (K, C, PH, PW)."""
    ph, pw = check_pool_input(input, output_size, "roi_pool")
    rois = check_roi_boxes(boxes, input.shape[0], "roi_pool").to(device=input.device)
    track = torch.is_grad_enabled() and input.requires_grad
    return _RoIPoolFunction.apply(input, rois, (ph, pw), float(spatial_scale), track)
