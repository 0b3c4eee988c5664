"""Pre-annotations as LabelMe files: one JSON file per image, what LabelMe opens beside the image, from
its output folder (``labelme IMAGES --output FOLDER`` looks for ``FOLDER/<image stem>.json``), or as a
file (it loads the image from ``imagePath``, relative to the JSON file).

Shapes: an instance's mask (h, w) bool over its box; P points of a polygon, [[x, y], ...].

``{"version", "flags": {}, "shapes": [{"label", "points", "group_id", "description", "shape_type":
"polygon", "flags": {}, "mask": null}], "imagePath" (relative to the JSON file), "imageData": null,
"imageHeight", "imageWidth"}``.

Each mask is traced into polygons (``contours``: the outer boundary of every connected part, simplified
to ``tolerance`` pixels). LabelMe polygons have no holes, so a part's holes are joined to its outer
boundary by zero-width cuts (``contours.bridge_holes``): LabelMe draws, and its ``shapes_to_label`` and
our converter (``data/formats/labelme.py``) fill, that one polygon with the holes open. The parts of one
instance are shapes with the same label and the same ``group_id`` (the instance's number in the file,
from 1), which labelme2coco and our converter merge back into one instance. ``description`` holds the
score ("score 0.873"), for the annotator's eye only. A box-only model's instances are ``rectangle`` shapes.
``maskrcnn_classes`` lists the model's class names in its order (LabelMe keeps the key when it saves the
file): ``convert-data`` reads the files back in the model's class order, numbered 1..K, a class without
instances included (the model's own category ids only when they are 1..K without gaps).
"""

from __future__ import annotations

from typing import Optional, Sequence

from maskrcnn.data.formats.labelme import CLASSES_KEY
from maskrcnn.data.pre_annotations.contours import bridge_holes, mask_to_components
from maskrcnn.data.pre_annotations.export_args import DEFAULT_TOLERANCE
from maskrcnn.data.pre_annotations.instances import Category, ImageRecord, Instance, box_patch

__all__ = ["DEFAULT_TOLERANCE", "LABELME_VERSION", "labelme_file"]

LABELME_VERSION = "5.5.0"  # the file layout of labelme 5 (``description`` and ``mask`` keys)
# Douglas-Peucker tolerance in pixels. Chords lie inside a convex outline, so simplification shrinks
# small objects: traced masks of a disc of radius 5 px come back with IoU 1.0 at 0.5 px and 0.91 at
# 1 px (radius 15: 0.99 / 0.98), for 20 points instead of 8.


def labelme_file(image: ImageRecord, instances: Sequence[Instance], *, image_path: str,
                 tolerance: float = DEFAULT_TOLERANCE,
                 categories: Optional[Sequence[Category]] = None) -> dict:
    """The LabelMe file of one image; ``image_path`` is the image relative to where the file is written;
    ``categories``: the model's classes, their names recorded in class order (``CLASSES_KEY``, which
    LabelMe keeps and ``convert-data`` numbers the categories by; None: not recorded)."""
    shapes = []
    for group, inst in enumerate(instances, start=1):
        if inst.rle is None:  # a box-only model: a rectangle (two opposite corners)
            x0, y0, x1, y1 = inst.box
            shapes.append({
                "label": inst.category.name, "points": [[x0, y0], [x1, y1]], "group_id": group,
                "description": f"score {inst.score:.3f}", "shape_type": "rectangle", "flags": {},
                "mask": None,
            })  # fmt: skip
            continue
        left, top, patch = box_patch(inst)
        for component in mask_to_components(patch, tolerance=tolerance, offset=(left, top)):
            shapes.append({
                "label": inst.category.name, "points": bridge_holes(component).tolist(), "group_id": group,
                "description": f"score {inst.score:.3f}", "shape_type": "polygon", "flags": {}, "mask": None,
            })  # fmt: skip
    data = {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": None, "imageHeight": int(image.height), "imageWidth": int(image.width)}
    if categories is not None:
        data[CLASSES_KEY] = [c.name for c in sorted(categories, key=lambda c: c.label)]
    return data
