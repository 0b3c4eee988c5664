"""The pure parts of test-time augmentation (``engine/tta.py``): augmentation list, box and mask flips
and their round trips, mapping to and from an augmentation, merging, mask-probability averaging,
keypoint heatmaps flipped back with left and right swapped, averaged and decoded in one frame."""

import pytest
import torch

from maskrcnn.engine.tta import (
    Augmentation,
    TTAOptions,
    as_tta_options,
    augmentations,
    average_keypoint_heatmaps,
    average_mask_probs,
    boxes_to_augmentation,
    boxes_to_original,
    flip_boxes,
    flip_keypoint_heatmaps,
    flip_mask_probs,
    keypoint_frame,
    keypoints_to_original,
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


def test_keypoint_heatmaps_flipped_back_with_left_and_right_swapped_by_hand():
    # 3 keypoints (nose, left eye, right eye), 1 x 3 heatmaps: each channel a different row of values
    maps = torch.tensor([[[[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]], [[7.0, 8.0, 9.0]]]])  # (1, 3, 1, 3)
    back = flip_keypoint_heatmaps(maps, (0, 2, 1))
    # the image's left eye is the mirror's right eye (channel 2), its columns reversed
    assert back.tolist() == [[[[3.0, 2.0, 1.0]], [[9.0, 8.0, 7.0]], [[6.0, 5.0, 4.0]]]]
    assert torch.equal(flip_keypoint_heatmaps(back, (0, 2, 1)), maps)  # an involution
    assert flip_keypoint_heatmaps(maps, None).tolist() == [[[[3.0, 2.0, 1.0]], [[6.0, 5.0, 4.0]],
                                                            [[9.0, 8.0, 7.0]]]]  # no pairs: no swap
    with pytest.raises(ValueError, match="keypoint flip map has 2 entries, heatmaps have 3"):
        flip_keypoint_heatmaps(maps, (1, 0))


def test_keypoint_heatmaps_averaged_after_aligning_mirrored_ones():
    a = torch.tensor([[[[0.0, 2.0]], [[4.0, 6.0]]]])  # (1, 2, 1, 2): a left and a right keypoint
    b = torch.tensor([[[[1.0, 3.0]], [[5.0, 7.0]]]])  # from a mirrored pass
    expected = torch.tensor([[[[(0 + 7) / 2, (2 + 5) / 2]], [[(4 + 3) / 2, (6 + 1) / 2]]]])
    assert torch.equal(average_keypoint_heatmaps([a, b], [False, True], (1, 0)), expected)
    assert torch.equal(average_keypoint_heatmaps([a], [False], (1, 0)), a)  # one pass: unchanged
    with pytest.raises(ValueError, match="2 heatmap sets for 1 flags"):
        average_keypoint_heatmaps([a, b], [False], (1, 0))


def test_keypoints_are_decoded_in_the_largest_unflipped_scale_and_scaled_as_plain_prediction():
    from maskrcnn.modeling.postprocess import detections_to_original

    augs = augmentations(TTAOptions(min_sizes=(600, 1000, 800), flip=True))
    assert keypoint_frame(augs) == 2 and augs[2] == Augmentation(1000, 4000, False)
    assert keypoint_frame(augmentations(TTAOptions(min_sizes=(500,), flip=False))) == 0
    kps = torch.rand(4, 5, 3, generator=torch.Generator().manual_seed(1)) * 100
    plain = detections_to_original({"boxes": torch.zeros(4, 4), "keypoints": kps}, (64, 85), (90, 120),
                                   paste_masks=False)
    assert torch.equal(keypoints_to_original(kps, (64, 85), (90, 120)), plain["keypoints"])
