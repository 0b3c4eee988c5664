"""COCO files as some annotation tools export them, read as their users meant them.

VIA 3's "Export as COCO" writes (its project files are converted by ``convert-data --from via``):

- ``"width": -1, "height": -1`` (VIA does not keep the size): an unknown size, removed, so that the
  loader measures the image file as it does for records without a size;
- a polygon's ``segmentation`` as one flat list ``[x1, y1, x2, y2, ...]``, not wrapped in the list of
  polygons COCO expects: wrapped, ``[[x1, y1, ...]]`` (a flat list of at least 6 numbers, even length);
- ``"bbox": [null, null, null, null]`` (or ``[[]]``): its polygons' extent (as COCO's files give it),
  else removed, so that the loader gives the annotation its segmentation's box;
- ``"area": null``: removed, so that a reader that needs it computes the mask's (the evaluator; the
  loader computes areas itself); so is an ``"area": 0`` beside a box of positive size (keypoint-only
  converters write it; keypoint AP's OKS divides by it), said in its own note;
- (CVAT's "COCO 1.0" export) a rotated box as its unturned ``bbox``, no segmentation and
  ``"attributes": {"rotation": degrees}`` (clockwise on screen about the box's centre, as CVAT's own
  XML gives it and ``formats.cvat`` reads it): its ``bbox`` the extent of the turned box, clipped to
  its image as that reader clips it (a detector's
  boxes are upright), the ``rotation`` taken out of the copy so that a file written from it
  (``merge-data``) is not turned a second time when read;
- circles, ellipses and points as ``"segmentation": [[]]``: left to the loader, which reports them as
  empty shapes (``mask_codec``); ``"iscrowd": false`` needs nothing (read as 0), nor category ids from 0.

Each reading is said in one note (``warn_tool_exports``: as warnings, for ``eval --results``'s ground
truth). The parsed file is never modified: the records changed are copies.

A reader that measures no image itself (``eval --results``: no dataset is built) gives the unknown sizes
their files' first (``sizes_from_files``) when a mask or keypoints need them (``needs_sizes``): without
them a mask cannot be checked nor scored; boxes need none, and no folder is looked for then.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np

from maskrcnn.data.formats.geometry import clip_polygon
from maskrcnn.data.mask_codec import rle_counts_from_string

__all__ = [
    "flat_polygon", "has_unknown_sizes", "needs_sizes", "read_tool_exports", "sizes_from_files",
    "warn_tool_exports",
]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _unknown_size(img) -> bool:
    return isinstance(img, dict) and img.get("width") == -1 and img.get("height") == -1


def flat_polygon(seg) -> bool:
    """Whether ``seg`` is one polygon not wrapped in a list: ``[x1, y1, ...]``, at least 3 points of finite
    numbers. The one rule for the ground truth (read here) and results files (``engine/results_file``)."""
    return isinstance(seg, list) and len(seg) >= 6 and len(seg) % 2 == 0 and all(map(_number, seg))


def _no_box(bbox) -> bool:
    """VIA 3's box of a shape it did not measure: [null, null, null, null] or [[]]."""
    return isinstance(bbox, list) and bool(bbox) and all(v is None or v == [] for v in bbox)


def _polygons_extent(seg):
    """[x, y, w, h] around the vertices of a list of polygons; None when it is no such list."""
    if not (isinstance(seg, list) and seg and all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                                                  and all(map(_number, p)) for p in seg)):
        return None
    xs = [v for p in seg for v in p[0::2]]
    ys = [v for p in seg for v in p[1::2]]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _rle_extent(seg):
    """[x, y, w, h] around the pixels of an RLE segmentation (its runs read, no mask made); None when it
    is no readable RLE or covers no pixel. The runs go down the columns: a run within one column spans
    its rows, one that crosses into the next column holds that column's last row and the next one's
    first."""
    size = seg.get("size") if isinstance(seg, dict) else None
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        return None
    height, width = size
    counts = seg.get("counts")
    if isinstance(counts, list) and not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
        return None  # 5.7 was cut to 5 by the int64 array, where a size of 4.0 is refused above
    try:
        runs = (rle_counts_from_string(counts) if isinstance(counts, (str, bytes))
                else np.asarray(counts, dtype=np.int64) if isinstance(counts, list) else None)
    except (ValueError, TypeError, OverflowError):
        return None
    if runs is None or runs.ndim != 1 or (runs < 0).any() or runs.sum() > height * width:
        return None
    on = (np.arange(len(runs)) % 2 == 1) & (runs > 0)  # the runs of 1s: every second, from the second
    if not on.any():
        return None
    ends = np.cumsum(runs)
    first, last = (ends - runs)[on], ends[on] - 1  # pixel indices, column-major
    one_column = first // height == last // height
    x0, x1 = int((first // height).min()), int((last // height).max()) + 1
    y0 = int(np.where(one_column, first % height, 0).min())
    y1 = int(np.where(one_column, last % height, height - 1).max()) + 1
    return [x0, y0, x1 - x0, y1 - y0]


def _box_rotation(a: dict, seg, bbox) -> float:
    """The degrees CVAT's COCO export turned a box-only annotation by (``attributes.rotation``: a finite
    number, not a whole turn, beside a bbox of 4 numbers and no segmentation); 0.0 for any other."""
    attributes = a.get("attributes")
    if not isinstance(attributes, dict) or seg not in (None, [], {}):
        return 0.0
    degrees = attributes.get("rotation")
    if not _number(degrees) or degrees % 360 == 0 or not (isinstance(bbox, list) and len(bbox) == 4
                                                         and all(map(_number, bbox))):
        return 0.0
    return float(degrees)


def _turned_box(bbox: list, degrees: float, size=None) -> list:
    """[x, y, w, h] around the box ``bbox`` turned by ``degrees`` clockwise on screen (y points down)
    about its centre, clipped to the image's ``size`` (W, H; None: unknown, unclipped) as the CVAT XML
    reader clips the turned box: the extent of its part inside the image, not of corners past the border
    (which the loader would clip only afterwards, to a wider box, and warn of as a wrong image size)."""
    x, y, w, h = (float(v) for v in bbox)
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    cx, cy = x + w / 2.0, y + h / 2.0
    half = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2.0  # (4, 2) corners about the centre
    corners = half @ np.array([[c, s], [-s, c]]) + (cx, cy)  # (4, 2): clockwise on screen
    if size is not None:
        inside = clip_polygon(corners, float(size[0]), float(size[1]))  # (Q, 2)
        corners = inside if len(inside) >= 3 else corners  # wholly outside: left to the loader to refuse
    (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
    return [round(float(v), 6) for v in (x0, y0, x1 - x0, y1 - y0)]


def _image_sizes(images: list) -> dict:
    """{image id: (W, H)} of the image records that give a positive width and height."""
    return {img.get("id"): (img["width"], img["height"]) for img in images
            if isinstance(img, dict) and all(_number(img.get(k)) and img[k] > 0 for k in ("width", "height"))
            and isinstance(img.get("id"), (int, str))}


def _read_annotation(a: dict, flat: bool, unboxed: bool, unmeasured: bool, turn: float = 0.0,
                     size=None) -> dict:
    """A copy of the annotation ``a`` with the readings its flags name (``size``: its image's (W, H), or
    None)."""
    a = dict(a)
    if turn:
        a["bbox"] = _turned_box(a["bbox"], turn, size)
        a["attributes"] = {k: v for k, v in a["attributes"].items() if k != "rotation"}
    if flat:
        a["segmentation"] = [a["segmentation"]]
    if unboxed:
        extent = _polygons_extent(a.get("segmentation")) or _rle_extent(a.get("segmentation"))
        if extent is None:
            del a["bbox"]
        else:
            a["bbox"] = extent
    if unmeasured:
        del a["area"]
    return a


# how a reader takes the images of unknown size: the loader measures their files; the evaluator reads none
_SIZES_MEASURED = "their files' sizes are used"
_SIZES_LEFT = "left unknown (no image file is read: their boxes need no size, a mask on them is refused)"


def read_tool_exports(data: dict, source: str, *, sizes_how: str = _SIZES_MEASURED) -> tuple:
    """(``data`` with the readings above, [notes naming ``source``]); ``data`` itself when nothing
    needed reading. ``sizes_how``: what the reader does with the sizes left unknown, said in the note.
    One pass over the annotations (a COCO-train-sized file reads through it at each
    dataset built and each ground truth loaded), copying the list only once a record needs reading."""
    images, annotations = data.get("images"), data.get("annotations")
    images = images if isinstance(images, list) else []
    annotations = annotations if isinstance(annotations, list) else []
    sized = sum(map(_unknown_size, images))
    wrapped = unboxed = unmeasured = zeroed = turned = zero_boxes = 0
    unread = []  # ids of the annotations whose attributes.rotation is not a number: read upright
    fixed = None  # the annotation list with the records read otherwise: a copy, made at the first one
    sizes = None  # {image id: (W, H)}, made at the first turned box (which is clipped to its image)
    for i, a in enumerate(annotations):
        if not isinstance(a, dict):
            continue
        seg, bbox = a.get("segmentation"), a.get("bbox")
        # the cheap tests first: most records are COCO's own ([[...]] polygons, a box of numbers, an area)
        flat = isinstance(seg, list) and len(seg) >= 6 and flat_polygon(seg)
        no_box = isinstance(bbox, list) and bool(bbox) and bbox[0] in (None, []) and _no_box(bbox)
        # [0, 0, 0, 0] beside a mask (hand scripts write it for "not measured"): skipped as a bad box, the
        # good mask was lost
        zero_box = (isinstance(bbox, list) and len(bbox) == 4 and bbox[0] == 0 and seg not in (None, [], {})
                    and all(_number(v) and v == 0 for v in bbox))
        null_area = a.get("area", 0) is None  # present and null
        # not one the loader skips anyway for its segmentation (a 2-point polygon): the note counts repairs
        zero = not null_area and _zero_area(a.get("area"), bbox) and _some_shape(seg)
        turn = _box_rotation(a, seg, bbox) if "attributes" in a else 0.0
        if not turn and "attributes" in a and seg in (None, [], {}) \
                and _unreadable_rotation(a["attributes"]):
            unread.append(a.get("id", f"annotations[{i}]"))
        if flat or no_box or zero_box or null_area or zero or turn:
            if fixed is None:
                fixed = list(annotations)
            size = None
            if turn and isinstance(a.get("image_id"), (int, str)):  # an id a dict can look up
                sizes = _image_sizes(images) if sizes is None else sizes
                size = sizes.get(a["image_id"])
            # an area 0 beside the zero box is as unmeasured as the box
            unmeasured_area = null_area or zero or (zero_box and a.get("area") == 0)
            fixed[i] = _read_annotation(a, flat, no_box or zero_box, unmeasured_area, turn, size)
            # a box taken from the segmentation is said here; one that gives none (a 2-point polygon, an
            # empty RLE) is left without a bbox for the loader to refuse for its segmentation
            boxed = "bbox" in fixed[i]
            wrapped, unmeasured = wrapped + flat, unmeasured + null_area
            unboxed += no_box and boxed
            zero_boxes += zero_box and boxed
            zeroed += zero
            turned += bool(turn)
    if not sized and fixed is None and not unread:
        return data, []
    out = dict(data)
    if sized:
        out["images"] = [{k: v for k, v in img.items() if k not in ("width", "height")}
                         if _unknown_size(img) else img for img in images]
    if fixed is not None:
        out["annotations"] = fixed
    said = (  # (count, what those records are, as VIA 3 exports them, and how they are read)
        (sized, "images have width and height -1, unknown", sizes_how),
        (wrapped, "segmentations are one flat polygon [x1, y1, ...] not wrapped in a list",
         "read as [[x1, y1, ...]]"),
        (unboxed, "annotations have a bbox of nulls", "their segmentation's box is used"),
        (unmeasured, "annotations have area null", "the mask's area is used"),
    )
    notes = [f"{source}: {n} {what} (as VIA 3 exports them): {how}" for n, what, how in said if n]
    if zero_boxes:
        notes.append(f"{source}: {zero_boxes} annotations have bbox [0, 0, 0, 0] beside a segmentation: "
                     f"their segmentation's box is used")
    if zeroed:
        notes.append(f"{source}: {zeroed} annotations with a box of positive size have area 0 (keypoint-only "
                     f"converters write it): read as without one, the mask's area is used, else the box's "
                     f"(keypoint AP's OKS divides by it: with 0, every keypoint not pixel-exact is a miss)")
    if turned:
        notes.append(f"{source}: {turned} box-only annotations have attributes.rotation (rotated boxes, as "
                     f"CVAT's COCO export writes them): each read as its box turned clockwise about its "
                     f"centre, its bbox the extent of the turned box's part inside the image")
    if unread:
        shown = ", ".join(map(str, unread[:5])) + (f" and {len(unread) - 5} more" if len(unread) > 5 else "")
        notes.append(f"{source}: {len(unread)} annotations have an attributes.rotation that is not a finite "
                     f"number (annotation id {shown}): their boxes are read upright")
    return out, notes


def _unreadable_rotation(attributes) -> bool:
    """Whether ``attributes`` (an annotation's) holds a ``rotation`` that is not a finite number."""
    return isinstance(attributes, dict) and "rotation" in attributes and attributes["rotation"] is not None \
        and not _number(attributes["rotation"])


def _some_shape(seg) -> bool:
    """Whether ``seg`` (an annotation's segmentation) leaves the annotation something to train on: none
    (box-only), an RLE, or a polygon list with one polygon of at least 3 points (flat or wrapped). The
    loader skips the others ("segmentation has no polygon with at least 3 points")."""
    if not isinstance(seg, list) or not seg:
        return True
    if not isinstance(seg[0], (list, tuple)):  # one flat polygon, read as wrapped
        return len(seg) >= 6
    return any(isinstance(p, (list, tuple)) and len(p) >= 6 for p in seg)


def _zero_area(area, bbox) -> bool:
    """An area of 0 beside a box of positive size: no object has it (the OKS scale, AP 0 silently)."""
    if isinstance(area, bool) or area != 0 or not isinstance(bbox, list) or len(bbox) != 4:
        return False
    return all(_number(v) and v > 0 for v in bbox[2:])


def warn_tool_exports(data: dict, source: str) -> dict:
    """``read_tool_exports`` for a reader that has no report of its own and reads no image (the evaluator:
    ``eval --results`` gave the sizes a mask needs first, ``sizes_from_files``): each note a warning."""
    data, notes = read_tool_exports(data, source, sizes_how=_SIZES_LEFT)
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return data


def _sizeless(img) -> bool:
    """Width and height -1 (VIA 3) or both absent or null (makesense.ai, hand-made files)."""
    return _unknown_size(img) or (isinstance(img, dict) and img.get("width") is None
                                  and img.get("height") is None)


def has_unknown_sizes(data: dict) -> bool:
    """Whether an image of ``data`` has width and height -1 or none."""
    images = data.get("images") if isinstance(data, dict) else None
    return isinstance(images, list) and any(map(_sizeless, images))


def _hashable_id(v) -> bool:
    """An image id that can be looked up: an int or a str (a list or a dict, malformed, cannot)."""
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _needs_size(annotations: list) -> set:
    """Ids of the images whose annotations cannot be checked without the image's size: a mask or
    keypoints (a box alone can). Malformed ids (not an int or a str) are left to the ground truth's own
    checks."""
    from maskrcnn.data.mask_codec import is_empty_segmentation

    return {a.get("image_id") for a in annotations if isinstance(a, dict) and _hashable_id(a.get("image_id"))
            and (not is_empty_segmentation(a.get("segmentation")) or a.get("keypoints"))}


def needs_sizes(data: dict) -> bool:
    """Whether an image of unknown size (``_sizeless``) has annotations that need its size (a mask or
    keypoints): only then are image files read (``sizes_from_files``)."""
    if not has_unknown_sizes(data):
        return False
    annotations = data.get("annotations")
    needed = _needs_size(annotations if isinstance(annotations, list) else [])
    return any(_sizeless(img) and _hashable_id(img.get("id")) and img.get("id") in needed
               for img in data["images"])


def _image_file(folder: Path, name: str):
    """The file of an image named ``name`` under ``folder`` (its file_name, else its last part); None
    when there is none or the name cannot be a path here (too long a part, a NUL byte)."""
    if not name:
        return None
    for path in (folder / name, folder / Path(name).name):
        try:
            if path.is_file():
                return path
        except (OSError, ValueError):  # ENAMETOOLONG, an embedded NUL
            continue
    return None


def _size_problem(img: dict, name: str, path: Path, error) -> str:
    """Why the image ``img`` (file_name ``name``), which needs its size, has none: its file ``path`` is
    not found (``error`` None) or cannot be read (``error``)."""
    field = "width and height -1" if _unknown_size(img) else "no width and height"
    why = "is not found" if error is None else "cannot be read: " + str(error).removeprefix(f"{path}: ")
    return f"image id {img.get('id')!r} ({name!r}) has {field} and its file {path} {why}"


def sizes_from_files(data: dict, image_dir: Union[str, os.PathLike], source: str, *, hint: str = "") -> tuple:
    """(``data`` with every image of unknown size (``_sizeless``) given its file's (under ``image_dir``,
    by its file_name, else its last part; EXIF orientation applied, as the loader measures it), [notes]);
    ``data`` itself when no size is unknown. ValueError naming ``source``, the images (id, file_name) and
    the field when an image whose annotations need its size has no readable file; an image that needs
    none (no annotation, or boxes only) keeps its unknown size. ``hint``: how to fix it, said last."""
    from maskrcnn.data.images import ImageReadError, image_size

    if not has_unknown_sizes(data):
        return data, []
    images = data["images"]
    annotations = data.get("annotations")
    needed = _needs_size(annotations if isinstance(annotations, list) else [])
    folder, out, measured, problems = Path(image_dir), [], 0, []
    for img in images:
        if not _sizeless(img):
            out.append(img)
            continue
        name = str(img.get("file_name") or "").replace("\\", "/")
        needs = _hashable_id(img.get("id")) and img.get("id") in needed
        path = _image_file(folder, name)
        if path is None:
            if needs:
                problems.append(_size_problem(img, name, folder / name, None))
            out.append(img)
            continue
        try:
            height, width = image_size(path)
        except (ImageReadError, OSError, ValueError) as e:
            if needs:
                problems.append(_size_problem(img, name, path, e))
            out.append(img)
            continue
        out.append({**img, "height": int(height), "width": int(width)})
        measured += 1
    if problems:
        raise ValueError(f"{source}: {len(problems)} images of unknown size whose masks need it: "
                         + "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
                         + (f" ({hint})" if hint else ""))
    notes = [f"{source}: {measured} images without a size (width and height -1, as VIA 3 exports them, "
             f"or none): read from their files in {folder}"] if measured else []
    return {**data, "images": out}, notes
