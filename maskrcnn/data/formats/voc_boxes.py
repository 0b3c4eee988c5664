"""Pascal VOC detection trees (boxes only) -> COCO instances without masks.

Layout (under SRC): ``Annotations/NAME.xml`` (``<object><name>``, ``<difficult>``, ``<bndbox>`` with
``xmin ymin xmax ymax``), ``JPEGImages/NAME.jpg`` and optionally ``ImageSets/Main/{train,val,...}.txt``
(one NAME a line; VOC's per-class files ``cat_train.txt`` hold "NAME 1" lines, read the same way), as
VOC's detection task, LabelImg and CVAT's "Pascal VOC" export of box tasks write it, with no
SegmentationObject PNG.

Rules:
- The images of ``--split S``: the names in ``ImageSets/Main/S.txt``. Without ``--split``: ``train.txt``
  when it exists, else every XML of ``Annotations/`` (said in the notes).
- Each object is one box-only instance (``segmentation`` [], its box as ``bbox``, area w * h): the COCO
  loader trains such boxes for the box and class losses and leaves them out of the mask loss. With
  ``boxes_as_masks`` each box is a rectangle polygon instead (a mask that is its box).
- Coordinates: VOC's bndbox counts pixels from 1 and includes xmax, ymax (pixel 1..W), so the box is
  ``[xmin - 1, ymin - 1, xmax, ymax]`` in COCO's pixel-edge coordinates (as detectron2 reads VOC);
  clipped to the image, whose size is read from the file (the XML's ``<size>`` may be 0 or stale).
  Tools that write 0-based boxes come out a pixel larger at the top-left edge.
- ``difficult`` objects are crowd regions (``iscrowd`` 1), as in ``voc``; parts (``<part>``) are not
  instances. An object without a name or a readable bndbox is reported and skipped; an unreadable XML
  or a missing image skips the image.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

from maskrcnn.data.formats.common import CocoBuilder, Report, Skip, image_size
from maskrcnn.data.formats.geometry import numbers, rectangle_points, to_coco_polygon

__all__ = ["has_boxes_only", "read_voc_boxes"]


def has_boxes_only(root: Path) -> bool:
    """A detection tree: Annotations/*.xml and no SegmentationObject PNG."""
    objects = root / "SegmentationObject"
    has_pngs = objects.is_dir() and any(objects.glob("*.png"))
    return not has_pngs and (root / "Annotations").is_dir() and any((root / "Annotations").glob("*.xml"))


def _split_names(root: Path, split: Optional[str], *, report: Report) -> tuple:
    """(where the names came from, [names])."""
    sets = root / "ImageSets" / "Main"
    found = sorted(p.stem for p in sets.glob("*.txt")) if sets.is_dir() else []
    if split is None and "train" not in found:
        names = sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
        report.note(f"images of Annotations/ converted (no ImageSets/Main/train.txt; split files: "
                    f"{', '.join(found[:8]) or 'none'})", len(names))
        return "Annotations", names
    split = split or "train"
    path = sets / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such split file (found: {', '.join(found[:8]) or 'none'})")
    names = [line.split()[0] for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    return f"ImageSets/Main/{split}.txt", names


def _objects(path: Path) -> list:
    """[(index, name, difficult, bndbox element or None)] of an XML file, or Skip."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise Skip("unreadable_xml", f"{path.name} cannot be read ({e})") from None
    return [(k, (obj.findtext("name") or "").strip(),
             (obj.findtext("difficult") or "0").strip() in ("1", "true", "True"), obj.find("bndbox"))
            for k, obj in enumerate(root.findall("object"))]


def _box(bndbox) -> list:
    """VOC's 1-based inclusive bndbox -> (x1, y1, x2, y2) pixel edges, or Skip."""
    if bndbox is None:
        raise Skip("bad_box", "the object has no <bndbox>")
    texts = [bndbox.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
    try:
        xmin, ymin, xmax, ymax = (float(t) for t in texts)
    except (TypeError, ValueError):
        raise Skip("bad_box", f"<bndbox> xmin, ymin, xmax, ymax {texts} are not numbers") from None
    xmin, ymin, xmax, ymax = numbers(xmin, ymin, xmax, ymax, what="<bndbox> xmin, ymin, xmax, ymax")
    return [xmin - 1.0, ymin - 1.0, xmax, ymax]


def read_voc_boxes(root: Path, *, split: Optional[str], images: dict, builder: CocoBuilder, report: Report,
                   boxes_as_masks: bool = False) -> None:
    """Add the images of one split of a VOC detection tree and their boxes. ``images``: name -> image
    path (JPEGImages/)."""
    source, names = _split_names(root, split, report=report)
    report.note("VOC images with boxes only (no SegmentationObject PNGs): written as " +
                ("rectangle masks (--boxes-as-masks)" if boxes_as_masks else
                 "box-only annotations (segmentation []; --boxes-as-masks writes rectangles)"), len(names))
    for n, name in enumerate(names, 1):
        record = f"{source} line {n} ({name})" if source != "Annotations" else f"Annotations/{name}.xml"
        xml_path = root / "Annotations" / f"{name}.xml"
        try:
            if not xml_path.is_file():
                raise Skip("missing_annotation", f"no Annotations/{name}.xml")
            if name not in images:
                raise Skip("missing_image", f"no image JPEGImages/{name}.jpg")
            objects = _objects(xml_path)
            height, width = image_size(images[name])
            image_id = builder.add_image(images[name], height=height, width=width, source=record)
        except Skip as e:
            report.skip(record, e)
            continue
        where = builder.relative(xml_path)
        for k, label, difficult, bndbox in objects:
            try:
                box = _box(bndbox)
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
