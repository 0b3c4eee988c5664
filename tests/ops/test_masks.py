"""Mask pasting and mask targets against torchvision / detectron2 references and slow loops from the
definitions.

References in tests/data/masks_reference.pt were recorded with torchvision 0.28 (paste_masks_in_image,
roi_align) and from the golden model outputs of torchvision and detectron2 (pasted masks as RLE).
"""

from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
import torch.nn.functional as F

from maskrcnn.ops import crop_and_resize_masks, paste_masks_in_image, roi_align

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
    import maskrcnn.ops.paste as m

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


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_crop_and_resize_is_roi_align_on_the_masks(aligned, sampling_ratio):
    """One sampling plan: the targets equal roi_align of the float masks (its window path multiplies
    the same matrices: equal up to BLAS summation order), for both pixel conventions; uint8 masks are
    read as they are."""
    g = torch.Generator().manual_seed(5)
    masks = (torch.rand(4, 33, 41, generator=g) > 0.5).to(torch.uint8)
    xy = torch.rand(25, 2, generator=g) * 50 - 8
    boxes = torch.cat([xy, xy + torch.rand(25, 2, generator=g) * 45], 1)
    boxes[0] = torch.tensor([10.0, 10.0, 10.0, 10.0])  # empty
    boxes[1] = torch.tensor([20.0, 20.0, 5.0, 7.0])  # inverted
    indices = torch.randint(0, 4, (25,), generator=g)
    out = crop_and_resize_masks(masks, boxes, 14, indices=indices, sampling_ratio=sampling_ratio,
                                aligned=aligned)
    feats = masks[:, None].float().requires_grad_(True)  # a gradient: roi_align takes its window path
    rois = torch.cat([indices[:, None].float(), boxes], 1)
    expected = roi_align(feats, rois, (14, 14), 1.0, sampling_ratio, aligned)[:, 0]
    torch.testing.assert_close(out, expected.detach(), rtol=0, atol=1e-6)


@pytest.mark.cuda
def test_cuda_targets_and_paste_match_cpu(ref):
    case = ref["paste_random"]
    for method in ("torchvision", "grid_sample"):
        cpu = paste_masks_in_image(case["probs"], case["boxes"], case["size"], method=method)
        gpu = paste_masks_in_image(case["probs"].cuda(), case["boxes"].cuda(), case["size"], method=method)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-5)
    case = ref["crop_random"]
    cpu = crop_and_resize_masks(case["masks"], case["boxes"], 28, indices=case["indices"])
    gpu = crop_and_resize_masks(case["masks"].cuda(), case["boxes"].cuda(), 28,
                                indices=case["indices"].cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-5)
