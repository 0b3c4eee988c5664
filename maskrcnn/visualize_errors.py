"""One image of an error analysis drawn: ground truth (left) beside the detections (right), each
instance labelled with what the analysis found (``engine/error_analysis.py``).

Shapes: M ground-truth annotations, D detections scoring >= the analysis threshold, H x W the image.

Left, ``visualize.draw_targets``: each ground truth labelled with its class, a missed one "<class>
MISSED", crowd regions hatched. Right, ``visualize.draw_instances``: each detection labelled with its
class and score, an error followed by its kind in brackets ([background], [wrong class: <the ground
truth's class>], [duplicate], [poor localisation], [crowd]: ignored). Small images are drawn enlarged
(``min_size``) so that the labels stay legible.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image, ImageDraw

from maskrcnn.data.mask_codec import annotation_to_mask
from maskrcnn.engine.error_analysis import result_rle, xyxy_boxes
from maskrcnn.shown_text import short_name
from maskrcnn.visualize import draw_instances, draw_targets, to_uint8_hwc

__all__ = ["draw_errors"]

_TAGS = {"fp_background": "background", "duplicate": "duplicate", "poor_localisation": "poor localisation",
         "ignored_crowd": "crowd"}


def _mask(segmentation, height: int, width: int) -> np.ndarray:
    return annotation_to_mask(segmentation, height, width).numpy().astype(bool)  # (H, W)


def _record_box(record: dict) -> list:
    """[x, y, width, height]: the record's box, or its mask's box (a segm-only results file)."""
    if record.get("bbox") is not None:
        return record["bbox"]
    return mask_utils.toBbox(result_rle(record)).tolist()


def draw_errors(image, match, names: dict, *, masks: bool = True, min_size: int = 480,
                gap: int = 8) -> Image.Image:
    """The picture of one ``error_analysis.ImageMatch``: (H', 2 W' + gap) RGB, ground truth left,
    detections right. ``names``: {category id: name}; ``masks``: draw masks (the segm analysis) or
    boxes alone."""
    img = to_uint8_hwc(image)
    H, W = img.shape[:2]

    def name(cid) -> str:  # shown form, shortened before the tags so that they are never cut off
        return short_name(names.get(cid, cid))

    anns = match.annotations
    gt_names = [f"{name(a['category_id'])} MISSED" if not a.get("iscrowd") and not found
                else name(a["category_id"]) for a, found in zip(anns, match.found)]
    gt_masks: Optional[np.ndarray] = None
    if masks and anns:
        gt_masks = np.stack([_mask(a["segmentation"], H, W) if a.get("segmentation")
                             else _box_mask(a["bbox"], H, W) for a in anns])  # (M, H, W)
    target = {"boxes": xyxy_boxes(a["bbox"] for a in anns).numpy().astype(np.float32),
              "labels": np.arange(len(anns)), "masks": gt_masks,
              "iscrowd": np.asarray([bool(a.get("iscrowd")) for a in anns])}
    left = draw_targets(img, target, gt_names, min_size=min_size, names_shown=True)

    dets = match.detections
    det_names = []
    for r, kind, g in zip(dets, match.kinds, match.gt_index):
        label = name(r["category_id"])
        if kind == "fp_wrong_class":
            label += f" [wrong class: {name(anns[g]['category_id'])}]"
        elif kind in _TAGS:
            label += f" [{_TAGS[kind]}]"
        det_names.append(label)
    det = {"boxes": xyxy_boxes(_record_box(r) for r in dets).numpy().astype(np.float32),
           "scores": np.asarray([float(r["score"]) for r in dets], np.float32),
           "labels": np.arange(len(dets))}
    if masks and dets:  # compressed RLE (the validated records): decoded one at a time by draw_instances
        det["masks_rle"] = [r["segmentation"] for r in dets]
    right = draw_instances(img, det, det_names, min_size=min_size, names_shown=True)

    header = 18
    out = Image.new("RGB", (left.width + gap + right.width, max(left.height, right.height) + header),
                    (255, 255, 255))
    out.paste(left, (0, header))
    out.paste(right, (left.width + gap, header))
    pen = ImageDraw.Draw(out)
    counts = match.counts()
    errors = len(dets) - counts["tp"] - counts["ignored_crowd"]
    pen.text((4, 3), f"ground truth ({counts['missed']} missed)", fill=(0, 0, 0))
    pen.text((left.width + gap + 4, 3), f"detections ({counts['tp']} right, {errors} wrong)", fill=(0, 0, 0))
    return out


def _box_mask(bbox, height: int, width: int) -> np.ndarray:
    """(H, W) bool: the box filled (an annotation without a segmentation)."""
    x1, y1, x2, y2 = xyxy_boxes([bbox])[0].tolist()
    out = np.zeros((height, width), bool)
    out[max(0, int(y1)):max(0, int(np.ceil(y2))), max(0, int(x1)):max(0, int(np.ceil(x2)))] = True
    return out
