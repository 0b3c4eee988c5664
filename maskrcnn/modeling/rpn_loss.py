"""RPN training targets and loss (pure functions, called by the RPN module).

Shapes: N images, A anchors per image (all FPN levels concatenated), M ground-truth boxes of an image,
S sampled anchors over the batch, P of them positive.

Per image: anchors are matched to gt by IoU with the RPN's ``Matcher`` (>= high threshold positive,
< low threshold negative, in between ignored, plus each gt's best anchors as low-quality positives);
anchors near a crowd box are ignored. The RPN's ``BalancedSampler`` picks the anchors that count (at
most its positive fraction positive) and the losses are, as in torchvision:
    loss_rpn_cls = mean binary cross entropy over the sampled anchors of all images;
    loss_rpn_box = sum over positive anchors of the box loss(deltas - targets) / number of sampled anchors.

``sample_anchors`` does the matching and sampling; ``sampled_anchor_losses`` takes the predictions at
the sampled anchors only, so that in training the RPN can evaluate its head with autograd at those
~256 anchors per image rather than everywhere (``RPN.forward``); ``rpn_losses`` is the same loss
from dense predictions (N, A).

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


@dataclass(frozen=True)
class AnchorSamples:
    """The anchors the RPN loss looks at, S of them over the batch, P of them positive.

    Rows are image by image and, within an image, by increasing anchor index (the order boolean
    indexing with the sampled masks gives), so that the loss sums in the same order on either path.
    """

    image: Tensor  # (S,) int64 image of each sampled anchor
    anchor: Tensor  # (S,) int64 index into that image's anchors
    positive: Tensor  # (S,) bool: objectness target 1 (else 0)
    reg_targets: Tensor  # (P, 4) encoded gt of the positives, in row order of ``anchor[positive]``


@torch.no_grad()  # targets are constants of the loss: no gradient flows through matching or encoding
def sample_anchors(
    anchors: List[Tensor],
    gt_boxes: List[Tensor],
    *,
    box_coder,
    matcher: Matcher,
    sampler: BalancedSampler,
    gt_ignore: Optional[List[Tensor]] = None,
    generator: Optional[torch.Generator] = None,
) -> AnchorSamples:
    """anchors: N x (A, 4) (the same A for every image); gt_boxes: N x (M, 4); gt_ignore: N x (M,)
    bool crowd flags or None. The sampler draws from ``generator`` image by image."""
    pos_masks, neg_masks, targets = [], [], []
    for i in range(len(anchors)):
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
    # (S, 2) (image, anchor) pairs in row-major order; the one host sync of the loss (S is a shape)
    picked = torch.nonzero(pos_mask | torch.stack(neg_masks))
    image, anchor = picked.unbind(1)  # (S,), (S,)
    return AnchorSamples(image=image, anchor=anchor, positive=pos_mask[image, anchor],
                         reg_targets=torch.cat(targets))


def sampled_anchor_losses(
    objectness: Tensor, pred_deltas: Tensor, samples: AnchorSamples, *, box_loss: BoxRegressionLoss
) -> Dict[str, Tensor]:
    """The RPN losses from the predictions at the sampled anchors only: objectness (S,) logits and
    pred_deltas (S, 4), row for row with ``samples``."""
    num_sampled = max(samples.anchor.shape[0], 1)
    reg_targets = samples.reg_targets.to(pred_deltas.dtype)  # (P, 4)
    loss_box = box_loss(pred_deltas[samples.positive], reg_targets) / num_sampled
    obj_targets = samples.positive.to(objectness.dtype)  # (S,) 1 for positives, 0 for negatives
    loss_cls = F.binary_cross_entropy_with_logits(objectness, obj_targets, reduction="sum") / num_sampled
    return {"loss_rpn_cls": loss_cls, "loss_rpn_box": loss_box}


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
    """The RPN losses from dense predictions: anchors: N x (A, 4); objectness (N, A) logits;
    pred_deltas (N, A, 4); gt_boxes: N x (M, 4); gt_ignore: N x (M,) bool crowd flags or None;
    ``generator`` drives the sampler."""
    num_images = len(anchors)
    if objectness.shape[0] != num_images or pred_deltas.shape[:2] != objectness.shape:
        raise ValueError(
            f"rpn_losses: {num_images} anchor sets, objectness {tuple(objectness.shape)}, "
            f"pred_deltas {tuple(pred_deltas.shape)} do not agree"
        )
    samples = sample_anchors(anchors, gt_boxes, box_coder=box_coder, matcher=matcher, sampler=sampler,
                             gt_ignore=gt_ignore, generator=generator)
    return sampled_anchor_losses(
        objectness[samples.image, samples.anchor],  # (S,)
        pred_deltas[samples.image, samples.anchor],  # (S, 4)
        samples, box_loss=box_loss,
    )
