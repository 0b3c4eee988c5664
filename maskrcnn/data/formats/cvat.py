"""CVAT's "CVAT for images 1.1" (and "CVAT for video 1.1") XML export (``annotations.xml``) -> COCO instances.

Shapes: an image is H rows x W columns; a mask patch is (h, w) bool; P points of a shape are (P, 2).

The file: ``<annotations><version>1.1</version><meta>...</meta><image id name width height [subset]>
shapes...</image>...</annotations>``. Each shape has a ``label`` and may have ``group_id``, ``occluded``,
``z_order``, ``source`` and ``<attribute name="...">value</attribute>`` children. (Version 1.0 files,
which lack only meta fields and the images' sizes, are read the same way.) What is read:

- ``<polygon points="x1,y1;x2,y2;...">`` a COCO polygon; ``<box xtl ytl xbr ybr [rotation]>`` and
  ``<ellipse cx cy rx ry [rotation]>`` polygons too (``rotation`` in degrees, clockwise on screen about
  the centre, as CVAT's own exporters turn them); all clipped to the image, in COCO's pixel convention
  (pixel (i, j) covers [j, j + 1) x [i, i + 1)), which CVAT's coordinates share.
- ``<mask rle="n0, n1, ..." left top width height>``: CVAT's run-length code, alternate runs of 0s and
  1s starting with 0s, row by row over the ``width`` x ``height`` pixels whose top-left pixel is
  (``left``, ``top``) (CVAT's ``right = left + width - 1``: the box includes its last row and column).
  The runs must cover the box exactly; pixels outside the image are cut off.
- Shapes with the same label and the same non-zero ``group_id`` in one image are one instance (their
  regions together form its mask, as LabelMe's ``group_id``); different labels in a group stay separate
  instances (CVAT groups a person with their bag, say). Without ``group_id`` (or 0), a shape is its own.
- An instance any of whose shapes has the attribute ``is_crowd`` true (``true`` / ``1``; the attribute
  CVAT's own COCO export reads) is written as a crowd region (RLE). ``z_order``, ``occluded`` and other
  attributes are not used: COCO instances may overlap.
- ``skeleton``: keypoint instances (``cvat_skeletons``: onto the region of its label in its group, else
  boxed by its points), its label a category whose ``keypoints`` are its points.
- ``polyline``, ``points``, ``cuboid`` (no area) and ``tag`` (an image label) are counted in the notes
  and left out.
- Categories (without ``--classes``): the labels ``<meta>`` lists (of the task, job or project; not
  skeleton parts nor labels typed for other shapes without area), numbered from 1 in the order it lists them
  (a project's label order; ``predict --export cvat`` lists the model's classes in its order, so its
  file reads back in the model's class order, ids 1..K, a class without instances included), then the labels
  met that it does not list, sorted by name. So the train and val tasks of one project, exported and
  converted apart, number their classes alike even when one of them has no instance of some class.
  Earlier versions numbered every label sorted by name: a ``<meta>`` listing out of name order is said
  in one line naming the file (a model trained on an earlier conversion has other ids).
- ``--split S``: only the images of subset S (``<image subset="Train">``; a project export holds all
  its subsets in one file, so train and val are converted apart from it; case is ignored). Without it,
  every image (one line names the subsets merged, when there are several).
- A label's surrounding spaces are stripped ("box " is "box"), said once per label.
- The image file: ``images/<subset>/<name>`` (a project export), ``images/<name>`` (a task export's
  zip), ``<name>`` relative to the images root (``--images``, else the folder ``predict --export cvat``
  recorded in a comment, ``IMAGES_COMMENT``, else the XML file's folder), then the same folders with the
  name's last part only, then all of it again under the XML file's folder; a video task's frames
  (named ``frame_000000``, saved as ``frame_000000.PNG``) are found with
  their extension added. The image's own size is used. ``width`` / ``height`` that differ: a resized
  copy (the same shape) has its shapes scaled to it, an image of another shape is skipped as
  ``image_size_mismatch`` (``common.resized_scale``, the rule of every converter); when they are the
  stored size of a photo that EXIF turns by a quarter, the shapes are cut to the stored pixels they
  were drawn on, then turned with the image.
- "CVAT for video 1.1" exports (``<track>`` elements, a shape on every frame): each frame's shapes
  inside the view are that frame's instances (``cvat_video``; its images ``frame_000000.PNG`` ...); a
  frame whose file is there but that has no shape in view is an image without instances.

The XML is parsed with the standard library and refused, before any element is built, when it has a
DOCTYPE: entity declarations (the "billion laughs" expansion, external files) can only come in one, and
CVAT never writes one. (Python's expat >= 2.4.1 also limits entity amplification; refusing the DOCTYPE
does not depend on that, and leaves ``defusedxml`` nothing to add that would justify a dependency.)
A file that is not well-formed XML, has a DOCTYPE or is not a CVAT export is an error naming the file
(and the line); a bad image or shape is reported and skipped.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import unquote

import numpy as np

from maskrcnn.data.formats.common import (
    CocoBuilder,
    MaskPatch,
    Report,
    Skip,
    annotated_size,
    given_size,
    parse_xml,
    resized_scale,
    stored_pixels_told,
    stripped_label,
    unicode_form_match,
    usable_recorded_folder,
)
from maskrcnn.data.formats.cvat_skeletons import (
    add_skeleton,
    declare_skeletons,
    declared_skeletons,
    layer,
    paired_only_labels,
)
from maskrcnn.data.formats.cvat_video import frame_images, has_tracks
from maskrcnn.data.formats.geometry import (
    ellipse_points,
    numbers,
    rectangle_points,
    scale_region,
    to_coco_polygon,
    turn_region,
)
from maskrcnn.data.formats.keypoint_instances import finish_keypoints
from maskrcnn.data.unicode_names import nfc

__all__ = ["ANNOTATIONS_FILE", "IMAGES_COMMENT", "cvat_file", "declared_labels", "decode_cvat_rle",
           "read_cvat", "recorded_images_folder"]

ANNOTATIONS_FILE = "annotations.xml"
# predict --export cvat's comment: the images folder, %-quoted ("--" cannot be in a comment), relative to
# the XML file's folder; the image names are relative to it
IMAGES_COMMENT = "<!-- maskrcnn images folder: {} -->"
_IMAGES_COMMENT = re.compile(r"<!-- maskrcnn images folder: (.*?) -->")
_NO_AREA = ("polyline", "points", "cuboid")
_NO_LABEL_KINDS = _NO_AREA + ("tag",)  # label types that are no class of the COCO file
# CVAT saves a video's frames as <name>.PNG (JPEG ones with the task's image quality setting)
_VIDEO_FRAME_EXTENSIONS = (".PNG", ".png", ".jpg", ".JPG", ".jpeg", ".JPEG")
_TRUE = ("true", "1", "yes")
_VERSIONS = ("1.0", "1.1")  # 1.1 added meta fields only; the <image> elements are the same


def cvat_file(src: Path) -> Path:
    """SRC -> the XML file: SRC itself, or ``annotations.xml`` in the folder SRC (else its one .xml)."""
    src = Path(src)
    if src.is_file():
        return src
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such file or folder")
    if (src / ANNOTATIONS_FILE).is_file():
        return src / ANNOTATIONS_FILE
    found = sorted(p for p in src.glob("*.xml") if p.is_file())
    if len(found) == 1:
        return found[0]
    listing = f"{len(found)} .xml files; name one" if found else "no .xml file"
    raise FileNotFoundError(f"{src}: no {ANNOTATIONS_FILE} in the folder ({listing})")


def _float(el: ET.Element, name: str) -> float:
    raw = el.get(name)
    if raw is None:
        raise Skip("bad_shape", f"<{el.tag}> has no '{name}' attribute")
    try:
        value = float(raw)
    except ValueError:
        raise Skip("bad_shape", f"<{el.tag}> '{name}' is {raw!r}, not a number") from None
    return numbers(value, what=f"<{el.tag}> '{name}'")[0]  # NaN / inf -> Skip("bad_coordinates")


def _int(el: ET.Element, name: str) -> int:
    value = _float(el, name)
    if not value.is_integer():
        raise Skip("bad_shape", f"<{el.tag}> '{name}' is {el.get(name)!r}, not a whole number of pixels")
    return int(value)


def _polygon_points(el: ET.Element) -> np.ndarray:
    """``points="x1,y1;x2,y2;..."`` -> (P, 2); Skip when missing, not numbers or not pairs."""
    raw = el.get("points")
    if raw is None:
        raise Skip("bad_shape", f"<{el.tag}> has no 'points' attribute")
    pairs = [p.split(",") for p in raw.strip().strip(";").split(";") if p.strip()]
    if any(len(p) != 2 for p in pairs):
        raise Skip("bad_shape", f"<{el.tag}> points {_short(raw)} are not x,y pairs separated by ';'")
    try:
        values = [float(v) for p in pairs for v in p]
    except ValueError:
        raise Skip("bad_shape", f"<{el.tag}> points {_short(raw)} are not numbers") from None
    numbers(*values, what=f"<{el.tag}> points")
    return np.asarray(values, dtype=np.float64).reshape(-1, 2)  # (P, 2)


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _turned(points: np.ndarray, degrees: float) -> np.ndarray:
    """``points`` turned about their centre by ``degrees``, clockwise on screen (y points down), as
    CVAT turns a box: (P, 2) -> (P, 2)."""
    if degrees == 0.0:
        return points
    theta = math.radians(degrees)
    c, s = math.cos(theta), math.sin(theta)
    centre = (points.min(axis=0) + points.max(axis=0)) / 2.0  # (2,)
    d = points - centre  # (P, 2)
    return centre + np.stack([d[:, 0] * c - d[:, 1] * s, d[:, 0] * s + d[:, 1] * c], axis=1)


def _rotation(el: ET.Element) -> float:
    return _float(el, "rotation") if el.get("rotation") is not None else 0.0


def decode_cvat_rle(text: str, *, left: int, top: int, width: int, height: int, image_width: int,
                    image_height: int) -> MaskPatch:
    """CVAT's mask code (see the module docstring) -> the part of the mask inside the image, or Skip.

    Only the part inside the image is ever allocated: a box far larger than the image (a hand-edited
    file) costs its runs, not its area.
    """
    if width < 1 or height < 1:
        raise Skip("bad_mask", f"mask box is {width}x{height} pixels")
    try:
        counts = np.array([int(v) for v in text.split(",") if v.strip()], dtype=np.int64)  # (R,)
    except ValueError:
        raise Skip("bad_mask", f"rle {_short(text)} is not comma-separated whole numbers") from None
    except OverflowError:  # a run past int64: no box has that many pixels
        raise Skip("bad_mask", f"rle {_short(text)} has a run longer than any box") from None
    if (counts < 0).any():
        raise Skip("bad_mask", "rle has a negative run length")
    if int(counts.sum()) != width * height:
        raise Skip("bad_mask", f"rle runs cover {int(counts.sum())} pixels, the {width}x{height} box "
                               f"{width * height}")
    # The window of the box inside the image, in box coordinates: rows r0..r1-1, columns c0..c1-1.
    r0, r1 = max(0, -top), min(height, image_height - top)
    c0, c1 = max(0, -left), min(width, image_width - left)
    if r0 >= r1 or c0 >= c1:
        raise Skip("empty_mask", f"mask lies outside the {image_width}x{image_height} image")
    ends = np.cumsum(counts)  # (R,) flat index (row-major in the box) one past each run
    starts = ends - counts
    starts, ends = starts[1::2], ends[1::2]  # runs of 1s (odd positions)
    starts, ends = starts[ends > starts], ends[ends > starts]  # (N,)
    # Each run of 1s split into its pieces on rows of the window: (run, row) pairs, K of them.
    lo = np.maximum(starts // width, r0)
    hi = np.minimum((ends - 1) // width, r1 - 1)
    keep = lo <= hi
    starts, ends, lo, hi = starts[keep], ends[keep], lo[keep], hi[keep]
    spans = hi - lo + 1  # (N,)
    run = np.repeat(np.arange(len(spans)), spans)  # (K,)
    row = lo[run] + np.arange(int(spans.sum())) - np.repeat(np.cumsum(spans) - spans, spans)  # (K,)
    col_start = np.clip(starts[run] - row * width, c0, c1)  # (K,) columns of the piece, clipped
    col_end = np.clip(ends[run] - row * width, c0, c1)
    edges = np.zeros((r1 - r0, c1 - c0 + 1), dtype=np.int32)  # +1 where a piece starts, -1 after it
    np.add.at(edges, (row - r0, col_start - c0), 1)
    np.add.at(edges, (row - r0, col_end - c0), -1)
    patch = np.cumsum(edges, axis=1)[:, :-1] > 0  # (h, w)
    if not patch.any():
        raise Skip("empty_mask", f"mask covers no pixel of the {image_width}x{image_height} image")
    return MaskPatch(top + r0, left + c0, patch)


def _region(el: ET.Element, width: int, height: int):
    """One area shape -> a COCO polygon clipped to the image (a list) or a ``MaskPatch``; or Skip."""
    if el.tag == "polygon":
        return to_coco_polygon(_polygon_points(el), width, height)
    if el.tag == "box":
        corners = rectangle_points(*(_float(el, k) for k in ("xtl", "ytl", "xbr", "ybr")))
        return to_coco_polygon(_turned(corners, _rotation(el)), width, height)
    if el.tag == "ellipse":
        cx, cy, rx, ry = (_float(el, k) for k in ("cx", "cy", "rx", "ry"))
        return to_coco_polygon(ellipse_points(cx, cy, rx, ry, math.radians(_rotation(el))), width, height)
    if el.tag == "mask":
        rle = el.get("rle")
        if rle is None:
            raise Skip("bad_shape", "<mask> has no 'rle' attribute")
        box = {k: _int(el, k) for k in ("left", "top", "width", "height")}
        return decode_cvat_rle(rle, **box, image_width=width, image_height=height)
    raise Skip("unsupported_shape", f"<{el.tag}> is not a CVAT shape")


def _is_crowd(el: ET.Element) -> bool:
    return any(a.get("name") == "is_crowd" and (a.text or "").strip().lower() in _TRUE
               for a in el.findall("attribute"))


def _image_path(roots: Sequence[Path], el: ET.Element, *, report: Report, where: str,
                listings: Optional[dict] = None) -> Path:
    """The file an ``<image>`` names, looked for under each of ``roots`` in turn (see the module
    docstring for where); then the one file of such a name stored in another Unicode form (an archive
    unzipped from macOS), with a warning."""
    name = (el.get("name") or "").replace("\\", "/")
    if not name.strip():
        raise Skip("bad_image", "<image> has no 'name' attribute")
    subset = (el.get("subset") or "").strip()
    names = [name, Path(name).name]
    if not Path(name).suffix:
        names += [name + ext for ext in _VIDEO_FRAME_EXTENSIONS]
    candidates = []
    for root in roots:
        folders = ([root / "images" / subset] if subset else []) + [root / "images", root]
        candidates += [folder / n for n in names for folder in folders]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        found = unicode_form_match(candidates, report=report, where=where, listings=listings)
    return found if found is not None else roots[0] / name


def recorded_images_folder(xml_path: Path) -> tuple:
    """The images folder ``predict --export cvat`` recorded in the file (``IMAGES_COMMENT``, a comment
    CVAT ignores, near the top), relative to the file's folder: (folder, None) when usable
    (``usable_recorded_folder``: normalised, an existing folder); (None, why not) when not; (None, None)
    when there is none."""
    try:
        with open(xml_path, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return None, None
    match = _IMAGES_COMMENT.search(head)
    if match is None:
        return None, None
    return usable_recorded_folder(Path(xml_path), unquote(match.group(1).strip()))


def _check_size(report: Report, where: str, el: ET.Element, height: int, width: int) -> None:
    for key, actual in (("height", height), ("width", width)):
        raw = el.get(key)
        try:
            same = raw is None or float(raw) == actual
        except ValueError:
            same = False
        if not same:
            report.warn(where, f"{key} {raw!r} differs from the image's {actual}; using the image's")


def _convert_image(el: ET.Element, index: int, *, xml_name: str, builder: CocoBuilder,
                   report: Report, roots: Sequence[Path], listings: Optional[dict] = None,
                   adopted: Optional[dict] = None) -> int:
    """Add one ``<image>``'s instances; the number of elements nested inside its shapes that are not
    their ``<attribute>``s (ignored: a shape is drawn by its own attributes, and hand-edited or other
    tools' files nest shapes there; counted so that they are not lost unsaid)."""
    where = f"{xml_name}: image {el.get('name')!r}" if el.get("name") else f"{xml_name}: image [{index}]"
    try:
        image_path = _image_path(roots, el, report=report, where=where, listings=listings)
        given = given_size(el.get("height"), el.get("width"))
        (height, width), orientation = annotated_size(image_path, given)
        # a resized copy of the image drawn on: shapes scaled to it; of another shape: skipped
        scale = resized_scale(report, where, given, (height, width)) if orientation is None else None
        image_id = builder.add_image(image_path, height=height, width=width, source=xml_name)
    except Skip as e:
        report.skip(where, e)
        return 0
    if orientation is None:
        if given is None:  # width / height absent, 0 or no number: the image's used
            _check_size(report, where, el, height, width)
    else:  # drawn on the stored pixels: shapes are cut to those, then turned with the image
        stored_pixels_told(report, where, given, (height, width), orientation)
    nested = 0
    skeletons = []  # (index, element): laid onto the instances once those are built
    instances: dict = {}  # (label, group) -> (shape indices, regions, crowd), in order of first shape
    for i, shape in enumerate(el):
        if shape.tag == "tag":
            report.note("CVAT tags (image labels) left out")
            continue
        if shape.tag == "skeleton":
            skeletons.append((i, shape))
            continue
        if shape.tag in _NO_AREA:
            report.note(f"CVAT {shape.tag} shapes left out (no area)")
            continue
        nested += sum(1 for child in shape if child.tag != "attribute")
        label = stripped_label(shape.get("label"), report=report, where=xml_name)
        try:
            builder.check_label(label)
            if scale is not None:
                region = scale_region(_region(shape, given[1], given[0]), scale=scale, width=width,
                                      height=height)
            elif orientation is None:
                region = _region(shape, width, height)
            else:
                region = turn_region(_region(shape, given[1], given[0]), orientation=orientation,
                                     stored=given)
        except Skip as e:
            report.skip(f"{where}: shape [{i}] <{shape.tag}> (label {label!r})", e)
            continue
        group = (shape.get("group_id") or "0").strip()
        key = (label, ("shape", i) if group in ("", "0") else ("group", group))
        indices, regions, crowd = instances.setdefault(key, ([], [], []))
        indices.append(i)
        regions.append(region)
        crowd.append(_is_crowd(shape))
    grouped: dict = {}  # (label, group_id) -> the instance of that group's regions, for its skeleton(s)
    loose: set = set()  # labels of the ungrouped regions
    for (label, (kind, group)), (indices, regions, crowd) in instances.items():
        try:
            ann = builder.add_regions(image_id, label, regions, iscrowd=any(crowd))
        except Skip as e:
            report.skip(f"{where}: shapes {indices} (label {label!r})", e)
            continue
        if kind == "group":
            grouped[(ann["_label"], group)] = ann
        else:
            loose.add(ann["_label"])
    to_image = layer(scale=scale, orientation=orientation, given=given)
    for i, shape in skeletons:
        label = stripped_label(shape.get("label"), report=report, where=xml_name)
        try:
            add_skeleton(builder, image_id, shape, label, grouped=grouped, loose=loose, report=report,
                         to_image=to_image, where=where, adopted=adopted)
        except Skip as e:
            report.skip(f"{where}: shape [{i}] <skeleton> (label {label!r})", e)
    return nested


_FRAME_FILE = re.compile(r"^frame_(\d+)\.(png|jpe?g)$", re.IGNORECASE)
_IMAGE_FILE = re.compile(r"\.(png|jpe?g|bmp|tiff?|webp|gif)$", re.IGNORECASE)


def _frame_files_and_others(roots: Sequence[Path]) -> tuple:
    """({frame number: its file's name} for the frame files (``frame_000000.PNG``, as CVAT saves a
    video's frames, or .jpg / .jpeg; any number of digits, any case of the extension) in ``images/`` or
    directly under one of ``roots``, the first found of a frame kept; whether an ``images/`` folder holds
    image files not named frame_N: the frames' files may be named otherwise, so frames without one are
    not told). The name, not the number, is what the frame's ``<image>`` is given: ``frame_1.png`` is
    found as it is, not looked for as ``frame_000001.PNG``."""
    found: dict = {}
    others = False
    for folder in (f for root in roots for f in (root / "images", root)):
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                m = _FRAME_FILE.match(p.name)
                if m and p.is_file():
                    found.setdefault(int(m.group(1)), p.name)
                elif folder.name == "images" and _IMAGE_FILE.search(p.name) and p.is_file():
                    others = True
    return found, others


def _check_root(path: Path, root: ET.Element) -> list:
    """The ``<image>`` elements of a "CVAT for images" file; ValueError when it is not one."""
    if root.tag != "annotations":
        raise ValueError(f"{path}: not a CVAT XML export (the root element is <{root.tag}>, "
                         "not <annotations>)")
    version: Optional[str] = root.findtext("version")
    if version is not None and version.strip() not in _VERSIONS:
        raise ValueError(f"{path}: CVAT XML version {version.strip()!r}; only {' and '.join(_VERSIONS)} are "
                         "converted")
    return root.findall("image")


def declared_labels(root: ET.Element) -> list:
    """The labels ``<meta>`` lists (a task's, a job's or a project's ``<labels>``) that can have an
    area: skeleton parts (``<parent>``) and labels typed for skeletons, points, polylines, cuboids or
    tags left out."""
    meta = root.find("meta")
    names = []
    for label in meta.iter("label") if meta is not None else ():
        name = (label.findtext("name") or "").strip()
        kind = (label.findtext("type") or "any").strip()
        # a skeleton is a class (its instances carry keypoints: ``cvat_skeletons``); its points are not
        if name and not (label.findtext("parent") or "").strip() and kind not in _NO_LABEL_KINDS:
            names.append(name)
    return names


def _tell_label_order(labels: list, *, report: Report, where: str) -> None:
    """One line when ``<meta>`` lists its labels out of name order: they are numbered in its order now,
    where earlier versions numbered every label sorted by name, so a model trained on an earlier
    conversion of the same file has other category ids (silently, else)."""
    from maskrcnn.data.unicode_names import nfc

    order = list(dict.fromkeys(nfc(name) for name in labels))
    if order == sorted(order):
        return
    shown = ", ".join(order[:8]) + (", ..." if len(order) > 8 else "")
    report.tell(where, f"categories numbered 1..{len(order)} in the order <meta> lists its labels ({shown}), "
                       "not sorted by name as maskrcnn versions before this one numbered them: a model "
                       "trained on an earlier conversion of this file has other category ids")


def _subset(xml_path: Path, images: list, split: str) -> list:
    """The images of subset ``split`` (case aside: CVAT's default subsets are Train, Validation, Test);
    ValueError naming the subsets there are when it has none."""
    chosen = [el for el in images if (el.get("subset") or "").strip().lower() == split.strip().lower()]
    if not chosen:
        subsets = sorted({(el.get("subset") or "").strip() for el in images} - {""})
        there = f"its subsets: {', '.join(subsets)}" if subsets else "its images have no subset attribute"
        raise ValueError(f"{xml_path}: no image of subset {split!r} ({there})")
    return chosen


def _tell_subsets(images: list, *, report: Report, where: str) -> None:
    """One line when the file holds several subsets (a project export) and all are converted: a val set
    converted from it with ``--split`` would be in this one too."""
    counts: dict = {}
    for el in images:
        subset = (el.get("subset") or "").strip()
        counts[subset] = counts.get(subset, 0) + 1
    named = {k: n for k, n in counts.items() if k}
    if len(named) < 2:
        return
    listing = ", ".join(f"{k} ({n} image{'s' if n != 1 else ''})" for k, n in sorted(named.items()))
    without = f" and {counts['']} image(s) of no subset" if "" in counts else ""
    report.tell(where, f"a project export with subsets {listing}{without}: all converted into one file; "
                       f"--split NAME converts one subset (e.g. --split {sorted(named)[0]})")


def read_cvat(xml_path: Path, *, builder: CocoBuilder, report: Report, split: Optional[str] = None) -> None:
    """Add the images and shapes of a CVAT for images XML file to ``builder``, only those of subset
    ``split`` when given; ValueError when the file as a whole cannot be read (see the module docstring).
    The images are looked for under ``builder.root``, then (when that is another folder) the XML's."""
    xml_path = Path(xml_path)
    roots = [builder.root] + ([xml_path.parent] if builder.root.absolute() != xml_path.parent.absolute()
                              else [])
    root = parse_xml(xml_path)
    images = _check_root(xml_path, root)
    xml_name = builder.relative(xml_path)
    tags = len(root.findall("tag"))  # "CVAT for video": a frame's tags beside the tracks, not in an <image>
    if tags:
        report.note("CVAT tags (image labels) left out", tags)
    if has_tracks(root):  # "CVAT for video 1.1": a track's shape on every frame
        files, others = _frame_files_and_others(roots)
        images = frame_images(root, images, report=report, where=xml_name, files=files, other_files=others)
    if split is not None:
        images = _subset(xml_path, images, split)
    else:
        _tell_subsets(images, report=report, where=xml_name)
    skeletons = declared_skeletons(root, report=report, where=xml_name)
    declare_skeletons(builder, skeletons)
    listings: dict = {}  # folders read for names stored in another Unicode form (common.unicode_form_match)
    adopted: dict = {}  # region label -> the skeleton label whose skeletons were grouped with its regions
    nested = sum(_convert_image(el, index, xml_name=xml_name, builder=builder, report=report, roots=roots,
                                listings=listings, adopted=adopted)
                 for index, el in enumerate(images))
    # a skeleton label whose skeletons all went onto regions of another label (a person box's person_pose
    # skeleton) stays the class <meta> makes it, without instances: whether a file's skeletons are
    # grouped must not renumber the classes of a split converted apart (``cvat_skeletons``)
    paired_only = paired_only_labels(skeletons, adopted, builder)
    if paired_only and builder.fixed is None:
        report.tell_once("cvat_paired_only", xml_name,
                         f"skeleton label(s) {', '.join(sorted(paired_only))}: every skeleton went onto the "
                         "region grouped with it, whose class carries the keypoints; kept as class(es) "
                         "without instances, as <meta> lists them, so that every split numbers the classes "
                         "alike (--classes with the region classes leaves them out)")
    declared = declared_labels(root)
    builder.declare(declared)
    _tell_label_order(declared, report=report, where=xml_name)
    ordered = {nfc(name) for name, (points, _) in skeletons.items() if points}
    adopting = {region for region, skeleton in adopted.items() if skeleton in ordered}
    finish_keypoints(builder, report=report, where=xml_name, declared=ordered | adopting)
    if nested:  # once per file: one line per shape would bury the problems
        report.warn(xml_name, f"{nested} element(s) nested inside shapes ignored (a shape holds only "
                              "<attribute> elements; its geometry is in its own attributes)")
