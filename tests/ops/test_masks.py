"""maskrcnn.ops.masks against torchvision / detectron2 references and slow loops from the definitions.

References in tests/data/masks_reference.pt were recorded with torchvision 0.28 (paste_masks_in_image,
roi_align) and from the golden model outputs of torchvision and detectron2 (pasted masks as RLE).
"""

from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
import torch.nn.functional as F

from maskrcnn.ops.masks import (
    annotation_to_mask,
    crop_and_resize_masks,
    mask_to_rle,
    masks_to_rles,
    paste_masks_in_image,
    rle_counts_from_string,
)

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def ref():
    return torch.load(DATA / "masks_reference.pt", weights_only=True)


# ----------------------------------------------------------------------------------------------
# paste


def test_paste_torchvision_matches_torchvision_random_boxes(ref):
    case = ref["paste_random"]  # boxes partly outside, tiny, bigger than the image
    out = paste_masks_in_image(case["probs"], case["boxes"], case["size"])
    assert out.shape == case["expected"].shape and out.dtype == torch.float32
    assert (out - case["expected"]).abs().max() < 5e-6


@pytest.mark.parametrize(
    "key,method,op",
    [("torchvision_golden", "torchvision", torch.gt), ("detectron2_golden", "grid_sample", torch.ge)],
)
def test_paste_reproduces_golden_model_masks(ref, key, method, op):
    case = ref[key]
    probs = paste_masks_in_image(case["probs"][:, None], case["boxes"], case["size"], method=method)
    expected = torch.from_numpy(mask_utils.decode(case["rles"])).permute(2, 0, 1).bool()  # (D, H, W)
    assert torch.equal(op(probs, 0.5), expected)
    if "prob_sum" in case:
        np.testing.assert_allclose(probs.double().sum((1, 2)).numpy(), case["prob_sum"].numpy(), rtol=1e-5)


def test_paste_grid_sample_equals_full_image_grid_sample():
    g = torch.Generator().manual_seed(1)
    n, h, w = 12, 37, 45
    probs = torch.rand(n, 1, 28, 28, generator=g)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) - 8
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 40 + 0.5], 1)
    y = (torch.arange(h) + 0.5)[None, :] - boxes[:, 1:2]
    x = (torch.arange(w) + 0.5)[None, :] - boxes[:, 0:1]
    gy = y / (boxes[:, 3:4] - boxes[:, 1:2]) * 2 - 1  # (n, h)
    gx = x / (boxes[:, 2:3] - boxes[:, 0:1]) * 2 - 1  # (n, w)
    grid = torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], dim=3)
    expected = F.grid_sample(probs, grid, align_corners=False)[:, 0]
    out = paste_masks_in_image(probs, boxes, (h, w), method="grid_sample")
    assert (out - expected).abs().max() < 5e-6


@pytest.mark.parametrize("method", ["torchvision", "grid_sample"])
def test_paste_threshold_empty_and_degenerate(method):
    probs = torch.full((4, 28, 28), 0.9)
    boxes = torch.tensor([[2.0, 3.0, 12.0, 9.0], [50, 50, 60, 60], [5, 5, 5, 5], [float("nan"), 0, 4, 4]])
    out = paste_masks_in_image(probs, boxes, (20, 30), method=method, threshold=0.5)
    assert out.dtype == torch.bool and out.shape == (4, 20, 30)
    assert out[0, 4:8, 3:11].all() and not out[0, 12:].any() and not out[0, :, 14:].any()
    assert not out[1].any() and not out[3].any()  # outside the image, non-finite: nothing, no crash
    empty = paste_masks_in_image(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (20, 30), method=method)
    assert empty.shape == (0, 20, 30)
    with pytest.raises(ValueError, match="method"):
        paste_masks_in_image(probs, boxes, (20, 30), method="nearest")


def test_paste_chunking_is_invisible(monkeypatch, ref):
    import maskrcnn.ops.masks as m

    case = ref["paste_random"]
    full = paste_masks_in_image(case["probs"], case["boxes"], case["size"])
    monkeypatch.setattr(m, "_CHUNK_ELEMENTS", 3 * 40 * 56)  # a few boxes per chunk, several chunks
    assert torch.allclose(paste_masks_in_image(case["probs"], case["boxes"], case["size"]), full, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# crop and resize (mask targets)


def test_crop_and_resize_matches_torchvision_roi_align(ref):
    case = ref["crop_random"]  # includes a zero-size box, an inverted box, a box beyond the image
    out = crop_and_resize_masks(case["masks"], case["boxes"], 28, indices=case["indices"])
    assert out.shape == (20, 28, 28)
    assert (out - case["expected"]).abs().max() < 2e-6


def _roi_align_loop(mask, box, size):
    """RoIAlign (aligned=False, scale 1, adaptive sampling) of one mask, from the definition, float64."""
    h, w = mask.shape
    x1, y1, x2, y2 = box.tolist()
    rw, rh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    gh, gw = int(np.ceil(rh / size)), int(np.ceil(rw / size))

    def bilinear(y, x):
        if y < -1 or y > h or x < -1 or x > w:
            return 0.0
        y, x = max(y, 0.0), max(x, 0.0)
        y0, x0 = int(y), int(x)
        y1_, x1_ = y0 + 1, x0 + 1
        if y0 >= h - 1:
            y0 = y1_ = h - 1
            y = float(y0)
        if x0 >= w - 1:
            x0 = x1_ = w - 1
            x = float(x0)
        ly, lx = y - y0, x - x0
        return (
            (1 - ly) * (1 - lx) * mask[y0, x0]
            + (1 - ly) * lx * mask[y0, x1_]
            + ly * (1 - lx) * mask[y1_, x0]
            + ly * lx * mask[y1_, x1_]
        )

    out = np.zeros((size, size))
    for ph in range(size):
        for pw in range(size):
            acc = 0.0
            for iy in range(gh):
                for ix in range(gw):
                    acc += bilinear(
                        y1 + ph * rh / size + (iy + 0.5) * rh / size / gh,
                        x1 + pw * rw / size + (ix + 0.5) * rw / size / gw,
                    )
            out[ph, pw] = acc / (gh * gw)
    return out


def test_crop_and_resize_matches_loop_reference():
    g = torch.Generator().manual_seed(3)
    masks = (torch.rand(2, 17, 23, generator=g) > 0.4).to(torch.uint8)
    boxes = torch.tensor([[1.3, 2.7, 15.2, 12.9], [-3.0, 4.0, 30.0, 11.0], [6.0, 6.0, 6.5, 6.2]])
    indices = torch.tensor([0, 1, 1])
    out = crop_and_resize_masks(masks, boxes, 7, indices=indices)
    for r in range(3):
        expected = _roi_align_loop(masks[indices[r]].double().numpy(), boxes[r], 7)
        np.testing.assert_allclose(out[r].numpy(), expected, atol=2e-6)


def test_crop_and_resize_defaults_and_empty():
    masks = torch.zeros(2, 10, 10, dtype=torch.bool)
    masks[1, 2:8, 2:8] = True
    # aligned=False: the box [2, 7] samples points in [2, 7), all inside the square of ones
    out = crop_and_resize_masks(masks, torch.tensor([[0.0, 0, 10, 10], [2.0, 2, 7, 7]]), 4)
    assert out[0].abs().max() == 0 and torch.allclose(out[1], torch.ones(4, 4))
    assert crop_and_resize_masks(masks, torch.zeros(0, 4), 28).shape == (0, 28, 28)
    with pytest.raises(ValueError, match="indices"):
        crop_and_resize_masks(masks, torch.zeros(3, 4), 28)


# ----------------------------------------------------------------------------------------------
# annotations and RLE


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
    from maskrcnn.ops import masks as masks_module

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
