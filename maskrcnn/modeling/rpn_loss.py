"""RPN training targets and loss (pure functions; the RPN module calls ``rpn_losses``).

Shapes: N images, A anchors per image (all FPN levels concatenated), M ground-truth boxes of an image.

Per image: anchors are matched to gt by IoU (>= fg_iou_thresh positive, < bg_iou_thresh negative, in
between ignored, plus each gt's best anchors as low-quality positives); anchors near a crowd box are
ignored. ``batch_size_per_image`` anchors are sampled (at most ``positive_fraction`` positive) and the
losses are, as in torchvision:
    loss_rpn_cls = mean binary cross entropy over the sampled anchors of all images;
    loss_rpn_box = sum over positive anchors of smooth-L1(deltas - targets) / number of sampled anchors.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from maskrcnn.modeling.matcher import Matcher, match_boxes, sample_balanced


def box_regression_loss(pred: Tensor, target: Tensor, *, box_loss: str, smooth_l1_beta: float) -> Tensor:
    """Summed (not averaged) regression loss over rows; callers normalise."""
    if box_loss == "smooth_l1":
        return F.smooth_l1_loss(pred, target, beta=smooth_l1_beta, reduction="sum")
    if box_loss == "l1":
        return F.l1_loss(pred, target, reduction="sum")
    raise ValueError(f"box_loss must be 'smooth_l1' or 'l1', got {box_loss!r}")


def rpn_losses(
    anchors: List[Tensor],
    objectness: Tensor,
    pred_deltas: Tensor,
    gt_boxes: List[Tensor],
    *,
    gt_ignore: Optional[List[Tensor]] = None,
    box_coder,
    fg_iou_thresh: float = 0.7,
    bg_iou_thresh: float = 0.3,
    batch_size_per_image: int = 256,
    positive_fraction: float = 0.5,
    box_loss: str = "smooth_l1",
    smooth_l1_beta: float = 1.0 / 9.0,
    generator: Optional[torch.Generator] = None,
) -> Dict[str, Tensor]:
    """anchors: N x (A, 4); objectness (N, A) logits; pred_deltas (N, A, 4); gt_boxes: N x (M, 4)."""
    num_images = len(anchors)
    if objectness.shape[0] != num_images or pred_deltas.shape[:2] != objectness.shape:
        raise ValueError(
            f"rpn_losses: {num_images} anchor sets, objectness {tuple(objectness.shape)}, "
            f"pred_deltas {tuple(pred_deltas.shape)} do not agree"
        )
    matcher = Matcher(
        high_threshold=fg_iou_thresh, low_threshold=bg_iou_thresh, allow_low_quality_matches=True
    )

    # Targets are constants of the loss: no gradient flows through matching or encoding.
    with torch.no_grad():
        labels, pos_masks, neg_masks, targets = [], [], [], []
        for i in range(num_images):
            ignore = gt_ignore[i] if gt_ignore is not None else None
            gt = gt_boxes[i].to(anchors[i].dtype)
            matched = match_boxes(gt, anchors[i], matcher, gt_ignore=ignore)  # (A,)
            lab = torch.full_like(matched, -1)
            lab[matched >= 0] = 1
            lab[matched == Matcher.BELOW_LOW_THRESHOLD] = 0
            pos, neg = sample_balanced(
                lab,
                batch_size_per_image=batch_size_per_image,
                positive_fraction=positive_fraction,
                generator=generator,
            )
            labels.append(lab)
            pos_masks.append(pos)
            neg_masks.append(neg)
            # Encode only the positives: (P_i, 4) deltas of anchor -> its gt.
            targets.append(box_coder.encode(gt[matched[pos]], anchors[i][pos]))
        pos_mask = torch.stack(pos_masks)  # (N, A)
        sampled = pos_mask | torch.stack(neg_masks)  # (N, A)
        num_sampled = max(int(sampled.sum()), 1)
        reg_targets = torch.cat(targets).to(pred_deltas.dtype)  # (sum P_i, 4)

    # Boolean indexing keeps row order image by image, anchor by anchor, as the targets were built.
    loss_box = (
        box_regression_loss(
            pred_deltas[pos_mask], reg_targets, box_loss=box_loss, smooth_l1_beta=smooth_l1_beta
        )
        / num_sampled
    )
    obj_targets = pos_mask[sampled].to(objectness.dtype)  # (S,) 1 for positives, 0 for negatives
    loss_cls = (
        F.binary_cross_entropy_with_logits(objectness[sampled], obj_targets, reduction="sum") / num_sampled
    )
    return {"loss_rpn_cls": loss_cls, "loss_rpn_box": loss_box}
