"""COCO files as some annotation tools export them, read as their users meant them.

VIA 3's "Export as COCO" writes (its project files are converted by ``convert-data --from via``):

- ``"width": -1, "height": -1`` (VIA does not keep the size): an unknown size, removed, so that the
  loader measures the image file as it does for records without a size;
- a polygon's ``segmentation`` as one flat list ``[x1, y1, x2, y2, ...]``, not wrapped in the list of
  polygons COCO expects: wrapped, ``[[x1, y1, ...]]`` (a flat list of at least 6 numbers, even length);
- ``"bbox": [null, null, null, null]`` (or ``[[]]``): removed, so that the loader gives the annotation
  its segmentation's box;
- circles, ellipses and points as ``"segmentation": [[]]``: left to the loader, which reports them as
  empty shapes (``mask_codec``); ``"area": null`` and ``"iscrowd": false`` need nothing (the loader
  computes areas and reads false as 0), nor category ids from 0.

Each reading is said in one note. The parsed file is never modified: the records changed are copies.
"""

from __future__ import annotations

import math

__all__ = ["read_tool_exports"]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _unknown_size(img) -> bool:
    return isinstance(img, dict) and img.get("width") == -1 and img.get("height") == -1


def _flat_polygon(seg) -> bool:
    return isinstance(seg, list) and len(seg) >= 6 and len(seg) % 2 == 0 and all(map(_number, seg))


def _no_box(bbox) -> bool:
    """VIA 3's box of a shape it did not measure: [null, null, null, null] or [[]]."""
    return isinstance(bbox, list) and bool(bbox) and all(v is None or v == [] for v in bbox)


def read_tool_exports(data: dict, source: str) -> tuple:
    """(``data`` with the readings above, [notes naming ``source``]); ``data`` itself when nothing
    needed reading."""
    images, annotations = data.get("images"), data.get("annotations")
    images = images if isinstance(images, list) else []
    annotations = annotations if isinstance(annotations, list) else []
    sized = sum(map(_unknown_size, images))
    wrapped = sum(isinstance(a, dict) and _flat_polygon(a.get("segmentation")) for a in annotations)
    unboxed = sum(isinstance(a, dict) and _no_box(a.get("bbox")) for a in annotations)
    if not (sized or wrapped or unboxed):
        return data, []
    out = dict(data)
    if sized:
        out["images"] = [{k: v for k, v in img.items() if k not in ("width", "height")}
                         if _unknown_size(img) else img for img in images]
    if wrapped or unboxed:
        fixed = []
        for a in annotations:
            if isinstance(a, dict) and (_flat_polygon(a.get("segmentation")) or _no_box(a.get("bbox"))):
                a = dict(a)
                if _flat_polygon(a.get("segmentation")):
                    a["segmentation"] = [a["segmentation"]]
                if _no_box(a.get("bbox")):
                    del a["bbox"]
            fixed.append(a)
        out["annotations"] = fixed
    notes = []
    if sized:
        notes.append(f"{source}: {sized} images have width and height -1 (unknown, as VIA 3 exports "
                     f"them): their files' sizes are used")
    if wrapped:
        notes.append(f"{source}: {wrapped} segmentations are one flat polygon [x1, y1, ...] not wrapped in "
                     f"a list (as VIA 3 exports them): read as [[x1, y1, ...]]")
    if unboxed:
        notes.append(f"{source}: {unboxed} annotations have a bbox of nulls (as VIA 3 exports them): "
                     f"their segmentation's box is used")
    return out, notes
