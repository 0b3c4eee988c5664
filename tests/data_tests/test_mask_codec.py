"""The COCO mask codec (maskrcnn.data.mask_codec) against pycocotools and the golden model masks.

tests/data/masks_reference.pt holds RLEs of masks pasted by torchvision and detectron2 (golden models).
"""

from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from maskrcnn.data.mask_codec import (
    annotation_to_mask,
    decode_rle_window,
    mask_to_rle,
    masks_to_rles,
    rle_counts_from_string,
)

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def ref():
    return torch.load(DATA / "masks_reference.pt", weights_only=True)


def test_polygon_to_mask_matches_pycocotools():
    poly = [[2.0, 2.0, 17.5, 3.0, 9.0, 14.0], [20.0, 10.0, 28.0, 10.0, 28.0, 18.0, 20.0, 18.0]]
    mask = annotation_to_mask(poly, 24, 32)
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, 24, 32)))
    assert mask.dtype == torch.uint8 and mask.shape == (24, 32)
    assert np.array_equal(mask.numpy(), expected) and mask.sum() > 50
    # a degenerate polygon next to a good one is dropped, not fatal
    assert torch.equal(annotation_to_mask(poly + [[1.0, 1.0, 2.0, 2.0]], 24, 32), mask)


def test_rle_round_trips_compressed_and_uncompressed():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(31, 47, generator=g) > 0.6
    mask[5:25, 10:40] = True
    rle = mask_to_rle(mask)
    assert rle["size"] == [31, 47] and isinstance(rle["counts"], str)
    assert torch.equal(annotation_to_mask(rle, 31, 47).bool(), mask)
    # our decoder of the compressed string agrees with pycocotools' uncompressed runs
    flat = mask.t().reshape(-1).numpy().astype(np.uint8)  # column-major
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])))
    runs = np.diff(np.concatenate([[0], change]))
    runs = runs if flat[0] == 0 else np.concatenate([[0], runs])
    assert np.array_equal(rle_counts_from_string(rle["counts"]), runs[runs.cumsum() <= flat.size])
    uncompressed = {"size": [31, 47], "counts": runs[runs.cumsum() <= flat.size].tolist()}
    assert torch.equal(annotation_to_mask(uncompressed, 31, 47).bool(), mask)
    assert [r["counts"] for r in masks_to_rles(torch.stack([mask, ~mask]))][0] == rle["counts"]


@pytest.mark.parametrize(
    "seg,match",
    [
        ({"size": [10, 10], "counts": [10, 5]}, "cover 15 pixels"),
        ({"size": [10, 12], "counts": [120]}, "does not match"),
        ({"size": [10, 10], "counts": "~~~~"}, "range|truncated"),
        ({"size": [10, 10], "counts": "PP"}, "truncated|cover"),
        ({"counts": [100]}, "size"),
        ([[1.0, 2.0, 3.0]], "even length"),
        ([[1.0, 2.0, 3.0, 4.0]], "at least 3 points"),
        ([[0.0, 0.0, float("nan"), 1.0, 2.0, 2.0]], "finite"),
        ("polygon", "must be a list"),
    ],
)
def test_bad_segmentations_raise_clear_errors(seg, match):
    with pytest.raises(ValueError, match=match):
        annotation_to_mask(seg, 10, 10)


def test_compressed_rle_decoder_agrees_with_pycocotools_on_model_masks(ref):
    for key in ("torchvision_golden", "detectron2_golden"):
        for rle in ref[key]["rles"]:
            h, w = rle["size"]
            expected = mask_utils.decode({"size": [h, w], "counts": rle["counts"].encode()})
            assert np.array_equal(annotation_to_mask(rle, h, w).numpy(), expected)


@pytest.mark.parametrize("chunk_pixels", [1, 31 * 47 * 2, 1 << 27])
def test_masks_to_rles_in_chunks_any_dtype(monkeypatch, chunk_pixels):
    """Encoded a few masks per pycocotools call (bounded memory for photo-sized masks): the same RLE
    whatever the chunking, for bool, uint8 and probability inputs (> 0 is on)."""
    from maskrcnn.data import mask_codec as masks_module

    g = torch.Generator().manual_seed(1)
    stack = torch.rand(5, 31, 47, generator=g) > 0.5  # (D, H, W)
    expected = [mask_utils.encode(np.asfortranarray(m.numpy().astype(np.uint8)))["counts"].decode()
                for m in stack]
    monkeypatch.setattr(masks_module, "_RLE_CHUNK_PIXELS", chunk_pixels)
    for form in (stack, stack.to(torch.uint8), stack.float() * 0.7):
        rles = masks_to_rles(form)
        assert [r["counts"] for r in rles] == expected
        assert all(r["size"] == [31, 47] for r in rles)
    assert masks_to_rles(stack[:0]) == []


def test_rle_window_equals_the_decoded_mask_cut_to_it():
    """Windows inside, across and outside the image; masks of scattered pixels, of whole columns (runs
    spanning columns), empty and full; compressed and uncompressed counts."""
    rng = np.random.default_rng(0)
    for t in range(60):
        h, w = (int(v) for v in rng.integers(1, 24, 2))
        mask = rng.random((h, w)) < [0.0, 1.0, 0.3, 0.9][t % 4]
        if t % 5 == 0:
            mask[:, int(rng.integers(0, w)):] = True  # runs through whole columns
        rle = mask_to_rle(torch.from_numpy(mask))
        plain = {"size": [h, w], "counts": rle_counts_from_string(rle["counts"]).tolist()}
        padded = np.zeros((h + 60, w + 60), bool)
        padded[20:20 + h, 20:20 + w] = mask
        for _ in range(8):
            left, top = int(rng.integers(-6, w + 3)), int(rng.integers(-6, h + 3))
            ww, hh = int(rng.integers(0, w + 9)), int(rng.integers(0, h + 9))
            want = padded[top + 20:top + 20 + hh, left + 20:left + 20 + ww]
            assert np.array_equal(decode_rle_window(rle, left, top, ww, hh), want), (t, left, top, ww, hh)
            assert np.array_equal(decode_rle_window(plain, left, top, ww, hh), want)
        assert np.array_equal(decode_rle_window(rle, 0, 0, w, h), mask)


@pytest.mark.parametrize("poly", [
    [1, 2, 3, True, 5, 6], [1, 2, 3, "4", 5, 6], [1, 2, 3, None, 5, 6], [1, 2, 3, float("inf"), 5, 6],
    [1, 2, 3, float("nan"), 5, 6], [1, 2, 3, 10**400, 5, 6],  # beyond float range: was an OverflowError
])
def test_polygon_coordinates_other_than_finite_numbers_are_named(poly):
    from maskrcnn.data.mask_codec import segmentation_problem

    assert segmentation_problem([poly], 10, 10) == "polygon coordinates must be finite numbers"


def test_polygon_checks_take_numpy_scalars_and_measure_the_reach():
    from maskrcnn.data.mask_codec import segmentation_problem

    assert segmentation_problem([[np.float32(1), np.int64(2), 3, 4.5, 5, 6]], 10, 10) is None
    assert segmentation_problem([[1, 2, 3, 4, 5, 6], [0, 0, 2.5, 1e6, 1, 1]], 10, 10) == (
        "polygon coordinates reach (0..2.5, 0..1e+06), far outside the 10x10 image")
