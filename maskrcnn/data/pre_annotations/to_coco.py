"""Pre-annotations as a COCO instances file: what ``maskrcnn train --train-json`` reads, and what
annotation tools import as COCO (CVAT, Label Studio's converter, FiftyOne...).

Shapes: D instances of an image, each mask (H, W) as COCO compressed RLE.

``{"info", "images": [{"id", "file_name", "width", "height"}], "annotations": [{"id", "image_id",
"category_id", "segmentation": {"size", "counts"}, "area", "bbox": [x, y, w, h], "iscrowd": 0, "score"}],
"categories": [{"id", "name"}]}``. The segmentation is the predicted mask itself (RLE: exact, holes and
several parts included); ``bbox`` and ``area`` are the mask's own (as the converters of
``data/formats`` write them: training sees exactly what is drawn), not the detection's box, which can
differ by a pixel or two (a box-only model's instances: the box, and its rectangle as the polygon).
``score`` is extra (COCO's loaders ignore it; it lets a reviewer sort).
Every class of the model is listed, with or without instances, under the dataset's category ids.

A keypoint model's instances also get ``keypoints`` ([x, y, v] * K, v = 2 above
``instances.KEYPOINT_VISIBLE_SCORE``, else 0, 0, 0) and ``num_keypoints``, and every category the set's
``keypoints`` (names) and ``skeleton`` (1-based pairs), as a COCO person-keypoints file has them: the one
keypoint head predicts the set for every class, and ``train --config keypoint_...`` takes the file as it is.
"""

from __future__ import annotations

from typing import Optional, Sequence

from maskrcnn.data.keypoint_classes import owns_keypoints
from maskrcnn.data.pre_annotations.instances import Category, ImageRecord, Instance, bbox_area, json_rle

__all__ = ["coco_instances"]


def coco_instances(images: Sequence[ImageRecord], instances: Sequence[Sequence[Instance]],
                   categories: Sequence[Category], *, description: str = "",
                   keypoint_names: Optional[Sequence[str]] = None, skeleton: Sequence = (),
                   keypoint_labels: Optional[frozenset] = None) -> dict:
    """The COCO instances dict of ``images`` and their ``instances`` (one list per image);
    ``keypoint_names`` (a keypoint model's set, None: none) and ``skeleton`` (1-based pairs) go into every
    category whose label is in ``keypoint_labels`` (None: every category): a category the model has no
    keypoints for must not read back as a keypoint category (its annotations would train a ball's nose)."""
    if len(images) != len(instances):
        raise ValueError(f"{len(images)} images and {len(instances)} lists of instances")
    annotations = []
    for image, found in zip(images, instances):
        for inst in found:
            bbox, area = bbox_area(inst)
            if inst.rle is None:  # a box-only model: the rectangle, as our converters read rectangles
                x0, y0, x1, y1 = inst.box
                segmentation = [[x0, y0, x1, y0, x1, y1, x0, y1]]
            else:
                segmentation = json_rle(inst.rle)
            annotations.append({
                "id": len(annotations) + 1, "image_id": int(image.id), "category_id": int(inst.category.id),
                "segmentation": segmentation,
                "area": area, "bbox": bbox, "iscrowd": 0, "score": round(float(inst.score), 5),
            })  # fmt: skip
            if inst.keypoints is not None:
                annotations[-1]["keypoints"] = list(inst.keypoints)
                annotations[-1]["num_keypoints"] = sum(1 for v in inst.keypoints[2::3] if v > 0)
    return {
        "info": {"description": description},
        "images": [{"id": int(im.id), "file_name": im.file_name, "width": int(im.width),
                    "height": int(im.height)} for im in images],
        "annotations": annotations,
        "categories": [_category(c, keypoint_names if owns_keypoints(keypoint_labels, c.label)
                                 else None, skeleton) for c in categories],
    }  # fmt: skip


def _category(category: Category, keypoint_names: Optional[Sequence[str]], skeleton: Sequence) -> dict:
    out = {"id": int(category.id), "name": category.name}
    if keypoint_names is not None:
        out["keypoints"] = [str(n) for n in keypoint_names]
        out["skeleton"] = [[int(a), int(b)] for a, b in skeleton]
    return out
