"""A synthetic human-pose dataset: articulated figures with named keypoints (the keypoint demo's data).

Shapes: images H x W RGB (PNG) with M figures each; a figure has K = 14 keypoints (``POSE_KEYPOINTS``:
head, neck, then left / right shoulders, elbows, wrists, hips, knees, ankles), written in COCO's person
keypoints format: ``keypoints`` [x1, y1, v1, ..., xK, yK, vK] with v = 2 visible, 1 labelled but hidden
(behind a figure drawn later), 0 not labelled (outside the image, written as 0, 0, 0); ``num_keypoints``
counts v > 0; the category carries ``keypoints`` (the names) and ``skeleton`` (1-based pairs), so the
flip map (``left_*`` <-> ``right_*``) and the drawing follow from the file, as for COCO.

A figure is a torso, a head and eight limbs with random joint angles, scale, lean and colour, drawn as
thick segments; its segmentation (RLE) and bbox are its visible pixels, so a later figure occludes an
earlier one in mask and keypoints alike. Occlusion is bounded (each figure keeps at least 55% of its
pixels) so that the task stays learnable. Deterministic for a seed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image, ImageDraw

from maskrcnn.io_utils import atomic_write_json

__all__ = ["POSE_KEYPOINTS", "POSE_SKELETON", "generate_pose_dataset"]

POSE_KEYPOINTS = (
    "head", "neck", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
    "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
_INDEX = {name: i for i, name in enumerate(POSE_KEYPOINTS)}
# limbs as (from, to) keypoint names; 1-based indices in the file, as COCO writes its skeleton
_BONES = (
    ("head", "neck"), ("neck", "left_shoulder"), ("neck", "right_shoulder"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"), ("left_hip", "right_hip"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"),
    ("right_knee", "right_ankle"),
)
POSE_SKELETON = tuple((_INDEX[a] + 1, _INDEX[b] + 1) for a, b in _BONES)
_MIN_VISIBLE = 0.55


def _figure(rng: np.random.Generator, cx: float, cy: float, s: float) -> np.ndarray:
    """(K, 2) keypoint positions of a figure of height ~s whose hips are centred at (cx, cy).

    The figure faces the viewer: its left side is on the image's right, as in photos of people."""
    lean = rng.uniform(-0.25, 0.25)
    up = np.array([math.sin(lean), -math.cos(lean)])  # torso direction (image y points down)
    side = np.array([-up[1], up[0]])  # towards the figure's left = the image's right when upright
    pts = np.zeros((len(POSE_KEYPOINTS), 2))
    hip = np.array([cx, cy])
    neck = hip + up * 0.42 * s
    pts[_INDEX["neck"]] = neck
    pts[_INDEX["head"]] = neck + up * 0.16 * s
    for sign, prefix in ((1, "left"), (-1, "right")):
        shoulder = neck + side * sign * 0.13 * s
        hip_pt = hip + side * sign * 0.08 * s
        pts[_INDEX[f"{prefix}_shoulder"]] = shoulder
        pts[_INDEX[f"{prefix}_hip"]] = hip_pt
        # arm angles from "hanging down", opened outwards by a random amount
        a1 = lean + sign * rng.uniform(0.15, 2.6)
        a2 = a1 + sign * rng.uniform(-0.3, 1.6)
        elbow = shoulder + 0.2 * s * np.array([math.sin(a1), math.cos(a1)])
        pts[_INDEX[f"{prefix}_elbow"]] = elbow
        pts[_INDEX[f"{prefix}_wrist"]] = elbow + 0.18 * s * np.array([math.sin(a2), math.cos(a2)])
        l1 = lean + sign * rng.uniform(-0.05, 0.6)
        l2 = l1 + rng.uniform(-0.5, 0.5)
        knee = hip_pt + 0.25 * s * np.array([math.sin(l1), math.cos(l1)])
        pts[_INDEX[f"{prefix}_knee"]] = knee
        pts[_INDEX[f"{prefix}_ankle"]] = knee + 0.24 * s * np.array([math.sin(l2), math.cos(l2)])
    return pts


def _figure_mask(pts: np.ndarray, s: float, height: int, width: int) -> np.ndarray:
    """(H, W) bool: thick bones, a torso quadrilateral and a round head."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    limb = max(2, int(round(0.06 * s)))
    for a, b in _BONES:
        pa, pb = pts[_INDEX[a]], pts[_INDEX[b]]
        draw.line([tuple(pa), tuple(pb)], fill=1, width=limb)
        for p in (pa, pb):  # round joints
            r = limb / 2
            draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=1)
    torso = [pts[_INDEX[n]] for n in ("left_shoulder", "right_shoulder", "right_hip", "left_hip")]
    draw.polygon([tuple(p) for p in torso], fill=1)
    head, r = pts[_INDEX["head"]], 0.08 * s
    draw.ellipse([head[0] - r, head[1] - r, head[0] + r, head[1] + r], fill=1)
    return np.asarray(canvas, dtype=bool)


def _make_image(rng: np.random.Generator, height: int, width: int, max_figures: int):
    """(H, W, 3) uint8 and figures [(visible mask, keypoints (K, 3) float)]."""
    from maskrcnn.data.shapes import _background, _colour

    img = _background(rng, height, width)
    n = int(rng.integers(1, max_figures + 1))
    placed = []  # [full mask, visible mask, keypoints (K, 2)]
    for _ in range(n):
        for _attempt in range(20):
            s = rng.uniform(0.45, 0.8) * height
            cx, cy = rng.uniform(0.1 * width, 0.9 * width), rng.uniform(0.35 * height, 0.75 * height)
            pts = _figure(rng, cx, cy, s)
            full = _figure_mask(pts, s, height, width)
            if full.sum() < 150:
                continue
            if all((vis & ~full).sum() >= _MIN_VISIBLE * f.sum() for f, vis, _ in placed):
                break
        else:
            continue
        for item in placed:
            item[1] = item[1] & ~full
        placed.append([full, full.copy(), pts])
        colour = _colour(rng)
        shade = rng.normal(0, 0.03, size=(height, width, 1)).astype(np.float32)
        img = np.where(full[:, :, None], colour[None, None, :] + shade, img)
    image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    figures = []
    for i, (_full, vis, pts) in enumerate(placed):
        kps = np.zeros((len(POSE_KEYPOINTS), 3))
        for k, (x, y) in enumerate(pts):
            xi, yi = int(math.floor(x)), int(math.floor(y))
            if not (0 <= xi < width and 0 <= yi < height):
                continue  # outside the image: not labelled
            hidden = any(later[0][yi, xi] for later in placed[i + 1:])
            kps[k] = (x, y, 1 if hidden else 2)
        figures.append((vis, kps))
    return image, figures


def _write_split(out_dir: Path, split: str, n: int, rng, image_size, max_figures: int):
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    (h_lo, h_hi), (w_lo, w_hi) = image_size
    for i in range(n):
        height, width = int(rng.integers(h_lo, h_hi + 1)), int(rng.integers(w_lo, w_hi + 1))
        image, figures = _make_image(rng, height, width, max_figures)
        file_name = f"{split}_{i:05d}.png"
        Image.fromarray(image).save(image_dir / file_name, compress_level=1)
        images.append({"id": i + 1, "file_name": file_name, "height": height, "width": width})
        for vis, kps in figures:
            ys, xs = np.nonzero(vis)
            if len(xs) == 0:
                continue
            rle = mask_utils.encode(np.asfortranarray(vis.astype(np.uint8)))
            x0, y0 = int(xs.min()), int(ys.min())
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": 1,
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                "area": float(vis.sum()),
                "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
                "iscrowd": 0,
                "keypoints": [round(float(v), 2) for v in kps.reshape(-1)],
                "num_keypoints": int((kps[:, 2] > 0).sum()),
            })
    coco = {
        "info": {"description": f"synthetic poses ({split})"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "supercategory": "person",
                        "keypoints": list(POSE_KEYPOINTS), "skeleton": [list(p) for p in POSE_SKELETON]}],
    }
    json_path = out_dir / f"{split}.json"
    atomic_write_json(json_path, coco, ensure_ascii=True)  # a COCO file for other tools: ASCII (io_utils)
    return json_path, image_dir


def generate_pose_dataset(
    out_dir: Union[str, os.PathLike],
    *,
    num_train: int = 300,
    num_val: int = 50,
    image_size: Sequence = ((128, 160), (128, 160)),
    max_figures: int = 3,
    seed: int = 0,
) -> dict:
    """Write ``out_dir/{train,val}/*.png`` and ``out_dir/{train,val}.json`` (COCO person keypoints);
    return {"train_json", "train_images", "val_json", "val_images"} (strings)."""
    from maskrcnn.data.shapes import _size_ranges

    if num_train < 0 or num_val < 0 or max_figures < 1:
        raise ValueError("num_train and num_val must be >= 0 and max_figures >= 1")
    ranges = _size_ranges(image_size)
    out_dir = Path(out_dir)
    seeds = np.random.SeedSequence(seed).spawn(2)
    train_rng, val_rng = (np.random.Generator(np.random.PCG64(s)) for s in seeds)
    train_json, train_images = _write_split(out_dir, "train", num_train, train_rng, ranges, max_figures)
    val_json, val_images = _write_split(out_dir, "val", num_val, val_rng, ranges, max_figures)
    return {"train_json": str(train_json), "train_images": str(train_images), "val_json": str(val_json),
            "val_images": str(val_images)}
