"""Label Studio ``keypointlabels`` results -> COCO keypoint instances (``keypoint_instances``).

Shapes: one keypoint is (x, y) continuous pixel coordinates; a region's polygon is [x1, y1, ...].

A keypoint result's ``value`` holds ``x``, ``y`` (percent of the image's width and height, as every Label
Studio coordinate) and ``keypointlabels`` [name]: the name is the keypoint's (``nose``), not a class.
Label Studio has no visibility flag: a placed keypoint is visible (v = 2), one not placed v = 0.
Which object a keypoint belongs to:

- its ``parentID`` (a result's field naming the region it was drawn in) when it has one: the region of
  that id in the same annotation; a ``parentID`` naming no region converted there leaves the keypoint
  out, counted;
- else the rectangle, polygon, ellipse or brush region of the annotation that contains it; in several,
  those of a class whose keypoint set names it already (met in earlier tasks or earlier in this one:
  a person's wrist goes to the person, not to the hand box around it), then the smallest (by area)
  that holds no keypoint of its name yet (two people overlapping), in the order the results come. A
  keypoint held by several regions is counted in one line: the order the results come in decides
  between overlapping people, so select the region when placing a keypoint (Label Studio then writes
  its parentID). In none, it is left out and counted (its class is unknown: keypoints name parts, not
  objects); held only by regions of classes whose sets lack its name while another class's set names
  it (a person's wrist in a hand box alone), it is left out too, counted: giving it to the hand would
  add 'wrist' to the hand's keypoints.

The region's instance gets the keypoints (its box and mask stay the region's), its category the names
met, in COCO's order when all are COCO person keypoints, else in the order met (``keypoint_instances``).
A second keypoint of one name in one region is left out, counted. Nothing is guessed: each count of
keypoints left out is one line of the summary.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pycocotools.mask as mask_utils

from maskrcnn.data.formats.common import CocoBuilder, Report, Skip
from maskrcnn.data.formats.geometry import numbers
from maskrcnn.data.formats.keypoint_instances import attach_points

__all__ = ["NO_PARENT", "OTHER_CLASS", "OUTSIDE_REGIONS", "OVERLAPPING", "add_task_keypoints"]

OUTSIDE_REGIONS = "Label Studio keypoints in no region of their annotation (object unknown), left out"
NO_PARENT = "Label Studio keypoints whose parentID names no region converted in their annotation, left out"
_TWICE = "Label Studio keypoints of a name their region already holds, left out"
OVERLAPPING = ("Label Studio keypoints assigned by containment among overlapping regions: select their "
               "region when placing them so Label Studio writes parentID")
OTHER_CLASS = ("Label Studio keypoints only in regions of classes whose keypoints lack their name (another "
               "class's name it), left out")


def _inside_polygon(x: float, y: float, polygon: Sequence[float]) -> bool:
    """Whether (x, y) lies inside a polygon [x1, y1, ...] (even-odd rule; its edge counts as inside)."""
    p = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)  # (P, 2)
    xs, ys = p[:, 0], p[:, 1]
    if xs.min() <= x <= xs.max() and ys.min() <= y <= ys.max() and (
            (np.isclose(xs, x) & np.isclose(ys, y)).any()):
        return True
    xn, yn = np.roll(xs, -1), np.roll(ys, -1)
    crosses = (ys > y) != (yn > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = xs + (y - ys) * (xn - xs) / (yn - ys)
    return bool(np.count_nonzero(crosses & (x <= at)) % 2)


def _contains(ann: dict, x: float, y: float) -> bool:
    """Whether instance ``ann`` (COCO polygons or RLE) covers the point (x, y) (continuous coordinates)."""
    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg:
        return any(_inside_polygon(x, y, p) for p in seg)
    if isinstance(seg, dict):
        h, w = seg["size"]
        col, row = int(np.floor(x)), int(np.floor(y))
        if not (0 <= row < h and 0 <= col < w):
            return False
        mask = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode("ascii")})
        return bool(mask[row, col])
    bx, by, bw, bh = ann["bbox"]
    return bx <= x <= bx + bw and by <= y <= by + bh


def _keypoint(value: dict, *, width: int, height: int) -> tuple:
    """(name, x, y) of a keypoint result's value, x and y continuous pixels; Skip when it is bad."""
    labels = value.get("keypointlabels", value.get("labels"))
    labels = [labels] if isinstance(labels, str) else labels
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str) \
            or not labels[0].strip():
        raise Skip("bad_keypoint", f"keypointlabels {labels!r} must name one keypoint")
    if value.get("image_rotation"):
        raise Skip("image_rotation", f"drawn on the image turned by {value['image_rotation']} degrees in "
                                     "Label Studio (image_rotation): annotate it unturned")
    x, y = numbers(value.get("x"), value.get("y"), what="keypoint x, y")
    return labels[0].strip(), x * width / 100.0, y * height / 100.0


def _class_sets(builder: CocoBuilder, placed) -> dict:
    """{class: the keypoint names it has}: its category's set so far and those placed in this annotation
    (``placed``: (annotation, {name: point}) pairs)."""
    sets = {label: set(fields.get("keypoints", ())) for label, fields in builder.category_fields.items()}
    for ann, points in placed:
        sets.setdefault(ann["_label"], set()).update(points)
    return sets


def add_task_keypoints(builder: CocoBuilder, keypoints: list, regions: list, *, report: Report,
                       where: str, width: int, height: int) -> None:
    """Lay one annotation's keypoint results onto its converted regions (see the module docstring).
    ``keypoints``: [(where in the task, value with ``_parent``: its parentID or None)]; ``regions``:
    [(the region's result id or None, its annotation dict)] of the regions converted."""
    by_id = {rid: ann for rid, ann in regions if rid is not None}
    placed: dict = {}  # id(ann) -> (ann, {name: (x, y, v)})
    for name, value in keypoints:
        try:
            label, x, y = _keypoint(value, width=width, height=height)
        except Skip as e:
            report.skip(f"{where} {name}", e)
            continue
        parent = value.get("_parent")
        if parent is not None:
            ann = by_id.get(parent) if isinstance(parent, (str, int)) else None
            if ann is None:
                report.note(NO_PARENT)
                continue
        else:
            holding = [a for _, a in regions if _contains(a, x, y)]
            if not holding:
                report.note(OUTSIDE_REGIONS)
                continue
            sets = _class_sets(builder, placed.values())
            naming = [a for a in holding if label in sets.get(a["_label"], ())]
            if not naming and any(label in names for names in sets.values()):
                report.note(OTHER_CLASS)
                continue
            holding = naming or holding
            if len(holding) > 1:
                report.note(OVERLAPPING)
            # the smallest (a hand's box inside a person's) that has no keypoint of this name yet: where
            # two people overlap, the one whose nose is placed already is not this nose's
            holding.sort(key=lambda a: a["area"])
            ann = next((a for a in holding if label not in placed.get(id(a), (a, {}))[1]), holding[0])
        points = placed.setdefault(id(ann), (ann, {}))[1]
        if label in points:
            report.note(_TWICE)
            continue
        points[label] = (x, y, 2)
    for ann, points in placed.values():
        attach_points(builder, ann, points)
