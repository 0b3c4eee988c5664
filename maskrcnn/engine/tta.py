"""Test-time augmentation (TTA) for Mask R-CNN inference, as detectron2's ``GeneralizedRCNNWithTTA``
does it (``TEST.AUG.MIN_SIZES`` / ``MAX_SIZE`` / ``FLIP``): the pure parts. ``Predictor``
(``predictor.py``) runs the model's stages on each augmentation and calls them.

Shapes: H x W the original image, h x w one augmentation's input (the image resized to one of
``min_sizes``), A augmentations, P detections pooled from all augmentations, D merged detections,
M the mask head's resolution (28), J keypoints, Hk the keypoint heatmaps' side (56). Boxes are xyxy
float.

The procedure, per image:
1. Augmentations (``augmentations``): the image resized so that its short side is each of
   ``min_sizes`` (long side at most ``max_size``), and with ``flip`` each of those mirrored left-right
   as well (the resized image flipped, as detectron2 orders resize then flip).
2. Boxes: the backbone, RPN and box head (with the model's own score threshold and per-class NMS) on
   each augmentation; its boxes un-flipped (``flip_boxes``) and scaled back to the original image
   (``boxes_to_original``), and all augmentations' detections pooled.
3. Merging (``merge_detections``): NMS class by class at the model's box NMS threshold
   (``model.roi_heads.nms_thresh``), best ``detections_per_image`` kept. NMS, not weighted box fusion:
   it is what detectron2's TTA (and its published numbers) use, every kept box is one the model drew,
   and one augmentation alone gives back the model's own detections exactly (a second NMS at the same
   threshold keeps all of an NMS's survivors), which is what makes TTA testable against plain
   prediction; weighted fusion would move boxes by a mixture no single pass produced.
4. Masks: the mask head on the merged boxes in every augmentation (``boxes_to_augmentation``: scaled,
   and mirrored for flipped ones), each flipped augmentation's M x M probabilities flipped back, and the
   probabilities averaged (``average_mask_probs``) before the usual paste at the mask threshold. This
   averaging, not the box merging, is what makes TTA masks better than any single scale's.

5. Keypoints (keypoint models), in the same second pass: the keypoint head on the merged boxes in every
   augmentation (with mirrored passes every box half an original pixel left, ``keypoint_boxes``: keypoints
   are pixel indices), each flipped augmentation's J x Hk x Hk heatmap logits mirrored back AND its
   channels permuted by the keypoint set's flip map (``flip_keypoint_heatmaps``: what the model calls the
   left eye in a mirrored image is the original's right eye), the logits averaged
   (``average_keypoint_heatmaps``, a running sum: all augmentations' heatmaps at once would be A x 21 MB
   for 100 people), then decoded once (``heatmaps_to_keypoints``, the model's own keypoint score) against
   the merged boxes in one augmentation's pixels, ``keypoint_frame``: the largest unflipped scale, whose
   pixel grid is the finest for the arg-max, and with one augmentation that augmentation, so that one scale
   at the model's own size without flips gives plain prediction's keypoints bit for bit. The flip map is
   the one training flips use (``data.keypoints.keypoint_flip_map``: ``data.keypoint_flip_map`` when set,
   else from ``data.keypoint_names``, COCO's for 17 unnamed keypoints, no swap for other unnamed sets, as
   training did).

An image without merged detections skips steps 4 and 5 (the second pass over every augmentation). A
scale enlarging the image more than ``ENLARGEMENT_NOTE`` times per side is worth a warning
(``enlargement_note``): the defaults (400-1200) make a 50-pixel thumbnail a 1200-pixel forward.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

from maskrcnn.modeling.postprocess import box_scale, scale_keypoints
from maskrcnn.ops.boxes import flip_boxes

__all__ = [
    "TTAOptions", "Augmentation", "as_tta_options", "augmentations", "flip_boxes", "flip_mask_probs",
    "boxes_to_original", "boxes_to_augmentation", "keypoint_boxes", "merge_detections",
    "average_mask_probs",
    "flip_keypoint_heatmaps", "average_keypoint_heatmaps", "keypoint_frame",
    "keypoints_to_original", "enlargement_note", "shrink_note",
]

# Enlarging an image more than this (per side) at some scale is worth a word: memory and time grow with
# the input's pixels (a 50-pixel image at --tta-sizes 4000 is a 16 MP forward, GBs of feature maps).
ENLARGEMENT_NOTE = 4.0

# Below this short side (pixels of the model's input) at every scale, nothing is found: the model's
# smallest anchors are 32 pixels (a --tta-max-size of 10 runs a 150-pixel image at 10 pixels).
SHRINK_NOTE = 32

# detectron2's defaults (TEST.AUG in its config defaults)
DEFAULT_MIN_SIZES = (400, 500, 600, 700, 800, 900, 1000, 1100, 1200)
DEFAULT_MAX_SIZE = 4000


def _positive_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1


@dataclass(frozen=True)
class TTAOptions:
    """How ``Predictor`` augments each image at test time.

    Args:
        min_sizes: the short side of each scale, in pixels (a non-empty sequence of integers >= 1).
        max_size: the long side's limit at every scale (as ``input.max_size_test`` is for one).
        flip: also run each scale mirrored left-right.
    """

    min_sizes: Sequence[int] = DEFAULT_MIN_SIZES
    max_size: int = DEFAULT_MAX_SIZE
    flip: bool = True

    def __post_init__(self):
        sizes = self.min_sizes
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise ValueError(f"tta min_sizes must be a sequence of integers >= 1, got {sizes!r}")
        sizes = tuple(sizes)
        if not sizes:
            raise ValueError("tta min_sizes is empty: give at least one size")
        bad = [s for s in sizes if not _positive_int(s)]
        if bad:
            raise ValueError(f"tta min_sizes must be integers >= 1, got {bad[0]!r}")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"tta min_sizes repeat a size: {list(sizes)}")
        if not _positive_int(self.max_size):
            raise ValueError(f"tta max_size must be an integer >= 1, got {self.max_size!r}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"tta flip must be True or False, got {self.flip!r}")
        object.__setattr__(self, "min_sizes", tuple(int(s) for s in sizes))
        object.__setattr__(self, "max_size", int(self.max_size))


def as_tta_options(tta: Union[None, bool, TTAOptions]) -> Optional[TTAOptions]:
    """None / False (no TTA), True (detectron2's defaults) or ``TTAOptions`` -> TTAOptions or None."""
    if tta is None or tta is False:
        return None
    if tta is True:
        return TTAOptions()
    if isinstance(tta, TTAOptions):
        return tta
    raise TypeError(f"tta must be None, True or a TTAOptions, got {tta!r}")


@dataclass(frozen=True)
class Augmentation:
    """One augmented version of an image: resized to short side ``min_size`` (long side at most
    ``max_size``), then mirrored left-right when ``flip``."""

    min_size: int
    max_size: int
    flip: bool


def augmentations(options: TTAOptions) -> list:
    """The A augmentations, scale by scale, each scale's unflipped version before its flipped one."""
    out = []
    for size in options.min_sizes:
        out.append(Augmentation(size, options.max_size, False))
        if options.flip:
            out.append(Augmentation(size, options.max_size, True))
    return out


def flip_mask_probs(probs: torch.Tensor) -> torch.Tensor:
    """(D, 1, M, M) box-relative mask probabilities of a mirrored box -> those of the unmirrored box
    (the columns reversed: the box's left edge becomes its right)."""
    return probs.flip(-1)


def boxes_to_original(boxes: torch.Tensor, aug_hw, original_hw, flipped: bool) -> torch.Tensor:
    """(D, 4) boxes in an augmentation's input (h x w) -> (D, 4) in the original image (H x W):
    un-flipped (in the augmentation's own width) and then scaled."""
    if flipped:
        boxes = flip_boxes(boxes, int(aug_hw[1]))
    return boxes * box_scale(aug_hw, original_hw, boxes)


def boxes_to_augmentation(boxes: torch.Tensor, original_hw, aug_hw, flipped: bool) -> torch.Tensor:
    """The inverse of ``boxes_to_original``: (D, 4) original boxes -> (D, 4) in the augmentation's input."""
    boxes = boxes * box_scale(original_hw, aug_hw, boxes)
    return flip_boxes(boxes, int(aug_hw[1])) if flipped else boxes


def keypoint_boxes(boxes: torch.Tensor, original_hw, aug_hw, mirrored_passes: bool) -> torch.Tensor:
    """(D, 4) boxes in an augmentation's input (``boxes_to_augmentation``'s) -> those its keypoint
    heatmaps are computed on, and (the frame's) decoded against. Keypoint labels are pixel indices (read
    without +0.5, torchvision's convention), so the model places a point half an original pixel (s / 2
    input pixels, s = w / W) left of its continuous position, in an input and in its mirror alike (as
    training's flips label a mirrored sample, ``data.transforms.flip_target``: (W - 1 - x) * s): the
    continuous mirror of a mirrored pass's heatmap lands s right of the unmirrored pass's (their average
    is the continuous position, half a pixel right of the labels' convention). With mirrored passes
    every pass's boxes, mirrored or not, are shifted left by s / 2: both then land on the index
    position, and an image and its mirror still get index-mirrored keypoints (W - 1 - x), as each one's
    mirrored pass is the other's unmirrored one. Without mirrored passes the boxes are unchanged (one
    scale at the model's size is plain prediction bit for bit)."""
    if not mirrored_passes:
        return boxes
    half = 0.5 * float(aug_hw[1]) / float(original_hw[1])
    return boxes - boxes.new_tensor([half, 0.0, half, 0.0])


def merge_detections(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, *, nms_thresh: float,
                     detections_per_image: int) -> torch.Tensor:
    """Pooled detections of all augmentations (P, 4) original xyxy, (P,), (P,) -> the indices kept (D,),
    by decreasing score (equal scores in pooled order): NMS within each class at ``nms_thresh``, then
    the best ``detections_per_image``."""
    from maskrcnn.ops import batched_nms

    return batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_image]


def average_mask_probs(per_augmentation: Sequence[torch.Tensor], flipped: Sequence[bool]) -> torch.Tensor:
    """A x (D, 1, M, M) mask probabilities of the same D merged boxes, one per augmentation, with whether
    each was mirrored -> their mean (D, 1, M, M), flipped ones flipped back first."""
    if len(per_augmentation) == 0 or len(per_augmentation) != len(flipped):
        raise ValueError(f"average_mask_probs: {len(per_augmentation)} mask sets for {len(flipped)} flags")
    aligned = [flip_mask_probs(p) if f else p for p, f in zip(per_augmentation, flipped)]
    return torch.stack(aligned).mean(dim=0)  # (A, D, 1, M, M) -> (D, 1, M, M)


def flip_keypoint_heatmaps(maps: torch.Tensor, flip_map: Optional[Sequence[int]]) -> torch.Tensor:
    """(D, J, Hk, Hk) keypoint heatmaps of mirrored boxes -> those of the unmirrored boxes: the columns
    reversed (the box's left edge becomes its right) and keypoint k read from channel ``flip_map[k]``
    (the mirrored image's left eye is the original's right eye; ``flip_map`` as training's flips use
    it, None: no left/right pairs)."""
    if flip_map is not None:
        if len(flip_map) != maps.shape[1]:
            raise ValueError(f"keypoint flip map has {len(flip_map)} entries, heatmaps have {maps.shape[1]}")
        maps = maps[:, list(flip_map)]  # (D, J, Hk, Hk) channels swapped left <-> right
    return maps.flip(-1)


def average_keypoint_heatmaps(per_augmentation: Sequence[torch.Tensor], flipped: Sequence[bool],
                              flip_map: Optional[Sequence[int]]) -> torch.Tensor:
    """A x (D, J, Hk, Hk) heatmap logits of the same D merged boxes, one per augmentation, with whether
    each was mirrored -> their mean (D, J, Hk, Hk), mirrored ones flipped back and their left and right
    keypoints swapped first. Summed in augmentation order, as ``Predictor`` sums them pass by pass; one
    augmentation's heatmaps come back unchanged (x / 1 is x)."""
    if len(per_augmentation) == 0 or len(per_augmentation) != len(flipped):
        raise ValueError(f"average_keypoint_heatmaps: {len(per_augmentation)} heatmap sets for "
                         f"{len(flipped)} flags")
    total = None
    for maps, f in zip(per_augmentation, flipped):
        aligned = flip_keypoint_heatmaps(maps, flip_map) if f else maps
        total = aligned if total is None else total + aligned
    return total / len(per_augmentation)


def keypoint_frame(augs: Sequence[Augmentation]) -> int:
    """The index in ``augs`` of the augmentation whose pixels the averaged heatmaps are decoded in: the
    unflipped one of the largest scale (the finest grid for the arg-max; each scale has an unflipped
    version, ``augmentations``), the first of equal ones."""
    unflipped = [a for a, aug in enumerate(augs) if not aug.flip]
    return max(unflipped, key=lambda a: (augs[a].min_size, -a))


# (D, J, 3) keypoints in an unflipped augmentation's input (h x w) -> in the original image (H x W), scaled
# as plain prediction's are (the one helper both use)
keypoints_to_original = scale_keypoints


def _largest_factor(options: TTAOptions, image_hw) -> tuple:
    """(H, W, the largest resize factor of any scale of ``options``) for an H x W image."""
    height, width = int(image_hw[0]), int(image_hw[1])
    short, long = min(height, width), max(height, width)
    return height, width, max(min(s / short, options.max_size / long) for s in options.min_sizes)


def enlargement_note(options: TTAOptions, image_hw) -> str:
    """A warning's text when some scale of ``options`` enlarges an H x W image more than
    ``ENLARGEMENT_NOTE`` times per side (its largest input in pixels and megapixels), else ''."""
    height, width, factor = _largest_factor(options, image_hw)
    if factor <= ENLARGEMENT_NOTE:
        return ""
    h, w = round(height * factor), round(width * factor)
    return (f"tta: a {width}x{height} image runs enlarged {factor:.0f} times at its largest scale "
            f"({w}x{h}, {w * h / 1e6:.1f} MP per forward; memory and time grow with the pixels): give "
            "--tta-sizes / min_sizes near the images' own size")


def shrink_note(options: TTAOptions, image_hw) -> str:
    """A warning's text when every scale of ``options`` shrinks an H x W image's short side below
    ``SHRINK_NOTE`` pixels (``max_size`` caps the long side: a tiny one leaves the model nothing to find),
    else ''."""
    height, width, factor = _largest_factor(options, image_hw)
    if round(min(height, width) * factor) >= SHRINK_NOTE:
        return ""
    h, w = max(1, round(height * factor)), max(1, round(width * factor))
    return (f"tta: a {width}x{height} image runs at most at {w}x{h} (--tta-max-size / max_size "
            f"{options.max_size}, --tta-sizes / min_sizes): under {SHRINK_NOTE} pixels a side, the model's "
            "smallest objects, little or nothing can be detected; raise --tta-max-size / max_size")
