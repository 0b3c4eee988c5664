"""LabelMe annotation files (one JSON file per image) -> COCO instances.

A file: ``{"shapes": [{"label", "points": [[x, y], ...], "group_id", "shape_type", ...}, ...],
"imagePath", "imageData", "imageHeight", "imageWidth"}``.

The rules are those of labelme's own ``labelme2coco`` example unless said:
- Shapes with the same label and the same ``group_id`` are one instance (their polygons together form
  its mask); a shape without ``group_id`` is an instance of its own.
- ``__ignore__`` shapes are left out (labelme2coco drops them; they are counted in the notes, not
  written as crowd regions: LabelMe has no notion of a crowd, and an ignored shape is often a mistake
  the annotator wanted gone rather than a region the evaluation should forgive).
- ``polygon`` (>= 3 points), ``rectangle`` (two opposite corners; or its four corners, as X-AnyLabeling
  writes it), ``rotation`` (X-AnyLabeling's rotated box: its four corners in order; its ``direction``,
  the angle those corners already carry, is not needed) and ``circle`` (the centre and a point on the
  circle) become COCO polygons clipped to the image; ``mask`` (labelme >= 5.3: a base64 PNG laid on
  the pixels x1..x2, y1..y2 of its two points, as labelme's ``shapes_to_label`` lays it) a mask; an
  instance with a mask among its shapes is written as RLE. Types without an area (``line``,
  ``linestrip``, ``point``, ``points``) are reported and skipped.
- The image is ``imagePath`` relative to the JSON file's folder, else a file of that name beside the
  JSON file, else (``--images``) ``imagePath`` or its file name under that folder, else the one file
  of one of those folders whose name differs from it only in case (a name written on Windows or macOS;
  with a warning), else ``imageData`` (the
  image file's bytes in base64, as labelme stores them), written
  unchanged to ``embedded_dir`` under the JSON file's relative path with the image's own extension.
  Embedded images and mask PNGs are opened by ``images.open_image``: one over the pixel limit skips its
  file (or shape) as ``image_too_large``, as an image file over it does.
- The image's own size is used. ``imageHeight`` / ``imageWidth`` that differ: a resized copy (the same
  shape) has its shapes scaled to it, an image of another shape is skipped as ``image_size_mismatch``
  (``common.resized_scale``, the rule of every converter; a pixel off: a warning); absent or 0, a
  warning. When they are the
  stored size of a photo that EXIF turns by a quarter (a tool that showed the stored pixels), the
  shapes lie on those pixels: they are cut to them, then turned with the image
  (``common.annotated_size``, the COCO loader's rule).
- Categories (without ``--classes``): the labels met, sorted by name, after the classes the files
  ``predict --export labelme`` writes record (``CLASSES_KEY``: the model's classes in its order; LabelMe
  keeps a file's unknown keys when it saves it), numbered first in that order, a class without
  instances included: such files read back in the model's class order (ids 1..K; the model's own
  category ids only when they are 1..K without gaps).
- Files are converted by folder, then by name without the extension: ``a.json`` before its copy
  ``a (copy).json``; a second file naming an image already converted is skipped as
  ``duplicate_image``, with the count of its shapes left out.
- A label's surrounding spaces are stripped ("box " is "box", as labelme's label dialog strips them),
  said once per label.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from maskrcnn.checkpoint import atomic_write_bytes
from maskrcnn.data.formats.common import (
    CocoBuilder,
    MaskPatch,
    Report,
    Skip,
    annotated_size,
    case_only_match,
    given_size,
    read_json,
    resized_scale,
    stored_pixels_told,
    stripped_label,
)
from maskrcnn.data.formats.geometry import (
    as_points,
    circle_points,
    rectangle_points,
    scale_region,
    to_coco_polygon,
    turn_region,
)
from maskrcnn.data.images import TOO_LARGE, ImageReadError, open_image

__all__ = ["CLASSES_KEY", "IGNORE_LABEL", "read_labelme"]

IGNORE_LABEL = "__ignore__"
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif"}


# predict --export labelme's key: the model's class names in its order (LabelMe keeps unknown keys)
CLASSES_KEY = "maskrcnn_classes"


def _embedded_image(data: str, *, what: str, reason: str) -> tuple:
    """(bytes, PIL format, (W, H)) of the base64-encoded image ``data`` of the key ``what``, from its header
    (``images.open_image``, the converters' one open); Skip naming ``what``: ``image_too_large`` over the
    pixel limit (counted as every image over it is, with the hint to raise the limit; PIL's
    DecompressionBombError, no OSError, ended the whole conversion with a traceback), else ``reason``."""
    try:
        raw = base64.b64decode(data, validate=True)
        with open_image(raw, what, decode=False) as img:
            return raw, img.format, img.size
    except ValueError as e:  # binascii.Error and ImageReadError are ValueErrors
        if isinstance(e, ImageReadError) and e.reason == TOO_LARGE:
            raise Skip(TOO_LARGE, str(e)) from None
        detail = str(e).removeprefix(f"{what}: ")
        raise Skip(reason, f"{what} is not a base64-encoded image ({detail})") from None


def _write_embedded(json_path: Path, image_data: str, *, root: Path, embedded_dir: Path) -> Path:
    # refused (not an image, over the pixel limit): nothing is written
    raw, fmt, _ = _embedded_image(image_data, what="imageData", reason="bad_image_data")
    # Under the JSON file's own relative path: two files of the same name in different folders
    # never overwrite each other's image.
    target = (embedded_dir / json_path.relative_to(root)).with_suffix(_EXTENSIONS.get(fmt, f".{fmt.lower()}"))
    atomic_write_bytes(target, raw)  # the bytes as stored: no re-encoding, no quality loss
    return target


def _image_path(json_path: Path, data: dict, *, root: Path, embedded_dir: Path, report: Report,
                where: str, listings: dict, images: Optional[Path] = None) -> Path:
    raw = data.get("imagePath")
    candidates = []
    if isinstance(raw, str) and raw.strip():
        given = Path(raw.replace("\\", "/"))  # files written on Windows
        candidates = [json_path.parent / given, json_path.parent / given.name]
        if images is not None:  # --images: the images moved apart from the JSON files
            inside = not given.is_absolute() and ".." not in given.parts
            candidates += ([images / given] if inside else []) + [images / given.name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    # the file itself, its name written in another case, before a copy from imageData
    near = case_only_match(candidates, report=report, where=where, listings=listings)
    if near is not None:
        return near
    if isinstance(data.get("imageData"), str) and data["imageData"]:
        return _write_embedded(json_path, data["imageData"], root=root, embedded_dir=embedded_dir)
    missing = candidates[0] if candidates else "(no imagePath)"
    raise Skip("missing_image", f"image {missing} not found and the file has no imageData")


def _shape_mask(shape: dict, points: np.ndarray, width: int, height: int) -> MaskPatch:
    """A ``mask`` shape: its PNG on the pixels x1..x2, y1..y2 of its two points (truncated to integers,
    as labelme does), clipped to the image; or Skip."""
    if len(points) != 2:
        raise Skip("bad_shape", f"a mask needs 2 points, got {len(points)}")
    (x1, y1), (x2, y2) = points.min(axis=0).astype(int).tolist(), points.max(axis=0).astype(int).tolist()
    box = (x2 - x1 + 1, y2 - y1 + 1)
    # labelme cuts the mask as image[y1:y2 + 1, x1:x2 + 1], which stops at the image's border: a mask
    # reaching the right or bottom edge is stored that much smaller than its box
    cut = (min(x2 + 1, width) - max(x1, 0), min(y2 + 1, height) - max(y1, 0))
    data = shape.get("mask")
    if not isinstance(data, str) or not data:
        raise Skip("bad_shape", "a mask shape needs its 'mask' (a base64-encoded PNG)")
    raw, _, size = _embedded_image(data, what="'mask'", reason="bad_shape")
    if size not in (box, cut):  # from the header: an image of another size is not decoded
        raise Skip("bad_shape", f"mask image is {size[0]}x{size[1]}, the box of its points {box[0]}x{box[1]}")
    try:
        with open_image(raw, "'mask'") as img:
            patch = np.asarray(img.convert("L")) > 0  # labelme: 0/1
    except ImageReadError as e:  # the header read, the pixels do not (a truncated PNG)
        detail = str(e).removeprefix("'mask': ")
        raise Skip("bad_shape", f"'mask' is not a base64-encoded image ({detail})") from None
    top, left = max(y1, 0), max(x1, 0)
    bottom, right = min(y1 + patch.shape[0], height), min(x1 + patch.shape[1], width)
    patch = patch[top - y1:bottom - y1, left - x1:right - x1] if top < bottom and left < right else patch[:0]
    if not patch.any():
        raise Skip("empty_mask", f"mask lies outside the {width}x{height} image or covers no pixel")
    return MaskPatch(top, left, patch)


def _shape_region(shape: dict, width: int, height: int):
    """One shape -> one COCO polygon clipped to the image (a list) or a ``MaskPatch``; or Skip."""
    shape_type = shape.get("shape_type") or "polygon"  # files of labelme < 3 have no shape_type
    points = as_points(shape.get("points"))
    if shape_type == "polygon" or (shape_type == "rectangle" and len(points) == 4):
        return to_coco_polygon(points, width, height)
    if shape_type == "rotation":  # X-AnyLabeling's rotated box: its 4 corners, in order ("direction" aside)
        if len(points) != 4:
            raise Skip("bad_shape", f"a rotation (rotated box) needs its 4 corners, got {len(points)} points")
        return to_coco_polygon(points, width, height)
    if shape_type == "mask":
        return _shape_mask(shape, points, width, height)
    if shape_type in ("rectangle", "circle") and len(points) != 2:
        raise Skip("bad_shape", f"a {shape_type} needs 2 points, got {len(points)}")
    if shape_type == "rectangle":
        return to_coco_polygon(rectangle_points(*points[0], *points[1]), width, height)
    if shape_type == "circle":
        (cx, cy), (px, py) = points
        radius = float(((px - cx) ** 2 + (py - cy) ** 2) ** 0.5)
        return to_coco_polygon(circle_points(cx, cy, radius), width, height)
    raise Skip("unsupported_shape", f"shape_type {shape_type!r} is not converted "
                                    "(only polygon, rectangle, rotation, circle, mask)")


def _convert_file(path: Path, *, builder: CocoBuilder, report: Report, embedded_dir: Path, json_root: Path,
                  images: Optional[Path], listings: dict) -> None:
    name = builder.relative(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise Skip("not_labelme", "not a LabelMe file (no 'shapes' list)")
    recorded = data.get(CLASSES_KEY)  # predict's: the model's class order, numbered first
    if isinstance(recorded, list) and all(isinstance(v, str) for v in recorded):
        builder.declare(recorded)
    image_path = _image_path(path, data, root=json_root, embedded_dir=embedded_dir, report=report, where=name,
                             listings=listings, images=images)
    given = given_size(data.get("imageHeight"), data.get("imageWidth"))
    (height, width), orientation = annotated_size(image_path, given)
    if orientation is not None:  # drawn on the stored pixels: shapes are cut to those, then turned
        stored_pixels_told(report, name, given, (height, width), orientation)
    # a resized copy of the image drawn on: shapes scaled to it; of another shape: the file skipped
    scale = resized_scale(report, name, given, (height, width)) if orientation is None else None
    for key, actual in (("imageHeight", height), ("imageWidth", width)):
        if given is None and data.get(key) is not None and data[key] != actual:  # 0, "", no number
            report.warn(name, f"{key} {data[key]!r} differs from the image's {actual}; using the image's")
    try:
        image_id = builder.add_image(image_path, height=height, width=width, source=name)
    except Skip as e:  # the shapes lost with it, counted: "skipped" alone hid how much was dropped
        if e.reason != "duplicate_image":
            raise
        raise Skip(e.reason, f"{e}; its {len(data['shapes'])} shape(s) left out") from None

    instances: dict = {}  # (label, group) -> (shape indices, regions), in order of first shape
    for i, shape in enumerate(data["shapes"]):
        label = shape.get("label") if isinstance(shape, dict) else None
        label = stripped_label(label, report=report, where=name)
        where = f"{name}: shapes[{i}] (label {label!r})"
        if label == IGNORE_LABEL:
            report.note(f"{IGNORE_LABEL} shapes left out")
            continue
        try:
            if not isinstance(shape, dict):
                raise Skip("bad_shape", "a shape must be a JSON object")
            builder.check_label(label)
            if scale is not None:
                region = scale_region(_shape_region(shape, given[1], given[0]), scale=scale, width=width,
                                      height=height)
            elif orientation is None:
                region = _shape_region(shape, width, height)
            else:
                region = turn_region(_shape_region(shape, given[1], given[0]), orientation=orientation,
                                     stored=given)
        except Skip as e:
            report.skip(where, e)
            continue
        group = shape.get("group_id")
        key = (label, ("shape", i) if group is None else ("group", str(group)))
        indices, regions = instances.setdefault(key, ([], []))
        indices.append(i)
        regions.append(region)
    for (label, _), (indices, regions) in instances.items():
        try:
            builder.add_regions(image_id, label, regions)
        except Skip as e:
            report.skip(f"{name}: shapes{indices} (label {label!r})", e)


def read_labelme(files: Sequence[Path], *, builder: CocoBuilder, report: Report, embedded_dir: Path,
                 json_root: Optional[Path] = None, images: Optional[Path] = None) -> None:
    """Add the images and instances of LabelMe ``files`` (under ``json_root``, default ``builder.root``)
    to ``builder``; ``images``: a folder the images moved to (``--images``), looked in after the
    JSON file's."""
    # by folder, then name without its extension: "a.json" (the file labelme saves for a.jpg) before a
    # copy of it, "a (copy).json" or "a - Copy.json", which sorted by full name comes first (" " and "-"
    # sort before "."), so that the original is converted and its copy skipped as the duplicate
    files = sorted(files, key=lambda p: (Path(p).parent.as_posix(), Path(p).stem, Path(p).name))
    listings: dict = {}  # folders read for names that differ only in case (common.case_only_match)
    for path in files:
        try:
            _convert_file(Path(path), builder=builder, report=report, embedded_dir=Path(embedded_dir),
                          json_root=Path(json_root) if json_root is not None else builder.root,
                          images=None if images is None else Path(images), listings=listings)
        except Skip as e:
            report.skip(builder.relative(path), e)
