"""Box utilities and BoxCoder: golden IoU, hand-computed values, round trips, empty inputs."""

import math
from pathlib import Path

import pytest
import torch

from maskrcnn.ops import (
    BoxCoder,
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xywh_to_xyxy,
    box_xyxy_to_cxcywh,
    box_xyxy_to_xywh,
    clip_boxes_to_image,
    remove_small_boxes,
)

pytestmark = pytest.mark.usefixtures("single_thread")

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "ops.pt"


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN, weights_only=True)


def test_box_iou_matches_torchvision_golden(golden):
    g = golden["iou"]
    iou = box_iou(g["a"], g["b"])
    assert iou.shape == (40, 60)
    torch.testing.assert_close(iou, g["iou"], atol=1e-6, rtol=0)


def test_box_iou_hand_computed():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    expected = torch.tensor([[1 / 7, 1.0, 0.0], [0.0, 0.25, 0.0]])
    torch.testing.assert_close(box_iou(a, b), expected)
    assert box_iou(a, b[:0]).shape == (2, 0)


def test_area_clip_and_remove_small():
    boxes = torch.tensor([[-5.0, 2.0, 30.0, 8.0], [1.0, 1.0, 1.5, 9.0], [0.0, 0.0, 4.0, 4.0]])
    torch.testing.assert_close(box_area(boxes), torch.tensor([210.0, 4.0, 16.0]))
    clipped = clip_boxes_to_image(boxes, (6, 20))
    torch.testing.assert_close(clipped, torch.tensor([[0.0, 2.0, 20.0, 6.0], [1.0, 1.0, 1.5, 6.0],
                                                      [0.0, 0.0, 4.0, 4.0]]))
    keep = remove_small_boxes(boxes, 1.0)
    assert keep.dtype == torch.int64 and keep.tolist() == [0, 2]


def test_format_conversions_round_trip():
    boxes = torch.tensor([[1.0, 2.0, 5.0, 10.0], [0.5, 0.25, 0.75, 3.0]])
    assert box_xyxy_to_xywh(boxes)[0].tolist() == [1.0, 2.0, 4.0, 8.0]
    assert box_xyxy_to_cxcywh(boxes)[0].tolist() == [3.0, 6.0, 4.0, 8.0]
    torch.testing.assert_close(box_xywh_to_xyxy(box_xyxy_to_xywh(boxes)), boxes)
    torch.testing.assert_close(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(boxes)), boxes)


def test_box_coder_hand_computed():
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    proposals = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    gt = torch.tensor([[1.0, 2.0, 21.0, 22.0]])  # centre (11, 12), size (20, 20); proposal (5, 10), (10, 20)
    deltas = coder.encode(gt, proposals)
    expected = torch.tensor([[10 * 6 / 10, 10 * 2 / 20, 5 * math.log(2.0), 5 * math.log(1.0)]])
    torch.testing.assert_close(deltas, expected)
    torch.testing.assert_close(coder.decode(deltas, proposals), gt)


def test_box_coder_round_trip_multiclass_and_clip():
    torch.manual_seed(0)
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    xy = torch.rand(30, 2, dtype=torch.float64) * 100
    proposals = torch.cat((xy, xy + 1 + torch.rand(30, 2, dtype=torch.float64) * 50), 1)
    gts = [torch.cat((p_xy := xy + torch.randn(30, 2, dtype=torch.float64),
                      p_xy + 2 + torch.rand(30, 2, dtype=torch.float64) * 40), 1) for _ in range(3)]
    deltas = torch.cat([coder.encode(g, proposals) for g in gts], dim=1)  # (30, 12): 3 classes
    decoded = coder.decode(deltas, proposals)
    assert decoded.shape == (30, 12)
    torch.testing.assert_close(decoded, torch.cat(gts, 1), rtol=0, atol=1e-9)
    # dw beyond the clip is clamped: width grows by at most exp(log(1000/16)) = 62.5
    huge = torch.tensor([[0.0, 0.0, 50.0, 50.0]])
    box = coder.decode(torch.tensor([[0.0, 0.0, 5.0 * 100.0, -5.0 * 100.0]]), huge)
    assert torch.isfinite(box).all()
    assert box[0, 2] - box[0, 0] == pytest.approx(50 * 62.5, rel=1e-5)


def test_box_coder_empty_and_bad_shapes():
    coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
    assert coder.encode(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)
    assert coder.decode(torch.zeros(0, 8), torch.zeros(0, 4)).shape == (0, 8)
    with pytest.raises(ValueError, match="decode"):
        coder.decode(torch.zeros(3, 6), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="encode"):
        coder.encode(torch.zeros(2, 4), torch.zeros(3, 4))
