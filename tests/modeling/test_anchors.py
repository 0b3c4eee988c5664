"""Anchor generator: torchvision's cell anchors, order and stride convention."""

import torch

from maskrcnn.modeling.anchors import AnchorGenerator, cell_anchors


def test_cell_anchors_rounded_like_torchvision():
    # torchvision: w = size / sqrt(r), h = size * sqrt(r), halved, rounded; ratio-major order
    expected = torch.tensor([[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0],
                             [-11.0, -23.0, 11.0, 23.0]])
    torch.testing.assert_close(cell_anchors((32,), (0.5, 1.0, 2.0), rounding=True), expected)
    exact = cell_anchors((32,), (0.5, 1.0, 2.0), rounding=False)
    torch.testing.assert_close(exact[0], torch.tensor([-16 * 2**0.5, -8 * 2**0.5, 16 * 2**0.5, 8 * 2**0.5]))
    # several sizes on one level: ratio-major, then size
    two = cell_anchors((32, 64), (0.5, 1.0), rounding=True)
    assert two[:, 2].tolist() == [23.0, 45.0, 16.0, 32.0]


def test_grid_order_and_strides():
    gen = AnchorGenerator(sizes=(32, 64), strides=(4, 8))
    anchors, per_level = gen([(2, 3), (1, 2)], (8, 12))
    assert per_level == [2 * 3 * 3, 1 * 2 * 3]
    cells = cell_anchors((32,), (0.5, 1.0, 2.0), rounding=True)
    # location-major (row y, column x), then the 3 cell anchors
    torch.testing.assert_close(anchors[0:3], cells)
    torch.testing.assert_close(anchors[3:6], cells + torch.tensor([4.0, 0.0, 4.0, 0.0]))
    torch.testing.assert_close(anchors[9:12], cells + torch.tensor([0.0, 4.0, 0.0, 4.0]))
    assert gen([(2, 3), (1, 2)], (8, 12))[0] is anchors  # cached per size


def test_torchvision_stride_is_padded_size_over_grid():
    # torchvision takes stride = padded // grid: 480 // 8 = 60 on P6 of a 320 x 480 batch
    tv = AnchorGenerator(sizes=(512,), strides=(64,), rounding=True)
    anchors, _ = tv([(5, 8)], (320, 480))
    assert float(anchors[3, 0] - anchors[0, 0]) == 60.0
    assert float(anchors[8 * 3, 1] - anchors[0, 1]) == 64.0
    d2 = AnchorGenerator(sizes=(512,), strides=(64,), rounding=False)
    anchors, _ = d2([(5, 8)], (320, 480))
    assert float(anchors[3, 0] - anchors[0, 0]) == 64.0
