"""Mask targets: each RoI's region of its ground-truth mask resampled to S x S by RoIAlign.

Shapes: M instance masks (M, H, W) at image size; R RoIs with boxes (R, 4) xyxy in mask pixels;
S the target resolution (28); n RoIs of one chunk, Ly x Lx the mask window a RoI reads.

The sampling is RoIAlign's own plan (``sampling.RoIAlignPlan``, the one ``roi_align`` pools features
with), applied to one-channel maps: a RoI's target is ``Ay @ mask[rows, cols] @ Bx^T``. Only each
RoI's window of its mask is read, in the mask's own dtype (uint8 / bool), so a batch of full-image
masks is never copied to float; RoIs of similar window shape are processed together by batched
matmuls, in chunks of bounded memory.
"""

from __future__ import annotations

from typing import Optional

import torch

from .sampling import RoIAlignPlan

__all__ = ["crop_and_resize_masks"]

_CHUNK_ELEMENTS = 1 << 24  # mask cells of one chunk's gathered windows, padding included
_CHUNK_WASTE = 1.25  # most padding a chunk may carry: padded windows over the RoIs' own


def crop_and_resize_masks(
    masks: torch.Tensor,
    boxes: torch.Tensor,
    size: int,
    *,
    indices: Optional[torch.Tensor] = None,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """Mask targets: each box's region of its mask resampled to (size, size) floats in [0, 1].

    masks (M, H, W) uint8/bool/float; boxes (R, 4) xyxy in mask pixels; ``indices`` (R,) picks the
    mask of each box (default: box r uses mask r, R == M). Equals
    ``roi_align(masks[:, None], rois, (size, size), 1.0, sampling_ratio, aligned)[:, 0]``
    (torchvision's ``project_masks_on_boxes`` with the defaults: adaptive sampling, aligned=False);
    boxes with non-finite coordinates give zeros.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be (M, H, W), got shape {tuple(masks.shape)}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (R, 4), got shape {tuple(boxes.shape)}")
    if indices is None and boxes.shape[0] > 0:
        if boxes.shape[0] != masks.shape[0]:
            raise ValueError(f"{boxes.shape[0]} boxes for {masks.shape[0]} masks: pass indices")
        indices = torch.arange(boxes.shape[0], device=boxes.device)
    out_dtype = boxes.dtype if boxes.dtype.is_floating_point else torch.float32
    dt = torch.float64 if out_dtype == torch.float64 else torch.float32  # computation dtype
    n_rois = boxes.shape[0]
    out = torch.zeros(n_rois, size, size, dtype=out_dtype, device=boxes.device)
    if n_rois == 0 or masks.numel() == 0:
        return out
    height, width = masks.shape[-2:]
    rois = torch.cat([indices[:, None].to(dt), boxes.to(dt)], dim=1)  # (R, 5)
    plan = RoIAlignPlan(rois, height, width, (size, size), 1.0, int(sampling_ratio), bool(aligned), dt)
    plan.plan_windows(1, budget=_CHUNK_ELEMENTS, waste=_CHUNK_WASTE)
    cells = masks.reshape(-1)  # (M*H*W,)
    for begin, end, ly, lx in plan.chunks:
        sel, flat, ay, bx = plan.chunk(begin, end, ly, lx)  # ay (n, S, Ly), bx (n, S, Lx)
        window = cells[flat].view(-1, ly, lx).to(dt)  # (n, Ly, Lx)
        out[sel] = (ay @ window @ bx.transpose(1, 2)).to(out_dtype)  # (n, S, S)
    return out
