"""Map detections from the resized image the model saw back to the original image.

Shapes: D detections, M mask resolution (28), J keypoints, H x W the original image.

Boxes and keypoints are scaled per axis by original / input size (torchvision's
``GeneralizedRCNNTransform.postprocess``), then the M x M mask probabilities are pasted into the
original image inside the rescaled boxes and thresholded into ``masks`` (D, H, W) bool, or, with
``mask_format="rle"``, encoded straight into ``masks_rle``: D COCO RLE dicts ({"size": [H, W],
"counts": str}) equal to the RLE of those masks, without an image-sized mask ever existing (a 48 MP
photo's 100 dense masks would take 4.8 GB). The one caller
in the library is ``Predictor`` (``predictor.py``), the path every command takes.
"""

from __future__ import annotations

import torch

MASK_FORMATS = ("dense", "rle")


def _ratios(from_hw, to_hw) -> tuple:
    # (ratio_w, ratio_h) float32 scalars to_size / from_size, computed in float32 as torchvision does, so
    # that boxes agree bit for bit
    ratio_h = torch.tensor(float(to_hw[0]), dtype=torch.float32) / torch.tensor(float(from_hw[0]),
                                                                              dtype=torch.float32)
    ratio_w = torch.tensor(float(to_hw[1]), dtype=torch.float32) / torch.tensor(float(from_hw[1]),
                                                                              dtype=torch.float32)
    return ratio_w, ratio_h


def box_scale(from_hw, to_hw, like: torch.Tensor) -> torch.Tensor:
    """(4,) the factors mapping xyxy boxes of an image of size ``from_hw`` onto one of ``to_hw`` (on
    ``like``'s device, in its dtype): what ``detections_to_original`` multiplies boxes by, bit for bit."""
    ratio_w, ratio_h = _ratios(from_hw, to_hw)
    return torch.stack([ratio_w, ratio_h, ratio_w, ratio_h]).to(like.device, like.dtype)


def scale_keypoints(keypoints: torch.Tensor, from_hw, to_hw) -> torch.Tensor:
    """(D, J, 3) keypoints (x, y, v) of an image of size ``from_hw`` -> a new tensor of them on one of
    ``to_hw``: x and y scaled by the factors boxes are scaled by (``box_scale``), v unchanged (plain
    prediction's and test-time augmentation's keypoints, ``engine/tta.py``, mapped back alike)."""
    ratio_w, ratio_h = _ratios(from_hw, to_hw)
    out = keypoints.clone()
    out[..., 0] *= ratio_w.to(out.device)
    out[..., 1] *= ratio_h.to(out.device)
    return out


def detections_to_original(
    det: dict,
    input_size_hw,
    original_size_hw,
    *,
    paste_masks: bool = True,
    mask_threshold: float = 0.5,
    paste_method: str = "torchvision",
    mask_format: str = "dense",
) -> dict:
    """A new dict: ``boxes`` / ``keypoints`` rescaled, ``masks`` (D, H, W) bool (``mask_format``
    "dense") or ``masks_rle`` (list of D RLE dicts, "rle") added when pasted."""
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
    out = dict(det)
    boxes = det["boxes"]
    scale = box_scale(input_size_hw, original_size_hw, boxes)  # (4,) [ratio_w, ratio_h, ratio_w, ratio_h]
    out["boxes"] = boxes * scale
    if "keypoints" in det:
        out["keypoints"] = scale_keypoints(det["keypoints"], input_size_hw, original_size_hw)
    if paste_masks and "mask_probs" in det:
        from maskrcnn.ops.paste import paste_masks_as_rles, paste_masks_in_image

        h, w = int(original_size_hw[0]), int(original_size_hw[1])
        paste = paste_masks_as_rles if mask_format == "rle" else paste_masks_in_image
        out["masks_rle" if mask_format == "rle" else "masks"] = paste(
            det["mask_probs"], out["boxes"], (h, w), method=paste_method, threshold=mask_threshold
        )
    return out
