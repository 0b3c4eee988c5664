"""Augmentations for small datasets: scale jitter, random crop and colour jitter keep boxes, masks and
keypoints consistent, follow the generator, and leave the default pipeline exactly as it was."""

import colorsys

import pytest
import torch

from maskrcnn.data.transforms import (
    ColorJitter,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    ResizeShortestEdge,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    build_train_transforms,
    crop_target,
)


def _box_target(boxes, height, width, *, iscrowd=None):
    """A target whose masks are exactly its (integer) boxes, with one visible keypoint at each centre."""
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)  # (M, 4)
    m = boxes.shape[0]
    masks = torch.zeros(m, height, width, dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        masks[i, y1:y2, x1:x2] = 1
    kp = torch.zeros(m, 17, 3)  # (M, K, 3) COCO person: the nose visible at the centre, others unlabelled
    kp[:, 0, 0] = (boxes[:, 0] + boxes[:, 2]) / 2
    kp[:, 0, 1] = (boxes[:, 1] + boxes[:, 3]) / 2
    kp[:, 0, 2] = 2
    return {
        "boxes": boxes,
        "labels": torch.arange(1, m + 1),
        "masks": masks,
        "iscrowd": torch.zeros(m, dtype=torch.bool) if iscrowd is None else torch.tensor(iscrowd),
        "keypoints": kp,
        "image_id": 7,
        "orig_size": (height, width),
    }


def _mask_box(mask):
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


BOXES = [[2, 3, 20, 15], [25, 5, 58, 38], [10, 20, 30, 39], [40, 1, 44, 4]]


def test_scale_then_crop_keeps_masks_equal_to_boxes():
    # Scale 2 is exact for boxes and (nearest) masks alike, so a mask made from its box must still be
    # exactly its box after any crop: uncut boxes shifted, cut ones clipped and re-tightened.
    pipeline = Compose([RandomScale(scale_range=(2.0, 2.0)), RandomCrop(crop_size=48)])
    image = torch.rand(3, 40, 60)
    areas = [4 * (x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in BOXES]  # after the 2x scale
    dropped = cut = 0
    for seed in range(12):
        out, t = pipeline(image, _box_target(BOXES, 40, 60), torch.Generator().manual_seed(seed))
        assert out.shape == (3, 48, 48) and t["masks"].shape[1:] == (48, 48)
        m = len(t["boxes"])
        assert all(len(t[k]) == m for k in ("labels", "masks", "iscrowd", "keypoints"))
        for box, mask in zip(t["boxes"].tolist(), t["masks"]):
            assert box == _mask_box(mask)
        dropped += 4 - m
        cut += sum(
            int(mask.sum()) < areas[label - 1] for mask, label in zip(t["masks"], t["labels"].tolist())
        )
        kp = t["keypoints"]
        visible = kp[..., 2] > 0
        assert (kp[visible][:, 0] <= 48).all() and (kp[visible][:, 1] <= 48).all()
        assert (kp[~visible] == 0).all()  # invisible keypoints are exactly (0, 0, 0)
        assert t["image_id"] == 7 and t["orig_size"] == (40, 60)
    assert dropped > 0 and cut > 0  # both cases were exercised


def test_random_scale_factor_keeps_boxes_within_a_pixel_of_masks():
    pipeline = Compose([RandomScale(scale_range=(0.5, 1.5)), RandomCrop(crop_size=56)])
    sizes = set()
    for seed in range(8):
        out, t = pipeline(
            torch.rand(3, 40, 60), _box_target(BOXES, 40, 60), torch.Generator().manual_seed(seed)
        )
        sizes.add(tuple(out.shape[-2:]))
        for box, mask in zip(t["boxes"], t["masks"]):
            assert (box - torch.tensor(_mask_box(mask), dtype=torch.float32)).abs().max() <= 1.0
    assert len(sizes) >= 3


def test_crop_recomputes_cut_boxes_and_drops_instances_outside():
    height = width = 100
    diagonal = torch.zeros(height, width, dtype=torch.uint8)
    for y in range(height):
        diagonal[y, max(0, y - 2) : y + 3] = 1  # |x - y| <= 2
    target = _box_target(
        [[0, 0, 100, 100], [20, 30, 31, 41], [70, 70, 90, 90], [50, 0, 80, 20]],
        100,
        100,
        iscrowd=[False, False, False, True],
    )
    target["masks"][0] = diagonal
    target["boxes"][1] = torch.tensor([20.5, 30.25, 30.75, 40.5])  # float box, uncut: kept exactly
    target["keypoints"][1, 1] = torch.tensor([25.0, 5.0, 1.0])  # above the window
    target["area"] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # any other per-instance tensor is filtered too
    t = crop_target(target, top=10, left=0, height=50, width=60)
    # rows 10..59 of the diagonal hold x in 8..61; the window stops at 60
    assert t["boxes"].tolist() == [
        [8.0, 0.0, 60.0, 50.0],
        [20.5, 20.25, 30.75, 30.5],
        [50.0, 0.0, 60.0, 10.0],
    ]
    assert t["labels"].tolist() == [1, 2, 4]  # the instance wholly outside is gone with all its fields
    assert t["iscrowd"].tolist() == [False, False, True]  # crowd region clipped like the rest
    assert t["area"].tolist() == [1.0, 2.0, 4.0]
    assert t["masks"].shape == (3, 50, 60) and torch.equal(t["masks"][0], diagonal[10:60, :60])
    assert t["keypoints"][1, :2].tolist() == [[25.5, 25.5, 2.0], [0.0, 0.0, 0.0]]
    assert (t["keypoints"][1, 2:] == 0).all()  # unlabelled keypoints stay (0, 0, 0), not shifted
    assert t["image_id"] == 7 and t["orig_size"] == (100, 100)


def test_crop_without_masks_clips_boxes_and_drops_empty_ones():
    target = {
        "boxes": torch.tensor([[5.0, 5.0, 30.0, 30.0], [0.0, 0.0, 4.0, 4.0]]),
        "labels": torch.tensor([1, 2]),
    }
    t = crop_target(target, top=10, left=10, height=10, width=10)
    assert t["boxes"].tolist() == [[0.0, 0.0, 10.0, 10.0]] and t["labels"].tolist() == [1]
    empty = crop_target(_box_target([], 20, 20), top=0, left=0, height=10, width=10)
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 10, 10)


def test_random_crop_offsets_cover_all_positions_and_small_images_pass():
    image = torch.arange(30 * 50, dtype=torch.float32).reshape(1, 30, 50).expand(3, 30, 50)
    offsets = set()
    for seed in range(150):
        out, _ = RandomCrop(crop_size=20)(image, None, torch.Generator().manual_seed(seed))
        top, left = divmod(int(out[0, 0, 0]), 50)
        assert torch.equal(out, image[:, top : top + 20, left : left + 20])
        offsets.add((top, left))
    assert {t for t, _ in offsets} == set(range(11)) and {x for _, x in offsets} >= {0, 30}
    out, _ = RandomCrop(crop_size=20)(image[:, :15], None, torch.Generator().manual_seed(0))
    assert out.shape == (3, 15, 20)
    # a window larger than the image changes nothing but still draws its two values
    g, ref = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    target = _box_target(BOXES, 30, 50)
    out, t = RandomCrop(crop_size=64)(image, target, g)
    assert out is image and t is target
    torch.rand(2, generator=ref)
    assert torch.equal(g.get_state(), ref.get_state())


def test_random_scale_sizes_and_draws():
    image, target = torch.rand(3, 40, 60), _box_target(BOXES, 40, 60)
    out, t = RandomScale(scale_range=(0.01, 0.01))(image, target)
    assert out.shape == (3, 1, 1) and t["masks"].shape == (4, 1, 1)  # never below one pixel
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    out, t = RandomScale(scale_range=(1.5, 1.5), method="pil")(image, target, g)
    assert out.shape == (3, 60, 90) and torch.equal(g.get_state(), state)  # fixed factor: no draw
    assert torch.equal(t["boxes"], target["boxes"] * 1.5)
    out, _ = RandomScale(scale_range=(0.5, 2.0))(image, None, g)
    u = float(torch.rand((), generator=torch.Generator().manual_seed(0)))
    assert out.shape[-2:] == (int(40 * (0.5 + 1.5 * u) + 0.5), int(60 * (0.5 + 1.5 * u) + 0.5))


def _full_pipeline():
    return build_train_transforms(
        min_size=(30, 40),
        max_size=100,
        scale_range=(0.5, 2.0),
        crop_size=32,
        color_jitter=(0.4, 0.4, 0.4, 0.1),
    )


def test_pipeline_is_a_function_of_the_seed():
    pipeline = _full_pipeline()
    assert [type(t).__name__ for t in pipeline.transforms] == [
        "ResizeShortestEdge",
        "RandomScale",
        "RandomCrop",
        "RandomHorizontalFlip",
        "ColorJitter",
    ]
    image = torch.rand(3, 40, 60)

    def run(seed):
        return pipeline(image, _box_target(BOXES, 40, 60), torch.Generator().manual_seed(seed))

    (a, ta), (b, tb), (c, _) = run(3), run(3), run(4)
    assert torch.equal(a, b)
    assert all(torch.equal(ta[k], tb[k]) for k in ("boxes", "labels", "masks", "iscrowd", "keypoints"))
    assert not (a.shape == c.shape and torch.equal(a, c))


def test_defaults_reproduce_resize_and_flip_exactly():
    old = Compose(
        [
            ResizeShortestEdge(min_size=(20, 30, 40), max_size=100),
            RandomHorizontalFlip(prob=0.5),
        ]
    )
    new = build_train_transforms(
        min_size=(20, 30, 40), max_size=100, scale_range=[1, 1], crop_size=0, color_jitter=[0, 0, 0, 0]
    )
    assert len(new.transforms) == 2
    image = torch.rand(3, 40, 60)
    for seed in range(6):
        g_old, g_new = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        a, ta = old(image, _box_target(BOXES, 40, 60), g_old)
        b, tb = new(image, _box_target(BOXES, 40, 60), g_new)
        assert torch.equal(a, b) and torch.equal(g_old.get_state(), g_new.get_state())
        assert all(torch.equal(ta[k], tb[k]) for k in ("boxes", "masks", "keypoints"))


def test_colour_adjustments():
    image = torch.rand(3, 16, 16) * 0.5
    assert adjust_brightness(image, 1.5).mean().item() == pytest.approx(1.5 * image.mean().item(), rel=1e-5)
    grey = adjust_saturation(image, 0.0)
    luma = 0.2989 * image[0] + 0.587 * image[1] + 0.114 * image[2]
    assert torch.allclose(grey, luma.expand(3, 16, 16), atol=1e-6)
    flat = adjust_contrast(image, 0.0)
    assert torch.allclose(flat, luma.mean().expand(3, 16, 16), atol=1e-6)
    assert torch.allclose(adjust_hue(image, 0.0), image, atol=1e-6)
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert torch.allclose(adjust_hue(red, 1 / 3), torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1), atol=1e-6)


def test_hue_matches_colorsys():
    image = torch.rand(3, 4, 5, dtype=torch.float64)
    image[:, 0, 0] = 0.25  # grey: hue undefined
    out = adjust_hue(image, -0.2)
    for y in range(4):
        for x in range(5):
            h, s, v = colorsys.rgb_to_hsv(*image[:, y, x].tolist())
            assert out[:, y, x].tolist() == pytest.approx(
                colorsys.hsv_to_rgb((h - 0.2) % 1.0, s, v), abs=1e-12
            )


def test_color_jitter_draws_one_value_per_enabled_component():
    image = torch.rand(3, 8, 8)
    out, _ = ColorJitter(brightness=0.5)(image, None, torch.Generator().manual_seed(3))
    factor = 0.5 + float(torch.rand((), generator=torch.Generator().manual_seed(3)))
    assert torch.equal(out, (image * factor).clamp(0, 1))
    g, ref = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    ColorJitter(contrast=0.3, hue=0.2)(image, None, g)
    torch.rand(2, generator=ref)
    assert torch.equal(g.get_state(), ref.get_state())
    strong = ColorJitter(brightness=0.9, contrast=0.9, saturation=0.9, hue=0.5)
    for seed in range(5):
        out, _ = strong(image, None, torch.Generator().manual_seed(seed))
        assert out.min() >= 0 and out.max() <= 1 and not torch.equal(out, image)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale_range": (0.0, 1.0)},
        {"scale_range": (2.0, 1.0)},
        {"scale_range": (1.0,)},
        {"crop_size": -1},
        {"color_jitter": (-0.1, 0, 0, 0)},
        {"color_jitter": (0, 0, 0, 0.6)},
        {"color_jitter": (0, float("nan"), 0, 0)},
        {"color_jitter": (0.1, 0.1, 0.1)},
    ],
)
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        build_train_transforms(min_size=20, max_size=100, **kwargs)
    with pytest.raises(ValueError, match="positive"):
        RandomCrop(crop_size=0)
