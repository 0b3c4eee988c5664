"""Resizing, flipping, scale jitter, cropping and colour jitter of images and their targets.

Shapes: N images; an image is (3, H, W) float RGB in [0, 1]; a target holds boxes (M, 4) xyxy pixels,
labels (M,), masks (M, H, W) uint8, iscrowd (M,) bool, keypoints (M, K, 3) (x, y, visibility) for M
instances and K keypoints, plus image-level entries (image_id, orig_size) that pass through untouched.
A crop window is height x width pixels with its top-left corner at (top, left).

``resize_image`` reproduces torchvision's ``GeneralizedRCNNTransform`` resize exactly (same output size
and the same bilinear values), so that checkpoints from torchvision see the inputs they were trained on.
``method="pil"`` instead resizes like detectron2's ``ResizeShortestEdge`` (PIL bilinear on uint8, the
output size rounded rather than floored).

Training transforms are callables ``t(image, target, generator=None) -> (image, target)``; they draw
their randomness from ``generator`` so that a sample's augmentation can be a pure function of a seed
(see ``data/loader.py``), which makes resumed runs see exactly the same inputs. How many values a
transform draws depends only on its arguments, never on the image or target (RandomScale 1, RandomCrop
2, ColorJitter one per non-zero component, a disabled transform none), so the layout of a sample's
stream is fixed by the configuration; ``build_train_transforms`` adds a transform only when enabled,
so the defaults draw exactly what the resize-and-flip pipeline always drew.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from maskrcnn.ops.boxes import clip_boxes_to_image, flip_boxes

__all__ = [
    "COCO_KEYPOINT_FLIP_MAP",
    "ColorJitter",
    "Compose",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "ResizeShortestEdge",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "build_train_transforms",
    "crop_target",
    "flip_target",
    "resize_image",
    "resize_image_to",
    "resize_target",
    "resized_size",
]

RESIZE_METHODS = ("torchvision", "pil")

# The width, in the current image's pixels, of one pixel of the image the keypoints were labelled on
# (the product of the x ratios of the resizes so far; absent: 1). ``resize_target`` keeps it and
# ``flip_target`` mirrors keypoints in that grid (see there); a plain float, image-level.
KEYPOINT_PIXEL_WIDTH = "keypoint_pixel_width"

# Entries of a target that describe the image, not its instances: never filtered with the instances,
# even when a tensor among them happens to have M rows.
IMAGE_LEVEL_KEYS = ("image_id", "orig_size", KEYPOINT_PIXEL_WIDTH)

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
        # at least one pixel: a 3000x1 strip would otherwise become 0 rows high (resize_image agrees)
        return max(1, int(math.floor(height * scale))), max(1, int(math.floor(width * scale)))
    # detectron2's ResizeShortestEdge.get_output_shape: scale the short side, cap the long side, round.
    scale = min_size / min(height, width)
    new_h, new_w = (min_size, scale * width) if height < width else (scale * height, min_size)
    if max(new_h, new_w) > max_size:
        cap = max_size / max(new_h, new_w)
        new_h, new_w = new_h * cap, new_w * cap
    return max(1, int(new_h + 0.5)), max(1, int(new_w + 0.5))


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
        if math.floor(height * scale) < 1 or math.floor(width * scale) < 1:
            # Extreme aspect ratio (3000x1): the floored size would be 0; keep one pixel instead.
            new_hw = resized_size(height, width, min_size=min_size, max_size=max_size, method=method)
            return F.interpolate(image[None], size=new_hw, mode="bilinear", align_corners=False)[0]
        return F.interpolate(
            image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
        )[0]
    new_hw = resized_size(height, width, min_size=min_size, max_size=max_size, method=method)
    return _pil_resize(image, new_hw)


def _pil_resize(image: torch.Tensor, new_hw: Sequence[int]) -> torch.Tensor:
    """detectron2's resize: PIL bilinear on the uint8 image (PIL widens its filter when shrinking)."""
    array = (image.permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()  # (H, W, 3)
    pil = Image.fromarray(np.ascontiguousarray(array)).resize(
        (int(new_hw[1]), int(new_hw[0])), Image.BILINEAR
    )
    out = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)  # (3, H', W')
    return out.to(image.dtype) / 255.0


def resize_image_to(
    image: torch.Tensor, new_hw: Sequence[int], *, method: str = "torchvision"
) -> torch.Tensor:
    """Resize a (3, H, W) float image to exactly ``new_hw`` = (H', W') with the convention of
    ``resize_image``: bilinear on the float image without antialiasing ("torchvision", as
    GeneralizedRCNNTransform) or PIL bilinear on uint8 ("pil", which antialiases when shrinking)."""
    _check_method(method)
    if image.dim() != 3:
        raise ValueError(f"resize_image_to expects a (C, H, W) image, got shape {tuple(image.shape)}")
    if min(image.shape[-2:]) <= 0 or min(new_hw) <= 0:
        raise ValueError(
            f"cannot resize {tuple(image.shape[-2:])} to {tuple(new_hw)}: sides must be positive"
        )
    if method == "pil":
        return _pil_resize(image, new_hw)
    size = (int(new_hw[0]), int(new_hw[1]))
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


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
        out[KEYPOINT_PIXEL_WIDTH] = float(target.get(KEYPOINT_PIXEL_WIDTH, 1.0)) * ratio_w
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
        out["boxes"] = flip_boxes(out["boxes"], width)
    if "masks" in out:
        out["masks"] = out["masks"].flip(-1)
    if "keypoints" in out:
        kp = out["keypoints"].clone()  # (M, K, 3)
        # Keypoints are COCO pixel indices read as written (no +0.5 at load) and resized as x * r
        # (torchvision's convention, which the reference parity depends on): pixel x, whose centre is at
        # (x + 0.5) * r once resized, is labelled x * r, r / 2 left of it. A flipped sample must carry
        # the same offset, or flipped and unflipped samples teach the model two positions: so the index
        # is mirrored in the grid the labels were drawn on, x -> (W0 - 1 - x) * r with W0 = W / r, which
        # is W - r - x on the resized label (any crop since shifts by whole pixels and keeps r). W - x
        # (the continuous mirror, right for boxes and masks) put flipped labels r px right of that, and
        # W - 1 - x (r - 1) px right; both are W - r - x when the image was not resized (r = 1).
        # detectron2 reaches the same agreement by adding 0.5 at load and mirroring W - x. Flip TTA
        # (``engine/tta.py``, ``keypoint_boxes``) undoes exactly this r / 2 offset in both passes.
        r = float(target.get(KEYPOINT_PIXEL_WIDTH, 1.0))
        kp[..., 0] = (width - r) - kp[..., 0]
        # labels lie in [0, W] (a click on the right border is kept at W: ``data/keypoints.clip_keypoints``),
        # one pixel wider than the index grid: mirrored, the last pixel's width would fall left of 0, off
        # the (mirrored) box, and such points would count only in unflipped samples; they go to the left
        # border, as their unflipped selves sit on the right one
        kp[..., 0] = kp[..., 0].clamp(min=0.0)
        if keypoint_flip_map is not None:
            if len(keypoint_flip_map) != kp.shape[1]:
                raise ValueError(
                    f"keypoint flip map has {len(keypoint_flip_map)} entries, keypoints have {kp.shape[1]}"
                )
            kp = kp[:, list(keypoint_flip_map)]  # (M, K, 3): left and right swapped
        kp[kp[..., 2] == 0] = 0  # unlabelled keypoints stay (0, 0, 0)
        out["keypoints"] = kp
    return out


def _mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight xyxy boxes (C, 4) around the pixels of (C, h, w) masks, on pixel edges; an empty mask gets
    a meaningless box (callers drop those instances)."""
    cols = masks.bool().any(dim=1).int()  # (C, w): does column x hold a pixel
    rows = masks.bool().any(dim=2).int()  # (C, h)
    w, h = cols.shape[1], rows.shape[1]
    x1, x2 = cols.argmax(dim=1), w - cols.flip(1).argmax(dim=1)  # (C,) first and one past last
    y1, y2 = rows.argmax(dim=1), h - rows.flip(1).argmax(dim=1)
    return torch.stack([x1, y1, x2, y2], dim=1).to(torch.float32)


def crop_target(target: dict, *, top: int, left: int, height: int, width: int) -> dict:
    """The target of the window ``[top, top + height) x [left, left + width)`` of its image.

    Masks are cropped and boxes shifted and clipped to the window. An instance the window cuts gets the
    tight box of its remaining mask pixels (within the clipped box), so that half a diagonal object does
    not keep a loose box; an uncut one keeps its box exactly. Instances left without box area, or (with
    masks) without a mask pixel, are dropped from every per-instance tensor together. Keypoints outside
    the window (x in [0, width], y in [0, height], edges included as detectron2 does) become (0, 0, 0).
    Crowd regions are treated like any instance.
    """
    out = dict(target)
    masks = out.get("masks")
    if masks is not None:
        masks = masks[:, top : top + height, left : left + width]  # (M, h, w)
        out["masks"] = masks
    if "keypoints" in out:
        kp = out["keypoints"].clone()  # (M, K, 3)
        kp[..., 0] -= left
        kp[..., 1] -= top
        x, y = kp[..., 0], kp[..., 1]
        outside = (x < 0) | (x > width) | (y < 0) | (y > height) | (kp[..., 2] == 0)  # (M, K)
        kp[outside] = 0
        out["keypoints"] = kp
    if "boxes" not in out:
        return out
    boxes = out["boxes"]
    shifted = boxes - torch.tensor([left, top, left, top], dtype=boxes.dtype)  # (M, 4)
    clipped = clip_boxes_to_image(shifted, (height, width))  # (M, 4)
    if masks is not None:
        cut = (clipped != shifted).any(dim=1)  # (M,)
        if bool(cut.any()):
            tight = _mask_boxes(masks[cut]).to(boxes.dtype)  # (C, 4) for the C cut instances
            inner = clipped[cut]  # (C, 4)
            lo, hi = torch.maximum(inner[:, :2], tight[:, :2]), torch.minimum(inner[:, 2:], tight[:, 2:])
            clipped[cut] = torch.cat([lo, hi], dim=1)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])  # (M,)
    if masks is not None:
        keep &= masks.flatten(1).bool().any(dim=1)
    out["boxes"] = clipped
    m = boxes.shape[0]
    for key, value in list(out.items()):
        per_instance = torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == m
        if per_instance and key not in IMAGE_LEVEL_KEYS:
            out[key] = value[keep]  # copies, so the full-size masks can be freed
    return out


# ITU-R 601-2 luma, as PIL's convert("L") and torchvision's rgb_to_grayscale.
LUMA_WEIGHTS = (0.2989, 0.587, 0.114)


def _grey(image: torch.Tensor) -> torch.Tensor:
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"colour adjustments expect a (3, H, W) RGB image, got shape {tuple(image.shape)}")
    r, g, b = image.unbind(0)
    return (LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b)[None]  # (1, H, W)


def _blend(image: torch.Tensor, other, factor: float) -> torch.Tensor:
    return (factor * image + (1.0 - factor) * other).clamp(0.0, 1.0)


def adjust_brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale every value by ``factor`` (0: black, 1: unchanged), clamped to [0, 1]."""
    return _blend(image, 0.0, factor)


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the image's mean grey level (0: flat grey, 1: unchanged)."""
    return _blend(image, _grey(image).mean(), factor)


def adjust_saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the grey image (0: grey, 1: unchanged, > 1: more colourful)."""
    return _blend(image, _grey(image), factor)


def _rgb_to_hsv(image: torch.Tensor):
    """(3, H, W) RGB -> hue in [0, 1) of a turn, saturation, value, each (H, W); as colorsys."""
    r, g, b = image.unbind(0)
    maxc, minc = image.max(dim=0).values, image.min(dim=0).values
    chroma = maxc - minc
    grey = chroma == 0  # hue undefined: 0, as colorsys
    sat = chroma / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    safe = torch.where(grey, torch.ones_like(chroma), chroma)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(grey, torch.zeros_like(hue), (hue / 6.0) % 1.0)
    return hue, sat, maxc


def _hsv_to_rgb(hue: torch.Tensor, sat: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    sector = torch.floor(hue * 6.0)
    frac = hue * 6.0 - sector
    p, q, t = val * (1.0 - sat), val * (1.0 - sat * frac), val * (1.0 - sat * (1.0 - frac))
    # The six 60-degree sectors of the hue circle, each a choice of (r, g, b) among v, p, q, t.
    table = torch.stack(
        [
            torch.stack([val, q, p, p, t, val]),
            torch.stack([t, val, val, q, p, p]),
            torch.stack([p, p, t, val, val, q]),
        ]
    )  # (3, 6, H, W)
    index = (sector.long() % 6)[None, None].expand(3, 1, *hue.shape)  # (3, 1, H, W)
    return table.gather(1, index)[:, 0].clamp(0.0, 1.0)  # (3, H, W)


def adjust_hue(image: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue by ``shift`` of a turn (in [-0.5, 0.5]) keeping saturation and value, in HSV as
    torchvision's adjust_hue."""
    _grey(image)  # validates the shape
    hue, sat, val = _rgb_to_hsv(image)
    return _hsv_to_rgb((hue + shift) % 1.0, sat, val)


def _uniform(generator: Optional[torch.Generator]) -> float:
    return float(torch.rand((), generator=generator))


def _pair(values: Sequence[float], name: str) -> tuple:
    values = tuple(float(v) for v in values)
    if len(values) != 2:
        raise ValueError(f"{name} must be two numbers (lo, hi), got {values!r}")
    return values


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


class RandomScale:
    """Resize by a factor drawn uniformly from ``scale_range = (lo, hi)`` (large-scale jitter: (0.1, 2.0)).

    Meant after ``ResizeShortestEdge``; both sides are rounded and kept at least 1 pixel, the target
    follows with ``resize_target``. Draws one value, none when lo == hi.
    """

    def __init__(self, *, scale_range: Sequence[float], method: str = "torchvision"):
        _check_method(method)
        lo, hi = _pair(scale_range, "scale_range")
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {tuple(scale_range)!r}")
        self.scale_range = (lo, hi)
        self.method = method

    def __call__(self, image, target=None, generator: Optional[torch.Generator] = None):
        lo, hi = self.scale_range
        factor = lo if lo == hi else lo + (hi - lo) * _uniform(generator)
        old_hw = tuple(image.shape[-2:])
        new_hw = tuple(max(1, int(side * factor + 0.5)) for side in old_hw)
        if new_hw == old_hw:
            return image, target
        image = resize_image_to(image, new_hw, method=self.method)
        if target is not None:
            target = resize_target(target, old_hw, new_hw)
        return image, target

    def __repr__(self) -> str:
        return f"RandomScale(scale_range={self.scale_range}, method={self.method!r})"


class RandomCrop:
    """Cut a random window of at most ``crop_size`` x ``crop_size`` (per axis, the image side when that
    is smaller); the target follows with ``crop_target``. Always draws two values (row, then column
    offset), so the stream does not depend on the image size."""

    def __init__(self, *, crop_size: int):
        if int(crop_size) != crop_size or crop_size < 1:
            raise ValueError(f"crop_size must be a positive integer, got {crop_size!r}")
        self.crop_size = int(crop_size)

    def __call__(self, image, target=None, generator: Optional[torch.Generator] = None):
        u_top, u_left = _uniform(generator), _uniform(generator)
        height, width = image.shape[-2:]
        crop_h, crop_w = min(self.crop_size, height), min(self.crop_size, width)
        if (crop_h, crop_w) == (height, width):
            return image, target
        # Offsets uniform over the height - crop_h + 1 valid rows (u < 1, the min guards rounding).
        top = min(int(u_top * (height - crop_h + 1)), height - crop_h)
        left = min(int(u_left * (width - crop_w + 1)), width - crop_w)
        image = image[:, top : top + crop_h, left : left + crop_w].contiguous()  # (3, h, w)
        if target is not None:
            target = crop_target(target, top=top, left=left, height=crop_h, width=crop_w)
        return image, target

    def __repr__(self) -> str:
        return f"RandomCrop(crop_size={self.crop_size})"


class ColorJitter:
    """Random brightness, contrast, saturation and hue, as torchvision's ColorJitter: each factor drawn
    uniformly from [max(0, 1 - v), 1 + v], the hue shift from [-v, v] of a turn (v <= 0.5).

    Image only. The order is fixed (brightness, contrast, saturation, hue) rather than drawn, and each
    non-zero component draws one value while a zero one is skipped and draws nothing, so the number of
    draws depends on the arguments alone.
    """

    def __init__(
        self, *, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0, hue: float = 0.0
    ):
        values = {"brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue}
        for name, value in values.items():
            if not float(value) >= 0.0:  # also refuses NaN
                raise ValueError(f"color jitter {name} must be >= 0, got {value!r}")
        if hue > 0.5:
            raise ValueError(f"color jitter hue must be <= 0.5 (half a turn), got {hue!r}")
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.saturation, self.hue = float(saturation), float(hue)

    def __call__(self, image, target=None, generator: Optional[torch.Generator] = None):
        for value, adjust in (
            (self.brightness, adjust_brightness),
            (self.contrast, adjust_contrast),
            (self.saturation, adjust_saturation),
        ):
            if value > 0:
                lo = max(0.0, 1.0 - value)
                image = adjust(image, lo + (1.0 + value - lo) * _uniform(generator))
        if self.hue > 0:
            image = adjust_hue(image, self.hue * (2.0 * _uniform(generator) - 1.0))
        return image, target

    def __repr__(self) -> str:
        return (
            f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue})"
        )


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
    scale_range: Sequence[float] = (1.0, 1.0),
    crop_size: int = 0,
    color_jitter: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
) -> Compose:
    """The training pipeline: random short-side resize, scale jitter, random crop, horizontal flip,
    colour jitter. A step is added only when enabled (scale_range not (1, 1), crop_size > 0, a non-zero
    jitter), so the defaults give exactly the resize-and-flip pipeline and its generator draws."""
    lo, hi = _pair(scale_range, "scale_range")
    if crop_size < 0:
        raise ValueError(f"crop_size must be >= 0 (0: no crop), got {crop_size!r}")
    jitter = tuple(float(v) for v in color_jitter)
    if len(jitter) != 4:
        raise ValueError(f"color_jitter must be (brightness, contrast, saturation, hue), got {jitter!r}")
    transforms = [ResizeShortestEdge(min_size=min_size, max_size=max_size, method=method)]
    if (lo, hi) != (1.0, 1.0):
        transforms.append(RandomScale(scale_range=(lo, hi), method=method))
    if crop_size != 0:
        transforms.append(RandomCrop(crop_size=crop_size))
    transforms.append(RandomHorizontalFlip(prob=flip_prob, keypoint_flip_map=keypoint_flip_map))
    if any(v != 0 for v in jitter):
        brightness, contrast, saturation, hue = jitter
        transforms.append(
            ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)
        )
    return Compose(transforms)


def build_test_transforms(*, min_size: int, max_size: int, method: str = "torchvision") -> Compose:
    """The evaluation pipeline: a fixed short-side resize."""
    return Compose([ResizeShortestEdge(min_size=min_size, max_size=max_size, method=method)])
