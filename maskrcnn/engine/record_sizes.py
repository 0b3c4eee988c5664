"""Image records of a ground truth whose width/height are not their files' sizes, for ``eval --results``.

The ground truth's masks are checked against their image record's size (``evaluator.load_ground_truth``):
a record whose size is wrong (a resized copy, a hand edit) made ``eval --results`` blame each of its
annotations ("RLE size [48, 64] does not match the image size [48, 100]"), while the annotations are
right and drawn on the file. ``show-data`` and ``eval --weights`` read the file and name the record
(``CocoDataset``'s size check); this does the same, reading only the headers of the images some of
whose masks fail on the record's size alone (no cost when the ground truth is right), and blames a
record only when those masks do fit its file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from maskrcnn.data.images import ImageReadError, image_header, turned_size
from maskrcnn.data.json_values import is_finite_number
from maskrcnn.data.mask_codec import is_empty_segmentation, segmentation_problem
from maskrcnn.shown_text import display_name

__all__ = ["suspect_records", "with_file_sizes", "wrong_record_sizes"]

# A size no image has: a polygon that fits it is refused at the record's size for its extent alone
# (``mask_codec.points_far_outside``); an RLE is checked without its size (``check_size=False``)
_ANY_SIZE = 1 << 40


def _size_misfit(segmentation, height: int, width: int) -> bool:
    """Whether ``segmentation`` fails at the record's ``height`` x ``width`` for its size alone: an RLE
    whose ``size`` is another, polygons reaching far past the record; a segmentation malformed in any
    other way (bad counts, a string, NaN coordinates) fails at every size and is no sign of a wrong
    record."""
    return segmentation_problem(segmentation, height, width) is not None and \
        segmentation_problem(segmentation, _ANY_SIZE, _ANY_SIZE, check_size=False) is None


def suspect_records(data: dict) -> list:
    """[(image record, [its segmentations that do not fit its size])] in the file's order, for the records
    with such an annotation (``_size_misfit``); records without a usable size are not judged here (the
    validation names them)."""
    images = {img["id"]: img for img in data.get("images") or [] if isinstance(img, dict)
              and isinstance(img.get("id"), (int, str)) and is_finite_number(img.get("height"))
              and is_finite_number(img.get("width"))}
    misfits: dict = {}
    for ann in data.get("annotations") or []:
        if not isinstance(ann, dict) or is_empty_segmentation(ann.get("segmentation")):
            continue
        img = images.get(ann.get("image_id")) if isinstance(ann.get("image_id"), (int, str)) else None
        if img is not None and _size_misfit(ann["segmentation"], img["height"], img["width"]):
            misfits.setdefault(img["id"], []).append(ann["segmentation"])
    return [(img, misfits[img["id"]]) for img in images.values() if img["id"] in misfits]


# Files looked at for names not found as written: the folder may be a guess (the JSON's own, when no
# image folder is given or found), and a home directory's tree is no image folder to read whole
_MAX_FILES = 100_000  # entries (folders and files) seen


class _Files:
    """The files under ``folder`` by name (read once, only when a file_name is not found as written, and
    up to ``_MAX_FILES``: beyond, no name is looked up so)."""

    def __init__(self, folder: Path):
        self.folder, self._by_name = folder, None

    def find(self, file_name) -> Path | None:
        """The file of ``file_name``: as written under the folder, else the one file anywhere under it
        with its last part as name (none when two or more have it: another subfolder's same-named image
        is another image); None when there is none."""
        name = str(file_name or "").replace("\\", "/")
        if not name:
            return None
        try:
            if (self.folder / name).is_file():
                return self.folder / name
        except (OSError, ValueError):  # too long a name, a NUL byte
            pass
        if self._by_name is None:
            self._by_name, seen = {}, 0
            for root, dirs, files in os.walk(self.folder):
                seen += len(dirs) + len(files)  # entries: a tree of empty folders counts too
                if seen > _MAX_FILES:
                    self._by_name = {}
                    break
                for f in files:
                    self._by_name.setdefault(f, []).append(Path(root) / f)
        found = self._by_name.get(Path(name).name, [])
        return found[0] if len(found) == 1 else None


def wrong_record_sizes(suspects: list, image_dir: Union[str, os.PathLike], source: str) -> dict:
    """{image id: ((H, W) of its file, message naming both sizes)} for the ``suspects``
    (``suspect_records``) whose file (under ``image_dir``; EXIF orientation applied, as the loader reads
    it) is another size than the record's and fits every mask that failed on the record: only then is the
    record, not the masks, to blame (a record of the stored size of an EXIF-turned photo whose masks fit
    the turned picture too, said so). Files that are missing or unreadable are not judged."""
    files = _Files(Path(image_dir))
    out = {}
    for img, segmentations in suspects:
        path = files.find(img.get("file_name"))
        if path is None:
            continue
        try:
            stored, orientation = image_header(path)
        except (ImageReadError, OSError):
            continue
        shown = tuple(turned_size(stored, orientation))
        given = (int(img["height"]), int(img["width"]))
        if given == shown:
            continue
        if any(segmentation_problem(seg, *shown) is not None for seg in segmentations):
            continue  # the masks fit neither size: the file does not tell which is wrong
        # the record is the stored size (Image.open(f).size) but the masks are of the upright picture:
        # a converter sized the file unturned while the tool showed it turned
        exif = (f" once its EXIF orientation {orientation} is applied (the record gives its stored size, "
                f"{stored[0]}x{stored[1]}, but its masks are drawn on the turned picture)"
                if given == tuple(stored) else "")
        out[img["id"]] = (shown, f"image id {img['id']!r} ({display_name(str(path))}): image is "
                                 f"{shown[0]}x{shown[1]} (HxW){exif}, {source} says {given[0]}x{given[1]}")
    return out


def with_file_sizes(data: dict, sizes: dict) -> dict:
    """``data`` with the records of ``sizes`` ({image id: ((H, W), message)}) given their files' sizes:
    to find what else is wrong once those are corrected."""
    def fixed(img):
        if isinstance(img, dict) and isinstance(img.get("id"), (int, str)) and img["id"] in sizes:
            (height, width), _ = sizes[img["id"]]
            return dict(img, height=height, width=width)
        return img

    images = [fixed(img) for img in data["images"]]
    return dict(data, images=images)
