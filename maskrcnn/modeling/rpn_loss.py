"""RPN training targets and loss (pure functions; the RPN module calls ``rpn_losses``).

Shapes: N images, A anchors per image (all FPN levels concatenated), M ground-truth boxes of an image.

Per image: anchors are matched to gt by IoU with the RPN's ``Matcher`` (>= high threshold positive,
< low threshold negative, in between ignored, plus each gt's best anchors as low-quality positives);
anchors near a crowd box are ignored. The RPN's ``BalancedSampler`` picks the anchors that count (at
most its positive fraction positive) and the losses are, as in torchvision:
    loss_rpn_cls = mean binary cross entropy over the sampled anchors of all images;
    loss_rpn_box = sum over positive anchors of the box loss(deltas - targets) / number of sampled anchors.

``BoxRegressionLoss`` (smooth-L1 or L1, summed) is shared with the RoI heads' Fast R-CNN loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from maskrcnn.modeling.matcher import BalancedSampler, Matcher, match_boxes

BOX_LOSSES = ("smooth_l1", "l1")


@dataclass(frozen=True)
class BoxRegressionLoss:
    """Box regression loss summed (not averaged) over rows; callers normalise.

    ``kind`` "smooth_l1" (with ``beta``, torchvision's 1/9) or "l1" (detectron2's choice for some
    models); checked when built, so a typo in the config fails before training starts."""

    kind: str = "smooth_l1"
    beta: float = 1.0 / 9.0

    def __post_init__(self):
        if self.kind not in BOX_LOSSES:
            raise ValueError(f"box_loss must be one of {BOX_LOSSES}, got {self.kind!r}")

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target (Q, 4) -> scalar sum over the Q rows and 4 coordinates."""
        if self.kind == "smooth_l1":
            return F.smooth_l1_loss(pred, target, beta=self.beta, reduction="sum")
        return F.l1_loss(pred, target, reduction="sum")


def rpn_losses(
    anchors: List[Tensor],
    objectness: Tensor,
    pred_deltas: Tensor,
    gt_boxes: List[Tensor],
    *,
    box_coder,
    matcher: Matcher,
    sampler: BalancedSampler,
    box_loss: BoxRegressionLoss,
    gt_ignore: Optional[List[Tensor]] = None,
    generator: Optional[torch.Generator] = None,
) -> Dict[str, Tensor]:
    """anchors: N x (A, 4); objectness (N, A) logits; pred_deltas (N, A, 4); gt_boxes: N x (M, 4);
    gt_ignore: N x (M,) bool crowd flags or None; ``generator`` drives the sampler."""
    num_images = len(anchors)
    if objectness.shape[0] != num_images or pred_deltas.shape[:2] != objectness.shape:
        raise ValueError(
            f"rpn_losses: {num_images} anchor sets, objectness {tuple(objectness.shape)}, "
            f"pred_deltas {tuple(pred_deltas.shape)} do not agree"
        )
    # Targets are constants of the loss: no gradient flows through matching or encoding.
    with torch.no_grad():
        pos_masks, neg_masks, targets = [], [], []
        for i in range(num_images):
            ignore = gt_ignore[i] if gt_ignore is not None else None
            gt = gt_boxes[i].to(anchors[i].dtype)
            matched = match_boxes(gt, anchors[i], matcher, gt_ignore=ignore)  # (A,)
            lab = torch.full_like(matched, -1)
            lab[matched >= 0] = 1
            lab[matched == Matcher.BELOW_LOW_THRESHOLD] = 0
            pos, neg = sampler(lab, generator=generator)
            pos_masks.append(pos)
            neg_masks.append(neg)
            # Encode only the positives: (P_i, 4) deltas of anchor -> its gt.
            targets.append(box_coder.encode(gt[matched[pos]], anchors[i][pos]))
        pos_mask = torch.stack(pos_masks)  # (N, A)
        sampled = pos_mask | torch.stack(neg_masks)  # (N, A)
        num_sampled = max(int(sampled.sum()), 1)
        reg_targets = torch.cat(targets).to(pred_deltas.dtype)  # (sum P_i, 4)

    # Boolean indexing keeps row order image by image, anchor by anchor, as the targets were built.
    loss_box = box_loss(pred_deltas[pos_mask], reg_targets) / num_sampled
    obj_targets = pos_mask[sampled].to(objectness.dtype)  # (S,) 1 for positives, 0 for negatives
    loss_cls = (
        F.binary_cross_entropy_with_logits(objectness[sampled], obj_targets, reduction="sum") / num_sampled
    )
    return {"loss_rpn_cls": loss_cls, "loss_rpn_box": loss_box}
