"""Pre-annotations as an Ultralytics YOLO segmentation dataset: one label file per image and a dataset
YAML, what Ultralytics trains YOLOv8 / YOLO11 segmentation models on and what CVAT, Roboflow and
X-AnyLabeling import ("Ultralytics YOLO Segmentation").

Shapes: an image is H rows x W columns; an instance's mask (h, w) bool over its box; P points of a
polygon, (P, 2) of (x, y) pixels.

A label file holds one line per instance, ``class x1 y1 x2 y2 ... xP yP``: the class index (0-based, the
model's classes in order without the background, so index = label - 1) and the polygon's points as
fractions of the image's width and height, 6 decimals (a millionth of the image: well under a pixel for
any image size). An image without instances has an empty file (Ultralytics reads a missing file as a
background image too, but an empty one says it was looked at).

Polygons are traced as for LabelMe (``contours``, simplified to ``tolerance`` pixels). A line is one
polygon without holes, so a part's holes are cut open to its outline (``contours.bridge_holes``), and
the parts of one instance are joined the same way, by zero-width cuts there and back into one ring:
one line stays one instance (Ultralytics' own COCO converter joins segments so, ``merge_multi_segment``)
where one line per part would split the instance into several on import, each part then a separate
object to train on. The even-odd fill of the joined ring (what pycocotools, PIL and our YOLO reader
draw) is the instance with its holes.

A box-only model's instances are detection lines, ``class cx cy w h`` (centre and size, fractions).

``data.yaml``: ``path`` the images folder (absolute: Ultralytics reads a relative ``path`` under its
datasets folder, not beside the YAML), ``train`` and ``val`` that folder itself (``.``), ``names`` the
class names as a list. Ultralytics and ``convert-data --from yolo`` find an image's labels by replacing
the last ``images`` folder of its path with ``labels``: with the images in ``DATA/images/`` put
``labels/`` beside them as ``DATA/labels/``. ``labels/classes.txt`` names the classes too, one a line
in index order (as LabelImg and Ultralytics' converters write it): copied with the labels, it keeps the
names where ``data.yaml`` is left behind (``convert-data --from yolo`` reads ``DATA/labels/classes.txt``).
A class name holding a line break (``\n``, ``\r``, ``\u2028``, any ``str.splitlines`` splits at) cannot
be one line: the export is refused before predicting, naming the class (``check_yolo_names``).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Sequence

import numpy as np
import yaml

from maskrcnn.data.pre_annotations.contours import Component, bridge_holes, mask_to_components
from maskrcnn.data.pre_annotations.instances import Category, ImageRecord, Instance, box_patch

__all__ = ["LINE_BREAKS", "check_yolo_names", "has_safe_name", "instance_ring", "yolo_classes_txt",
           "yolo_data_yaml", "yolo_label_file", "yolo_labels"]

# every character str.splitlines breaks a line at: a name holding one cannot be one line of classes.txt
# (our reader splits at "\n" only, but other tools read it with splitlines or universal newlines)
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def instance_ring(instance: Instance, *, tolerance: float) -> np.ndarray:
    """(P, 2) pixels: the instance's mask traced as one ring, holes and parts joined by zero-width cuts."""
    left, top, patch = box_patch(instance)
    parts = [bridge_holes(c) for c in mask_to_components(patch, tolerance=tolerance, offset=(left, top))]
    # the other parts spliced into the largest as holes are: even-odd fill counts no crossing of a cut
    return bridge_holes(Component(parts[0], parts[1:]))


def yolo_label_file(file_name: str) -> str:
    """The label file of the image ``file_name`` (relative to the images folder, '/'-separated), relative
    to the export's folder: ``labels/`` + the image's path with ``.txt`` for its extension. The image's own
    name, ':', control characters and bytes that are not UTF-8 included: Ultralytics (and X-AnyLabeling,
    CVAT, ``convert-data --from yolo``) finds an image's labels by that name only, so the safe name the
    overlays and the other per-image files take (``overlay_paths``) would pair the labels with no image,
    or with another one (``a:b.png``'s labels as ``a_b.txt``, read as ``a_b.png``'s)."""
    return "labels/" + PurePosixPath(file_name).with_suffix(".txt").as_posix()


def has_safe_name(file_name: str) -> bool:
    """Whether ``file_name`` is the name the overlays and the other per-image exports give the image (no
    ':', control character, byte that is not UTF-8, ...: ``overlay_paths.safe_relpath`` and
    ``safe_file_name`` leave it as it is)."""
    from maskrcnn.overlay_paths import safe_file_name, safe_relpath

    return safe_relpath(safe_file_name(file_name)).as_posix() == file_name


def _fractions(values: np.ndarray) -> str:
    # + 0.0 turns -0.0 into 0.0 ("-0.000000" reads fine but looks like an error)
    return " ".join(f"{v:.6f}" for v in np.clip(values, 0.0, 1.0).ravel() + 0.0)


def yolo_labels(image: ImageRecord, instances: Sequence[Instance], *, tolerance: float) -> str:
    """The label file's text of one image ('' without instances)."""
    scale = np.array([image.width, image.height], dtype=np.float64)
    lines = []
    for inst in instances:
        index = inst.category.label - 1
        if inst.rle is None:  # a box-only model: a detection line
            x0, y0, x1, y1 = inst.box
            box = np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]) / np.tile(scale, 2)
            lines.append(f"{index} {_fractions(box)}")
        else:
            lines.append(f"{index} {_fractions(instance_ring(inst, tolerance=tolerance) / scale)}")
    return "".join(line + "\n" for line in lines)


def yolo_data_yaml(images_root: str, categories: Sequence[Category]) -> str:
    """The dataset YAML: ``images_root`` (absolute) as ``path``, train and val that folder, the names."""
    data = {"path": str(images_root), "train": ".", "val": ".",
            "names": [c.name for c in sorted(categories, key=lambda c: c.label)]}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def check_yolo_names(categories: Sequence[Category]) -> None:
    """ValueError naming the first class whose name holds a line break (``LINE_BREAKS``): written one a
    line, it would take two lines of ``classes.txt``, and every class after it would read back under the
    next one's name, silently."""
    from maskrcnn.shown_text import display_name

    for c in sorted(categories, key=lambda c: c.label):
        if any(ch in LINE_BREAKS for ch in c.name):
            raise ValueError(f"--export yolo: class {c.label - 1} {display_name(c.name)} holds a line break, "
                             "which labels/classes.txt (one name a line) cannot hold: leave yolo out of "
                             "--export (the other formats keep the name), or rename the class")


def yolo_classes_txt(categories: Sequence[Category]) -> str:
    """``classes.txt``: the class names one a line, in class index order (label - 1); a name with a line
    break is refused (``check_yolo_names``)."""
    check_yolo_names(categories)
    return "".join(c.name + "\n" for c in sorted(categories, key=lambda c: c.label))
