"""Matching in blocks of gt rows (``Matcher.match_iou``, ``match_boxes``) equals one pass over the whole
IoU matrix: ties, low-quality matches, NaN qualities, crowd boxes, every block size."""

import pytest
import torch

from maskrcnn.modeling.matcher import Matcher, _area, _iou_block, _max_iou, match_boxes
from maskrcnn.ops import box_iou


def _boxes(n: int, g: torch.Generator, grid: bool) -> torch.Tensor:
    """Boxes on a coarse integer grid (many exactly equal IoUs: ties) or anywhere."""
    if grid:
        xy = torch.randint(0, 6, (n, 2), generator=g).float() * 8
        wh = torch.randint(1, 4, (n, 2), generator=g).float() * 8
    else:
        xy = torch.rand(n, 2, generator=g) * 60
        wh = 1 + torch.rand(n, 2, generator=g) * 30
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("low_quality", [True, False])
@pytest.mark.parametrize("grid", [True, False])
def test_blocks_equal_one_pass(low_quality, grid):
    g = torch.Generator().manual_seed(int(low_quality) + 2 * int(grid))
    matcher = Matcher(high_threshold=0.7, low_threshold=0.3, allow_low_quality_matches=low_quality)
    for num_gt, num_pred in [(1, 50), (7, 40), (5, 0), (0, 9), (30, 200)]:
        gt, pred = _boxes(num_gt, g, grid), _boxes(num_pred, g, grid)
        gt[::4] = pred[: len(gt[::4])] if num_pred >= num_gt else gt[::4]  # exact duplicates: IoU 1 ties
        ref = matcher(box_iou(gt, pred))
        for max_pairs in (1, num_pred, 3 * num_pred + 1, 10**9):  # one row a block ... one block
            assert torch.equal(matcher.match_iou(gt, pred, max_pairs=max_pairs), ref)
    # ties between gts really occur on the grid (last case), so the first-index rule is exercised
    if grid:
        iou = box_iou(gt, pred)
        assert ((iou == iou.max(dim=0).values).sum(dim=0) > 1).any()


def test_blocks_equal_one_pass_with_nan_quality():
    g = torch.Generator().manual_seed(5)
    gt, pred = _boxes(9, g, True), _boxes(30, g, True)
    gt[4] = torch.tensor([3.0, 3.0, 3.0, 3.0])  # zero area
    pred[7] = torch.tensor([3.0, 3.0, 3.0, 3.0])  # IoU 0 / 0 = NaN with gt 4
    matcher = Matcher(high_threshold=0.5, low_threshold=0.4, allow_low_quality_matches=True)
    ref = matcher(box_iou(gt, pred))
    assert torch.isnan(box_iou(gt, pred)).any()
    for max_pairs in (1, 30, 95):
        assert torch.equal(matcher.match_iou(gt, pred, max_pairs=max_pairs), ref)


def test_match_boxes_with_crowds_in_blocks(monkeypatch):
    g = torch.Generator().manual_seed(6)
    gt, pred = _boxes(12, g, False), _boxes(80, g, False)
    crowd = torch.zeros(12, dtype=torch.bool)
    crowd[[1, 5, 6]] = True
    matcher = Matcher(high_threshold=0.5, low_threshold=0.3, allow_low_quality_matches=True)
    ref = match_boxes(gt, pred, matcher, gt_ignore=crowd)
    assert (ref == Matcher.BETWEEN_THRESHOLDS).any() and (ref >= 0).any()
    torch.testing.assert_close(_max_iou(gt, pred, max_pairs=80), box_iou(gt, pred).max(dim=0).values,
                               rtol=0, atol=0)
    # one gt row a block, in both the matching and the crowd overlap
    monkeypatch.setattr(Matcher.match_iou, "__kwdefaults__", {"max_pairs": 80})
    monkeypatch.setattr(_max_iou, "__defaults__", (80,))
    assert torch.equal(match_boxes(gt, pred, matcher, gt_ignore=crowd), ref)


@pytest.mark.parametrize("grid", [True, False])
def test_block_iou_is_box_iou_bit_for_bit(grid):
    g = torch.Generator().manual_seed(7 + int(grid))
    gt, pred = _boxes(25, g, grid), _boxes(300, g, grid)
    gt[0] = torch.tensor([3.0, 3.0, 3.0, 3.0])  # zero area: NaN against itself
    pred[0] = gt[0]
    pred[1] = torch.tensor([5.0, 5.0, 1.0, 1.0])  # inverted
    ref = box_iou(gt, pred)
    assert torch.isnan(ref).any()
    torch.testing.assert_close(_iou_block(gt, pred, _area(pred)), ref, rtol=0, atol=0, equal_nan=True)
