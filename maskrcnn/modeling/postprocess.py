"""Map detections from the resized image the model saw back to the original image.

Shapes: D detections, M mask resolution (28), J keypoints, H x W the original image.

Boxes and keypoints are scaled per axis by original / input size (torchvision's
``GeneralizedRCNNTransform.postprocess``), then the M x M mask probabilities are pasted into the
original image inside the rescaled boxes and thresholded into ``masks`` (D, H, W) bool. The one caller
in the library is ``Predictor`` (``predictor.py``), the path every command takes.
"""

from __future__ import annotations

import torch


def detections_to_original(
    det: dict,
    input_size_hw,
    original_size_hw,
    *,
    paste_masks: bool = True,
    mask_threshold: float = 0.5,
    paste_method: str = "torchvision",
) -> dict:
    """A new dict: ``boxes`` / ``keypoints`` rescaled, ``masks`` (D, H, W) bool added when pasted."""
    out = dict(det)
    boxes = det["boxes"]
    # ratios computed in float32 as torchvision does, so boxes agree bit for bit
    ratio_h = torch.tensor(float(original_size_hw[0]), dtype=torch.float32) / torch.tensor(
        float(input_size_hw[0]), dtype=torch.float32)
    ratio_w = torch.tensor(float(original_size_hw[1]), dtype=torch.float32) / torch.tensor(
        float(input_size_hw[1]), dtype=torch.float32)
    scale = torch.stack([ratio_w, ratio_h, ratio_w, ratio_h]).to(boxes.device, boxes.dtype)
    out["boxes"] = boxes * scale
    if "keypoints" in det:
        kps = det["keypoints"].clone()
        kps[..., 0] *= ratio_w.to(kps.device)
        kps[..., 1] *= ratio_h.to(kps.device)
        out["keypoints"] = kps
    if paste_masks and "mask_probs" in det:
        from maskrcnn.ops.paste import paste_masks_in_image

        h, w = int(original_size_hw[0]), int(original_size_hw[1])
        out["masks"] = paste_masks_in_image(
            det["mask_probs"], out["boxes"], (h, w), method=paste_method, threshold=mask_threshold
        )
    return out
