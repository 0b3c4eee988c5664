"""What every pre-annotation writer reads: the images, their detected instances and the classes.

Shapes: an image is H rows x W columns; D detections of one image: boxes (D, 4), scores (D,), labels
(D,) in 1..K-1, masks (D, H, W) bool or ``masks_rle`` (D COCO RLE dicts, as ``Predictor(masks="rle")``
gives them); an instance's mask (H, W) bool, or (h, w) over its box.

An ``Instance`` holds its mask as COCO compressed RLE (a few hundred bytes, whatever the image size);
the writers decode it when they need pixels, one instance at a time. A model without a mask head gives
box instances (``rle`` None, ``box`` xyxy): every writer has rectangles (COCO a rectangle polygon,
LabelMe ``rectangle`` shapes, CVAT ``<box>``, Label Studio ``rectanglelabels``), a box to correct being
better than nothing to start from.

A keypoint model's detections also carry their keypoints (``keypoints`` (D, K, 3), ``keypoint_scores``
(D, K)): an ``Instance`` keeps them as COCO's flat [x1, y1, v1, ..., xK, yK, vK], v = 2 (labelled,
visible) for a point scoring above ``KEYPOINT_VISIBLE_SCORE``, else 0 written as 0, 0, 0 (not labelled,
as COCO writes it): a weak guess is left for the annotator to place rather than trained as a true point.
"""

from __future__ import annotations

from collections import Counter
from typing import List, NamedTuple, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_utils

from maskrcnn.data.keypoint_classes import owns_keypoints
from maskrcnn.data.mask_codec import annotation_to_mask, decode_rle_window, masks_to_rles

__all__ = ["KEYPOINT_VISIBLE_SCORE", "Category", "ImageRecord", "Instance", "bbox_area", "box_patch",
           "categories_of", "category_of", "instances_from_detections", "json_rle", "keypoint_triplets",
           "mask_of", "rle_box_patch"]

# A predicted keypoint exported as labelled (v = 2) scores above this (its ``keypoint_scores``, as the
# model's keypoint head gives them): detectron2's visualiser draws keypoints above the same 0.05
KEYPOINT_VISIBLE_SCORE = 0.05


class ImageRecord(NamedTuple):
    """One image: ``id`` (as predictions.json numbers it), ``file_name`` ('/'-separated, relative to the
    folder the exports name images from), ``height`` and ``width`` of the image as read (EXIF applied)."""

    id: int
    file_name: str
    height: int
    width: int


class Category(NamedTuple):
    """A class: the model's ``label`` (1..K-1), the dataset's category ``id``, its ``name``."""

    label: int
    id: int
    name: str


class Instance(NamedTuple):
    """One detection with a non-empty mask: its ``category``, ``score`` and ``rle`` (COCO compressed RLE,
    ``counts`` a str, ``size`` [H, W]); or, of a model without masks, ``rle`` None and ``box`` (x0, y0,
    x1, y1) in pixels (non-empty). ``keypoints``: of a keypoint model, COCO's flat [x, y, v] * K
    (``keypoint_triplets``), else None."""

    category: Category
    score: float
    rle: Optional[dict]
    box: Optional[tuple] = None
    keypoints: Optional[list] = None


def categories_of(class_names: Sequence[str], label_to_category_id: Optional[dict] = None) -> List[Category]:
    """The categories of a model's ``class_names`` (index = label, 0 the background): label i has the
    category id ``label_to_category_id[i]`` (the training dataset's, kept in the checkpoint), else i."""
    from maskrcnn.class_names import distinct_names, name_ids

    mapping = {int(k): int(v) for k, v in (label_to_category_id or {}).items()}
    names = [str(n) for n in class_names[1:]]
    # names equal but for the spaces around them ('x', 'x ') are one class to every reader (the LabelMe,
    # CVAT, YOLO and Label Studio readers strip them): told apart as exact repeats are, 'x (id 5)'
    stripped = Counter(n.strip() for n in names)
    if any(stripped[n.strip()] > 1 and n.strip() for n in names):
        ids = name_ids(class_names, label_to_category_id)
        proposed = {i: (n.strip() if stripped[n.strip()] > 1 else n) for i, n in zip(ids, names)}
        names = list(distinct_names(proposed).values())
    return [Category(label, mapping.get(label, label), names[label - 1])
            for label in range(1, len(class_names))]


def category_of(by_label: dict, label) -> Category:
    """The ``Category`` of a detection's ``label`` in ``by_label`` (label -> Category, all the model's
    classes); ValueError for a label that is none of them."""
    category = by_label.get(int(label))
    if category is None:
        raise ValueError(f"label {label} is not one of the model's classes 1..{len(by_label)}")
    return category


def instances_from_detections(det: dict, categories: Sequence[Category], *,
                              keypoint_labels: Optional[frozenset] = None) -> List[Instance]:
    """One image's detections -> its ``Instance``s, in the detections' order; detections whose mask is
    empty are left out (there is nothing to correct: the box alone is no instance mask). Detections
    without masks (a box-only model) give box instances, those of an empty box left out.
    ``keypoint_labels``: the classes that own the keypoint set (``Predictor.keypoint_labels``); the
    others' instances get no keypoints (None: every class has them)."""
    by_label = {c.label: c for c in categories}
    n = int(det["scores"].shape[0])
    if det.get("masks_rle") is not None:
        rles = list(det["masks_rle"])
    elif det.get("masks") is not None:
        masks = det["masks"]
        rles = masks_to_rles(masks >= 0.5 if masks.is_floating_point() else masks)
    else:
        rles = [None] * n
    if len(rles) != n:
        raise ValueError(f"{len(rles)} masks for {n} detections")
    scores = det["scores"].detach().float().cpu().tolist()
    labels = det["labels"].detach().cpu().tolist()
    boxes = det["boxes"].detach().float().cpu().tolist()  # (D, 4) xyxy
    points = [None] * n
    if det.get("keypoints") is not None:
        kps = det["keypoints"].detach().float().cpu()  # (D, K, 3)
        kp_scores = det.get("keypoint_scores")
        kp_scores = kps[..., 2] if kp_scores is None else kp_scores.detach().float().cpu()  # (D, K)
        points = [keypoint_triplets(k, s) if owns_keypoints(keypoint_labels, lab) else None
                  for k, s, lab in zip(kps, kp_scores, det["labels"].reshape(-1).tolist())]
    out = []
    for rle, score, label, box, kp in zip(rles, scores, labels, boxes, points):
        category = category_of(by_label, label)
        if rle is None:
            x0, y0, x1, y1 = (round(float(v), 2) for v in box)
            if x1 > x0 and y1 > y0:
                out.append(Instance(category, float(score), None, (x0, y0, x1, y1), kp))
        elif int(mask_utils.area(_bytes_rle(rle))) > 0:
            out.append(Instance(category, float(score), rle, None, kp))
    return out


def keypoint_triplets(keypoints, scores) -> list:
    """One detection's keypoints (K, 3) (x, y, _) and their scores (K,) -> COCO's flat [x, y, v] * K:
    v = 2 where the score is above ``KEYPOINT_VISIBLE_SCORE``, else the point is 0, 0, 0."""
    out = []
    for (x, y, _), s in zip(keypoints.tolist(), scores.tolist()):
        out += [round(float(x), 2), round(float(y), 2), 2] if s > KEYPOINT_VISIBLE_SCORE else [0, 0, 0]
    return out


def json_rle(rle: dict) -> dict:
    """A COCO RLE with ``counts`` as a str and ``size`` as ints (what JSON holds and our decoders take)."""
    counts = rle["counts"]
    counts = counts.decode("ascii") if isinstance(counts, bytes) else str(counts)
    return {"size": [int(v) for v in rle["size"]], "counts": counts}


def _bytes_rle(rle: dict) -> dict:
    counts = rle["counts"]
    counts = counts.encode("ascii") if isinstance(counts, str) else counts
    return {"size": list(rle["size"]), "counts": counts}


def mask_of(instance: Instance) -> np.ndarray:
    """The instance's (H, W) bool mask."""
    height, width = (int(v) for v in instance.rle["size"])
    return annotation_to_mask(json_rle(instance.rle), height, width).numpy() > 0


def rle_box_patch(rle: dict) -> Optional[tuple]:
    """(left, top, patch): a COCO RLE mask (compressed or uncompressed ``counts``) cut to its tight box,
    ``patch`` (h, w) bool with its top-left pixel at column ``left``, row ``top`` (decoded in the box's
    columns alone: no (H, W) mask); None for an empty mask."""
    height, width = (int(v) for v in rle["size"])
    coded = {**_bytes_rle(rle), "size": [height, width]}
    if isinstance(coded["counts"], (list, tuple)):  # uncompressed: pycocotools' toBbox reads compressed only
        coded = mask_utils.frPyObjects(coded, height, width)
    x, y, w, h = (int(round(v)) for v in mask_utils.toBbox(coded))
    if w == 0 or h == 0:
        return None
    return x, y, decode_rle_window(rle, x, y, w, h)


def box_patch(instance: Instance) -> tuple:
    """``rle_box_patch`` of the instance's mask (never empty: ``instances_from_detections`` keeps none)."""
    return rle_box_patch(instance.rle) or (0, 0, np.zeros((0, 0), dtype=bool))


def bbox_area(instance: Instance) -> tuple:
    """([x, y, w, h] of the mask's tight box, its area in pixels); of a box instance, its box and area."""
    if instance.rle is None:
        x0, y0, x1, y1 = instance.box
        return [x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)], round((x1 - x0) * (y1 - y0), 2)
    rle = _bytes_rle(instance.rle)
    return [float(v) for v in mask_utils.toBbox(rle)], int(mask_utils.area(rle))
