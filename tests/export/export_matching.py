"""Detections of two runs compared as the export acceptance says: by matching, not by position.

Greedy by decreasing reference score: a reference detection matches the unmatched other detection of
the same label with the highest box IoU, if that IoU is > 0.99. Random-weight models have many
near-equal scores whose order is float noise, so positions are not compared.
"""

from __future__ import annotations

import torch

from maskrcnn.ops import box_iou


def match(ref: dict, other: dict) -> dict:
    """-> {"matched": fraction of ref matched, "score_diff": worst |score| gap, "mask_iou": worst pasted
    mask IoU (1.0 without masks), "n_ref", "n_other"}."""
    n_ref, n_other = len(ref["boxes"]), len(other["boxes"])
    iou = box_iou(ref["boxes"], other["boxes"]) if n_ref and n_other else torch.zeros(n_ref, n_other)
    iou = iou * (ref["labels"][:, None] == other["labels"][None, :])
    taken = torch.zeros(n_other, dtype=torch.bool)
    matched, score_diff, mask_iou = 0, 0.0, 1.0
    for i in torch.argsort(ref["scores"], descending=True, stable=True).tolist():
        cand = iou[i].masked_fill(taken, -1.0)
        if n_other == 0 or float(cand.max()) <= 0.99:
            continue
        j = int(cand.argmax())
        taken[j] = True
        matched += 1
        score_diff = max(score_diff, abs(float(ref["scores"][i] - other["scores"][j])))
        if "masks" in ref:
            a, b = ref["masks"][i], other["masks"][j]
            union = int((a | b).sum())
            mask_iou = min(mask_iou, 1.0 if union == 0 else int((a & b).sum()) / union)
    return {"matched": matched / max(n_ref, 1), "score_diff": score_diff, "mask_iou": mask_iou,
            "n_ref": n_ref, "n_other": n_other}
