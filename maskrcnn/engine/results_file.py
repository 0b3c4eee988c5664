"""Results files as other libraries write them -> the records COCOeval scores, saying how each was read.

What is read, and how (each interpretation is said in a warning naming the file):

- COCO results as detectron2 (``coco_instances_results.json``), torchvision's reference scripts, this
  library and pycocotools' ``loadRes`` take them: ``image_id``, ``category_id`` (the ground truth's
  ids), ``score``, ``bbox`` [x, y, w, h], ``segmentation`` (RLE with ``counts`` a string).
- Files where some records (not all) have a ``segmentation`` (``keypoints``): segm (keypoint) AP is
  scored on those records, the others absent from it, said in one warning.
- Files without ``bbox`` whose records all have a ``segmentation`` (torchvision's segmentation
  results): segm AP only; bbox AP is not made up from the masks.
- MMDetection's ``format_only`` output, one file per kind: ``PREFIX.bbox.json`` and
  ``PREFIX.segm.json`` (v2 ``jsonfile_prefix``, v3 ``outfile_prefix``). Given both (or PREFIX alone),
  bbox AP is scored on the bbox file and segm AP on the segm file, as MMDetection scores them (the
  segm file's records carry a box and a mask score of their own).
- MMDetection's ``tools/test.py --out results.pkl`` (3.x and 2.x): read without running code and
  turned into these records by ``engine/mmdet_results.py``.
- Ultralytics' ``predictions.json`` (``val(save_json=True)``): its ``image_id`` is the image file's stem
  (an integer when the stem is all digits). ``image_id`` is read both as an id of the ground truth's
  images ("7" as 7 too) and as the file name, base name or stem of one of them, and the reading under
  which every value names an image is taken; both fitting other images, file names when the detections'
  boxes clearly agree with them (``match_image_ids``), else ids, with a note naming the other option.
- ``maskrcnn predict``'s ``predictions.json``: its ``image_id`` numbers the images 1..N in predict's own
  order, not the ground truth's, so records that carry a ``file_name`` are matched by it
  (``match_file_names``: the ground truth's file name as the end of the path, else the one image with
  that base name), said in one line; refused when that cannot be done (a name of no image or of two, two
  names of one image, only some records with one).
- Records with a ``category_name`` (``maskrcnn predict``'s and ``eval --output``'s predictions.json: the
  class as the model names it): read against the ground truth's category names (``match_category_names``);
  a ground truth numbering the classes otherwise gets the ids by name, said in one line (scored by id,
  each 'circle' was a 'square' without a word); refused naming the clash when the names cannot say which
  is which. Not read with ``--category-offset`` / ``--category-map``; files without names keep their ids.
- ``segmentation`` as polygons or as uncompressed RLE (``counts`` a list): encoded as compressed RLE at
  the ground-truth image's size (pycocotools' ``loadRes`` takes only compressed RLE for results).

Scored as pycocotools scores them, and said so: an empty file (every AP 0, NaN where the ground truth has
no object to miss, as for a size range without any; every kind the ground truth has), images of the
ground truth with (non-crowd) objects but without any detection (their objects are misses: the AP is over
every ground-truth image; the first named, per kind for images whose detections were left out of one
kind only; and said to include the images ``eval --weights`` skipped when
its own predictions.json is scored again: those lower the AP it reported), records that repeat
another exactly (the repeats are false positives) and more
than 100 detections of one category in one image (COCOeval's ``maxDets``: only the 100 highest-scoring
count). Scores are only ranked, so logits or scores above 1 are scored as they are; scores outside [0, 1]
are said (score thresholds such as ``--analysis-score`` read them as probabilities).

Refused by ``evaluator._validate_results`` (one line naming the file, the records and the field): missing
fields, ids that are not integers or strings, categories not in the ground truth (with a hint when they
look 0-based, as older Ultralytics writes them for datasets other than COCO: pass ``--category-offset 1``
when that maps every id into the ground truth, else a ``--category-map``; or when they are strings of its
integer ids, "1" for 1), images matched neither by id nor by file name, and two files holding the same
kind of results. Ids that are all the ground truth's but would all still be after +1, while its largest
id is never predicted, may be 0-based ids whose 0 was never predicted: said in a warning.

Category ids are moved before anything is checked when asked (``shift_categories``): ``--category-offset
N`` adds N to every ``category_id``; ``--category-map FILE.json`` (``{"results id": ground-truth id}``)
maps each one (a string id "1" by the map's "1"), an id the map lacks refused.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pycocotools.mask as mask_utils

from maskrcnn.data.coco_exports import flat_polygon
from maskrcnn.data.json_values import read_json_file

__all__ = [
    "compress_segmentations", "image_name_keys", "iou_types_of", "match_category_names", "match_file_names",
    "IMAGE_ID_READINGS", "match_image_ids",
    "note_scoring_conventions", "partial_fields", "plan_iou_types", "read_category_map",
    "read_results_file", "resolve_results_paths", "shift_categories", "wrap_flat_polygons",
    "zero_based_hint", "zero_based_suspicion",
]

# COCOeval's largest maxDets: detections beyond it (per image and category) are never looked at
MAX_DETS = 100
_KINDS = ("bbox", "segm", "keypoints")  # MMDetection's PREFIX.{kind}.json


def _note(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def resolve_results_paths(given: Union[str, os.PathLike, Sequence]) -> list:
    """The results files named by ``given``: a path, a comma-separated list of paths, or a list of them.
    A path that is not a file but is MMDetection's prefix (``PREFIX.bbox.json`` / ``PREFIX.segm.json``
    exist) stands for those files."""
    if isinstance(given, dict):  # one record: read as a path, it failed as "image_id: no such file"
        raise TypeError("results: a path, a comma-separated list of paths or a list of paths, got a dict (a "
                        "results record?): to score records, write them to a JSON file and pass its path")
    items = [given] if isinstance(given, (str, os.PathLike)) else list(given)
    odd = next((item for item in items if not isinstance(item, (str, os.PathLike))), None)
    if odd is not None:  # the records themselves (a list of dicts) failed on os.fspath, naming neither
        raise TypeError(f"results: a path, a comma-separated list of paths or a list of paths, got a list "
                        f"holding a {type(odd).__name__}" + (" (a results record?): to score records, "
                        "write them to a JSON file and pass its path" if isinstance(odd, dict) else ""))
    paths = []
    for item in items:
        parts = [p for p in str(item).split(",") if p] if not Path(item).is_file() else [str(item)]
        for part in parts:
            path = Path(part)
            if path.is_file():
                paths.append(path)
                continue
            found = [Path(f"{part}.{kind}.json") for kind in _KINDS if Path(f"{part}.{kind}.json").is_file()]
            if not found:
                raise FileNotFoundError(f"{path}: no such results file")
            _note(f"{path}: read as MMDetection's prefix: {', '.join(str(f) for f in found)}")
            paths.extend(found)
    if not paths:  # "" or [] named nothing: it went on to a StopIteration traceback
        raise ValueError("results: no results file named (an empty path or an empty list)")
    if len(set(paths)) != len(paths):
        raise ValueError(f"results file given twice: {', '.join(str(p) for p in paths)}")
    return paths


def read_results_file(path: Path) -> list:
    """The JSON list of a results file; ValueError naming the file for anything else."""
    try:
        results = read_json_file(path)  # a BOM is fine, UTF-16 too
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, a 5000-digit number, deep nesting
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(results, list):
        raise ValueError(f"{path}: COCO results are a JSON list, got {type(results).__name__}")
    return results


def _supported(results: list) -> tuple:
    """(the IoU types ``results`` supports, as ``iou_types_of`` says, how many records lack a bbox when
    bbox is not among them, else 0)."""
    def every(field):
        return bool(results) and all(isinstance(r, dict) and field in r for r in results)

    types = [t for t, field in (("segm", "segmentation"), ("keypoints", "keypoints"))
             if every(field) or _lacking(results, field)]
    if every("bbox") or not types:
        return ["bbox"] + types, 0
    return types, sum(1 for r in results if "bbox" not in r)


def _lacking(results: list, field: str) -> int:
    """How many records lack ``field`` when some (not all, not none) have it, else 0: a file joined from
    a mask model's and a box model's output, or a writer that leaves empty masks out. Its AP is scored
    on the records that have one (the others absent from it, said by ``partial_fields``): left out
    whole, segm AP disappeared without a word."""
    having = sum(1 for r in results if isinstance(r, dict) and field in r)
    return len(results) - having if 0 < having < len(results) else 0


def partial_fields(results: list, types: Sequence[str], source: str, *, coco_gt=None) -> tuple:
    """The fields of ``types`` (segmentation, keypoints) that some but not all of ``results`` have, each
    said in one warning: those types' AP is over the records that have the field. With ``coco_gt`` (and
    the results' category ids matched to it), keypoints are asked only of the records of a category whose
    objects have labelled keypoints: a model predicts none for its other classes (``ball`` beside a
    ``critter`` with a skeleton), which is no gap in the file."""
    partial = []
    for t, field in (("segm", "segmentation"), ("keypoints", "keypoints")):
        n = _lacking(results, field) if t in types else 0
        if not n:
            continue
        partial.append(field)
        asked, of = results, ""
        if t == "keypoints" and coco_gt is not None:
            owners = keypoint_owners(coco_gt)
            asked = [r for r in results if isinstance(r, dict) and r.get("category_id") in owners]
            n = sum(1 for r in asked if field not in r)
            of = " of a category with keypoints" if len(asked) < len(results) else ""
        if n:
            name = "keypoint" if t == "keypoints" else t
            _note(f"{source}: {n} of {len(asked)} results{of} have no {field}: {name} AP is scored on the "
                  f"{len(asked) - n} that have one (those without count as absent from it)")
    return tuple(partial)


def keypoint_owners(coco_gt) -> set:
    """The ground truth's category ids whose objects have labelled keypoints: the only categories a
    result needs ``keypoints`` in (a model predicts none for its other classes)."""
    return {a["category_id"] for a in coco_gt.dataset.get("annotations", []) if _labels_keypoints(a)}


def _labels_keypoints(annotation: dict) -> bool:
    """Whether a ground-truth object has a labelled keypoint (its ``num_keypoints``, or a visibility > 0
    where a writer left the count out)."""
    from maskrcnn.data.coco import _labels_keypoints as labels_a_point  # the loader's rule: finite v > 0

    return bool(annotation.get("num_keypoints")) or labels_a_point(annotation.get("keypoints"))


def _no_bbox_note(source: str, results: list, types: list, without: int) -> None:
    _note(f"{source}: {without} of {len(results)} results have no bbox (as torchvision's segmentation "
          f"results): bbox AP is not scored, only {', '.join(types)}")


def iou_types_of(results: list, source: str) -> list:
    """The IoU types a results list supports: segm / keypoints when any record has the field (scored
    on those that have it, ``partial_fields``); bbox when every record has one, or when nothing else
    is there (so that a missing bbox is named)."""
    types, without = _supported(results)
    if without:
        _no_bbox_note(source, results, types, without)
    return types


def plan_iou_types(files: list, wanted=None) -> dict:
    """{iou_type: index of the file that is scored for it} for ``files`` [(source, results)]. One file
    serves every type it supports; of several, a type goes to the one file holding it, bbox to the file
    holding nothing else (MMDetection's ``.bbox.json`` beside its ``.segm.json``). A file without boxes
    is said to leave bbox AP unscored only when no other file gives it (MMDetection's ``.segm.json``
    holds none: its pair's ``.bbox.json`` does)."""
    found = [_supported(results) for _, results in files]
    supported = [types for types, _ in found]
    if len(files) == 1:
        if found[0][1]:
            _no_bbox_note(files[0][0], files[0][1], *found[0])
        types = supported[0] if wanted is None else list(wanted)
        return {t: 0 for t in types}
    plan = {}
    for t in ("segm", "keypoints", "bbox"):  # bbox last: the segm files hold boxes too
        having = [i for i, s in enumerate(supported) if t in s]
        if t == "bbox" and len(having) > 1:  # a segm file's boxes give way to a file of boxes alone
            having = [i for i in having if supported[i] == ["bbox"]] or having
        if len(having) > 1:
            raise ValueError(f"{' and '.join(files[i][0] for i in having)} all hold {t} results: give one "
                             f"file per kind (e.g. MMDetection's PREFIX.bbox.json and PREFIX.segm.json)")
        if having and (wanted is None or t in wanted):
            plan[t] = having[0]
    plan = {t: plan[t] for t in _KINDS if t in plan}
    idle = [files[i][0] for i in range(len(files)) if i not in plan.values()]
    if idle:
        raise ValueError(f"{', '.join(idle)}: nothing to score in it that another results file does not "
                         f"already give")
    if "bbox" not in plan:
        for (source, results), (types, without) in zip(files, found):
            if without:
                _no_bbox_note(source, results, types, without)
    return plan


# more digits than any 64-bit id has: such a string is a name, never read as a number (int() of 4300
# digits and more stopped on Python's own error, naming neither the file nor the field)
_ID_DIGITS = 20


def _id_digits(text: str) -> bool:
    """Whether ``text`` spells a whole number an id can be (an optional "-", then at most 20 digits)."""
    digits = text.strip().lstrip("-")
    return digits.isdecimal() and len(digits) <= _ID_DIGITS


def _refuse_long_digits(values: set, coco_gt, source: str, read_as: str) -> None:
    """ValueError naming the file and the field for an ``image_id`` string of more than 20 digits that is
    no file name of the ground truth's images: no id has that many, and reading it as a number stopped
    on Python's int() limit (4300 digits), naming neither. Shown by its length."""
    long = sorted(v for v in values if isinstance(v, str) and v.strip().lstrip("-").isdecimal()
                  and not _id_digits(v))
    if not long:
        return
    names = image_name_keys(coco_gt) if read_as != "id" else set()
    unnamed = [v for v in long if v not in names]
    if unnamed:
        v = unnamed[0].strip()
        raise ValueError(f"{source}: image_id {v[:12]!r}... (a string of {len(v.lstrip('-'))} digits) is "
                         f"not an image id (those have at most {_ID_DIGITS} digits)"
                         + (" nor a file name of the ground truth's images" if read_as != "id" else "")
                         + (f" ({len(unnamed)} such values)" if len(unnamed) > 1 else ""))


def _name_keys(file_name: str) -> set:
    """The ways a results file names an image: its file name, base name and stem, and the stem as an
    integer when it is all digits (Ultralytics' ``image_id``)."""
    path = Path(str(file_name).replace("\\", "/"))
    keys = {str(file_name), path.name, path.stem}
    if _id_digits(path.stem):  # (a "².png" is isdigit, and no int)
        keys.add(int(path.stem))
    return keys


def image_name_keys(coco_gt) -> set:
    """Every value an ``image_id`` may name one of ``coco_gt``'s images by (``_name_keys``): for a refusal
    of unknown ids to leave out those that are file names (names mixed with unknown ids are refused as
    a whole, but only the unknown ones are wrong)."""
    return {key for img in coco_gt.dataset["images"] if img.get("file_name")
            for key in _name_keys(img["file_name"])}


IMAGE_ID_READINGS = ("auto", "id", "file-name")  # eval --results-image-ids

def match_image_ids(results: list, coco_gt, source: str, *, read_as: str = "auto") -> list:
    """``results`` with ``image_id`` the ground truth's ids. ``read_as`` "auto": records that carry a
    ``file_name`` (``maskrcnn predict``'s, which numbers images 1..N in its own order) are matched by it
    (``match_file_names``). Otherwise each ``image_id`` is read both ways, as an id of its images
    (``_id_reading``: "7" as 7 too) and as the file name, base name or stem of one of them, and the
    reading under which every value names an image is taken: said in one line when it is the file
    names, or when both are complete and name other images (then file names only when the detections'
    boxes clearly agree with them, ``_choose``; else ids, the note naming the other option). When
    neither is complete, values of both kinds are refused as mixed, a majority of file names is read so
    and the rest refused by name, and anything else is left for validation to refuse (naming the
    unknown ids). "id": every ``image_id`` is the
    ground truth's id (a record's ``file_name`` unread). "file-name": every record is matched by name
    (its ``file_name``, else its ``image_id``: Ultralytics writes the file stem), a ValueError naming
    those that name no one image."""
    if read_as not in IMAGE_ID_READINGS:
        raise ValueError(f"image ids are read as one of {', '.join(IMAGE_ID_READINGS)}, got {read_as!r}")
    if read_as != "id" and any(isinstance(r, dict) and "file_name" in r for r in results):
        return match_file_names(results, coco_gt, source)
    ids = [r.get("image_id") for r in results if isinstance(r, dict)]
    if not all(isinstance(i, (int, str)) and not isinstance(i, bool) for i in ids):
        return results  # validation names them
    values = set(ids)
    _refuse_long_digits(values, coco_gt, source, read_as)
    as_id = _id_reading(values, set(coco_gt.getImgIds()))
    if read_as == "id":
        return _read_as_ids(results, as_id, source)  # validation names ids the ground truth lacks
    by_name = _one_image_names(coco_gt)
    if read_as == "file-name":
        unnamed = values - by_name.keys()
        if unnamed:
            raise ValueError(f"{source}: --results-image-ids file-name: image_id {_shown(unnamed)} is not "
                             f"the file name, base name or stem of one image of the ground truth"
                             + (f" ({len(unnamed)} values in all)" if len(unnamed) > 1 else ""))
        return _read_as_names(results, by_name)
    as_name = {v: by_name[v] for v in values if v in by_name}
    if len(as_id) == len(values):
        differ = [v for v in values if v in as_name and as_name[v] != as_id[v]]
        if len(as_name) == len(values) and differ:  # two complete readings: the detections choose
            if _choose(results, as_id, as_name, coco_gt, source, differ) == "file-name":
                return _read_as_names(results, as_name)
        return _read_as_ids(results, as_id, source)
    if len(as_name) == len(values):
        example = next(v for v in ids if v in as_name)
        _note(f"{source}: image_id matched by file name ({len(values)} images; e.g. {example!r} -> image id "
              f"{as_name[example]!r}), as Ultralytics writes them")
        return _read_as_names(results, as_name)
    if as_id and as_name and values <= as_id.keys() | as_name.keys():  # ids and names mixed: one or the other
        named = sorted((v for v in values if v not in as_id), key=str)
        raise ValueError(f"{source}: image_id values mix the ground truth's ids and file names of its images "
                         f"({named[0]!r} is the file name of image {as_name[named[0]]!r}"
                         f"{f', {len(named)} names in all' if len(named) > 1 else ''}): use one or the other")
    if len(as_name) > len(as_id):  # most are file names: the others name no image
        unnamed = values - as_name.keys()
        ids_said = ("none is an id" if not as_id else
                    f"{len(as_id)} {'is an id' if len(as_id) == 1 else 'are ids'}")
        raise ValueError(f"{source}: image_id read as file names ({len(as_name)} of its {len(values)} values "
                         f"name one image of the ground truth by file name, base name or stem; {ids_said} of "
                         f"its images), but {_shown(unnamed)} names none of its images"
                         + (f" ({len(unnamed)} such values)" if len(unnamed) > 1 else "")
                         + ": predictions of images it does not list?")
    return _read_as_ids(results, as_id, source)  # validation names the unknown ids


def _id_reading(values: set, known: set) -> dict:
    """{value: the ground-truth image id it is} for the ``values`` that are one: itself, or quoted ("7"
    for 7, as a hand-made script or pandas writes it), or, for a ground truth of string ids, an integer
    whose digits are one (7 for "7"). Ids are never mixed there (``_validate_ground_truth``)."""
    numbers = {k for k in known if isinstance(k, int)}
    out = {}
    for v in values:
        if v in known:
            out[v] = v
        elif isinstance(v, str) and v.isascii() and _id_digits(v) and int(v) in numbers:
            out[v] = int(v)
        elif isinstance(v, int) and str(v) in known:
            out[v] = str(v)
    return out


def _one_image_names(coco_gt) -> dict:
    """{name key: image id} of every ``_name_keys`` value that names exactly one image."""
    by_name, clashes = {}, set()
    for img in coco_gt.dataset["images"]:
        if img.get("file_name"):
            for key in _name_keys(img["file_name"]):
                if by_name.setdefault(key, img["id"]) != img["id"]:
                    clashes.add(key)
    for key in clashes:  # two images answer to this name: it says nothing
        del by_name[key]
    return by_name


def _read_as_ids(results: list, as_id: dict, source: str) -> list:
    """``results`` with the image ids ``as_id`` reads otherwise than written ("7" as 7) replaced, said
    in one line; the others as they are (validation names those the ground truth lacks)."""
    quoted = {v: t for v, t in as_id.items() if type(v) is not type(t)}
    if not quoted:
        return results
    shown = ", ".join(f"{v!r} -> {t!r}" for v, t in sorted(quoted.items(), key=lambda p: str(p[0]))[:3])
    shown += f", ... ({len(quoted)} values)" if len(quoted) > 3 else ""
    if any(isinstance(v, str) for v in quoted):
        _note(f"{source}: image_id {shown}: strings (quoted in the file) of the ground truth's integer image "
              f"ids, read as those ids (write image_id as a JSON number)")
    else:
        _note(f"{source}: image_id {shown}: numbers where the ground truth's image ids are strings, read as "
              f"the ids they spell")
    return [dict(r, image_id=quoted[r["image_id"]]) if isinstance(r, dict) and r.get("image_id") in quoted
            else r for r in results]


def _read_as_names(results: list, as_name: dict) -> list:
    """``results`` with each image_id replaced by the id of the image it names (``as_name``)."""
    return [dict(r, image_id=as_name[r["image_id"]]) if isinstance(r, dict) else r for r in results]


def _choose(results: list, as_id: dict, as_name: dict, coco_gt, source: str, differ: list) -> str:
    """"id" or "file-name" for values that are all ids of the ground truth's images and all file names
    of one each, ``differ`` of them of another image, said in one line. File names only when the
    detections say so clearly (``_clearly_more``: more than twice as many of them overlap an object of
    their image read so, and enough of them that a chance hit or two cannot decide, ``_agreement``);
    ids otherwise, what every tool but Ultralytics writes (a wrong reading scores each detection against
    another image's objects: AP near 0 without an error, hence the note naming the other option)."""
    moved = set(differ)
    objects = _objects(coco_gt)
    by_id = _agreement(results, as_id, moved, objects)
    by_name = _agreement(results, as_name, moved, objects)
    records = _records_of(results, moved)
    example = sorted(differ, key=str)[0]
    both = (f"the image_id values are ids of the ground truth's images and also file names of others "
            f"({len(differ)} differ; e.g. {example!r} is image id {as_id[example]!r} and the file of image "
            f"id {as_name[example]!r})")
    counted = (f"{by_id} of the {records} detections on the images they differ on "
               f"overlap an object there (box IoU >= 0.5) read as ids, {by_name} read as file names")
    if _clearly_more(by_name, by_id, records):
        _note(f"{source}: {both}: read as file names, as the detections say ({counted}); "
              f"--results-image-ids id reads them the other way")
        return "file-name"
    why = ("as the detections say" if _clearly_more(by_id, by_name, records)
           else "as most tools write them; the detections do not say which")
    _note(f"{source}: {both}: read as ids, {why} ({counted}); --results-image-ids file-name reads them "
          f"as file names (Ultralytics' --save-json writes file stems)")
    return "id"


def _clearly_more(hits: int, other: int, records: int) -> bool:
    """Whether ``hits`` box agreements out of ``records`` detections decide against ``other``: more than
    twice as many, and a tenth of the detections and at least 3 of them unless every one agrees (one or
    two chance overlaps among an untrained model's boxes must not turn every image around)."""
    return hits > 2 * other and hits >= math.ceil(0.1 * records) and (hits >= 3 or hits == records)


def _records_of(results: list, values: set) -> int:
    """How many of ``results`` have an image_id among ``values``."""
    return sum(1 for r in results if isinstance(r, dict) and r.get("image_id") in values)


def _objects(coco_gt) -> dict:
    """{image id: [x, y, w, h] of each of its objects that is no crowd region and has a box}."""
    objects = {}
    for a in coco_gt.dataset.get("annotations", []):
        if not a.get("iscrowd") and _box(a.get("bbox")) is not None:
            objects.setdefault(a["image_id"], []).append(_box(a["bbox"]))
    return objects


def _agreement(results: list, reading: dict, values: set, objects: dict) -> int:
    """How many of the results whose image_id is among ``values`` have a box that overlaps (IoU >= 0.5)
    one of the ``objects`` (``_objects``) of the image ``reading`` maps the image_id to: a model's
    detections fit their own image's objects, not another's. Of any class: category ids still 0-based
    (Ultralytics') are refused later, by name, and must not hide which image is which."""
    groups = {}
    for r in results:
        box = _box(r.get("bbox")) if isinstance(r, dict) and r.get("image_id") in values else None
        if box is not None:
            groups.setdefault(reading[r["image_id"]], []).append(box)
    hits = 0
    for key, boxes in groups.items():
        if key in objects:
            iou = mask_utils.iou(np.asarray(boxes, dtype=float), np.asarray(objects[key], dtype=float),
                                 [0] * len(objects[key]))
            hits += int((np.asarray(iou).max(axis=1) >= 0.5).sum())
    return hits


def _box(bbox):
    """``bbox`` as 4 floats [x, y, w, h] when it is 4 finite numbers of positive size, else None."""
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        return None
    return [float(v) for v in bbox] if bbox[2] > 0 and bbox[3] > 0 else None


def _shown(values) -> str:
    """The first of ``values`` (in a stable order) as a message shows it."""
    return repr(sorted(values, key=lambda v: (isinstance(v, str), str(v)))[0])


def _path_parts(file_name: str) -> list:
    """A file name's path components as the loader reads them (``data/coco._tail_candidates``): Windows
    separators turned, a drive, '.', '..' and empty parts dropped."""
    parts = [p for p in file_name.replace("\\", "/").split("/") if p and p not in (".", "..")]
    return parts[1:] if parts and parts[0].endswith(":") else parts


def _image_of_name(name: str, by_path: dict, by_base: dict, source: str):
    """The ground-truth image id a results ``file_name`` names, None when none: the image whose
    (normalised) file_name is the name or the end of its path ('imgs/val/a.jpg' names 'val/a.jpg'), most
    specific first; else the one image with its base name. Two images answering to it: ValueError."""
    parts = _path_parts(name)
    for i in range(len(parts)):
        ids = by_path.get("/".join(parts[i:]))
        if ids:
            break
    else:
        ids = by_base.get(parts[-1], []) if parts else []
    if len(ids) > 1:
        raise ValueError(f"{source}: file_name {name!r} names {len(ids)} images of the ground truth "
                         f"(ids {', '.join(repr(i) for i in ids[:5])}: the same name in other folders); "
                         f"give the file names as the ground truth writes them (its folders included)")
    return ids[0] if ids else None


def match_file_names(results: list, coco_gt, source: str) -> list:
    """``results`` whose records carry a ``file_name`` with ``image_id`` the id of the ground-truth image
    that file name names (``_image_of_name``: the normalised relative path, else a unique base name, as
    the loader finds files), said in one line. ``maskrcnn predict`` numbers images 1..N in its own order,
    so its ids are not the ground truth's: matched by id, each image was scored against another one's
    objects. Refused (ValueError naming the file and the records): only some records with a file_name,
    a file_name that is not a string or names no image (or two), and two file names naming one image.
    A ground truth without file names keeps the ids (said)."""
    records = [r for r in results if isinstance(r, dict)]  # (anything else: validation names it)
    without = [i for i, r in enumerate(results) if isinstance(r, dict) and "file_name" not in r]
    if without:
        raise ValueError(f"{source}: {len(records) - len(without)} of {len(records)} results have a "
                         f"file_name and the others not (result {without[0]}): image_id is taken from "
                         f"file_name when every record has one; give it to all of them, or to none to match "
                         f"by image_id")
    bad = [i for i, r in enumerate(results) if isinstance(r, dict) and (
        not isinstance(r["file_name"], str) or not _path_parts(r["file_name"]))]
    if bad:
        given = str(results[bad[0]]["file_name"])[:40]
        raise ValueError(f"{source}: result {bad[0]} has file_name {given!r}, not a file name ({len(bad)} "
                         f"such results)")
    by_path, by_base = {}, {}
    for img in coco_gt.dataset["images"]:
        parts = _path_parts(img["file_name"]) if isinstance(img.get("file_name"), str) else []
        if parts:
            by_path.setdefault("/".join(parts), []).append(img["id"])
            by_base.setdefault(parts[-1], []).append(img["id"])
    if not by_path:
        _note(f"{source}: the results have file_name but the ground truth's images have none: matched by "
              f"image_id")
        return results
    ids, names_of = {}, {}
    for r in records:
        name = r["file_name"]
        if name not in ids:
            ids[name] = _image_of_name(name, by_path, by_base, source)
            if ids[name] is not None:
                names_of.setdefault(ids[name], []).append(name)
    unknown = [name for name, image_id in ids.items() if image_id is None]
    if unknown:
        raise ValueError(f"{source}: file_name {unknown[0]!r} names no image of the ground truth"
                         f"{f' ({len(unknown)} such file names)' if len(unknown) > 1 else ''}, whose "
                         f"file names are as {next(iter(by_path))!r}: results with a file_name are matched "
                         f"to its images by it (predictions of images it does not list? predict a folder of "
                         f"its images only)")
    shared = next((names for names in names_of.values() if len(names) > 1), None)
    if shared:
        raise ValueError(f"{source}: file_names {shared[0]!r} and {shared[1]!r} both name image id "
                         f"{ids[shared[0]]!r} of the ground truth: two images cannot be scored as one")
    moved = {r["file_name"] for r in records if r.get("image_id") != ids[r["file_name"]]}
    example = next((n for n in ids if n in moved), None)
    if example is not None:
        given = next(r.get("image_id") for r in records if r["file_name"] == example)
        _note(f"{source}: image_id taken from file_name, matched to the ground truth's file names "
              f"({len(ids)} images; {len(moved)} had another image_id in the file, e.g. {example!r}: "
              f"{given!r} -> {ids[example]!r})")
    elif ids:  # an example of an id that did not change ("0 had another ..., e.g. 1 -> 1") read oddly
        _note(f"{source}: image_id taken from file_name, matched to the ground truth's file names "
              f"({len(ids)} images; each already had its image id in the file)")
    return [dict(r, image_id=ids[r["file_name"]]) if isinstance(r, dict) else r for r in results]


# the class names of a model converted without them (interop: detectron2, torchvision, MMDetection)
_PLACEHOLDER = re.compile(r"class_\d+")


def _name_index(coco_gt) -> tuple:
    """({name: [category ids]}, {normalised name: [category ids]}) of the ground truth's categories: each
    by its own name and by the name that tells it from a namesake ("cat (id 1)", as predict names a
    model's classes, ``data.coco.distinct_category_names``)."""
    from maskrcnn.data.coco import category_names
    from maskrcnn.engine.name_match import name_index

    triples = []
    for cid, shown in category_names(coco_gt.dataset).items():
        own = coco_gt.cats[cid].get("name")
        names = [str(n) for n in (own, shown) if n is not None]
        triples.append((cid, names, own if own is not None else shown))
    return name_index(triples)


def _category_of_name(name: str, exact: dict, loose: dict) -> list:
    """The ids of the ground-truth categories ``name`` names: by its exact name, else as
    ``init_weights.normalise_name`` reads it ('Person' is 'person'), as eval --weights matches a model's
    classes (one id, none, or several: a name it cannot tell)."""
    from maskrcnn.engine.init_weights import normalise_name

    return exact.get(name) or loose.get(normalise_name(name), [])


def _same_id(given, target) -> bool:
    """Whether the results' ``given`` id is the ground truth's ``target``: itself, or quoted ("5" for 5,
    as a hand-made script writes it: read as the number, not renumbered)."""
    if given == target:
        return True
    return (isinstance(given, str) and isinstance(target, int) and _id_digits(given)
            and int(given) == target)


def match_category_names(results: list, coco_gt, source: str, gt_source: str = "the ground truth") -> list:
    """``results`` whose records carry a ``category_name`` (``maskrcnn predict``'s and ``eval
    --output``'s predictions.json: the class as the model names it) with ``category_id`` the id of the
    ground-truth category of that name, by the rule eval --weights matches a model's classes by
    (``engine/name_match.py``): only when every name is a category's, or every category is named; else
    the ids are kept, as eval --weights keeps a checkpoint's (one class renamed in the ground truth, every
    name translated: the ids still say it), the names that differ said in one line. Unchanged, and nothing
    said, when every name is its id's name there, or no record has one (detectron2's, other tools' files:
    matched by id as before). Ids another export numbers otherwise (a ground truth whose classes were
    numbered apart from the training file's) scored each 'circle' as a 'square' without a word: remapped
    by name, said in one line; records of a name the ground truth lacks are then left out (said, as eval
    --weights leaves out a model's classes the file lacks). Ids quoted as strings ("5" named as category
    5 is) are read as the numbers, said. Refused (ValueError naming the file and the clash) when the names
    cannot say it: one category_id under two names, a name that is not a string, two ids under one name,
    a name naming several categories its id is not one of (an id that is one of them: kept, one note),
    or records without a name beside renumbered ones.
    ``--category-offset`` / ``--category-map`` say which is which themselves: this is not called then.
    A converted model's placeholder names (``class_3``) that the ground truth lacks are no names."""
    from maskrcnn.engine.name_match import ids_among_repeated_names, ids_by_name_or_placed

    records = [r for r in results if isinstance(r, dict)]
    named = [r for r in records if "category_name" in r]
    ids = [r.get("category_id") for r in named]
    if not named or not all(isinstance(i, (int, str)) and not isinstance(i, bool) for i in ids):
        return results  # (ids of no use: validation names them)
    hint = ("; give --category-map MAP.json ({\"results id\": ground-truth id}) to say which is which "
            "(category_name is then not read)")
    if not any("name" in c for c in coco_gt.dataset["categories"]):
        _note(f"{source}: category_name not compared: the categories of {gt_source} have no names (matched "
              f"by category_id)")
        return results
    exact, loose = _name_index(coco_gt)
    name_of, named = {}, []
    for i, r in enumerate(results):
        if not isinstance(r, dict) or "category_name" not in r:
            continue
        name = r["category_name"]
        if not isinstance(name, str):
            raise ValueError(f"{source}: result {i} has category_name {str(name)[:40]!r}, not a name{hint}")
        if _PLACEHOLDER.fullmatch(name) and not _category_of_name(name, exact, loose):
            continue  # a model converted without its class names ("class_3"): names nothing, says nothing
        earlier = name_of.setdefault(r["category_id"], name)
        if earlier != name:
            raise ValueError(f"{source}: category_id {r['category_id']!r} is named both {earlier!r} and "
                             f"{name!r} (category_name, result {i}): the names cannot say which category "
                             f"of {gt_source} it is{hint}")
        named.append(r)
    if not named:
        return results
    each = {cid: _category_of_name(name, exact, loose) for cid, name in name_of.items()}
    gt_names = {cid: coco_gt.cats[cid].get("name") for cid in coco_gt.cats}
    if all(len(targets) == 1 and _same_id(cid, targets[0]) for cid, targets in each.items()):
        return _read_quoted(results, {cid: targets[0] for cid, targets in each.items()}, name_of, source)
    several = next((cid for cid, targets in each.items() if len(targets) > 1), None)
    agreed = ids_among_repeated_names(each, _same_id)
    if agreed is not None:  # 'car' is ids 1 and 3 there, and the record says 1: the id is one of its name's
        repeated = [cid for cid, targets in each.items() if len(targets) > 1]
        shown = "; ".join(f"{name_of[c]!r} names ids {', '.join(map(str, each[c][:5]))}"
                          for c in repeated[:3]) + ("; ..." if len(repeated) > 3 else "")
        _note(f"{source}: {gt_source} repeats a category name ({shown}), "
              f"so category_name alone cannot say the category; each result's category_id is one of those "
              f"its name names: matched by category_id")
        return _read_quoted(results, agreed, name_of, source)
    if several is not None:
        raise ValueError(f"{source}: category_name {name_of[several]!r} (category_id {several!r}) names "
                         f"{len(each[several])} categories of {gt_source} (ids "
                         f"{', '.join(map(str, each[several][:5]))}){hint}")
    taken = {}
    for cid, targets in each.items():  # two classes of the results claiming one category: a contradiction
        if targets and taken.setdefault(targets[0], cid) != cid:
            first = taken[targets[0]]
            raise ValueError(f"{source}: category_ids {first!r} ({name_of[first]!r}) and {cid!r} "
                             f"({name_of[cid]!r}) both name category {targets[0]} of {gt_source}{hint}")
    # a class the ground truth has neither by name nor by id (torchvision's 'N/A' 12): no id to keep, left
    # out as eval --weights leaves out a model's classes it cannot place (all of them: refused by id below,
    # results of another dataset); the classes left matched by name alone (a model of circle 1, square 2,
    # ... on a ground truth of circle 7 and hexagon 42): one rule for both (name_match)
    mapped, _, nowhere = ids_by_name_or_placed(name_of, exact, loose,
                                               has_id=lambda cid: any(_same_id(cid, g) for g in gt_names))
    gone = set(nowhere)  # said once, here
    if nowhere:
        _left_out(nowhere, name_of, named, source, gt_source, "by category_name nor by category_id")
        results = [r for r in results
                   if not (isinstance(r, dict) and "category_name" in r and r["category_id"] in gone)]
        each = {cid: targets for cid, targets in each.items() if cid not in gone}
    if mapped is None:
        differ = [cid for cid, targets in each.items() if not (targets and _same_id(cid, targets[0]))]
        if not differ:
            return results
        shown = "; ".join(f"{name_of[c]!r} (category_id {c!r}"
                          + (f", {gt_names[c]!r} there" if c in gt_names else "") + ")" for c in differ[:3])
        one = len(differ) == 1
        _note(f"{source}: {len(differ)} of the results' {len(name_of)} category_name{'' if one else 's'} "
              f"{'is' if one else 'are'} not {gt_source}'s name of {'its' if one else 'their'} id "
              f"({shown}{'; ...' if len(differ) > 3 else ''}), and the names neither all match its "
              f"categories nor name every one of them: matched by category_id, as eval --weights keeps a "
              f"model's own ids then")
        return results
    absent = [cid for cid in name_of if cid not in mapped and cid not in gone]
    changed = {cid: target for cid, target in mapped.items() if not _same_id(cid, target)}
    unnamed = len(records) - len(named)
    if unnamed and changed:
        raise ValueError(f"{source}: {unnamed} of {len(records)} results have no category_name, and the "
                         f"others' names number the categories otherwise than {gt_source} (e.g. "
                         f"{_renamed(name_of, changed, gt_names)}): the records without a name cannot be "
                         f"matched{hint}")
    if changed:
        _note(f"{source}: category_id matched to {gt_source}'s categories by category_name: it numbers "
              f"{len(changed)} of the results' {len(name_of)} classes otherwise "
              f"({_renamed(name_of, changed, gt_names)})")
    if absent:
        _left_out(absent, name_of, named, source, gt_source, "by category_name")
    gone = set(absent)
    kept = [r for r in results
            if not (isinstance(r, dict) and "category_name" in r and r["category_id"] in gone)]
    return _read_quoted(kept, mapped, name_of, source)


def _left_out(absent: list, name_of: dict, named: list, source: str, gt_source: str, how: str) -> None:
    """Say that the records of the classes ``absent`` (ids) are left out."""
    counts = Counter(r["category_id"] for r in named)
    shown = ", ".join(f"{name_of[c]!r} (category_id {c!r}, {counts[c]} results)" for c in absent[:5])
    one = len(absent) == 1
    _note(f"{source}: {'class' if one else 'classes'} {shown}{'' if len(absent) <= 5 else ', ...'} "
          f"{'is' if one else 'are'} no category of {gt_source} ({how}): "
          f"left out, as eval --weights leaves out a model's classes the ground truth lacks")


def _read_quoted(results: list, mapped: dict, name_of: dict, source: str) -> list:
    """``results`` with the ids of ``mapped`` ({results id: ground-truth id}) replaced; the quoted ones
    ("5" for 5) said as such: read as the numbers they quote, which their names confirm."""
    quoted = [cid for cid, target in mapped.items() if isinstance(cid, str) and _same_id(cid, target)]
    if quoted:
        shown = (", ".join(f"{c!r} ({name_of[c]!r})" for c in quoted[:5])
                 + (", ..." if len(quoted) > 5 else ""))
        _note(f"{source}: category_id {shown} {'is a string' if len(quoted) == 1 else 'are strings'} (quoted "
              f"in the file): read as the number{'' if len(quoted) == 1 else 's'}, which the category_name "
              f"confirms (write category_id as a JSON number)")
    if all(_same_id(cid, t) and not isinstance(cid, str) for cid, t in mapped.items()):
        return results
    return [dict(r, category_id=mapped[r["category_id"]])
            if isinstance(r, dict) and r.get("category_id") in mapped else r for r in results]


def _renamed(name_of: dict, mapped: dict, gt_names: dict) -> str:
    """Up to 3 of ``mapped``'s ids as "1 'circle' -> 2 (1 is 'square' there)"."""
    parts = []
    for cid, target in list(mapped.items())[:3]:
        there = gt_names.get(cid)
        was = f" ({cid!r} is {there!r} there)" if there is not None and cid != target else ""
        parts.append(f"{cid!r} {name_of[cid]!r} -> {target!r}{was}")
    return "; ".join(parts) + ("; ..." if len(mapped) > 3 else "")


def zero_based_hint(used_categories: set, category_ids: Sequence) -> str:
    """A hint for a refusal of unknown category ids: ``used_categories`` are every id of the results,
    ``category_ids`` the ground truth's in its file's order. ``--category-offset 1`` only when it maps
    every used id into the ground truth (with ground-truth ids 1, 2, 7 it turned the 0 away, then
    refused the 2, +1 being 3); else, for 0-based class indices (0 to fewer than its categories), a
    ``--category-map`` whose example numbers the ground truth's categories in their order."""
    cats = list(category_ids)
    used = set(used_categories)
    if not used or not all(isinstance(c, int) and not isinstance(c, bool) for c in used):
        return ""
    why = ("they look like 0-based class indices, as Ultralytics and some exporters write them for datasets "
           "other than COCO")
    if all(c + 1 in cats for c in used):
        return f"; {why}: pass --category-offset 1 (adds 1 to every category_id)"
    if 0 not in used or min(used) < 0 or max(used) >= len(cats):
        return ""
    example = ", ".join(f'"{i}": {json.dumps(c)}' for i, c in enumerate(cats[:max(used) + 1][:6]))
    more = ", ..." if max(used) + 1 > 6 else ""
    wrong = sorted(c + 1 for c in used if c + 1 not in cats)
    what = "a ground-truth id" if len(wrong) == 1 else "ground-truth ids"
    return (f"; {why}, but --category-offset 1 would not map them all (+1 gives "
            f"{', '.join(map(str, wrong[:5]))}, not {what}): map each with --category-map "
            f"MAP.json, e.g. {{{example}{more}}} if they number the ground truth's categories in the order "
            f"its file lists them")


def zero_based_suspicion(results: list, coco_gt, source: str) -> None:
    """Warns when every category id is the ground truth's and would still be after +1, while its largest
    id, which it has objects of, is never predicted: 0-based ids whose class 0 was never predicted are
    scored silently against the wrong classes. Only said: a model may well miss one class entirely."""
    cats = set(coco_gt.getCatIds())
    used = {r["category_id"] for r in results}
    if len(cats) < 2 or not used or not all(isinstance(c, int) and not isinstance(c, bool) for c in cats):
        return
    top = max(cats)
    if used <= cats and all(c + 1 in cats for c in used) and coco_gt.getAnnIds(catIds=[top]):
        _note(f"{source}: no result has category {top} (the ground truth's last, with objects) and every "
              f"category_id would still be the ground truth's after +1: if they are 0-based class indices, "
              f"pass --category-offset 1")


def read_category_map(path) -> dict:
    """``{"results id": ground-truth id}`` from a JSON file: {int or str: int or str}; ValueError naming
    the file for anything else."""
    try:
        data = read_json_file(path)
    except OSError as e:
        raise ValueError(f"{path}: cannot read the category map ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{path}: the category map is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f'{path}: a category map is a JSON object {{"results id": ground-truth id, ...}}')
    out = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"{path}: category map entry {key!r}: {str(value)[:30]} is not an id")
        out[int(key) if _id_digits(key) else key] = value  # ("²" is isdigit, no int)
    return out


def _map_key(category_id, mapping: dict):
    """The key of ``mapping`` (``read_category_map``'s: digit keys as integers) for a results
    ``category_id``, None when it has none. A string id "1" is the map's "1" (a JSON key is a string):
    the way to score ids a tool wrote as strings."""
    if isinstance(category_id, bool):
        return None
    if category_id in mapping:
        return category_id
    digits = isinstance(category_id, str) and _id_digits(category_id)
    if digits and int(category_id) in mapping:
        return int(category_id)
    return None


def shift_categories(results: list, source: str, *, offset: int = 0, mapping=None) -> list:
    """``results`` with every ``category_id`` plus ``offset``, or mapped by ``mapping`` (an id it lacks:
    ValueError naming the file and the ids). Records without an id are left for validation."""
    if offset and mapping:
        raise ValueError("give --category-offset or --category-map, not both")
    if not offset and not mapping:
        return results
    ids = [r.get("category_id") for r in results if isinstance(r, dict)]
    if mapping:
        unmapped = sorted({str(i) for i in ids if _map_key(i, mapping) is None})
        if unmapped:
            raise ValueError(f"{source}: category ids {', '.join(unmapped[:10])} are not in the category map")
        _note(f"{source}: category_id mapped by the category map ({len(set(ids))} ids)")
        return [dict(r, category_id=mapping[_map_key(r["category_id"], mapping)]) if isinstance(r, dict)
                else r for r in results]
    odd = sorted({str(i)[:20] for i in ids if isinstance(i, bool) or not isinstance(i, int)})
    if odd:
        raise ValueError(f"{source}: --category-offset needs integer category ids; got {', '.join(odd[:5])}")
    _note(f"{source}: {offset:+d} added to every category_id")
    return [dict(r, category_id=r["category_id"] + offset) if isinstance(r, dict) and "category_id" in r
            else r for r in results]


def wrap_flat_polygons(results: list, source: str) -> list:
    """``results`` with a ``segmentation`` that is one flat polygon ``[x1, y1, ...]`` (at least 3 points,
    even length, numbers only) read as ``[[x1, y1, ...]]``, said in one note: the ground truth's reader
    (``data/coco_exports.read_tool_exports``) reads it so, and the same shape in a results file was a
    traceback. Anything else that is not a list of polygons is left for validation to name."""
    out, wrapped = [], 0
    for r in results:
        if isinstance(r, dict) and flat_polygon(r.get("segmentation")):
            r, wrapped = dict(r, segmentation=[r["segmentation"]]), wrapped + 1
        out.append(r)
    if wrapped:
        _note(f"{source}: {wrapped} segmentations are one flat polygon [x1, y1, ...] not wrapped in a list: "
              f"read as [[x1, y1, ...]], as the ground truth's are")
    return out


def compress_segmentations(results: list, coco_gt, source: str) -> list:
    """Validated ``results`` with polygons and uncompressed RLE encoded as compressed RLE (``counts`` a
    string) at the ground-truth image's size: pycocotools' ``loadRes`` takes no other."""
    out, kinds = [], Counter()
    for r in results:
        seg = r.get("segmentation")
        if isinstance(seg, list) or (isinstance(seg, dict) and isinstance(seg.get("counts"), list)):
            img = coco_gt.imgs[r["image_id"]]
            h, w = int(img["height"]), int(img["width"])
            if isinstance(seg, list):
                kinds["polygons"] += 1
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            else:
                kinds["uncompressed RLE"] += 1
                rle = mask_utils.frPyObjects(dict(seg, size=[h, w]), h, w)
            seg = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
            r = dict(r, segmentation=seg)
        out.append(r)
    if kinds:
        _note(f"{source}: " + " and ".join(f"{n} segmentations as {k}" for k, n in kinds.items())
              + " encoded as compressed RLE at their image's size")
    return out


def _identity(r: dict) -> tuple:
    """What makes two validated records the same detection (cheaper than serialising each)."""
    seg = r.get("segmentation")
    seg = seg.get("counts") if isinstance(seg, dict) else seg
    if isinstance(seg, list):  # polygons, uncompressed RLE: the records bbox AP scores are not encoded
        seg = repr(seg)
    return (r["image_id"], r["category_id"], r["score"], _hashable(r.get("bbox")), seg,
            _hashable(r.get("keypoints")))


def _hashable(values) -> object:
    """A box or keypoints field as a key: a tuple of its numbers; any other shape (nested ``[[x, y, v],
    ...]`` keypoints, which the checks left out of their AP but kept for the others) as its repr."""
    if not values:
        return ()
    if isinstance(values, (list, tuple)) and not any(isinstance(v, (list, tuple, dict)) for v in values):
        return tuple(values)
    return repr(values)


def _image_names(coco_gt, ids: set) -> str:
    """The first 3 of the images ``ids`` by file name (else id), in the ground truth's order."""
    names = [str(img.get("file_name") or img["id"]) for img in coco_gt.dataset["images"] if img["id"] in ids]
    return ", ".join(names[:3]) + (", ..." if len(ids) > 3 else "")


def _images_with_objects(coco_gt, kind: str) -> set:
    """The ids of the images holding an object ``kind``'s AP scores (a miss when nothing detects it): not
    crowd; for segm with a mask (box-only objects are ignored regions, ``evaluator._segm_ground_truth``),
    for keypoints with a labelled keypoint (COCOeval ignores ``num_keypoints`` 0, which loading counts)."""
    def scored(a):
        if a.get("iscrowd"):
            return False
        if kind == "segm":
            return not a.get("_box_only")
        if kind == "keypoints":
            return bool(a.get("num_keypoints"))
        return True

    return {a["image_id"] for a in coco_gt.dataset.get("annotations", []) if scored(a)}


def note_scoring_conventions(results: list, coco_gt, source: str, *, by_type=None) -> None:
    """Say what COCOeval will do with ``results`` that a user might not expect (nothing is changed).
    ``by_type`` ({IoU type: the records scored for it}, validation's): images without a detection in
    one kind only (their records left out of it: a box of negative width, a bad mask) said per kind."""
    if not results:
        _note(f"{source}: no detections in the results: every AP is 0 ('-' where the ground truth has no "
              f"objects to miss, as for a size range without any)")
        return
    # only images with objects to miss: a detection-less image without any is scored as it should be
    with_objects = _images_with_objects(coco_gt, "bbox")
    kinds = by_type or {"bbox": results}
    # per kind, only the objects that kind scores: keypoint AP ignores those without a labelled keypoint
    # (a category without keypoints), segm AP box-only ones: no detection of them is a miss there
    scored = {kind: _images_with_objects(coco_gt, kind) for kind in kinds}
    missing = {kind: scored[kind] - {r["image_id"] for r in records} for kind, records in kinds.items()}
    everywhere = with_objects - {r["image_id"] for records in kinds.values() for r in records}
    if everywhere:
        # named: re-scoring `eval --weights`'s own predictions.json counts the images it skipped (unreadable,
        # not their recorded size) as misses, and only their names tell them from images without detections
        _note(f"{source}: {len(everywhere)} of {len(with_objects)} ground-truth images with objects have no "
              f"detection in the results ({_image_names(coco_gt, everywhere)}): their "
              f"objects count as misses (the AP is over every ground-truth image; of `maskrcnn eval "
              f"--weights`'s predictions.json, the images it skipped, its metrics.json's images_skipped, "
              f"are among them)")
    owners = keypoint_owners(coco_gt) if "keypoints" in missing else set()
    for kind, images in missing.items():
        only = images - everywhere
        if kind == "keypoints":  # only detections of a category with keypoints could have been scored
            # there: an image whose detections are all of other classes (a ball, rightly without keypoints)
            # lost nothing, its keypoint object is an ordinary miss
            only &= {r["image_id"] for r in results if r.get("category_id") in owners}
        if only and len(missing) > 1:  # their detections are in another kind's AP, not in this one
            _note(f"{source}: {len(only)} of {len(scored[kind])} ground-truth images with objects have no "
                  f"detection scored in {kind} AP ({_image_names(coco_gt, only)}), though they have some in "
                  f"the results (left out of {kind} AP above, or without its field): their objects count as "
                  f"misses in {kind} AP")
    outside = [float(r["score"]) for r in results if not 0 <= r["score"] <= 1]
    if outside:  # percentages, logits: COCOeval only ranks them, a threshold reads them as probabilities
        _note(f"{source}: {len(outside)} of {len(results)} scores are outside [0, 1] (from "
              f"{min(outside):g} to {max(outside):g}; percentages or logits?): AP only ranks scores and is "
              f"unaffected, but score thresholds (--analysis-score, the per-class detection counts) read "
              f"them as probabilities")
    keys = Counter(_identity(r) for r in results)
    repeats = sum(n - 1 for n in keys.values())
    if repeats:
        _note(f"{source}: {repeats} results repeat another exactly (a file written twice?): each repeat "
              f"is scored as a false positive")
    per = Counter((r["image_id"], r["category_id"]) for r in results)
    over = [k for k, n in per.items() if n > MAX_DETS]
    if over:
        image_id, category_id = over[0]
        _note(f"{source}: {len(over)} image-category pairs have more than {MAX_DETS} detections (e.g. image "
              f"{image_id!r}, category {category_id!r}: {per[over[0]]}): COCOeval counts only the "
              f"{MAX_DETS} highest-scoring of each (maxDets), the rest are not scored")
