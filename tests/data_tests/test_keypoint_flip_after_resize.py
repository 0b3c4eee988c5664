"""Training flips come after the resize (and scale jitter, crop): a flipped sample's keypoint labels
must carry the same offset from the drawn point as an unflipped sample's, at any resize factor, and
that offset must be the one flip TTA undoes at inference."""

import pytest
import torch

from maskrcnn.data.transforms import (
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    ResizeShortestEdge,
    flip_target,
)
from maskrcnn.modeling.roi_losses import keypoint_targets


def _dot_sample():
    """A dot on pixel (x 40, y 50) of a 100 x 160 image, labelled there (COCO pixel index)."""
    image = torch.zeros(3, 100, 160)
    image[:, 50, 40] = 1.0
    target = {"boxes": torch.tensor([[30.0, 40.0, 50.0, 60.0]]),
              "keypoints": torch.tensor([[[40.0, 50.0, 2.0]]])}
    return image, target


def _label_minus_dot(steps, *, flipped=False):
    """The x label minus the dot's column (as a pixel index) after ``steps``, which resize (bilinear,
    align_corners=False: input column 40 lands on column 40.5 * r - 0.5) and may then flip."""
    image, target = _dot_sample()
    out, t = Compose(steps)(image, target, torch.Generator().manual_seed(0))
    column = out[0].sum(0)  # (W',)
    centroid = float((column * torch.arange(column.numel())).sum() / column.sum())
    dot = (40 + 0.5) * out.shape[-1] / 160 - 0.5
    dot = out.shape[-1] - 1 - dot if flipped else dot
    assert dot == pytest.approx(centroid, abs=0.05)  # the sampled blob agrees with the mapping
    return float(t["keypoints"][0, 0, 0]) - dot, out.shape[-1], t


@pytest.mark.parametrize("min_size", [200, 167])  # r = 2, and 1.67 (COCO's 480 -> 800)
def test_a_flipped_sample_keeps_the_unflipped_label_offset(min_size):
    resize = ResizeShortestEdge(min_size=min_size, max_size=10000)
    plain, width, _ = _label_minus_dot([resize])
    flipped, _, t = _label_minus_dot([resize, RandomHorizontalFlip(prob=1.0, keypoint_flip_map=None)],
                                     flipped=True)
    r = width / 160
    # the index mirrored in the labels' own grid, then scaled: (W - 1 - x) * r (was W' - 1 - x * r,
    # which put the flipped samples r - 1 px right of the unflipped ones' offset)
    assert float(t["keypoints"][0, 0, 0]) == pytest.approx((160 - 1 - 40) * r)
    assert flipped == pytest.approx(plain, abs=1e-3)
    assert plain < 0  # torchvision's convention kept: x * r, left of the dot when enlarging


def test_scale_jitter_and_crop_before_the_flip_keep_the_label_grid():
    # resize x2, jitter x1.5, a crop: the flip still mirrors in the labels' grid, 3 px wide by then
    # (an odd integer factor: the blob is sampled symmetrically, its centroid is the dot's position)
    steps = [ResizeShortestEdge(min_size=200, max_size=10000), RandomScale(scale_range=(1.5, 1.5)),
             RandomCrop(crop_size=400)]
    offsets, labels = [], []
    for flip in (0.0, 1.0):
        image, target = _dot_sample()
        pipeline = Compose(steps + [RandomHorizontalFlip(prob=flip, keypoint_flip_map=None)])
        out, t = pipeline(image, target, torch.Generator().manual_seed(3))
        assert out.shape[-1] == 400
        column = out[0].sum(0)  # (400,)
        centroid = float((column * torch.arange(400)).sum() / column.sum())
        labels.append(float(t["keypoints"][0, 0, 0]))
        offsets.append(labels[-1] - centroid)
    assert offsets[1] == pytest.approx(offsets[0], abs=1e-4)
    assert offsets[0] == pytest.approx(-1.0)  # -(r - 1) / 2 at r = 3, torchvision's resize convention
    assert labels[1] == 400 - 3.0 - labels[0]


def test_an_unresized_target_still_mirrors_to_w_minus_1_minus_x():
    _, target = _dot_sample()
    assert float(flip_target(target, 160)["keypoints"][0, 0, 0]) == 119.0


@pytest.mark.parametrize("r", [1.0, 2.0])
def test_a_click_on_the_right_border_stays_a_target_once_flipped(r):
    """A labelled point at x = W (a click on the border, kept there when read) mirrored to x = -r lay left
    of its flipped box: a target in unflipped samples only. It goes to the left border."""
    width = int(160 * r)
    target = {"boxes": torch.tensor([[100.0 * r, 0.0, 160.0 * r, 50.0 * r]]),
              "keypoints": torch.tensor([[[160.0 * r, 10.0 * r, 2.0], [0.0, 0.0, 0.0]]]),
              "keypoint_pixel_width": r}
    flipped = flip_target(target, width)
    assert flipped["keypoints"][0, :, 0].tolist() == [0.0, 0.0]
    for t in (target, flipped):
        _, valid = keypoint_targets(t["keypoints"], t["boxes"], torch.tensor([0]))
        assert valid.tolist() == [[True, False]]  # the border click a target, the unlabelled point not


@pytest.mark.parametrize("min_size", [200, 167])
def test_flip_tta_decodes_the_training_labels_of_both_passes_to_one_point(min_size):
    """What training teaches an input of scale s (its labels, flipped and not) read as a model's output
    by flip TTA: the unmirrored pass decodes where it is, the mirrored pass against the mirrored,
    ``keypoint_boxes``-shifted box with its heatmap columns reversed; both must land on one point."""
    from maskrcnn.engine import tta

    resize = ResizeShortestEdge(min_size=min_size, max_size=10000)
    _, width, plain = _label_minus_dot([resize])
    _, _, mirror = _label_minus_dot([resize, RandomHorizontalFlip(prob=1.0, keypoint_flip_map=None)],
                                    flipped=True)
    box, hw, aug = torch.tensor([[30.0, 40.0, 50.0, 60.0]]), (100, 160), (round(100 * width / 160), width)
    frame = tta.keypoint_boxes(tta.boxes_to_augmentation(box, hw, aug, False), hw, aug, True)
    mirrored = tta.keypoint_boxes(tta.boxes_to_augmentation(box, hw, aug, True), hw, aug, True)
    unmirrored_pass = float(plain["keypoints"][0, 0, 0])
    # the mirrored pass's point, as an offset from its box's right edge, read from the frame box's left
    mirrored_pass = float(frame[0, 0]) + (float(mirrored[0, 2]) - float(mirror["keypoints"][0, 0, 0]))
    assert mirrored_pass == pytest.approx(unmirrored_pass, abs=1e-4)
