"""Image records of a ground truth whose width/height are not their files' sizes, for ``eval --results``.

The ground truth's masks are checked against their image record's size (``evaluator.load_ground_truth``):
a record whose size is wrong (a resized copy, a hand edit) made ``eval --results`` blame each of its
annotations ("RLE size [48, 64] does not match the image size [48, 100]"), while the annotations are
right and drawn on the file. ``show-data`` and ``eval --weights`` read the file and name the record
(``CocoDataset``'s size check); this does the same, reading only the headers of the images some of
whose annotations failed the check (no cost when the ground truth is right).
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


def suspect_records(data: dict) -> list:
    """The image records (in the file's order) with an annotation whose mask does not fit the record's
    size; records without a usable size are not judged here (the validation names them)."""
    images = {img["id"]: img for img in data.get("images") or [] if isinstance(img, dict)
              and isinstance(img.get("id"), (int, str)) and is_finite_number(img.get("height"))
              and is_finite_number(img.get("width"))}
    bad = set()
    for ann in data.get("annotations") or []:
        if not isinstance(ann, dict) or is_empty_segmentation(ann.get("segmentation")):
            continue
        img = images.get(ann.get("image_id")) if isinstance(ann.get("image_id"), (int, str)) else None
        if img is not None and img["id"] not in bad and \
                segmentation_problem(ann["segmentation"], img["height"], img["width"]):
            bad.add(img["id"])
    return [img for img in images.values() if img["id"] in bad]


def _image_file(folder: Path, file_name) -> Path | None:
    """The file of ``file_name`` under ``folder`` (its path, else its last part), None when none is."""
    name = str(file_name or "").replace("\\", "/")
    if not name:
        return None
    for path in (folder / name, folder / Path(name).name):
        try:
            if path.is_file():
                return path
        except (OSError, ValueError):  # too long a name, a NUL byte
            continue
    return None


def wrong_record_sizes(data: dict, image_dir: Union[str, os.PathLike], source: str) -> dict:
    """{image id: (H, W) of its file} for the records of ``data`` that have an annotation whose mask does
    not fit the record's size and whose file (under ``image_dir``; EXIF orientation applied, as the
    loader reads it) is another size than the record's (the stored size, a file the annotating tool
    showed unturned, is the record's too), each with the message naming both: {image id: (size,
    message)}. Files that are missing or unreadable are not judged."""
    folder = Path(image_dir)
    out = {}
    for img in suspect_records(data):
        path = _image_file(folder, img.get("file_name"))
        if path is None:
            continue
        try:
            stored, orientation = image_header(path)
        except (ImageReadError, OSError):
            continue
        shown = turned_size(stored, orientation)
        given = (int(img["height"]), int(img["width"]))
        if given in (tuple(shown), tuple(stored)):
            continue
        out[img["id"]] = (tuple(shown), f"image id {img['id']!r} ({display_name(str(path))}): image is "
                                        f"{shown[0]}x{shown[1]} (HxW), {source} says {given[0]}x{given[1]}")
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
