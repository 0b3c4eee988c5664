"""Keypoint instances built by the converters (CVAT skeletons, Label Studio keypoints) -> COCO keypoints.

Shapes: a keypoint set has K names; one instance's points are {name: (x, y, v)} while the file is read
(the set may still grow: a set without a declared order is known only at the end), laid out as COCO's
flat ``keypoints`` [x, y, v] * K by ``finish_keypoints`` once every instance is in.

- Coordinates: the tools give continuous image coordinates (pixel (i, j) covers [j, j + 1) x [i, i + 1),
  so a click on pixel j's centre is x = j + 0.5); this project's COCO keypoints are pixel indices (pixel
  j's centre is x = j: COCO's files and torchvision read them so, ``data/transforms.py``), so 0.5 is
  taken off each coordinate (``to_pixel_index``). Boxes stay continuous, as COCO's are.
- Visibility: 2 visible, 1 labelled but occluded, 0 not labelled (x = y = 0), COCO's flags.
- An instance's box is the region it was grouped with when there is one (its ``bbox`` and mask kept),
  else the extent of its labelled points (tighter than the object: COCO's boxes hold the whole body),
  written as a box-only instance (``segmentation`` []; area the box's); an instance with no labelled
  point, or whose points span no area (one point, or all on a line), has no box and is skipped.
- The category gets ``keypoints`` (the names) and ``skeleton`` (1-based pairs; [] when the tool gives
  none), as a COCO person-keypoints file has them.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from maskrcnn.data.formats.common import CocoBuilder, Report, Skip
from maskrcnn.data.keypoints import COCO_KEYPOINT_NAMES

__all__ = ["HALF_PIXEL", "add_keypoint_instance", "attach_points", "declare_keypoint_set",
           "finish_keypoints", "points_box", "to_pixel_index"]

HALF_PIXEL = 0.5  # continuous coordinate of a pixel's centre minus its index


def to_pixel_index(value: float) -> float:
    """A continuous image coordinate -> COCO's keypoint coordinate (a pixel index; see the docstring)."""
    return round(float(value) - HALF_PIXEL, 6)  # rounded: 136.32 - 0.5 is 135.82000000000002 in floats


def declare_keypoint_set(builder: CocoBuilder, label: str, names: Sequence[str],
                         skeleton: Sequence = ()) -> None:
    """The keypoint set of category ``label``: its ``names`` in the order the tool lists them (more may
    come as instances are read: ``attach_points`` adds those it meets), ``skeleton`` 1-based pairs."""
    fields = builder.category_fields.setdefault(label, {"keypoints": [], "skeleton": []})
    for name in names:
        if name not in fields["keypoints"]:
            fields["keypoints"].append(name)
    fields["skeleton"] = [[int(a), int(b)] for a, b in skeleton] or fields["skeleton"]


def attach_points(builder: CocoBuilder, ann: dict, points: dict) -> None:
    """Give annotation ``ann`` the points {name: (x, y, v)} (continuous coordinates; v 0, 1 or 2), names
    met for the first time added to its category's set."""
    declare_keypoint_set(builder, ann["_label"], list(points))
    ann["_points"] = {name: (to_pixel_index(x), to_pixel_index(y), int(v)) if v > 0 else (0, 0, 0)
                      for name, (x, y, v) in points.items()}


def points_box(points: dict) -> tuple:
    """(x1, y1, x2, y2), the extent of the labelled points (continuous coordinates); Skip when there is no
    labelled point or they span no area."""
    xy = np.array([(x, y) for x, y, v in points.values() if v > 0], dtype=np.float64).reshape(-1, 2)
    if not len(xy):
        raise Skip("no_keypoints", "no keypoint is labelled (every one outside or missing), and no box is "
                                   "grouped with it")
    (x1, y1), (x2, y2) = xy.min(axis=0), xy.max(axis=0)
    if x2 <= x1 or y2 <= y1:
        raise Skip("no_keypoint_box", f"its {len(xy)} labelled keypoint(s) span no area, so they give no "
                                      "box; group a box with it")
    return float(x1), float(y1), float(x2), float(y2)


def add_keypoint_instance(builder: CocoBuilder, image_id: int, label: str, points: dict, *,
                          report: Report, note: str) -> dict:
    """A keypoint instance with no region: boxed by its points' extent (``note`` counts it in the
    summary: which tool's instances, boxed so); Skip as ``points_box``."""
    ann = builder.add_box(image_id, label, points_box(points))
    attach_points(builder, ann, points)
    report.note(note)
    return ann


def _ordered(names: list) -> tuple:
    """(names in their order, whether it was changed): COCO's person order when every name is one of
    COCO's 17 (so two splits read apart, whose annotators clicked in other orders, get one set)."""
    if set(names) <= set(COCO_KEYPOINT_NAMES) and names != [n for n in COCO_KEYPOINT_NAMES if n in names]:
        return [n for n in COCO_KEYPOINT_NAMES if n in names], True
    return names, False


def finish_keypoints(builder: CocoBuilder, *, report: Report, where: str,
                     declared: Optional[set] = None) -> None:
    """Lay every instance's points out in its category's order (``keypoints`` [x, y, v] * K,
    ``num_keypoints``). A category whose set the file does not declare (``declared``: labels whose order
    the file gives) is put in COCO's order when its names are COCO's, else kept in the order met, said in
    one line naming it (another split's file may meet them in another order)."""
    for label, fields in builder.category_fields.items():
        if "keypoints" not in fields or label in (declared or set()):
            continue
        names, reordered = _ordered(list(fields["keypoints"]))
        if reordered:
            fields["keypoints"] = names
            report.tell(where, f"category {label!r}: its {len(names)} keypoint names are COCO person "
                               "keypoints, put in COCO's order")
        elif len(names) > 1:
            report.tell(where, f"category {label!r}: keypoints in the order first met ({', '.join(names)}); "
                               "the file gives no order, so convert every split of a dataset together or "
                               "check that their categories list the same order")
    for ann in builder.annotations:
        points = ann.pop("_points", None)
        if points is None:
            continue
        names = builder.category_fields[ann["_label"]]["keypoints"]
        flat = [float(c) if i < 2 else int(c) for n in names for i, c in enumerate(points.get(n, (0, 0, 0)))]
        ann["keypoints"] = flat
        ann["num_keypoints"] = sum(1 for v in flat[2::3] if v > 0)
