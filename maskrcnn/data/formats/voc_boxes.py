"""Pascal VOC detection trees (boxes only) -> COCO instances without masks.

Layout (under SRC): ``Annotations/NAME.xml`` (``<object><name>``, ``<difficult>``, ``<bndbox>`` with
``xmin ymin xmax ymax``), ``JPEGImages/NAME.jpg`` and optionally ``ImageSets/Main/{train,val,...}.txt``
(one NAME a line; VOC's per-class files ``cat_train.txt`` hold "NAME 1" lines, read the same way), as
VOC's detection task, LabelImg and CVAT's "Pascal VOC" export of box tasks write it, with no
SegmentationObject PNG. LabelImg's default save place, ``NAME.xml`` beside ``NAME.jpg`` in one folder
(none of the folders above), is read too: every XML of the folder, its image the one of the same name
beside it (no split files: ``split-data`` splits the result).

Rules:
- The images of ``--split S``: the names in ``ImageSets/Main/S.txt``. Without ``--split``: ``train.txt``
  when it exists, else every XML of ``Annotations/`` (said in the notes).
- Each object is one box-only instance (``segmentation`` [], its box as ``bbox``, area w * h): the COCO
  loader trains such boxes for the box and class losses and leaves them out of the mask loss. With
  ``boxes_as_masks`` each box is a rectangle polygon instead (a mask that is its box).
- Coordinates: VOC's bndbox counts pixels from 1 and includes xmax, ymax (pixel 1..W), so the box is
  ``[xmin - 1, ymin - 1, xmax, ymax]`` in COCO's pixel-edge coordinates (as detectron2 reads VOC);
  clipped to the image, whose size is read from the file (the XML's ``<size>`` may be 0: not used; one
  that differs is judged by the rule of every converter, ``common.resized_scale``: a resized copy has
  its boxes scaled to it, an image of another shape is skipped as ``image_size_mismatch``). A ``<size>``
  that is the stored size of a photo EXIF turns by a quarter (LabelImg shows the stored pixels) says
  the boxes lie on those: they are turned with the image.
  Tools that write 0-based boxes come out a pixel larger at the top-left edge. A box written inverted
  (xmin > xmax or ymin > ymax) has its corners swapped first, with a warning.
- ``difficult`` objects are crowd regions (``iscrowd`` 1), as in ``voc``; parts (``<part>``) are not
  instances. An object without a name or a readable bndbox is reported and skipped; an unreadable XML
  (one with a DOCTYPE too: ``common.parse_xml`` expands no entity) or a missing image skips the image.
- ``split_names`` and ``read_objects`` are ``voc``'s too (its Segmentation split, its XML objects).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from maskrcnn.data.formats.common import (
    CocoBuilder,
    Report,
    Skip,
    annotated_size,
    given_size,
    parse_xml,
    resized_scale,
    stored_pixels_told,
)
from maskrcnn.data.formats.geometry import numbers, rectangle_points, to_coco_polygon, turn_points

__all__ = ["has_boxes_only", "is_flat_folder", "read_objects", "read_voc_boxes", "split_names"]


def has_boxes_only(root: Path) -> bool:
    """A detection tree: Annotations/*.xml and no SegmentationObject PNG."""
    objects = root / "SegmentationObject"
    has_pngs = objects.is_dir() and any(objects.glob("*.png"))
    return not has_pngs and (root / "Annotations").is_dir() and any((root / "Annotations").glob("*.xml"))


def split_names(root: Path, split: Optional[str], *, sets: str, listed: str, suffix: str,
                report: Report) -> tuple:
    """(where the names came from, [names]) of the split: the names in ``ImageSets/{sets}/{split}.txt``
    (``train`` without ``split``); without ``split`` and ``train.txt``, the file stems of
    ``{listed}/*{suffix}`` (said in the notes). Shared by ``voc`` (Segmentation, SegmentationObject PNGs)
    and this module (Main, Annotations XML)."""
    folder = root / "ImageSets" / sets
    found = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
    if split is None and "train" not in found:
        names = sorted(p.stem for p in (root / listed).glob(f"*{suffix}"))
        report.note(f"images of {listed}/ taken (no ImageSets/{sets}/train.txt; split files: "
                    f"{', '.join(found[:8]) or 'none'})", len(names))
        return listed, names
    split = split or "train"
    path = folder / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such split file (found: {', '.join(found[:8]) or 'none'})")
    text = report.reading(path).read_text(encoding="utf-8-sig")
    names = [line.split()[0] for line in text.splitlines() if line.strip()]
    return f"ImageSets/{sets}/{split}.txt", names


def read_objects(path: Path) -> list:
    """[(name, difficult, bndbox element or None)] of a VOC XML's objects in order (its ``<part>`` s are
    not objects); Skip("unreadable_xml") when the file cannot be read, is not well-formed or has a
    DOCTYPE (``parse_xml``: no entity expansion). Shared by ``voc`` and this module."""
    return _read_xml(path)[0]


def _read_xml(path: Path) -> tuple:
    """(``read_objects``' list, the (H, W) ``<size>`` gives or None when it gives none or 0); Skip."""
    try:
        root = parse_xml(path)
    except (ValueError, OSError) as e:
        detail = str(e).removeprefix(f"{path}: ")  # the message names the file by its name
        raise Skip("unreadable_xml", f"{path.name} cannot be read ({detail})") from None
    objects = [((obj.findtext("name") or "").strip(),
                (obj.findtext("difficult") or "0").strip() in ("1", "true", "True"), obj.find("bndbox"))
               for obj in root.iter("object")]
    return objects, given_size(root.findtext("size/height"), root.findtext("size/width"))


def _box(bndbox) -> tuple:
    """VOC's 1-based inclusive bndbox -> ((x1, y1, x2, y2) pixel edges, the pairs written inverted, as
    "xmin > xmax"), or Skip. An inverted pair (a script or tool bug) has its corners sorted before the
    -1 of the 1-based start: the box then covers the pixels its corners name, not one a pixel or two off."""
    if bndbox is None:
        raise Skip("bad_box", "the object has no <bndbox>")
    texts = [bndbox.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
    try:
        xmin, ymin, xmax, ymax = (float(t) for t in texts)
    except (TypeError, ValueError):
        raise Skip("bad_box", f"<bndbox> xmin, ymin, xmax, ymax {texts} are not numbers") from None
    xmin, ymin, xmax, ymax = numbers(xmin, ymin, xmax, ymax, what="<bndbox> xmin, ymin, xmax, ymax")
    inverted = [f"{a} {lo:g} > {b} {hi:g}" for a, b, lo, hi in (("xmin", "xmax", xmin, xmax),
                                                                 ("ymin", "ymax", ymin, ymax)) if lo > hi]
    xmin, xmax = sorted((xmin, xmax))
    ymin, ymax = sorted((ymin, ymax))
    return [xmin - 1.0, ymin - 1.0, xmax, ymax], inverted


def is_flat_folder(root: Path) -> bool:
    """LabelImg's default save place: ``NAME.xml`` beside ``NAME.jpg`` in one folder, with none of a VOC
    tree's folders (Annotations/, JPEGImages/, SegmentationObject/)."""
    folders = ("Annotations", "JPEGImages", "SegmentationObject")
    return not any((root / f).is_dir() for f in folders) and any(root.glob("*.xml"))


def read_voc_boxes(root: Path, *, split: Optional[str], images: dict, builder: CocoBuilder, report: Report,
                   boxes_as_masks: bool = False, flat: bool = False) -> None:
    """Add the images of one split of a VOC detection tree and their boxes. ``images``: name -> image
    path (JPEGImages/). ``flat``: a LabelImg folder (``is_flat_folder``): every ``*.xml`` of ``root``,
    its image the file of the same name beside it (``images`` lists ``root``); no split files."""
    if flat:
        if split is not None:
            raise ValueError(f"{root}: --split {split}: a folder of XMLs beside their images (LabelImg's) "
                             f"has no ImageSets/Main/ split files; convert it whole, then split it with "
                             f"split-data")
        source, names = ".", sorted(p.stem for p in root.glob("*.xml"))
        report.note("images of a LabelImg folder (XMLs beside their images)", len(names))
    else:
        source, names = split_names(root, split, sets="Main", listed="Annotations", suffix=".xml",
                                    report=report)
    xmls, pictures = ("", "") if flat else ("Annotations/", "JPEGImages/")
    # counted per image converted, not per name listed: a dataset none of whose XMLs reads says nothing
    # was written, not both
    written_as = ("VOC images with boxes only (no SegmentationObject PNGs): written as " +
                  ("rectangle masks (--boxes-as-masks)" if boxes_as_masks else
                   "box-only annotations (segmentation []; --boxes-as-masks writes rectangles)"))
    for n, name in enumerate(names, 1):
        record = f"{source} line {n} ({name})" if source not in ("Annotations", ".") else f"{xmls}{name}.xml"
        xml_path = root / xmls / f"{name}.xml"
        try:
            if name not in images:  # first: a split file's name is a path probed only when it names an image
                raise Skip("missing_image", f"no image {pictures}{name}.jpg")
            if not xml_path.is_file():
                raise Skip("missing_annotation", f"no {xmls}{name}.xml")
            objects, given = _read_xml(report.reading(xml_path))
            (height, width), orientation = annotated_size(images[name], given)
            # a resized copy of the image drawn on: boxes scaled to it; of another shape: skipped
            scale = None if orientation is not None else \
                resized_scale(report, builder.relative(xml_path), given, (height, width))
            image_id = builder.add_image(images[name], height=height, width=width, source=record)
        except Skip as e:
            report.skip(record, e)
            continue
        report.note(written_as)
        where = builder.relative(xml_path)
        if orientation is not None:  # LabelImg shows (and sizes) a photo's stored pixels
            stored_pixels_told(report, where, given, (height, width), orientation)
        for k, (label, difficult, bndbox) in enumerate(objects):
            try:
                box, inverted = _box(bndbox)
                if inverted:
                    report.warn(f"{where}: object {k + 1} ({label or 'no name'})",
                                f"<bndbox> {' and '.join(inverted)}: its corners swapped (a tool or script "
                                "wrote them inverted)")
                if scale is not None:
                    (sx, sy), (x1, y1, x2, y2) = scale, box
                    box = [x1 * sx, y1 * sy, x2 * sx, y2 * sy]
                if orientation is not None:  # the two corners turned: a box again, its corners swapped
                    x1, y1, x2, y2 = box
                    corners = turn_points(np.array([[x1, y1], [x2, y2]]), orientation=orientation,
                                          stored=given)
                    box = [*corners.min(axis=0).tolist(), *corners.max(axis=0).tolist()]
                if boxes_as_masks:
                    polygon = to_coco_polygon(rectangle_points(*box), width, height)
                    builder.add_polygons(image_id, label, [polygon], iscrowd=difficult)
                else:
                    builder.add_box(image_id, label, box, iscrowd=difficult)
            except Skip as e:
                report.skip(f"{where}: object {k + 1} ({label or 'no name'})", e)
                continue
            if difficult:
                report.note("difficult objects written as crowd regions")
