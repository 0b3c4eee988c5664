"""MMDetection's ``tools/test.py --out results.pkl`` -> COCO results, read without running code.

The file is a pickle (``mmengine.dump`` / ``mmcv.dump``), read by ``interop.mmdet_file.read_pickle_file``:
tensors, numpy arrays and plain containers are rebuilt, every other object the file names is left as an
inert placeholder (never imported, never called), and anything that is not one of the two layouts below
is refused in one line naming the file.

- MMDetection 3.x (``DumpDetResults``): a list with one dict per image, ``img_id`` (the ground truth's
  image id) and ``pred_instances``: ``bboxes`` (N, 4) xyxy, ``scores`` (N,), ``labels`` (N,) class
  indices, optional ``masks``: N RLE dicts (``size``, ``counts`` bytes) or bitmaps (N, H, W).
- MMDetection 2.x: a list with one entry per image of the ground truth, in its order (the dataset's
  ``img_ids``): ``bbox_results`` (a list of K arrays (n_k, 5): x1 y1 x2 y2 score) for box models, or
  the tuple ``(bbox_results, segm_results)`` (K lists of n_k RLE dicts or (H, W) bitmaps) for mask ones.

Labels 0..K-1 are the ground truth's categories in the order its file lists them, as MMDetection's
``CocoDataset`` maps them (``cat_ids``); said in a warning. Boxes become [x, y, w, h]; masks compressed
RLE with ``counts`` a string (a bitmap by ``data.mask_codec.mask_to_rle``: non-zero is on). Shapes: N
detections of an image, K classes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from maskrcnn.data.mask_codec import mask_to_rle
from maskrcnn.interop.mmdet_file import Inert, read_pickle_file
from maskrcnn.listing import short_listing

__all__ = ["PICKLE_SUFFIXES", "is_pickle", "read_mmdet_results"]

PICKLE_SUFFIXES = (".pkl", ".pickle")
_LAYOUTS = ("MMDetection results (tools/test.py --out: a list with one entry per image: 3.x dicts with "
            "pred_instances, or 2.x bbox_results / (bbox_results, segm_results))")


class _Refused(ValueError):
    pass


def is_pickle(path) -> bool:
    return Path(path).suffix.lower() in PICKLE_SUFFIXES


def _what(value) -> str:
    """A short description of what a refused value is (a placeholder names the class it stood for)."""
    if isinstance(value, Inert):
        return f"an object of {value.name} (not loaded)"
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"an array of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _array(value, where: str, columns=None) -> np.ndarray:
    """A tensor or numpy array -> numpy, (N,) or (N, columns); _Refused naming ``where`` otherwise."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise _Refused(f"{where} is {_what(value)}, not an array of numbers")
    if (columns is None and value.ndim != 1) or (columns is not None and (value.ndim != 2
                                                                          or value.shape[1] != columns)):
        shape = "(N,)" if columns is None else f"(N, {columns})"
        raise _Refused(f"{where} has shape {tuple(value.shape)}, expected {shape}")
    return value


def _rle(mask, where: str) -> dict:
    """An RLE dict (counts bytes or str) or an (H, W) bitmap -> COCO compressed RLE, counts a string."""
    if isinstance(mask, dict) and "counts" in mask and "size" in mask:
        counts = mask["counts"]
        if isinstance(counts, bytes):
            counts = counts.decode("ascii", "replace")
        return {"size": list(mask["size"]) if isinstance(mask["size"], (list, tuple)) else mask["size"],
                "counts": counts}  # a bad one is left out, counted, by validation
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    if isinstance(mask, np.ndarray) and mask.ndim == 2:
        # As uint8 (a float bitmap truncated, as before), then non-zero is on: the library's one encoder
        return mask_to_rle(torch.from_numpy(mask.astype(np.uint8)))  # astype: a fresh array
    raise _Refused(f"{where} is {_what(mask)}, not an RLE dict or an (H, W) bitmap")


def _records(image_id, boxes, scores, labels, masks, cat_ids: list, where: str) -> list:
    """COCO results of one image: boxes (N, 4) xyxy, scores (N,), labels (N,) 0-based, masks or None."""
    if not (len(boxes) == len(scores) == len(labels)) or (masks is not None and len(masks) != len(boxes)):
        raise _Refused(f"{where}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels"
                       + ("" if masks is None else f", {len(masks)} masks") + " (one each per detection)")
    out = []
    for k in range(len(boxes)):
        label = labels[k]
        if label != int(label) or not 0 <= int(label) < len(cat_ids):
            raise _Refused(f"{where}: label {label} is not a class index of the ground truth's "
                           f"{len(cat_ids)} categories (0..{len(cat_ids) - 1})")
        x1, y1, x2, y2 = (float(v) for v in boxes[k])
        record = {"image_id": image_id, "category_id": cat_ids[int(label)],
                  "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(scores[k])}
        if masks is not None:
            record["segmentation"] = _rle(masks[k], f"{where} mask {k}")
        out.append(record)
    return out


def _from_v3(items: list, cat_ids: list) -> list:
    out = []
    for i, item in enumerate(items):
        where = f"entry {i}"
        image_id = item.get("img_id")
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            raise _Refused(f"{where}: 'img_id' is {_what(image_id)}, not an image id")
        pred = item.get("pred_instances")
        if not isinstance(pred, dict):
            raise _Refused(f"{where}: 'pred_instances' is {_what(pred)}, not a dict of bboxes, scores and "
                           "labels")
        boxes = _array(pred.get("bboxes"), f"{where} pred_instances.bboxes", columns=4)
        scores = _array(pred.get("scores"), f"{where} pred_instances.scores")
        labels = _array(pred.get("labels"), f"{where} pred_instances.labels")
        masks = pred.get("masks")
        if masks is not None and not isinstance(masks, (list, tuple)):
            if isinstance(masks, torch.Tensor):
                masks = masks.detach().cpu().numpy()
            if not isinstance(masks, np.ndarray) or masks.ndim != 3:
                raise _Refused(f"{where} pred_instances.masks is {_what(masks)}: expected N RLE dicts or "
                               f"(N, H, W) bitmaps")
        out += _records(image_id, boxes, scores, labels, masks, cat_ids, where)
    return out


def _from_v2(items: list, img_ids: list, cat_ids: list) -> list:
    if len(items) != len(img_ids):
        raise _Refused(f"2.x results hold {len(items)} images, the ground truth {len(img_ids)}: they are "
                       f"matched by order, so give the ground truth MMDetection ran on")
    out = []
    for i, (item, image_id) in enumerate(zip(items, img_ids)):
        where = f"entry {i} (image {image_id})"
        if isinstance(item, tuple):
            if len(item) != 2:
                raise _Refused(f"{where}: a tuple of {len(item)}, expected (bbox_results, segm_results)")
            per_class, segms = item
        else:
            per_class, segms = item, None
        if not isinstance(per_class, list) or len(per_class) != len(cat_ids):
            count = len(per_class) if isinstance(per_class, list) else None
            raise _Refused(f"{where}: bbox_results is {_what(per_class)}"
                           + (f" of {count} classes" if count is not None else "")
                           + f", expected a list of {len(cat_ids)} arrays (one per category)")
        if segms is not None and (not isinstance(segms, list) or len(segms) != len(cat_ids)):
            raise _Refused(f"{where}: segm_results is {_what(segms)}, expected a list of {len(cat_ids)} "
                           f"lists of masks (mask-scoring results are not read)")
        for k, dets in enumerate(per_class):
            dets = _array(dets, f"{where} bbox_results[{k}]", columns=5)
            masks = None if segms is None else segms[k]
            if masks is not None and not isinstance(masks, (list, tuple)):
                raise _Refused(f"{where} segm_results[{k}] is {_what(masks)}, expected a list of masks")
            labels = np.full(len(dets), k)
            out += _records(image_id, dets[:, :4], dets[:, 4], labels, masks, cat_ids, f"{where} class {k}")
    return out


def read_mmdet_results(path, coco_gt) -> list:
    """COCO results from MMDetection's ``--out`` pickle at ``path`` for the ground truth ``coco_gt``
    (pycocotools COCO); ValueError in one line naming the file for anything else."""
    obj = read_pickle_file(path)
    cat_ids = [c["id"] for c in coco_gt.dataset.get("categories", [])]
    img_ids = [img["id"] for img in coco_gt.dataset.get("images", [])]
    try:
        if not isinstance(obj, list):
            raise _Refused(f"it holds {_what(obj)}")
        if all(isinstance(x, dict) for x in obj):
            records, version = _from_v3(obj, cat_ids), "3.x"
        elif all(isinstance(x, (list, tuple)) for x in obj):
            records, version = _from_v2(obj, img_ids, cat_ids), "2.x"
        else:
            odd = next(x for x in obj if not isinstance(x, (dict, list, tuple)))
            raise _Refused(f"an entry is {_what(odd)}")
    except _Refused as e:
        raise ValueError(f"{path}: not {_LAYOUTS}: {e}") from None
    warnings.warn(f"{path}: read as MMDetection {version} results ({len(obj)} images, {len(records)} "
                  f"detections); labels 0..{len(cat_ids) - 1} as the ground truth's categories in its order "
                  f"(ids {short_listing(cat_ids, limit=5)})"
                  + ("; images matched by order" if version == "2.x" else ""), stacklevel=2)
    return records
