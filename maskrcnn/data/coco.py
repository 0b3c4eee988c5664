"""COCO-format instance segmentation (and keypoint) datasets.

Shapes: an item is (image (3, H, W) float RGB in [0, 1], target) with M instances and K keypoints:
boxes (M, 4) float32 xyxy pixels, labels (M,) int64 in 1..num_classes-1, masks (M, H, W) uint8,
iscrowd (M,) bool, keypoints (M, K, 3) float32 (x, y, visibility; only with ``keypoints=True``),
image_id int, orig_size (H, W) of the file as read.

Category ids (any integers) map to contiguous labels 1..K-1 in increasing id order; label 0 is the
background (``class_names[0] == "__background__"``). The JSON is validated when loaded: every problem
(missing field, bad box, bad segmentation, unknown category or image, duplicate id, missing image file)
is logged with the file, image id and annotation id, the offending record is skipped and counted in
``dataset.skipped``; a long training run never dies on one bad record. Segmentations are checked in
full (``mask_codec.segmentation_problem``) before pycocotools sees them; a box reaching past the
border is clipped, one reaching more than one image size past it is skipped (clipping 1e30 to the image
would train on a box nobody drew). An image that cannot be read at ``__getitem__`` is counted too and
another image is returned in its place (deterministically).
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from maskrcnn.data.images import ImageReadError, read_image
from maskrcnn.data.json_values import is_int as _is_int
from maskrcnn.data.json_values import is_whole as _is_whole
from maskrcnn.data.keypoints import skeleton_edges
from maskrcnn.data.mask_codec import annotation_to_mask, segmentation_problem

__all__ = ["CocoDataset", "load_coco_json"]

logger = logging.getLogger(__name__)

_MAX_LOGGED = 20  # problems logged one by one; the rest only counted (a summary warning follows)


class _Problems:
    """Counts problems by reason and logs the first few, each naming the file and the record."""

    def __init__(self, source: str):
        self.source = source
        self.counts: Counter = Counter()
        self.messages: list = []

    def add(self, reason: str, message: str) -> None:
        self.counts[reason] += 1
        text = f"{self.source}: {message}; skipped"
        self.messages.append(text)
        if len(self.messages) <= _MAX_LOGGED:
            logger.warning(text)

    def summarise(self) -> None:
        if self.counts:
            listing = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
            warnings.warn(f"{self.source}: skipped {listing} (see dataset.problems)", stacklevel=3)


def distinct_category_names(names: dict) -> dict:
    """{category id: name} -> the same with a name that several categories share told apart as
    'NAME (id ID)'. Two categories of one name (merged exports) are two classes; under one name their
    overlays, show-data counts and per-category AP (keyed by name) were merged or overwritten silently."""
    values = list(names.values())
    return {cid: f"{n} (id {cid})" if values.count(n) > 1 else n for cid, n in names.items()}


def category_names(ground_truth: dict) -> dict:
    """{category id: name} of a COCO dict's categories (the id as text when unnamed), a name two
    categories share told apart (``distinct_category_names``) as CocoDataset tells them apart: as keys
    of the evaluator's per_category, one would overwrite the other's AP."""
    return distinct_category_names({c["id"]: c.get("name", str(c["id"])) for c in ground_truth["categories"]})


def load_coco_json(json_path: Union[str, os.PathLike]) -> dict:
    """Parse a COCO JSON file, raising ValueError naming the file on unreadable or non-COCO content."""
    json_path = Path(json_path)
    if not json_path.is_file():
        raise FileNotFoundError(f"{json_path}: no such annotation file")
    try:
        with open(json_path, encoding="utf-8-sig") as f:  # -sig: a BOM (Windows editors write one) is fine
            data = json.load(f)
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
    ``keypoints="auto"``: keypoints when a category names a keypoint set (show-data).
    ``image_dir=None``: the records are validated without looking for the image files (split-data reads
    only the JSON); such a dataset has no items to read.
    ``coco``: the file already parsed by ``load_coco_json(json_path)`` (``read_validated`` needs it too),
    so it is not read twice; ``json_path`` still names the file in messages. It is never modified (the
    records kept are copies).
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
    ):
        self.json_path = Path(json_path)
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.transforms = transforms
        self.keypoints = keypoints
        self.filter_empty = filter_empty
        if self.image_dir is not None and not self.image_dir.is_dir():
            raise FileNotFoundError(f"{self.image_dir}: no such image folder (for {self.json_path})")
        data = coco if coco is not None else load_coco_json(self.json_path)
        self._problems = _Problems(str(self.json_path))
        self._load_categories(data["categories"])
        if keypoints == "auto":  # as a keypoint model's training reads a file with a keypoint set
            self.keypoints = keypoints = bool(self.keypoint_names)
        self._load_images(data["images"])
        self._load_annotations(data.get("annotations", []))
        self._problems.summarise()
        self.ids = [i for i in self._image_order if not (filter_empty and not self._has_objects(i))]
        n_empty = len(self._image_order) - len(self.ids)
        if n_empty:
            self._problems.counts["image_without_annotations"] += n_empty  # a filter: counted, not warned
        if keypoints and min_keypoints_per_image > 0:
            # detectron2's MIN_KEYPOINTS_PER_IMAGE: an image whose people show no labelled keypoint
            # gives the keypoint head nothing to learn
            kept = [i for i in self.ids if self._visible_keypoints(i) >= min_keypoints_per_image]
            if len(kept) < len(self.ids):
                self._problems.counts["image_with_too_few_keypoints"] += len(self.ids) - len(kept)
            self.ids = kept
        self._unreadable: set = set()

    # ------------------------------------------------------------------ loading and validation

    def _load_categories(self, categories: list) -> None:
        seen = {}
        for cat in categories:
            if isinstance(cat, dict) and _is_int(cat.get("name")):
                # digit classes ("name": 7, as converters from YOLO class lists write them): the category
                # and all its annotations were skipped
                cat = dict(cat, name=str(cat["name"]))
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
        ordered = sorted(seen)
        self.category_id_to_label = {cid: i + 1 for i, cid in enumerate(ordered)}
        self.label_to_category_id = {i + 1: cid for i, cid in enumerate(ordered)}
        names = list(distinct_category_names({cid: seen[cid]["name"] for cid in ordered}).values())
        repeated = sorted({seen[cid]["name"] for cid, n in zip(ordered, names) if n != seen[cid]["name"]})
        if repeated:
            warnings.warn(f"{self.json_path}: categories share the names {repeated}; they stay distinct "
                          f"classes, named 'NAME (id ID)'", stacklevel=3)
        self.class_names = ["__background__"] + names
        self.num_classes = len(self.class_names)
        with_kp = [seen[cid] for cid in ordered if seen[cid].get("keypoints")]
        self.keypoint_names = list(with_kp[0]["keypoints"]) if with_kp else None
        self.num_keypoints = len(self.keypoint_names) if self.keypoint_names else 17
        # skeleton: COCO's 1-based pairs, kept for drawing; a bad one is an error (one per dataset)
        skeleton = (with_kp[0].get("skeleton") or []) if with_kp else []
        if skeleton:
            skeleton_edges(skeleton, self.num_keypoints,
                           source=f"{self.json_path}: category {with_kp[0]['name']!r}")
        self.keypoint_skeleton = [list(p) for p in skeleton]

    def _load_images(self, images: list) -> None:
        self._images: dict = {}
        self._image_order: list = []
        for img in images:
            if not isinstance(img, dict) or not _is_int(img.get("id")):
                self._problems.add("bad_image", f"image record {str(img)[:80]} has no integer 'id'")
                continue
            iid = img["id"]
            if iid in self._images:
                self._problems.add("duplicate_image_id", f"image id {iid} appears twice")
                continue
            missing = [k for k in ("file_name", "height", "width") if k not in img]
            if missing:
                self._problems.add("bad_image", f"image id {iid} lacks {', '.join(missing)}")
                continue
            height, width = img["height"], img["width"]
            if not (_is_whole(height) and _is_whole(width) and height > 0 and width > 0):
                self._problems.add(
                    "bad_image", f"image id {iid} has invalid size {img['height']}x{img['width']}"
                )
                continue
            file_name = img["file_name"]
            if self.image_dir is None:  # the files are not looked for: a name is all that is checked
                if not isinstance(file_name, str) or not file_name:
                    self._problems.add("bad_image", f"image id {iid} has no file_name string")
                    continue
            else:
                found = isinstance(file_name, str) and (self.image_dir / file_name).is_file()
                if not found and isinstance(file_name, str) and "\\" in file_name:
                    file_name = file_name.replace("\\", "/")  # "images\\a.jpg", as tools on Windows write it
                    found = (self.image_dir / file_name).is_file()
                if not found:
                    self._problems.add(
                        "missing_image_file",
                        f"image id {iid}: file {self.image_dir / str(img['file_name'])} not found",
                    )
                    continue
            self._images[iid] = {
                "file_name": file_name,
                "height": int(img["height"]),
                "width": int(img["width"]),
            }
            self._image_order.append(iid)
        self._anns: dict = {iid: [] for iid in self._images}

    def _annotation_problem(self, ann: dict, img: dict) -> Optional[tuple]:
        """(reason, text) when the annotation cannot be used, else None. May clip ann['_box']."""
        missing = [k for k in ("category_id", "bbox") if k not in ann]
        if "segmentation" not in ann and not self.keypoints:
            missing.append("segmentation")
        if missing:
            return "missing_field", f"lacks {', '.join(missing)}"
        if not _is_int(ann["category_id"]) or ann["category_id"] not in self.category_id_to_label:
            return "unknown_category", f"has unknown category_id {ann['category_id']!r}"
        bbox = ann["bbox"]
        if not (
            isinstance(bbox, (list, tuple))
            and len(bbox) == 4
            and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox
            )
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
        if "segmentation" in ann:
            problem = segmentation_problem(ann["segmentation"], img["height"], img["width"])
            if problem:
                return "bad_segmentation", problem
        if self.keypoints and ann.get("keypoints"):  # null or []: none labelled (as a missing field)
            kp = ann["keypoints"]
            if (
                not isinstance(kp, list)
                or len(kp) != 3 * self.num_keypoints
                # true / false are no coordinates (the evaluation refused them, naming no file)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in kp)
            ):
                return "bad_keypoints", f"keypoints must be {3 * self.num_keypoints} finite numbers"
        return None

    def _load_annotations(self, annotations: list) -> None:
        seen_ids = set()
        for ann in annotations:
            if not isinstance(ann, dict):
                self._problems.add("bad_annotation", f"annotation {str(ann)[:80]} is not an object")
                continue
            aid = ann.get("id")
            iid = ann.get("image_id")
            where = f"annotation id {aid!r} (image id {iid!r})"
            if not _is_int(aid):
                self._problems.add("missing_field", f"{where} lacks an integer 'id'")
                continue
            if aid in seen_ids:
                self._problems.add("duplicate_annotation_id", f"{where}: id appears twice")
                continue
            seen_ids.add(aid)
            if not _is_int(iid) or iid not in self._images:
                self._problems.add("unknown_image", f"{where} refers to an unknown or skipped image")
                continue
            ann = dict(ann)
            problem = self._annotation_problem(ann, self._images[iid])
            if problem:
                self._problems.add(problem[0], f"{where} {problem[1]}")
                continue
            self._anns[iid].append(ann)

    def _has_objects(self, image_id: int) -> bool:
        return any(not a.get("iscrowd", 0) for a in self._anns[image_id])

    def _visible_keypoints(self, image_id: int) -> int:
        """Labelled keypoints (v > 0) of the image's non-crowd annotations."""
        return sum(sum(1 for v in (a.get("keypoints") or [])[2::3] if v > 0)
                   for a in self._anns[image_id] if not a.get("iscrowd", 0))

    # ------------------------------------------------------------------ public attributes

    @property
    def skipped(self) -> dict:
        """Counts of skipped records (and filtered images, unreadable images) by reason."""
        return dict(self._problems.counts)

    @property
    def problems(self) -> list:
        """Every problem found, one line each, naming the file and the record."""
        return list(self._problems.messages)

    def instances_per_class(self) -> list:
        """Instances (crowd regions aside) of each label over the images in use (index 0: background)."""
        counts = [0] * self.num_classes
        for iid in self.ids:
            for ann in self._anns[iid]:
                if not ann.get("iscrowd", 0):
                    counts[self.category_id_to_label[ann["category_id"]]] += 1
        return counts

    def labels_per_image(self) -> list:
        """The labels (crowd regions aside) in each image in use, sorted, each once; for repeat factors."""
        to_label = self.category_id_to_label
        return [
            sorted({to_label[a["category_id"]] for a in self._anns[iid] if not a.get("iscrowd", 0)})
            for iid in self.ids
        ]

    def __len__(self) -> int:
        return len(self.ids)

    def image_info(self, index: int) -> dict:
        """{"id", "file_name", "path", "height", "width"} of the index-th image."""
        iid = self.ids[index]
        info = self._images[iid]
        path = self.image_dir / info["file_name"] if self.image_dir is not None else None
        return {"id": iid, **info, "path": path}

    def to_coco_dict(self) -> dict:
        """The validated ground truth as a COCO dict (every valid image, every kept annotation), e.g.
        for ``CocoEvaluator``: records that were skipped here cannot crash the evaluation either."""
        images = [{"id": i, **self._images[i]} for i in self._image_order]
        anns = [{k: v for k, v in a.items() if k != "_box"} for i in self._image_order for a in self._anns[i]]
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
                if "segmentation" in ann:
                    masks[len(anns)] = annotation_to_mask(ann["segmentation"], height, width)
                else:  # keypoint-only annotation: the box stands in for the mask
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
        if self.keypoints:
            k = self.num_keypoints
            kp = [a.get("keypoints") or [0.0] * (3 * k) for a in anns]
            target["keypoints"] = torch.tensor(kp, dtype=torch.float32).reshape(m, k, 3)  # (M, K, 3)
        return target

    def check_image_size(self, index: int, image: torch.Tensor) -> None:
        """Raise ImageReadError when the index-th image as read (EXIF orientation applied) is not the size
        the JSON gives (a tool that ignored the orientation, a resized file): its annotations would lie
        on other pixels."""
        info = self.image_info(index)
        if tuple(image.shape[-2:]) != (info["height"], info["width"]):
            raise ImageReadError(
                f"{info['path']}: image is {image.shape[-2]}x{image.shape[-1]} (HxW), "
                f"{self.json_path} says {info['height']}x{info['width']} (image id {info['id']})"
            )

    def _load(self, index: int):
        info = self.image_info(index)
        image = read_image(info["path"])
        self.check_image_size(index, image)
        return image, self._target(info["id"], info["height"], info["width"])

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, None)
        n = len(self.ids)
        if self.image_dir is None:
            raise RuntimeError(f"{self.json_path}: read without an image folder; its images cannot be loaded")
        if n == 0:
            raise IndexError(f"{self.json_path}: the dataset has no usable image")
        index = int(index) % n if index < 0 else int(index)
        if index >= n:
            raise IndexError(f"index {index} out of range for {n} images")
        # An unreadable image is replaced by the next readable one, so the choice is deterministic.
        for attempt in range(n):
            candidate = (index + attempt) % n
            if candidate in self._unreadable:
                continue
            try:
                image, target = self._load(candidate)
                break
            except ImageReadError as e:
                self._unreadable.add(candidate)
                self._problems.counts["unreadable_image"] += 1
                warnings.warn(f"{e}; using another image instead", stacklevel=2)
        else:
            raise RuntimeError(f"{self.json_path}: no image of the dataset could be read")
        if self.transforms is not None:
            generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None
            image, target = self.transforms(image, target, generator)
        return image, target

    def __repr__(self) -> str:
        return (
            f"CocoDataset({self.json_path}, {len(self)} images, {self.num_classes - 1} classes, "
            f"skipped={self.skipped})"
        )
