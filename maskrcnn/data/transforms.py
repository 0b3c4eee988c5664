"""Resizing and flipping of images and their targets.

Shapes: N images; an image is (3, H, W) float RGB in [0, 1]; a target holds boxes (M, 4) xyxy pixels,
masks (M, H, W) uint8, keypoints (M, K, 3) (x, y, visibility) for M instances and K keypoints.

``resize_image`` reproduces torchvision's ``GeneralizedRCNNTransform`` resize exactly (same output size
and the same bilinear values), so that checkpoints from torchvision see the inputs they were trained on.
``method="pil"`` instead resizes like detectron2's ``ResizeShortestEdge`` (PIL bilinear on uint8, the
output size rounded rather than floored).

Training transforms are callables ``t(image, target, generator=None) -> (image, target)``; they draw
their randomness from ``generator`` so that a sample's augmentation can be a pure function of a seed
(see ``data/loader.py``), which makes resumed runs see exactly the same inputs.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "COCO_KEYPOINT_FLIP_MAP",
    "Compose",
    "RandomHorizontalFlip",
    "ResizeShortestEdge",
    "build_train_transforms",
    "flip_target",
    "resize_image",
    "resize_target",
    "resized_size",
]

RESIZE_METHODS = ("torchvision", "pil")

# COCO person keypoints: nose, then (left, right) pairs of eyes, ears, shoulders, elbows, wrists, hips,
# knees, ankles. A horizontal flip turns each left keypoint into the right one.
COCO_KEYPOINT_FLIP_MAP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)


def _check_method(method: str) -> None:
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize method must be one of {RESIZE_METHODS}, got {method!r}")


def resized_size(height: int, width: int, *, min_size: int, max_size: int, method: str = "torchvision"):
    """The (H', W') that ``resize_image`` produces for an image of ``height`` x ``width``."""
    _check_method(method)
    if height <= 0 or width <= 0:
        raise ValueError(f"cannot resize an empty image of size {height}x{width}")
    if method == "torchvision":
        # torchvision: one scale for both axes, then F.interpolate floors size * scale (in double).
        scale = min(min_size / min(height, width), max_size / max(height, width))
        return int(math.floor(height * scale)), int(math.floor(width * scale))
    # detectron2's ResizeShortestEdge.get_output_shape: scale the short side, cap the long side, round.
    scale = min_size / min(height, width)
    new_h, new_w = (min_size, scale * width) if height < width else (scale * height, min_size)
    if max(new_h, new_w) > max_size:
        cap = max_size / max(new_h, new_w)
        new_h, new_w = new_h * cap, new_w * cap
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_image(
    image: torch.Tensor, *, min_size: int, max_size: int, method: str = "torchvision"
) -> torch.Tensor:
    """Resize a (3, H, W) float image so that its short side is ``min_size`` unless the long side would
    then exceed ``max_size`` (then the long side is ``max_size``)."""
    _check_method(method)
    if image.dim() != 3:
        raise ValueError(f"resize_image expects a (C, H, W) image, got shape {tuple(image.shape)}")
    height, width = image.shape[-2:]
    if method == "torchvision":
        if height <= 0 or width <= 0:
            raise ValueError(f"cannot resize an empty image of size {height}x{width}")
        # Exactly torchvision's call: the scale as a Python float, the output size recomputed (floored)
        # by F.interpolate, the interpolation weights then derived from the sizes.
        scale = min(min_size / min(height, width), max_size / max(height, width))
        return F.interpolate(
            image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
        )[0]
    new_h, new_w = resized_size(height, width, min_size=min_size, max_size=max_size, method=method)
    array = (image.permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()  # (H, W, 3)
    pil = Image.fromarray(np.ascontiguousarray(array)).resize((new_w, new_h), Image.BILINEAR)
    out = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)  # (3, H', W')
    return out.to(image.dtype) / 255.0


def resize_target(target: dict, old_hw: Sequence[int], new_hw: Sequence[int]) -> dict:
    """Scale boxes and keypoints by the per-axis size ratio and resize masks (nearest, pixel-centred)."""
    out = dict(target)
    ratio_h = new_hw[0] / old_hw[0]
    ratio_w = new_hw[1] / old_hw[1]
    if "boxes" in out:
        scale = torch.tensor([ratio_w, ratio_h, ratio_w, ratio_h], dtype=out["boxes"].dtype)
        out["boxes"] = out["boxes"] * scale
    if "keypoints" in out:
        kp = out["keypoints"].clone()  # (M, K, 3)
        kp[..., 0] *= ratio_w
        kp[..., 1] *= ratio_h
        out["keypoints"] = kp
    if "masks" in out:
        masks = out["masks"]
        if masks.shape[0] == 0:
            out["masks"] = masks.new_zeros((0, int(new_hw[0]), int(new_hw[1])))
        else:
            # "nearest-exact" samples at pixel centres, consistent with the bilinear image resize.
            resized = F.interpolate(masks[None].to(torch.uint8), size=tuple(new_hw), mode="nearest-exact")
            out["masks"] = resized[0].to(masks.dtype)  # (M, H', W')
    return out


def flip_target(target: dict, width: int, keypoint_flip_map: Optional[Sequence[int]] = None) -> dict:
    """Mirror a target left-right in an image of the given width."""
    out = dict(target)
    if "boxes" in out:
        boxes = out["boxes"]
        out["boxes"] = torch.stack(
            [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1
        )
    if "masks" in out:
        out["masks"] = out["masks"].flip(-1)
    if "keypoints" in out:
        kp = out["keypoints"].clone()  # (M, K, 3)
        kp[..., 0] = width - kp[..., 0]
        if keypoint_flip_map is not None:
            if len(keypoint_flip_map) != kp.shape[1]:
                raise ValueError(
                    f"keypoint flip map has {len(keypoint_flip_map)} entries, keypoints have {kp.shape[1]}"
                )
            kp = kp[:, list(keypoint_flip_map)]  # (M, K, 3): left and right swapped
        kp[kp[..., 2] == 0] = 0  # unlabelled keypoints stay (0, 0, 0)
        out["keypoints"] = kp
    return out


def _uniform(generator: Optional[torch.Generator]) -> float:
    return float(torch.rand((), generator=generator))


class ResizeShortestEdge:
    """Resize so that the short side is ``min_size`` (one size, or a tuple sampled per image)."""

    def __init__(self, *, min_size: Union[int, Sequence[int]], max_size: int, method: str = "torchvision"):
        _check_method(method)
        sizes = (min_size,) if isinstance(min_size, (int, float)) else tuple(min_size)
        if not sizes or any(int(s) <= 0 for s in sizes) or max_size <= 0:
            raise ValueError(f"sizes must be positive, got min_size={min_size!r} max_size={max_size!r}")
        self.min_sizes = tuple(int(s) for s in sizes)
        self.max_size = int(max_size)
        self.method = method

    def __call__(self, image, target=None, generator: Optional[torch.Generator] = None):
        if len(self.min_sizes) == 1:
            size = self.min_sizes[0]
        else:
            size = self.min_sizes[int(torch.randint(len(self.min_sizes), (), generator=generator))]
        old_hw = tuple(image.shape[-2:])
        image = resize_image(image, min_size=size, max_size=self.max_size, method=self.method)
        if target is not None:
            target = resize_target(target, old_hw, tuple(image.shape[-2:]))
        return image, target

    def __repr__(self) -> str:
        return (
            f"ResizeShortestEdge(min_size={self.min_sizes}, max_size={self.max_size}, method={self.method!r})"
        )


class RandomHorizontalFlip:
    """Mirror the image and its target with probability ``prob``."""

    def __init__(
        self, *, prob: float = 0.5, keypoint_flip_map: Optional[Sequence[int]] = COCO_KEYPOINT_FLIP_MAP
    ):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {prob}")
        self.prob = prob
        self.keypoint_flip_map = keypoint_flip_map

    def __call__(self, image, target=None, generator: Optional[torch.Generator] = None):
        if self.prob > 0 and _uniform(generator) < self.prob:
            image = image.flip(-1)
            if target is not None:
                target = flip_target(target, image.shape[-1], self.keypoint_flip_map)
        return image, target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(prob={self.prob})"


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, image, target=None, generator: Optional[torch.Generator] = None):
        for t in self.transforms:
            image, target = t(image, target, generator)
        return image, target

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


def build_train_transforms(
    *,
    min_size: Union[int, Sequence[int]],
    max_size: int,
    flip_prob: float = 0.5,
    method: str = "torchvision",
    keypoint_flip_map: Optional[Sequence[int]] = COCO_KEYPOINT_FLIP_MAP,
) -> Compose:
    """The training pipeline: random short-side resize, then a random horizontal flip."""
    return Compose(
        [
            ResizeShortestEdge(min_size=min_size, max_size=max_size, method=method),
            RandomHorizontalFlip(prob=flip_prob, keypoint_flip_map=keypoint_flip_map),
        ]
    )


def build_test_transforms(*, min_size: int, max_size: int, method: str = "torchvision") -> Compose:
    """The evaluation pipeline: a fixed short-side resize."""
    return Compose([ResizeShortestEdge(min_size=min_size, max_size=max_size, method=method)])
