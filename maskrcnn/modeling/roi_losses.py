"""RoI-head training: proposal sampling and targets, Fast R-CNN, mask and keypoint losses (pure functions).

Shapes: P proposals of an image, M ground-truth objects of an image, S sampled RoIs (all images
concatenated where said), K classes including background (label 0), Mm mask resolution (28),
J keypoints per object, Hk heatmap resolution (56), H x W image size.

The losses follow torchvision's normalisation:
    loss_cls      = mean cross entropy over the S sampled RoIs (K classes);
    loss_box      = sum over positive RoIs of the box loss (smooth-L1) on the gt class's 4 deltas / S;
    loss_mask     = "sigmoid" (the paper's): mean per-pixel binary cross entropy on the channel of the
                    RoI's gt class only, so classes do not compete; "softmax" (the paper's ablation):
                    per-pixel cross entropy over the K channels, target class 0 where the gt mask is off;
    loss_keypoint = cross entropy over the Hk * Hk positions of each labelled keypoint inside its RoI,
                    averaged over those keypoints (detectron2's "normalise by visible keypoints"), on
                    the positive RoIs whose gt has such a keypoint (``with_visible_keypoints``).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from maskrcnn.modeling.matcher import BalancedSampler, Matcher, match_boxes
from maskrcnn.modeling.rpn_loss import BoxRegressionLoss


def sample_proposals(
    proposals: List[Tensor],
    gt_boxes: List[Tensor],
    gt_labels: List[Tensor],
    *,
    matcher: Matcher,
    sampler: BalancedSampler,
    gt_ignore: Optional[List[Tensor]] = None,
    generator: Optional[torch.Generator] = None,
    box_coder=None,
) -> List[Dict[str, Tensor]]:
    """Per image: append the (non-crowd) gt boxes to the proposals, match (``matcher``: torchvision's
    0.5 / 0.5 without low-quality matches), sample (``sampler``: 512 RoIs, a quarter positive).

    Returns per image ``{"proposals": (S, 4), "labels": (S,) int64 (0 = background), "matched_gt": (S,)
    int64}``; ``matched_gt`` indexes the image's gt (and so its masks / keypoints) for positives and is
    -1 for background samples. With ``box_coder`` also ``"regression_targets"`` (S, 4) (zeros for
    background). Samples keep the order of the proposals (then the appended gts).
    """
    out = []
    # Sampling and targets are constants of the loss: no gradient flows through them.
    with torch.no_grad():
        for i, props in enumerate(proposals):
            gt = gt_boxes[i].to(props.dtype)
            ignore = gt_ignore[i] if gt_ignore is not None else None
            usable = gt if ignore is None else gt[~ignore]
            props = torch.cat([props.detach(), usable])  # (P + M', 4): gts are perfect proposals
            matched = match_boxes(gt, props, matcher, gt_ignore=ignore)  # (P + M',)
            labels = torch.full_like(matched, -1)
            if gt.shape[0]:
                labels = torch.where(matched >= 0, gt_labels[i].to(torch.int64)[matched.clamp(min=0)], labels)
            labels[matched == Matcher.BELOW_LOW_THRESHOLD] = 0
            pos, neg = sampler(labels, generator=generator)
            keep = torch.nonzero(pos | neg).squeeze(1)  # (S,) sampled rows, in order
            matched_s = torch.where(pos[keep], matched[keep], torch.full_like(keep, -1))
            item = {"proposals": props[keep], "labels": labels[keep].clamp(min=0), "matched_gt": matched_s}
            if box_coder is not None:
                targets = torch.zeros_like(item["proposals"])
                is_pos = matched_s >= 0
                if bool(is_pos.any()):
                    targets[is_pos] = box_coder.encode(gt[matched_s[is_pos]], item["proposals"][is_pos])
                item["regression_targets"] = targets
            out.append(item)
    return out


def fast_rcnn_losses(
    class_logits: Tensor,
    box_regression: Tensor,
    labels: Tensor,
    regression_targets: Tensor,
    *,
    box_loss: BoxRegressionLoss,
) -> Dict[str, Tensor]:
    """class_logits (S, K), box_regression (S, 4K) or (S, 4) class-agnostic, labels (S,), targets (S, 4)."""
    num = class_logits.shape[0]
    labels = labels.to(torch.int64)
    loss_cls = F.cross_entropy(class_logits, labels)
    pos = torch.nonzero(labels > 0).squeeze(1)  # (Q,)
    deltas = box_regression.reshape(num, -1, 4)  # (S, K or 1, 4)
    cls_idx = labels[pos] if deltas.shape[1] > 1 else torch.zeros_like(pos)
    pred = deltas[pos, cls_idx]  # (Q, 4): the gt class's deltas
    loss_box = box_loss(pred, regression_targets[pos].to(pred.dtype)) / max(labels.numel(), 1)
    return {"loss_cls": loss_cls, "loss_box": loss_box}


# Float mask pixels converted per roi_align call in ``project_masks`` (128 MB).
_MASK_TARGET_PIXELS = 1 << 25


def project_masks(gt_masks: Tensor, proposals: Tensor, matched_gt: Tensor, size: int = 28, *,
                  aligned: bool = False) -> Tensor:
    """gt_masks (M, H, W), proposals (P, 4), matched_gt (P,) -> (P, size, size) float mask targets.

    Each proposal's gt mask is cropped to the proposal and resized by RoIAlign with adaptive sampling,
    without binarising. ``aligned=False`` is torchvision's ``project_masks_on_boxes``; ``aligned=True``
    (detectron2's) puts the target's cells where an aligned pooler samples the features and where the
    ``grid_sample`` paste puts them back: a perfect 28x28 target then pastes back to IoU ~0.99 with
    its mask, against ~0.9-0.97 for small objects with torchvision's half-pixel shifts.
    """
    from maskrcnn.ops import roi_align

    if proposals.shape[0] == 0:
        return gt_masks.new_zeros((0, size, size), dtype=torch.float32)
    with torch.no_grad():  # targets: constants of the loss
        # Only the gts some proposal matched are converted to float, a bounded block of them at a time
        # (an image with 1000 instances has 3.4 GB of float masks at 800x1067); each RoI reads only its
        # own mask, so the targets are those of one roi_align over all masks, bit for bit.
        out = torch.empty(proposals.shape[0], size, size, dtype=proposals.dtype, device=proposals.device)
        used = torch.unique(matched_gt)  # (U,) sorted
        per_block = max(1, _MASK_TARGET_PIXELS // max(gt_masks[0].numel(), 1))
        for start in range(0, used.numel(), per_block):
            block = used[start : start + per_block]  # (u,) gt indices
            local = torch.full((gt_masks.shape[0],), -1, dtype=torch.int64, device=matched_gt.device)
            local[block] = torch.arange(block.numel(), device=matched_gt.device)
            rows = torch.nonzero(local[matched_gt] >= 0).squeeze(1)  # proposals matched to this block
            rois = torch.cat([local[matched_gt[rows]][:, None].to(proposals.dtype), proposals[rows]], dim=1)
            masks = gt_masks[block][:, None].to(proposals.dtype)  # (u, 1, H, W): one "image" per gt
            out[rows] = roi_align(masks, rois, (size, size), spatial_scale=1.0, aligned=aligned)[:, 0]
        return out


def mask_losses(
    mask_logits: Tensor, labels: Tensor, mask_targets: Tensor, *, mode: str = "sigmoid"
) -> Dict[str, Tensor]:
    """mask_logits (P, K, Mm, Mm) of positive RoIs, labels (P,) their gt classes, targets (P, Mm, Mm)."""
    if mask_targets.numel() == 0 or mask_logits.shape[0] == 0:
        return {"loss_mask": mask_logits.sum() * 0}  # keeps the graph connected (DDP needs every grad)
    if mask_targets.shape[-2:] != mask_logits.shape[-2:]:
        raise ValueError(
            f"mask_losses: targets {tuple(mask_targets.shape)} vs logits {tuple(mask_logits.shape)}"
        )
    labels = labels.to(torch.int64)
    targets = mask_targets.to(mask_logits.dtype)
    if mode == "sigmoid":
        logits = mask_logits[torch.arange(labels.numel(), device=labels.device), labels]  # (P, Mm, Mm)
        loss = F.binary_cross_entropy_with_logits(logits, targets)
    elif mode == "softmax":
        # Pixel class: the RoI's gt class inside the mask, background (0) outside.
        pixel_cls = torch.where(
            targets >= 0.5, labels[:, None, None], torch.zeros_like(labels)[:, None, None]
        )
        loss = F.cross_entropy(mask_logits, pixel_cls)  # logits (P, K, Mm, Mm), targets (P, Mm, Mm)
    else:
        raise ValueError(f"mask loss mode must be 'sigmoid' or 'softmax', got {mode!r}")
    return {"loss_mask": loss}


def keypoint_targets(
    gt_keypoints: Tensor, proposals: Tensor, matched_gt: Tensor, size: int = 56
) -> Tuple[Tensor, Tensor]:
    """gt_keypoints (M, J, 3) (x, y, visibility), proposals (P, 4), matched_gt (P,) ->
    (targets (P, J) int64 flat index y * size + x into the size x size heatmap, valid (P, J) bool).

    torchvision's ``keypoints_to_heatmap``: x -> floor((x - x1) * size / (x2 - x1)); a keypoint exactly
    on the right / bottom edge goes to the last cell; outside the box or invisible -> not valid.
    """
    with torch.no_grad():  # targets: constants of the loss
        kps = gt_keypoints[matched_gt.clamp(min=0)].to(proposals.dtype)  # (P, J, 3)
        x1, y1, x2, y2 = (proposals[:, k : k + 1] for k in range(4))  # each (P, 1)
        x, y, vis = kps[..., 0], kps[..., 1], kps[..., 2]  # each (P, J)
        on_right, on_bottom = x == x2, y == y2
        xi = ((x - x1) * (size / (x2 - x1))).floor().long()
        yi = ((y - y1) * (size / (y2 - y1))).floor().long()
        xi[on_right] = size - 1
        yi[on_bottom] = size - 1
        inside = (xi >= 0) & (yi >= 0) & (xi < size) & (yi < size)
        valid = inside & (vis > 0) & (matched_gt[:, None] >= 0)
        targets = torch.where(valid, yi * size + xi, torch.zeros_like(xi))
    return targets, valid


def with_visible_keypoints(gt_keypoints: Tensor, proposals: Tensor, matched_gt: Tensor) -> Tensor:
    """gt_keypoints (M, J, 3), proposals (P, 4), matched_gt (P,) -> (P,) bool: the proposal's gt has a
    labelled keypoint (v > 0) inside the proposal (edges included).

    detectron2's ``select_proposals_with_visible_keypoints``: the other positives (people with no
    keypoint labelled, or none in this box) have no keypoint target, so they are left out of the
    keypoint head rather than run through it for nothing; their boxes still train the box head.
    """
    if proposals.shape[0] == 0 or gt_keypoints.shape[0] == 0:
        return torch.zeros(proposals.shape[0], dtype=torch.bool, device=proposals.device)
    with torch.no_grad():
        kps = gt_keypoints[matched_gt.clamp(min=0)].to(proposals.dtype)  # (P, J, 3)
        x, y, vis = kps[..., 0], kps[..., 1], kps[..., 2]  # each (P, J)
        x1, y1, x2, y2 = (proposals[:, k : k + 1] for k in range(4))  # each (P, 1)
        inside = (x >= x1) & (x <= x2) & (y >= y1) & (y <= y2) & (vis > 0)  # (P, J)
        return inside.any(dim=1) & (matched_gt >= 0)


def keypoint_losses(keypoint_logits: Tensor, targets: Tensor, valid: Tensor) -> Dict[str, Tensor]:
    """keypoint_logits (P, J, Hk, Hk), targets (P, J) flat indices, valid (P, J) bool."""
    p, j, h, w = keypoint_logits.shape
    flat_valid = valid.reshape(-1)  # (P * J,)
    if not bool(flat_valid.any()):
        return {"loss_keypoint": keypoint_logits.sum() * 0}
    logits = keypoint_logits.reshape(p * j, h * w)[flat_valid]  # (V, Hk * Hk)
    loss = F.cross_entropy(logits, targets.reshape(-1)[flat_valid])
    return {"loss_keypoint": loss}
