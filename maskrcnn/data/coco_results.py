"""Detections -> COCO results format (what COCOeval and the COCO server read).

Shapes: one image's detections, D of them, in original image coordinates: boxes (D, 4) xyxy,
scores (D,), labels (D,) int64 in 1..K-1, optional masks (D, H, W) bool or ``masks_rle`` (D COCO RLE
dicts, written as they are), optional keypoints (D, P, 3) and keypoint_scores (D, P) for P keypoints.

A result is ``{"image_id", "category_id", "score", "bbox": [x, y, w, h]}`` plus
``"segmentation": {"size": [H, W], "counts": str}`` (compressed RLE) when masks are given and
``"keypoints": [x1, y1, s1, ...]`` when keypoints are, with s the keypoint's score when
``keypoint_scores`` (D, P) are given (detectron2's results; COCOeval reads only x and y), else the
keypoints' own third column (floating-point masks are cut at 0.5). Labels map to category ids through
``label_to_category_id`` (identity when None). With ``class_names`` (by label, index 0 the background)
each result also carries ``"category_name"``: the class, readable without the checkpoint. COCO results
readers (pycocotools' ``loadRes``, COCOeval, ``maskrcnn eval --results``) ignore keys they do not use.
With ``keypoint_labels`` (``Predictor.keypoint_labels``: the classes that own the keypoint set), a
detection of another class has no ``"keypoints"`` (a ball has no nose); None: every detection has them.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Union

import numpy as np
import torch

from maskrcnn.data.keypoint_classes import owns_keypoints
from maskrcnn.data.mask_codec import masks_to_rles

__all__ = ["detections_to_coco_results"]


def _checked_image_id(image_id) -> Union[int, str]:
    """``image_id`` as written into the results: an integer (numpy's too, a float with an integral value,
    and a string that is an integer's own spelling, "7") as a plain int; any other string as given
    (``maskrcnn eval --results`` matches "000123" or "img_01" to file names); anything else refused.
    ``int()`` alone turned "000123" into 123 and 1.7 into 1: an id changed silently matches no ground
    truth image, or the wrong one, and scores about AP 0. "7" is read as 7 by every loader of ours
    (``CocoDataset`` reads a ground truth's "7" so) and is what COCO tools expect; written quoted,
    pycocotools refused it."""
    if isinstance(image_id, str):
        if image_id.isascii() and image_id.isdecimal() and len(image_id) > 20:
            # no 64-bit id has more digits; int() stopped on Python's own limit (4300) naming nothing
            raise ValueError(f"detections_to_coco_results: image_id {image_id[:12]!r}... (a string of "
                             f"{len(image_id)} digits) is not an image id (those have at most 20 digits)")
        # only the spelling int() gives back: "007" and " 7" may be file stems, kept for eval to match
        spelled = image_id.isascii() and image_id.isdecimal() and str(int(image_id)) == image_id
        return int(image_id) if spelled else image_id
    if isinstance(image_id, torch.Tensor) and image_id.numel() == 1:  # a dataset target's image_id
        image_id = image_id.item()
    if isinstance(image_id, (bool, np.bool_)):
        pass  # True is 1 to int(): no id
    elif isinstance(image_id, numbers.Integral):
        return int(image_id)
    elif isinstance(image_id, numbers.Real) and math.isfinite(image_id) and float(image_id).is_integer():
        return int(image_id)  # 3.0 (a JSON number read as float, pandas' float column)
    raise TypeError(f"detections_to_coco_results: image_id must be an integer or a string (the ground "
                    f"truth's image id), got {image_id!r:.40} ({type(image_id).__name__})")


def detections_to_coco_results(
    det: dict, *, image_id: Union[int, str], label_to_category_id: Optional[dict] = None,
    extra: Optional[dict] = None, class_names: Optional[Sequence[str]] = None,
    keypoint_labels: Optional[frozenset] = None,
) -> list:
    """COCO result dicts for one image's detections (``extra`` is merged into every result; with
    ``class_names``, by label, each result names its class in ``category_name``)."""
    image_id = _checked_image_id(image_id)  # checked before the detections: also when there are none
    boxes = det["boxes"].detach().float().cpu().reshape(-1, 4)
    n = boxes.shape[0]
    if n == 0:
        return []
    scores = det["scores"].detach().float().cpu().tolist()
    labels = det["labels"].detach().cpu().tolist()
    if label_to_category_id is None:
        categories = [int(lab) for lab in labels]
    else:
        unknown = sorted({int(lab) for lab in labels} - {int(k) for k in label_to_category_id})
        if unknown:
            raise ValueError(f"labels {unknown} have no category id in label_to_category_id")
        mapping = {int(k): int(v) for k, v in label_to_category_id.items()}
        categories = [mapping[int(lab)] for lab in labels]
    if class_names is not None:
        beyond = sorted({int(lab) for lab in labels if not 0 <= int(lab) < len(class_names)})
        if beyond:
            raise ValueError(f"labels {beyond} have no name in the {len(class_names)} class names")
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()  # (D, 4) xyxy -> xywh
    rles = None
    if det.get("masks_rle") is not None:  # already encoded (Predictor(masks="rle"))
        rles = list(det["masks_rle"])
        if len(rles) != n:
            raise ValueError(f"{len(rles)} RLE masks for {n} detections")
    elif det.get("masks") is not None:
        masks = det["masks"].detach()
        if masks.is_floating_point():  # probabilities pasted without a threshold: the usual 0.5 cut
            masks = masks >= 0.5
        rles = masks_to_rles(masks)
    keypoints = None
    if det.get("keypoints") is not None:
        kps = det["keypoints"].detach().float().cpu().reshape(n, -1, 3).clone()  # (D, P, 3)
        if det.get("keypoint_scores") is not None:  # the third value is the keypoint's score
            kps[:, :, 2] = det["keypoint_scores"].detach().float().cpu().reshape(n, -1)
        keypoints = kps.reshape(n, -1).tolist()
    results = []
    for i in range(n):
        r = {
            "image_id": image_id,
            "category_id": categories[i],
            **({"category_name": str(class_names[int(labels[i])])} if class_names is not None else {}),
            # 4 decimals, about float32's own resolution at image coordinates: a box a tenth of a pixel
            # wide rounded to 3 would lose 1% of its IoU with itself
            "bbox": [round(v, 4) for v in xywh[i]],
            "score": float(scores[i]),  # unrounded: rounding would create ties that reorder detections
        }
        if rles is not None:
            r["segmentation"] = rles[i]
        if keypoints is not None and owns_keypoints(keypoint_labels, labels[i]):
            r["keypoints"] = [round(v, 3) for v in keypoints[i]]
        if extra:
            r.update(extra)
        results.append(r)
    return results
