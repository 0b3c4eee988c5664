"""Ultralytics YOLO segmentation datasets (a dataset YAML, ``images/`` and ``labels/``) -> COCO instances.

The layout Ultralytics trains YOLOv8 / YOLO11 segmentation models on, and that Roboflow ("YOLOv8",
"YOLO11"), CVAT ("Ultralytics YOLO Segmentation") and X-AnyLabeling export. Shapes: an image is H rows x
W columns as shown (after EXIF orientation); a polygon is P points, (P, 2) of (x, y) pixels.

Where the images and classes come from:
- SRC is a dataset YAML, or a folder holding one (``data.yaml`` when it holds several), or a folder
  without one (below).
- The YAML: ``names``, a list or a mapping {index: name} over the indices 0..K-1 (or only ``nc``: the
  classes are then ``class_0``.., as Ultralytics names them); ``path``, the dataset root, relative to
  the YAML's folder (the YAML's folder when absent, or when no such folder is there, as when the YAML
  names a folder of the machine that wrote it: a warning says so); the split (``train``, ``val`` or
  ``validation``, ``test``): a folder of images (searched at any depth), a ``.txt`` list of image
  paths (each relative to the list's folder, else to the root), or a list of those, relative to the
  root. An entry ``../x`` that is not there is read as ``x``: Roboflow writes ``train: ../train/images``
  with the folders beside the YAML, and Ultralytics falls back the same way. A pose dataset
  (``kpt_shape``: its lines are boxes with keypoints, not polygons) is refused.
- Without a YAML: the images under SRC/images (with ``--split S``: SRC/images/S, SRC/S/images or SRC/S),
  else under SRC. The class names are those of a ``classes.txt`` (in SRC or SRC/labels, one a line, as
  LabelImg, Label Studio and X-AnyLabeling write it; lines end at ``\n`` or ``\r\n`` only, as those
  tools split them, not at the other breaks ``str.splitlines`` knows: ``classes_lines``; a line's
  position is its index, so a blank line inside keeps its index, named ``class_<index>`` with a
  warning), else
  ``classes`` (names of the indices 0, 1, ..), else ``class_<index>`` for the indices 0 .. the largest
  one met: ids stay index + 1, so splits converted apart agree, and a dataset converts without knowing
  its names (rename them later, or give ``--classes``); a warning says so, naming a dataset YAML one
  folder up (SRC was a split's folder).
  Split folders found together (images/train + images/val, Roboflow's train/ + valid/) are converted
  together only with a warning: validation images would otherwise slip into training unnoticed.
- ``classes`` with a dataset that names its classes (YAML or classes.txt) selects them by name: the
  categories are exactly those, in that order, and lines of other classes are left out, told as one
  line per class with its count.

The label file of ``.../images/.../NAME.ext`` is ``.../labels/.../NAME.txt``, the last ``images`` folder
of the path replaced (Ultralytics' rule; an image whose path has no ``images`` folder has it beside
itself). An image without a label file, or with an empty one, has no objects: it is kept (Ultralytics
trains on such background images too) and counted in the notes; when no image has a label file at all,
a warning shows where they were looked for. Label files in the images' ``labels`` folders that belong to
no image (its image deleted, or of an extension not read, such as ``.mpo``) are counted and named in one
warning: their lines are left out. A ``.txt`` there whose first line is not numbers (a note, a split's
list of images) is no label file.

A line ``class x1 y1 x2 y2 ... xn yn`` is one instance: a polygon (at least 3 points; an oriented box of
YOLO OBB, 4 corners, is one too), its coordinates fractions of the image's width and height, clipped to
the image. The size is the one shown after EXIF orientation (``image_size``), which is the image
Ultralytics trains on: it reads images with OpenCV, which applies the orientation, and scales the
fractions by the size of what it read; ``read_image`` applies the orientation too, so masks and pixels
agree. A line of exactly 5 numbers is a box ``class cx cy w h`` (also in a file of polygons, where
Ultralytics would misread it as a 2-point polygon). Mask R-CNN needs a mask, so box lines are left out,
counted in the notes, each named with a warning (why, the first time): their objects then train as
background. With
``boxes_as_masks`` they become rectangle masks instead, a compromise: the mask head then learns that
those objects fill their boxes. A line repeated within a file is converted once (Ultralytics removes
duplicate labels too). UTF-8 with or without a BOM, LF or CRLF line ends, blank lines and extra spaces
are all fine.

Reported and skipped (named by file and line, counted by reason): a class that is not a whole number
or is outside the names (``bad_class``); a coordinate that is not a number, NaN or infinite
(``bad_line`` / ``bad_coordinates``); an odd number of coordinates or none (``bad_line``); fewer than 3
points (``few_points``); a coordinate outside 0..1 by more than Ultralytics' 1% tolerance (usually pixel
coordinates: ``out_of_range``; Ultralytics drops the whole image then, here only the line; within the
tolerance the polygon is clipped to the image, as Ultralytics clips); a polygon or box covering no pixel
(``empty_mask``). Whole images: a missing or unreadable image or label file (``missing_image``,
``unreadable_image``, ``unreadable_label``), an image listed twice (``duplicate_image``), and images of
the same name that share one label file (``a.jpg`` and ``a.png`` beside each other: which one it
describes is unknown, so both are skipped: ``ambiguous_label``).
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from maskrcnn.data.formats.common import CocoBuilder, Report, Skip, image_size
from maskrcnn.data.formats.geometry import rectangle_points, to_coco_polygon

__all__ = ["TOLERANCE", "YoloDataset", "convert_yolo", "find_dataset", "label_path", "read_yolo"]

TOLERANCE = 0.01  # coordinates may lie this far outside 0..1 (Ultralytics' label check allows 1%)
_SPLIT_KEYS = {"val": ("val", "validation")}  # Ultralytics renames a YAML's 'validation' to 'val'
_KNOWN_SPLITS = ("train", "val", "validation", "test", "minival")  # the keys Ultralytics reads
_BOXES_LEFT_OUT = "box-only lines left out (no mask; --boxes-as-masks: rectangles)"
# The most classes a dataset may name, or, unnamed, its largest index: each becomes a category, and a typo
# ("nc: 1e9", a line "100000000 0.1 ...") must not make a JSON file of a billion of them.
_MAX_CLASSES = 100_000
_PREFERRED_YAML = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")


@dataclass(frozen=True)
class YoloDataset:
    """What a YOLO dataset's split holds: ``images`` in order (repeats kept, reported when converted),
    ``root`` (file names are relative to it), ``names`` {index: name} or None when the dataset does not
    name its classes, and ``source``, what named them (for messages)."""

    root: Path
    images: tuple
    names: Optional[dict]
    source: str


# ---------------------------------------------------------------------------------------------- finding


def _read_yaml(path: Path) -> dict:
    from maskrcnn.config import load_yaml  # SafeLoader, bounded: no tag runs code, no alias bomb

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot be read ({e})") from None
    data = load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a YOLO dataset YAML (a mapping with 'names' and 'train' / 'val' "
                         f"is expected, not {type(data).__name__})")
    return data


def _name(value, where: str) -> str:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{where} is {value!r}: quote it (YAML reads yes, no, on, off, true, false and "
                         "an empty value as booleans or null)")
    if isinstance(value, (int, float)):  # names: [0, 1] -> "0", "1", as Ultralytics turns them
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where} must be a non-empty name, not {value!r}")
    return value.strip()


def _yaml_names(data: dict, path: Path) -> dict:
    """{index: name} of a dataset YAML, as Ultralytics reads them; ValueError naming the field."""
    names, nc = data.get("names"), data.get("nc")
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or not 1 <= nc <= _MAX_CLASSES):
        raise ValueError(f"{path}: 'nc' must be the number of classes (1..{_MAX_CLASSES}), not {nc!r}")
    if names is None:
        if nc is None:
            raise ValueError(f"{path}: no 'names' (nor 'nc'): a YOLO dataset YAML names its classes")
        return {i: f"class_{i}" for i in range(nc)}
    if isinstance(names, list):
        items = list(enumerate(names))
    elif isinstance(names, dict):
        items = []
        for key, value in names.items():
            index = key if isinstance(key, int) and not isinstance(key, bool) else None
            if isinstance(key, str) and key.strip().isdigit():
                index = int(key)
            if index is None:
                raise ValueError(f"{path}: 'names' key {key!r} is not a class index (0, 1, ...)")
            items.append((index, value))
    else:
        raise ValueError(f"{path}: 'names' must be a list or a mapping {{index: name}}, "
                         f"not {type(names).__name__}")
    if not items:
        raise ValueError(f"{path}: 'names' is empty")
    result = {index: _name(value, f"{path}: names[{index}]") for index, value in items}
    if sorted(result) != list(range(len(result))):
        raise ValueError(f"{path}: 'names' indices must be 0..{len(result) - 1}, not {sorted(result)}")
    if nc is not None and nc != len(result):
        raise ValueError(f"{path}: 'nc: {nc}' but 'names' has {len(result)} classes")
    return _distinct(result, f"{path}: 'names'")


def _distinct(names: dict, where: str) -> dict:
    seen: dict = {}
    for index, name in names.items():
        if name in seen:
            raise ValueError(f"{where} repeats {name!r} (classes {seen[name]} and {index}): two classes "
                             "of one name cannot be told apart")
        seen[name] = index
    return names


def _existing(root: Path, entry: str) -> Path:
    path = root / entry
    if not path.exists() and entry.startswith("../") and (root / entry[3:]).exists():
        return root / entry[3:]  # Roboflow's "train: ../train/images" beside the YAML
    return path


def _listed_images(list_file: Path, root: Path) -> list:
    """The images a split's .txt file lists: relative to its folder, else to the root (CVAT writes
    "images/train/a.jpg" relative to the root, Ultralytics' own lists "./images/..." beside it)."""
    try:
        lines = list_file.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{list_file}: cannot be read ({e})") from None
    images = []
    for line in lines:
        name = line.strip().replace("\\", "/")
        if not name:
            continue
        candidates = [list_file.parent / name, root / name]
        images.append(next((c for c in candidates if c.exists()), candidates[0]))  # missing: reported
    return images


def _yaml_root(path: Path, data: dict) -> Path:
    """The folder the YAML ``path``'s splits are read under: its ``path:`` (relative to the YAML's
    folder; an absolute one as it is) when that is a folder, else the YAML's folder."""
    root = path.parent
    given = data.get("path")
    if given in (None, ""):
        return root
    if not isinstance(given, str):
        raise ValueError(f"{path}: 'path' must be a folder, not {given!r}")
    candidate = root / given
    if not candidate.is_dir():
        return root
    # "yolo3/../yolo3" shown as "yolo3" (in file names and the images-folder hint): the lexical form is
    # kept only where it is the same folder (a symlink before '..' would make it another)
    tidy = Path(os.path.normpath(candidate))
    return tidy if tidy.resolve() == candidate.resolve() else candidate


def _dataset_yaml(src: Path) -> Optional[Path]:
    """The YAML the folder ``src`` is read by (``data.yaml`` when it holds several); None when it holds
    none; ValueError when it holds several and none of the preferred names."""
    yamls = sorted(p for p in [*src.glob("*.yaml"), *src.glob("*.yml")] if p.is_file())
    preferred = [p for p in yamls if p.name in _PREFERRED_YAML]
    if len(yamls) > 1 and not preferred:
        raise ValueError(f"{src}: holds several YAML files ({', '.join(p.name for p in yamls)}); give the "
                         "dataset's one as SRC")
    return (preferred or yamls)[0] if yamls else None


def read_roots(src: Path) -> list:
    """The folders a conversion of SRC reads under, as ``find_dataset`` finds them: the YAML's ``path:``
    root and the folders of every split it names (a split not converted too: its labels are the user's),
    each with its ``labels`` twin (``label_path``). The YAML's own problems are left to the conversion to
    say: then none."""
    src = Path(src)
    try:
        path = src if src.is_file() else _dataset_yaml(src) if src.is_dir() else None
        if path is None:
            return []
        data = _read_yaml(path)
        root = _yaml_root(path, data)
    except (OSError, ValueError):
        return []
    roots = [root]
    for key in _KNOWN_SPLITS:
        entries = data.get(key)
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, str) and entry.strip():
                folder = _existing(root, entry.strip().replace("\\", "/"))
                folder = folder if folder.is_dir() else folder.parent  # a list file: the folder it lies in
                roots += [folder, label_path(folder / "x.jpg").parent]
    return list(dict.fromkeys(roots))


def _yaml_dataset(path: Path, split: str, report: Report) -> YoloDataset:
    data = _read_yaml(report.reading(path))
    if data.get("kpt_shape") is not None:
        raise ValueError(f"{path}: a pose dataset ('kpt_shape'): its lines are boxes with keypoints, not "
                         "polygons; not converted")
    names = _yaml_names(data, path)
    root = _yaml_root(path, data)
    given = data.get("path")
    if given not in (None, "") and root == path.parent and not (path.parent / given).is_dir():
        report.warn(path.name, f"'path: {given}' is not a folder here; reading the splits relative to "
                               f"the YAML's folder {root}")
    key = next((k for k in _SPLIT_KEYS.get(split, (split,)) if data.get(k)), None)
    if key is None:
        present = [k for k in _KNOWN_SPLITS if data.get(k)]
        raise ValueError(f"{path}: no '{split}' split (it names {', '.join(present) or 'none'}); choose one "
                         "with --split")
    entries = data[key] if isinstance(data[key], list) else [data[key]]
    if not all(isinstance(e, str) and e.strip() for e in entries):
        raise ValueError(f"{path}: '{key}' must be a folder, a .txt list of images, or a list of those")
    sources = [_existing(root, e.strip().replace("\\", "/")) for e in entries]
    images = []
    for source in sources:
        if source.is_dir():
            from maskrcnn.data.images import list_images

            images.extend(list_images(source, recursive=True))
        elif source.is_file():
            images.extend(_listed_images(report.reading(source), root))
        else:
            raise FileNotFoundError(f"{path}: '{key}': {source} not found")
    return YoloDataset(root=root, images=tuple(images), names=names, source=path.name)


def classes_lines(text: str) -> list:
    """The lines of a ``classes.txt``: split at ``\n`` (a ``\r`` before it dropped), not at the other
    characters ``str.splitlines`` breaks at (``\x85``, ``\u2028``, ``\x1c``..): a name holding one stays
    one name, and the classes after it keep their indices."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the last line's end
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _classes_names(lines: list, source: str, report: Report) -> dict:
    """{index: name} of a classes.txt's stripped ``lines``: a line's position is its index, as LabelImg
    and the tools that write the file read it back, so a blank line inside (a class deleted by hand, a
    stray empty line) keeps its index, named ``class_<index>`` with a warning (``class_<index>_blank``
    when another line names ``class_<index>``); dropping it would shift every later class onto its
    neighbour's labels. Blank lines at the end are only line ends."""
    while lines and not lines[-1]:
        lines = lines[:-1]
    names = {}
    written = set(lines)  # a real line naming class_<i> made the placeholder look like a repeated class
    for index, name in enumerate(lines):
        if not name:
            name, n = f"class_{index}", 1
            while name in written:
                name, n = f"class_{index}_blank" + (str(n) if n > 1 else ""), n + 1
            report.warn(source, f"line {index + 1} is blank: class {index} named {name!r} (the classes "
                                "after it keep their indices; write its name there to rename it)")
        names[index] = name
    return names


def _classes_file(src: Path) -> Optional[Path]:
    return next((p for p in (src / "classes.txt", src / "labels" / "classes.txt") if p.is_file()), None)


def _folder_dataset(src: Path, split: Optional[str], report: Report) -> YoloDataset:
    from maskrcnn.data.images import list_images

    if split is not None:
        folders = [src / "images" / split, src / split / "images", src / split]
        folder = next((f for f in folders if f.is_dir()), None)
        if folder is None:
            raise FileNotFoundError(f"{src}: no split '{split}' (looked for {', '.join(map(str, folders))})")
    else:
        folder = src / "images" if (src / "images").is_dir() else src
        # images/train + images/val, or Roboflow's train/images + valid/images: converting them together
        # would put the validation images into the training set
        splits = sorted({f.name for f in [*folder.iterdir(), *src.iterdir()] if f.is_dir()
                         and f.name in (*_KNOWN_SPLITS, "valid")})  # Roboflow names it "valid"
        if len(splits) > 1:
            report.warn(str(src), f"holds the splits {', '.join(splits)}, converted together here; "
                                  "--split S converts one")
    names, source = None, ""
    classes = _classes_file(src)
    if classes is not None:
        try:
            lines = [line.strip()
                     for line in classes_lines(report.reading(classes).read_bytes().decode("utf-8-sig"))]
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{classes}: cannot be read ({e})") from None
        source = str(classes.relative_to(src))
        names = _distinct(_classes_names(lines, source, report), source)
        if not names:
            raise ValueError(f"{classes}: names no class")
    images = tuple(list_images(folder, recursive=True))
    return YoloDataset(root=src, images=images, names=names, source=source)


def find_dataset(src: Path, *, split: Optional[str], report: Report) -> YoloDataset:
    """The images and class names of a YOLO dataset's split (see the module docstring); ValueError or
    FileNotFoundError, one line naming the file and field, when there is no such dataset."""
    src = Path(src)
    if src.is_file():
        return _yaml_dataset(src, split or "train", report)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such file or folder")
    yaml = _dataset_yaml(src)
    if yaml is not None:
        return _yaml_dataset(yaml, split or "train", report)
    return _folder_dataset(src, split, report)


def label_path(image: Path) -> Path:
    """The label file of an image: the path's last ``images`` folder replaced by ``labels``, ``.txt``."""
    parts = list(Path(image).absolute().parts)
    folders = [i for i, part in enumerate(parts[:-1]) if part == "images"]
    if folders:
        parts[folders[-1]] = "labels"
    return Path(*parts).with_suffix(".txt")


# ---------------------------------------------------------------------------------------------- lines


_DIGITS = re.compile(r"[0-9]{1,4000}")  # Python's int() refuses more than 4300 digits


def _class_index(token: str) -> int:
    if _DIGITS.fullmatch(token):  # as written: through a float, 99999999999999999999 was misquoted 1e20
        return int(token)
    try:
        value = float(token)
    except ValueError:
        value = math.nan
    # "2.0" is 2, as Ultralytics reads it (classes are parsed as floats there)
    if not (math.isfinite(value) and value.is_integer() and value >= 0):
        shown = token if len(token) <= 40 else token[:40] + "..."  # a line may hold a huge token
        raise Skip("bad_class", f"class {shown!r} is not a class index (0, 1, ...)")
    return int(value)


def _coordinates(tokens: Sequence[str]) -> np.ndarray:
    """The numbers after the class, checked: (2P,) float64 fractions of the image's size."""
    try:
        values = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_number(t))
        raise Skip("bad_line", f"{bad!r} is not a number") from None
    if not np.isfinite(values).all():
        raise Skip("bad_coordinates", "coordinates contain NaN or infinite values")
    if values.size == 0:
        raise Skip("bad_line", "a class without coordinates")
    if values.size % 2:
        # Ultralytics' predict --save-txt --save-conf writes "class cx cy w h conf" (or a polygon then the
        # confidence): prediction output given as labels, which the count alone would not tell the user
        shape = "a box (cx cy w h)" if values.size == 5 else "a polygon"
        guess = (f"; it looks like {shape} and a confidence, as predictions saved with save_conf are "
                 "written: labels have no confidence") if 0 <= values[-1] <= 1 else ""
        raise Skip("bad_line", f"{values.size} coordinates: x y pairs are expected, the count must be "
                               f"even{guess}")
    outside = values[(values < -TOLERANCE) | (values > 1 + TOLERANCE)]
    if outside.size:
        raise Skip("out_of_range", f"coordinate {outside[0]:g} is outside 0..1: YOLO coordinates are "
                                   "fractions of the image's width and height, not pixels")
    return values


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _line_polygon(values: np.ndarray, width: int, height: int) -> list:
    points = values.reshape(-1, 2) * np.array([width, height], dtype=np.float64)  # (P, 2) pixels
    return to_coco_polygon(points, width, height)


def _box_polygon(values: np.ndarray, width: int, height: int) -> list:
    cx, cy, w, h = values.tolist()
    if w <= 0 or h <= 0:
        raise Skip("empty_mask", f"box of width {w:g} and height {h:g} has no area")
    corners = rectangle_points((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                               (cy + h / 2) * height)  # (4, 2) pixels
    return to_coco_polygon(corners, width, height)


def _read_label_lines(path: Path) -> list:
    """[(line number, tokens)] of the non-blank lines; Skip when the file cannot be read as text."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a BOM (Windows editors write one) is fine
    except (OSError, UnicodeDecodeError) as e:
        raise Skip("unreadable_label", f"label file {path.name} cannot be read ({e})") from None
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


# ---------------------------------------------------------------------------------------------- images


def _convert_image(image: Path, label: Path, *, label_of, builder: CocoBuilder, report: Report,
                   boxes_as_masks: bool, met: set, keep: Optional[set], left_out: Counter) -> bool:
    """One image and its label file; True when it had a label file. Lines of a class not in ``keep``
    (when given) are counted in ``left_out`` by (index, name), not reported one by one."""
    height, width = image_size(image)
    has_label = label.is_file()
    lines = _read_label_lines(report.reading(label)) if has_label else []
    label_name = builder.relative(label)
    image_id = builder.add_image(image, height=height, width=width, source=label_name)
    if not has_label:
        report.note("images without a label file (kept, no objects)")
    elif not lines:
        report.note("images with an empty label file (kept, no objects)")
    seen = set()
    for number, tokens in lines:
        where = f"{label_name}: line {number}"
        if tuple(tokens) in seen:
            report.note("repeated lines left out")
            continue
        seen.add(tuple(tokens))
        try:
            index = _class_index(tokens[0])
            label_text = label_of(index)
            if keep is not None and label_text not in keep:
                left_out[(index, label_text)] += 1
                continue
            values = _coordinates(tokens[1:])
            if values.size == 4:
                if not boxes_as_masks:
                    if not report.notes[_BOXES_LEFT_OUT]:  # the why once; then each line by name
                        report.warn(where, "a box-only line (class cx cy w h) has no mask: such lines are "
                                           "left out, and their objects are unlabelled in training; "
                                           "--boxes-as-masks writes them as rectangle masks")
                    else:
                        report.warn(where, "box-only line left out (no mask)")
                    report.note(_BOXES_LEFT_OUT)
                    continue
                polygon = _box_polygon(values, width, height)
                report.note("box-only lines written as rectangle masks")
            else:
                polygon = _line_polygon(values, width, height)
            builder.add_polygons(image_id, label_text, [polygon])
            met.add(index)
        except Skip as e:
            report.skip(where, e)
    return has_label


def _stems(folder: Path) -> dict:
    """{stem: [suffix, ...]} of the files in ``folder`` with a suffix ("a.b.jpg": "a.b" -> [".jpg"], the
    stem ``label_path`` gives its label file); {} when it cannot be listed. One listing per folder: a
    glob per label file listed the folder once for each, O(labels x files)."""
    stems = defaultdict(list)
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                stem, suffix = os.path.splitext(entry.name)
                try:
                    if suffix and entry.is_file():
                        stems[stem].append(suffix)
                except OSError:  # vanished, or a broken link
                    continue
    except OSError:
        return {}
    return stems


_HEAD_CHARS = 4096  # of a file in a labels folder, read to tell a label file from a note or a list


def _holds_label_lines(path: Path) -> bool:
    """Whether the file reads as a label file: empty, or its first non-blank line numbers only. A
    ``README.txt`` or a split's list of image paths (``val.txt``) in a ``labels`` folder is none, and
    is no label file that lost its image. Only its start is read (such a file may be large)."""
    try:
        with open(path, encoding="utf-8-sig", errors="strict") as f:
            head = f.read(_HEAD_CHARS)
    except (OSError, UnicodeDecodeError):
        return False
    lines = head.splitlines()[:-1] if len(head) == _HEAD_CHARS else head.splitlines()  # last: maybe cut
    first = next((line.split() for line in lines if line.strip()), None)
    return first is None or all(_is_number(token) for token in first)


def _tell_orphan_labels(images: list, owners: dict, *, builder: CocoBuilder, report: Report) -> None:
    """One line counting and naming the label files in the images' ``labels`` folders that belong to no
    image: its image was deleted, or has an extension that is not read (``.mpo``): their lines would be
    lost without a word. A label file whose image is there but not in this split (a ``.txt`` list of
    another split's images in the same folder) is not one, nor a ``.txt`` that holds no label lines (a
    note, a split's list of images). Each image folder is listed once, when a label file is not owned."""
    from maskrcnn.data.images import IMAGE_EXTENSIONS

    folders = {}  # labels folder -> the image folders whose label files it holds
    for image in images:
        label_folder = label_path(image).parent
        if label_folder != image.absolute().parent:  # labels beside the images: .txt there may be lists
            folders.setdefault(label_folder, set()).add(image.absolute().parent)
    listings: dict = {}  # image folder -> _stems
    orphans = []
    for label_folder, image_folders in sorted(folders.items()):
        try:
            texts = sorted(p for p in label_folder.glob("*.txt") if p.is_file() and p.name != "classes.txt")
        except OSError:
            continue
        for text in texts:
            if text in owners:
                continue
            for folder in image_folders - listings.keys():
                listings[folder] = _stems(folder)
            beside = sorted(folder / f"{text.stem}{suffix}" for folder in image_folders
                            for suffix in listings[folder].get(text.stem, ()))
            if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in beside):
                continue  # its image is there, in another split
            if not _holds_label_lines(text):
                continue  # a note or a list: only peeked at, no source file
            report.reading(text)  # a label file, its lines told as left out below: the user's labels
            unread = f" ({beside[0].name} is not a format read)" if beside else ""
            orphans.append(f"{builder.relative(text)}{unread}")
    if orphans:
        shown = ", ".join(orphans[:5]) + (", ..." if len(orphans) > 5 else "")
        report.warn(str(builder.root), f"{len(orphans)} label file(s) with no image, their lines left out: "
                                       f"{shown}")
        report.note("label files with no image (left out)", len(orphans))


def read_yolo(images: Sequence[Path], *, label_of, builder: CocoBuilder, report: Report,
              boxes_as_masks: bool = False, keep: Optional[Sequence[str]] = None) -> set:
    """Add ``images`` and the instances of their label files to ``builder``; ``label_of(index)`` is the
    class name of an index (Skip("bad_class") when there is none). With ``keep`` (class names), lines of
    other classes are left out and told as one line per class with their count. Returns the class
    indices met."""
    images = [Path(p) for p in images]
    owners = defaultdict(set)  # label file -> the distinct images it would describe
    for image in images:
        owners[label_path(image)].add(image.absolute())
    met: set = set()
    left_out: Counter = Counter()  # (index, name) -> lines of a class not kept
    keep = None if keep is None else set(keep)
    labelled = 0
    for image in images:
        label = label_path(image)
        try:
            if len(owners[label]) > 1 and label.is_file():
                labelled += 1  # its label file is there: not one of "no image has a label file"
                others = sorted(builder.relative(p) for p in owners[label] if p != image.absolute())
                raise Skip("ambiguous_label", f"{builder.relative(label)} is also the label file of "
                                              f"{', '.join(others)}: which image it describes is unknown")
            labelled += _convert_image(image, label, label_of=label_of, builder=builder, report=report,
                                       boxes_as_masks=boxes_as_masks, met=met, keep=keep, left_out=left_out)
        except Skip as e:
            report.skip(builder.relative(image), e)
    for (index, name), n in sorted(left_out.items()):
        report.tell(str(builder.root), f"{n} line(s) of class {name!r} (index {index}) left out: not in "
                                       f"--classes")
    if left_out:
        report.note("lines of classes not in --classes left out", sum(left_out.values()))
    _tell_orphan_labels(images, owners, builder=builder, report=report)
    if images and not labelled:
        example = builder.relative(label_path(images[0]))
        report.warn(str(builder.root), f"no image has a label file (looked for {example}: the "
                    "image's path with its last 'images' folder replaced by 'labels', and .txt)")
    return met


def convert_yolo(src: Path, *, split: Optional[str], classes: Optional[Sequence[str]], boxes_as_masks: bool,
                 report: Report, description: str = "") -> CocoBuilder:
    """A YOLO dataset's split as a ``CocoBuilder`` (categories: see the module docstring)."""
    dataset = find_dataset(Path(src), split=split, report=report)
    names = dataset.names
    if names is not None and classes is not None:
        unknown = [c for c in classes if c not in names.values()]
        if unknown:
            raise ValueError(f"--classes {', '.join(unknown)}: not among the classes of {dataset.source} "
                             f"({', '.join(names.values())})")
        categories = [(i + 1, name) for i, name in enumerate(classes)]
    elif classes is not None:  # the dataset does not name its classes: --classes names the indices
        names = dict(enumerate(classes))
        categories = [(i + 1, name) for i, name in names.items()]
    elif names is not None:
        categories = [(i + 1, name) for i, name in names.items()]
    else:
        categories = None  # class_<index>, fixed below once the largest index is known

    def label_of(index: int) -> str:
        if names is None:
            if index >= _MAX_CLASSES:
                raise Skip("bad_class", f"class {index} is more than the {_MAX_CLASSES} classes allowed "
                                        "without names (give --classes or the dataset YAML)")
            return f"class_{index}"
        if index not in names:
            raise Skip("bad_class", f"class {index} is out of range: {dataset.source or '--classes'} names "
                                    f"{len(names)} classes (0..{len(names) - 1})")
        return names[index]

    suffix = f" ({split})" if split else ""
    builder = CocoBuilder(root=dataset.root, categories=categories, description=description + suffix,
                          guard=report.guard)
    met = read_yolo(dataset.images, label_of=label_of, builder=builder, report=report,
                    boxes_as_masks=boxes_as_masks, keep=classes if dataset.names is not None else None)
    if categories is None and met:
        # ids index + 1 for every index up to the largest met, so a split without some class agrees
        builder.fixed = {f"class_{i}": i + 1 for i in range(max(met) + 1)}
        beside = [p for p in (dataset.root.parent / n for n in _PREFERRED_YAML) if p.is_file()]
        hint = f"; {beside[0]} names them: give it as SRC" if beside else "; --classes a,b,.. names them"
        listing = "class_0" + (f"..class_{max(met)}" if max(met) else "")
        report.warn(str(dataset.root), f"no dataset YAML or classes.txt names the classes: they are "
                                       f"{listing}{hint}")
    return builder
