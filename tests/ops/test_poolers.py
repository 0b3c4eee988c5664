"""MultiScaleRoIAlign: FPN level assignment by hand, output order, one level (C4), RoIPool option."""

import pytest
import torch

from maskrcnn.ops import MultiScaleRoIAlign, assign_levels, roi_align, roi_pool

pytestmark = pytest.mark.usefixtures("single_thread")

STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32}


def _square(side, x0=0.0):
    return [x0, 0.0, x0 + side, side]


def test_level_assignment_by_hand():
    # k = floor(4 + log2(sqrt(area) / 224) + 1e-6), clamped to [2, 5]
    boxes = torch.tensor([_square(s) for s in (224, 223.9, 112, 111.9, 448, 56, 10, 2000, 0)])
    levels = assign_levels(boxes, min_level=2, max_level=5)
    assert levels.tolist() == [2, 1, 1, 0, 3, 0, 0, 3, 0]  # index 0 = p2
    # torchvision's eps nudges boxes a hair under a level boundary up to the next level
    almost = torch.tensor([_square(224 * (1 - 1e-7))], dtype=torch.float64)
    assert assign_levels(almost, min_level=2, max_level=5).tolist() == [2]
    assert assign_levels(almost, min_level=2, max_level=5, eps=0.0).tolist() == [1]
    # degenerate boxes (negative area -> NaN size) go to the finest level instead of failing
    inverted = torch.tensor([[10.0, 0.0, 0.0, 10.0]])
    assert assign_levels(inverted, min_level=2, max_level=5).tolist() == [0]


def test_multiscale_equals_per_level_roi_align_in_input_order():
    g = torch.Generator().manual_seed(0)
    feats = {k: torch.randn(2, 3, 128 // s, 160 // s, generator=g, dtype=torch.float64)
             for k, s in STRIDES.items()}
    f64 = torch.float64
    boxes = [torch.tensor([_square(460.0, 5.0), _square(30.0, 3.0), _square(120.0, 1.0)], dtype=f64),
             torch.tensor([_square(230.0, 2.0), _square(60.0, 7.0)], dtype=f64)]
    pooler = MultiScaleRoIAlign(featmap_names=list(STRIDES), strides=STRIDES, output_size=(3, 4),
                                sampling_ratio=2, aligned=True)
    out = pooler(feats, boxes)
    assert out.shape == (5, 3, 3, 4)
    expected_levels = ["p5", "p2", "p3", "p4", "p2"]  # sizes 460, 30, 120, 230, 60
    flat = [(0, b) for b in boxes[0]] + [(1, b) for b in boxes[1]]
    for row, ((img, box), name) in enumerate(zip(flat, expected_levels)):
        roi = torch.cat((torch.tensor([float(img)], dtype=torch.float64), box))[None]
        ref = roi_align(feats[name], roi, (3, 4), 1.0 / STRIDES[name], 2, True)
        torch.testing.assert_close(out[row:row + 1], ref, rtol=0, atol=0)
    # gradients flow back to each level that was used
    feats = {k: v.requires_grad_(True) for k, v in feats.items()}
    pooler(feats, boxes).sum().backward()
    assert all(float(v.grad.abs().sum()) > 0 for v in feats.values())


def test_single_level_roipool_and_empty():
    g = torch.Generator().manual_seed(1)
    c4 = torch.randn(1, 4, 10, 12, generator=g)
    boxes = [torch.tensor([[0.0, 0.0, 100.0, 80.0], [16.0, 16.0, 64.0, 96.0]])]
    rois = torch.cat((torch.zeros(2, 1), boxes[0]), 1)
    align = MultiScaleRoIAlign(featmap_names=["res4"], strides=[16], output_size=7, sampling_ratio=0)
    torch.testing.assert_close(align({"res4": c4}, boxes), roi_align(c4, rois, 7, 1 / 16, 0, False))
    pool = MultiScaleRoIAlign(featmap_names=["res4"], strides=[16], output_size=7, sampling_ratio=0,
                              pooler="roipool")
    torch.testing.assert_close(pool({"res4": c4}, boxes), roi_pool(c4, rois, 7, 1 / 16))
    assert align({"res4": c4}, [torch.zeros(0, 4)]).shape == (0, 4, 7, 7)


def test_bad_arguments():
    with pytest.raises(ValueError, match="strides"):
        MultiScaleRoIAlign(featmap_names=["p2", "p3"], strides={"p2": 4}, output_size=7, sampling_ratio=2)
    with pytest.raises(ValueError, match="powers of two"):
        MultiScaleRoIAlign(featmap_names=["p2"], strides=[6], output_size=7, sampling_ratio=2)
    with pytest.raises(ValueError, match="pooler"):
        MultiScaleRoIAlign(featmap_names=["p2"], strides=[4], output_size=7, sampling_ratio=2, pooler="max")
    pooler = MultiScaleRoIAlign(featmap_names=["p2", "p3"], strides=[4, 8], output_size=7, sampling_ratio=2)
    with pytest.raises(ValueError, match="p3"):
        pooler({"p2": torch.zeros(1, 1, 8, 8)}, [torch.zeros(0, 4)])
    with pytest.raises(ValueError, match="box lists"):
        pooler({"p2": torch.zeros(1, 1, 8, 8), "p3": torch.zeros(1, 1, 4, 4)}, [])
