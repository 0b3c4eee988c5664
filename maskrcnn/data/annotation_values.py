"""The values of a COCO ground-truth annotation that the evaluation would refuse: one rule for the loader
(``CocoDataset``, which skips such an annotation, named and counted, when the file is read) and the
evaluation (``engine.evaluator.load_ground_truth``, which refuses the ground truth naming it).

Two rules before (the loader used ``"area": -3`` and ``"iscrowd": null``, the scorer refused them) let
``train --val-json`` read a validation file that killed the run at its first evaluation, after training.

- ``iscrowd``: 0 or 1 (``true``/``false`` and 0.0/1.0 are those); null or absent is 0. The string "0" is
  truthy: read as written it made the object a crowd region.
- ``area``: a finite number >= 0; null or absent is computed (the mask's pixels). A negative one put the
  object in the small size range (and show-data's smallest bin).
- ``keypoints``: null, ``[]`` or ``{}`` is none labelled; otherwise a flat list [x1, y1, v1, ...] of
  finite numbers (``true`` is no coordinate), 3 per keypoint of the set when the set's size is known:
  COCOeval failed on numpy's broadcasting message for another length.
"""

from __future__ import annotations

from typing import Optional

from maskrcnn.data.json_values import is_finite_number

__all__ = ["annotation_value_problem", "has_no_keypoints"]


def _kind(value) -> str:
    """' (a string)' for a string value: "0" prints as 0 in a message."""
    return " (a string)" if isinstance(value, str) else ""


def has_no_keypoints(keypoints) -> bool:
    """null (or absent, read with ``.get``), ``[]`` or ``{}``: an annotation without keypoints labelled."""
    return keypoints is None or (isinstance(keypoints, (list, dict)) and not keypoints)


def annotation_value_problem(ann: dict, num_keypoints: Optional[int] = None) -> Optional[tuple]:
    """(reason, text) for the first of ``ann``'s ``iscrowd``, ``area`` and ``keypoints`` that the
    evaluation refuses (reason ``bad_iscrowd``, ``bad_area`` or ``bad_keypoints``; the text names the
    field and its value, to follow "annotation id N "), else None. ``num_keypoints``: the keypoints of
    the annotation's set (None: any number of points)."""
    crowd = ann.get("iscrowd")
    if crowd is not None and crowd not in (0, 1):
        return "bad_iscrowd", f"has iscrowd {str(crowd)[:20]!r}{_kind(crowd)}, not 0 or 1"
    area = ann.get("area")
    if area is not None and not (is_finite_number(area) and area >= 0):
        return "bad_area", f"has area {repr(area)[:40]}{_kind(area)}, not a finite number >= 0"
    kp = ann.get("keypoints")
    if has_no_keypoints(kp):
        return None
    if not (isinstance(kp, list) and len(kp) % 3 == 0 and all(is_finite_number(v) for v in kp)):
        count = f"{3 * num_keypoints} " if num_keypoints else "a flat list [x1, y1, v1, ...] of "
        return "bad_keypoints", f"keypoints must be {count}finite numbers"
    if num_keypoints and len(kp) != 3 * num_keypoints:
        return "bad_keypoints", f"keypoints hold {len(kp) // 3} points, the category has {num_keypoints}"
    return None
