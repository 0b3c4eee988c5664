"""Matcher and balanced sampler: hand-computed cases."""

import torch

from maskrcnn.modeling.matcher import Matcher, match_boxes, sample_balanced


def test_thresholds_without_low_quality():
    m = Matcher(high_threshold=0.7, low_threshold=0.3, allow_low_quality_matches=False)
    iou = torch.tensor(
        [
            [0.9, 0.5, 0.1, 0.0, 0.7],
            [0.2, 0.6, 0.29, 0.3, 0.69],
        ]
    )
    # pred 0 -> gt 0; pred 1 best 0.6 -> ignore; pred 2 best 0.29 -> neg; pred 3 best 0.3 -> ignore;
    # pred 4 best 0.7 (gt 0, threshold inclusive) -> gt 0.
    assert m(iou).tolist() == [0, -2, -1, -2, 0]


def test_low_quality_matches_keep_ties_and_use_best_gt():
    m = Matcher(high_threshold=0.7, low_threshold=0.3, allow_low_quality_matches=True)
    iou = torch.tensor(
        [
            [0.1, 0.4, 0.4, 0.2],  # gt 0: best 0.4, tied by preds 1 and 2
            [0.0, 0.5, 0.1, 0.3],  # gt 1: best 0.5 at pred 1 (whose own best gt is gt 1)
        ]
    )
    out = m(iou)
    # pred 1 -> gt 1 (its best), pred 2 -> gt 0 (tie for gt 0), pred 0 neg, pred 3 ignore (0.3)
    assert out.tolist() == [-1, 1, 0, -2]


def test_low_quality_skips_gt_overlapping_nothing():
    m = Matcher(high_threshold=0.7, low_threshold=0.3, allow_low_quality_matches=True)
    iou = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.8, 0.0]])
    assert m(iou).tolist() == [-1, 1, -1]


def test_empty_gt_and_empty_preds():
    m = Matcher(high_threshold=0.5, low_threshold=0.5, allow_low_quality_matches=True)
    assert m(torch.zeros(0, 4)).tolist() == [-1, -1, -1, -1]
    assert m(torch.zeros(3, 0)).shape == (0,)


def test_crowd_boxes_are_ignored_not_negative():
    m = Matcher(high_threshold=0.7, low_threshold=0.3, allow_low_quality_matches=True)
    gt = torch.tensor([[0.0, 0, 10, 10], [100.0, 100, 120, 120]])
    crowd = torch.tensor([False, True])
    preds = torch.tensor(
        [
            [0.0, 0, 10, 10],  # exact on gt 0 -> 0
            [100.0, 100, 120, 120],  # exact on the crowd box -> ignored, never matched to it
            [100.0, 100, 110, 110],  # IoU 0.25 with crowd: below 0.3 -> negative
            [100.0, 100, 118, 120],  # IoU 0.9 with crowd -> ignored
            [50.0, 50, 60, 60],  # nothing -> negative
        ]
    )
    out = match_boxes(gt, preds, m, gt_ignore=crowd)
    assert out.tolist() == [0, -2, -1, -2, -1]
    # Only crowd gts: nothing positive, crowd neighbourhood ignored.
    out = match_boxes(gt[1:], preds, m, gt_ignore=crowd[1:])
    assert out.tolist() == [-1, -2, -1, -2, -1]


def test_sampler_counts_fraction_and_reproducibility():
    labels = torch.tensor([1] * 30 + [0] * 100 + [-1] * 20)
    g = torch.Generator().manual_seed(0)
    pos, neg = sample_balanced(labels, batch_size_per_image=64, positive_fraction=0.25, generator=g)
    assert int(pos.sum()) == 16 and int(neg.sum()) == 48
    assert bool((labels[pos] == 1).all()) and bool((labels[neg] == 0).all())
    g2 = torch.Generator().manual_seed(0)
    pos2, neg2 = sample_balanced(labels, batch_size_per_image=64, positive_fraction=0.25, generator=g2)
    assert torch.equal(pos, pos2) and torch.equal(neg, neg2)
    # Few positives: negatives fill the batch; few of both: take all there are.
    labels = torch.tensor([1] * 3 + [0] * 100)
    pos, neg = sample_balanced(labels, batch_size_per_image=64, positive_fraction=0.5)
    assert int(pos.sum()) == 3 and int(neg.sum()) == 61
    labels = torch.tensor([1] * 3 + [0] * 5 + [-1] * 9)
    pos, neg = sample_balanced(labels, batch_size_per_image=64, positive_fraction=0.5)
    assert int(pos.sum()) == 3 and int(neg.sum()) == 5


def test_sampler_is_uniform_over_positives():
    labels = torch.tensor([1] * 10 + [0] * 10)
    g = torch.Generator().manual_seed(1)
    counts = torch.zeros(20)
    for _ in range(400):
        pos, _neg = sample_balanced(labels, batch_size_per_image=4, positive_fraction=0.5, generator=g)
        counts += pos.float()
    # each positive drawn with probability 2/10 -> 80 of 400; loose bounds
    assert counts[:10].min() > 50 and counts[:10].max() < 115 and counts[10:].sum() == 0
