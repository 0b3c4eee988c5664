"""The pure parts of test-time augmentation (``engine/tta.py``): augmentation list, box and mask flips
and their round trips, mapping to and from an augmentation, merging, mask-probability averaging."""

import pytest
import torch

from maskrcnn.engine.tta import (
    Augmentation,
    TTAOptions,
    as_tta_options,
    augmentations,
    average_mask_probs,
    boxes_to_augmentation,
    boxes_to_original,
    flip_boxes,
    flip_mask_probs,
    merge_detections,
)


def test_augmentations_are_each_scale_then_its_mirror():
    augs = augmentations(TTAOptions(min_sizes=(400, 600), max_size=1000, flip=True))
    assert augs == [Augmentation(400, 1000, False), Augmentation(400, 1000, True),
                    Augmentation(600, 1000, False), Augmentation(600, 1000, True)]
    assert augmentations(TTAOptions(min_sizes=[500], flip=False)) == [Augmentation(500, 4000, False)]
    assert as_tta_options(True) == TTAOptions()
    assert TTAOptions().min_sizes == (400, 500, 600, 700, 800, 900, 1000, 1100, 1200)
    assert as_tta_options(None) is None and as_tta_options(False) is None


@pytest.mark.parametrize("kwargs, message", [
    ({"min_sizes": ()}, "tta min_sizes is empty: give at least one size"),
    ({"min_sizes": (400, -5)}, "tta min_sizes must be integers >= 1, got -5"),
    ({"min_sizes": (400, 400)}, "tta min_sizes repeat a size: [400, 400]"),
    ({"min_sizes": "800"}, "tta min_sizes must be a sequence of integers >= 1, got '800'"),
    ({"max_size": 0}, "tta max_size must be an integer >= 1, got 0"),
    ({"flip": "yes"}, "tta flip must be True or False, got 'yes'"),
])
def test_bad_options_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError) as e:
        TTAOptions(**kwargs)
    assert str(e.value) == message


def test_box_flip_by_hand_and_round_trip_exact():
    boxes = torch.tensor([[10.0, 5.0, 30.0, 20.0], [0.0, 0.0, 100.0, 50.0], [12.25, 1.5, 13.75, 2.0]])
    flipped = flip_boxes(boxes, 100)
    assert torch.equal(flipped, torch.tensor([[70.0, 5.0, 90.0, 20.0], [0.0, 0.0, 100.0, 50.0],
                                              [86.25, 1.5, 87.75, 2.0]]))
    assert torch.equal(flip_boxes(flipped, 100), boxes)


def test_boxes_to_and_from_an_augmentation_by_hand():
    # original 32 x 48, augmentation 64 x 96 (twice), mirrored: x -> 96 - x there, then halved
    own = torch.tensor([[10.0, 4.0, 30.0, 20.0]])
    original = boxes_to_original(own, (64, 96), (32, 48), flipped=True)
    assert torch.equal(original, torch.tensor([[33.0, 2.0, 43.0, 10.0]]))
    assert torch.equal(boxes_to_augmentation(original, (32, 48), (64, 96), flipped=True), own)
    assert torch.equal(boxes_to_original(own, (64, 96), (32, 48), flipped=False),
                       torch.tensor([[5.0, 2.0, 15.0, 10.0]]))


def test_mask_flip_by_hand_and_round_trip_exact():
    probs = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    flipped = flip_mask_probs(probs)
    assert torch.equal(flipped[:, :, :, 0], probs[:, :, :, 27])  # the box's left column was its right
    assert torch.equal(flip_mask_probs(flipped), probs)


def test_mask_probs_averaged_after_flipping_mirrored_ones_back():
    a = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]]])  # (1, 1, 2, 2)
    b = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])  # from a mirrored augmentation: columns reversed
    expected = torch.tensor([[[[(0.2 + 0.0) / 2, (0.4 + 1.0) / 2], [(0.6 + 0.5) / 2, (0.8 + 0.5) / 2]]]])
    assert torch.allclose(average_mask_probs([a, b], [False, True]), expected, atol=1e-7)
    assert torch.equal(average_mask_probs([a], [False]), a)
    with pytest.raises(ValueError, match="2 mask sets for 1 flags"):
        average_mask_probs([a, b], [False])


def test_merge_is_nms_class_by_class_then_the_best():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 9.0], [0.0, 0.0, 10.0, 9.5],
                          [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.6, 0.9, 0.8, 0.7])
    labels = torch.tensor([1, 1, 2, 1])
    # 0 overlaps 1 (IoU 0.9) in class 1: dropped; 2 is another class, kept
    keep = merge_detections(boxes, scores, labels, nms_thresh=0.5, detections_per_image=10)
    assert keep.tolist() == [1, 2, 3]
    assert merge_detections(boxes, scores, labels, nms_thresh=0.5, detections_per_image=2).tolist() == [1, 2]
