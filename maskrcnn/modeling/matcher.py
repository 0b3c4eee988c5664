"""Matching predictions (anchors, proposals) to ground-truth boxes, and balanced sampling.

Shapes: M ground-truth boxes, N predictions (anchors or proposals).

``Matcher`` turns an IoU matrix (M, N) into one matched gt index per prediction, with two
negative codes (torchvision's and detectron2's semantics):
    ``BELOW_LOW_THRESHOLD`` (-1): best IoU < low_threshold -> a negative (background);
    ``BETWEEN_THRESHOLDS`` (-2): low_threshold <= best IoU < high_threshold -> ignored.
With ``allow_low_quality_matches`` every gt also keeps the predictions that overlap it most (ties
included), so that a gt with no prediction above ``high_threshold`` still gets positives
(Faster R-CNN, Sec. 3.1.2). Such a prediction gets its own best gt (torchvision's rule). One
deliberate difference: a gt whose best IoU is 0 (it overlaps nothing, e.g. a degenerate box) gets no
low-quality match; torchvision would turn every non-overlapping prediction into a positive then.

``sample_balanced`` draws at most ``batch_size_per_image`` labelled predictions, at most
``positive_fraction`` of them positive, the rest negative (torchvision's
BalancedPositiveNegativeSampler), with ``torch.randperm`` on the given generator for reproducibility;
``BalancedSampler`` holds those two numbers, so that the builder sets them once per head.

``Matcher.match_iou`` (what ``match_boxes`` uses) computes the IoU matrix in blocks of gt rows and gives
the same result as ``Matcher(box_iou(...))``, so that memory stays bounded however many instances an
image has (1000 instances x ~270k FPN anchors would be ~10 GB of IoUs and temporaries at once).

A ``Matcher`` and a ``BalancedSampler`` are built once by ``build_model`` and handed to the RPN and the
RoI heads, which pass them to their pure loss functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import Tensor

# IoU pairs per block when matching boxes (``Matcher.match_iou``): with box_iou's temporaries ~100 MB.
MATCH_CHUNK_PAIRS = 1 << 22


class Matcher:
    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, *, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool):
        if low_threshold > high_threshold:
            raise ValueError(f"Matcher: low_threshold {low_threshold} > high_threshold {high_threshold}")
        self.high_threshold = float(high_threshold)
        self.low_threshold = float(low_threshold)
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """IoU (M, N) -> matched gt index (N,) int64, or -1 (negative) / -2 (ignore)."""
        if match_quality_matrix.dim() != 2:
            raise ValueError(
                f"Matcher expects an (M, N) matrix, got shape {tuple(match_quality_matrix.shape)}"
            )
        num_gt, num_pred = match_quality_matrix.shape
        return self._match(lambda start, stop: match_quality_matrix[start:stop], num_gt, num_pred,
                           max(num_gt, 1), match_quality_matrix.device)

    def match_iou(self, gt_boxes: Tensor, pred_boxes: Tensor, *,
                  max_pairs: int = MATCH_CHUNK_PAIRS) -> Tensor:
        """``self(box_iou(gt_boxes, pred_boxes))``, identical, with the IoU matrix computed a block of gt
        rows at a time (at most ``max_pairs`` pairs a block): an image with 1000 instances against
        ~270k FPN anchors would otherwise build 270M IoUs and their temporaries (~10 GB)."""
        num_gt, num_pred = gt_boxes.shape[0], pred_boxes.shape[0]
        rows = max(1, int(max_pairs) // max(num_pred, 1))
        pred_area = _area(pred_boxes)  # (N,) once, not per block
        return self._match(lambda start, stop: _iou_block(gt_boxes[start:stop], pred_boxes, pred_area),
                           num_gt, num_pred, rows, pred_boxes.device)

    def _match(self, block, num_gt: int, num_pred: int, rows: int, device) -> Tensor:
        """The matching rule over the quality matrix given as row blocks ``block(start, stop)`` ->
        (stop - start, N). Blocks are merged so that the result equals one pass over the whole matrix:
        the best gt of a prediction is the first of equal maxima (ties go to the earlier block, as
        ``max`` gives the first index), NaN wins as ``max`` propagates it, and each gt's low-quality
        matches need only its own row."""
        if num_gt == 0:
            # No ground truth: every prediction is background.
            return torch.full((num_pred,), self.BELOW_LOW_THRESHOLD, dtype=torch.int64, device=device)
        if num_pred == 0:
            return torch.empty((0,), dtype=torch.int64, device=device)

        best_vals = best_gt = None
        low_quality = torch.zeros(num_pred, dtype=torch.bool, device=device)  # (N,)
        for start in range(0, num_gt, rows):
            quality = block(start, min(start + rows, num_gt))  # (m, N)
            vals, idx = quality.max(dim=0)  # (N,), (N,)
            if best_vals is None:
                best_vals, best_gt = vals, idx
            else:
                best_vals, later = torch.stack([best_vals, vals]).max(dim=0)  # (N,); ties keep 0: earlier
                best_gt = torch.where(later == 1, idx + start, best_gt)
            if self.allow_low_quality_matches:
                best_per_gt = quality.max(dim=1).values  # (m,)
                # (m, N) True where a prediction ties for its gt's highest IoU; gts overlapping nothing
                # skipped.
                is_best = (quality == best_per_gt[:, None]) & (best_per_gt[:, None] > 0)
                low_quality |= is_best.any(dim=0)

        matches = best_gt.clone()
        matches[best_vals < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        between = (best_vals >= self.low_threshold) & (best_vals < self.high_threshold)
        matches[between] = self.BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches:
            matches[low_quality] = best_gt[low_quality]
        return matches


def sample_balanced(
    labels: Tensor,
    *,
    batch_size_per_image: int,
    positive_fraction: float,
    generator: Optional[torch.Generator] = None,
) -> Tuple[Tensor, Tensor]:
    """labels (N,) with >= 1 positive, 0 negative, -1 ignore -> (pos_mask (N,), neg_mask (N,)) bool.

    At most ``int(batch_size_per_image * positive_fraction)`` positives; negatives fill the rest of the
    batch. Picks are uniform without replacement (``torch.randperm`` on ``generator``, on the CPU so
    that a CPU generator gives the same picks on every device).
    """
    positive = torch.nonzero(labels >= 1).squeeze(1)  # (P,)
    negative = torch.nonzero(labels == 0).squeeze(1)  # (Q,)
    num_pos = min(positive.numel(), int(batch_size_per_image * positive_fraction))
    num_neg = min(negative.numel(), batch_size_per_image - num_pos)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    perm_pos = torch.randperm(positive.numel(), generator=generator, device=gen_device)[:num_pos]
    perm_neg = torch.randperm(negative.numel(), generator=generator, device=gen_device)[:num_neg]
    perm_pos, perm_neg = perm_pos.to(labels.device), perm_neg.to(labels.device)
    pos_mask = torch.zeros_like(labels, dtype=torch.bool)
    neg_mask = torch.zeros_like(labels, dtype=torch.bool)
    pos_mask[positive[perm_pos]] = True
    neg_mask[negative[perm_neg]] = True
    return pos_mask, neg_mask


@dataclass(frozen=True)
class BalancedSampler:
    """``sample_balanced`` with its batch size and positive fraction fixed (one per head)."""

    batch_size_per_image: int
    positive_fraction: float

    def __post_init__(self):
        if self.batch_size_per_image <= 0 or not 0.0 <= self.positive_fraction <= 1.0:
            raise ValueError(
                f"BalancedSampler: batch_size_per_image {self.batch_size_per_image} must be > 0 and "
                f"positive_fraction {self.positive_fraction} in [0, 1]"
            )

    def __call__(self, labels: Tensor, generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """labels (N,) with >= 1 positive, 0 negative, -1 ignore -> (pos_mask (N,), neg_mask (N,))."""
        return sample_balanced(
            labels,
            batch_size_per_image=self.batch_size_per_image,
            positive_fraction=self.positive_fraction,
            generator=generator,
        )


def gt_ignore_flags(targets: list) -> Optional[List[Tensor]]:
    """Per image (M,) bool crowd flags of the targets' boxes, or None when no target has ``iscrowd``."""
    if not any("iscrowd" in t for t in targets):
        return None
    return [
        t["iscrowd"].bool() if "iscrowd" in t
        else torch.zeros(len(t["boxes"]), dtype=torch.bool, device=t["boxes"].device)
        for t in targets
    ]


def match_boxes(
    gt_boxes: Tensor,
    pred_boxes: Tensor,
    matcher: Matcher,
    *,
    gt_ignore: Optional[Tensor] = None,
    ignore_iou_thresh: Optional[float] = None,
) -> Tensor:
    """Match predictions (N, 4) to gt (M, 4) -> (N,) int64 index into ``gt_boxes``, -1 or -2.

    Crowd gts (``gt_ignore`` True) never become match targets: matching runs on the other gts only, and
    a prediction that is not positive but overlaps a crowd box with IoU >= ``ignore_iou_thresh``
    (default ``matcher.low_threshold``) is ignored (-2) rather than a negative.
    """
    if gt_ignore is None or not bool(gt_ignore.any()):
        return matcher.match_iou(gt_boxes, pred_boxes)
    keep = torch.nonzero(~gt_ignore).squeeze(1)  # (M',) indices of non-crowd gts
    matched = matcher.match_iou(gt_boxes[keep], pred_boxes)  # (N,) indices into keep
    matched = torch.where(matched >= 0, keep[matched.clamp(min=0)] if keep.numel() else matched, matched)
    thresh = matcher.low_threshold if ignore_iou_thresh is None else ignore_iou_thresh
    crowd_iou = _max_iou(gt_boxes[gt_ignore], pred_boxes)  # (N,)
    matched[(matched < 0) & (crowd_iou >= thresh)] = Matcher.BETWEEN_THRESHOLDS
    return matched


def _area(boxes: Tensor) -> Tensor:
    """(K, 4) -> (K,) areas, as ``ops.boxes.box_area`` computes them."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou_block(gt_boxes: Tensor, pred_boxes: Tensor, pred_area: Tensor) -> Tensor:
    """(m, 4), (N, 4), (N,) -> (m, N) IoU, bit for bit ``box_iou(gt_boxes, pred_boxes)`` (the same
    operations in the same order) but with (m, N) temporaries updated in place instead of box_iou's
    (m, N, 2) ones: matching many instances against every anchor is bound by this memory traffic."""
    gt_area = _area(gt_boxes)  # (m,)
    iw = torch.minimum(gt_boxes[:, None, 2], pred_boxes[None, :, 2])  # (m, N)
    iw = iw.sub_(torch.maximum(gt_boxes[:, None, 0], pred_boxes[None, :, 0])).clamp_(min=0)
    ih = torch.minimum(gt_boxes[:, None, 3], pred_boxes[None, :, 3])  # (m, N)
    ih = ih.sub_(torch.maximum(gt_boxes[:, None, 1], pred_boxes[None, :, 1])).clamp_(min=0)
    inter = iw.mul_(ih)  # (m, N)
    union = (gt_area[:, None] + pred_area[None, :]).sub_(inter)  # (m, N)
    return inter.div_(union)


def _max_iou(gt_boxes: Tensor, pred_boxes: Tensor, max_pairs: int = MATCH_CHUNK_PAIRS) -> Tensor:
    """(M, 4), (N, 4) with M >= 1 -> (N,) each prediction's highest IoU with any gt, in blocks of gt rows
    (``box_iou(gt_boxes, pred_boxes).max(dim=0).values`` without the (M, N) matrix)."""
    from maskrcnn.ops import box_iou

    rows = max(1, int(max_pairs) // max(pred_boxes.shape[0], 1))
    best = None
    for start in range(0, gt_boxes.shape[0], rows):
        vals = box_iou(gt_boxes[start : start + rows], pred_boxes).max(dim=0).values  # (N,)
        best = vals if best is None else torch.maximum(best, vals)
    return best
