"""COCO AP (bbox, segm, keypoints) through pycocotools' COCOeval, in percent as detectron2 reports it.

Shapes: one image's detections, D of them, in original image coordinates: boxes (D, 4) xyxy, scores
(D,), labels (D,) int64 (1..K-1), masks (D, H, W) bool, keypoints (D, P, 3).

``CocoEvaluator`` collects detections image by image and scores only the images it was given (as
detectron2 does), so evaluating a subset is not penalised for the rest. ``evaluate_results_file``
scores an existing COCO results JSON against all ground-truth images. Both validate their inputs
before pycocotools sees them (its C code trusts them: see ``data/mask_codec.py``): a ground-truth
annotation with a bad value, a result missing a field, or naming a category or image the ground truth
does not have, raises ValueError naming them; a result with a bad value (NaN box, string score, garbage
RLE) is left out with a warning naming the file, the record and the field. Ground-truth annotation ids
are renumbered 1..N (pycocotools mis-scores id 0 and duplicates). Ground-truth keypoints outside their
image are clipped or made unlabelled as ``CocoDataset`` does (``data.keypoints.clip_keypoints``), so
``eval --results`` scores the points the model's own evaluation scores; an annotation whose keypoints
list is of another count than its category's names keeps its box and mask, its keypoints unlabelled
(num_keypoints 0, ignored by OKS), as training reads it, said in one warning with the count and the
file. pycocotools' prints are captured
(``summaries`` keeps its text tables).

A ground-truth object without a mask (segmentation empty or absent: a tool's rectangle, a detection
dataset's object, a keypoint person drawn without one) is an object of bbox AP
and an ignored region of segm AP (``_segm_ground_truth``), counted in ``metrics["segm"]
["ignored_box_only"]`` and one warning; with no object with a mask, segm AP is NaN and
``metrics["segm"]["not_reported"]`` says why; with no labelled keypoint in the ground truth, keypoint AP
is NaN and ``metrics["keypoints"]["not_scored"]`` says why. Each kind also holds COCOeval's average
recall (``"AR"``) and the ``maxDets`` and area ranges of its figures (``"coco_params"``).
``crowd_as_objects`` (``data.crowd_as_objects``) scores crowd
annotations as objects (``data/crowd.py``: CVAT writes brush masks as crowd RLE).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import warnings
from collections import Counter
from typing import Optional, Sequence, Union

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskrcnn.data.coco import category_names, load_coco_json
from maskrcnn.data.coco_exports import warn_tool_exports
from maskrcnn.data.coco_results import detections_to_coco_results
from maskrcnn.data.crowd import as_objects, cvat_crowd_note
from maskrcnn.data.json_values import is_finite_number
from maskrcnn.data.keypoints import (
    KEYPOINT_MARGIN,
    clip_keypoints,
    keypoint_names_problem,
    odd_visibility_note,
    other_counts_words,
    read_visibility,
)
from maskrcnn.data.keypoints import keypoint_sigmas as sigmas_for_keypoints
from maskrcnn.data.mask_codec import annotation_to_mask, is_empty_segmentation, segmentation_problem
from maskrcnn.engine.best_model import METRICS
from maskrcnn.engine.results_file import (
    compress_segmentations,
    image_name_keys,
    match_category_names,
    match_image_ids,
    note_scoring_conventions,
    partial_fields,
    plan_iou_types,
    read_results_file,
    resolve_results_paths,
    shift_categories,
    wrap_flat_polygons,
    zero_based_hint,
    zero_based_suspicion,
)

__all__ = ["IOU_TYPES", "METRIC_NAMES", "CocoEvaluator", "evaluate_results_file", "load_ground_truth"]

IOU_TYPES = ("bbox", "segm", "keypoints")
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# Positions of those metrics in COCOeval.stats: best_model.METRICS lists them in that order per IoU type
# (keypoints have no "small" area range).
_STAT_INDEX = {t: {m: i for i, m in enumerate(names)} for t, names in METRICS.items()}
# COCOeval.stats after the AP figures: average recall at 1, 10, 100 detections per image and by size
# (keypoints: at 20, over the ten OKS thresholds, at 0.5, at 0.75, by size)
_AR_NAMES = {"bbox": ("AR1", "AR10", "AR100", "ARs", "ARm", "ARl"),
             "segm": ("AR1", "AR10", "AR100", "ARs", "ARm", "ARl"),
             "keypoints": ("AR", "AR50", "AR75", "ARm", "ARl")}
_FIELDS = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}
# the per-detection entries of a detections dict (tensors with D rows, masks_rle a list of D)
_PER_DETECTION = ("boxes", "scores", "labels", "masks", "masks_rle", "keypoints", "keypoint_scores")


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


def _order(value) -> tuple:
    """Sort key for ids and indices: numbers in numeric order (2 before 10), then the rest as text."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if number else (1, 0, str(value))


def _listing(values, n: int = 10) -> str:
    """The first ``n`` of ``values`` in ``_order``; strings quoted: a string id '1' shown as 1 made
    "category ids 1 are not in the ground truth (which has 1)"."""
    values = sorted(values, key=_order)
    return ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values[:n]) + (
        f", ... ({len(values)} in all)" if len(values) > n else ""
    )


def _string_ids_hint(bad: set, known, field: str, *, map_option: bool = False) -> str:
    """The end of a refusal of the unknown ids ``bad`` when some are strings of digits whose number is
    one of the ``known`` integer ids (a hand-made script, pandas' ``to_json``): said as strings, with
    what to do; "" otherwise. ``map_option``: ``--category-map`` takes them (its keys are strings)."""
    numbers = {k for k in known if isinstance(k, int) and not isinstance(k, bool)}
    # isdecimal, not isdigit: "²" is a digit to isdigit and no number to int()
    quoted = sorted((v for v in bad if isinstance(v, str) and v.strip().lstrip("-").isdecimal()
                     and int(v) in numbers), key=_order)
    if not quoted:
        return ""
    shown = ", ".join(repr(v) for v in quoted[:3]) + (", ..." if len(quoted) > 3 else "")
    fix = f"write {field} as a JSON number ({int(quoted[0])}, not \"{quoted[0]}\")"
    if map_option:
        example = ", ".join(f'"{v}": {int(v)}' for v in quoted[:3]) + (", ..." if len(quoted) > 3 else "")
        fix += f", or pass --category-map MAP.json with {{{example}}}"
    which = "they are" if len(quoted) == len(bad) else f"{len(quoted)} of them ({shown}) are"
    return f"; {which} strings (quoted in the file) of the ground truth's integer ids: {fix}"


def _is_id(value) -> bool:
    """An id pycocotools can index by: an integer or a string (never a bool, float, list or null)."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _as_id(value):
    """An integer-valued float (1.0, as tools that go through JavaScript's or pandas' JSON numbers write
    ids) as the int it holds, as ``CocoDataset`` reads it (``data/coco.py``: training and show-data took
    a file eval refused); anything else unchanged. Digit strings stay strings: a results file's "000123"
    may be a file stem to match by name."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _with_ids(record, *keys):
    """``record`` (a dict; anything else unchanged) with the ids under ``keys`` read by ``_as_id``."""
    if not isinstance(record, dict) or not any(isinstance(record.get(k), float) for k in keys):
        return record
    return dict(record, **{k: _as_id(record[k]) for k in keys if k in record})


def _ids_read(data: dict) -> dict:
    """A ground-truth dict with its image, category and annotation ids read by ``_as_id``."""
    out = dict(data)
    for key, fields in (("images", ("id",)), ("categories", ("id",)),
                        ("annotations", ("image_id", "category_id"))):
        if isinstance(data.get(key), list):
            out[key] = [_with_ids(x, *fields) for x in data[key]]
    return out


def _box_problem(bbox) -> Optional[str]:
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(is_finite_number(v) for v in bbox)):
        return f"bbox {str(bbox)[:60]} is not [x, y, w, h] of 4 finite numbers"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"bbox {list(bbox)} has a negative width or height"
    return None


def _keypoints_problem(kp) -> Optional[str]:
    if not (isinstance(kp, (list, tuple)) and len(kp) % 3 == 0 and all(is_finite_number(v) for v in kp)):
        return "keypoints must be a flat list [x1, y1, v1, ...] of finite numbers"
    return None


def _plain_segmentation(record: dict) -> dict:
    """``record`` as pycocotools' C code can take it; checked records only. An RLE ``size`` of Python
    ints (it takes no 40.0); polygons under 3 points left out, as the training masks leave them out:
    pycocotools reads the whole list as boxes when its first polygon has 4 numbers (a TypeError in
    COCOeval for [[x1, y1, x2, y2], [a real polygon]], which annotation tools do export)."""
    seg = record.get("segmentation")
    if isinstance(seg, dict):
        return dict(record, segmentation=dict(seg, size=[int(v) for v in seg["size"]]))
    if isinstance(seg, list) and any(len(p) < 6 for p in seg):
        return dict(record, segmentation=[p for p in seg if len(p) >= 6])
    return record


def _gt_annotation_problem(ann: dict, images: dict, cat_ids: dict) -> Optional[str]:
    """Why pycocotools would mis-score or crash on one ground-truth annotation (None when fine)."""
    missing = [k for k in ("id", "image_id", "category_id", "bbox") if k not in ann]
    if missing:
        return f"lacks {', '.join(missing)}"
    for key, known, what in (("image_id", images, "an image"), ("category_id", cat_ids, "a category")):
        if not _is_id(ann[key]):  # the type, not the value, is what is wrong (1.5, null, a list)
            return f"{key} {ann[key]!r:.40} is not an integer or a string"
        if ann[key] not in known:
            return f"{key} {ann[key]!r:.40} is not {what} of the file"
    problem = _box_problem(ann["bbox"])
    if problem:
        return problem
    if "area" in ann and not (is_finite_number(ann["area"]) and ann["area"] >= 0):
        return f"area {ann['area']!r:.40} is not a finite number >= 0"  # quoted: "12" is a string
    if ann.get("iscrowd", 0) not in (0, 1):  # also refuses true/false lookalikes such as "yes"
        return f"iscrowd {ann['iscrowd']!r:.20} is not 0 or 1"
    if not is_empty_segmentation(ann.get("segmentation")):
        img = images[ann["image_id"]]
        if not (is_finite_number(img.get("height")) and is_finite_number(img.get("width"))):
            return f"has a segmentation but image {ann['image_id']!r} has no integer height and width"
        problem = segmentation_problem(ann["segmentation"], img["height"], img["width"])
        if problem:
            return f"segmentation: {problem}"
    if ann.get("keypoints") is not None:
        if _other_count(ann["keypoints"], cat_ids[ann["category_id"]]):
            return None  # read as unlabelled by _validate_ground_truth, as training reads it
        return _keypoints_problem(ann["keypoints"])
    return None


def _other_count(kp, names) -> int:
    """The length of ``kp``, finite numbers of another count than 3 per name of ``names`` (0 when not):
    an annotation of another keypoint set, or of none the file names. Training keeps such an object,
    its box and mask, with its keypoints unlabelled (``CocoDataset``); so does the evaluation: COCOeval
    failed on numpy's broadcasting message, and refusing the file scored no box of it either."""
    if not (names and isinstance(kp, (list, tuple)) and kp and all(is_finite_number(v) for v in kp)):
        return 0
    return len(kp) if len(kp) != 3 * len(names) else 0


def _names_per_category(counts: dict, category_names: dict) -> str:
    """``counts`` ({category id: its number of keypoint names}) of two or more numbers in words: "'a'
    names 3, 'b' names 2" (the category's name, else its id), in category id order."""
    return ", ".join(f"{category_names.get(c, c)!r} names {n}" for c, n in sorted(counts.items(), key=str))


def _other_count_note(source: str, other: list, category_names: dict) -> str:
    """One line for the annotations whose keypoints were of another count: ``other`` holds (the file's
    annotation id, the list's length, its category's number of names, its category id) per annotation,
    in the file's order; worded as training's note (``CocoDataset``). Categories naming other counts
    are each said with theirs (the first one's count was said of them all)."""
    counts = Counter(length for _, length, _, _ in other)
    held = other_counts_words(counts)
    n, first = len(other), other[0][0]
    names = {category: size for _, _, size, category in other}
    what = f"{n} annotations (the first id {first!r}) hold" if n > 1 else f"1 annotation (id {first!r}) holds"
    kept = ("their boxes and masks are scored, their keypoints read as unlabelled" if n > 1
            else "its box and mask are scored, its keypoints read as unlabelled")
    if len(set(names.values())) == 1:
        expected = f"not the {next(iter(names.values()))} the categories name"
    else:
        expected = f"not their category's count ({_names_per_category(names, category_names)})"
    return (f"{source}: {what} {held}, {expected}: {kept}, as training reads "
            f"them (for keypoint AP people without a labelled keypoint, num_keypoints 0: COCOeval ignores "
            f"them)")


def _mixed_ids(ids) -> str:
    """One integer and one string among ``ids`` ("1, 'img_2'"), or "" when they are of one kind."""
    number = next((i for i in ids if isinstance(i, int)), None)
    text = next((i for i in ids if isinstance(i, str)), None)
    return "" if number is None or text is None else f"{number}, {text!r}"


def _validate_ground_truth(data: dict, source: str, *, crowd_as_objects: bool = False,
                           positions: bool = True) -> dict:
    """Check what COCOeval needs; fill ``iscrowd`` (0) and ``area`` (the mask's, else the box's) when
    absent, give a rectangle (segmentation ``[]``, ``{}``, null or none at all) its box as its region,
    clip labelled keypoints outside the image as training does (``data.keypoints.clip_keypoints``, with a
    warning when some are made unlabelled), and number the annotations 1..N. Raises ValueError naming
    the annotations and fields at fault (and each one's position among ``data``'s records, unless not
    ``positions``: records kept out of a file, whose positions are not the file's).

    Why the renumbering: COCOeval marks an unmatched detection with the ground-truth id 0 and keys its
    matches by annotation id, so an annotation with id 0, or two sharing an id, silently turn perfect
    detections into misses (72 AP instead of 100). Nothing outside the evaluation refers to ground-truth
    annotation ids, so they are replaced, whatever they were (0, duplicates, strings)."""
    data = _ids_read(data)
    problems = []
    images = {}
    for img in data["images"]:
        if not isinstance(img, dict) or not _is_id(img.get("id")):
            problems.append(f"image {str(img)[:60]} has no integer or string 'id'")
        elif img["id"] in images:
            problems.append(f"image id {img['id']!r} appears twice")
        else:
            images[img["id"]] = img
    cat_ids = {}  # id -> its keypoint names (None without)
    for cat in data["categories"]:
        if not isinstance(cat, dict) or not _is_id(cat.get("id")):
            problems.append(f"category {str(cat)[:60]} has no integer or string 'id'")
        elif cat["id"] in cat_ids:  # pycocotools keeps the last, CocoDataset the first: two names for it
            problems.append(f"category id {cat['id']!r} appears twice")
        else:
            names = cat.get("keypoints")
            named = names and keypoint_names_problem(names)  # as CocoDataset reads them, eval --results too
            if named:
                problems.append(f"category {cat['id']!r}: {named}")
            cat_ids[cat["id"]] = names if isinstance(names, list) and names else None
    for ids, field in ((images, "images' id"), (cat_ids, "categories' id")):
        mixed = _mixed_ids(ids)
        if mixed:  # COCOeval sorts the ids: int < str is a TypeError deep inside it
            problems.append(f"{field} values mix integers and strings ({mixed}): number them one way (two "
                            f"datasets merged?)")
    anns = data.get("annotations", [])
    if crowd_as_objects:  # data.crowd_as_objects (data/crowd.py): CVAT's brush masks are objects
        anns = as_objects(anns)[0]
    for index, ann in enumerate(anns):
        if not isinstance(ann, dict):
            problems.append(f"annotation {str(ann)[:60]} is not an object")
            continue
        problem = _gt_annotation_problem(ann, images, cat_ids)
        if problem:
            where = f" (record {index})" if positions else ""
            problems.append(f"annotation id {ann.get('id')!r} {problem}{where}")
    if problems:
        raise ValueError(
            f"{source}: {len(problems)} problem{'' if len(problems) == 1 else 's'} in the ground truth, "
            f"which must be right to score against: " + "; ".join(problems[:10])
            + ("; ..." if len(problems) > 10 else "")
        )
    data = copy.copy(data)
    data["annotations"] = [_plain_segmentation(dict(a, id=i + 1)) for i, a in enumerate(anns)]
    far = []  # the file's annotation ids, one per labelled keypoint made unlabelled
    odd = []  # (the file's annotation id, value), one per visibility flag other than 0, 1, 2
    other = []  # (the file's annotation id, length), one per keypoints list of another count
    recounted = []  # (the file's annotation id, its num_keypoints, its labelled keypoints), where they differ
    for index, ann in enumerate(data["annotations"]):
        ann.setdefault("iscrowd", 0)
        if "segmentation" not in ann:
            # no segmentation at all (a detection dataset, a keypoint person drawn without one): the box's
            # area, as before (the bbox and keypoint size ranges unchanged), then box-only as below: segm
            # AP's COCOeval read ann["segmentation"] of every object (a KeyError)
            ann.setdefault("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))
            ann["segmentation"] = None
        if is_empty_segmentation(ann["segmentation"]):
            # a rectangle (segmentation []): its box is its region for segm AP, as CocoDataset gives it
            # (clipped to the image: pycocotools rasterises a polygon whole, however far out it reaches)
            x, y, w, h = (float(v) for v in ann["bbox"])
            img = images[ann["image_id"]]
            big = (float(img["width"]), float(img["height"])) if is_finite_number(img.get("width")) and \
                is_finite_number(img.get("height")) else (x + w, y + h)
            x1, y1 = min(max(x, 0.0), big[0]), min(max(y, 0.0), big[1])
            x2, y2 = min(max(x + w, 0.0), big[0]), min(max(y + h, 0.0), big[1])
            ann["segmentation"] = [[x1, y1, x2, y1, x2, y2, x1, y2]]
            ann.setdefault("area", (x2 - x1) * (y2 - y1))
            ann["_box_only"] = True  # its mask is unknown: an ignored region of segm AP (_segm_ground_truth)
        if "area" not in ann:
            # As detectron2 fills it (and show-data counts it): the mask's pixels where there is a mask.
            # The box's area put a thin or diagonal object in a larger size range (AP_S/M/L).
            img = images[ann["image_id"]]  # every annotation has a mask or a polygon of its box by now
            ann["area"] = float(annotation_to_mask(ann["segmentation"], img["height"], img["width"]).sum())
            if not ann["area"]:  # a mask of no pixel (a degenerate polygon): the box's, not 0 (OKS scale)
                ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
        names = cat_ids[ann["category_id"]]
        length = _other_count(ann.get("keypoints"), names)
        if length:  # another count: a person without labelled keypoints (below), said once
            other.append((anns[index].get("id"), length, len(names), ann["category_id"]))
            ann["keypoints"], ann["_other_count"] = None, length
        if not ann.get("keypoints") and names:  # a person drawn without keypoints (no field, null or []):
            ann["keypoints"] = [0] * (3 * len(names))  # none labelled (COCOeval reads every one it scores)
        if ann.get("keypoints") is not None:
            # flags other than 0, 1, 2 read (and said) as CocoDataset reads them: eval --results said nothing
            ann["keypoints"], values = read_visibility(ann["keypoints"])
            odd.extend((anns[index].get("id"), value) for value in values)
            given, labelled = ann.get("num_keypoints"), sum(1 for v in ann["keypoints"][2::3] if v > 0)
            if given is not None and given != labelled:  # before clipping: its points are said below
                recounted.append((anns[index].get("id"), given, labelled))
            img = images[ann["image_id"]]
            if is_finite_number(img.get("width")) and is_finite_number(img.get("height")):
                # as CocoDataset reads them for training and for the model's evaluation: scored against
                # other points, eval --results gave another AP for the same predictions
                ann["keypoints"], n = clip_keypoints(ann["keypoints"], float(img["width"]),
                                                     float(img["height"]))
                far.extend([anns[index].get("id")] * n)
            # COCOeval ignores people whose num_keypoints is 0; counted from the visibility flags, which
            # are the data (a converter's stale or missing count left every person ignored: AP n/a)
            ann["num_keypoints"] = int(sum(1 for v in ann["keypoints"][2::3] if v > 0))
    if other:
        category_names = {c["id"]: c["name"] for c in data["categories"] if c.get("name") is not None}
        warnings.warn(_other_count_note(source, other, category_names), stacklevel=3)
    if odd:
        warnings.warn(odd_visibility_note(source, odd), stacklevel=3)
    if recounted:  # replaced silently, the same file scored another keypoint AP here than in pycocotools
        aid, given, labelled = recounted[0]
        many = len(recounted) > 1
        whose = "annotations' num_keypoints differ" if many else "annotation's num_keypoints differs"
        warnings.warn(
            f"{source}: {len(recounted)} {whose} "
            f"from {'their' if many else 'its'} labelled keypoints (the first: annotation id {aid!r}, "
            f"{given!r} for {labelled}): counted from the visibility flags, as training reads them (COCOeval "
            "ignores a person whose num_keypoints is 0)", stacklevel=3)
    if far:
        warnings.warn(
            f"{source}: {len(far)} labelled keypoints lie more than {KEYPOINT_MARGIN:.0%} of the image's "
            f"size outside it (the first in annotation id {far[0]!r}): treated as unlabelled (v=0), as "
            "training reads them", stacklevel=3)
    return data


def load_ground_truth(gt, *, crowd_as_objects: bool = False, source: Optional[str] = None,
                      from_dataset: bool = False) -> COCO:
    """A pycocotools COCO from a path, a dict or a COCO (returned as is), validated, quietly.
    ``crowd_as_objects``: crowd annotations scored as ordinary objects (``data.crowd_as_objects``);
    without it a file (a path, or a dict read from the file ``source`` names) that looks like a CVAT
    export with crowd RLE is said in a warning (``data/crowd.py``). ``from_dataset``: ``gt`` is a
    ``CocoDataset``'s records (``to_coco_dict``) of the file ``source``: its notes were said when it was
    read, and ``source`` only names the file in the errors, each annotation by its id (its position
    among the records the dataset kept is not the file's)."""
    if isinstance(gt, COCO):
        return gt
    if isinstance(gt, (str, os.PathLike)):
        source, data = str(gt), load_coco_json(gt)
    elif isinstance(gt, dict):
        data = gt
    else:
        raise TypeError(f"ground truth must be a path, a dict or a pycocotools COCO, got {type(gt).__name__}")
    data = warn_tool_exports(data, source or "ground truth")  # VIA 3 COCO export, read as CocoDataset does
    anns = data.get("annotations", [])
    note = None if crowd_as_objects or source is None or from_dataset else cvat_crowd_note(anns, source)
    if note:
        warnings.warn(note, stacklevel=2)
    data = _validate_ground_truth(data, source or "ground truth", crowd_as_objects=crowd_as_objects,
                                  positions=not from_dataset)
    data.setdefault("annotations", [])
    coco = COCO()
    coco.dataset = data
    with _quiet():
        coco.createIndex()
    return coco


def _score_problem(score) -> Optional[str]:
    if isinstance(score, str):  # shown quoted: "score 0.9 is not a finite number" read as a contradiction
        return f"score {score!r:.40} is a string, not a number"
    if not is_finite_number(score):
        return f"score {str(score)[:40]} is not a finite number"
    return None


def _result_problems(r: dict, iou_types: Sequence[str], coco_gt) -> dict:
    """{IoU type: why one result record cannot be scored for it}, for the types it cannot (empty when
    it can be scored for all); its ids are known to exist. A bad score leaves it out of every type; a
    bad mask only out of segm AP (its box is still a detection of bbox AP), and so on; a type whose
    field the record lacks (``results_file.partial_fields``) is not its to score."""
    problem = _score_problem(r["score"])
    if problem:
        return {t: problem for t in iou_types}
    problems = {}
    if "bbox" in iou_types and "bbox" in r:
        problem = _box_problem(r["bbox"])
        if problem:
            problems["bbox"] = problem
    if "segm" in iou_types and "segmentation" in r:
        img = coco_gt.imgs[r["image_id"]]
        if not (is_finite_number(img.get("height")) and is_finite_number(img.get("width"))):
            problems["segm"] = (f"image {r['image_id']!r} of the ground truth has no height and width to "
                                f"check the mask")
        else:
            problem = segmentation_problem(r["segmentation"], img["height"], img["width"])
            if problem:
                problems["segm"] = f"segmentation: {problem}"
    if "keypoints" in iou_types and "keypoints" in r:
        problem = _keypoints_problem(r["keypoints"])
        names = coco_gt.cats[r["category_id"]].get("keypoints")
        if not problem and isinstance(names, list) and names and len(r["keypoints"]) != 3 * len(names):
            # COCOeval compares every person's keypoints with one skeleton: another length cannot be scored
            problem = f"keypoints hold {len(r['keypoints']) // 3} points, the category has {len(names)}"
        if problem:
            problems["keypoints"] = problem
    return problems


def _validate_results(results: list, coco_gt, iou_types: Sequence[str], source: str, *,
                      optional: Sequence[str] = (), by_type: bool = False, image_ids: str = "auto"):
    """The results pycocotools can score. Missing fields, unknown images or categories (a results file
    for another dataset) raise ValueError; a record with a bad value (a NaN box, a string score, a
    garbage RLE) is left out, and the left-out records are counted in a warning naming the file, the
    record and the field: never a crash in pycocotools, never a silent miss. ``optional``: fields some
    records may lack (``results_file.partial_fields``). ``by_type``: {IoU type: the records scored for
    it} (a record with a bad mask still counts in bbox AP); else the records good for every type.
    ``image_ids``: how ``match_image_ids`` read the ids ("id" tried no file names: said so)."""
    if not isinstance(results, list):
        raise ValueError(f"{source}: COCO results are a JSON list, got {type(results).__name__}")
    results = [_with_ids(r, "image_id", "category_id") for r in results]  # 1.0 read as 1, as the GT's
    needed = ["image_id", "category_id", "score"] + [_FIELDS[t] for t in iou_types
                                                     if _FIELDS[t] not in optional]
    missing = {}
    # where every scored field is optional (segm and keypoints of a file without bbox), a record must still
    # carry one of them: else it was accepted silently and scored nowhere
    fields = [_FIELDS[t] for t in iou_types] if all(_FIELDS[t] in optional for t in iou_types) else []
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise ValueError(f"{source}: result {i} is not an object")
        for k in needed:
            if k not in r:
                missing.setdefault(repr(k), []).append(i)
        if fields and not any(f in r for f in fields):  # only ids and a score: nothing of it can be scored
            missing.setdefault(" or ".join(repr(f) for f in fields), []).append(i)
    if missing:
        parts = [f"{k} missing in results {_listing(v)}" for k, v in missing.items()]
        raise ValueError(f"{source}: " + "; ".join(parts))
    bad_ids = [i for i, r in enumerate(results) if not (_is_id(r["image_id"]) and _is_id(r["category_id"]))]
    if bad_ids:
        first = results[bad_ids[0]]
        raise ValueError(
            f"{source}: results {_listing(bad_ids)} have an image_id or category_id that is not an "
            f"integer or a string (result {bad_ids[0]}: image_id {first['image_id']!r:.30}, "
            f"category_id {first['category_id']!r:.30})"
        )
    used_cats = {r["category_id"] for r in results}
    bad_cats = used_cats - set(coco_gt.getCatIds())
    if bad_cats:
        gt_order = [c["id"] for c in coco_gt.dataset["categories"]]
        raise ValueError(
            f"{source}: category ids {_listing(bad_cats)} are not in the ground truth "
            f"(which has {_listing(coco_gt.getCatIds())})"
            + (_string_ids_hint(bad_cats, coco_gt.getCatIds(), "category_id", map_option=True)
               or zero_based_hint(used_cats, gt_order))
        )
    bad_images = {r["image_id"] for r in results} - set(coco_gt.getImgIds())
    if bad_images:
        # file names of its images among them are not wrong (match_image_ids matches names only when they
        # outnumber the ids): naming them too said "a.jpg is not a file name of its images" of one that is
        name_keys = image_name_keys(coco_gt)
        if image_ids == "id":  # only ids were tried: "neither as ids nor as file names" said what was not
            names = sorted((i for i in bad_images if i in name_keys), key=_order)
            are = "is a file name" if len(names) == 1 else "are file names"
            raise ValueError(f"{source}: image ids {_listing(bad_images)} are not ids of the ground truth's "
                             f"images (read as ids only: --results-image-ids id)"
                             + (f"; {_listing(names)} {are} of its images: --results-image-ids file-name (or "
                                f"auto) matches them by name" if names else "")
                             + _string_ids_hint(bad_images, coco_gt.getImgIds(), "image_id"))
        unmatched = {i for i in bad_images if i not in name_keys} or bad_images
        names = len(bad_images) - len(unmatched)
        raise ValueError(f"{source}: image ids {_listing(unmatched)} are not in the ground truth (neither "
                         f"as ids nor as file names of its images)" +
                         (f"; {names} other value(s) are file names of its images: matched by file name "
                          f"only when more values are file names than ids" if names else "")
                         + _string_ids_hint(unmatched, coco_gt.getImgIds(), "image_id"))
    kept = {t: [] for t in iou_types}
    problems, every = [], []
    for i, r in enumerate(results):
        found = _result_problems(r, iou_types, coco_gt)
        if found:
            text = "; ".join(dict.fromkeys(found.values()))  # one score problem, said once
            only = by_type and len(found) < len(iou_types)  # else it is left out of every AP
            out_of = f" (left out of {', '.join(found)} AP only)" if only else ""
            problems.append(f"result {i} (image_id {r['image_id']!r}): {text}{out_of}")
        # only a mask kept for segm AP is made plain: one found bad (a null or non-numeric RLE size, a bare
        # number among the polygons) is what _plain_segmentation cannot read (a traceback, not a warning)
        record = r if "segm" in found else _plain_segmentation(r)
        for t in iou_types:
            if t not in found and _FIELDS[t] in r:
                kept[t].append(record)
        if not found:
            every.append(record)
    if problems:
        warnings.warn(
            f"{source}: {len(problems)} of {len(results)} results left out of the evaluation (scored as "
            f"if absent): " + "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else ""),
            stacklevel=3,
        )
    return kept if by_type else every


def _per_category(coco_eval, coco_gt, *, iou: Optional[float] = None) -> dict:
    """AP (percent) per category name, from the precision array (IoU x recall x category x area x dets):
    averaged over COCO's ten IoU thresholds, or at the one threshold ``iou`` (0.5: AP50)."""
    precision = coco_eval.eval["precision"]  # (T, R, K, A, M)
    if iou is not None:
        t = int(np.argmin(np.abs(np.asarray(coco_eval.params.iouThrs) - iou)))
        precision = precision[t:t + 1]  # (1, R, K, A, M)
    names = category_names(coco_gt.dataset)
    out = {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        out[names[cat_id]] = float(np.mean(p) * 100) if p.size else float("nan")
    return out


def _unscored_metrics(iou_type: str, coco_gt) -> dict:
    """Every AP of ``iou_type`` (the table's and each category's) NaN: nothing can be scored. (No
    detections are scored by COCOeval, ``_run_cocoeval``: 0 is not every AP's value then.)"""
    value = float("nan")
    metrics = {m: value for m in METRIC_NAMES if m in _STAT_INDEX[iou_type]}
    metrics["per_category"] = {name: value for name in category_names(coco_gt.dataset).values()}
    metrics["per_category_AP50"] = dict(metrics["per_category"])
    return metrics


def _oks_sigmas(coco_gt, num_keypoints: int, given: Optional[Sequence[float]]) -> tuple:
    """The OKS sigmas: ``given`` (checked), else by the ground truth's keypoint names
    (``data.keypoints.keypoint_sigmas``: COCO's for COCO names, the documented default for others)."""
    names = next((c["keypoints"] for c in coco_gt.dataset["categories"] if c.get("keypoints")), None)
    if names is not None and len(names) != num_keypoints:
        raise ValueError(f"the results have {num_keypoints} keypoints per detection, the ground truth's "
                         f"category names {len(names)}")
    return sigmas_for_keypoints(names, num_keypoints, tuple(given or ()))


def box_only_as_crowd(data: dict) -> dict:
    """A validated ground truth (``load_ground_truth(...).dataset``) as segm scores it: box-only objects
    made crowd regions of their box (``_segm_ground_truth``); for the segm error analysis too."""
    return dict(data, annotations=[dict(a, iscrowd=1) if a.get("_box_only") else a
                                   for a in data["annotations"]])


def _segm_ground_truth(coco_gt, img_ids: Optional[list]) -> tuple:
    """(the ground truth segm AP is scored against, box-only objects it ignores, objects with a mask),
    counted over the images ``img_ids`` (None: all).

    A box-only object (segmentation empty: a rectangle) has no known mask, so segm AP must neither
    reward nor punish a detection on it; scored against its box as a filled mask, a perfect mask
    detection of a round object was a miss plus a false positive (CVAT rectangles: segm AP 44 instead of
    66). It is made a crowd region (iscrowd 1) of its box for segm only: COCOeval matches a detection to
    such a region by the share of the detection inside it and counts the match as neither true nor false
    positive. (An ``ignore`` field would do nothing: COCOeval's _prepare overwrites it with iscrowd.)"""
    anns = coco_gt.dataset["annotations"]
    scored = None if img_ids is None else set(img_ids)
    counted = [a for a in anns if not a["iscrowd"] and (scored is None or a["image_id"] in scored)]
    box_only = sum(1 for a in counted if a.get("_box_only"))
    if not box_only:
        return coco_gt, 0, len(counted)
    segm_gt = COCO()
    segm_gt.dataset = box_only_as_crowd(coco_gt.dataset)
    with _quiet():
        segm_gt.createIndex()
    return segm_gt, box_only, len(counted) - box_only


def _run_segm(coco_gt, results: list, img_ids: Optional[list]) -> tuple:
    """(metrics, summary text) of segm AP, box-only ground truth ignored (``_segm_ground_truth``); the
    count in ``metrics["ignored_box_only"]``, said in one warning. No object with a mask: every AP NaN
    (shown as '-') and ``metrics["not_reported"]`` says why; a box-only dataset has no mask to score."""
    segm_gt, box_only, with_mask = _segm_ground_truth(coco_gt, img_ids)
    if box_only and not with_mask:
        why = (f"segm AP not reported: none of the {box_only} ground-truth objects has a mask (all have a "
               f"box and an empty segmentation); bbox AP scores them")
        warnings.warn(why, stacklevel=3)
        metrics = _unscored_metrics("segm", coco_gt)
        return dict(metrics, ignored_box_only=box_only, not_reported=why), why + "\n"
    if box_only:
        warnings.warn(f"{box_only} ground-truth objects have a box and no mask (segmentation empty, as "
                      f"CVAT, Label Studio and Roboflow export rectangles): segm AP ignores detections on "
                      f"them (neither true nor false positives); bbox AP scores them as objects",
                      stacklevel=3)
    metrics, text = _run_cocoeval(segm_gt, results, "segm", img_ids)
    if box_only:
        metrics["ignored_box_only"] = box_only
    return metrics, text


def _run_cocoeval(coco_gt, results: list, iou_type: str, img_ids: Optional[list],
                  keypoint_sigmas: Optional[Sequence[float]] = None, gt_source: str = "the ground truth"):
    """(metrics dict, summary text) for one IoU type. No detections (an empty file, or every record
    left out) are scored by COCOeval as any others: AP 0 where there are objects to miss, NaN ('-',
    null) where there are none, as for a size range without objects (a fixed 0 put APl 0.00 in the
    table and metrics.json for a ground truth without large objects)."""
    if iou_type == "keypoints":
        unlabelled = _no_labelled_keypoints(coco_gt, img_ids, gt_source)
        if unlabelled:  # COCOeval ignores every such object: its -1s read as a row scored without a word
            warnings.warn(f"{unlabelled}; its row is '-' (null in metrics.json, where 'not_scored' says why)",
                          stacklevel=3)
            return dict(_unscored_metrics(iou_type, coco_gt), not_scored=unlabelled), unlabelled + "\n"
    if iou_type == "segm":
        # loadRes derives the box from the segmentation; keep our box out of its way. (Its area too: the
        # mask's, so the size ranges of segm AP are by mask area, as detectron2 scores them, where a plain
        # loadRes of records that keep their bbox takes the box's area.)
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    if iou_type == "keypoints":  # a class without keypoints has none in its records (loadRes reads each)
        results = [r for r in results if "keypoints" in r]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_dt = _detections(coco_gt, results)
        coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
        if img_ids is not None:
            coco_eval.params.imgIds = sorted(img_ids)
        if iou_type == "keypoints":
            # keypoint AP is over the categories that have keypoints (a dataset may also hold objects
            # without, whose ground truth has no keypoints to compare)
            with_names = [c for c in coco_gt.dataset["categories"] if c.get("keypoints")]
            sizes = {c["name"] if "name" in c else c["id"]: len(c["keypoints"]) for c in with_names}
            if len(set(sizes.values())) > 1:  # COCOeval has one sigma per keypoint for all categories
                raise ValueError(f"{gt_source}: categories with different keypoint sets {sizes} (name: "
                                 f"keypoints) cannot be scored together (COCOeval has one set of OKS "
                                 f"sigmas); evaluate each set against a ground truth of its own")
            if with_names:
                coco_eval.params.catIds = sorted(c["id"] for c in with_names)
            names = next((c["keypoints"] for c in with_names), [])
            used = _oks_sigmas(coco_gt, len(results[0]["keypoints"]) // 3 if results else len(names),
                               keypoint_sigmas)
            coco_eval.params.kpt_oks_sigmas = np.asarray(used, dtype=np.float64)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    stats = coco_eval.stats
    metrics = {}
    for name in METRIC_NAMES:
        if name in _STAT_INDEX[iou_type]:
            v = float(stats[_STAT_INDEX[iou_type][name]])
            metrics[name] = v * 100 if v >= 0 else float("nan")  # -1: no ground truth in that range
    metrics["per_category"] = _per_category(coco_eval, coco_gt)
    metrics["per_category_AP50"] = _per_category(coco_eval, coco_gt, iou=0.5)
    # COCOeval's recall figures and what they are over (as detectron2 and MMDetection logs print them): a
    # dict, which readers of the AP numbers (and solver.best_metric) skip
    recall = stats[len(_STAT_INDEX[iou_type]):len(_STAT_INDEX[iou_type]) + len(_AR_NAMES[iou_type])]
    metrics["AR"] = {name: float(v) * 100 if v >= 0 else float("nan")
                     for name, v in zip(_AR_NAMES[iou_type], recall)}
    metrics["coco_params"] = {
        "max_dets": [int(m) for m in coco_eval.params.maxDets],
        "area_ranges": {label: [float(a) for a in rng]
                        for label, rng in zip(coco_eval.params.areaRngLbl, coco_eval.params.areaRng)}}
    if iou_type == "keypoints":  # {keypoint name: sigma}: a dict, which readers of the AP numbers skip
        names = next((c["keypoints"] for c in coco_gt.dataset["categories"] if c.get("keypoints")), None)
        names = names or [f"keypoint_{k}" for k in range(len(used))]
        metrics["oks_sigmas"] = {str(n): float(v) for n, v in zip(names, used)}
    return metrics, buf.getvalue()


def _no_labelled_keypoints(coco_gt, img_ids: Optional[list], gt_source: str) -> str:
    """Why keypoint AP is undefined on ``coco_gt`` (over ``img_ids``, None: all), or "": no object (not
    crowd) of a category with keypoints has a labelled one (``num_keypoints`` 0 everywhere: COCOeval
    ignores such objects, so there is nothing to score a detection against)."""
    with_names = {c["id"] for c in coco_gt.dataset["categories"] if c.get("keypoints")}
    scored = None if img_ids is None else set(img_ids)
    objects = [a for a in coco_gt.dataset["annotations"] if not a.get("iscrowd")
               and (not with_names or a["category_id"] in with_names)
               and (scored is None or a["image_id"] in scored)]
    if any(a.get("num_keypoints") for a in objects):
        return ""
    if not objects:  # "num_keypoints 0 for all 0" read as a count of objects that are not there
        return (f"{gt_source}: keypoint AP not defined: no ground-truth object of a keypoint category "
                f"({len(with_names)} with keypoints; the objects are all of categories without keypoints, "
                f"which keypoint AP does not score)")
    other = [a for a in objects if a.get("_other_count")]
    if other:  # the file's keypoints are all of another set: say that, not only "none labelled"
        names = {a["category_id"]: len(coco_gt.cats[a["category_id"]]["keypoints"]) for a in other}
        share = f"all {len(other)}" if len(other) == len(objects) else f"{len(other)} of the {len(objects)}"
        if len(set(names.values())) == 1:
            than = f"the categories' {next(iter(names.values()))} names"
        else:  # each against its own category's (the first one's count was said of them all)
            category_names = {c: coco_gt.cats[c].get("name", c) for c in names}
            than = f"their category's ({_names_per_category(names, category_names)})"
        return (f"{gt_source}: keypoint AP not defined: no ground-truth object has a labelled keypoint "
                f"(num_keypoints 0 for all {len(objects)}, objects COCOeval ignores; {share} hold keypoints "
                f"of another count than {than}, read as unlabelled)")
    return (f"{gt_source}: keypoint AP not defined: no ground-truth object has a labelled keypoint "
            f"(num_keypoints 0 for all {len(objects)}, objects COCOeval ignores)")


def _detections(coco_gt, results: list) -> COCO:
    """``results`` as pycocotools' detections of ``coco_gt`` (``loadRes``, on a copy: it writes into
    them); none at all as an empty set of them, which loadRes cannot make (it reads ``results[0]``)."""
    if results:
        return coco_gt.loadRes(copy.deepcopy(results))
    coco_dt = COCO()
    coco_dt.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": [],
                       "categories": copy.deepcopy(coco_gt.dataset["categories"])}
    coco_dt.createIndex()
    return coco_dt


def _without_labels(det: dict, labels: frozenset) -> dict:
    """``det`` without the detections whose label is in ``labels``."""
    import torch

    keep = [i for i, label in enumerate(det["labels"].tolist()) if int(label) not in labels]
    out = dict(det)
    for k in _PER_DETECTION:
        v = det.get(k)
        if v is not None:
            rows = torch.as_tensor(keep, dtype=torch.long)
            out[k] = [v[i] for i in keep] if isinstance(v, list) else v[rows]
    return out


class CocoEvaluator:
    """Accumulate detections per image, then compute COCO AP.

    Args:
        gt: ground truth: a COCO JSON path, a dict, or a pycocotools ``COCO``.
        iou_types: subset of ("bbox", "segm", "keypoints").
        label_to_category_id: label -> dataset category id (identity when None).
        class_names: names by label: each result's ``category_name`` (``results()``, eval's
            predictions.json), and the names of the ground truth's categories that have none.
        keypoint_sigmas: OKS sigmas, one per keypoint (None: by the ground truth's keypoint names,
            ``data.keypoints.keypoint_sigmas``: COCO's 17 for COCO's names, 0.0669 for other names).
        ignore_labels: labels whose detections are left out (the model's classes the ground truth does
            not have, e.g. a validation split converted without them: there is nothing to score them by).
        keypoint_order: for each of the ground truth's keypoints, the index of the model's keypoint of
            that name (the same set in another order); detections' keypoints are put in that order.
        keypoint_labels: the labels whose class owns the keypoint set (``Predictor.keypoint_labels``,
            None: every class): the others' results carry no ``keypoints``, as predict writes them.
    """

    def __init__(
        self,
        gt,
        *,
        iou_types: Sequence[str] = ("bbox", "segm"),
        label_to_category_id: Optional[dict] = None,
        class_names: Optional[Sequence[str]] = None,
        keypoint_sigmas: Optional[Sequence[float]] = None,
        ignore_labels: Sequence[int] = (),
        keypoint_order: Optional[Sequence[int]] = None,
        keypoint_labels: Optional[frozenset] = None,
    ):
        unknown = [t for t in iou_types if t not in IOU_TYPES]
        if unknown or not iou_types:
            raise ValueError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {tuple(iou_types)}")
        self.coco_gt = load_ground_truth(gt)
        self.iou_types = tuple(iou_types)
        self.keypoint_sigmas = tuple(keypoint_sigmas) if keypoint_sigmas else None
        self.label_to_category_id = label_to_category_id
        self.class_names = list(class_names) if class_names else None
        self.ignore_labels = frozenset(int(label) for label in ignore_labels)
        self.keypoint_order = list(keypoint_order) if keypoint_order is not None else None
        self.keypoint_labels = keypoint_labels
        if class_names and label_to_category_id:
            for label, cid in label_to_category_id.items():
                cat = self.coco_gt.cats.get(int(cid))
                if cat is not None and "name" not in cat and int(label) < len(class_names):
                    cat["name"] = class_names[int(label)]
        self._results: list = []
        self._image_ids: set = set()
        self.summaries: dict = {}

    def reset(self) -> None:
        self._results = []
        self._image_ids = set()

    def process(self, image_id: int, det: dict) -> None:
        """Add one image's detections (original coordinates; ``masks`` (D, H, W) bool, or ``masks_rle``
        (D COCO RLE dicts, ``Predictor(masks="rle")``), for segm)."""
        if int(image_id) not in self.coco_gt.imgs:
            raise ValueError(f"image id {image_id} is not in the ground truth")
        n = int(det["boxes"].shape[0])
        if "segm" in self.iou_types and n and det.get("masks") is None and det.get("masks_rle") is None:
            raise ValueError(f"image {image_id}: segm evaluation needs 'masks' (D, H, W) in the detections")
        if "keypoints" in self.iou_types and n and det.get("keypoints") is None:
            raise ValueError(f"image {image_id}: keypoint evaluation needs 'keypoints' in the detections")
        if self.ignore_labels and n:
            det = _without_labels(det, self.ignore_labels)
            n = int(det["boxes"].shape[0])
        keep = {k: det[k] for k in ("boxes", "scores", "labels") if k in det}
        if "segm" in self.iou_types:
            keep.update({k: det[k] for k in ("masks", "masks_rle") if det.get(k) is not None})
        if "keypoints" in self.iou_types and det.get("keypoints") is not None:
            keep["keypoints"] = det["keypoints"]  # (D, P, 3)
            if det.get("keypoint_scores") is not None:
                keep["keypoint_scores"] = det["keypoint_scores"]  # (D, P)
            if self.keypoint_order is not None:  # the model's order -> the ground truth's
                for k in ("keypoints", "keypoint_scores"):
                    if k in keep:
                        keep[k] = keep[k][:, self.keypoint_order]
        self._results.extend(
            detections_to_coco_results(
                keep, image_id=int(image_id), label_to_category_id=self.label_to_category_id,
                class_names=self.class_names, keypoint_labels=self.keypoint_labels,
            )
        )
        self._image_ids.add(int(image_id))

    def results(self) -> list:
        """The COCO result dicts collected so far."""
        return list(self._results)

    def image_ids(self) -> list:
        """The ids of the images given so far (those the AP is over), sorted."""
        return sorted(self._image_ids)

    def add_results(self, results: list, image_ids) -> None:
        """Add COCO result dicts made elsewhere (another process's ``results()``) and the ids of the
        images they are of (``image_ids()``; an image without detections counts in the AP too)."""
        self._results.extend(results)
        self._image_ids.update(int(i) for i in image_ids)

    def evaluate(self) -> dict:
        """{iou_type: {"AP", "AP50", "AP75", "APs", "APm", "APl", "per_category": {name: AP},
        "per_category_AP50": {name: AP50}}}, percent."""
        if not self._image_ids:  # COCOeval would score every image of the ground truth: all misses, AP 0
            raise ValueError("no image was given to the evaluator (process): an AP over none is undefined")
        # the classes without keypoints (keypoint_labels) have none in their records: no gap in them
        optional = ("keypoints",) if self.keypoint_labels is not None else ()
        results = _validate_results(self._results, self.coco_gt, self.iou_types, "detections",
                                    optional=optional)
        img_ids = sorted(self._image_ids)
        out = {}
        for iou_type in self.iou_types:
            out[iou_type], self.summaries[iou_type] = (
                _run_segm(self.coco_gt, results, img_ids) if iou_type == "segm" else
                _run_cocoeval(self.coco_gt, results, iou_type, img_ids, self.keypoint_sigmas))
        return out


def evaluate_results_file(
    gt_json: Union[str, os.PathLike],
    results_json: Union[str, os.PathLike, Sequence],
    *,
    iou_types: Optional[Sequence[str]] = None,
    keypoint_sigmas: Optional[Sequence[float]] = None,
    category_offset: int = 0,
    category_map: Optional[dict] = None,
    return_records_by_type: bool = False,
    crowd_as_objects: bool = False,
    gt_source: str = "the ground truth",
    image_ids: str = "auto",
):
    """COCO AP of results against a ground-truth JSON (all its images). ``results_json``: a path, a
    comma-separated list or a list of paths (MMDetection's ``.bbox.json`` and ``.segm.json``, or their
    prefix; its ``tools/test.py --out`` pickle: ``engine/mmdet_results.py``), read as
    ``engine/results_file.py`` says, each interpretation in a warning. ``iou_types``
    default: those the results support (bbox when every result has a box; segm / keypoints when any
    result has a segmentation / keypoints: scored on those that have one, the rest said in a warning).
    ``category_offset`` is added to every results ``category_id``; ``category_map`` ({results id:
    ground-truth id}) maps them instead (0-based class indices). ``crowd_as_objects``:
    as ``load_ground_truth`` (a path or dict ``gt_json``); ``gt_source``: its file's name in messages
    when ``gt_json`` is not a path. ``image_ids``: how a results ``image_id`` names an image, "auto",
    "id" or "file-name" (``results_file.match_image_ids``; ``eval --results-image-ids``). With
    ``return_records_by_type``: (metrics, records, {iou type: the records scored for it}, [the results
    files read, as ``resolve_results_paths`` found them]), for other scorers of the same file (records:
    those that passed validation, the ones scored for segm when there are several files), an analysis of
    each kind on the very records its AP came from and the record of what was scored. Box-only
    ground truth is an ignored region of segm AP (``_run_segm``)."""
    gt_source = str(gt_json) if isinstance(gt_json, (str, os.PathLike)) else gt_source
    coco_gt = load_ground_truth(gt_json, crowd_as_objects=crowd_as_objects, source=gt_source)  # named errors
    from maskrcnn.engine.mmdet_results import is_pickle, read_mmdet_results

    paths = resolve_results_paths(results_json)
    files = [(str(p), read_mmdet_results(p, coco_gt) if is_pickle(p) else read_results_file(p))
             for p in paths]
    plan = plan_iou_types(files, iou_types)
    if iou_types is None and len(files) == 1 and not files[0][1]:
        # an empty file holds no kind of result, so it misses every kind the ground truth has (only the
        # bbox row was shown, segm gone without a word although the ground truth has masks)
        plan = {t: 0 for t in _ground_truth_types(coco_gt)}
    out, scored = {}, {}
    for index, (source, results) in enumerate(files):
        types = [t for t in IOU_TYPES if plan.get(t) == index]
        results = [_with_ids(r, "image_id", "category_id") for r in results]  # 1.0 as 1, as CocoDataset
        results = shift_categories(results, source, offset=category_offset, mapping=category_map)
        if not category_offset and not category_map:  # (those say which is which themselves)
            results = match_category_names(results, coco_gt, source, gt_source)
        results = match_image_ids(results, coco_gt, source, read_as=image_ids)
        results = wrap_flat_polygons(results, source)  # as the ground truth's reader does (VIA 3, by hand)
        partial = partial_fields(results, types, source, coco_gt=coco_gt)  # on the ground truth's ids
        by_type = _validate_results(results, coco_gt, types, source, optional=partial, by_type=True,
                                    image_ids=image_ids)
        main = by_type[types[0]]  # every record of the file but bad ones (types[0] has no partial field)
        if not category_offset and not category_map:
            zero_based_suspicion(main, coco_gt, source)
        if "segm" in types:
            by_type["segm"] = compress_segmentations(by_type["segm"], coco_gt, source)
        note_scoring_conventions(main, coco_gt, source, by_type=by_type)
        for iou_type in types:
            records = by_type[iou_type]
            if iou_type == "keypoints" and results and not records:
                # every record was left out (said above): COCOeval's 0 read as a scored AP of 0
                warnings.warn(f"{source}: keypoint AP not scored: every result with keypoints was left out "
                              f"(see above); its row is '-' (null in metrics.json)", stacklevel=2)
                out[iou_type], scored[iou_type] = _not_scored(), records
                continue
            out[iou_type], _ = (_run_segm(coco_gt, records, None) if iou_type == "segm" else
                                _run_cocoeval(coco_gt, records, iou_type, None, keypoint_sigmas, gt_source))
            scored[iou_type] = records
    out = {t: out[t] for t in IOU_TYPES if t in out}
    if return_records_by_type:
        records = scored.get("segm", scored[next(iter(out))])
        return out, records, {t: scored[t] for t in out}, paths
    return out


def _not_scored() -> dict:
    """The metrics of a kind no record could be scored for: every AP undefined (NaN: '-' in the table,
    null in metrics.json), not COCOeval's 0 of an empty set of detections."""
    return {**{name: float("nan") for name in METRIC_NAMES}, "per_category": {}, "per_category_AP50": {},
            "not_scored": "every result was left out"}


def _ground_truth_types(coco_gt) -> list:
    """The IoU types ``coco_gt`` (validated) has objects of: bbox; segm when an object has a mask (not
    only a box); keypoints when one has a labelled keypoint."""
    anns = coco_gt.dataset["annotations"]
    return (["bbox"] + (["segm"] if any(not a.get("_box_only") for a in anns) else [])
            + (["keypoints"] if any(a.get("num_keypoints") for a in anns) else []))


def format_metrics_table(metrics: dict) -> str:
    """A plain text table: one row per IoU type, AP columns (percent, 2 decimals)."""
    header = f"{'':10s}" + "".join(f"{m:>8s}" for m in METRIC_NAMES)
    lines = [header]
    for iou_type in IOU_TYPES:
        if iou_type not in metrics:
            continue
        row = metrics[iou_type]
        cells = []
        for m in METRIC_NAMES:
            v = row.get(m)
            cells.append(
                f"{'-':>8s}" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:8.2f}"
            )
        lines.append(f"{iou_type:10s}" + "".join(cells))
    return "\n".join(lines)
