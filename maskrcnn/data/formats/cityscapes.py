"""Cityscapes (gtFine) -> COCO instances of its 8 instance classes.

Layout (the official one): ``ROOT/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png`` with
``ROOT/gtFine/{split}/{city}/{stem}_gtFine_instanceIds.png`` and/or ``{stem}_gtFine_polygons.json``.

Masks come from the ``instanceIds`` PNG when it exists, because that image is the ground truth the
official instance evaluation reads: each pixel holds ``label id * 1000 + instance`` for an individual
object of a class with instances, or the plain label id (< 1000) elsewhere, where the ids 24..33 mark
a group (``cargroup``, ``persongroup``, ...) the annotators could not split. Without the PNG, it is
drawn from the polygons exactly as cityscapesScripts' ``json2instanceImg`` draws it: objects in file
order (back to front, so a later object hides what it covers), ``deleted`` objects left out, each
polygon filled by PIL (which also clips it to the image), ids as above. The visible part of an object
is then what the evaluation sees, which the raw polygons are not (they overlap), so masks are written
as RLE.

Instances: every id >= 1000 of the classes person 24, rider 25, car 26, truck 27, bus 28, train 31,
motorcycle 32, bicycle 33 (label ids of cityscapesScripts' ``labels.py``, used as category ids, as
detectron2 does); the groups of those classes become crowd regions (``iscrowd`` 1, one per class and
image). caravan and trailer have instances but are not evaluated, so they are left out, as detectron2
leaves them out.

Refused, by name: a missing ``gtFine/<split>`` (one line up front, not one per image, with a hint for a
root one level too deep, zips unpacked into folders of their own, gtCoarse alone, the test split); the test
split (its gtFine holds no object: Cityscapes publishes no test labels); an instanceIds PNG
that is 8-bit (no id >= 1000 fits: every object would be a crowd region), holding ids no Cityscapes file
holds (the blends of a resize with interpolation, ``_check_plausible``), of another size than the image,
unreadable or over the pixel limit (``images.open_image``, the converters' one open): the polygons are
drawn instead, with a warning, or without them the image is skipped. An instanceIds PNG or polygons of
another size than the image read follow the rule of every converter (``common.resized_scale``): a
resized leftImg8bit (the same shape) gets the ids resized to it (nearest), said once and counted; one of
another shape is ``image_size_mismatch``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from maskrcnn.data.formats.common import (
    CocoBuilder,
    Report,
    Skip,
    given_size,
    image_size,
    read_json,
    resized_scale,
)
from maskrcnn.data.formats.geometry import as_points, nearest_indices
from maskrcnn.data.images import TOO_LARGE, ImageReadError, open_image

__all__ = ["CATEGORIES", "LABEL_IDS", "check_split_folder", "read_cityscapes", "resized_ids"]

# cityscapesScripts helpers/labels.py: name -> label id (-1: never drawn).
LABEL_IDS = {
    "unlabeled": 0, "ego vehicle": 1, "rectification border": 2, "out of roi": 3, "static": 4,
    "dynamic": 5, "ground": 6, "road": 7, "sidewalk": 8, "parking": 9, "rail track": 10, "building": 11,
    "wall": 12, "fence": 13, "guard rail": 14, "bridge": 15, "tunnel": 16, "pole": 17, "polegroup": 18,
    "traffic light": 19, "traffic sign": 20, "vegetation": 21, "terrain": 22, "sky": 23, "person": 24,
    "rider": 25, "car": 26, "truck": 27, "bus": 28, "caravan": 29, "trailer": 30, "train": 31,
    "motorcycle": 32, "bicycle": 33, "license plate": -1,
}  # fmt: skip
_HAS_INSTANCES = frozenset(range(24, 34))  # person .. bicycle, caravan and trailer included
CATEGORIES = ((24, "person"), (25, "rider"), (26, "car"), (27, "truck"), (28, "bus"), (31, "train"),
              (32, "motorcycle"), (33, "bicycle"))  # the evaluated instance classes: (label id, name)
_CLASS_NAMES = dict(CATEGORIES)
_GROUP = "group"
# what a pixel-off size becomes here: the ids always fill the image, so they are resampled (nearest)
_RESAMPLED = "the instance ids are resampled to the image file's size, nearest"


# what the test split is: its gtFine (gtFine_trainvaltest.zip) holds no object, only the regions outside
# the road scene, so a conversion of it has images but no instance, which said only "the annotations hold
# no object"
_NO_TEST_LABELS = ("Cityscapes' test split has no public labels (its gtFine files hold no object, only "
                   "placeholder regions such as 'ego vehicle'; the benchmark server scores it): convert "
                   "train or val")


def _draw_polygons(objects: list, height: int, width: int, *, where: str, report: Report) -> np.ndarray:
    """The instanceIds image of a polygons file, as json2instanceImg draws it: (H, W) int64."""
    canvas = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    next_instance: dict = {}
    for k, obj in enumerate(objects):
        label = obj.get("label") if isinstance(obj, dict) else None
        try:
            if not isinstance(obj, dict):
                raise Skip("bad_object", "an object must be a JSON object")
            if obj.get("deleted"):
                report.note("deleted objects left out")
                continue
            name, group = label, False
            if name not in LABEL_IDS and isinstance(name, str) and name.endswith(_GROUP):
                name, group = name[: -len(_GROUP)], True
            if name not in LABEL_IDS:
                raise Skip("unknown_label", f"label {label!r} is not a Cityscapes label")
            label_id = LABEL_IDS[name]
            if label_id < 0:
                continue
            points = as_points(obj.get("polygon"), what="polygon")
            if len(points) < 3:
                raise Skip("few_points", f"polygon has {len(points)} point(s), at least 3 are needed")
            value = label_id
            if label_id in _HAS_INSTANCES and not group:
                value = label_id * 1000 + next_instance.get(name, 0)
                next_instance[name] = next_instance.get(name, 0) + 1
            draw.polygon([(float(x), float(y)) for x, y in points], fill=value)
        except Skip as e:
            report.skip(f"{where}: objects[{k}] (label {label!r})", e)
    return np.asarray(canvas, dtype=np.int64)


_ID_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # 16 or 32 bits: ids up to 33999 fit


def _read_ids_png(path: Path) -> np.ndarray:
    """An instanceIds PNG -> (h, w) int64 ids at its own size (the caller judges it against the image's),
    or Skip naming it (opened by ``images.open_image``, the converters' one open: one over the pixel limit
    is ``image_too_large``, not a traceback)."""
    try:
        with open_image(path, path.name) as img:
            mode = img.mode
            ids = np.asarray(img, dtype=np.int64)
    except ImageReadError as e:
        if e.reason == TOO_LARGE:
            raise Skip(TOO_LARGE, str(e)) from None
        detail = str(e).removeprefix(f"{path.name}: ")
        raise Skip("unreadable_instance_ids", f"cannot read {path.name} ({detail})") from None
    if ids.ndim != 2:  # a colour rendering (e.g. a _gtFine_color.png saved under this name)
        raise Skip("bad_instance_ids", f"{path.name} has {ids.shape[2]} channels; instance ids are one "
                                       f"channel (16-bit PNG)")
    if mode not in _ID_MODES:
        # an 8-bit PNG holds no id >= 1000: every object read as its class's group (crowd), 0 instances,
        # without a word (a _labelIds.png under this name, or ids saved through convert("L"))
        raise Skip("bad_instance_ids", f"{path.name} is an 8-bit PNG (mode {mode}), which cannot hold "
                                       f"instance ids (label id * 1000 + instance); instance ids are a "
                                       f"16-bit PNG (is it a _labelIds.png under this name?)")
    _check_plausible(ids, path.name)
    return ids


def _check_plausible(ids: np.ndarray, name: str) -> None:
    """Skip (``implausible_instance_ids``) for ids no Cityscapes file holds: a PNG resized with
    interpolation (Pillow's default for 16-bit images is bicubic) blends the ids at every boundary into
    values such as 106, 13000 or 26500 between car 26000 and truck 27000, each of which was read as one
    more instance (a 6-object image gave 54, of classes it does not show).

    A real file holds label ids (0..33) and ``class * 1000 + instance`` for the classes with instances
    (24..33), nothing else: values 34..999, negative ones, and ones >= 1000 whose class is not 24..33 are
    the blends' tell (any interpolated boundary between an object and the plain label ids around it
    passes through them), and none of them can be in an unresized file, so a real one is never refused.
    """
    values = np.unique(ids)
    bad = values[(values < 0) | ((values > 33) & (values < 24000)) | (values >= 34000)]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5].tolist()) + (", ..." if bad.size > 5 else "")
        raise Skip("implausible_instance_ids",
                   f"{name} holds {bad.size} value(s) no Cityscapes instance id can be ({shown}; ids are "
                   f"label ids 0..33 or class * 1000 + instance for the classes 24..33): resized with "
                   f"interpolation? resize id images with NEAREST (or an *_instanceTrainIds.png under "
                   f"this name?)")


def resized_ids(ids: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) instance ids (or a mask) -> (H, W), each pixel the id under its centre (nearest: ids are no
    colours; ``eval --cityscapes`` resizes prediction masks to the ground truth's size with it)."""
    # every centre of the image falls on the drawing, so each axis lists all of the image's pixels
    rows, _ = nearest_indices(0, ids.shape[0], scale=height / ids.shape[0], size=height)
    cols, _ = nearest_indices(0, ids.shape[1], scale=width / ids.shape[1], size=width)
    return ids[np.ix_(rows, cols)]


def _polygons_objects(path: Path, height: int, width: int, *, where: str, report: Report) -> tuple:
    """(the ``objects`` of a polygons file, the (H, W) they are drawn on) for an image of (``height``,
    ``width``), or Skip.

    The polygons are in the coordinates of the image they were drawn on, ``imgHeight`` x ``imgWidth``;
    drawn unscaled on an image of another size they were misplaced, and the objects beyond the smaller
    canvas lost without a word. The rule of every converter (``common.resized_scale``): a resized copy
    of leftImg8bit (a common speed-up) has them drawn at their size, as json2instanceImg draws them, and
    the ids resized to the image as a resized instanceIds PNG would be; an image of another shape is
    skipped by name (``image_size_mismatch``, the COCO loader's reason)."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("objects"), list):
        raise Skip("bad_annotation", f"{path.name} has no 'objects' list")
    given = given_size(data.get("imgHeight"), data.get("imgWidth"))
    if given is None:
        stated = (data.get("imgHeight"), data.get("imgWidth"))
        report.warn(where, f"imgHeight, imgWidth {stated} are no size; the image's {(height, width)} used")
        return data["objects"], (height, width)
    resized_scale(report, where, given, (height, width), pixel_off=_RESAMPLED)  # Skip: another shape
    return data["objects"], given


def _instance_ids(prefix: Path, height: int, width: int, *, builder: CocoBuilder, report: Report) -> tuple:
    """((H, W) int64 instance ids, "instanceIds" or "polygons") for one image, or Skip."""
    ids_path = prefix.with_name(prefix.name + "_gtFine_instanceIds.png")
    json_path = prefix.with_name(prefix.name + "_gtFine_polygons.json")
    refused = None
    if ids_path.is_file():
        try:
            ids = _read_ids_png(report.reading(ids_path))
            if ids.shape != (height, width):  # Skip when of another shape than the image
                resized_scale(report, builder.relative(ids_path), ids.shape, (height, width),
                              pixel_off=_RESAMPLED)
                ids = resized_ids(ids, height, width)
            return ids, "instanceIds"
        except Skip as e:
            if not json_path.is_file():
                raise
            refused = e
    if not json_path.is_file():
        raise Skip("missing_annotation", f"neither {ids_path.name} nor {json_path.name} in {prefix.parent}")
    where = builder.relative(json_path)
    objects, drawn = _polygons_objects(report.reading(json_path), height, width, where=where, report=report)
    if refused is not None:  # said once the polygons are known to be usable
        report.warn(builder.relative(ids_path), f"{refused}; drawing the polygons instead")
    ids = _draw_polygons(objects, *drawn, where=where, report=report)
    return (ids if drawn == (height, width) else resized_ids(ids, height, width)), "polygons"


def _one_level_too_deep(root: Path, split: str) -> str:
    """The hint for a root given one level too deep (``gtFine`` or ``leftImg8bit`` itself, or any folder
    holding ``<split>/<city>/``): pass its parent, which holds both. "" otherwise."""
    if root.name in ("gtFine", "leftImg8bit") or (root / split).is_dir():
        what = (f"is Cityscapes' {root.name} folder itself" if root.name in ("gtFine", "leftImg8bit")
                else f"holds {split}/<city>/ as Cityscapes' gtFine and leftImg8bit do")
        return (f"; {root} {what}: pass its parent, the folder that holds gtFine and leftImg8bit "
                f"({root.resolve().parent})")
    return ""


def _other_layouts(root: Path, kind: str) -> str:
    """The hint for two common downloads that lack ``root/kind``, "" otherwise:

    - each zip unpacked into a folder of its own (``gtFine_trainvaltest/gtFine``, ``leftImg8bit_trainvaltest/
      leftImg8bit``), found under ``root`` or beside it (a folder named after the zip, ``{kind}*``; any
      other folder beside ``root`` may be another dataset): gtFine and leftImg8bit must sit side by side;
    - gtCoarse without gtFine: the coarse annotations, which the conversion does not read."""
    found = sorted(p for p in [*root.glob(f"*/{kind}"), *root.parent.glob(f"{kind}*/{kind}")]
                   if p.is_dir() and p.parent != root)
    if found:
        return (f"; {kind} is at {found[0]}, in a folder of its own (a zip unpacked into one): move "
                f"gtFine and leftImg8bit side by side into one folder and pass that folder")
    if kind == "gtFine" and (root / "gtCoarse").is_dir() and not (root / "gtFine").exists():
        # (with gtFine there, the split is what it lacks: the caller lists the splits it has)
        return (f"; {root} holds gtCoarse, the coarse annotations, which are not read: the conversion and "
                f"the evaluation take the fine ones, gtFine (gtFine_trainvaltest.zip)")
    return ""


def check_split_folder(root, kind: str, split: str, *, given: str = "") -> Path:
    """``root/kind/split`` (``kind``: ``leftImg8bit`` or ``gtFine``), or FileNotFoundError naming the
    layout, the splits ``root/kind`` holds and, for a root given one level too deep, its parent (shared by
    convert-data and eval --cityscapes, which checks before the inference). ``given``: the message's start
    (``"--cityscapes: "``)."""
    root = Path(root)
    folder = root / kind / split
    if not folder.is_dir():
        found = sorted(p.name for p in (root / kind).glob("*") if p.is_dir())
        raise FileNotFoundError(
            f"{given}{folder}: no such folder; Cityscapes' layout is leftImg8bit/<split>/<city>/"
            f"*_leftImg8bit.png with gtFine/<split>/<city>/ beside it (splits in {kind}: {found or 'none'})"
            + (_one_level_too_deep(root, split) or _other_layouts(root, kind))
            + (f"; {_NO_TEST_LABELS}" if kind == "gtFine" and split == "test" else "")
        )
    return folder


def read_cityscapes(root: Path, *, split: str, builder: CocoBuilder, report: Report) -> None:
    """Add the images of one split and their instances (builder categories: ``CATEGORIES``)."""
    root = Path(root)
    image_dir = check_split_folder(root, "leftImg8bit", split)
    suffix = "_leftImg8bit.png"
    image_paths = sorted(image_dir.glob(f"*/*{suffix}"))
    if not image_paths:
        # said here: 'no image could be converted (see the problems above)' had no problem above
        others = sorted(p.name for p in image_dir.glob("*/*") if p.is_file())
        raise FileNotFoundError(
            f"{image_dir}: no <city>/*{suffix} image (Cityscapes' names); "
            + (f"found {len(others)} other files, e.g. {others[0]}" if others else "no file in a city folder")
        )
    gt_dir = check_split_folder(root, "gtFine", split)  # one line, not one per image
    if not any(p for pattern in ("*/*_gtFine_instanceIds.png", "*/*_gtFine_polygons.json")
               for p in gt_dir.glob(pattern)):
        others = sorted(p.name for p in gt_dir.glob("*/*") if p.is_file())
        raise FileNotFoundError(
            f"{gt_dir}: no <city>/*_gtFine_instanceIds.png nor *_gtFine_polygons.json (Cityscapes' names); "
            + (f"found {len(others)} other files, e.g. {others[0]}" if others else "no file in a city folder")
        )
    # ground truth without its image (a city of leftImg8bit not downloaded or unpacked) was left out
    # without a word: counted in the summary
    # (either file of its ground truth: a download of instanceIds PNGs only went unsaid)
    stems = {(p.parent.name, p.name[: -len(suffix)]) for p in image_paths}
    orphans = {(p.parent.name, p.name[: -len(ending)])
               for ending in ("_gtFine_polygons.json", "_gtFine_instanceIds.png")
               for p in gt_dir.glob(f"*/*{ending}")} - stems
    if orphans:
        report.note(f"gtFine annotations (polygons or instanceIds) without their leftImg8bit image, left out "
                    f"(e.g. {'/'.join(min(orphans))})", len(orphans))
    misplaced = {stem: city for city, stem in sorted(orphans)}  # an image in another city's folder
    for image_path in image_paths:
        prefix = root / "gtFine" / split / image_path.parent.name / image_path.name[: -len(suffix)]
        try:
            height, width = image_size(image_path)
            ids, source = _instance_ids(prefix, height, width, builder=builder, report=report)
        except Skip as e:
            elsewhere = misplaced.get(image_path.name[: -len(suffix)])
            if e.reason == "missing_annotation" and elsewhere:  # the orphan note alone did not connect them
                e = Skip(e.reason, f"{e}; found in {Path('gtFine', split, elsewhere)}/ (the image's city "
                                   f"folder is {image_path.parent.name}): move the image there")
            report.skip(builder.relative(image_path), e)
            continue
        report.note(f"images with masks from {source}")
        image_id = builder.add_image(image_path, height=height, width=width)
        for value in np.unique(ids[ids >= 24]).tolist():
            class_id = value // 1000 if value >= 1000 else value
            if class_id in _CLASS_NAMES:
                builder.add_mask(image_id, _CLASS_NAMES[class_id], ids == value, iscrowd=value < 1000)
    if split == "test" and builder.images and not builder.annotations:
        raise ValueError(f"{root / 'gtFine' / split}: {len(builder.images)} image(s) but no instance: "
                         f"{_NO_TEST_LABELS}; nothing written")
