"""A COCO file as training would read it, with its records as written: for the tools that rewrite
datasets (``split-data``, ``merge-data``).

``read_validated(json_path, image_dir)`` runs ``CocoDataset``'s validation (the one ``train`` runs, with
``keypoints="auto"`` as ``show-data``: a keypoint file's people need no segmentation), so every bad
record is reported naming the file and the image / annotation id exactly as training reports it, and is
left out and counted (``skipped``). What comes back keeps each kept record's fields as written (an
image's ``license`` or ``coco_url``, an annotation's ``area``), so a rewritten file loses nothing but the
bad records; ids are written as the integers the dataset read ("7" -> 7), a file_name as the file found
(one taken from a ``coco_url``), annotation ids as the dataset made them unique; a box-only annotation
(segmentation empty: a tool's rectangle) stays box-only (``[]``), not its box as a polygon, so the
rewritten file still trains and scores it as a box. With ``image_dir`` None the image files are not
looked for (``split-data`` needs only the JSON); with a folder, an image whose file is missing is
skipped, as in training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional, Union

from maskrcnn.data.coco import CocoDataset, load_coco_json
from maskrcnn.data.coco import _as_id as as_id
from maskrcnn.data.json_values import is_int

__all__ = ["ValidatedCoco", "read_validated"]


class ValidatedCoco(NamedTuple):
    path: Path
    raw: dict  # the parsed file; its top-level keys other than the three lists (info, licenses) as written
    images: list  # kept image records, every field as written (file_name with '/' where '\\' was needed)
    annotations: list  # kept annotations, every field as written
    categories: list  # one record per valid category: as written, "name" told apart when names repeat
    keypoint_names: Optional[list]
    image_paths: dict  # image id -> the file's path (image_dir / file_name); empty without image_dir
    skipped: dict  # reason -> count of records left out
    problems: list  # one line per record left out, naming the file and the record
    # file -> the ids of the kept records that name it alike (more than one): the loader's shared_files
    shared_files: dict


def read_validated(json_path: Union[str, os.PathLike],
                   image_dir: Optional[Union[str, os.PathLike]] = None, *,
                   coco: Optional[dict] = None) -> ValidatedCoco:
    """The kept records of ``json_path`` (see the module docstring); ValueError / FileNotFoundError naming
    the file when it cannot be read as COCO at all. ``coco``: the file as ``load_coco_json`` already read
    it (not read again)."""
    # the dataset keeps only what training needs; the rest comes from here
    raw = coco if coco is not None else load_coco_json(json_path)
    dataset = CocoDataset(json_path=json_path, image_dir=image_dir, keypoints="auto", coco=raw)
    first_image, first_category = {}, {}
    for img in raw["images"]:
        if isinstance(img, dict) and is_int(as_id(img.get("id"))):  # "7", 7.0: 7, as the dataset reads
            first_image.setdefault(as_id(img["id"]), img)  # a repeated id: the dataset kept the first; we too
    for cat in raw["categories"]:
        if isinstance(cat, dict) and is_int(as_id(cat.get("id"))):
            first_category.setdefault(as_id(cat["id"]), cat)
    images, paths = [], {}
    for index in range(len(dataset)):  # filter_empty is off: every valid image, in file order
        info = dataset.image_info(index)
        images.append(dict(first_image[info["id"]], id=info["id"], file_name=info["file_name"]))
        if info["path"] is not None:
            paths[info["id"]] = info["path"]
    categories = [
        dict(first_category[cid], id=cid, name=dataset.class_names[label])
        for label, cid in dataset.label_to_category_id.items()
    ]
    return ValidatedCoco(
        # box_as_mask=False: a rectangle ("segmentation": []) stays box-only; its box as a polygon made the
        # written split a filled-box mask, which training then put mask loss on
        path=Path(json_path), raw=raw, images=images,
        annotations=dataset.to_coco_dict(box_as_mask=False)["annotations"],
        categories=categories, keypoint_names=dataset.keypoint_names, image_paths=paths,
        skipped=dataset.skipped, problems=dataset.problems, shared_files=dataset.shared_files,
    )
