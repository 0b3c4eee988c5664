"""Pascal VOC-style instance segmentation (VOC2007 / VOC2012, and the "Segmentation mask" / "Pascal VOC"
exports of tools such as CVAT) -> COCO instances.

Layout (under SRC, the VOC2012 folder): ``JPEGImages/NAME.jpg`` (another image extension is found too),
``SegmentationObject/NAME.png`` (pixel k: the k-th object of the image, 0 background),
``SegmentationClass/NAME.png`` (pixel: the class index, 0 background), optionally
``Annotations/NAME.xml`` (``<object><name>cat</name><difficult>0|1</difficult>...``), optionally
``ImageSets/Segmentation/{train,val,trainval,...}.txt`` (one NAME a line) and ``labelmap.txt`` (CVAT /
Datumaro: ``name:r,g,b:parts:actions`` a line).

Rules:
- The images of ``--split S`` are the names in ``ImageSets/Segmentation/S.txt``. Without ``--split``:
  ``train.txt`` when it exists, else every PNG of ``SegmentationObject/`` (said in the notes).
- Indices, not colours: a palette PNG (mode P, as VOC ships them) is read as its palette indices; a
  greyscale (L) or 16-bit PNG as its values; an RGB PNG (tools that wrote colours) is mapped back to
  indices through VOC's colour map (index i's colour spreads the bits of i over the top bits of R, G, B)
  or, for class colours, the colours of ``labelmap.txt``. A colour in neither skips the image, naming it.
- 255 is VOC's "void": the band about 5 pixels wide drawn along every object's outline, and regions
  the annotators could not label. Void pixels belong to no instance, so each mask is the object's
  pixels inside the band: its border lies a pixel or two inside the true outline, and the box (computed
  from the mask, as for every converter) is that much tighter than the XML ``bndbox``. This is what the
  VOC evaluation scores (it ignores void pixels).
- Instance k's class: the most frequent class index of SegmentationClass over its pixels (void and
  background do not vote). When the XML exists, its k-th object's name is compared: a disagreement is
  a warning and SegmentationClass wins (the masks come from the PNGs; tools' XML objects need not follow
  the instance order). Without a class PNG, or when no pixel of the instance votes, the XML name is used.
- ``difficult`` objects (the XML's k-th object) are written as crowd regions (``iscrowd`` 1): VOC's
  evaluation ignores difficult objects, and a crowd region is COCO's "ignore" (neither a miss nor, for
  a detection it covers, a false positive; training does not sample it as a positive or negative).
- Categories: VOC's 20 classes with their indices as ids (aeroplane 1 .. tvmonitor 20, the XML's
  spellings), or ``labelmap.txt``'s labels in its order (background, wherever listed, is index 0; the
  others 1..N), or ``--classes a,b`` for indices 1..N (then labelmap.txt is not read). A class index with
  no name is reported and the instance skipped. A tree with boxes only (below) whose XML names are not
  all VOC's, with neither: the names of its XMLs, sorted, said in one line (LabelImg's own classes).
- EXIF orientation: training reads an image turned by its EXIF tag (``data/images.py``), but VOC masks
  follow the pixels as stored. Masks of the stored size are turned the same way (a warning names the
  image: check it with ``show-data``); masks already of the turned size (a quarter turn, a tool that
  turned the image before annotating) are used as they are.
- Reported and skipped: a name whose PNG or image is missing, a mask of another size than the image,
  an unreadable PNG or an unknown colour (the image); an instance with no class (the instance). An
  instance id with no XML object is a warning (its class comes from SegmentationClass), and so is an
  unreadable XML (one with a DOCTYPE too: ``common.parse_xml`` expands no entity). An XML object whose
  index has no pixel in the object PNG is named (the XML file, its index and name) and counted. An
  object PNG with no instance gives an image without instances. A split file's name is looked up among
  the images before any other path is built from it.
- A detection tree (``Annotations/*.xml`` and ``ImageSets/Main/``, no SegmentationObject PNG: VOC's
  detection task, LabelImg, CVAT's VOC export of box tasks) is converted by ``voc_boxes``: box-only
  instances (``segmentation`` []), or rectangles with ``--boxes-as-masks``; so is a folder of XMLs beside
  their images (LabelImg's default save place).
- Mask PNGs are opened by ``images.open_image`` (the converters' one open): one over the pixel limit
  skips its image as ``image_too_large`` (PIL's DecompressionBombError ended the whole conversion).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np

from maskrcnn.data.formats.common import CocoBuilder, Report, Skip, image_size
from maskrcnn.data.formats.geometry import turn_array
from maskrcnn.data.formats.voc_boxes import (
    has_boxes_only,
    is_flat_folder,
    read_objects,
    read_voc_boxes,
    split_names,
)
from maskrcnn.data.images import IMAGE_EXTENSIONS, TOO_LARGE, ImageReadError, open_image

__all__ = ["VOC_CLASSES", "VocClasses", "read_voc", "voc_classes", "voc_colormap"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
VOID = 255
BACKGROUND = "background"
_EXIF_ORIENTATION = 0x0112
_INDEX_MODES = ("P", "L", "1", "I", "I;16", "I;16B", "I;16L", "I;16N")


def voc_colormap(n: int = 256) -> np.ndarray:
    """VOC's colour of each index 0..n-1: (n, 3) uint8. Bit 3j (R), 3j+1 (G), 3j+2 (B) of the index
    becomes bit 7-j of that channel, so small indices get far-apart colours; 255 is (224, 224, 192)."""
    index = np.arange(n)
    cmap = np.zeros((n, 3), dtype=np.int64)
    for j in range(8):
        for channel in range(3):
            cmap[:, channel] |= ((index >> (3 * j + channel)) & 1) << (7 - j)
    return cmap.astype(np.uint8)


def _code(rgb) -> np.ndarray:
    """(..., 3) colours -> (...) int64 codes r << 16 | g << 8 | b."""
    rgb = np.asarray(rgb, dtype=np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


_VOC_COLOURS = {int(c): i for i, c in enumerate(_code(voc_colormap()))}


class VocClasses(NamedTuple):
    """``names``: class index -> category name; ``colours``: colour code -> class index (RGB class PNGs);
    ``source``: where the names came from (said in the summary)."""

    names: dict
    colours: dict
    source: str

    @property
    def categories(self) -> list:
        """(id, name) for the builder: the class index is the category id."""
        return sorted(self.names.items())


def _read_labelmap(path: Path) -> VocClasses:
    """CVAT / Datumaro ``labelmap.txt``: ``name:r,g,b:parts:actions`` a line, ``#`` comments."""
    labels = []  # (name, colour or None), in file order
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        colour = rest.split(":")[0].strip()
        try:
            rgb = tuple(int(v) for v in colour.split(",")) if colour else None
            if rgb is not None and (len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb)):
                raise ValueError
        except ValueError:
            raise ValueError(f"{path} line {n}: colour {colour!r} is not r,g,b (0..255)") from None
        if not name.strip() or name.strip() in [label for label, _ in labels]:
            raise ValueError(f"{path} line {n}: label {name.strip()!r} is empty or given twice")
        labels.append((name.strip(), rgb))
    # background is index 0 wherever it is listed (Datumaro moves it first); the others follow in order
    background = [lab for lab in labels if lab[0].lower() == BACKGROUND]
    others = [lab for lab in labels if lab[0].lower() != BACKGROUND]
    cmap = voc_colormap()
    colours = {}
    indexed = (background[:1] or [(BACKGROUND, None)]) + others  # index 0 is background
    for index, (name, rgb) in enumerate(indexed):
        code = int(_code(rgb if rgb is not None else cmap[index]))
        if code in colours:  # two classes of one colour: an RGB class mask could not tell them apart
            raise ValueError(f"{path}: {name!r} has the colour of another label")
        colours[code] = index
    colours.setdefault(int(_code(cmap[VOID])), VOID)
    names = {i + 1: name for i, (name, _) in enumerate(others)}
    return VocClasses(names, colours, path.name)


def _xml_names(root: Path, report: Optional[Report]) -> list:
    """The object names of a box-only tree's XMLs (every one, not a split's: the ids stay the same
    across splits), sorted; an XML that cannot be read gives none (it is named when converted)."""
    folder = root if is_flat_folder(root) else root / "Annotations"
    names = set()
    for path in folder.glob("*.xml"):
        if report is not None:
            report.reading(path)
        try:
            names.update(name for name, _, _ in read_objects(path) if name)
        except Skip:
            continue
    return sorted(names)


def voc_classes(root: Path, classes: Optional[Sequence[str]] = None, *,
                report: Optional[Report] = None) -> VocClasses:
    """The classes of a VOC tree: ``classes`` (the names of indices 1..N) when given, else those of
    ``ROOT/labelmap.txt`` when it exists, else VOC's 20. A tree with boxes only (a LabelImg folder, a
    detection tree) names its classes in its XMLs rather than in index PNGs: one whose names are not all
    VOC's takes those names, sorted (said on ``report``), since VOC's 20 would skip every other
    object as unknown and leave an empty dataset."""
    root = Path(root)
    labelmap = root / "labelmap.txt"
    if classes is None and labelmap.is_file():
        return _read_labelmap(report.reading(labelmap) if report is not None else labelmap)
    if classes is None and (is_flat_folder(root) or has_boxes_only(root)):
        found = _xml_names(root, report)
        if found and not set(found) <= set(VOC_CLASSES):
            if report is not None:
                report.tell(str(root), f"classes from the XMLs' <name>s (no --classes, no labelmap.txt): "
                                       f"{', '.join(found[:20])}{', ...' if len(found) > 20 else ''} "
                                       f"(sorted; --classes sets them and their order)")
            return VocClasses({i + 1: name for i, name in enumerate(found)}, {}, "the XMLs' <name>s")
    names = list(classes) if classes is not None else list(VOC_CLASSES)
    source = "--classes" if classes is not None else "the 20 VOC classes"
    return VocClasses({i + 1: name for i, name in enumerate(names)}, dict(_VOC_COLOURS), source)


def _read_indices(path: Path, colours: dict, *, what: str) -> np.ndarray:
    """An index PNG -> (H, W) int64 indices (palette indices, grey or 16-bit values, or RGB colours
    mapped through ``colours``); Skip when it cannot be read or holds an unknown colour."""
    name = f"{what} {path.name}"
    try:
        img = open_image(path, name)  # the converters' one open: over the pixel limit refused from the header
    except ImageReadError as e:
        # a PNG over the pixel limit is counted as every image over it (the hint says how to raise it)
        if e.reason == TOO_LARGE:
            raise Skip(TOO_LARGE, str(e)) from None
        raise Skip("unreadable_mask", f"{name} cannot be read ({str(e).removeprefix(name + ': ')})") from None
    with img:
        mode = img.mode
        if mode in _INDEX_MODES or mode in ("LA", "PA"):
            array = np.asarray(img).astype(np.int64)  # P: the palette indices, never the colours
            indices = array[..., 0] if mode in ("LA", "PA") else array  # (H, W)
            if indices.size and indices.min() < 0:  # 32-bit 'I' PNGs can hold them
                raise Skip("bad_mask", f"{name} holds negative values")
            return indices
        if mode not in ("RGB", "RGBA"):
            raise Skip("bad_mask", f"{name} has mode {mode}; expected palette, grey or RGB")
        rgb = np.asarray(img.convert("RGB"))  # (H, W, 3)
    codes, inverse = np.unique(_code(rgb), return_inverse=True)
    unknown = [int(c) for c in codes if int(c) not in colours]
    if unknown:
        c = unknown[0]
        row, col = np.argwhere(_code(rgb) == c)[0].tolist()
        rgb_c = (c >> 16, (c >> 8) & 255, c & 255)
        raise Skip("unknown_colour", f"{what} {path.name}: colour {rgb_c} (at x={col}, y={row}) is no "
                                     f"index's colour ({len(unknown)} unknown colour(s))")
    lookup = np.array([colours[int(c)] for c in codes], dtype=np.int64)
    return lookup[inverse.reshape(rgb.shape[:2])]


def _orientation(path: Path) -> int:
    try:
        with open_image(path, str(path), decode=False) as img:
            return int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except (OSError, SyntaxError, ValueError, TypeError):  # ImageReadError is a ValueError
        return 1  # image_size has read the file already; a broken EXIF block is read_image's business


def _align(ids: np.ndarray, *, orientation: int, size: tuple, what: str, name: str) -> tuple:
    """(``ids`` laid on the image as read: (H, W) = ``size``, EXIF orientation applied; whether they were
    turned for it), or Skip."""
    turned = orientation in range(2, 9)  # an EXIF orientation that turns the image (geometry.turn_array)
    stored = size[::-1] if orientation in (5, 6, 7, 8) else size
    if ids.shape == size and (not turned or ids.shape != stored):
        return ids, False  # no orientation, or a quarter turn the mask already follows
    if ids.shape == stored:
        return turn_array(ids, orientation).astype(np.int64), True
    h, w = ids.shape
    raise Skip("bad_mask_size", f"{what} {name} is {w}x{h}, the image {size[1]}x{size[0]}")


def _xml_objects(path: Path, *, report: Report, where: str) -> Optional[list]:
    """[(name, difficult)] of the XML's objects in order; None when there is no (readable) XML."""
    if not path.is_file():
        return None
    try:
        objects = read_objects(report.reading(path))
    except Skip as e:
        report.warn(where, f"{e}; classes from SegmentationClass only, difficult flags unknown")
        return None
    return [(name, difficult) for name, difficult, _ in objects]


def _image_paths(image_dir: Path) -> dict:
    """name -> image path in ``image_dir`` (.jpg first, as VOC names them, then other image extensions)."""
    paths: dict = {}
    ranked = sorted((p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                    key=lambda p: (p.suffix != ".jpg", p.name))
    for p in ranked:
        paths.setdefault(p.stem, p)
    return paths


def _instance_class(k: int, pixels: np.ndarray, xml: Optional[list], *, classes: VocClasses,
                    report: Report, where: str) -> tuple:
    """(category name, difficult) of instance k, from its SegmentationClass pixels (None without a class
    PNG) and the XML's k-th object; or Skip."""
    xml_name, difficult = xml[k - 1] if xml is not None and k <= len(xml) else (None, False)
    if xml is not None and k > len(xml):
        report.warn(where, f"instance {k} has no object in the XML ({len(xml)} objects); class from "
                           f"SegmentationClass, not difficult")
    votes = pixels[(pixels != 0) & (pixels != VOID)] if pixels is not None else pixels
    if votes is not None and votes.size:
        index = int(np.bincount(votes).argmax())
        if index not in classes.names:
            raise Skip("unknown_class_index", f"class index {index} has no name in {classes.source}")
        name = classes.names[index]
        if xml_name is not None and xml_name != name:
            report.warn(where, f"instance {k} is {name!r} in SegmentationClass but {xml_name!r} in the XML; "
                               f"using {name!r}")
        return name, difficult
    if xml_name:
        return xml_name, difficult
    raise Skip("no_class", "no class: no SegmentationClass pixel and no XML object for it")


def _convert_image(name: str, image_path: Path, *, root: Path, classes: VocClasses, builder: CocoBuilder,
                   report: Report) -> None:
    obj_path = root / "SegmentationObject" / f"{name}.png"
    cls_path = root / "SegmentationClass" / f"{name}.png"
    where = builder.relative(obj_path)
    size = image_size(image_path)  # (H, W) as read_image reads it
    orientation = _orientation(image_path)
    ids, turned = _align(_read_indices(report.reading(obj_path), _VOC_COLOURS, what="SegmentationObject"),
                         orientation=orientation, size=size, what="SegmentationObject", name=obj_path.name)
    labels = None
    if cls_path.is_file():
        labels, _ = _align(_read_indices(report.reading(cls_path), classes.colours, what="SegmentationClass"),
                           orientation=orientation, size=size, what="SegmentationClass", name=cls_path.name)
    if turned:
        report.warn(where, f"the image has EXIF orientation {orientation} and is read turned; its masks "
                           f"are turned the same way (check with show-data)")
    xml = _xml_objects(root / "Annotations" / f"{name}.xml", report=report, where=where)
    if labels is None and xml is None:
        raise Skip("missing_annotation", f"neither SegmentationClass/{name}.png nor Annotations/{name}.xml "
                                         f"gives the classes")
    image_id = builder.add_image(image_path, height=size[0], width=size[1], source=where)
    instances = [k for k in np.unique(ids).tolist() if k not in (0, VOID)]
    if not instances:
        report.note("images without instances")
    if xml is not None:  # object k of the XML is index k of the PNG: those with no pixel, gaps too
        xml_where = builder.relative(root / "Annotations" / f"{name}.xml")
        for k in sorted(set(range(1, len(xml) + 1)) - set(instances)):
            report.note("XML objects without pixels in SegmentationObject")
            report.tell(f"{xml_where}: object {k} ({xml[k - 1][0] or 'no name'})",
                        f"no pixel of index {k} in {where}; left out")
    for k in instances:
        mask = ids == k
        try:
            label, difficult = _instance_class(k, labels[mask] if labels is not None else None, xml,
                                               classes=classes, report=report, where=where)
            builder.add_mask(image_id, label, mask, iscrowd=difficult)
        except Skip as e:
            report.skip(f"{where}: instance {k}", e)
            continue
        if difficult:
            report.note("difficult objects written as crowd regions")


def read_voc(root: Path, *, split: Optional[str], classes: VocClasses, builder: CocoBuilder,
             report: Report, boxes_as_masks: bool = False) -> None:
    """Add the images of one split of a VOC tree and their instances (builder categories:
    ``classes.categories``). A detection tree (Annotations/*.xml, no SegmentationObject PNG) is read by
    ``voc_boxes`` (``boxes_as_masks``: its boxes as rectangle masks)."""
    root = Path(root)
    if is_flat_folder(root):  # LabelImg's default: NAME.xml beside NAME.jpg, no VOC folders
        read_voc_boxes(root, split=split, images=_image_paths(root), builder=builder, report=report,
                       boxes_as_masks=boxes_as_masks, flat=True)
        return
    if has_boxes_only(root):
        if not (root / "JPEGImages").is_dir():
            raise FileNotFoundError(f"{root / 'JPEGImages'}: no such folder; a VOC detection tree has "
                                    "JPEGImages/ beside Annotations/ (export the images too)")
        read_voc_boxes(root, split=split, images=_image_paths(root / "JPEGImages"), builder=builder,
                       report=report, boxes_as_masks=boxes_as_masks)
        return
    if boxes_as_masks:
        raise ValueError(f"{root}: --boxes-as-masks applies to VOC trees with boxes only (Annotations/*.xml "
                         f"without SegmentationObject PNGs); this one has masks")
    for folder in ("SegmentationObject", "JPEGImages"):
        if not (root / folder).is_dir():
            raise FileNotFoundError(
                f"{root.resolve() / folder}: no such folder; a VOC tree has JPEGImages/, "
                f"SegmentationObject/, SegmentationClass/ (and Annotations/, ImageSets/Segmentation/) "
                f"side by side; one with boxes only has Annotations/*.xml and JPEGImages/ (or, as "
                f"LabelImg saves them, the XMLs beside the images in one folder)"
                + (" (export the images with the annotations)" if folder == "JPEGImages" else "")
            )
    source, names = split_names(root, split, sets="Segmentation", listed="SegmentationObject", suffix=".png",
                                report=report)
    images = _image_paths(root / "JPEGImages")
    for n, name in enumerate(names, 1):
        record = f"{source} line {n} ({name})" if source != "SegmentationObject" else f"{source}/{name}.png"
        if name not in images:  # first: a split file's name is probed as a path only when it is an image's
            report.skip(record, Skip("missing_image", f"no image JPEGImages/{name}.jpg"))
            continue
        if not (root / "SegmentationObject" / f"{name}.png").is_file():
            report.skip(record, Skip("missing_annotation", f"no SegmentationObject/{name}.png"))
            continue
        try:
            _convert_image(name, images[name], root=root, classes=classes, builder=builder, report=report)
        except Skip as e:
            report.skip(builder.relative(root / "SegmentationObject" / f"{name}.png"), e)
