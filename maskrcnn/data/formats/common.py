"""What every dataset converter shares: the COCO file being built, the report of skipped records,
image sizes and the list of annotation files.

Shapes: an image is H rows x W columns; a mask is (H, W) bool.

A converter fills a ``CocoBuilder`` (images and instances; area always the pixels of the mask the written
segmentation decodes to; bbox the extent of the polygons for a polygon instance, as COCO's own files give
it (the mask's box loses a pixel or two at acute corners, where no pixel centre is covered), the mask's
box for a mask instance) and a ``Report``: a record that cannot be converted raises ``Skip`` (a reason
key and a message); the converter catches it at the smallest unit (a shape, an object, a file), the
report prints it naming the file and the record, counts it by reason, and the conversion goes on.

``file_name`` of every image is its path relative to the builder's root (with ``/`` separators, ``..``
where the image lies outside it), so ``--train-images ROOT`` finds every image, wherever it lies.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Optional, Sequence, TextIO

import numpy as np
import pycocotools.mask as mask_utils

from maskrcnn.data import images
from maskrcnn.data.json_values import read_json_file
from maskrcnn.data.mask_codec import annotation_to_mask, segmentation_problem
from maskrcnn.data.unicode_names import folded_name, folder_listing, nfc, other_form_names
from maskrcnn.io_utils import atomic_write_json

__all__ = ["CocoBuilder", "MaskPatch", "Report", "Skip", "annotated_size", "case_only_match", "given_size",
           "image_size", "json_files", "parse_xml", "read_json", "recorded_folder_unusable", "resized_scale",
           "stored_pixels_told", "stripped_label", "unicode_form_match", "warn_label_case",
           "usable_recorded_folder", "write_json"]

_MAX_PRINTED = 50  # problems printed one by one; the rest are counted (and kept in Report.messages)
# warnings of one kind printed one by one (``Report.warn_few``); past them one summary line: a whole
# dataset named IMG_1.JPG for IMG_1.jpg gave 10000 alike lines
_FEW_OF_A_KIND = 3


def _shown(value, limit: int = 100) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def usable_recorded_folder(owner: Path, value) -> tuple:
    """The images folder ``predict --export`` recorded in file ``owner`` (``value``: a path relative to
    the file's folder): (the folder, normalised, None) when it is one relative path to an existing
    folder; (None, why not) otherwise, for ``recorded_folder_unusable``."""
    import ntpath
    import posixpath

    if not isinstance(value, str) or not value.strip() or "\0" in value:
        return None, f"{_shown(repr(value))}, not a folder's path"
    if posixpath.isabs(value) or ntpath.isabs(value) or ntpath.splitdrive(value)[0]:
        return None, f"{_shown(value)!r}, not a path relative to the file"
    folder = Path(os.path.normpath(Path(owner).parent / value))
    if not folder.is_dir():
        return None, f"{_shown(value)!r}, not a folder beside it (the file was moved?)"
    return folder, None


def recorded_folder_unusable(what: str, why: str) -> str:
    """The line said when a recorded images folder (``what``: where it is recorded) is not used."""
    return f"{what} is {why}: images looked for under the default folder (give --images)"


class Skip(ValueError):
    """A record that cannot be converted: ``reason`` is a short key the report counts by."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Report:
    """Skipped records (counted by reason, printed naming file and record), warnings and notes."""

    def __init__(self, *, stream: Optional[TextIO] = None, hints: Optional[dict] = None,
                 guard: Optional[Callable] = None):
        """``hints``: {reason: text} said with the first problem of that reason (how to fix it:
        "pass --images ROOT" with an image not found). ``guard``: called with each file the conversion
        opens (``reading``); convert-data's ``output_guard.FileGuard`` raises there when it is --output."""
        self.stream = stream if stream is not None else sys.stderr
        self.hints = dict(hints or {})
        self.guard = guard
        self.skipped: Counter = Counter()
        self.notes: Counter = Counter()
        self.messages: list = []
        self._told: set = set()  # keys of the lines said once (``tell_once``)
        self._kinds: dict = {}  # kind -> [count, what they are] (``warn_few``)

    def reading(self, path: Path) -> Path:
        """``path``, a file the conversion opens, checked by the ``guard`` now: an --output that is one of
        them refused at that file, not once every file is read (nor by a list of them all kept)."""
        if self.guard is not None:
            self.guard(path)
        return path

    def _print(self, text: str) -> None:
        self.messages.append(text)
        if len(self.messages) <= _MAX_PRINTED:
            print(text, file=self.stream)

    def skip(self, where: str, problem: Skip) -> None:
        self.skipped[problem.reason] += 1
        hint = self.hints.pop(problem.reason, None)  # on the first such line only: the others repeat it
        self._print(f"{where}: {problem}" + (f" ({hint})" if hint else "") + "; skipped")

    def warn(self, where: str, message: str) -> None:
        self.notes["warnings"] += 1
        self._print(f"{where}: warning: {message}")

    def tell(self, where: str, message: str) -> None:
        """A line worth printing that is neither a problem nor a warning (what an option left out)."""
        self._print(f"{where}: {message}")

    def warn_once(self, key, where: str, message: str) -> None:
        """``warn`` the first time ``key`` comes; later ones only counted (``warnings`` in the notes)."""
        if key in self._told:
            self.notes["warnings"] += 1
            return
        self._told.add(key)
        self.warn(where, message)

    def warn_few(self, kind: str, where: str, message: str, *, what: str) -> None:
        """``warn`` the first few of ``kind``; the others counted (``warnings`` in the notes) and said in
        one line of the summary: "N ``what``, the first few named above"."""
        seen = self._kinds.setdefault(kind, [0, what])
        seen[0] += 1
        if seen[0] <= _FEW_OF_A_KIND:
            self.warn(where, message)
        else:
            self.notes["warnings"] += 1

    def tell_once(self, key, where: str, message: str) -> None:
        """``tell`` the first time ``key`` comes, nothing after (one line per label, not per shape)."""
        if key not in self._told:
            self._told.add(key)
            self.tell(where, message)

    def note(self, what: str, n: int = 1) -> None:
        """Count something worth a line in the summary that is not a problem (e.g. ignored shapes)."""
        self.notes[what] += n

    def summary(self) -> str:
        lines = []
        if len(self.messages) > _MAX_PRINTED:
            lines.append(f"... {len(self.messages) - _MAX_PRINTED} more problems not printed")
        for count, what in self._kinds.values():
            if count > _FEW_OF_A_KIND:
                lines.append(f"{count} {what} (the first {_FEW_OF_A_KIND} named above)")
        if self.notes:
            lines.append("notes: " + ", ".join(f"{n} {what}" for what, n in sorted(self.notes.items())))
        total = sum(self.skipped.values())
        listing = images.reason_counts(self.skipped)
        lines.append(f"skipped {total} record(s)" + (f": {listing}" if listing else ""))
        too_large = images.too_large_line(self.skipped)  # good files over the pixel limit: how to read them
        if too_large:
            lines.append(too_large)
        return "\n".join(lines)


class _RefuseDoctype(ET.TreeBuilder):
    """A tree builder that stops the parse at a DOCTYPE: expat calls ``doctype`` as the declaration
    starts, before its internal subset (where entities would be declared) is read."""

    def doctype(self, name, pubid, system):
        raise ValueError("has a DOCTYPE declaration (refused: entity declarations can expand without "
                         "bound or read other files, and no annotation tool writes one)")


def parse_xml(path: Path) -> ET.Element:
    """The root element of an XML file (CVAT, VOC); ValueError in one line naming the file (and the line)
    when it is not well-formed or has a DOCTYPE; OSError when it cannot be read."""
    from maskrcnn.data.pre_annotations.xml_text import shown_in_message

    shown = shown_in_message(path)  # a U+FFFE or an ESC in the file's name printed raw
    parser = ET.XMLParser(target=_RefuseDoctype())
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                parser.feed(chunk)
        return parser.close()
    except ET.ParseError as e:
        line, column = e.position
        reason = str(e).split(":")[0]  # "mismatched tag: line 3, column 2" -> "mismatched tag"
        raise ValueError(f"{shown}: line {line}, column {column}: not well-formed XML ({reason})") from None
    except ValueError as e:  # from _RefuseDoctype
        raise ValueError(f"{shown}: {e}") from None


def image_size(path: Path) -> tuple:
    """(height, width) of an image file as ``read_image`` sees it (EXIF orientation applied), from the
    header only (``images.image_size``); Skip when the file is missing or not an image."""
    stored, orientation = _image_header(path)
    return images.turned_size(stored, orientation)


def annotated_size(path: Path, given) -> tuple:
    """((H, W) of the image as ``read_image`` sees it, the EXIF orientation to turn the annotations by or
    None) for annotations whose file gives the image's size ``given`` (H, W; None when it gives none).

    The COCO loader's rule (``images.drawn_on_stored_pixels``, which ``CocoDataset`` applies too): a
    ``given`` size that is the file's stored size while EXIF turns it by a quarter (so that the turned
    size is not ``given``) says the tool showed, and the annotations lie on, the stored pixels. The loader
    reads such an image unturned; a converter turns the annotations onto the image as shown
    (``geometry.turn_region``), so that the COCO file is true for every reader. Skip as ``image_size``."""
    stored, orientation = _image_header(path)
    shown = images.turned_size(stored, orientation)
    if given is None or not images.drawn_on_stored_pixels(given, stored, orientation):
        return shown, None
    return shown, orientation


def stripped_label(label, *, report: Report, where: str):
    """``label`` without the spaces around it (what the tools' label dialogs strip, and what a hand-edited
    file or an import leaves: "box " beside "box" would be a class of its own), said once per label naming
    ``where`` (the file); anything else than such a string as it is (``check_label`` judges it)."""
    if not isinstance(label, str) or label == label.strip() or not label.strip():
        return label
    report.tell_once(("stripped_label", label), where,
                     f"label {label!r} read as {label.strip()!r} (the spaces around it stripped; said once "
                     f"per label)")
    return label.strip()


def given_size(height, width) -> Optional[tuple]:
    """(H, W) of the size an annotation file gives (numbers, or their text as XML writes them) when both
    are whole numbers; None otherwise (missing, 0 as some tools write it, not a number)."""
    try:
        size = tuple(float(v) for v in (height, width))
    except (TypeError, ValueError, OverflowError):
        return None
    if any(isinstance(v, bool) for v in (height, width)) or not all(v.is_integer() and v > 0 for v in size):
        return None
    return int(size[0]), int(size[1])


def stored_pixels_told(report: Report, where: str, given: tuple, shown: tuple, orientation: int) -> None:
    """Say (the first image by name, then a count in the notes) that an image's annotations, drawn on its
    stored pixels, were turned with it (``annotated_size``)."""
    report.note("images annotated on their stored pixels: annotations turned with the EXIF rotation")
    report.tell_once("stored_pixels", where,
                     f"the size it gives, {given[0]}x{given[1]} (HxW), is the image's stored size, not its "
                     f"{shown[0]}x{shown[1]} once its EXIF orientation {orientation} is applied: the "
                     f"annotations were drawn on the stored pixels and are turned with the image (others "
                     f"alike are counted in the notes)")


def same_shape(shown: tuple, given: tuple) -> bool:
    """Whether an image of ``shown`` (H, W) is a resized copy of one of ``given`` (H, W): one scale within
    a pixel's rounding of both sides, the rounding judged in the smaller image's pixels (``mean`` pixels
    of the larger). The one rule: ``resized_scale`` (convert-data) and the Cityscapes evaluation
    (``engine/cityscapes_eval.py``, which resizes its masks to what convert-data accepted) share it."""
    (h, w), (gh, gw) = shown, given
    mean = (w / gw + h / gh) / 2.0  # one scale within rounding of both sides
    slack = max(1.0, mean)
    return abs(gw * mean - w) <= slack and abs(gh * mean - h) <= slack


def resized_scale(report: Report, where: str, given: Optional[tuple], shown: tuple, *,
                  pixel_off: str = "the shapes are used as drawn") -> Optional[tuple]:
    """(x scale, y scale) that lays shapes drawn on an image of the size the annotation file gives,
    ``given`` (H, W; None: it gives none), onto the image file of size ``shown`` (H, W); None when they
    are the same size, a pixel apart (warned about) or no size is given. The rule every converter of
    pixel coordinates applies to an image file that is not the size its annotations were drawn on:

    - the same shape (each side the other's scaled size, rounded: a resized copy, 4000x3000 -> 1333x1000):
      the shapes are scaled with it, said for the first image by name and counted in the notes (Label
      Studio's percent coordinates scale so by themselves). The rounding is judged in the smaller
      image's pixels, so annotations drawn on a thumbnail lay onto the original as those of the original
      onto the thumbnail;
    - another shape (a crop, a padded copy, another image of that name, a size typed by hand): no scale
      puts the shapes where they were drawn, so the image is skipped (``Skip`` ``image_size_mismatch``,
      counted by the report; the COCO loader's and the Cityscapes converter's reason) rather than its
      shapes written at the drawn pixel coordinates, misplaced, and those past the smaller canvas lost.

    ``pixel_off``: what becomes of the annotations a pixel off, said in the warning (a converter that
    resamples ids or masks to the image anyway says so)."""
    if given is None or tuple(given) == tuple(shown):
        return None
    (gh, gw), (h, w) = given, shown
    if abs(gw - w) <= 1 and abs(gh - h) <= 1:  # a size typed or rounded a pixel off: no resize
        report.warn(where, f"the size it gives, {gw}x{gh} (WxH), is a pixel off the image file's {w}x{h}: "
                           f"{pixel_off}")
        return None
    sx, sy = w / gw, h / gh
    if not same_shape(tuple(shown), tuple(given)):
        raise Skip("image_size_mismatch",
                   f"drawn on a {gw}x{gh} image (the width x height the file gives), the image file is "
                   f"{w}x{h}, of another shape (not a resized copy): its shapes cannot be placed; convert "
                   f"with the images they were drawn on (resize after converting, with the COCO file)")
    report.note("images resized since they were annotated: shapes scaled to them")
    report.tell_once("resized_image", where,
                     f"the size it gives, {gw}x{gh} (WxH), is not the image file's {w}x{h} but has its shape "
                     f"(a resized copy): the shapes are scaled by {sx:.4g} x {sy:.4g} (others alike are "
                     f"counted in the notes)")
    return sx, sy


def warn_label_case(builder: CocoBuilder, report: Report, where: str) -> None:
    """One warning naming the labels met that differ only in case ("Cat" and "cat"): each becomes a class
    of its own, which is almost always a typo (``merge-data`` joins such names, and fine-tuning matches
    class names ignoring case). Not with a fixed list of classes (``--classes`` says which there are).
    First a warning naming the labels written with decomposed accents, read composed (``check_label``)."""
    if builder.recomposed:  # said with or without --classes: the written names are not the file's
        listing = ", ".join(f"{ascii(n)} read as {nfc(n)!r}" for n in sorted(builder.recomposed)[:5])
        more = f" and {len(builder.recomposed) - 5} more" if len(builder.recomposed) > 5 else ""
        report.warn(where, f"labels written with decomposed accents (NFD, as macOS writes names) are read "
                           f"composed (NFC), so that both forms of a name are one class: {listing}{more}")
    if builder.fixed is not None:
        return
    counts = Counter(a["_label"] for a in builder.annotations)
    groups: dict = {}
    for name in sorted(set(counts) | set(builder._declared)):
        groups.setdefault(name.casefold(), []).append(name)
    clashes = [names for names in groups.values() if len(names) > 1]
    if not clashes:
        return
    listing = "; ".join(", ".join(f"{n!r} ({counts[n]} instance{'s' if counts[n] != 1 else ''})"
                                  for n in names) for names in clashes)
    report.warn(where, f"labels that differ only in case are separate classes: {listing}; if they are one "
                       f"class, rename them alike in the annotation tool (merge-data joins such names, and "
                       f"fine-tuning matches class names ignoring case)")


def case_only_match(candidates: Sequence[Path], *, report: Report, where: str,
                    listings: Optional[dict] = None, case: bool = True) -> Optional[Path]:
    """The image file whose name differs from one of ``candidates`` (none of which is a file) only in
    its Unicode form or in case, when exactly one such file is in that candidate's folder (the first
    candidate that has any): an archive unzipped from macOS stores 'café.jpg' decomposed (NFD) where the
    annotations wrote it composed (NFC), or the reverse (``data.unicode_names``); annotations made on
    Windows or macOS, whose file systems ignore case, name ``IMG_1.JPG`` for the file ``IMG_1.jpg``. A
    name in another Unicode form is looked for first (it is the same name), then one differing in case
    too. Used with a warning naming both; None when none is there; Skip ``ambiguous_image`` naming them
    when several are (``a.JPG`` and ``a.jpg`` both beside it: which one is meant is unknown).
    ``listings``: {folder: {folded name: [names]}}, filled as folders are read, one per conversion,
    so that many images not found (the images elsewhere, --images not given) read each folder once.
    ``case`` False: the Unicode form only (``unicode_form_match``)."""
    for candidate in candidates:
        candidate = Path(candidate)
        folder, name = candidate.parent, candidate.name
        form = other_form_names(candidate, listings)
        near = form or ([] if not case else sorted(
            folder / n for n in folder_listing(folder, listings).get(folded_name(name), ())
            if n != name and (folder / n).is_file()))
        if len(near) == 1:
            if form:
                report.warn_few("unicode_form", where, f"image {candidate} not found; using the file of "
                                f"that name stored in another Unicode form (composed / decomposed accents: "
                                f"an archive made on macOS)", what="images found under their name in "
                                "another Unicode form (composed / decomposed accents)")
            else:
                # 'Café.jpg' (NFC) written for 'café.jpg' (NFD): the fold found it, but not by case alone
                how = ("only in case (the name" if near[0].name.lower() == name.lower() else
                       "in case and in its Unicode form (composed / decomposed accents; the name")
                used = near[0].name if how.startswith("only") else ascii(near[0].name)  # forms told apart
                report.warn_few("case_only", where, f"image {candidate} not found; using {used}, which "
                                f"differs from it {how} was written on a file system that ignores case)",
                                what="images found under a name that differs from the one written only in "
                                "case of its last part (written on a file system that ignores case)")
            return near[0]
        if near:
            if form:
                what = "only in its Unicode form"
            elif all(p.name.lower() == name.lower() for p in near):
                what = "only in case"
            else:  # some in their Unicode form too ('Café.jpg' NFD beside 'CAFÉ.jpg')
                what = "in case, or in case and Unicode form (composed / decomposed accents)"
            shown = str if what == "only in case" else ascii  # ascii: forms told apart
            listing = ", ".join(shown(p.name) for p in near)
            raise Skip("ambiguous_image", f"image {candidate} not found, and {len(near)} files differ from "
                                          f"its name {what} ({listing}): which one is meant is "
                                          "unknown; rename the one meant")
    return None


def unicode_form_match(candidates: Sequence[Path], *, report: Report, where: str,
                       listings: Optional[dict] = None) -> Optional[Path]:
    """``case_only_match`` for the Unicode form only: the one file whose name is a candidate's stored in
    the other Unicode form (for the converters that do not match names in another case)."""
    return case_only_match(candidates, report=report, where=where, listings=listings, case=False)


def _image_header(path: Path) -> tuple:
    """``images.image_header`` (stored (H, W), EXIF orientation); Skip when missing or not an image."""
    if not path.is_file():
        raise Skip("missing_image", f"image {path} not found{images.unnameable_note(path)}")
    try:
        return images.image_header(path)
    except images.ImageReadError as e:
        detail = str(e).removeprefix(f"{path}: ")  # the Skip's message names the file itself
        # image_too_large apart (its message says the limit and how to raise it): the file itself is good
        what = "is over the pixel limit" if e.reason == images.TOO_LARGE else "cannot be read"
        raise Skip(e.reason, f"image {path} {what}: {detail}") from None


def json_files(src: Path) -> tuple:
    """(root, files): SRC a folder -> (SRC, its ``*.json`` files at any depth, sorted); SRC a file ->
    (its folder, [SRC]). An output file among them is ``output_guard.drop_earlier_output``'s to judge:
    left out blindly, a user's own annotation file named as the output was skipped, then replaced."""
    src = Path(src)
    if src.is_file():
        return src.parent, [src]
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such file or folder")
    return src, sorted(p for p in src.rglob("*.json") if p.is_file())


def read_json(path: Path):
    """A JSON file's content; Skip when it is not readable JSON."""
    try:
        return read_json_file(path)  # UTF-16 / 32 with a BOM too, as Windows tools write them
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON or UTF-8, 5000-digit numbers
        raise Skip("unreadable_json", f"not readable JSON ({e})") from None


def write_json(path: Path, data, **dumps_kwargs) -> None:
    """Write JSON atomically: a crash leaves the old file or none, never half of one. ASCII unless asked
    otherwise (``ensure_ascii=False``): the COCO files written here are for other tools too
    (pycocotools, detectron2, MMDetection open them with the locale's encoding: cp1252 on Windows
    garbles UTF-8), and ``\\u`` escapes read back as the same text everywhere."""
    dumps_kwargs.setdefault("ensure_ascii", True)
    atomic_write_json(path, data, **dumps_kwargs)


def _rle_json(rle: dict) -> dict:
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _polygon_box(polygons: Sequence, height: int, width: int) -> list:
    """[x, y, w, h] around the vertices of COCO polygons, clipped to the W x H image. The box the mask
    gives would be smaller: an acute corner covers no pixel centre, so rasterising loses it."""
    xs = np.clip(np.concatenate([np.asarray(p, dtype=np.float64)[0::2] for p in polygons]), 0.0, width)
    ys = np.clip(np.concatenate([np.asarray(p, dtype=np.float64)[1::2] for p in polygons]), 0.0, height)
    x1, y1 = float(xs.min()), float(ys.min())
    # rounded: 60.25 - 10.3 is 49.949999999999996 in floats, and the file would say so
    return [x1, y1, round(float(xs.max()) - x1, 6), round(float(ys.max()) - y1, 6)]


class MaskPatch(NamedTuple):
    """A mask shape's pixels inside the image: ``patch`` (h, w) bool with its top-left pixel at (top,
    left). Kept this small until its instance is written (an image may hold hundreds of SAM masks)."""

    top: int
    left: int
    patch: np.ndarray


class CocoBuilder:
    """COCO instance JSON under construction.

    ``categories``: a fixed list of (id, name); a label outside it raises Skip("unknown_label"). None:
    categories are the labels met, numbered 1..K in sorted name order when written (so converting two
    splits with the same classes gives the same ids whatever order their files come in), together with
    the labels ``declare``d: the classes an export lists in its header (CVAT's ``<meta>``), so that a split
    without instances of one of them still numbers the others as the other splits do. Declared labels
    come first, in the order declared (the order the export lists them in: a model's class order that
    ``predict --export`` wrote, a CVAT project's), then the labels met that none declares, sorted.
    """

    def __init__(self, *, root: Path, categories: Optional[Sequence[tuple]] = None, description: str = "",
                 guard: Optional[Callable] = None):
        """``guard``: called with each image added (``Report.guard``: an --output that is an image read
        is refused)."""
        self.root = Path(root)
        self.guard = guard
        # labels and class names composed (NFC): 'crème' typed on one machine and read from a macOS
        # folder name on another is one class (``data.unicode_names``)
        self.fixed = None if categories is None else {nfc(name): int(cid) for cid, name in categories}
        self.description = description
        self.images: list = []
        self.annotations: list = []
        self._sizes: dict = {}  # image id -> (H, W)
        self._sources: dict = {}  # file_name -> the annotation file it came from
        self._declared: dict = {}  # labels the export lists, in order, with or without instances
        self.recomposed: set = set()  # labels as written, not composed (NFC)
        # label -> fields its category carries besides id and name (a keypoint set: ``keypoints``,
        # ``skeleton``; ``keypoint_instances``)
        self.category_fields: dict = {}

    def relative(self, path: Path) -> str:
        """``path`` relative to the root, '/'-separated (``..`` when outside it)."""
        return Path(os.path.relpath(Path(path).absolute(), self.root.absolute())).as_posix()

    def add_image(self, path: Path, *, height: int, width: int, source: str = "") -> int:
        """A new image id; Skip when the image came already (say from an exported file and the project
        file it was exported from, side by side): its instances would be trained on twice."""
        if self.guard is not None:
            self.guard(path, kind="images")
        file_name = self.relative(path)
        if file_name in self._sources:
            raise Skip("duplicate_image", f"image {file_name} was converted already, from "
                                          f"{self._sources[file_name]}")
        self._sources[file_name] = source or file_name
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "height": int(height),
                            "width": int(width)})
        self._sizes[image_id] = (int(height), int(width))
        return image_id

    def rebase(self, root: Path) -> None:
        """Make ``root`` the folder every ``file_name`` is relative to (the files stay where they are)."""
        root = Path(root)
        for image in self.images:
            image["file_name"] = Path(os.path.relpath((self.root / image["file_name"]).absolute(),
                                                      root.absolute())).as_posix()
        self._sources = {Path(os.path.relpath((self.root / k).absolute(), root.absolute())).as_posix(): v
                         for k, v in self._sources.items()}
        self.root = root

    def declare(self, labels: Iterable[str]) -> None:
        """Labels the export lists as its classes, in its order: categories even without instances,
        numbered first (not used with a fixed list of categories, which says exactly which there are)."""
        for name in labels:
            if isinstance(name, str) and name.strip():
                self._declared.setdefault(nfc(name), None)

    def check_label(self, label) -> str:
        """``label`` composed (NFC), the class it names; Skip when it is none or not a fixed class."""
        if not isinstance(label, str) or not label.strip():
            raise Skip("missing_label", f"label {label!r} is not a non-empty string")
        if nfc(label) != label:
            self.recomposed.add(label)
            label = nfc(label)
        if self.fixed is not None and label not in self.fixed:
            raise Skip("unknown_label", f"label {label!r} is not one of the classes {sorted(self.fixed)}")
        return label

    def _add(self, image_id: int, label: str, segmentation, rle: dict, iscrowd: bool,
             bbox: Optional[list] = None) -> dict:
        """``bbox``: [x, y, w, h] given (a polygon's extent); None: the mask's box."""
        area = int(mask_utils.area(rle))
        if area == 0:
            raise Skip("empty_mask", "the mask covers no pixel of the image")
        box = bbox if bbox is not None else mask_utils.toBbox(rle)
        ann = {"id": len(self.annotations) + 1, "image_id": image_id, "_label": self.check_label(label),
               "segmentation": segmentation, "area": area,
               "bbox": [float(v) for v in box], "iscrowd": int(bool(iscrowd))}
        self.annotations.append(ann)
        return ann

    def add_polygons(self, image_id: int, label: str, polygons: Sequence[list], *, iscrowd: bool = False):
        """An instance given as COCO polygons (each [x1, y1, ..., at least 3 points], inside the image)."""
        label = self.check_label(label)
        height, width = self._sizes[image_id]
        problem = segmentation_problem([list(p) for p in polygons], height, width)
        if problem:  # checked before pycocotools' C code sees it (see data/mask_codec.py)
            raise Skip("bad_polygon", problem)
        rle = mask_utils.merge(mask_utils.frPyObjects([list(p) for p in polygons], height, width))
        return self._add(image_id, label, [list(p) for p in polygons], rle, iscrowd,
                         bbox=_polygon_box(polygons, height, width))

    def add_box(self, image_id: int, label: str, box: Sequence[float], *, iscrowd: bool = False) -> dict:
        """A box-only instance (a detection dataset's box, no mask): ``box`` (x1, y1, x2, y2) clipped to
        the image, written with ``segmentation`` [] (what the COCO loader trains as a box, leaving it
        out of the mask loss) and its area w * h."""
        label = self.check_label(label)
        height, width = self._sizes[image_id]
        x1, x2 = (min(max(float(v), 0.0), float(width)) for v in sorted(box[0::2]))
        y1, y2 = (min(max(float(v), 0.0), float(height)) for v in sorted(box[1::2]))
        if x2 <= x1 or y2 <= y1:
            raise Skip("empty_mask", f"box {list(box)} lies outside the {width}x{height} image or is empty")
        w, h = round(x2 - x1, 6), round(y2 - y1, 6)
        ann = {"id": len(self.annotations) + 1, "image_id": image_id, "_label": label, "segmentation": [],
               "area": round(w * h, 6), "bbox": [x1, y1, w, h], "iscrowd": int(bool(iscrowd))}
        self.annotations.append(ann)
        return ann

    def add_mask(self, image_id: int, label: str, mask: np.ndarray, *, iscrowd: bool = False):
        """An instance given as an (H, W) boolean mask, written as compressed RLE."""
        label = self.check_label(label)
        if tuple(mask.shape) != self._sizes[image_id]:
            raise Skip("bad_mask", f"mask is {mask.shape}, the image {self._sizes[image_id]}")
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return self._add(image_id, label, _rle_json(rle), rle, iscrowd)

    def add_regions(self, image_id: int, label: str, regions: Sequence, *, iscrowd: bool = False):
        """An instance drawn as several regions, each a COCO polygon inside the image (a list) or a
        ``MaskPatch``: written as polygons when all are polygons and it is no crowd region, else as one
        RLE mask of their union."""
        polygons = [r for r in regions if not isinstance(r, MaskPatch)]
        if len(polygons) == len(regions) and not iscrowd:
            return self.add_polygons(image_id, label, polygons)
        height, width = self._sizes[image_id]
        mask = np.zeros((height, width), dtype=bool)
        for r in regions:
            if isinstance(r, MaskPatch):
                h, w = r.patch.shape
                mask[r.top:r.top + h, r.left:r.left + w] |= r.patch
        if polygons:
            mask |= annotation_to_mask(polygons, height, width).numpy() > 0
        return self.add_mask(image_id, label, mask, iscrowd=iscrowd)

    def category_ids(self) -> dict:
        if self.fixed is not None:
            return dict(self.fixed)
        # declared first in their order: the file's own class order (a model's, through predict --export)
        names = list(self._declared) + sorted({a["_label"] for a in self.annotations} - set(self._declared))
        return {name: i + 1 for i, name in enumerate(names)}

    def to_dict(self) -> dict:
        ids = self.category_ids()
        # keys starting with "_" are the builder's own (the label; a reader's points not yet laid out)
        anns = [{**{k: v for k, v in a.items() if not k.startswith("_")}, "category_id": ids[a["_label"]]}
                for a in self.annotations]
        cats = [{"id": cid, "name": name, **self.category_fields.get(name, {})}
                for name, cid in sorted(ids.items(), key=lambda kv: kv[1])]
        return {"info": {"description": self.description}, "images": list(self.images),
                "annotations": anns, "categories": cats}
