"""``maskrcnn merge-data``: merge COCO instance JSON files (and their image folders) into one.

    maskrcnn merge-data A.json[:IMAGES_A] B.json[:IMAGES_B] ... --output all.json [--images-root R]
                        [--classes a,b,c] [--force]

Each source is read with the validation ``train`` runs, its images looked for under IMAGES (default: the
folder train chooses, said in a line: the JSON's folder when it holds images, train/ beside train.json,
...): bad records and images without their file are reported by file and id, left out and
counted. Categories are matched by name (case, ``_``, ``-`` and spaces ignored, as fine-tuning matches
classes; each name joined with another spelling is said in a warning), new names appended, ids 1..K
in the order first seen or as ``--classes`` gives them (classes
outside it left out, one line each). Image and annotation ids are renumbered; every ``file_name``
becomes relative to ``--images-root`` (default: the deepest folder holding every IMAGES folder), so
``train --train-images R`` finds every image. An image file listed twice is kept once (the first
listing's annotations), with a warning counting the later listing's annotations left out by class.
Categories with keypoints must agree on the keypoint names; a class with keypoints in one file but not
in another is said, with its annotations that have none. ``info`` describes the merge; ``licenses`` are
carried, renumbered (one written alike in two files is one), each image's ``license`` id mapped to its
new one. The output is written atomically; an existing file is an error unless ``--force``. See
``maskrcnn/data/merge.py``.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path
from typing import Optional

from maskrcnn.commands.data_report import IMAGE_DIR_ORDER, image_dir_or_default, skipped_line
from maskrcnn.listing import short_listing
from maskrcnn.shell import shell_word
from maskrcnn.shown_text import display_name

HELP = "merge COCO JSON files: classes matched by name, ids renumbered, file names made relative to one root"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", metavar="A.json[:IMAGES]",
                        help="a COCO JSON file and, after ':', the folder its file_name values are relative "
                             "to (default, as train chooses it: " + IMAGE_DIR_ORDER + ")")
    parser.add_argument("--output", required=True, metavar="OUT.json", help="the merged COCO JSON file")
    parser.add_argument("--images-root", default=None, metavar="R",
                        help="make file_name values relative to R (default: the deepest folder holding every "
                             "source's image folder); train with --train-images R")
    parser.add_argument("--classes", default=None, metavar="A,B,C",
                        help="the output's classes, in id order from 1, matched by name; other classes are "
                             "left out with their annotations (default: every class, in the order first "
                             "seen)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def parse_source(spec: str, parsed: Optional[dict] = None) -> tuple:
    """'A.json:IMAGES' -> (Path('A.json'), Path('IMAGES'), True); 'A.json' -> (A.json, the folder train
    would choose for it (``image_dir_or_default``: the JSON's folder, train/ beside train.json, ...; said
    in a line), False). A spec naming an existing file as a whole is that file (a ':' in its name, or a
    Windows drive). ``parsed``: {JSON path: the parsed file}, the caller's, where a JSON read to choose
    its folder is put (``image_dir_or_default``), for the caller to read it from there."""
    if Path(spec).is_file() or ":" not in spec:
        json_path, images = Path(spec), None
    else:
        head, tail = spec.rsplit(":", 1)
        if not tail.strip():  # 'A.json:' would silently mean the JSON's folder (or the current one)
            raise ValueError(f"{spec!r}: nothing after ':'; give A.json:IMAGES_FOLDER, or A.json alone for "
                             f"the JSON file's folder")
        json_path, images = Path(head), Path(tail)
    if json_path.is_dir():
        raise ValueError(f"{json_path}: is a folder; give a COCO JSON file")
    if not json_path.is_file():
        raise FileNotFoundError(f"{json_path}: no such annotation file")
    if images is None:  # as train, eval and show-data choose it (train/ beside train.json, ...)
        folder = image_dir_or_default(None, json_path, f"{json_path}:IMAGES", parsed=parsed)
        return json_path, Path(folder), False
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: no such image folder (for {json_path})")
    return json_path, images, True


def _licenses(raw: dict, json_path) -> list:
    """The file's ``licenses`` list (none when absent); one that is no list is said and not carried."""
    value = raw.get("licenses")
    if value is None:
        return []
    if not isinstance(value, list):
        warnings.warn(f"{json_path}: 'licenses' is {type(value).__name__}, not a list; not carried",
                      stacklevel=1)
        return []
    return value


def run(args) -> int:
    from maskrcnn.data.file_keys import file_key
    from maskrcnn.data.merge import MergeSource, common_root, merge_coco, parse_classes
    from maskrcnn.data.validated import read_validated
    from maskrcnn.io_utils import atomic_write_json, check_output_file

    classes = parse_classes(args.classes)
    out = check_output_file(args.output, "--output")
    # no parsed file kept while choosing the folders: N sources held at once would take N files' memory
    specs = [parse_source(s) for s in args.sources]
    if out.exists() and not args.force:
        raise ValueError(f"--output {out}: already there; give --force to overwrite")
    if out.resolve() in {j.resolve() for j, _, _ in specs}:
        raise ValueError(f"--output {out}: is one of the sources; choose another file")
    if args.images_root is not None and not Path(args.images_root).is_dir():
        raise FileNotFoundError(f"--images-root {args.images_root}: no such folder")
    root = os.path.abspath(args.images_root if args.images_root is not None
                           else common_root([str(images) for _, images, _ in specs]))
    sources, skipped, unguessed = [], [], []  # unguessed: (source, not found, listed): most not found
    for json_path, images, given in specs:
        data = read_validated(json_path, images)
        paths = {iid: os.path.abspath(p) for iid, p in data.image_paths.items()}
        sources.append(MergeSource(name=str(json_path), images=data.images, annotations=data.annotations,
                                   categories=data.categories, image_paths=paths,
                                   # the file's real path: the rule split-data and show-data use too
                                   image_keys={img["id"]: file_key(img["file_name"], images)
                                               for img in data.images if img["id"] in paths},
                                   licenses=_licenses(data.raw, json_path)))
        skipped.append(data.skipped)
        missing, listed = data.skipped.get("missing_image_file", 0), len(data.raw.get("images") or [])
        if not given and missing * 2 > listed:  # most not found: the folder guessed is likely the wrong one
            unguessed.append((str(json_path), missing, listed))
    # --classes naming no class of any source is refused there, before anything is written
    merged, counts, notes = merge_coco(sources, images_root=root, classes=classes)
    for note in notes:
        warnings.warn(note, stacklevel=1)
    for src, c in zip(sources, counts):
        for name, n in sorted(c.left_out.items()):
            print(f"{src.name}: class {name!r} is not in --classes: its {n} annotation(s) left out")
    hint = (f"; give the image folder after a ':' ({unguessed[0][0]}:IMAGES) where it is not the one "
            "looked in" if unguessed else "")
    for name, missing, listed in unguessed:
        print(f"{name}: {missing} of {listed} image files not found in the folder looked in; "
              f"give {name}:IMAGES for another")
    if not merged["images"]:
        raise ValueError(f"no usable image in any source (see the problems above){hint}; nothing written")
    atomic_write_json(out, merged, ensure_ascii=True)  # a COCO file for other tools: ASCII (io_utils)
    for src, c, sk in zip(sources, counts, skipped):
        listing = short_listing((f"{display_name(name)} {n}" for name, n in c.instances.items()),
                                what="more classes")
        lost = sum(c.duplicate_annotations.values())
        # the annotations of a duplicate image's later listing are left out: "0 annotations" alone for a
        # file of 3 hid them
        dup_listing = short_listing((f"{display_name(name)} {n}" for name, n in
                                     c.duplicate_annotations.most_common()), what="more classes")
        print(f"{src.name}: {c.images} images, {sum(c.instances.values())} annotations ({listing}); "
              f"{c.duplicates} duplicate image(s)" + (f" (their {lost} annotation(s) left out: {dup_listing})"
                                                      if lost else "")
              + f", {sum(c.left_out.values())} annotation(s) of other classes left out; {skipped_line(sk)}")
    # names as show-data prints them: a newline or tab in a class name escaped, not breaking the line
    names = short_listing((f"{cat['id']} {display_name(cat['name'])}" for cat in merged["categories"]),
                          what="more classes")
    print(f"{len(merged['images'])} images, {len(merged['annotations'])} annotations, "
          f"{len(merged['categories'])} classes ({names}) -> {out}")
    print(f"file_name values are relative to {root}: use --train-images {shell_word(root)}")
    return 0
