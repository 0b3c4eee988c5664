"""Two conventions of detectron2 and MMDetection that ours does not share, bridged in the weights.

- Input channels: both feed BGR images to the stem; ours takes RGB, so the stem conv's input channels
  are reversed (``stem_bgr_to_rgb``).
- Class rows: both put the background LAST in the classifier (K + 1 rows) and have no background slot
  in the box deltas (4K rows) or the mask predictor (K channels); ours has background first everywhere
  (``background_first``: the last score row moves to row 0, zero slots go in front of the deltas and the
  mask logits, never used: predictions are read for labels >= 1 only).

Keys are ours (already renamed). Shapes: K object classes; ``num_classes`` counts K + 1.
"""

from __future__ import annotations

import torch

from maskrcnn.interop.torchvision import ConversionError

__all__ = ["background_first", "stem_bgr_to_rgb"]


def stem_bgr_to_rgb(ours: dict) -> None:
    """Reverses the stem conv's input channels, in place: (C, 3, kh, kw) BGR -> RGB."""
    key = "backbone.stem.conv1.conv.weight"
    if key in ours:  # a missing stem is reported by the key check
        ours[key] = ours[key][:, [2, 1, 0]].contiguous()


def _with_zero_slot(t: torch.Tensor, rows: int) -> torch.Tensor:
    """``rows`` zero rows in front: the background slot the other framework does not have."""
    return torch.cat([t.new_zeros((rows,) + tuple(t.shape[1:])), t])


def background_first(ours: dict, num_classes: int, source: str, class_agnostic_mask: bool = False) -> None:
    """Background last -> background first (ours), in place, in scores, box deltas and mask logits;
    ConversionError naming ``source`` when the rows do not fit ``num_classes``."""
    for name in ("weight", "bias"):
        key = f"roi_heads.box_predictor.cls_score.{name}"
        if key in ours:
            t = ours[key]
            ours[key] = torch.cat([t[-1:], t[:-1]])
        key = f"roi_heads.box_predictor.bbox_pred.{name}"
        if key in ours:
            rows = ours[key].shape[0]
            if rows == 4 and num_classes > 2:
                # Class-agnostic box regression (detectron2's CLS_AGNOSTIC_BBOX_REG, mmdet's
                # reg_class_agnostic): one set of deltas for all classes. Ours is class-specific: the same
                # 4 rows for every class decode exactly alike.
                ours[key] = ours[key].repeat((num_classes - 1,) + (1,) * (ours[key].dim() - 1))
            elif rows != 4 * (num_classes - 1):
                raise ConversionError(
                    f"{source}: roi_heads.box_predictor.bbox_pred has {rows} rows for {num_classes - 1} "
                    f"classes; expected {4 * (num_classes - 1)} (4 per class) or 4 (class-agnostic)")
            ours[key] = _with_zero_slot(ours[key], 4)
        key = f"roi_heads.mask_head.predictor.{name}"
        if key in ours and not class_agnostic_mask:  # class-agnostic mask: one channel, no slot to add
            channels = ours[key].shape[0]
            if channels != num_classes - 1:
                raise ConversionError(
                    f"{source}: roi_heads.mask_head.predictor has {channels} channels for {num_classes - 1} "
                    f"classes; expected {num_classes - 1} (one per class) or 1 (class-agnostic)")
            ours[key] = _with_zero_slot(ours[key], 1)
