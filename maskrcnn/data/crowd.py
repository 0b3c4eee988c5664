"""Crowd annotations (``iscrowd`` 1) as written by annotation tools, and the way out when they are objects.

COCO's convention: ``iscrowd`` 1 marks a region holding many objects (a crowd of people), given as RLE;
training leaves it out of the losses and the evaluation ignores detections on it. CVAT's "COCO 1.0"
export (through Datumaro) writes every mask drawn with its mask / brush tool as an uncompressed RLE with
``"iscrowd": 1`` (its docs: ``is_crowd`` means "an RLE-encoded mask"), so single objects become crowd
regions: a class drawn only with the brush has no training instance and no AP. CVAT also writes an
``attributes`` dict on each annotation (``{"occluded": false, ...}``), by which such a file is told
apart.

``data.crowd_as_objects: true`` (``train --set data.crowd_as_objects=true``; ``eval`` and ``show-data``
``--crowd-as-objects``) counts crowd annotations as ordinary objects (``as_objects``); it is off by
default, as COCO's own crowd regions must stay ignored. ``cvat_crowd_note`` is the one line said when a
CVAT-looking file holds crowd RLE and the option is off.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["as_objects", "cvat_crowd_note", "is_crowd"]


def is_crowd(ann) -> bool:
    """A crowd annotation: ``iscrowd`` 1 (or true). Other values are refused by the loaders."""
    value = ann.get("iscrowd") if isinstance(ann, dict) else None
    return value in (1, True) and not isinstance(value, str)


def _looks_like_cvat(annotations: list) -> bool:
    """Annotations carrying CVAT's ``attributes`` dict with its ``occluded`` flag."""
    return any(isinstance(a, dict) and isinstance(a.get("attributes"), dict) and "occluded" in a["attributes"]
               for a in annotations)


def cvat_crowd_note(annotations: list, source: str) -> Optional[str]:
    """One line when ``annotations`` look like a CVAT export and hold crowd RLE masks, else None."""
    crowd = sum(1 for a in annotations if is_crowd(a) and isinstance(a.get("segmentation"), dict))
    if not crowd or not _looks_like_cvat(annotations):
        return None
    return (f"{source}: {crowd} of {len(annotations)} annotations are crowd regions (iscrowd 1, RLE mask) "
            f"in what looks like a CVAT export (annotations carry CVAT's 'attributes' with 'occluded'): "
            f"CVAT's COCO 1.0 export writes masks drawn with its mask / brush tool so, and crowd regions are "
            f"left out of training and ignored by the evaluation; if they are single objects, set "
            f"data.crowd_as_objects: true (train --set data.crowd_as_objects=true; eval and show-data "
            f"--crowd-as-objects)")


def as_objects(annotations: list) -> tuple:
    """(annotations with every crowd one as an ordinary object (``iscrowd`` 0, copies), how many)."""
    out, n = [], 0
    for a in annotations:
        if is_crowd(a):
            a, n = dict(a, iscrowd=0), n + 1
        out.append(a)
    return out, n
