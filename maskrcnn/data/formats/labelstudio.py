"""Label Studio exports ("JSON" and "JSON-MIN") -> COCO instances.

Read:
- JSON: a list of tasks ``{"id", "data": {"image": URL}, "annotations": [{"result": [...],
  "was_cancelled", "ground_truth"}], "predictions": [...]}``; a file holding one task object (cloud
  target storage writes one per task) is read as a list of one. A result is ``{"type", "value": {...,
  "<type>": [labels]}, "original_width", "original_height", "image_rotation", "id"}``.
- JSON-MIN: a list of flat records, one per annotation: the task's data fields (``"image"``), ``"id"``
  and, under each control's name (often "label", but any), a list of regions: the result's ``value``
  with ``original_width`` / ``original_height`` merged in. The region lists are found as the list-valued
  fields whose items carry a ``*labels`` key.
- A label's surrounding spaces are stripped ("box " is "box"), as the LabelMe, CVAT and YOLO readers
  strip them, said once per label.

Rules:
- Coordinates are percent (0..100) of the image's width and height, so they are scaled by the size of
  the image file itself; an ``original_width`` / ``original_height`` that differs is judged by
  ``_judge_size``: a resized copy (``common.resized_scale``) said once, the stored size of an EXIF-turned
  photo noted, another shape (a stretched copy?) warned about; the coordinates are used as they are in
  each case, and a brush mask is resampled to the image (a missing size is fine). A shape
  reaching more than 10% of the image past its border is skipped (the coordinates are likely pixels,
  say pre-annotations imported unscaled); a shape a little past it is clipped to the image.
- ``polygonlabels`` (``points`` [[x, y], ...]), ``rectanglelabels`` (``x``, ``y`` the top-left corner,
  ``width``, ``height``, ``rotation`` degrees clockwise around that corner) and ``ellipselabels``
  (``x``, ``y`` the centre, ``radiusX``, ``radiusY``, ``rotation`` around the centre) become COCO
  polygons; ``brushlabels`` (``"format": "rle"``: see ``labelstudio_rle``) a mask written as RLE, decoded
  at ``original_height`` x ``original_width`` (default: the image's size) and resampled to the image
  (nearest, ``geometry.scale_region``) when that is not its size. A ``labels``
  result (a ``<Labels>`` control beside a ``<Rectangle>``, ``<Polygon>``... tag) is the shape its value
  holds.
- Labels: a result's label list must hold one label; with ``--classes``, labels outside them are dropped
  first (so ["cat", "occluded"] with --classes cat is a cat). Several left: skipped as ambiguous (no class
  is more right than another). The results of one region ``id`` from several label controls (a
  ``<PolygonLabels>`` and a ``<Labels>`` size group on one image; in JSON-MIN the same geometry under
  each control's name) are that one region with their labels joined, counted in the notes.
- Annotations (human work) win over predictions (model output). Of a task's annotations, cancelled
  (skipped) ones are left out; of the others the one marked ``ground_truth`` (a reviewer's choice), else
  the most recently updated (``updated_at``, else ``created_at``: the annotator's last word, a review's
  fix included; without times, the first listed). Tasks with several annotations are counted in the
  notes. A task whose every annotation was cancelled is skipped (the annotator judged the image
  unusable), predictions or not. Predictions stand for a task that has no annotation: in a file that
  holds no annotation at all (tasks written for import, e.g. by ``predict --export labelstudio``, read
  back; noted), or in any file with ``use_predictions`` (``--ls-use-predictions``); else such a task is
  skipped and counted. Of several predictions, the most recently updated is taken (a newer model
  version), counted in the notes. In JSON-MIN, where each annotation is a record of its own, the most
  recently updated record of a task id is taken (without times, the first); a record with
  ``annotation_id`` null and no region list is a task nobody annotated ("all tasks" export), skipped as
  the JSON export's is.
- Images: the data field the labelling config's ``<Image value="$key">`` reads names the file: ``key``
  from the results' ``source`` ("$key") when they carry it, else ``image``, else the one data field
  whose value names an image file (a ``/data/local-files/?d=`` URL's PATH, else a URL's or path's file
  name, ending in .jpg, .png, ...; of several, the one under the results' ``to_name``, the Image tag's
  name). A task whose results are on several images (a config with two ``<Image>`` tags, each result's
  ``source`` / ``to_name`` naming its data key) becomes one image per key with its own regions; a
  multi-page task (``<Image valueList="$images">``: a list of images) is skipped, naming the field. The
  file is looked for under ``images`` (default: the export's folder): a
  ``/data/local-files/?d=PATH`` URL at PATH, then any URL's or path's file name (URL-decoded: %20 is a
  space) in ``images`` and in its subfolders; Label Studio stores uploads as ``<8 hex>-<name>``
  (``/data/upload/3/5f2c1a3b-photo.jpg``), so ``photo.jpg`` is tried next. A name found twice in the
  subfolders is the one whose folders end as the reference's path does (``?d=photos/b/1.jpg`` with
  ``images`` the folder ``photos``, not the document root: ``b/1.jpg``); when no folder tells them
  apart, the task is skipped as ambiguous. A task without an image (the message lists its data keys), or
  whose image is not found, is skipped, naming the task id. A reference's path never leaves the folder
  it is looked for under: one whose ``..`` would climb out of it is looked for by its file name only.
- The tasks ``predict --export labelstudio`` writes name their images relative to the images folder,
  which each task's data records, relative to the tasks file's folder (``IMAGES_FOLDER_KEY``; Label
  Studio keeps the extra data field and ignores it). With ``recorded`` (``convert-data`` without
  ``--images``) a file's images are looked for under that folder when it is a relative path to an
  existing folder (said in a line; URLs are never fetched: only their file names are looked for there);
  else, and always with ``--images``, under ``images``.
- Categories (without ``--classes``): the labels met, sorted by name, after the classes the tasks of
  ``predict --export labelstudio`` record (``CLASSES_KEY``: the model's classes in its order, kept by
  Label Studio through annotating and exporting), which are numbered first in that order, a class
  without instances included: the file reads back in the model's class order (ids 1..K; the model's own
  category ids only when they are 1..K without gaps). Label Studio's
  labelling config is not part of its exports; ``--classes`` fixes the order of any other file.
- ``keypointlabels`` results: the keypoints of the region their ``parentID`` names, else of the region
  that contains them (``labelstudio_keypoints``: the instance gets COCO ``keypoints``).
- Left out and counted in the notes: results without labels, classification and text results (choices,
  textarea, rating, ...), keypoints that belong to no region, relations. Skipped as errors: a result on
  an image Label Studio showed turned (``image_rotation`` not 0: its coordinates are of the turned view,
  not the file), a brush whose RLE is corrupt, unknown shapes.
An annotated task with no region left is kept as an image without instances (a negative example).
"""

from __future__ import annotations

import json
import math
import ntpath
import os
import posixpath
import re
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import unquote, urlsplit

import numpy as np

from maskrcnn.data.formats.common import (
    CocoBuilder,
    MaskPatch,
    Report,
    Skip,
    annotated_size,
    image_size,
    read_json,
    recorded_folder_unusable,
    resized_scale,
    stripped_label,
    usable_recorded_folder,
)
from maskrcnn.data.formats.geometry import as_points, ellipse_points, numbers, scale_region, to_coco_polygon
from maskrcnn.data.formats.keypoint_instances import finish_keypoints
from maskrcnn.data.formats.labelstudio_keypoints import add_task_keypoints
from maskrcnn.data.formats.labelstudio_rle import decode_brush_mask
from maskrcnn.data.unicode_names import nfc

__all__ = ["CLASSES_KEY", "IMAGES_FOLDER_KEY", "read_labelstudio"]

# predict --export labelstudio's data field: the images folder the tasks' image paths are relative to, as
# a path relative to the tasks file's folder ("/" separators)
IMAGES_FOLDER_KEY = "maskrcnn_images_folder"

# predict --export labelstudio's data field: the model's class names in its order, so that the tasks read
# back in that order (ids 1..K), a class without instances included (Label Studio keeps the field)
CLASSES_KEY = "maskrcnn_classes"

# the notes on tasks with several annotations: a full export flags the ground truth, JSON-MIN does not
_SEVERAL_ANNOTATIONS = "tasks with several annotations (the ground truth, else the latest, taken)"
_SEVERAL_MIN_RECORDS = "tasks with several annotations (the latest record taken)"

_SHAPE_TYPES = ("polygonlabels", "rectanglelabels", "ellipselabels", "brushlabels", "labels")
_POINT_TYPES = ("keypointlabels", "keypoint")
_UNLABELLED_TYPES = ("polygon", "rectangle", "ellipse", "brush")
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(.+)$")  # Label Studio's "<uuid4 hex[:8]>-" on uploads
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
_OUTSIDE_MARGIN = 0.10  # of the image size: further past the border is not a slip of the mouse
# Label Studio's own fields beside the data in JSON-MIN records (and in some tasks' data)
_NOT_DATA = ("id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", IMAGES_FOLDER_KEY,
             CLASSES_KEY)


class _ImageFinder:
    """Finds a task's image under one folder; the file names below it are listed once, when needed."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._index: Optional[dict] = None
        self._forms: Optional[dict] = None

    def _by_form(self) -> dict:
        """{name composed (NFC): files of that name in any Unicode form}, made once when needed."""
        if self._forms is None:
            self._forms = defaultdict(list)
            for name, paths in self._by_name().items():
                self._forms[nfc(name)].extend(paths)
        return self._forms

    def _by_name(self) -> dict:
        if self._index is None:
            index = defaultdict(list)
            for folder, _, files in os.walk(self.root):
                for name in files:
                    index[name].append(Path(folder) / name)
            self._index = index
        return self._index

    def _by_tail(self, found: list, relative: str) -> list:
        """Of the files ``found`` (under the root, of one name), those whose path ends with the most parts
        of the task's path ``relative`` (``photos/b/1.jpg`` under the folder ``photos`` given as the
        images folder is ``b/1.jpg``): one file when a folder above the name tells them apart, else all.
        Parts are compared composed (NFC): a name stored in the other Unicode form is the same name."""
        parts = [nfc(part) for part in Path(relative).parts]

        def tail(path: Path) -> int:  # parts shared at the end of the two paths
            own = [nfc(part) for part in path.relative_to(self.root).parts]
            n = 0
            while n < min(len(own), len(parts)) and own[-1 - n] == parts[-1 - n]:
                n += 1
            return n

        shared = [tail(p) for p in found]
        best = [p for p, n in zip(found, shared) if n == max(shared)]
        return best if len(best) == 1 and max(shared) > 1 else found

    def _one_of(self, found: list, candidate: str, relative: Optional[str], source: str, *,
                form: bool = False) -> Optional[Path]:
        """The one file of ``found`` (files of the name ``candidate``; ``form``: in another Unicode form)
        meant by the task, once the folders of its path ``relative`` are compared (``_by_tail``); None
        when there is none; Skip ``ambiguous_image`` naming them when several are left."""
        if len(found) > 1 and relative:  # the folder of the images, not the document root: by the tail
            found = self._by_tail(found, relative)
        if len(found) > 1:
            shown = ascii if form else str  # ascii: the forms told apart, as they print alike
            listing = ", ".join(shown(p.relative_to(self.root).as_posix()) for p in sorted(found)[:3])
            more = f" and {len(found) - 3} more" if len(found) > 3 else ""
            place = ("is stored in another Unicode form (composed / decomposed accents) in several folders"
                     if form else "is in several folders")
            raise Skip("ambiguous_image", f"image {candidate!r} (from {source!r}) {place} under {self.root}: "
                                          f"{listing}{more}")
        return found[0] if found else None

    def find(self, reference: str, *, report: Optional[Report] = None, where: str = "") -> Path:
        relative, name = _parse_reference(reference)
        relative = _inside(relative)
        source = _short(reference)
        if relative and (self.root / relative).is_file():
            return self.root / relative
        match = _UPLOAD_PREFIX.match(name)
        for candidate in [name] + ([match.group(1)] if match else []):
            if (self.root / candidate).is_file():
                return self.root / candidate
            found = self._one_of(self._by_name().get(candidate, []), candidate, relative, source)
            if found is not None:
                return found
        for candidate in [name] + ([match.group(1)] if match else []):
            # stored in the other Unicode form (an archive unzipped from macOS): the one such file, told
            # apart from others by its folders as names are; never one of several, which are named
            found = self._one_of([p for p in self._by_form().get(nfc(candidate), []) if p.name != candidate],
                                 candidate, relative, source, form=True)
            if found is not None:
                if report is not None:
                    said = "images found under their name in another Unicode form (composed / decomposed)"
                    report.warn_few("unicode_form", where, f"image {name!r} not found; using the file of "
                                    "that name stored in another Unicode form (composed / decomposed "
                                    "accents: an archive made on macOS)", what=said)
                return found
        raise Skip("missing_image", f"image {name!r} (from {source!r}) not found under {self.root}")


def _inside(relative: Optional[str]) -> Optional[str]:
    """``relative`` when it names a path below the folder it is joined to; None when it is absolute, has
    a drive, or its ``..`` climb out of that folder (``a/../../x.png``): a task's path never reaches a
    file outside the images folder (the file is then looked for by its name, inside it)."""
    if not relative or "\0" in relative:
        return None
    normal = posixpath.normpath(relative.replace("\\", "/"))
    if normal.startswith("/") or normal == ".." or normal.startswith("../") or ntpath.splitdrive(normal)[0]:
        return None
    return normal


def _short(reference: str, limit: int = 100) -> str:
    """A reference fit for a message (a data: URI holds the whole image)."""
    return reference if len(reference) <= limit else reference[:limit] + "..."


def _parse_reference(reference: str) -> tuple:
    """(path relative to the images folder or None, file name) of a task's image URL or path."""
    text = reference.strip().replace("\\", "/")
    parts = urlsplit(text)
    if parts.path.startswith("/data/local-files"):  # local storage: ?d=<path below the document root>
        # unquote, not parse_qs: that would read a '+' in a file name as a space
        given = [_unquote(p[2:]) for p in parts.query.split("&") if p.startswith("d=")]
        relative = given[0].lstrip("/") if given else ""
        return relative or None, Path(relative).name
    if len(parts.scheme) > 1 or parts.path.startswith("/data/"):  # 1: a Windows drive letter
        return None, Path(_unquote(parts.path)).name  # http(s), s3, gs, azure-blob, /data/upload/<project>/
    name = Path(_unquote(text)).name
    return _unquote(text).lstrip("/"), name


def _unquote(text: str) -> str:
    """``text`` %-decoded as the file system names files: bytes that are not UTF-8 (``caf%E9.jpg``, as
    ``predict --export labelstudio`` quotes a Latin-1 name) become the name Python gives that file
    (``'caf\\udce9.jpg'``), not U+FFFD, which names no file."""
    return unquote(text, errors="surrogateescape")


def _is_image_reference(value) -> bool:
    """Whether a data value names an image file: its file name as ``_parse_reference`` reads it (the
    ``?d=`` path of a local-files URL, else the URL's or path's) ends in an image suffix."""
    return isinstance(value, str) and bool(value.strip()) and \
        _parse_reference(value)[1].lower().endswith(_IMAGE_SUFFIXES)


def _all_results(item: dict) -> list:
    """The result objects of all of a task's annotations and predictions."""
    results = []
    for group in ("annotations", "completions", "predictions"):
        entries = item.get(group) if isinstance(item.get(group), list) else []
        for entry in entries:
            found = entry.get("result") if isinstance(entry, dict) else None
            results += [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []
    return results


def _config_hints(item: dict) -> tuple:
    """(data keys, image names) the results of a task point to: ``source`` "$key" is the labelling
    config's ``<Image value="$key">`` (exports carry it), ``to_name`` the Image tag's name (often the
    key's too)."""
    results = _all_results(item)
    sources = [r["source"][1:] for r in results if isinstance(r.get("source"), str)
               and r["source"].startswith("$")]
    names = [r["to_name"] for r in results if isinstance(r.get("to_name"), str)]
    return list(dict.fromkeys(sources)), list(dict.fromkeys(names))


def _image_reference(data: dict, *, sources: Sequence[str] = (), names: Sequence[str] = (),
                     min_record: bool = False) -> str:
    """The task's image URL: ``data[key]`` of the config's ``<Image value="$key">`` when the results
    name it (``sources``), else ``data["image"]``, else the one data value that names an image file (of
    several, the one under the Image tag's name, ``names``). ``min_record``: ``data`` is a JSON-MIN
    record, whose list-valued fields are region lists, not data."""
    for key in [*sources, "image"]:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value
    candidates = [k for k, v in data.items() if k not in _NOT_DATA and _is_image_reference(v)]
    named = [k for k in candidates if k in names]
    if len(candidates) == 1 or len(named) == 1:
        return data[candidates[0] if len(candidates) == 1 else named[0]]
    if candidates:
        raise Skip("no_image", f"several data fields name an image file ({', '.join(candidates[:5])}) and "
                               "the results do not say which the labelling config's <Image> shows")
    # <Image valueList="$images"> (a multi-page task): one data field holding a list of images
    pages = [str(k) for k, v in data.items() if k not in _NOT_DATA and isinstance(v, list) and v
             and any(_is_image_reference(x) for x in v)]
    if pages:
        raise Skip("no_image", f"data field {pages[0]!r} is a list of images (a multi-page <Image "
                               "valueList>): multi-image tasks are not converted")
    keys = [str(k) for k in data if k not in _NOT_DATA and not (min_record and isinstance(data[k], list))]
    raise Skip("no_image", f"no data field names an image file (its keys: {', '.join(keys[:10]) or 'none'}"
                           f"{', ...' if len(keys) > 10 else ''})")


def _image_keys(data: dict, results: Sequence) -> list:
    """The data keys of the images ``results`` are drawn on, in order, when they name them: a result's
    ``source`` "$key", else its ``to_name`` when that is a data key naming an image file (the config's
    ``<Image name="left" value="$left">``, as is usual). Several: a task showing several images."""
    keys = []
    for r in results:
        if not isinstance(r, dict):
            continue
        source, to = r.get("source"), r.get("to_name")
        key = (source[1:] if isinstance(source, str) and source.startswith("$")
               else to if isinstance(to, str) and _is_image_reference(data.get(to)) else None)
        if key is not None and _is_image_reference(data.get(key)) and key not in keys:
            keys.append(key)
    return keys


def _region_kind(result_type, value: dict) -> Optional[str]:
    """polygon, rectangle, ellipse or brush from a result's type and, for a plain ``labels`` result or a
    JSON-MIN region (no type), the geometry its value holds; None when it holds no shape."""
    kind = {"polygonlabels": "polygon", "rectanglelabels": "rectangle", "ellipselabels": "ellipse",
            "brushlabels": "brush", **{t: t for t in _UNLABELLED_TYPES}}.get(result_type)
    if kind:
        return kind
    if "points" in value:
        return "polygon"
    if "rle" in value or "format" in value:
        return "brush"
    if "radiusX" in value or "radiusY" in value:
        return "ellipse"
    if "width" in value and "height" in value:
        return "rectangle"
    if "x" in value and "y" in value:
        return "keypoint"
    return None


def _has_labels_key(value: dict) -> bool:
    return any(isinstance(k, str) and k.endswith("labels") for k in value)


def _labels(value: dict, result_type) -> Optional[list]:
    """The label list of a value: under its type's key, else under the one key ending in 'labels'."""
    if result_type in value:
        return value[result_type]
    keys = [k for k in value if isinstance(k, str) and k.endswith("labels")]
    return value[keys[0]] if len(keys) == 1 else None


def _pick_label(labels, builder: CocoBuilder) -> str:
    labels = [labels] if isinstance(labels, str) else labels
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise Skip("bad_label", f"labels {labels!r} must be a list of names")
    if builder.fixed is not None and len(labels) > 1:
        labels = [x for x in labels if x in builder.fixed] or labels
    if len(labels) > 1:
        raise Skip("ambiguous_label", f"the region has several labels {labels}; one class per instance "
                                      "(--classes keeps only the listed ones)")
    return builder.check_label(labels[0])


def _size(value: dict, key: str):
    v = value.get(key)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def _points(kind: str, value: dict, width: int, height: int) -> np.ndarray:
    """A shape's value (percent) -> (P, 2) pixel points; Skip when a field is missing or wrong."""
    sx, sy = width / 100.0, height / 100.0
    if kind == "polygon":
        points = as_points(value.get("points"), what="polygon points") * np.array([sx, sy])  # (P, 2)
    elif kind == "rectangle":
        x, y, w, h = numbers(*(value.get(k) for k in ("x", "y", "width", "height")),
                             what="rectangle x, y, width, height")
        (angle,) = numbers(value.get("rotation", 0) or 0, what="rectangle rotation")
        corners = np.array([[0.0, 0.0], [w * sx, 0.0], [w * sx, h * sy], [0.0, h * sy]])  # (4, 2)
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        # Clockwise on the screen (y points down) around the top-left corner, as Label Studio saves it.
        turned = corners @ np.array([[c, s], [-s, c]])  # (4, 2): (x c - y s, x s + y c)
        points = turned + np.array([x * sx, y * sy])
    elif kind == "ellipse":
        cx, cy, rx, ry = numbers(*(value.get(k) for k in ("x", "y", "radiusX", "radiusY")),
                                 what="ellipse x, y, radiusX, radiusY")
        (angle,) = numbers(value.get("rotation", 0) or 0, what="ellipse rotation")
        points = ellipse_points(cx * sx, cy * sy, rx * sx, ry * sy, math.radians(angle))
    else:
        raise Skip("unsupported_shape", f"shape {kind!r} is not converted")
    lo = np.array([-_OUTSIDE_MARGIN * width, -_OUTSIDE_MARGIN * height])
    hi = np.array([(1 + _OUTSIDE_MARGIN) * width, (1 + _OUTSIDE_MARGIN) * height])
    if len(points) and ((points < lo) | (points > hi)).any():
        far = points[((points < lo) | (points > hi)).any(axis=1)][0] / np.array([sx, sy])
        raise Skip("bad_coordinates", f"point ({far[0]:.4g}%, {far[1]:.4g}%) lies far outside the image "
                                      "(coordinates are percent 0..100; were pixels imported?)")
    return points


# what becomes of a result a pixel off the image file's size: percent coordinates need no scale
_PIXEL_OFF = "the percent coordinates are laid on the image file as they are (a brush mask resampled to it)"


def _judge_size(report: Report, where: str, given: tuple, image_path: Path, shown: tuple) -> tuple:
    """(how, (x scale, y scale) or orientation) for results whose ``original_width`` x ``original_height``
    ``given`` (W, H) is not the image file's ``shown`` (H, W). Percent coordinates scale by themselves, so
    no such size moves a shape; what it says is told, and it decides a brush mask's scale:

    - ``"stored"``: the photo's stored size while EXIF turns it a quarter. Label Studio shows photos
      upright and its percent coordinates are of that view, but importers and ML backends measure the
      size with PIL without the EXIF turn: the coordinates are used as they are (noted);
    - ``"scaled"``: a resized copy (``common.resized_scale``, said once by name), or a pixel off;
    - ``"stretched"``: another shape. A copy stretched to another aspect ratio (Roboflow's "Stretch to
      640x640") converts right from percent coordinates, as before the resize rule; a crop or another
      image of that name cannot be told from it, so the task is warned about, not skipped (shapes far
      outside the image are still skipped as ``bad_coordinates``)."""
    gw, gh = given
    _, orientation = annotated_size(image_path, (gh, gw))
    if orientation is not None:
        report.note("images whose original_width/original_height is the photo's stored size (before its "
                    "EXIF turn): percent coordinates used as they are")
        report.tell_once("labelstudio_stored_size", where,
                         f"original_width x original_height {gw:g}x{gh:g} is the photo's stored size, before "
                         f"its EXIF orientation {orientation} turns it to {shown[1]}x{shown[0]} as Label "
                         f"Studio shows it: the percent coordinates, of the upright view, are used as they "
                         f"are (others alike are counted in the notes)")
        return "stored", orientation
    scale = (shown[1] / gw, shown[0] / gh)
    try:
        resized_scale(report, where, (gh, gw), shown, pixel_off=_PIXEL_OFF)
        return "scaled", scale
    except Skip as e:
        if e.reason != "image_size_mismatch":
            raise
    report.note("tasks whose original_width/original_height is of another shape than the image file: "
                "percent coordinates laid on the image file")
    # once per file: a dataset stretched to one size (Roboflow's "Stretch to") has it on every task
    report.warn_once("labelstudio_stretched", where,
                     f"original_width x original_height {gw:g}x{gh:g} is of another shape than the image "
                       f"file's {shown[1]}x{shown[0]}: the percent coordinates are laid on the image file as "
                     f"they are (right for a copy stretched to another aspect ratio, and brush masks are "
                     f"stretched alike; wrong for a crop or another image of that name: convert with the "
                     f"images the tasks were drawn on then; other tasks alike are counted in the notes)")
    return "stretched", scale


def _add_region(builder: CocoBuilder, image_id: int, kind: str, value: dict, label: str, *, height: int,
                width: int, verdict: Optional[tuple] = None) -> dict:
    """One shape result onto the image (``height`` x ``width``), its instance returned; ``verdict``:
    ``_judge_size``'s for a result whose size is not the image file's, None otherwise."""
    if kind == "brush":
        if value.get("format", "rle") != "rle":
            raise Skip("unsupported_shape", f"brush format {value.get('format')!r} is not converted "
                                            "(only rle)")
        if verdict is None:
            return builder.add_mask(image_id, label, decode_brush_mask(value.get("rle"), height, width))
        how, scale = verdict
        h, w = int(value["original_height"]), int(value["original_width"])
        if how == "stored" or (h, w) != (value["original_height"], value["original_width"]):
            why = " once EXIF turns it: which way the mask lies is unknown" if how == "stored" else ""
            raise Skip("bad_mask", f"the brush mask is {value['original_width']:g}x"
                                   f"{value['original_height']:g} (original_width x original_height), the "
                                   f"image {width}x{height}{why}")
        # a mask of the size the result gives, resampled to the image as every converter scales masks
        mask = decode_brush_mask(value.get("rle"), h, w)
        return builder.add_regions(image_id, label, [scale_region(MaskPatch(0, 0, mask), scale=scale,
                                                                  width=width, height=height)])
    polygon = to_coco_polygon(_points(kind, value, width, height), width, height)
    return builder.add_polygons(image_id, label, [polygon])


class _Task:
    """One task's image reference and regions [(where, result type or None, value)], from either export."""

    def __init__(self, key: str, reference: str, regions: list):
        self.key, self.reference, self.regions = key, reference, regions


def _task_key(item: dict, index: int) -> str:
    tid = item.get("id")
    return f"task {tid}" if isinstance(tid, (int, str)) and not isinstance(tid, bool) else f"tasks[{index}]"


def _time(record: dict) -> Optional[datetime]:
    """When an annotation or prediction was last changed: ``updated_at``, else ``created_at`` (ISO 8601,
    as Label Studio writes them; a time without zone taken as UTC); None when neither reads as one."""
    for key in ("updated_at", "created_at"):
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            try:
                when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                continue
            return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
    return None


def _latest(records: Sequence[dict]) -> int:
    """The index of the most recently updated of ``records``; the first listed of those without a time
    when none has one, and of equal times."""
    times = [_time(r) for r in records]
    if not any(times):
        return 0
    return max((i for i, t in enumerate(times) if t is not None), key=lambda i: (times[i], -i))


def _dicts(value) -> list:
    return [a for a in value if isinstance(a, dict)] if isinstance(value, list) else []


def _full_task(item: dict, key: str, report: Report, *, where: str,
               predictions: Optional[str] = None) -> list:
    """The task's [_Task], one per image its results are drawn on (a config with several ``<Image>``
    tags: each result's ``source`` / ``to_name`` says which). ``predictions``: why a task without
    annotations is read from its predictions (the file holds no annotation at all, or
    ``--ls-use-predictions``); None: it is not. ``where``: the task in messages."""
    data = item.get("data")
    if not isinstance(data, dict):
        raise Skip("bad_task", "the task has no 'data' object")
    sources, names = _config_hints(item)
    annotations = _dicts(item.get("annotations", item.get("completions")))  # completions: Label Studio < 1.0
    kept = [a for a in annotations if not a.get("was_cancelled")]
    image_keys = _image_keys(data, _all_results(item))
    references = ({k: data[k] for k in image_keys} if len(image_keys) > 1
                  else {None: _image_reference(data, sources=sources, names=names)})
    if len(kept) < len(annotations):
        report.note("cancelled annotations left out", len(annotations) - len(kept))
    if kept:
        if len(kept) > 1:
            report.note(_SEVERAL_ANNOTATIONS)
        chosen = next((a for a in kept if a.get("ground_truth")), None) or kept[_latest(kept)]
    elif annotations:
        raise Skip("cancelled", "every annotation of the task was cancelled (skipped by the annotator)")
    elif predictions and _dicts(item.get("predictions")):
        found = _dicts(item["predictions"])
        report.note(f"tasks read from their predictions ({predictions})")
        if len(found) > 1:
            report.note("tasks with several predictions (the latest taken)")
        chosen = found[_latest(found)]
    elif item.get("predictions"):
        raise Skip("only_predictions", "the task has predictions (model output) but no annotation "
                                       "(--ls-use-predictions takes them)")
    else:
        raise Skip("unannotated", "the task has no annotation")
    results = chosen.get("result")
    if not isinstance(results, list):
        raise Skip("bad_task", "the annotation has no 'result' list")
    regions = _result_regions(results, report)
    if len(references) == 1:
        return [_Task(key, next(iter(references.values())), [r[:3] for r in regions])]
    report.note("tasks with several images (each converted with its own regions)")
    by_image = {k: [] for k in references}
    for region in regions:
        result = results[region[3]]
        keys = _image_keys(data, [result]) if isinstance(result, dict) else []
        if keys:
            by_image[keys[0]].append(region[:3])
        else:
            report.skip(f"{where} {region[0]}", Skip(
                "no_image", f"the result does not say which of the task's images ({', '.join(references)}) "
                            "it is on"))
    return [_Task(f"{key} ({k})", reference, by_image[k]) for k, reference in references.items()]


def _result_regions(results: list, report: Report) -> list:
    """The regions [(where, result type, value, index of its first result)] of an annotation's results.
    The results of one region share its ``id``: a <Labels> control beside a <Rectangle> (<Polygon>, ...)
    tag gives the shape and its labels as two results (the labels one may hold the geometry too, else it
    is taken from the shape), and several label controls on one image (a class and a size group, say)
    give one result each. Their labels are joined into the one region (so it is one instance, or
    skipped as having several labels), counted in the notes (once per region). Only results of other
    controls (``from_name``) on the same image (``to_name``) with the same geometry (or one without)
    are joined: scripts importing pre-annotations often give every region one id, and regions of one
    control sharing an id are distinct regions, never one (``_joins``)."""
    labelled_ids = {r.get("id") for r in results if isinstance(r, dict) and isinstance(r.get("value"), dict)
                    and _labels(r["value"], r.get("type")) and r.get("id") is not None}
    shapes = {r["id"]: r for r in results if isinstance(r, dict) and r.get("type") in _UNLABELLED_TYPES
              and isinstance(r.get("value"), dict) and r.get("id") is not None}
    regions, by_id = [], {}  # by_id: region id -> indices of its regions in ``regions``
    controls: dict = {}  # index in ``regions`` -> (the from_names joined into it, its to_name)
    joined_regions = set()
    for i, r in enumerate(results):
        where = f"result[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("value"), dict):
            kind = r.get("type") if isinstance(r, dict) else None
            if kind == "relation":
                report.note("relations left out")
            else:
                regions.append((where, None, None, i))  # reported as a bad result
            continue
        value = {**r["value"], **{k: r[k] for k in ("original_width", "original_height", "image_rotation")
                                  if k in r}}
        kind = r.get("type")
        if isinstance(r.get("id"), (str, int)):  # the region a keypoint's parentID names
            value["_rid"] = r["id"]
        if kind in _POINT_TYPES:  # laid onto the regions once those are converted (labelstudio_keypoints)
            regions.append((where, kind, {**value, "_parent": r.get("parentID")}, i))
        elif kind in _SHAPE_TYPES:
            shape = shapes.get(r.get("id"))
            if _region_kind(kind, value) is None and shape is not None:
                kind, value = shape["type"], {**shape["value"], **value}
            rid = r.get("id")
            from_name, to_name = r.get("from_name"), r.get("to_name")
            same = by_id.get(rid, ()) if isinstance(rid, (str, int)) else ()
            target = next((j for j in same if _joins(regions[j], controls[j], kind, value, from_name,
                                                     to_name)), None)
            if target is not None and _join_labels(regions, target, kind, value):
                controls[target][0].add(from_name)
                if target not in joined_regions:
                    joined_regions.add(target)
                    report.note("regions labelled by several label controls (their labels joined)")
                continue
            if isinstance(rid, (str, int)):
                by_id.setdefault(rid, []).append(len(regions))
            controls[len(regions)] = ({from_name}, to_name)
            regions.append((where, kind, value, i))
        elif kind in _UNLABELLED_TYPES:
            if r.get("id") not in labelled_ids:  # else its labels come in a 'labels' result of the same id
                report.note("results without labels left out")
        else:
            report.note(f"{kind or 'untyped'} results (not regions) left out")
    return regions


def _joins(region: tuple, control: tuple, kind, value: dict, from_name, to_name) -> bool:
    """Whether a result (``kind``, ``value``, of control ``from_name`` on ``to_name``) sharing the id of
    ``region`` (its ``control``: the from_names joined into it, its to_name) is another control's labels
    of that region: a control not yet joined into it, the same image, and the same geometry (or either
    holding none). A region id given to several regions (pre-annotations imported by a script) or a
    control's result repeated is no join: each is a region of its own."""
    from_names, region_to = control
    if from_name is None or from_name in from_names or to_name != region_to:
        return False
    _, region_kind, region_value, _ = region
    if _region_kind(region_kind, region_value) is None or _region_kind(kind, value) is None:
        return True
    return _geometry(region_value) == _geometry(value)


def _join_labels(regions: list, index: int, kind, value: dict) -> bool:
    """Add the labels of another result of region ``regions[index]`` (``kind``, ``value``) to it; the
    region keeps its first result's geometry (the second's when the first holds none). False when either
    label list is not a list of names (then each is converted, and reported, on its own)."""
    where, first_kind, first_value, i = regions[index]
    first, more = _labels(first_value, first_kind), _labels(value, kind)
    first = [first] if isinstance(first, str) else first
    more = [more] if isinstance(more, str) else more
    if not all(isinstance(x, list) and all(isinstance(n, str) for n in x) for x in (first, more)):
        return False
    if _region_kind(first_kind, first_value) is None:
        first_kind, first_value = kind, value
    labels_key = first_kind if first_kind in first_value else next(
        (k for k in first_value if isinstance(k, str) and k.endswith("labels")), first_kind)
    joined = list(dict.fromkeys(first + more))
    regions[index] = (where, first_kind, {**first_value, labels_key: joined}, i)
    return True


def _geometry(value: dict) -> str:
    """A region's geometry as text (JSON-MIN's, or a result's value): its value without the label lists."""
    return json.dumps({k: v for k, v in value.items() if not (isinstance(k, str) and k.endswith("labels"))},
                      sort_keys=True, default=str)


def _min_task(item: dict, key: str, report: Report) -> _Task:
    reference = _image_reference(item, min_record=True)
    regions, by_geometry = [], {}
    for field, value in item.items():
        if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
            continue
        if not any(_has_labels_key(v) for v in value):
            continue  # a list of something else among the task's data fields
        for i, v in enumerate(value):
            if "keypointlabels" in v:  # no id in JSON-MIN: laid onto the region that contains it
                regions.append((f"{field}[{i}]", "keypointlabels", v, i))
                continue
            # Several label controls on one region: JSON-MIN lists it under each control's name, with the
            # same geometry (no region id is kept); its labels are joined, as for the full export.
            shape = _geometry(v) if _region_kind(None, v) not in (None, "keypoint") else None
            seen = by_geometry.get(shape)
            if seen is not None and seen[0] != field and _join_labels(regions, seen[1], None, v):
                report.note("regions labelled by several label controls (their labels joined)")
                continue
            if shape is not None and shape not in by_geometry:
                by_geometry[shape] = (field, len(regions))
            regions.append((f"{field}[{i}]", None, v, i))
    if not regions and "annotation_id" in item and item["annotation_id"] is None:
        # Label Studio's converter writes a task without annotation ("all tasks" export) as its data with
        # annotation_id null: not a labelled image without objects
        raise Skip("unannotated", "the task has no annotation (annotation_id null)")
    return _Task(key, reference, [r[:3] for r in regions])


def _convert_task(task: _Task, *, where: str, builder: CocoBuilder, report: Report, finder: _ImageFinder,
                  source: str) -> None:
    image_path = finder.find(task.reference, report=report, where=where)
    height, width = image_size(image_path)
    image_id = builder.add_image(image_path, height=height, width=width, source=source)
    judged: dict = {}  # (W, H) the results give -> ``_judge_size``'s verdict
    keypoints, converted = [], []  # keypoint results; (result id, instance) of the regions converted
    for name, result_type, value in task.regions:
        try:
            if not isinstance(value, dict):
                raise Skip("bad_result", "a result must be a JSON object with a 'value' object")
            labels = _labels(value, result_type)
            kind = _region_kind(result_type, value)
            if kind == "keypoint" or result_type in _POINT_TYPES:
                keypoints.append((name, value))
                continue
            if kind is None:
                raise Skip("unsupported_shape", f"the region holds no polygon, rectangle, ellipse or brush "
                                                f"(keys {sorted(value)[:8]})")
            if not labels:  # None or []: a shape drawn without choosing a label
                report.note("results without labels left out")
                continue
            labels = [labels] if isinstance(labels, str) else labels  # a bare name: stripped as a listed one
            if isinstance(labels, list):  # "box " is "box", as the LabelMe, CVAT and YOLO readers read it
                labels = [stripped_label(x, report=report, where=where) for x in labels]
            label = _pick_label(labels, builder)
            rotation = value.get("image_rotation") or 0
            if rotation:
                raise Skip("image_rotation", f"drawn on the image turned by {rotation} degrees in Label "
                                             "Studio (image_rotation); its coordinates are of the turned "
                                             "view: annotate it unturned")
            given = (_size(value, "original_width"), _size(value, "original_height"))
            verdict = None  # the image file is the size the result gives, or it gives none
            if None not in given and given != (width, height):
                if given not in judged:  # said once per task and size
                    judged[given] = _judge_size(report, where, given, image_path, (height, width))
                verdict = judged[given]
            ann = _add_region(builder, image_id, kind, value, label, height=height, width=width,
                              verdict=verdict)
            converted.append((value.get("_rid"), ann))
        except Skip as e:
            report.skip(f"{where} {name}", e)
    if keypoints:
        add_task_keypoints(builder, keypoints, converted, report=report, where=where, width=width,
                           height=height)


def _tasks(data) -> list:
    if isinstance(data, dict) and {"images", "annotations", "categories"} <= set(data):
        raise Skip("not_labelstudio", "a COCO instance file, not a Label Studio export: train on it as it "
                                      "is (--train-json)")
    if isinstance(data, dict) and ("data" in data or "annotations" in data):
        return [data]  # one task per file (cloud target storage)
    if not isinstance(data, list):
        raise Skip("not_labelstudio", f"not a Label Studio export (a JSON list of tasks is expected, not "
                                      f"{type(data).__name__})")
    return data


def _only_predictions(tasks: list) -> bool:
    """No task of the file has an annotation and some have predictions: tasks written for import
    (``predict --export labelstudio``, other pre-annotation tools) read back as they are."""
    full = [t for t in tasks if isinstance(t, dict) and "data" in t]
    return (not any(t.get("annotations") or t.get("completions") for t in full)
            and any(t.get("predictions") for t in full))


def _is_full(item) -> bool:
    return isinstance(item, dict) and ("data" in item or "annotations" in item or "completions" in item)


def _min_choices(tasks: list, report: Report) -> set:
    """Indices of the JSON-MIN records taken: of the records of one task id, the latest (``_latest``)."""
    by_task = defaultdict(list)
    for index, item in enumerate(tasks):
        if isinstance(item, dict) and not _is_full(item):
            key = _task_key(item, index)
            by_task[index if key.startswith("tasks[") else key].append(index)
    several = sum(len(indices) > 1 for indices in by_task.values())
    if several:
        report.note(_SEVERAL_MIN_RECORDS, several)
    return {indices[_latest([tasks[i] for i in indices])] for indices in by_task.values()}


def _first_reference(tasks: list) -> Optional[str]:
    """The image reference of the file's first task that names one (None: no task does)."""
    for item in tasks:
        if not isinstance(item, dict):
            continue
        data = item.get("data") if _is_full(item) else item
        if not isinstance(data, dict):
            continue
        try:
            sources, names = _config_hints(item) if _is_full(item) else ((), ())
            return _image_reference(data, sources=sources, names=names)
        except Skip:
            continue
    return None


def _holds_image(folder: Path, reference: Optional[str]) -> bool:
    """Whether ``folder`` holds the image ``reference`` names, at its path relative to the folder (or
    by its file name directly in it); no walk of the folder. True when there is no reference."""
    if reference is None:
        return True
    relative, name = _parse_reference(reference)
    relative = _inside(relative)
    return bool((relative and (folder / relative).is_file()) or (name and (folder / name).is_file()))


def _recorded_folder(path: Path, name: str, tasks: list, report: Report) -> Optional[Path]:
    """The images folder the file's tasks record (``IMAGES_FOLDER_KEY``, relative to the file's folder,
    normalised) when it is one relative path to an existing folder holding the first task's image; None
    (with a line saying why, when the tasks record something) otherwise."""
    values = []
    for item in tasks:
        data = item.get("data") if isinstance(item, dict) and _is_full(item) else item
        value = data.get(IMAGES_FOLDER_KEY) if isinstance(data, dict) else None
        if value is not None and value not in values:
            values.append(value)
            if len(values) > 1:  # different folders: the rest need not be looked at
                break
    if not values:
        return None
    value = values[0]
    if len(values) > 1:
        why = "different folders"
    else:
        folder, why = usable_recorded_folder(path, value)
        if folder is not None and not _holds_image(folder, _first_reference(tasks)):
            folder, why = None, (f"{_short(value)!r}, a folder not holding the first task's image (the "
                                 "file was moved?)")
        if folder is not None:
            report.tell(name, f"images looked for under {folder} (the folder predict recorded in it)")
            return folder
    report.tell(name, recorded_folder_unusable(f"its tasks' {IMAGES_FOLDER_KEY}", why))
    return None


def _recorded_classes(tasks: list) -> list:
    """The class names the file's tasks record (``CLASSES_KEY``, the first task's list that is one of
    strings), in their order; [] when none does."""
    for item in tasks:
        data = item.get("data") if isinstance(item, dict) and _is_full(item) else item
        value = data.get(CLASSES_KEY) if isinstance(data, dict) else None
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return value
    return []


def _convert_file(path: Path, name: str, *, builder: CocoBuilder, report: Report,
                  finder: _ImageFinder, use_predictions: bool = False, finders: Optional[dict] = None):
    """``finders``: {folder: its finder}, the recorded folders' (``_recorded_folder``) to use instead of
    ``finder``; None: ``finder`` only. Returns the recorded folder used, or None."""
    tasks = _tasks(read_json(path))
    folder = _recorded_folder(path, name, tasks, report) if finders is not None else None
    if folder is not None:
        finder = finders.setdefault(folder, _ImageFinder(folder))
    predictions = ("no annotation in the file" if _only_predictions(tasks)
                   else "--ls-use-predictions" if use_predictions else None)
    taken = _min_choices(tasks, report)
    builder.declare(_recorded_classes(tasks))  # predict's: the model's class order, numbered first
    for index, item in enumerate(tasks):
        key = _task_key(item, index) if isinstance(item, dict) else f"tasks[{index}]"
        where = f"{name}: {key}"
        try:
            if not isinstance(item, dict):
                raise Skip("bad_task", f"a task must be a JSON object, not {type(item).__name__}")
            if _is_full(item):
                tasks_of_item = _full_task(item, key, report, where=where, predictions=predictions)
            else:  # JSON-MIN: one record per annotation
                if index not in taken:  # another annotation of its task (counted in _min_choices)
                    continue
                tasks_of_item = [_min_task(item, key, report)]
        except Skip as e:
            report.skip(where, e)
            continue
        for task in tasks_of_item:
            try:
                _convert_task(task, where=f"{name}: {task.key}", builder=builder, report=report,
                              finder=finder, source=name)
            except Skip as e:
                report.skip(f"{name}: {task.key}", e)
    return folder


def read_labelstudio(files: Sequence[Path], *, builder: CocoBuilder, report: Report, images: Path,
                     names_from: Optional[Path] = None, use_predictions: bool = False,
                     recorded: bool = False) -> dict:
    """Add the tasks of Label Studio export ``files`` to ``builder``, their images found under ``images``
    (with ``recorded``: under the folder a file's tasks record, ``IMAGES_FOLDER_KEY``, when there is
    one); messages name each file relative to ``names_from`` (default: its folder). ``use_predictions``:
    a task without annotations is read from its latest prediction (else only in a file without
    annotations). Returns {file: the recorded folder its images were looked for under, or None}."""
    finder = _ImageFinder(Path(images))
    finders: Optional[dict] = {} if recorded else None
    used = {}
    for path in files:
        path = Path(path)
        name = Path(os.path.relpath(path, names_from)).as_posix() if names_from else path.name
        used[path] = None
        try:
            used[path] = _convert_file(path, name, builder=builder, report=report, finder=finder,
                                       use_predictions=use_predictions, finders=finders)
        except Skip as e:
            report.skip(name, e)
    finish_keypoints(builder, report=report, where=", ".join(sorted({p.name for p in map(Path, files)})))
    return used
