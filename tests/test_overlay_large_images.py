"""Large images in predict: the overlay is drawn reduced above OVERLAY_DRAW_MAX, its float->uint8
conversion holds no float copies of the whole image, and one warning gives the memory figure."""

import tracemalloc

import numpy as np
import pycocotools.mask as mask_utils
import torch

from maskrcnn.commands.predict import large_image_note
from maskrcnn.visualize import draw_instances, to_uint8_hwc


def _det(H, W):
    mask = np.zeros((H, W), np.uint8, order="F")
    mask[40:80, 100:180] = 1
    rle = mask_utils.encode(mask)
    return {"boxes": torch.tensor([[100.0, 40.0, 180.0, 80.0]]), "scores": torch.tensor([0.9]),
            "labels": torch.tensor([0]), "masks_rle": [rle]}


def test_an_image_longer_than_max_size_is_drawn_reduced_with_its_mask_where_it_was():
    H, W = 120, 256
    image = torch.full((3, H, W), 0.5)
    full = np.asarray(draw_instances(image, _det(H, W), ["thing"], show_labels=False))
    small = np.asarray(draw_instances(image, _det(H, W), ["thing"], show_labels=False, max_size=64))
    assert full.shape == (H, W, 3) and small.shape == (H // 4, W // 4, 3)  # 256 -> 64: a factor of 4
    grey = np.array([128, 128, 128])
    inside_full = np.abs(full[50:70, 110:170].astype(int) - grey).sum(-1).mean()
    inside_small = np.abs(small[50 // 4:70 // 4, 110 // 4:170 // 4].astype(int) - grey).sum(-1).mean()
    assert inside_full > 30 and abs(inside_small - inside_full) < 10  # tinted alike, at the scaled place
    assert np.abs(small[2:8, 2:20].astype(int) - grey).sum(-1).max() <= 3  # away from it: untouched


def test_float_to_uint8_gives_the_same_pixels_without_float_copies_of_the_image():
    rng = np.random.default_rng(0)
    image = rng.random((3, 2000, 2000), dtype=np.float32)
    image[0, :3, :3] = np.nan
    image[1, 5, 5] = np.inf
    expected = np.clip(np.nan_to_num(image.transpose(1, 2, 0)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    tracemalloc.start()
    try:
        got = to_uint8_hwc(image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(got, expected)
    assert peak < image.nbytes  # 48 MB of floats: the whole-image temporaries held five times that


def test_one_warning_gives_the_memory_of_a_large_image():
    assert large_image_note("small.jpg", 3000, 4000, 1333) is None  # 12 MP: nothing to say
    note = large_image_note("pano.jpg", 8000, 10000, 1333)
    assert note.startswith("pano.jpg is 10000x8000 = 80 MP: predicting an image this large takes about "
                           "2.6 GB of memory")
    assert "at most 1333 px" in note


def test_a_mask_thinner_than_the_reduction_stays_visible_in_the_reduced_overlay():
    H, W = 90, 130
    mask = np.zeros((H, W), np.uint8, order="F")
    mask[10:80, 101] = 1  # a 1-px wire at column 101: the factor-4 sampling of columns 0, 4, ... missed it
    det = {"boxes": torch.tensor([[101.0, 10.0, 102.0, 80.0]]), "scores": torch.tensor([0.9]),
           "labels": torch.tensor([0]), "masks_rle": [mask_utils.encode(mask)]}
    image = torch.full((3, H, W), 0.5)
    small = np.asarray(draw_instances(image, det, ["wire"], show_labels=False, show_boxes=False,
                                      max_size=40))  # 130 -> ceil(130 / 40) = 4
    assert small.shape == (23, 33, 3)
    tinted = np.abs(small.astype(int) - 128).sum(-1) > 30
    assert tinted[3:20, 101 // 4].all()  # drawn along the wire, in its reduced column
    assert not tinted[:, :24].any()  # and nowhere else


def test_any_pooling_over_a_masks_extent_equals_pooling_the_whole_picture():
    # the reduced overlay pools only the cells a mask's extent touches (a small mask on a 48 MP picture
    # pooled the whole picture: 0.5 s a mask); the result is the whole picture's pooling, partial last
    # cells and empty masks included
    from maskrcnn.visualize import _any_pool

    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        s = int(rng.integers(2, 6))
        mask = np.zeros((h, w), bool)
        if rng.random() < 0.9:
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            y1, x1 = int(rng.integers(y0, h)) + 1, int(rng.integers(x0, w)) + 1
            mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.3
        out_hw = (-(-h // s), -(-w // s))
        whole = np.zeros((out_hw[0] * s, out_hw[1] * s), bool)
        whole[:h, :w] = mask
        expected = whole.reshape(out_hw[0], s, out_hw[1], s).any(axis=(1, 3))
        np.testing.assert_array_equal(_any_pool(mask, s, out_hw), expected)
