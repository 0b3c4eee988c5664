"""COCO-format instance segmentation (and keypoint) datasets.

Shapes: an item is (image (3, H, W) float RGB in [0, 1], target) with M instances and K keypoints:
boxes (M, 4) float32 xyxy pixels, labels (M,) int64 in 1..num_classes-1, masks (M, H, W) uint8,
iscrowd (M,) bool, has_mask (M,) bool (only in a dataset with box-only annotations, below),
keypoints (M, K, 3) float32 (x, y, visibility; only with ``keypoints=True``), image_id int,
orig_size (H, W) of the file as read.

Category ids (any integers) map to contiguous labels 1..K-1 in increasing id order; label 0 is the
background (``class_names[0] == "__background__"``). The JSON is validated when loaded: every problem
(missing field, bad box, bad segmentation, unknown category or image, duplicate image or category id,
missing image file)
is logged with the file, image id and annotation id, the offending record is skipped and counted in
``dataset.skipped``; a long training run never dies on one bad record. Segmentations are checked in
full (``mask_codec.segmentation_problem``) before pycocotools sees them; a box reaching past the
border is clipped, one reaching more than one image size past it is skipped (clipping 1e30 to the image
would train on a box nobody drew). A labelled keypoint outside the image is clipped to the border within
``KEYPOINT_MARGIN`` (5%) of the image's size, and made unlabelled (v=0) farther out, counted
(``keypoints_outside_image``) and said once per file naming an annotation id. A file whose categories
define two different keypoint sets is refused when keypoints are read (one keypoint head, one set).
An image that cannot be read at ``__getitem__`` is counted too and
another image is returned in its place (deterministically); that sample's target then names the files
it replaced under ``UNREAD_IMAGES`` (a tuple of paths): the count above lives in the process that read
(a DataLoader worker), the target reaches the training loop, which reports them (``engine/training.py``).

Annotation tools' own COCO dialects are read as their users meant them (VIA 3's: ``coco_exports``), each
reading said once per
dataset in one line (``dataset.notes``, logged as warnings): a category that no annotation uses and that
the other categories name as their supercategory (Roboflow's id 0 named after the dataset) is a grouping
and no class; an annotation without a segmentation (``[]``, ``{}``, null or absent: a rectangle from CVAT,
Label Studio, Roboflow or FiftyOne) is kept as a box: its mask is the box standing in, and the target's
``has_mask`` (M,) bool, present when the dataset holds such annotations, is False for it, so that the
mask loss leaves it out; a missing bbox is the segmentation's box; an iscrowd other than 0/1 (the
string "0" too: read as written, it was true) is refused as the evaluation refuses it; ids may be
floats holding integers, or strings of up to 18 digits ("7", one note); a category named ``_background_``
(labelme2coco), ``background`` or ``__background__`` without annotations is no class either (with
annotations: kept, a warning); a repeated annotation id is renumbered above the largest (ids only name
records; an exact copy under a repeated id, same image, category and geometry, is skipped as
``duplicate_annotation``); an image record with only a ``coco_url`` is looked up by the URL's file name
(never '.' or '..', '\\' separating too);
a record without width and height gets its file's size (EXIF orientation applied, from the header);
a file_name not found as written is looked up in the image folder by the end of its path (Windows
separators, another machine's absolute path, Label Studio's 'images/<hash>-x.jpg' or upload path);
two records that come to one file so, the first keeps it and the others are skipped (named).
An image whose file is of another size than its record is refused when read (``image_size_mismatch``,
both sizes named; ``check_image_files`` checks every header up front, for ``show-data``), unless the
record gives the stored size of a photo that EXIF turns by a quarter: its annotations were drawn on the
stored pixels, so it is read without the rotation (decoded once, the rotation undone on the tensor;
said once per process). A photo turned 180 degrees or mirrored (EXIF 2, 3, 4), or a square one turned by a
quarter (EXIF 5 to 8), keeps its size, so its record cannot tell: the same file's quarter-turned photos are
the evidence (``exif_frame="auto"``): when they give their stored size, such photos are read unturned too;
with no evidence they are read turned, as browsers and annotation tools show them, said in one note naming
how many and how to choose (``exif_frame``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import operator
import os
import re
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Sequence, Union
from urllib.parse import unquote, urlsplit

import torch

from maskrcnn.class_names import BACKGROUND_NAMES, distinct_names
from maskrcnn.data.coco_exports import read_tool_exports
from maskrcnn.data.crowd import as_objects, cvat_crowd_note
from maskrcnn.data.file_keys import file_key
from maskrcnn.data.images import (
    IMAGE_EXTENSIONS,
    TOO_LARGE,
    ImageReadError,
    drawn_on_stored_pixels,
    image_header,
    image_size,
    missing_file_problem,
    read_image_and_orientation,
    reason_counts,
    size_cannot_tell,
    too_large_line,
    turned_size,
    undo_orientation,
    unnameable_note,
)
from maskrcnn.data.json_values import is_finite_number, read_json_file
from maskrcnn.data.json_values import is_int as _is_int
from maskrcnn.data.json_values import is_whole as _is_whole
from maskrcnn.data.keypoints import (
    KEYPOINT_MARGIN,
    clip_keypoints,
    keypoint_names_problem,
    odd_visibility_note,
    other_counts_words,
    read_visibility,
    skeleton_edges,
)
from maskrcnn.data.mask_codec import annotation_to_mask, is_empty_segmentation, segmentation_problem
from maskrcnn.data.unicode_names import nfc, other_form_names
from maskrcnn.listing import short_listing

# A file or category name from the JSON in a problem line: control characters escaped, quoted (a file_name
# holding "\x1b[31m" turned the terminal red, a "\n" split the line), as predict prints its paths
from maskrcnn.shown_text import display_name as _shown
from maskrcnn.shown_text import with_shown

__all__ = ["CocoDataset", "ImageSizeError", "TransformError", "check_annotation_file", "choose_image_dir",
           "default_image_dir", "image_dir_candidates", "load_coco_json"]

logger = logging.getLogger(__name__)
# why an image is read without its EXIF rotation (said in a note and in the first such image's warning)
# px an annotation may reach past its image's border and be clipped without a word (rounding, a vertex on
# the last pixel's far edge)
_PAST_BORDER = 1.0
_STORED_PIXELS_WHY = ("the JSON gives the stored size, not the one the EXIF orientation turns the image to, "
                      "so the annotations were drawn on the stored pixels")
# how photos turned 180 degrees or mirrored are read (``data.exif_frame``): by the evidence of the file's
# quarter-turned photos, as turned (as browsers and annotation tools show them), or as stored
EXIF_FRAMES = ("auto", "turned", "stored")
# photos whose size cannot tell whether their tool showed them turned (``images.size_cannot_tell``)
_HALF_TURNED = ("turned 180 degrees or mirrored (EXIF orientation 2, 3 or 4), or square and turned by a "
                "quarter (5 to 8)")


def _photos(n: int) -> str:
    return f"{n} photo{'' if n == 1 else 's'}"
_EXIF_FRAME_HINT = ("data.exif_frame: train --set data.exif_frame=stored|turned, eval and show-data "
                    "--exif-frame stored|turned")
# a training sample's target key: the image files that could not be read and that it stands in for
UNREAD_IMAGES = "unread_images"
# and the warnings saying why, when the dataset defers them (``defer_unread_warnings``: set in DataLoader
# workers by ``loader.TrainLoader``, which says each once in the main process; each worker said them anew)
UNREAD_WARNINGS = "unread_warnings"
_MAX_LOGGED = 20  # problems of one reason logged one by one; the rest only counted (a summary follows)


class _Problems:
    """Counts problems by reason and logs the first few, each naming the file and the record. Image files
    not found are logged as one line (how many, the first few names) when there are more than 3: a wrong
    image folder made one line per image, then one per annotation of those images, which hid the
    reason. The annotations of images skipped (``quiet``) are counted in one line too. The first
    ``_MAX_LOGGED`` of each reason are logged: with one cap for all, the lines of files not found (logged
    last) went unsaid after 20 others, while the summary said the first 20 were named."""

    _NAMED = 3  # image files named in the line of those not found

    def __init__(self, source: str, *, pixel_limit_line: bool = True):
        """``pixel_limit_line``: the summing-up warning ends with ``too_large_line`` (as ``CocoDataset``
        takes it)."""
        self.source = source
        self.pixel_limit_line = pixel_limit_line
        self.counts: Counter = Counter()
        self.messages: list = []
        self.logged: Counter = Counter()  # lines logged by reason
        self.missing: list = []  # (message, the file not found), logged at the end
        self.quiet = 0  # annotations of skipped images: counted, one line at the end

    def _log(self, text: str, reason: str) -> None:
        self.logged[reason] += 1
        if self.logged[reason] <= _MAX_LOGGED:
            logger.warning(text)

    def add(self, reason: str, message: str, *, missing_file: Optional[str] = None, detail: str = "",
            quiet: bool = False, logged: bool = True, records: int = 1) -> None:
        """``missing_file``: an image file not found (collected into one line); ``detail``: what is said
        of that one file after ``message`` (where else it was looked for, where its name came from), kept
        in the combined line only when every file's is the same; ``quiet``: counted, not logged alone (an
        annotation of an image skipped already); ``logged`` False: kept and counted, said by the caller
        in a line of its own (``say``); ``records``: how many records the line is of."""
        self.counts[reason] += records
        text = f"{self.source}: {message}{detail}; skipped"
        self.messages.append(text)
        if missing_file is not None:
            self.missing.append((text, missing_file, detail))
        elif quiet:
            self.quiet += 1
        elif logged:
            self._log(text, reason)

    def say(self, reason: str, message: str) -> None:
        """Logs a line that sums up problems added with ``logged=False``."""
        self._log(f"{self.source}: {message}", reason)

    def summarise(self) -> None:
        if len(self.missing) <= self._NAMED:
            for text, _, _ in self.missing:
                self._log(text, "missing")
        else:
            names = ", ".join(name for _, name, _ in self.missing[:self._NAMED])
            # the per-file detail (looked for by the end of its path, the name from coco_url, a name the
            # locale cannot encode) only when it is true of every file counted
            details = {detail for _, _, detail in self.missing}
            detail = details.pop() if len(details) == 1 else ""
            self._log(f"{self.source}: {len(self.missing)} image files not found ({names}, ...){detail}; "
                      "skipped", "missing")
        if self.quiet:
            self._log(f"{self.source}: {self.quiet} annotation(s) of the images skipped above left out",
                      "quiet")
        if self.counts:
            listing = reason_counts(self.counts)
            # the records are named on the lines before, as far as they were logged; a command-line user
            # cannot see a Python attribute (``CocoDataset.problems`` holds them all)
            # files not found past the few named, or annotations of skipped images: counted in a line
            summed = len(self.missing) > self._NAMED or self.quiet
            if max(self.logged.values(), default=0) > _MAX_LOGGED:
                where = f"the first {_MAX_LOGGED} of each reason named above" + (
                    ", files not found summed up" if len(self.missing) > self._NAMED else "")
            else:
                where = "summed up above" if summed else "each named above"
            # good files over the pixel limit: how to read them (unless the caller's summary says it)
            too_large = too_large_line(self.counts) if self.pixel_limit_line else None
            warnings.warn(f"{self.source}: skipped {listing} ({where})"
                          + (f"; {too_large}" if too_large else ""), stacklevel=3)


# digits a string id may have to be read as an integer: every 64-bit id fits; a longer string stays a
# string (refused by the checks as any other non-integer id), and int() of one past Python's
# int_max_str_digits (4300) would raise ValueError while the file is read
_MAX_ID_DIGITS = 18


def _is_digit_string(value) -> bool:
    """A short string of ASCII decimal digits ("17": an id as some exporters and spreadsheets write it),
    at most ``_MAX_ID_DIGITS`` long."""
    return (isinstance(value, str) and 0 < len(value) <= _MAX_ID_DIGITS and value.isascii()
            and value.isdigit())


def _as_id(value):
    """An id as an int: integers, floats holding one (1.0, as tools that go through JSON numbers of
    JavaScript or pandas write them) and strings of decimal digits ("1"); anything else unchanged
    (refused by the checks)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return int(value) if _is_digit_string(value) else value


def _record_name(img: dict) -> str:
    """What an image record names, as shown in a message: its file_name, else its coco_url."""
    if img.get("file_name") is not None:
        return f"file_name {str(img['file_name'])!r}"
    if img.get("coco_url") is not None:
        return f"coco_url {str(img['coco_url'])!r}"
    return "a record without file_name"


def _written_name(img) -> Optional[str]:
    """The file an image record names as written: its file_name, else the last part of its coco_url;
    None when it names none (not a record, no or an empty name)."""
    if not isinstance(img, dict):
        return None
    url_name = _url_file_name(img.get("coco_url")) if "file_name" not in img else None
    name = url_name or img.get("file_name")
    return name if isinstance(name, str) and name.strip() else None


def _ambiguous_image_ids(records: list) -> dict:
    """{image id: the files its records name, as shown} for each id that records of different files
    share. ``records``: (image id, the file the record resolves to, found only by the end of its path or
    by its coco_url, what it wrote as compared, as shown), one per record that names a file, found or
    not (a file not found is compared by its name as written: 'a.png' found and 'b.png' missing under
    one id are two pictures); a record that names none (no or an empty file_name) is left out: it is
    skipped for itself and cannot take the id's good record down. Two records are one file when they
    resolve to one ('img/a.png' and 'a.png' found in the folder, 'a.png' and './a.png': ``file_key``),
    unless both were found only by the end of differently written paths ('C:\\a\\x.png', 'D:\\b\\x.png': two
    pictures, at most one of them in the folder). Decided before any record is kept: the annotations
    are joined to images by id, so those of an id given to two files belong to no one record."""
    files: dict = {}  # id -> [(file key, loose, written, as shown)]
    for iid, key, loose, written, shown in records:
        files.setdefault(iid, []).append((key, loose, written, shown))
    ambiguous = {}
    for iid, named in files.items():
        if any(a[0] != b[0] or (a[1] and b[1] and a[2] != b[2])
               for i, a in enumerate(named) for b in named[i + 1:]):
            ambiguous[iid] = list(dict.fromkeys(o[3] for o in named))
    return ambiguous


# image ids given to two files each, past which they are said in one line (two exports concatenated)
_AMBIGUOUS_NAMED = 1
# files named in the line of one such id; past it "... (N more)", and the line gets the merge-data hint
_AMBIGUOUS_FILES = 3


class ImageSizeError(ImageReadError):
    """An image file whose size is not the one its COCO record gives (the message names both)."""

    reason = "image_size_mismatch"


class TransformError(RuntimeError):
    """A dataset's transforms raised an error that cannot be raised again as its own type with the image
    named (a KeyError, whose message prints quoted; an error type of a user's that takes other
    arguments); the original is its ``__cause__``."""


def _transform_error(error: Exception, where: str) -> Exception:
    """``error`` (raised by the transforms) as an error of the same type whose message starts with
    ``where`` (the file, the image, the index), so that ``except ValueError`` around a dataset still
    catches a transform's ValueError; a ``TransformError`` when its type cannot be made so. The new
    instance is built from the message alone: the original's attributes (an OSError's ``errno`` and
    ``filename``, a KeyError's key) are not copied, and the original is kept only as ``__cause__`` (the
    caller raises it ``from error``), where they and the transform's own frames are found."""
    message = f"{where}: {type(error).__name__}: {error}"
    try:
        same = type(error)(message)
    except Exception:  # a type whose constructor takes other arguments
        same = None
    return same if same is not None and str(same) == message else TransformError(message)


def _url_file_name(url) -> Optional[str]:
    """The file name a coco_url ends in ('http://host/val2017/000000139.jpg?x=1' -> '000000139.jpg',
    percent-escapes decoded); None when there is none. The decoded path is split at '/' and '\\' alike,
    and '.' or '..' is no name: '..%5C..%5Cx.jpg' decodes to '..\\..\\x.jpg', which joined to the
    image folder would reach outside it."""
    if not isinstance(url, str) or not url.strip():
        return None
    name = re.split(r"[/\\]", unquote(urlsplit(url.strip()).path))[-1]
    return name if name not in ("", ".", "..") else None


def _tail_candidates(file_name: str) -> list:
    """Relative paths to try for a file name that is not found as written, most specific first: its
    last n-1 .. 1 path components (an absolute path from another machine, 'images/x.jpg' beside a JSON
    inside the images folder, Windows separators), then the name without Label Studio's upload prefix
    ('1a2b3c4d-x.jpg' -> 'x.jpg')."""
    parts = [p for p in file_name.replace("\\", "/").split("/") if p and p not in (".", "..")]
    if parts and parts[0].endswith(":"):  # a Windows drive, 'C:'
        parts = parts[1:]
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    name = parts[-1] if parts else ""
    if len(name) > 9 and name[8] == "-" and all(c in "0123456789abcdef" for c in name[:8]):
        tails.append(name[9:])
    return tails


def _same_object(a: dict, b: dict) -> bool:
    """Two validated annotations of one image, category and box that are the same object: the same
    geometry as written (segmentation, keypoints) and crowd flag."""
    return all(a.get(k) == b.get(k) for k in ("segmentation", "keypoints", "_box_only")) and bool(
        a.get("iscrowd", 0)) == bool(b.get("iscrowd", 0))


def _segmentation_box(segmentation, height: int, width: int) -> Optional[list]:
    """[x, y, w, h] around a valid segmentation (polygons: their vertices; RLE: its pixels), None when it
    covers nothing."""
    if isinstance(segmentation, list):
        xs = [v for poly in segmentation if len(poly) >= 6 for v in poly[0::2]]
        ys = [v for poly in segmentation if len(poly) >= 6 for v in poly[1::2]]
        box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        return [float(v) for v in box] if box[2] > 0 and box[3] > 0 else None
    mask = annotation_to_mask(segmentation, height, width)  # (H, W)
    rows, cols = torch.nonzero(mask.any(dim=1)), torch.nonzero(mask.any(dim=0))
    if not len(rows):
        return None
    y1, y2, x1, x2 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def _extent(bbox, segmentation) -> tuple:
    """(x1, y1, x2, y2) around a bbox [x, y, w, h] and a polygon segmentation's vertices (RLE: the bbox)."""
    x, y, w, h = (float(v) for v in bbox)
    xs, ys = [x, x + w], [y, y + h]
    if isinstance(segmentation, list):
        for poly in segmentation:
            if isinstance(poly, (list, tuple)) and len(poly) >= 6:
                xs.extend(float(v) for v in poly[0::2])
                ys.extend(float(v) for v in poly[1::2])
    return min(xs), min(ys), max(xs), max(ys)


def _is_rle_size(size) -> bool:
    """[height, width] of whole numbers, as an RLE's ``size`` must be."""
    return isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_whole(v) for v in size)


def _labels_keypoints(kp) -> bool:
    """True for a flat keypoint list with at least one labelled point (visibility > 0)."""
    return isinstance(kp, list) and any(is_finite_number(v) and v > 0 for v in kp[2::3])


def _public_record(ann: dict, box_as_mask: bool = True) -> dict:
    """An annotation as ``to_coco_dict`` gives it: private keys out; a box-only one with the box as its
    polygon (drawn and counted as its region), or with ``[]`` (``box_as_mask=False``)."""
    out = {k: v for k, v in ann.items() if not k.startswith("_")}
    if ann.get("_box_only") and ("segmentation" in ann or not ann.get("keypoints")):  # keypoints alone: kept
        x1, y1, x2, y2 = ann["_box"]
        out["segmentation"] = [[x1, y1, x2, y1, x2, y2, x1, y2]] if box_as_mask else []
    return out


def distinct_category_names(names: dict) -> dict:
    """{category id: name} -> the same with a name that several categories share, or an empty one, told
    apart as 'NAME (id ID)' (``class_names.distinct_names``, the rule predict and serve apply to a model's
    class names). Two categories of one name (merged exports) are two classes; under one name their
    overlays, show-data counts and per-category AP (keyed by name) were merged or overwritten silently."""
    return distinct_names(names)


def image_dir_candidates(json_path: Union[str, os.PathLike]) -> list:
    """The folders that may hold an export's images, from the layout alone (the JSON is not read), most
    likely first: the JSON's folder when it holds images (Roboflow: ``train/_annotations.coco.json``
    beside them), a folder named after the JSON's split: ``train/`` beside ``train.json`` (this
    project's demo), ``val2017/`` beside or above ``instances_val2017.json`` (COCO's own
    ``annotations/`` layout, also ``person_keypoints_*``), its ``images`` or ``data`` subfolder (Label
    Studio, FiftyOne), ``../images`` (CVAT: ``annotations/instances_default.json``). Only folders that
    exist; empty when none does."""
    json_path = Path(json_path)
    folder = json_path.parent
    found = []
    if folder.is_dir():
        with os.scandir(folder) as entries:
            if any(e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file() for e in entries):
                found.append(folder)
    split = re.sub(r"^(instances|person_keypoints)_", "", json_path.stem)
    candidates = [folder / split, folder.parent / split] if split else []
    for candidate in (*candidates, folder / "images", folder / "data", folder.parent / "images"):
        if candidate.is_dir() and candidate != folder and candidate not in found:
            found.append(candidate)
    return found


def _sampled_file_names(json_path: Path, parsed: Optional[dict] = None) -> list:
    """The first 20 file_names of a COCO file's images and 5 spread over the rest; [] when the file is
    not readable COCO (its loader reports that later, naming the file). ``parsed``: {JSON path: the file
    as ``load_coco_json`` read it}, the caller's: a file there is not read again, a file read here is put
    there (so that the caller's loader does not read it a second time)."""
    key = Path(json_path)
    try:
        data = parsed[key] if parsed is not None and key in parsed else load_coco_json(json_path)
    except (OSError, ValueError):
        return []
    if parsed is not None:
        parsed[key] = data
    images = data["images"]
    names = [im.get("file_name") for im in images if isinstance(im, dict)]
    names = [n for n in names if isinstance(n, str) and n]
    spread = names[20::max(1, (len(names) - 20) // 5)][:5] if len(names) > 20 else []
    return names[:20] + spread


def choose_image_dir(json_path: Union[str, os.PathLike], also: Sequence = (),
                     parsed: Optional[dict] = None) -> tuple:
    """(folder, why) -> the image folder of an export when none is given, and a short reason for a
    message. One candidate folder (``image_dir_candidates``): that one, the JSON unread. Several (a stray
    ``logo.png`` beside ``train.json`` and ``train/``): the JSON is read and the one holding most of a
    sample of its file_names is taken (ties: the likelier by layout), so that a stray image does not make
    every image go missing. None holding any, or no candidate: the first by layout, else the JSON's
    folder (the missing files are then reported by the loader). ``also``: folders to weigh after the
    layout's (train's ``--train-images`` for the validation set, as its ``--help`` says). ``parsed``:
    {JSON path: the parsed file}, the caller's (``_sampled_file_names``): the JSON is parsed once in a
    command that loads it after choosing its folder, as ``CocoDataset(coco=parsed.get(path))``."""
    json_path = Path(json_path)
    candidates = image_dir_candidates(json_path)
    for folder in map(Path, also):
        if folder.is_dir() and not any(folder.resolve() == c.resolve() for c in candidates):
            candidates.append(folder)
    if len(candidates) < 2:
        return (candidates[0] if candidates else json_path.parent), ""
    names = _sampled_file_names(json_path, parsed)
    held = [sum((c / n).is_file() for n in names) for c in candidates]
    best = max(range(len(candidates)), key=lambda i: (held[i], -i))
    if not held[best]:
        return candidates[0], ""
    others = "".join(f", {h} in {c}" for c, h in zip(candidates, held) if c != candidates[best])
    return candidates[best], f"{held[best]} of {len(names)} sampled file_names found there{others}"


def default_image_dir(json_path: Union[str, os.PathLike]) -> Path:
    """The image folder of an export when none is given: ``choose_image_dir``'s folder."""
    return choose_image_dir(json_path)[0]


def category_names(ground_truth: dict) -> dict:
    """{category id: name} of a COCO dict's categories (the id as text when unnamed), a name two
    categories share told apart (``distinct_category_names``) as CocoDataset tells them apart: as keys
    of the evaluator's per_category, one would overwrite the other's AP."""
    return distinct_category_names({c["id"]: c.get("name", str(c["id"])) for c in ground_truth["categories"]})


def check_annotation_file(json_path: Union[str, os.PathLike]) -> None:
    """FileNotFoundError naming ``json_path`` when it is no file."""
    if not Path(json_path).is_file():
        raise FileNotFoundError(f"{json_path}: no such annotation file")


def load_coco_json(json_path: Union[str, os.PathLike]) -> dict:
    """Parse a COCO JSON file, raising ValueError naming the file on unreadable or non-COCO content."""
    json_path = Path(json_path)
    check_annotation_file(json_path)
    try:
        data = read_json_file(json_path)  # UTF-16 / 32 with a BOM too, as Windows tools write them
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, a 5000-digit number, deep nesting
        raise ValueError(f"{json_path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{json_path}: a COCO file is a JSON object, got {type(data).__name__}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{json_path}: missing or invalid {key!r} list")
    if not isinstance(data.get("annotations", []), list):
        raise ValueError(f"{json_path}: 'annotations' must be a list")
    return data


class CocoDataset(torch.utils.data.Dataset):
    """Images and instance annotations of a COCO JSON file.

    ``dataset[i]`` or ``dataset[(i, seed)]`` -> (image, target); with a seed the transforms draw from
    ``torch.Generator().manual_seed(seed)``, so an augmented sample is a pure function of (i, seed).
    ``i`` is an integer (numpy and torch ones too) in ``-len .. len-1``, a negative one from the end as for
    a list; beyond: IndexError; a float or a slice: TypeError.
    ``keypoints="auto"``: keypoints when a category names a keypoint set (show-data).
    ``keypoint_names``: the set of the file's keypoint categories (``keypoint_category_ids``, whose ids;
    ``to_coco_dict`` gives the names to every category, as the one keypoint head predicts them for all).
    ``defines_keypoints``: a keypoint set named, or keypoints in a kept annotation (a keypoint model's
    training and keypoint AP need one).
    ``filter_empty``: images without an object are left out of ``ids``, counted in ``skipped`` as
    ``image_without_annotations`` or, when all their annotations are crowd regions,
    ``image_with_only_crowd_annotations``.
    ``image_dir=None``: the records are validated without looking for the image files (split-data reads
    only the JSON); such a dataset has no items to read.
    ``crowd_as_objects``: crowd annotations (iscrowd 1) are read as ordinary objects
    (``data.crowd_as_objects``; CVAT writes brush masks so: ``data/crowd.py``, which says so otherwise).
    ``coco``: the file already parsed by ``load_coco_json(json_path)`` (``read_validated`` needs it too),
    so it is not read twice; ``json_path`` still names the file in messages. It is never modified (the
    records kept are copies).
    ``pixel_limit_line=False``: the warning that sums up the records skipped while reading leaves out the
    line on the pixel limit (``images.too_large_line``): a caller that prints it in its own summary, over
    every image skipped (show-data), says it once.
    ``fold_shared_files``: one file named (alike) by several image records that are kept is one picture:
    the later records' annotations are read as the first record's (the union of its objects; the later
    ids leave ``ids``), said in one warning naming the ids. For training and show-data: each record read
    on its own counts the picture twice and makes each record's objects background in the other. Without
    it (evaluation) the file is read as written, each record with its own annotations, and a note says
    so. Either way ``shared_files`` lists {file: the ids of its accepted records}.
    ``exif_frame`` (``data.exif_frame``): how photos turned 180 degrees or mirrored (EXIF 2, 3, 4), or
    square and turned by a quarter, whose record gives their size are read, as their size cannot tell:
    "auto" as the file's quarter-turned photos show its tool did (unturned when those give their stored
    size; else turned, with a note), "turned" or "stored".
    """

    def __init__(
        self,
        *,
        json_path: Union[str, os.PathLike],
        image_dir: Optional[Union[str, os.PathLike]],
        transforms: Optional[Callable] = None,
        keypoints: Union[bool, str] = False,
        filter_empty: bool = False,
        min_keypoints_per_image: int = 0,
        coco: Optional[dict] = None,
        crowd_as_objects: bool = False,
        pixel_limit_line: bool = True,
        fold_shared_files: bool = False,
        exif_frame: str = "auto",
    ):
        self.json_path = Path(json_path)
        if exif_frame not in EXIF_FRAMES:
            raise ValueError(f"{self.json_path}: exif_frame (data.exif_frame) must be one of "
                             f"{', '.join(EXIF_FRAMES)}, got {exif_frame!r}")
        self.exif_frame = exif_frame
        # ("stored" | "turned", how many such photos) for the file's photos turned 180 degrees or mirrored,
        # settled once from the headers when the first is met (``_half_turn_frame``)
        self._half_turn: Optional[tuple] = None
        # {image id: (stored size, EXIF orientation)} of the photos EXIF turns, from the header pass that
        # settled the frame (None without one; an image not in it is upright): reading and evaluating them
        # then open no header a second time (``stored_orientation``, ``_drawn_on_stored_pixels``)
        self._turned_headers: Optional[dict] = None
        self._half_turn_note: Optional[str] = None  # the note ``settle_exif_frame`` returns
        # the frame this file's own quarter-turned photos showed its tool used (None: they showed none);
        # a file without such evidence may borrow another's of the same tool (``settle_exif_frame``)
        self.evidenced_exif_frame: Optional[str] = None
        self._borrowed_frame: Optional[tuple] = None  # (frame, whose evidence) from ``settle_exif_frame``
        self._half_turned_stored: set = set()  # ids of such photos read unturned (``unturned_ids``)
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.transforms = transforms
        self.keypoints = keypoints
        self.filter_empty = filter_empty
        self.fold_shared_files = fold_shared_files
        self._folded_into: dict = {}  # image id of a later record of a file -> the first record's id
        if coco is None:  # the file first: a missing JSON's default folder (its own) is missing too
            check_annotation_file(self.json_path)
        if self.image_dir is not None and not self.image_dir.is_dir():
            raise FileNotFoundError(f"{self.image_dir}: no such image folder (for {self.json_path})")
        data = coco if coco is not None else load_coco_json(self.json_path)
        data, export_notes = read_tool_exports(data, str(self.json_path))  # VIA 3's COCO, say
        self._problems = _Problems(str(self.json_path), pixel_limit_line=pixel_limit_line)
        self._notes: list = []  # one line each: what was read other than as written (tool dialects)
        used = {_as_id(a["category_id"]) for a in data.get("annotations", [])
                if isinstance(a, dict) and _is_int(_as_id(a.get("category_id")))}
        # ids written as strings of digits (images' id; annotations' id, image_id, category_id; categories'
        # id): read as integers, counted where the loaders read them, said once
        self._digit_ids = 0
        self._load_categories(data["categories"], used)
        if keypoints == "auto":  # as a keypoint model's training reads a file with a keypoint set
            self.keypoints = keypoints = bool(self.keypoint_names)
        self._load_images(data["images"])
        annotations = data.get("annotations", [])
        if crowd_as_objects:  # data.crowd_as_objects: CVAT's brush masks are objects, not crowds (crowd.py)
            annotations, n = as_objects(annotations)
            if n:
                self._notes.append(f"{self.json_path}: {n} crowd annotations (iscrowd 1) read as ordinary "
                                   f"objects (data.crowd_as_objects)")
        elif note := cvat_crowd_note(annotations, str(self.json_path)):
            self._notes.append(note)
        self._rle_upright(annotations)
        self._load_annotations(annotations)
        self._check_past_border()
        if self._digit_ids:  # the first note, before those of the loaders
            self._notes.insert(0, f"{self.json_path}: {self._digit_ids} ids are written as strings of digits "
                                  f"(\"id\": \"1\"); read as the integers they spell")
        self._problems.summarise()
        self._notes[:0] = export_notes
        for note in self._notes:
            logger.warning(note)
        self.ids = [i for i in self._image_order if not (filter_empty and not self._has_objects(i))]
        # a filter: counted, not warned; images whose annotations are all crowd regions apart from those
        # with none (a training set of only crowd regions is a labelling mistake the error can name)
        for iid in set(self._image_order) - set(self.ids):
            reason = "image_with_only_crowd_annotations" if self._anns[iid] else "image_without_annotations"
            self._problems.counts[reason] += 1
        if keypoints and min_keypoints_per_image > 0:
            # detectron2's MIN_KEYPOINTS_PER_IMAGE: an image whose people show no labelled keypoint
            # gives the keypoint head nothing to learn; one holding an object of a category without
            # keypoints (a file's cars) is kept: that object's box is for the box head, not the keypoint one
            kept = [i for i in self.ids if self._visible_keypoints(i) >= min_keypoints_per_image
                    or self._has_objects_without_keypoints(i)]
            if len(kept) < len(self.ids):
                self._problems.counts["image_with_too_few_keypoints"] += len(self.ids) - len(kept)
            self.ids = kept
        self._unreadable: dict = {}  # image id -> the reason it could not be used (its error's)
        # True: an unreadable image's warning travels in the sample's target (UNREAD_WARNINGS), not warned
        self.defer_unread_warnings = False
        # {image id: EXIF orientation} of images sized as their stored pixels: read without the rotation
        self._stored_pixels: dict = {}

    # ------------------------------------------------------------------ loading and validation

    def _load_categories(self, categories: list, used: set) -> None:
        seen = {}
        for cat in categories:
            if isinstance(cat, dict) and _is_int(cat.get("name")):
                # digit classes ("name": 7, as converters from YOLO class lists write them): the category
                # and all its annotations were skipped
                cat = dict(cat, name=str(cat["name"]))
            if isinstance(cat, dict):
                self._digit_ids += _is_digit_string(cat.get("id"))
                cat = dict(cat, id=_as_id(cat.get("id")))
            if (
                not isinstance(cat, dict)
                or not _is_int(cat.get("id"))
                or not isinstance(cat.get("name"), str)
            ):
                self._problems.add("bad_category", f"category {cat!r} needs an integer 'id' and a 'name'")
                continue
            if cat["id"] in seen:
                self._problems.add("duplicate_category_id", f"category id {cat['id']} appears twice")
                continue
            seen[cat["id"]] = cat
        if not seen:
            raise ValueError(f"{self.json_path}: no valid category")
        self._drop_grouping_categories(seen, used)
        ordered = sorted(seen)
        self.category_id_to_label = {cid: i + 1 for i, cid in enumerate(ordered)}
        self.label_to_category_id = {i + 1: cid for i, cid in enumerate(ordered)}
        names = list(distinct_category_names({cid: seen[cid]["name"] for cid in ordered}).values())
        repeated = sorted({seen[cid]["name"] for cid, n in zip(ordered, names) if n != seen[cid]["name"]})
        if repeated:
            warnings.warn(f"{self.json_path}: categories share the names {repeated} (or have an empty one); "
                          f"they stay distinct classes, named 'NAME (id ID)'", stacklevel=3)
        self.class_names = ["__background__"] + names
        self.num_classes = len(self.class_names)
        with_kp = [seen[cid] for cid in ordered if seen[cid].get("keypoints")]
        for cat in with_kp:  # every command, once: not only training's flip map refuses "", 7 or twice "head"
            problem = keypoint_names_problem(cat["keypoints"])
            if problem:
                raise ValueError(f"{self.json_path}: category {_shown(cat['name'])}: {problem}")
        if self.keypoints:  # one keypoint head, one set: the other category's annotations were all skipped
            first = with_kp[0] if with_kp else None
            for other in with_kp[1:]:
                if list(other["keypoints"]) != list(first["keypoints"]):
                    n, m = len(first["keypoints"]), len(other["keypoints"])
                    raise ValueError(
                        f"{self.json_path}: categories {_shown(first['name'])} ({n} keypoints) and "
                        f"{_shown(other['name'])} "
                        f"({m}{', other names' if n == m else ''}) define different keypoint sets; one "
                        "keypoint set per dataset")
        self.keypoint_names = list(with_kp[0]["keypoints"]) if with_kp else None
        # the categories that define the set in the file (to_coco_dict gives every category the names)
        self.keypoint_category_ids = {c["id"] for c in with_kp}
        self.num_keypoints = len(self.keypoint_names) if self.keypoint_names else 17
        # skeleton: COCO's 1-based pairs, kept for drawing; a bad one is an error (one per dataset)
        skeleton = (with_kp[0].get("skeleton") or []) if with_kp else []
        if skeleton:
            skeleton_edges(skeleton, self.num_keypoints,
                           source=f"{self.json_path}: category {with_kp[0]['name']!r}")
        self.keypoint_skeleton = [list(p) for p in skeleton]

    def _drop_grouping_categories(self, seen: dict, used: set) -> None:
        """Categories that are no class, left out with a note when no annotation uses them: Roboflow's
        exports put first a category (id 0, named after the dataset) that every real class names as its
        supercategory; labelme2coco writes ``_background_`` (id 0), and other tools a ``background`` or
        ``__background__`` category. Either would take a label, an output channel and an AP of 0 (or
        n/a) and never train. A parent class or a background category that has annotations stays a
        class (the latter with a warning: label 0 is the background already)."""
        parents = {c.get("supercategory") for c in seen.values()}

        def why(cid: int, c: dict) -> Optional[str]:
            if c["name"].strip().lower() in BACKGROUND_NAMES:
                return "is named as the background (label 0 is the background already)"
            if c["name"] in parents and any(o.get("supercategory") == c["name"] for k, o in seen.items()
                                            if k != cid):
                return "is the other categories' supercategory (a grouping, as Roboflow exports write one)"
            return None

        reasons = {cid: why(cid, c) for cid, c in seen.items()}
        grouping = [cid for cid, reason in reasons.items() if reason and cid not in used]
        for cid in sorted(set(used) & set(seen)):
            if seen[cid]["name"].strip().lower() not in BACKGROUND_NAMES:
                continue
            warnings.warn(f"{self.json_path}: category {seen[cid]['name']!r} (id {cid}) is named as the "
                          f"background but has annotations; kept as a class", stacklevel=4)
        if grouping and len(grouping) < len(seen):
            for cid in grouping:
                self._notes.append(f"{self.json_path}: category {seen[cid]['name']!r} (id {cid}) has no "
                                   f"annotation and {reasons[cid]}; not a class")
                del seen[cid]

    def _load_images(self, images: list) -> None:
        self._images: dict = {}
        self._image_order: list = []
        self._listed_ids: set = set()  # ids of image records, kept or skipped
        found_by_tail, sized_from_file, from_url = [], 0, []
        # file found -> (image id, found by the end of its path or named by its coco_url, what the record
        # wrote: ("file_name" or "coco_url", the value), that value as shown)
        file_owner: dict = {}
        shared: dict = {}  # file -> the ids of the records that name it as written alike (the first too)
        first_named: dict = {}  # image id kept (or folded) -> its record's name, as shown
        records = [dict(img, id=_as_id(img.get("id"))) if isinstance(img, dict) else img for img in images]
        # each record's file, looked up once: whether an id is given to two files is decided by the files
        # found ('img/a.png' and 'a.png' are one), not by how they are written
        self._other_form: list = []  # (name as written, file found in the other Unicode form)
        # one cache for all records: each folder is listed once however many images are missing from it
        # (a fresh one per record listed the whole folder again for every missing image)
        listings: dict = {}
        found = [self._resolve(img, listings=listings) for img in records]
        # a record whose file is not found still names one (its name as written): 'a.png' found and
        # 'b.png' missing under one id are two pictures, and the annotations drawn on b.png would go onto
        # a.png; only a record naming nothing (no name at all) stays out of the comparison
        ambiguous = _ambiguous_image_ids([
            (img["id"], file_key(hit[0], self.image_dir), hit[1], hit[2], _record_name(img))
            if hit is not None
            else (img["id"], file_key(name), False, ("written", file_key(name)), _record_name(img))
            for img, hit, name in zip(records, found, map(_written_name, records))
            if (hit is not None or name is not None) and _is_int(img.get("id"))])
        self._say_ambiguous_ids(ambiguous, records)
        for raw, img, hit in zip(images, records, found):
            if isinstance(raw, dict):
                self._digit_ids += _is_digit_string(raw.get("id"))
            if not isinstance(img, dict) or not _is_int(img.get("id")):
                self._problems.add("bad_image", f"image record {_shown(str(img)[:80])} has no integer 'id'")
                continue
            iid = img["id"]
            self._listed_ids.add(iid)
            if iid in ambiguous:  # said and counted above (_say_ambiguous_ids)
                continue
            if (iid in self._images or iid in self._folded_into) and hit is not None:
                # the same file listed again (two exports concatenated, or spelled otherwise): its
                # annotations are the first's; a record naming no file is skipped below for itself
                this = _record_name(img)
                said = (f"both times for {this}" if first_named[iid] == this
                        else f"for one file ({first_named[iid]}, then {this})")
                self._problems.add("duplicate_image_id", f"image id {iid} appears twice, {said}: the second "
                                   f"record (the annotations are the first's)")
                continue
            url_name = _url_file_name(img.get("coco_url")) if "file_name" not in img else None
            if url_name:  # a record with only coco_url (the file downloaded beside it): look its name up
                img["file_name"] = url_name
                from_url.append(iid)
            if "file_name" not in img:
                self._problems.add("bad_image", f"image id {iid} lacks file_name")
                continue
            file_name = img["file_name"]
            if not isinstance(file_name, str) or not file_name.strip():
                # "" joined to the folder was reported as "file <images folder> not found"
                what = "is empty" if isinstance(file_name, str) else f"{str(file_name)[:40]!r} is no string"
                self._problems.add("bad_image", f"image id {iid}: file_name {what}")
                continue
            if self.image_dir is not None:  # without a folder the files are not looked for
                file_name = hit[0] if hit is not None else None
            if file_name is None:
                written = str(img["file_name"])
                foreign = os.path.isabs(written) or "\\" in written  # another machine's: say where we looked
                # a folder or a broken link is there, but no file: "not found" sent users looking for it
                problem = missing_file_problem(self.image_dir / written)
                not_found = problem in (None, "no such image file")
                # a URL as written: joined to the folder, Path made "http:/host/x.png" of it
                url = "://" in written
                shown = repr(written) if url else _shown(self.image_dir / written)  # repr: escaped, quoted
                where = "" if url else f" (nor in {self.image_dir} by the end of its path)" if foreign else ""
                self._problems.add(
                    "missing_image_file",
                    f"image id {iid}: file {shown} " + ("not found" if not_found else problem),
                    # a plain 'not found' is summed up with the others; a folder or broken link said alone
                    missing_file=shown if not_found else None,
                    detail=where + (" (a URL: URLs are not fetched; download the images and give their "
                                    "folder)" if url else "")
                    + (f" (the name taken from its coco_url {img['coco_url']!r})" if url_name else "")
                    + unnameable_note(self.image_dir / written),
                )
                continue
            by_tail = nfc(file_name) not in (nfc(img["file_name"]), nfc(img["file_name"]).replace("\\", "/"))
            # a name taken from a coco_url is the end of a path too: .../camA/f0.png and .../camB/f0.png
            loose = by_tail or bool(url_name)
            # what the record wrote, as compared (separators alike) and as shown
            written = (("coco_url", img["coco_url"]) if url_name
                       else ("file_name", file_key(img["file_name"])))
            shown = repr(img["coco_url"] if url_name else img["file_name"])
            # without an image folder the names are not looked up: 'a\\x.png', './a/x.png' and 'a/x.png'
            # are one file; with one, the file's real path ('../img/a.png' from img/ is 'a.png'), the
            # rule merge-data and split-data use too (``file_key``)
            key = file_key(file_name, self.image_dir)
            owner = file_owner.get(key)
            if owner is not None and (loose or owner[1]) and written != owner[2]:
                # C:\a\x.png and D:\b\x.png both end in x.png: one image's boxes on the other's pixels
                self._problems.add(
                    "ambiguous_file_name",
                    f"image id {iid}: {written[0]} {shown} and image id {owner[0]}'s {owner[3]} both resolve "
                    f"to {_shown(file_name)} (by the end of the path); the first keeps it",
                )
                continue
            if by_tail:
                found_by_tail.append((img["file_name"], file_name))
            if img.get("height") is None and img.get("width") is None and self.image_dir is not None:
                # makesense.ai / hand-made files leave the size out: the file's own (EXIF orientation
                # applied, as it is read) is the one the annotations were drawn on
                try:
                    img["height"], img["width"] = image_size(self.image_dir / file_name)
                except ImageReadError as e:  # too large: counted apart, the limit can be raised
                    self._problems.add(TOO_LARGE if e.reason == TOO_LARGE else "bad_image",
                                       f"image id {iid} has no height and width, and "
                                       f"{with_shown(str(e), self.image_dir / file_name)}")
                    continue
                sized_from_file += 1
            missing = [k for k in ("height", "width") if k not in img]
            if missing:
                self._problems.add("bad_image", f"image id {iid} lacks {', '.join(missing)}")
                continue
            height, width = img["height"], img["width"]
            json_types = {str: "a string", bool: "a boolean", list: "a list", dict: "an object"}
            typed = [f"{k} {str(img[k])[:20]!r} is {json_types[type(img[k])]}, not a number"
                     for k in ("width", "height") if type(img[k]) in json_types]
            if typed:  # "150" printed as 150 in the size below: say what is wrong with it
                self._problems.add("bad_image", f"image id {iid}: {'; '.join(typed)}")
                continue
            if not (_is_whole(height) and _is_whole(width) and height > 0 and width > 0):
                self._problems.add(
                    "bad_image", f"image id {iid} has invalid size {img['height']}x{img['width']}"
                )
                continue
            if owner is not None:
                # the same file written alike under two ids (an export listing an image once per task, two
                # files concatenated), both records accepted: said once below; found by the name, no
                # realpath per image
                # named as its first record found it ('a/x.png', not the real path the key is)
                shared.setdefault(self._images[owner[0]]["file_name"], [owner[0]]).append(iid)
                if self.fold_shared_files:  # its annotations are the first record's (_load_annotations)
                    self._folded_into[iid] = owner[0]
                    first_named.setdefault(iid, _record_name(img))
                    continue
            self._images[iid] = {
                "file_name": file_name,
                "height": int(img["height"]),
                "width": int(img["width"]),
            }
            self._image_order.append(iid)
            first_named.setdefault(iid, _record_name(img))
            file_owner.setdefault(key, (iid, loose, written, shown))
        self._anns: dict = {iid: [] for iid in self._images}
        self.shared_files = shared  # {file: image ids}: the accepted records that name one file alike
        if shared:
            name, ids = next(iter(shared.items()))
            example = (f"{len(shared)} image file(s) named by more than one image record (e.g. "
                       f"{_shown(name)}: image ids {', '.join(map(str, ids))})")
            if self.fold_shared_files:
                warnings.warn(f"{self.json_path}: {example}: each file read once, as its first record, with "
                              f"the annotations of all its records (one picture, the union of its objects)",
                              stacklevel=3)
            else:
                self._notes.append(
                    f"{self.json_path}: {example}: each record is read with its own "
                    f"annotations, so the picture counts once per record and each record's objects are "
                    f"background in the others; list the file once with all its annotations (split-data "
                    f"keeps such records in one part)")
        if found_by_tail:
            written, used = found_by_tail[0]
            self._notes.append(f"{self.json_path}: {len(found_by_tail)} image file names not found as "
                               f"written were found by the end of their path in {self.image_dir} "
                               f"(e.g. {written!r} -> {used!r})")
        if self._other_form:
            written, used = self._other_form[0]
            self._notes.append(f"{self.json_path}: {len(self._other_form)} image file names not found as "
                               f"written were found stored in the other Unicode form (composed / decomposed "
                               f"accents, as an archive made on macOS holds them; e.g. {ascii(written)} -> "
                               f"{ascii(used)})")
        from_url = [iid for iid in from_url if iid in self._images]
        if from_url:
            first = self._images[from_url[0]]["file_name"]
            self._notes.append(f"{self.json_path}: {len(from_url)} images without file_name were looked up "
                               f"by the last part of their coco_url (e.g. image id {from_url[0]} -> "
                               f"{first!r}); nothing is downloaded")
        if sized_from_file:
            self._notes.append(f"{self.json_path}: {sized_from_file} images without height and width "
                               f"were measured from their files")

    def _resolve(self, img, *, listings: dict) -> Optional[tuple]:
        """(the file an image record names, relative to the image folder; found only by the end of its
        path or by its coco_url; what it wrote, as compared), None when it names none or the file is not
        found. Without an image folder the name as written (not looked for)."""
        name = _written_name(img)
        if name is None:
            return None
        url_name = _url_file_name(img.get("coco_url")) if "file_name" not in img else None
        hit = self._find_file(name, listings) if self.image_dir is not None else name
        if hit is None:
            return None
        loose = bool(url_name) or nfc(hit) not in (nfc(name), nfc(name).replace("\\", "/"))
        return hit, loose, ("coco_url", img["coco_url"]) if url_name else ("file_name", file_key(name))

    def _say_ambiguous_ids(self, ambiguous: dict, records: list) -> None:
        """Counts the records and annotations of image ids given to two files, each id in a line of its
        own (``ds.problems``), logged one by one for a few; more (two exports whose ids start alike,
        concatenated; or one id given to many files) are said in one line, with the command that joins
        such files."""
        if not ambiguous:
            return
        counts = Counter(img["id"] for img in records if isinstance(img, dict) and img.get("id") in ambiguous)
        # one id given to many files (an exporter writing "id": 0 for every image) is the same mistake
        # as many ids given to two: said with the merge-data hint, the files listed a few only (all
        # 10000 names made one line of 200+ KB)
        few = len(ambiguous) <= _AMBIGUOUS_NAMED and all(
            len(names) <= _AMBIGUOUS_FILES for names in ambiguous.values())
        for iid, names in ambiguous.items():
            # one id, two pictures: which one each annotation of the id was drawn on cannot be told;
            # joined by id, the second picture's objects went onto the first (and it was not said)
            self._problems.add(
                "duplicate_image_id",
                f"image id {iid} is given to {len(names)} different files "
                f"({short_listing(names, limit=_AMBIGUOUS_FILES)}): its {counts[iid]} records and all "
                f"annotations of image id {iid} (which file's they are cannot be told)",
                logged=few, records=counts[iid])
        if not few:
            iid, names = next(iter(ambiguous.items()))
            several = (f"{len(ambiguous)} image ids are each given to more than one file (e.g. image id "
                       f"{iid}: " if len(ambiguous) > 1 else f"image id {iid} is given to {len(names)} "
                       f"different files (")
            self._problems.say(
                "duplicate_image_id",
                f"{several}{short_listing(names, limit=_AMBIGUOUS_FILES)}): their {sum(counts.values())} "
                f"records and all their annotations skipped (which file's they are cannot be told); files "
                f"concatenated whose ids start alike (at 0 or 1), or an exporter giving every image one "
                f"id? `maskrcnn merge-data` joins the original COCO files and renumbers their ids")

    def _find_file(self, file_name, listings: dict) -> Optional[str]:
        """The path, relative to the image folder, of the file an image record names (None when not
        found): as written, with Windows separators turned, then by the end of its path; then each of
        those whose last part is the one file stored in the other Unicode form (``unicode_names``;
        ``listings``: the folders read for it, each once)."""
        if not isinstance(file_name, str) or not file_name:
            return None
        # each path once: a name without '\\' found as written costs one look, as before
        candidates = dict.fromkeys([file_name, file_name.replace("\\", "/")] + _tail_candidates(file_name))
        for candidate in candidates:  # an absolute path that exists is used as it is
            if (self.image_dir / candidate).is_file():
                return candidate
        for candidate in candidates:  # never one of two or more: which is meant is unknown
            other = other_form_names(self.image_dir / candidate, listings)
            if len(other) == 1:
                found = (Path(candidate).parent / other[0].name).as_posix()
                self._other_form.append((file_name, found))
                return found
        return None

    def _annotation_problem(self, ann: dict, img: dict) -> Optional[tuple]:
        """(reason, text) when the annotation cannot be used, else None. Sets ann['_box'] (clipped),
        ann['_box_only'] (no segmentation: a box) and a missing bbox (from the segmentation)."""
        seg = ann.get("segmentation")
        box_only = is_empty_segmentation(seg)  # absent, null, [], {}
        missing = [k for k in ("category_id",) if k not in ann]
        if "bbox" not in ann and box_only:
            missing.append("bbox")
        if missing:
            return "missing_field", f"lacks {', '.join(missing)}"
        if not _is_int(ann["category_id"]) or ann["category_id"] not in self.category_id_to_label:
            return "unknown_category", f"has unknown category_id {ann['category_id']!r}"
        crowd = ann.get("iscrowd")
        if crowd is not None and crowd not in (0, 1):
            # "0" (a string) is truthy: read as written it made the object a crowd region; refused as
            # the evaluation's ground-truth check refuses it (true/false and 0.0/1.0 are 0/1)
            kind = " (a string)" if isinstance(crowd, str) else ""
            return "bad_iscrowd", f"has iscrowd {str(crowd)[:20]!r}{kind}, not 0 or 1"
        if not box_only:
            problem = segmentation_problem(seg, img["height"], img["width"])
            if problem:
                return "bad_segmentation", problem
        area = ann.get("area", 0)
        if not (is_finite_number(area) and area >= 0):
            # the evaluation refuses it (NaN, a string, null, -3): kept here, show-data and training read a
            # file that eval then refused; skipped and counted alike everywhere the loader reads
            return "bad_area", f"area {area!r:.40} is not a finite number >= 0"
        if "bbox" not in ann:  # labelme2coco-style files and hand-made ones: the segmentation's box
            ann["bbox"] = _segmentation_box(seg, img["height"], img["width"])
            if ann["bbox"] is None:
                return "bad_segmentation", "segmentation covers no pixel (and there is no bbox)"
            self._filled["bbox"] += 1
        bbox = ann["bbox"]
        if not (
            isinstance(bbox, (list, tuple))
            and len(bbox) == 4
            and all(is_finite_number(v) for v in bbox)
        ):
            return "bad_bbox", f"bbox {bbox!r} is not 4 finite numbers"
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            return "bad_bbox", f"bbox {bbox!r} has width or height <= 0"
        # Boxes reaching past the border are clipped (common after rounding); boxes wholly outside go.
        x1, y1 = max(x, 0.0), max(y, 0.0)
        x2, y2 = min(x + w, float(img["width"])), min(y + h, float(img["height"]))
        if x2 <= x1 or y2 <= y1:
            return (
                "bbox_outside_image",
                f"bbox {bbox!r} lies outside the {img['width']}x{img['height']} image",
            )
        W, H = float(img["width"]), float(img["height"])
        if x < -W or y < -H or x + w > 2 * W or y + h > 2 * H:
            # Clipping such a box would silently train on a box nobody drew (1e30 -> the whole image).
            return (
                "bbox_far_outside_image",
                f"bbox {bbox!r} reaches more than one image size past the "
                f"{img['width']}x{img['height']} image",
            )
        ann["_box"] = (x1, y1, x2, y2)
        ann["_box_only"] = box_only
        # how far (px) the box or a polygon reaches past the border: clipped, but more than rounding is said
        # (_check_past_border), and may show the record gives the stored size of an upright-drawn photo
        extent = _extent(bbox, seg if not box_only else None)
        ann["_past"] = max(-extent[0], -extent[1], extent[2] - W, extent[3] - H, 0.0)
        ann["_extent"] = extent
        if self.keypoints and ann.get("keypoints"):  # null or []: none labelled (as a missing field)
            kp = ann["keypoints"]
            # true / false are no coordinates (the evaluation refused them, naming no file)
            if not isinstance(kp, list) or not all(is_finite_number(v) for v in kp):
                return "bad_keypoints", f"keypoints must be {3 * self.num_keypoints} finite numbers"
            if len(kp) != 3 * self.num_keypoints:
                # another count (another set, or no names: COCO's 17 assumed): the box and mask are good,
                # so the object stays (else it trained as background) with its keypoints unlabelled, as a
                # person drawn without keypoints; counted and said in one line (``_other_count_note``)
                ann["_other_count"] = len(kp)
                ann["keypoints"] = None
                if "num_keypoints" in ann:
                    ann["num_keypoints"] = 0
                return None
            kp = self._visibility_read(kp, ann)
            ann["keypoints"] = self._keypoints_inside(kp, ann, float(img["width"]), float(img["height"]))
        return None

    def _other_count_note(self) -> str:
        """One line for the kept annotations whose keypoints were of another count ("" when none): without
        a category's 'keypoints' names the set is COCO's 17 by assumption, which a file of another set
        met as one "must be 51 numbers" per annotation, then "no annotation holds any"."""
        anns = [a for anns in self._anns.values() for a in anns if "_other_count" in a]
        if not anns:
            return ""
        self.keypoints_of_other_count = Counter(a["_other_count"] for a in anns)
        held = self.keypoint_counts_text()
        first = anns[0]["id"]
        n = len(anns)
        what = (f"{n} annotations (the first id {first}) hold" if n > 1
                else f"1 annotation (id {first}) holds")
        kept = ("their boxes and masks kept, their keypoints read as unlabelled" if n > 1
                else "its box and mask kept, its keypoints read as unlabelled")
        if self.keypoint_names:
            return (f"{self.json_path}: {what} {held}, not the {self.num_keypoints} the categories name: "
                    f"{kept}")
        return (f"{self.json_path}: {what} {held} but no category names them (COCO's 17 were assumed): "
                f"name them in the category's 'keypoints' list (and 'skeleton'); {kept}")

    def keypoint_counts_text(self) -> str:
        """The counts of ``keypoints_of_other_count`` in words: "5 keypoints (15 numbers)", several
        joined with "or"."""
        return other_counts_words(self.keypoints_of_other_count)

    def _check_past_border(self) -> None:
        """Annotations reaching past their image's border by more than rounding (``_PAST_BORDER`` px) are
        not clipped without a word. When an image's annotations fit only the frame turned by a quarter and
        its file is stored at the record's size with an EXIF quarter turn, the record gives the stored
        size (``Image.open(f).size``) of a photo drawn upright (browsers turn it): its width and height
        are read swapped, the image upright, said by name with the evidence. Else the clipped ones are
        said in one warning (the first named). One header read per such image only."""
        past = {iid: [a for a in anns if a["_past"] > _PAST_BORDER] for iid, anns in self._anns.items()}
        past = {iid: anns for iid, anns in past.items() if anns}
        clipped = []
        for iid, anns in past.items():
            info = self._images[iid]
            if not self._read_upright(iid, info):
                clipped.extend((iid, a) for a in anns)
        if clipped:
            iid, ann = clipped[0]
            info = self._images[iid]
            x1, y1, x2, y2 = ann["_extent"]
            warnings.warn(
                f"{self.json_path}: {len(clipped)} annotation(s) reach more than {_PAST_BORDER:g} px past "
                f"their image's border and were clipped to it, e.g. annotation id {ann['id']} of image id "
                f"{iid} ({_shown(info['file_name'])}) spans x {x1:g}..{x2:g}, y {y1:g}..{y2:g} on a record "
                f"of width {info['width']}, height {info['height']}; check the record's width/height",
                stacklevel=3)

    def _rle_upright(self, annotations: list) -> None:
        """Records whose RLE masks are all of the record's size turned by a quarter, and whose file is
        stored at the record's size with an EXIF quarter turn: a converter wrote the stored size
        (``Image.open(f).size``) of a photo its tool showed upright, and the RLE's own size says so.
        Their width/height are swapped before the annotations are read (the photo read upright, as
        ``_read_upright`` does for polygons), said by name; their RLEs were skipped as of a wrong size.
        One header read per such image only."""
        if self.image_dir is None:
            return
        sizes: dict = {}  # image id -> the set of its RLEs' sizes
        for ann in annotations:
            seg = ann.get("segmentation") if isinstance(ann, dict) else None
            if isinstance(seg, dict) and _is_rle_size(seg.get("size")):
                iid = _as_id(ann.get("image_id"))
                if _is_int(iid) and iid in self._images:
                    sizes.setdefault(iid, set()).add(tuple(int(v) for v in seg["size"]))
        for iid, found in sizes.items():
            info = self._images[iid]
            record = (info["height"], info["width"])
            if found != {record[::-1]} or record[0] == record[1]:
                continue
            try:
                stored, orientation = image_header(self.image_dir / info["file_name"])
            except ImageReadError:
                continue
            if tuple(stored) != record or turned_size(stored, orientation) != record[::-1]:
                continue
            info["height"], info["width"] = record[::-1]
            warnings.warn(
                f"{self.json_path}: image id {iid} ({_shown(info['file_name'])}) read upright (its EXIF "
                f"orientation {orientation} applied) although its record gives the stored size (width "
                f"{record[1]}, height {record[0]}): its RLE masks are of the upright picture's size "
                f"{list(record[::-1])} (HxW), so they were drawn upright; its width/height are read as "
                f"{record[0]}/{record[1]}", stacklevel=4)

    def _read_upright(self, iid: int, info: dict) -> bool:
        """Whether image ``iid``, whose annotations reach past its record's border, is a photo stored
        at the record's size, turned by a quarter by EXIF, whose annotations all fit the turned frame:
        then its record's width and height are swapped (read upright) and its boxes clipped anew."""
        if self.image_dir is None:
            return False
        try:
            stored, orientation = image_header(self.image_dir / info["file_name"])
        except ImageReadError:
            return False
        size = (info["height"], info["width"])
        turned = turned_size(stored, orientation)
        if tuple(stored) != size or turned != size[::-1]:
            return False
        H, W = turned
        anns = self._anns[iid]
        fits = all(e[0] >= -_PAST_BORDER and e[1] >= -_PAST_BORDER and e[2] <= W + _PAST_BORDER
                   and e[3] <= H + _PAST_BORDER for e in (a["_extent"] for a in anns))
        if not fits or any(isinstance(a.get("segmentation"), dict) for a in anns):  # an RLE has its size
            return False
        info["height"], info["width"] = H, W
        reach = max(a["_extent"][2] - size[1] for a in anns), max(a["_extent"][3] - size[0] for a in anns)
        for a in anns:
            bx = [float(v) for v in a["bbox"]]
            a["_box"] = (max(bx[0], 0.0), max(bx[1], 0.0), min(bx[0] + bx[2], W), min(bx[1] + bx[3], H))
            a["_past"] = 0.0
        warnings.warn(
            f"{self.json_path}: image id {iid} ({_shown(info['file_name'])}) read upright (its EXIF "
            f"rotation applied) although its record gives the stored size (width {size[1]}, height "
            f"{size[0]}): its annotations reach {max(reach):g} px past that border but fit the upright "
            f"picture (width {W}, height {H}), so they were drawn upright; its width/height are read as "
            f"{W}/{H}", stacklevel=4)
        return True

    def _visibility_read(self, kp: list, ann: dict) -> list:
        """COCO's visibility flags are 0 (not labelled), 1 (labelled, hidden), 2 (labelled, visible);
        another value (3, -1, 0.5) is read as COCOeval reads it, labelled when > 0 (then 2) and
        unlabelled otherwise (then 0, its x and y too), counted and said once per file."""
        out, odd = read_visibility(kp)
        self._odd_visibility.extend((ann.get("id"), value) for value in odd)
        return out

    def _rle_size_cause(self, image_id: int, ann: dict, headers: dict) -> Optional[str]:
        """When ``ann``'s RLE is of another size than its image record and the image file is not the
        record's size either, the record's width/height are what is wrong (swapped, stale): said as
        show-data says it, instead of blaming the RLE. Else None. Only on that error path, so a file is
        opened (its header, once per image: ``headers`` caches it) only for such an image."""
        seg = ann.get("segmentation")
        if self.image_dir is None or not isinstance(seg, dict) or not _is_rle_size(seg.get("size")):
            return None
        img = self._images[image_id]
        if [int(v) for v in seg["size"]] == [img["height"], img["width"]]:
            return None
        if image_id not in headers:
            try:
                headers[image_id] = image_header(self._path(image_id))  # (stored size, orientation)
            except (ImageReadError, OSError):
                headers[image_id] = None  # unreadable: said when it is read, as for any image
        if headers[image_id] is None or headers[image_id][0] == (img["height"], img["width"]):
            return None  # the record is the stored size (an EXIF-turned photo read unturned): not wrong
        shown = turned_size(*headers[image_id])  # (H, W) as read_image returns it
        problem = self._size_problem({"id": image_id, **img, "path": self._path(image_id)}, shown)
        if not problem:
            return None
        size = [int(v) for v in seg["size"]]
        agrees = "the file's size" if tuple(size) == tuple(shown) else "neither the file's nor the record's"
        return f"has an RLE of size {size} ({agrees}); the image record's width/height are wrong: {problem}"

    def _keypoints_inside(self, kp: list, ann: dict, width: float, height: float) -> list:
        """``clip_keypoints`` (data/keypoints.py, which the evaluation's ground truth goes through too);
        the points made unlabelled counted, and said once per file with the first annotation's id."""
        out, far = clip_keypoints(kp, width, height)
        self._far_keypoints.extend([ann.get("id")] * far)
        return out

    def _load_annotations(self, annotations: list) -> None:
        self._filled: Counter = Counter()
        self._far_keypoints: list = []  # annotation ids, one per labelled keypoint made unlabelled
        self._odd_visibility: list = []  # (annotation id, value), one per flag other than 0, 1, 2
        seen_ids = set()
        # ids only name records (pycocotools needs them unique): a repeated one gets a new id above the
        # largest, so no object is lost; an exact copy (image, category, geometry) is a duplicate
        next_id = 1 + max((i for i in (_as_id(a.get("id")) for a in annotations if isinstance(a, dict))
                           if _is_int(i)), default=0)
        renumbered: list = []  # the repeated ids, in file order
        geometry: dict = {}  # (image id, category id, box) -> the kept annotations with it
        headers: dict = {}  # image id -> its file's size as read, or None (``_rle_size_cause``)
        for ann in annotations:
            if not isinstance(ann, dict):
                self._problems.add("bad_annotation", f"annotation {_shown(str(ann)[:80])} is not an object")
                continue
            raw = ann.get("id"), ann.get("image_id"), ann.get("category_id")
            if str in (type(raw[0]), type(raw[1]), type(raw[2])):  # rare: the type test keeps the pass cheap
                self._digit_ids += sum(map(_is_digit_string, raw))
            aid, iid = _as_id(raw[0]), _as_id(raw[1])
            where = f"annotation id {aid!r} (image id {iid!r})"
            if self._folded_into and _is_int(iid):  # a later record of a file: read as its first record's
                iid = self._folded_into.get(iid, iid)
            if not _is_int(aid):
                self._problems.add("missing_field", f"{where} lacks an integer 'id'")
                continue
            if not _is_int(iid) or iid not in self._images:
                # an annotation of an image skipped above: counted apart and said in one line (counted as
                # unknown_image, "2 missing_image_file, 2 unknown_image" read as four images skipped)
                listed = _is_int(iid) and iid in self._listed_ids
                self._problems.add("annotation_of_skipped_image" if listed else "unknown_image",
                                   f"{where} refers to " + ("an image skipped above" if listed
                                                               else "an unknown or skipped image"),
                                   quiet=listed)
                continue
            ann = dict(ann, id=aid, image_id=iid)
            if "category_id" in ann:
                ann["category_id"] = _as_id(ann["category_id"])
            problem = self._annotation_problem(ann, self._images[iid])
            if problem:
                cause = problem[0] == "bad_segmentation" and self._rle_size_cause(iid, ann, headers)
                text = cause or problem[1]
                self._problems.add(problem[0], f"{where} {text}")
                continue
            twins = geometry.setdefault((iid, ann["category_id"], ann["_box"]), [])
            # only a repeated id is compared: two records with ids of their own were meant as two
            copy_of = (next((t["id"] for t in twins if _same_object(t, ann)), None)
                       if aid in seen_ids else None)
            if copy_of is not None:
                self._problems.add("duplicate_annotation",
                                   f"{where} is an exact copy of annotation id {copy_of} (same image, "
                                   f"category and geometry)")
                continue
            if aid in seen_ids:
                renumbered.append(aid)
                ann["id"] = aid = next_id
                next_id += 1
            seen_ids.add(aid)
            twins.append(ann)
            self._anns[iid].append(ann)
        if renumbered:
            distinct = list(dict.fromkeys(renumbered))
            first = ", ".join(str(i) for i in distinct[:5]) + (", ..." if len(distinct) > 5 else "")
            self._notes.append(f"{self.json_path}: {len(renumbered)} annotations repeat an id used before "
                               f"(ids {first}): kept, with new ids from {next_id - len(renumbered)} "
                               f"(ids only name records)")
        self.box_only_annotations = sum(a["_box_only"] for anns in self._anns.values() for a in anns)
        # a keypoint set to train and score: a category's names, or keypoints in a kept annotation (unnamed,
        # read as COCO's 17); False: a keypoint model's training has nothing to learn, its eval no keypoint AP
        self.defines_keypoints = bool(self.keypoint_names) or any(
            a.get("keypoints") for anns in self._anns.values() for a in anns)
        self.keypoints_outside_image = len(self._far_keypoints)
        # {list length: annotations} of keypoint lists of another count, kept without them
        self.keypoints_of_other_count: Counter = Counter()
        other_count = self._other_count_note()
        if other_count:
            self._notes.append(other_count)
        if self._far_keypoints:
            self._notes.append(
                f"{self.json_path}: {len(self._far_keypoints)} labelled keypoints lie more than "
                f"{KEYPOINT_MARGIN:.0%} of the image's size outside it (the first in annotation id "
                f"{self._far_keypoints[0]}): treated as unlabelled (v=0)")
        if self._filled["bbox"]:
            self._notes.append(f"{self.json_path}: {self._filled['bbox']} annotations without a bbox got "
                               f"the box of their segmentation")
        if self._odd_visibility:
            self._notes.append(odd_visibility_note(self.json_path, self._odd_visibility))
        # keypoints a model without a keypoint head reads nothing of (a mask config on a keypoint file):
        # said, and their box-only annotations are no "rectangles" (CVAT's skeletons export so)
        with_kp = [] if self.keypoints else [a for anns in self._anns.values() for a in anns
                                             if _labels_keypoints(a.get("keypoints"))]
        box_kp = sum(a["_box_only"] for a in with_kp)
        rectangles = self.box_only_annotations - box_kp
        if rectangles and not self.keypoints:
            self._notes.append(
                f"{self.json_path}: {rectangles} annotations have a box and no segmentation "
                f"(rectangles, as CVAT, Label Studio and Roboflow export them): they train the box and "
                f"class losses, not the mask loss")
        if with_kp:
            self._notes.append(
                f"{self.json_path}: {len(with_kp)} annotations hold keypoints, which a model without a "
                "keypoint head ignores: train them with a keypoint config (--config keypoint_r50_fpn)"
                + (f"; {box_kp} of them have no segmentation: their boxes train the box and class losses, "
                   "not the mask loss" if box_kp else ""))

    def _has_objects(self, image_id: int) -> bool:
        return any(not a.get("iscrowd", 0) for a in self._anns[image_id])

    def _has_objects_without_keypoints(self, image_id: int) -> bool:
        """A non-crowd object of a category that defines no keypoint set (False when the file names no
        set: its keypoints, read as COCO's 17, may belong to any category)."""
        kp_ids = self.keypoint_category_ids
        return bool(kp_ids) and any(not a.get("iscrowd", 0) and a["category_id"] not in kp_ids
                                    for a in self._anns[image_id])

    def _visible_keypoints(self, image_id: int) -> int:
        """Labelled keypoints (v > 0) of the image's non-crowd annotations."""
        return sum(sum(1 for v in (a.get("keypoints") or [])[2::3] if v > 0)
                   for a in self._anns[image_id] if not a.get("iscrowd", 0))

    # ------------------------------------------------------------------ public attributes

    def object_mask_counts(self) -> tuple:
        """(non-crowd objects, those of them without a mask) over the kept annotations, as
        ``to_coco_dict`` gives them: a box-only one (a rectangle, or keypoints without a segmentation) has
        no mask, and the evaluation's ground truth makes it an ignored region of segm AP. Counted from the
        ``_box_only`` flags, without building the dict."""
        objects = [a for i in self._image_order for a in self._anns[i] if not a.get("iscrowd", 0)]
        return len(objects), sum(1 for a in objects if a["_box_only"])

    @property
    def skipped(self) -> dict:
        """Counts of skipped records (and filtered images, unreadable images) by reason."""
        return dict(self._problems.counts)

    @property
    def problems(self) -> list:
        """Every problem found, one line each, naming the file and the record."""
        return list(self._problems.messages)

    @property
    def notes(self) -> list:
        """What was read other than as written (a grouping category left out, file names found by the end
        of their path, sizes measured, boxes filled, box-only annotations), one line each."""
        return list(self._notes)

    def instances_per_class(self) -> list:
        """Instances (crowd regions aside) of each label over the images in use (index 0: background)."""
        counts = [0] * self.num_classes
        for iid in self.ids:
            for ann in self._anns[iid]:
                if not ann.get("iscrowd", 0):
                    counts[self.category_id_to_label[ann["category_id"]]] += 1
        return counts

    def annotations_digest(self) -> str:
        """A short hash of the objects in use, image by image (category, box, crowd flag, whether a mask
        and keypoints are given): equal for two JSON files that hold the same annotations however they
        are laid out (indentation, key order), different when a box or a class was edited."""
        digest = hashlib.sha256()
        for iid in self.ids:
            digest.update(f"{iid}:".encode())
            for ann in self._anns[iid]:
                digest.update(repr((ann["category_id"], [float(v) for v in ann["bbox"]],
                                    int(ann.get("iscrowd", 0) or 0), "segmentation" in ann,
                                    ann.get("keypoints") is not None)).encode())
        return digest.hexdigest()[:12]

    def labels_per_image(self) -> list:
        """The labels (crowd regions aside) in each image in use, sorted, each once; for repeat factors."""
        to_label = self.category_id_to_label
        return [
            sorted({to_label[a["category_id"]] for a in self._anns[iid] if not a.get("iscrowd", 0)})
            for iid in self.ids
        ]

    def __len__(self) -> int:
        return len(self.ids)

    def _path(self, image_id: int) -> Optional[Path]:
        """The file of image ``image_id`` (None without an image folder)."""
        return self.image_dir / self._images[image_id]["file_name"] if self.image_dir is not None else None

    def image_info(self, index: int) -> dict:
        """{"id", "file_name", "path", "height", "width"} of the index-th image."""
        iid = self.ids[index]
        return {"id": iid, **self._images[iid], "path": self._path(iid)}

    def to_coco_dict(self, *, box_as_mask: bool = True) -> dict:
        """The validated ground truth as a COCO dict (every valid image, every kept annotation), e.g.
        for ``CocoEvaluator``: records that were skipped here cannot crash the evaluation either.
        ``box_as_mask=False``: a box-only annotation keeps an empty segmentation (the evaluation's
        ground truth: its mask is unknown, an ignored region of segm AP) instead of its box polygon."""
        images = [{"id": i, **self._images[i]} for i in self._image_order]
        anns = [_public_record(a, box_as_mask) for i in self._image_order for a in self._anns[i]]
        cats = [
            {"id": cid, "name": self.class_names[label]} for label, cid in self.label_to_category_id.items()
        ]
        if self.keypoint_names:
            for cat in cats:
                cat["keypoints"] = list(self.keypoint_names)
                cat["skeleton"] = [list(p) for p in self.keypoint_skeleton]
        return {"images": images, "annotations": anns, "categories": cats}

    def aspect_ratios(self) -> list:
        """Height / width of each image, from the JSON (for aspect-ratio grouping, no file is opened)."""
        return [self._images[i]["height"] / self._images[i]["width"] for i in self.ids]

    # ------------------------------------------------------------------ items

    def _target(self, image_id: int, height: int, width: int) -> dict:
        anns = []
        # Filled in place: a list of masks then torch.stack held every full-size mask twice at the peak
        # (3 GB for 1500 instances in a 1-megapixel image).
        masks = torch.zeros(len(self._anns[image_id]), height, width, dtype=torch.uint8)  # (N, H, W)
        for ann in list(self._anns[image_id]):
            try:
                if not ann["_box_only"]:
                    masks[len(anns)] = annotation_to_mask(ann["segmentation"], height, width)
                else:  # a box or keypoints without a segmentation: the box stands in for the mask
                    x1, y1, x2, y2 = ann["_box"]
                    masks[len(anns), int(y1) : math.ceil(y2), int(x1) : math.ceil(x2)] = 1
                anns.append(ann)
            except ValueError as e:
                self._problems.add(
                    "bad_segmentation",
                    f"annotation id {ann['id']} (image id {image_id}) segmentation cannot be decoded: {e}",
                )
                self._anns[image_id] = [a for a in self._anns[image_id] if a is not ann]
        m = len(anns)
        target = {
            "boxes": torch.tensor([a["_box"] for a in anns], dtype=torch.float32).reshape(m, 4),
            "labels": torch.tensor(
                [self.category_id_to_label[a["category_id"]] for a in anns], dtype=torch.int64
            ),
            "masks": masks[:m],  # (M, H, W)
            "iscrowd": torch.tensor([bool(a.get("iscrowd", 0)) for a in anns], dtype=torch.bool),
            "image_id": image_id,
            "orig_size": (height, width),
        }
        if self.box_only_annotations and not self.keypoints:
            # False: the mask is the box standing in; the mask loss leaves that instance out
            target["has_mask"] = torch.tensor([not a["_box_only"] for a in anns], dtype=torch.bool)  # (M,)
        if self.keypoints:
            k = self.num_keypoints
            kp = [a.get("keypoints") or [0.0] * (3 * k) for a in anns]
            target["keypoints"] = torch.tensor(kp, dtype=torch.float32).reshape(m, k, 3)  # (M, K, 3)
        return target

    def check_image_size(self, index: int, image: torch.Tensor) -> None:
        """Raise ImageSizeError when the index-th image as read (EXIF orientation applied) is not the size
        the JSON gives (a tool that ignored the orientation, a resized file): its annotations would lie
        on other pixels."""
        problem = self._size_problem(self.image_info(index), tuple(image.shape[-2:]))
        if problem:
            raise ImageSizeError(problem)

    def stored_orientation(self, index: int, shown: tuple, *, orientation: Optional[int] = None
                           ) -> Optional[int]:
        """The EXIF orientation to undo (``images.undo_orientation``) on the index-th image decoded at
        (H, W) ``shown`` (EXIF orientation applied) when its JSON gives the file's stored size: the tool
        that annotated it showed the stored pixels, and the annotations lie on those. None when the image
        is to be used as decoded (its size is the JSON's, or it differs otherwise: ``check_image_size``
        refuses it). One rule for training (``_load``) and evaluation (``evaluate_dataset``).
        ``orientation``: the file's EXIF orientation when known (decoded with it); else its header is
        read when the answer depends on it (a photo turned 180 degrees or mirrored is of its record's size
        either way: ``exif_frame``)."""
        info = self.image_info(index)
        shown = tuple(shown)
        if self._size_problem(info, shown):
            return self._stored_pixels[info["id"]] if self._drawn_on_stored_pixels(info, shown) else None
        if self.exif_frame == "turned" or info["path"] is None:
            return None
        if self._half_turn is not None and self._half_turn[0] != "stored":  # settled: read turned
            return None
        if orientation is None and self._turned_headers is not None:  # the settling pass's headers
            orientation = self._turned_headers.get(info["id"], (shown, 1))[1]
        if orientation is None:
            try:
                orientation = image_header(info["path"])[1]
            except ImageReadError:
                return None
        # this photo's own orientation first: an upright photo (nearly all) never makes the file's
        # header pass run (shown: the record's size, of a square when turned)
        if not size_cannot_tell(shown, orientation) or self._half_turn_frame() != "stored":
            return None
        self._half_turned_stored.add(info["id"])
        return orientation

    def unturned_ids(self) -> set:
        """The ids of the images read on their stored pixels so far (``stored_orientation``), for drawings
        of the evaluation's results (``eval --analysis``) on the pixels it predicted on."""
        return set(self._stored_pixels) | self._half_turned_stored

    def settle_exif_frame(self, *, borrowed: Optional[tuple] = None) -> Optional[str]:
        """Settle now how the photos whose size cannot tell are read (``exif_frame``; "auto": one header
        pass over the file, a few threads at once; else no read) and return the note about it, unsaid
        (None: nothing to tell): the caller says it once. For training, in the main process before the
        DataLoader's workers start: settled in each worker instead, every worker read every header again
        and said the note again. The decision travels with the dataset to the workers. Idempotent.

        ``borrowed``: (frame, source) taken when this file's own photos give no evidence, e.g. a
        validation file annotated with the training file's tool (the training file's
        ``evidenced_exif_frame``, its path as the source): its photos are then read as training reads its
        own, said in the note."""
        if borrowed is not None and borrowed[0] is not None and self._half_turn is None:
            self._borrowed_frame = tuple(borrowed)
        self._half_turn_frame(say=False)
        return self._half_turn_note

    def _half_turn_frame(self, headers: Optional[dict] = None, *, say: bool = True) -> str:
        """"stored" or "turned": how this file's photos turned 180 degrees or mirrored are read, settled
        once (said once, with how many there are). ``exif_frame`` when not "auto"; else the evidence of the
        file's quarter-turned photos, whose record size tells how its tool showed them: "stored" when
        they give their stored size (and none the turned one), else "turned", as browsers and annotation
        tools show photos (said in one line unless the quarter-turned photos say so). ``headers``: {image
        id: ``image_header``'s} when read already (show-data); else, for "auto", every image's header is
        read (a few threads), once: training settles it before its DataLoader starts (``settle_exif_frame``),
        so that the decision travels to the workers; else the first such photo met settles it."""
        if self._half_turn is not None:
            return self._half_turn[0]
        if headers is None and self.exif_frame != "auto":  # chosen: no evidence to read
            self._half_turn = (self.exif_frame, 0)
            return self.exif_frame
        if headers is None:
            infos = [self.image_info(index) for index in range(len(self.ids))]
            headers = {info["id"]: head for info, (head, _) in zip(infos, self._read_headers(infos))}
        stored_ev = turned_ev = halves = 0
        turned_headers = {}
        for iid, head in headers.items():
            if head is None or iid not in self._images:
                continue
            stored, orientation = head
            if orientation != 1:
                turned_headers[iid] = (tuple(stored), orientation)
            record = (self._images[iid]["height"], self._images[iid]["width"])
            if size_cannot_tell(stored, orientation) and tuple(stored) == record:
                halves += 1
            elif turned_size(stored, orientation) != tuple(stored):  # a quarter turn: its record tells
                if drawn_on_stored_pixels(record, stored, orientation):
                    stored_ev += 1
                elif turned_size(stored, orientation) == record:
                    turned_ev += 1
        frame = self.exif_frame
        borrowed = None
        if frame == "auto" and (stored_ev or turned_ev):
            frame = self.evidenced_exif_frame = "stored" if stored_ev and not turned_ev else "turned"
        elif frame == "auto":
            borrowed = self._borrowed_frame
            frame = borrowed[0] if borrowed else "turned"
        self._half_turn = (frame, halves)
        if len(headers) == len(self.ids):  # every image's header: the others' orientation does not matter
            self._turned_headers = turned_headers
        if not halves or self.exif_frame != "auto" or (turned_ev and not stored_ev):
            return frame  # chosen, or the evidence says turned: nothing to tell
        if borrowed:
            how = "without their EXIF orientation" if frame == "stored" else "turned"
            line = (f"{self.json_path}: {_photos(halves)} {_HALF_TURNED} read {how}, as the quarter-turned "
                    f"photos of {borrowed[1]} show its tool did: this file's own do not tell (to choose: "
                    f"{_EXIF_FRAME_HINT})")
        elif frame == "stored":
            line = (f"{self.json_path}: {_photos(halves)} {_HALF_TURNED} read without their EXIF orientation "
                    f"too: their size does not tell, but the file's {stored_ev} quarter-turned photo(s) give "
                    f"their stored size, so its tool showed the stored pixels (to read them turned: "
                    f"{_EXIF_FRAME_HINT})")
        else:
            evidence = (f"the file's quarter-turned photos disagree ({stored_ev} give the stored size, "
                        f"{turned_ev} the turned one)" if stored_ev and turned_ev else
                        "no quarter-turned photo of the file tells how its tool showed them")
            line = (f"{self.json_path}: {_photos(halves)} {_HALF_TURNED} read turned, as browsers and most "
                    f"annotation tools show them: their size does not tell, and {evidence}; if their "
                    f"annotations were drawn on the stored pixels (LabelImg, a tool that ignores EXIF), "
                    f"read them so with {_EXIF_FRAME_HINT}")
        self._half_turn_note = line
        if say:
            warnings.warn(line, stacklevel=1)  # the caller: show-data, or a dataset nobody settled
        return frame

    def _size_problem(self, info: dict, size: tuple) -> Optional[str]:
        """The message of an image of (H, W) ``size`` that is not the JSON's size; None when it is."""
        if tuple(size) == (info["height"], info["width"]):
            return None
        return (f"{_shown(info['path'])}: image is {size[0]}x{size[1]} (HxW), {self.json_path} says "
                f"{info['height']}x{info['width']} (image id {info['id']})")

    def _drawn_on_stored_pixels(self, info: dict, shown: tuple, *, header: Optional[tuple] = None,
                                say: bool = True) -> bool:
        """True when the JSON's size is the file's stored size, EXIF turns it by a quarter, and the turned
        size ``shown`` (H, W) (of the decoded image, or from the header) is not the JSON's: the annotating
        tool showed (and sized) the stored pixels, so its annotations lie on those; the orientation is
        kept in ``_stored_pixels`` for ``_load`` to undo. ``header``: ``image_header``'s (stored size,
        orientation) when read already; else the header is read once, and only for a size that is the
        JSON's turned by a quarter (a resized file costs no read).

        A first such image is said once per process (``check_image_files`` counts them): DataLoader
        workers are processes of their own, made anew each epoch unless ``persistent_workers``, so a
        training run says it once per worker and epoch."""
        if info["id"] in self._stored_pixels:
            return True
        json_size = (info["height"], info["width"])
        if tuple(shown) == json_size or tuple(shown[::-1]) != json_size:
            return False
        if header is None and self._turned_headers is not None:  # the settling pass read it
            header = self._turned_headers.get(info["id"], (tuple(shown), 1))
        if header is None:
            try:
                header = image_header(info["path"])
            except ImageReadError:
                return False
        stored, orientation = header
        if not drawn_on_stored_pixels(json_size, stored, orientation):
            return False
        if say and not self._stored_pixels:
            # stacklevel 1: the caller is the DataLoader's fetch (as for an unreadable image, below)
            # what becomes of the photos whose size cannot tell depends on exif_frame: said only as it is
            halves = {"auto": f", and so are its photos {_HALF_TURNED}, unless other quarter-turned photos "
                              f"disagree ({_EXIF_FRAME_HINT})",
                      "turned": f"; its photos {_HALF_TURNED} are read turned (exif_frame turned)",
                      "stored": ""}[self.exif_frame]
            warnings.warn(f"{self.json_path}: image id {info['id']} ({_shown(info['path'])}) read without "
                          f"its EXIF rotation: {_STORED_PIXELS_WHY} (stored {stored[0]}x{stored[1]} (HxW), "
                          f"turned {shown[0]}x{shown[1]}); others alike are read so without a word{halves}",
                          stacklevel=1)
        self._stored_pixels[info["id"]] = orientation
        return True

    def check_image_files(self, *, threads: int = 8) -> None:
        """Read the header of every image in use (no pixel is decoded; one open per image, ``threads`` at
        a time: the reads wait on the disk, not the CPU) and leave out, counted and named, those that
        reading the image would refuse: unreadable (``unreadable_image``), over the pixel limit
        (``image_too_large``: the file is good, a raised limit reads it) or of another size than the
        JSON's (``image_size_mismatch``, both sizes named), their annotations with them; images sized as
        their stored pixels while EXIF turns them are read unturned (one note counting them).
        For ``show-data``, whose counts (over every image) are then what training sees; training finds
        these image by image as it reads them (a header pass over 100k images would delay every start)."""
        if self.image_dir is None:
            return
        infos = [self.image_info(index) for index in range(len(self.ids))]
        headers = self._read_headers(infos, threads=threads)  # in order: problems named in the file's order
        if self.exif_frame != "turned":  # the headers are read: settle the half-turned photos' frame now
            self._half_turn_frame({info["id"]: head for info, (head, _) in zip(infos, headers)})
        refused = {}
        for info, (head, error) in zip(infos, headers):
            if error is not None:  # unreadable_image, or image_too_large (the limit can be raised)
                refused[info["id"]] = (error.reason, with_shown(str(error), info["path"]))
                continue
            shown = turned_size(*head)  # (H, W) as read_image returns it
            problem = self._size_problem(info, shown)
            if problem and not self._drawn_on_stored_pixels(info, shown, header=head, say=False):
                refused[info["id"]] = ("image_size_mismatch", problem)
        self._leave_out(refused)
        if self._stored_pixels:
            self._notes.append(f"{self.json_path}: {len(self._stored_pixels)} images read without their "
                               f"EXIF rotation: {_STORED_PIXELS_WHY}")
            logger.warning(self._notes[-1])

    @staticmethod
    def _read_headers(infos: list, *, threads: int = 8) -> list:
        """[(``image_header``'s, None) or (None, its ImageReadError), ...] of the images ``infos``, in
        order, ``threads`` at a time (the reads wait on the disk, not the CPU); (None, None) without a
        path. The one header pass of ``check_image_files`` and ``_half_turn_frame``."""
        def header(info):
            if info["path"] is None:
                return None, None
            try:
                return image_header(info["path"]), None
            except ImageReadError as e:
                return None, e

        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(infos)))) as pool:
            return list(pool.map(header, infos))

    def _leave_out(self, refused: dict) -> None:
        """Leave out the images ``refused`` ({image id: (reason, message)}), counted and named once each,
        their annotations with them (``to_coco_dict`` and the counts no longer see them), counted as
        ``annotation_of_skipped_image`` as those of images skipped while the file was read are."""
        for iid, (reason, message) in refused.items():
            self._problems.add(reason, message)
            if iid in self._image_order and self._anns.get(iid):
                self._problems.counts["annotation_of_skipped_image"] += len(self._anns[iid])
        if refused:
            self.ids = [i for i in self.ids if i not in refused]
            self._image_order = [i for i in self._image_order if i not in refused]

    def leave_out(self, unreadable: dict) -> None:
        """Leave out images found unreadable when read ({image id: the ImageReadError}), as
        ``check_image_files`` leaves out those it finds: counted and named once each, their annotations
        with them. For ``show-data``, which reads images with ``load`` (no other image in place of an
        unreadable one) and whose overlays and counts must then agree. Indices shift after it."""
        self._leave_out({iid: (e.reason, with_shown(str(e), self._path(iid)))
                         for iid, e in unreadable.items()})

    def load(self, index: int) -> tuple:
        """(image, target) of the index-th image, without transforms and without another image in place
        of an unreadable one: ImageReadError (``ImageSizeError`` for a size other than the JSON's)."""
        return self._load(index)

    def _load(self, index: int):
        info = self.image_info(index)
        image, orientation = read_image_and_orientation(info["path"])  # (3, H, W), EXIF orientation applied
        orientation = self.stored_orientation(index, image.shape[-2:], orientation=orientation)
        if orientation is not None:  # the stored pixels, from the decoded image: the file is decoded once
            image = undo_orientation(image, orientation)
        self.check_image_size(index, image)
        return image, self._target(info["id"], info["height"], info["width"])

    def __getitem__(self, item):
        if isinstance(item, tuple) and len(item) != 2:
            raise TypeError(f"{self.json_path}: a dataset index is i or (i, seed), got a tuple of "
                            f"{len(item)}")
        index, seed = item if isinstance(item, tuple) else (item, None)
        try:  # int, numpy and torch integers, as a list takes; not a float (1.5) or a slice
            index = operator.index(index)
        except TypeError:
            raise TypeError(f"{self.json_path}: dataset indices must be integers (or (i, seed)), got "
                            f"{type(index).__name__}") from None
        n = len(self.ids)
        if self.image_dir is None:
            raise RuntimeError(f"{self.json_path}: read without an image folder; its images cannot be loaded")
        if n == 0:
            raise IndexError(f"{self.json_path}: the dataset has no usable image")
        if not -n <= index < n:  # a negative one counts from the end, as for a list
            raise IndexError(f"{self.json_path}: index {index} out of range for {n} images")
        index %= n
        # An unreadable image is replaced by the next readable one, so the choice is deterministic.
        unread, said = [], []
        for attempt in range(n):
            candidate = (index + attempt) % n
            if self.ids[candidate] in self._unreadable:  # by image id: leave_out shifts the positions
                continue
            try:
                image, target = self._load(candidate)
                break
            except ImageReadError as e:
                self._unreadable[self.ids[candidate]] = e.reason
                # a file of another size decodes fine: its listing says so (training's closing line)
                unread.append(str(self._path(self.ids[candidate]))
                              + (" (not its recorded size)" if isinstance(e, ImageSizeError) else ""))
                self._problems.counts[e.reason] += 1  # image_too_large apart: its message says the limit
                said.append(f"{with_shown(str(e), self._path(self.ids[candidate]))}; using another image "
                            "instead")
                if not self.defer_unread_warnings:
                    # stacklevel 1: the caller is the DataLoader's fetch, whose file would name torch as
                    # the warning's source (cli.warning_source)
                    warnings.warn(said[-1], stacklevel=1)
        else:
            # a file of another size decodes fine: "could not be read" sent users to a file that opens
            wrong_size = sum(r == ImageSizeError.reason for r in self._unreadable.values())
            why = ", ".join(f"{n} {text}" for n, text in ((len(self._unreadable) - wrong_size, "unreadable"),
                                                          (wrong_size, "not its recorded size")) if n)
            raise RuntimeError(f"{self.json_path}: no image of the dataset could be used ({why})")
        if self.transforms is not None:
            generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None
            try:
                image, target = self.transforms(image, target, generator)
            except Exception as e:  # a user's transform: its error alone did not say which image
                iid = self.ids[candidate]  # not the target's: the transform may have changed it
                raise _transform_error(e, f"{self.json_path}: the transforms failed on image id {iid} "
                                          f"({_shown(self._path(iid))}, dataset index {candidate})") from e
        if unread:  # only then: the usual target keeps its usual keys
            target = {**target, UNREAD_IMAGES: tuple(unread)}
            if self.defer_unread_warnings:
                target[UNREAD_WARNINGS] = tuple(said)
        return image, target

    def __repr__(self) -> str:
        return (
            f"CocoDataset({self.json_path}, {len(self)} images, {self.num_classes - 1} classes, "
            f"skipped={self.skipped})"
        )
