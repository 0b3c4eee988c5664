"""Error analysis of detections against ground truth at one score threshold: what kind of mistake each
detection is, which objects were missed, and which classes are taken for which (pure functions).

Shapes: per image, D detections scoring >= the threshold and M ground-truth annotations (crowd ones
included); iou (D, M) float64; boxes (D, 4) / (M, 4) xyxy pixels; K categories of the ground truth.

Each detection, taken greedily from the highest score down (as COCOeval matches), is one of:

- ``tp``: IoU >= ``iou_threshold`` (0.5) with a ground truth of its class not matched yet (the best
  such one becomes matched);
- ``ignored_crowd``: otherwise, covering a crowd region of its class (COCO's crowd overlap:
  intersection over the detection's area) at >= the threshold: neither right nor wrong, as COCOeval
  scores it;
- ``duplicate``: a ground truth of its class overlaps it at >= the threshold, but already matched;
- ``fp_wrong_class``: a ground truth of another class overlaps it at >= the threshold, or else a crowd
  region of another class covers it (COCO's crowd overlap): a crowd of cats holds cats, so a dog there
  is a cat taken for a dog (COCOeval ignores only detections of the crowd's own class);
- ``poor_localisation``: a ground truth of its class overlaps it at ``localisation_iou`` (0.1) <= IoU
  < the threshold;
- ``fp_background``: nothing of the above.

A non-crowd ground truth no true positive matched is ``missed`` (so recall = tp / ground truth, and a
ground truth found only as another class is both missed and in its wrong-class confusion cell). Each
missed object is also one of (``miss_kinds``; so a user sees whether misses are confusion or
localisation; the three add up to ``missed``):

- ``missed_wrong_class``: a detection of another class overlaps it at IoU >= ``iou_threshold``;
- ``missed_poor_localisation``: otherwise, a detection of its class overlaps it at IoU >=
  ``localisation_iou`` (below the threshold, or above it but matched to a neighbouring object);
- ``missed_never_detected``: nothing of the above.

Only the detections COCOeval looks at are analysed: per image and category the ``max_dets`` (100,
COCOeval's largest ``maxDets``, as ``eval``'s AP uses it) highest-scoring ones (ties in file order);
those beyond are left out before the score threshold (which keeps the highest scores anyway) and
counted in ``dropped_by_max_dets``. IoU is
box IoU for ``bbox`` (``ops.boxes.box_iou``) and mask IoU for ``segm`` (pycocotools' RLE IoU, ground
truth encoded from its checked polygons; an annotation without a segmentation counts as its box).

``analyse`` returns the JSON-ready summary (per class counts with precision and recall, totals, the
confusion matrix, per image counts); ``match_dataset`` the per-image matches it is made of, for
drawing them (``visualize_errors.py``). Images without ground truth, without detections, crowd-only
images, categories without instances and no detections at all give zeros (precision or recall None
where their denominator is 0), never an error.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_utils
import torch

from maskrcnn.data.coco import category_names
from maskrcnn.engine.results_file import MAX_DETS
from maskrcnn.ops.boxes import box_area, box_iou, box_xywh_to_xyxy, pairwise_intersection

__all__ = [
    "DETECTION_KINDS", "COUNT_KEYS", "MISS_KINDS", "ImageMatch", "match_image", "miss_kinds", "box_overlaps",
    "mask_overlaps", "match_dataset", "analyse", "instance_counts", "xyxy_boxes", "result_rle",
]

DETECTION_KINDS = ("tp", "fp_background", "fp_wrong_class", "duplicate", "poor_localisation", "ignored_crowd")
# what a missed object is (module docstring): these split "missed"
MISS_KINDS = ("missed_wrong_class", "missed_poor_localisation", "missed_never_detected")
# what analysis.json counts per class and per image (errors: all but tp and ignored_crowd)
COUNT_KEYS = DETECTION_KINDS + ("missed",) + MISS_KINDS
ERROR_KEYS = ("fp_background", "fp_wrong_class", "duplicate", "poor_localisation", "missed")


@dataclass
class ImageMatch:
    """One image's matches. ``detections``: its result records scoring >= the threshold, best first;
    ``kinds`` one of DETECTION_KINDS each; ``gt_index`` the annotation (index into ``annotations``) a
    detection matched, duplicated, took for another class or localised poorly (-1: none);
    ``annotations`` the image's ground truth (crowd included); ``found`` (M,) whether a true positive
    matched each; ``missed_as`` (M,) one of MISS_KINDS for each missed object (None: found, or a crowd
    region); ``dropped`` the detections >= the threshold left out by ``max_dets``."""

    image_id: object
    detections: list
    kinds: List[str]
    gt_index: List[int]
    annotations: list
    found: List[bool]
    missed_as: Optional[List[Optional[str]]] = None
    dropped: int = 0

    def counts(self) -> dict:
        out = {k: 0 for k in COUNT_KEYS}
        for kind in self.kinds:
            out[kind] += 1
        out["missed"] = sum(1 for a, f in zip(self.annotations, self.found) if not a.get("iscrowd") and not f)
        for kind in self.missed_as or ():
            if kind is not None:
                out[kind] += 1
        return out


def match_image(
    *,
    iou: np.ndarray,
    scores: Sequence[float],
    det_labels: Sequence,
    gt_labels: Sequence,
    crowd: Sequence[bool],
    iou_threshold: float = 0.5,
    localisation_iou: float = 0.1,
) -> tuple:
    """(kinds (D,) list of DETECTION_KINDS, gt_index (D,) list of int, found (M,) list of bool) for one
    image. ``iou`` (D, M): IoU with each ground truth, for crowd columns COCO's crowd overlap
    (intersection over the detection's area); detections in any order (taken by descending score,
    ties in the given order)."""
    iou = np.nan_to_num(np.asarray(iou, dtype=np.float64).reshape(len(scores), len(gt_labels)))  # (D, M)
    det_labels = list(det_labels)
    gt_labels = np.asarray(list(gt_labels), dtype=object)  # (M,) ids may be strings
    crowd = np.asarray(list(crowd), dtype=bool).reshape(-1)  # (M,)
    found = np.zeros(len(gt_labels), dtype=bool)  # (M,)
    kinds: List[str] = ["fp_background"] * len(det_labels)
    gt_index = [-1] * len(det_labels)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    for d in order.tolist():
        row = iou[d]  # (M,)
        same = gt_labels == det_labels[d] if len(gt_labels) else np.zeros(0, bool)  # (M,)
        over = row >= iou_threshold
        free = same & ~crowd & ~found & over
        near = same & ~crowd & (row >= localisation_iou)
        if free.any():
            g = _best(row, free)
            found[g] = True
            kinds[d], gt_index[d] = "tp", g
        elif (same & crowd & over).any():
            kinds[d] = "ignored_crowd"
        elif (same & ~crowd & over).any():
            kinds[d], gt_index[d] = "duplicate", _best(row, same & ~crowd & over)
        elif (~same & over).any():  # an object of another class, else its crowd region (one of its kind)
            other = ~same & ~crowd & over
            kinds[d], gt_index[d] = "fp_wrong_class", _best(row, other if other.any() else ~same & over)
        elif near.any():
            kinds[d], gt_index[d] = "poor_localisation", _best(row, near)
    return kinds, gt_index, found.tolist()


def miss_kinds(
    *,
    iou: np.ndarray,
    det_labels: Sequence,
    gt_labels: Sequence,
    crowd: Sequence[bool],
    found: Sequence[bool],
    iou_threshold: float = 0.5,
    localisation_iou: float = 0.1,
) -> List[Optional[str]]:
    """(M,) one of MISS_KINDS for each non-crowd ground truth not ``found`` (None for the others), from
    the (D, M) ``iou`` of the image's analysed detections (module docstring)."""
    iou = np.nan_to_num(np.asarray(iou, dtype=np.float64).reshape(len(det_labels), len(gt_labels)))  # (D, M)
    det_labels = np.asarray(list(det_labels), dtype=object)  # (D,) ids may be strings
    out: List[Optional[str]] = []
    for g, (label, is_crowd, was_found) in enumerate(zip(gt_labels, crowd, found)):
        if is_crowd or was_found:
            out.append(None)
            continue
        column = iou[:, g]  # (D,)
        same = det_labels == label if len(det_labels) else np.zeros(0, bool)  # (D,)
        if (~same & (column >= iou_threshold)).any():
            out.append("missed_wrong_class")
        elif (same & (column >= localisation_iou)).any():
            out.append("missed_poor_localisation")
        else:
            out.append("missed_never_detected")
    return out


def _best(row: np.ndarray, allowed: np.ndarray) -> int:
    """Index of the highest IoU in ``row`` (M,) among the ``allowed`` (M,) ground truths (first on ties)."""
    return int(np.argmax(np.where(allowed, row, -1.0)))


def box_overlaps(det_boxes: torch.Tensor, gt_boxes: torch.Tensor, crowd: torch.Tensor) -> np.ndarray:
    """(D, M) float64: IoU of xyxy boxes (D, 4) and (M, 4); for crowd columns (``crowd`` (M,) bool)
    the intersection over the detection's area, as COCOeval scores crowd regions."""
    det_boxes, gt_boxes = det_boxes.double().reshape(-1, 4), gt_boxes.double().reshape(-1, 4)
    if not len(det_boxes) or not len(gt_boxes):
        return np.zeros((len(det_boxes), len(gt_boxes)))
    iou = box_iou(det_boxes, gt_boxes)  # (D, M)
    covered = pairwise_intersection(det_boxes, gt_boxes) / box_area(det_boxes)[:, None]  # (D, M)
    out = torch.where(crowd.bool()[None, :], covered, iou)  # (D, M)
    return torch.nan_to_num(out, nan=0.0).numpy()  # a zero-area box overlaps nothing


def mask_overlaps(det_rles: list, gt_rles: list, crowd: Sequence[bool]) -> np.ndarray:
    """(D, M) float64 mask IoU of compressed RLEs (crowd columns: COCO's crowd overlap)."""
    if not det_rles or not gt_rles:
        return np.zeros((len(det_rles), len(gt_rles)))
    iou = mask_utils.iou(det_rles, gt_rles, [int(bool(c)) for c in crowd])  # (D, M)
    return np.asarray(iou, dtype=np.float64).reshape(len(det_rles), len(gt_rles))


def xyxy_boxes(bboxes: Iterable) -> torch.Tensor:
    """(N, 4) float64 xyxy from N COCO ``bbox`` values [x, y, width, height]."""
    boxes = torch.tensor([[float(v) for v in b] for b in bboxes], dtype=torch.float64).reshape(-1, 4)
    return box_xywh_to_xyxy(boxes)


def _gt_rle(ann: dict, image: dict) -> dict:
    """The annotation's mask as compressed RLE at its image's size (its box when it has no mask).
    Encoded by pycocotools straight from the polygons: the ground truth passed ``mask_codec``'s
    ``segmentation_problem`` in ``evaluator.load_ground_truth``, and decoding every mask to a bitmap
    and back costs 300 times more (16 ms an object at 640x480: minutes on COCO val)."""
    h, w = int(image["height"]), int(image["width"])
    seg = ann.get("segmentation")
    if isinstance(seg, dict) and isinstance(seg.get("counts"), (str, bytes)):
        return {"size": [int(v) for v in seg["size"]], "counts": seg["counts"]}
    if isinstance(seg, dict):  # uncompressed RLE (counts a list)
        return mask_utils.frPyObjects(dict(seg, size=[h, w]), h, w)
    polygons = [p for p in seg or () if len(p) >= 6]  # a point or a line covers nothing (as training)
    if not polygons:
        x1, y1, x2, y2 = xyxy_boxes([ann["bbox"]])[0].tolist()
        polygons = [[x1, y1, x2, y1, x2, y2, x1, y2]]
    with warnings.catch_warnings():  # pycocotools' numpy 2 DeprecationWarning is not ours to show
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.merge(mask_utils.frPyObjects([[float(v) for v in p] for p in polygons], h, w))


def result_rle(record: dict) -> dict:
    """A validated result record's compressed RLE as pycocotools takes it (``counts`` bytes)."""
    seg = record["segmentation"]
    counts = seg["counts"]
    return {"size": [int(v) for v in seg["size"]],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def match_dataset(
    ground_truth: dict,
    records: list,
    *,
    iou_type: str = "bbox",
    score_threshold: float = 0.5,
    image_ids: Optional[Iterable] = None,
    iou_threshold: float = 0.5,
    localisation_iou: float = 0.1,
    max_dets: Optional[int] = MAX_DETS,
) -> List[ImageMatch]:
    """One ImageMatch per image of ``image_ids`` (default: every image of ``ground_truth``, a COCO dict
    with its annotations' ``iscrowd`` filled, as ``evaluator.load_ground_truth`` leaves it), of the
    validated COCO result ``records`` scoring >= ``score_threshold``, at most ``max_dets`` per image and
    category (the highest-scoring, as COCOeval; None: all). ``iou_type``: "bbox" or "segm"."""
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    images = {img["id"]: img for img in ground_truth["images"]}
    wanted = list(images) if image_ids is None else [i for i in image_ids if i in images]
    anns_of = {i: [] for i in wanted}
    for ann in ground_truth.get("annotations", []):
        if ann["image_id"] in anns_of:
            anns_of[ann["image_id"]].append(ann)
    dets_of = {i: [] for i in wanted}
    for r in records:
        if r["image_id"] in dets_of and r["score"] >= score_threshold:
            dets_of[r["image_id"]].append(r)
    out = []
    for image_id in wanted:
        anns = anns_of[image_id]
        dets, dropped = _capped(dets_of[image_id], max_dets)
        crowd = [bool(a.get("iscrowd")) for a in anns]
        if iou_type == "segm" and not (dets and anns):  # nothing to compare: no polygon encoded
            iou = np.zeros((len(dets), len(anns)))
        elif iou_type == "segm":
            gt_rles = [_gt_rle(a, images[image_id]) for a in anns]
            iou = mask_overlaps([result_rle(r) for r in dets], gt_rles, crowd)
        else:
            iou = box_overlaps(xyxy_boxes(r["bbox"] for r in dets), xyxy_boxes(a["bbox"] for a in anns),
                               torch.tensor(crowd, dtype=torch.bool))
        det_labels, gt_labels = [r["category_id"] for r in dets], [a["category_id"] for a in anns]
        kinds, gt_index, found = match_image(
            iou=iou, scores=[r["score"] for r in dets], det_labels=det_labels, gt_labels=gt_labels,
            crowd=crowd, iou_threshold=iou_threshold, localisation_iou=localisation_iou)
        missed_as = miss_kinds(iou=iou, det_labels=det_labels, gt_labels=gt_labels, crowd=crowd, found=found,
                               iou_threshold=iou_threshold, localisation_iou=localisation_iou)
        out.append(ImageMatch(image_id, dets, kinds, gt_index, anns, found, missed_as, dropped))
    return out


def _capped(dets: list, max_dets: Optional[int]) -> tuple:
    """(one image's result records best first, at most ``max_dets`` of each category, the number left
    out). Sorted stably, so ties keep file order, as COCOeval's mergesort keeps them."""
    dets = sorted(dets, key=lambda r: -r["score"])
    if max_dets is None:
        return dets, 0
    seen: Counter = Counter()
    kept = []
    for r in dets:
        seen[r["category_id"]] += 1
        if seen[r["category_id"]] <= max_dets:
            kept.append(r)
    return kept, len(dets) - len(kept)


def _ratio(num: int, den: int) -> Optional[float]:
    return num / den if den else None


def analyse(
    ground_truth: dict,
    records: list,
    *,
    iou_type: str = "bbox",
    score_threshold: float = 0.5,
    image_ids: Optional[Iterable] = None,
    iou_threshold: float = 0.5,
    localisation_iou: float = 0.1,
    max_dets: Optional[int] = MAX_DETS,
    matches: Optional[List[ImageMatch]] = None,
) -> dict:
    """The error analysis as analysis.json holds it (one IoU type): ``classes`` (per category: its
    ``ground_truth`` non-crowd instances, ``detections`` >= the threshold, the COUNT_KEYS, ``precision``
    = tp / (detections - ignored_crowd), ``recall`` = tp / ground_truth), ``totals`` (the same over all
    categories), ``confusion`` (``rows``: category names + "background", ``columns``: category names +
    "missed", ``counts`` (K + 1, K + 1): diagonal true positives, [gt class][predicted] wrong-class
    detections, [background][predicted] every other false positive (background, duplicates, poor
    localisation), [gt class][missed] missed ground truths) and ``images`` (per image counts, with
    ``errors`` = the ERROR_KEYS summed; the MISS_KINDS split ``missed``), ``max_dets`` (the per image
    and category cap) and ``dropped_by_max_dets`` (detections >= the threshold it left out).
    ``matches``: from ``match_dataset`` when already made (with the same ``max_dets``)."""
    if matches is None:
        matches = match_dataset(ground_truth, records, iou_type=iou_type, score_threshold=score_threshold,
                                image_ids=image_ids, iou_threshold=iou_threshold,
                                localisation_iou=localisation_iou, max_dets=max_dets)
    names = category_names(ground_truth)
    ids = list(names)
    column = {cid: k for k, cid in enumerate(ids)}
    K = len(ids)
    per_class = {cid: dict({"ground_truth": 0, "detections": 0}, **{k: 0 for k in COUNT_KEYS}) for cid in ids}
    confusion = np.zeros((K + 1, K + 1), dtype=np.int64)  # rows: gt classes + background; cols: + missed
    file_names = {img["id"]: img.get("file_name") for img in ground_truth["images"]}
    images = []
    for m in matches:
        for ann, found, missed_as in zip(m.annotations, m.found, m.missed_as or [None] * len(m.found)):
            if ann.get("iscrowd"):
                continue
            row = per_class[ann["category_id"]]
            row["ground_truth"] += 1
            if not found:
                row["missed"] += 1
                confusion[column[ann["category_id"]], K] += 1
            if missed_as is not None:
                row[missed_as] += 1
        for det, kind, g in zip(m.detections, m.kinds, m.gt_index):
            row = per_class[det["category_id"]]
            row["detections"] += 1
            row[kind] += 1
            p = column[det["category_id"]]
            if kind == "tp":
                confusion[p, p] += 1
            elif kind == "fp_wrong_class":
                confusion[column[m.annotations[g]["category_id"]], p] += 1
            elif kind != "ignored_crowd":
                confusion[K, p] += 1
        counts = m.counts()
        images.append(dict({"image_id": m.image_id, "file_name": file_names.get(m.image_id),
                            "ground_truth": sum(1 for a in m.annotations if not a.get("iscrowd")),
                            "detections": len(m.detections)}, **counts,
                           errors=sum(counts[k] for k in ERROR_KEYS)))

    def finish(row: dict) -> dict:
        scored = row["detections"] - row["ignored_crowd"]
        return dict(row, precision=_ratio(row["tp"], scored), recall=_ratio(row["tp"], row["ground_truth"]))

    classes = [dict({"category_id": cid, "name": names[cid]}, **finish(per_class[cid])) for cid in ids]
    totals = {k: sum(per_class[cid][k] for cid in ids) for k in ("ground_truth", "detections") + COUNT_KEYS}
    return {
        "iou_type": iou_type,
        "score_threshold": score_threshold,
        "iou_threshold": iou_threshold,
        "localisation_iou": localisation_iou,
        "max_dets": max_dets,
        "dropped_by_max_dets": sum(m.dropped for m in matches),
        "classes": classes,
        "totals": finish(totals),
        "confusion": {"rows": [names[c] for c in ids] + ["background"],
                      "columns": [names[c] for c in ids] + ["missed"],
                      "counts": confusion.tolist()},
        "images": images,
    }


def instance_counts(ground_truth: dict, records: list, *, score_threshold: float = 0.5,
                    image_ids: Optional[Iterable] = None, max_dets: Optional[int] = MAX_DETS) -> dict:
    """{category id: (non-crowd ground-truth instances, detections scoring >= score_threshold)} over
    ``image_ids`` (default: all images), for the per-class table; as the analysis, at most ``max_dets``
    detections per image and category."""
    wanted = None if image_ids is None else set(image_ids)
    out = {c["id"]: [0, 0] for c in ground_truth["categories"]}
    for ann in ground_truth.get("annotations", []):
        if not ann.get("iscrowd") and (wanted is None or ann["image_id"] in wanted):
            out[ann["category_id"]][0] += 1
    per_pair = Counter((r["image_id"], r["category_id"]) for r in records
                       if r["score"] >= score_threshold and (wanted is None or r["image_id"] in wanted))
    for (_, category_id), n in per_pair.items():
        out[category_id][1] += n if max_dets is None else min(n, max_dets)
    return {cid: tuple(v) for cid, v in out.items()}

