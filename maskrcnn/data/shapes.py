"""A synthetic instance segmentation dataset of coloured shapes (the CPU demo's data).

Shapes: images H x W RGB (PNG), with M instances each of one of K = 5 classes (circle, square,
triangle, star, cross) at random positions, sizes, rotations and colours on a textured background.
Later shapes occlude earlier ones; every annotation describes the *visible* part: its segmentation
(a polygon when the shape is whole, else RLE; some whole shapes use RLE too, so both formats are
exercised), its bbox and area come from the visible mask. Occlusion is limited (each instance keeps at
least half of itself visible) so that the task stays learnable; a few images have no objects.

Each shape is rasterised once, with pycocotools from its polygon, and that mask both paints the image
and makes the annotation, so pixels and annotations agree exactly. Output is deterministic for a seed.

A second domain, for fine-tuning experiments (a model trained on the first, moved to other classes and
another look): ``classes`` may name any of ``ALL_SHAPES`` (``OTHER_SHAPES``: hexagon, ellipse, arrow,
crescent, the crescent a disc minus a disc, so RLE only) and ``style="gradient"`` draws objects filled with
a two-colour gradient and a dark outline on a dark background with a grid, instead of flat colours on a
muted field.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

from maskrcnn.io_utils import atomic_write_json

__all__ = ["ALL_SHAPES", "OTHER_SHAPES", "SHAPE_CLASSES", "STYLES", "generate_shapes_dataset"]

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross")
OTHER_SHAPES = ("hexagon", "ellipse", "arrow", "crescent")
ALL_SHAPES = SHAPE_CLASSES + OTHER_SHAPES
STYLES = ("flat", "gradient")

# circumradius / shorter image side: large enough to learn from in minutes on a CPU
DEFAULT_RADIUS_RANGE = (0.12, 0.26)
_MIN_VISIBLE = 0.65  # fraction of an instance that must stay visible after later shapes are drawn


def _shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """(P, 2) vertices of a shape of circumradius ``r`` centred at (cx, cy), rotated by ``angle``."""
    if kind == "circle":
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind == "square":
        t = np.arange(4) * math.pi / 2 + math.pi / 4
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind == "triangle":
        t = np.arange(3) * 2 * math.pi / 3 - math.pi / 2
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind == "star":
        t = np.arange(10) * math.pi / 5 - math.pi / 2
        radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([np.cos(t) * radius, np.sin(t) * radius], 1)
    elif kind == "hexagon":
        t = np.arange(6) * math.pi / 3
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind in ("ellipse", "crescent"):  # the crescent's outer disc; see _shape_mask
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t) * (0.55 if kind == "ellipse" else 1.0)], 1)
    elif kind == "arrow":
        pts = np.array([[1.0, 0.0], [0.1, -0.7], [0.1, -0.28], [-1.0, -0.28], [-1.0, 0.28], [0.1, 0.28],
                        [0.1, 0.7]])  # fmt: skip
    elif kind == "cross":
        a, b = 1.0 / math.sqrt(2), 0.25 / math.sqrt(2)  # arm half-length and half-width (diagonal = r)
        pts = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b],
                        [-a, b], [-a, -b], [-b, -b]]) * math.sqrt(2)  # fmt: skip
    else:
        raise ValueError(f"unknown shape {kind!r}")
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    # Rounded before rasterising, so that the coordinates written to JSON give exactly this mask.
    return np.round((pts @ rot.T) * r + np.array([cx, cy]), 2)


def _rasterise(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        rle = mask_utils.frPyObjects([polygon.reshape(-1).tolist()], height, width)
        return mask_utils.decode(mask_utils.merge(rle)).astype(bool)  # (H, W)


def _shape_mask(kind: str, cx: float, cy: float, r: float, angle: float, height: int, width: int) -> tuple:
    """(full mask (H, W) bool, polygon (P, 2) or None when the shape is no simple polygon)."""
    poly = _shape_polygon(kind, cx, cy, r, angle)
    full = _rasterise(poly, height, width)
    if kind != "crescent":
        return full, poly
    # a disc minus a smaller disc shifted along the angle: a crescent, whose mask only RLE can describe
    dx, dy = 0.45 * r * math.cos(angle), 0.45 * r * math.sin(angle)
    inner = _shape_polygon("circle", cx + dx, cy + dy, 0.8 * r, 0.0)
    return full & ~_rasterise(inner, height, width), None


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float: a muted smooth colour field plus fine noise and faint stripes."""
    coarse = rng.uniform(0.15, 0.55, size=(4, 4, 3)).astype(np.float32)
    img = (
        np.asarray(
            Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC),
            dtype=np.float32,
        )
        / 255.0
    )
    if rng.random() < 0.5:
        yy, xx = np.mgrid[0:height, 0:width]
        freq, phase, theta = rng.uniform(0.05, 0.2), rng.uniform(0, 2 * math.pi), rng.uniform(0, math.pi)
        stripes = 0.06 * np.sin(freq * (xx * math.cos(theta) + yy * math.sin(theta)) + phase)
        img = img + stripes[:, :, None]
    img = img + rng.normal(0, 0.04, size=img.shape)
    return img


def _dark_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float: the second domain's look, a dark tinted field with a faint grid and speckle."""
    tint = rng.uniform(0.03, 0.2, size=3).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    step = int(rng.integers(8, 17))
    grid = ((yy % step == 0) | (xx % step == 0)).astype(np.float32) * 0.12
    img = tint[None, None, :] + grid[:, :, None] + rng.normal(0, 0.05, size=(height, width, 3))
    return img.astype(np.float32)


def _paint(rng: np.random.Generator, img: np.ndarray, full: np.ndarray, style: str) -> np.ndarray:
    """``img`` with the shape's pixels painted in ``style``."""
    if style == "flat":
        colour = _colour(rng)
        shade = rng.normal(0, 0.03, size=img.shape[:2] + (1,)).astype(np.float32)
        return np.where(full[:, :, None], colour[None, None, :] + shade, img)
    # gradient: two colours blended along a random direction across the shape, with a dark outline
    a, b = _colour(rng), _colour(rng)
    theta = rng.uniform(0, 2 * math.pi)
    ys, xs = np.nonzero(full)
    proj = np.cos(theta) * xs + np.sin(theta) * ys
    t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1.0)
    out = img.copy()
    out[ys, xs] = a[None, :] * (1 - t[:, None]) + b[None, :] * t[:, None]
    inside = full.copy()  # pixels whose four neighbours are all inside; the others form the outline
    inside[1:, :] &= full[:-1, :]
    inside[:-1, :] &= full[1:, :]
    inside[:, 1:] &= full[:, :-1]
    inside[:, :-1] &= full[:, 1:]
    out[full & ~inside] = 0.05
    return out


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated, bright RGB colour (HSV with S, V high), so shapes stand out from the background."""
    h, s, v = rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.7, 1.0)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)


def _make_image(rng: np.random.Generator, height: int, width: int, max_objects: int,
                classes: Sequence[str] = SHAPE_CLASSES, style: str = "flat",
                radius_range: tuple = DEFAULT_RADIUS_RANGE, min_area: int = 80):
    """One image (H, W, 3) uint8 and its instances [(class index, visible mask, polygon or None)]."""
    img = _background(rng, height, width) if style == "flat" else _dark_background(rng, height, width)
    n = 0 if rng.random() < 0.08 else int(rng.integers(1, max_objects + 1))
    placed = []  # [class, full mask, visible mask, polygon]
    short = min(height, width)
    for _ in range(n):
        for _attempt in range(20):
            kind = int(rng.integers(len(classes)))
            r = rng.uniform(*radius_range) * short
            cx, cy = rng.uniform(r * 0.6, width - r * 0.6), rng.uniform(r * 0.6, height - r * 0.6)
            full, poly = _shape_mask(classes[kind], cx, cy, r, rng.uniform(0, 2 * math.pi), height, width)
            if full.sum() < min_area:
                continue
            # The new shape covers earlier ones: each must keep enough of itself visible.
            if all((vis & ~full).sum() >= _MIN_VISIBLE * f.sum() for _, f, vis, _ in placed):
                break
        else:
            continue
        for item in placed:
            item[2] = item[2] & ~full
        placed.append([kind, full, full.copy(), poly])
        img = _paint(rng, img, full, style)
    image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    instances = [(kind, vis, poly if poly is not None and np.array_equal(vis, full) else None)
                 for kind, full, vis, poly in placed]
    return image, instances


def _write_split(out_dir: Path, split: str, n: int, rng: np.random.Generator, image_size, max_objects: int,
                 classes: Sequence[str], style: str, radius_range: tuple, min_area: int):
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        (h_lo, h_hi), (w_lo, w_hi) = image_size
        height, width = int(rng.integers(h_lo, h_hi + 1)), int(rng.integers(w_lo, w_hi + 1))
        image, instances = _make_image(rng, height, width, max_objects, classes, style, radius_range,
                                       min_area)
        file_name = f"{split}_{i:05d}.png"
        Image.fromarray(image).save(image_dir / file_name, compress_level=1)  # noisy images: fast beats small
        image_id = i + 1
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for kind, visible, poly in instances:
            ys, xs = np.nonzero(visible)
            if len(xs) == 0:
                continue
            as_polygon = poly is not None and rng.random() < 0.6  # (the draw kept: the same data as before)
            # a shape cut by the border is written as the RLE of its visible pixels, as annotation tools clip
            # it: a polygon past the border would be clipped by the loader, which says so
            if as_polygon and poly.min() >= 0 and poly[:, 0].max() <= width and poly[:, 1].max() <= height:
                segmentation = [[float(v) for v in poly.reshape(-1)]]
            else:
                rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
                segmentation = {"size": [height, width], "counts": rle["counts"].decode("ascii")}
            x0, y0 = int(xs.min()), int(ys.min())
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": kind + 1,
                    "segmentation": segmentation,
                    "area": float(visible.sum()),
                    "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
                    "iscrowd": 0,
                }
            )
    coco = {
        "info": {"description": f"synthetic shapes ({split})" + ("" if style == "flat" else f", {style}")},
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(classes)
        ],
    }
    json_path = out_dir / f"{split}.json"
    atomic_write_json(json_path, coco, ensure_ascii=True)  # a COCO file for other tools: ASCII (io_utils)
    return json_path, image_dir


def _size_ranges(image_size) -> tuple:
    if len(image_size) != 2:
        raise ValueError(f"image_size must be (H, W) or ((Hmin, Hmax), (Wmin, Wmax)), got {image_size!r}")
    ranges = []
    for v in image_size:
        lo, hi = (v, v) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))
        if lo < 32 or hi < lo:
            raise ValueError(f"image_size sides must be >= 32 and ranges increasing, got {image_size!r}")
        ranges.append((int(lo), int(hi)))
    return tuple(ranges)


def generate_shapes_dataset(
    out_dir: Union[str, os.PathLike],
    *,
    num_train: int = 300,
    num_val: int = 60,
    image_size: Sequence = ((192, 256), (192, 256)),
    max_objects: int = 4,
    seed: int = 0,
    classes: Sequence[str] = SHAPE_CLASSES,
    style: str = "flat",
    radius_range: Sequence[float] = DEFAULT_RADIUS_RANGE,
    min_area: int = 80,
) -> dict:
    """Write ``out_dir/{train,val}/*.png`` and ``out_dir/{train,val}.json``; return their paths as
    {"train_json", "train_images", "val_json", "val_images"} (strings). ``classes``: names from
    ``ALL_SHAPES`` (category ids 1.. in this order); ``style``: one of ``STYLES``; ``radius_range``: the
    shapes' circumradius as fractions of the image's shorter side, drawn uniformly (smaller values with a
    smaller ``min_area``, the fewest pixels a whole shape may cover, give a set of small objects)."""
    if num_train < 0 or num_val < 0 or max_objects < 1:
        raise ValueError("num_train and num_val must be >= 0 and max_objects >= 1")
    classes = tuple(classes)
    unknown = [c for c in classes if c not in ALL_SHAPES]
    if not classes or unknown or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct names from {ALL_SHAPES}, got {classes!r}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    radius_range = tuple(float(v) for v in radius_range)
    if len(radius_range) != 2 or not 0 < radius_range[0] <= radius_range[1] <= 0.5 or min_area < 1:
        raise ValueError(f"radius_range must be (lo, hi) with 0 < lo <= hi <= 0.5 and min_area >= 1, got "
                         f"{radius_range!r}, {min_area!r}")
    ranges = _size_ranges(image_size)
    out_dir = Path(out_dir)
    train_rng, val_rng = (
        np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(seed).spawn(2)
    )
    shape_sizes = (radius_range, int(min_area))
    train_json, train_images = _write_split(out_dir, "train", num_train, train_rng, ranges, max_objects,
                                            classes, style, *shape_sizes)
    val_json, val_images = _write_split(out_dir, "val", num_val, val_rng, ranges, max_objects, classes, style,
                                        *shape_sizes)
    return {
        "train_json": str(train_json),
        "train_images": str(train_images),
        "val_json": str(val_json),
        "val_images": str(val_images),
    }
