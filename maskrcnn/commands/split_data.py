"""``maskrcnn split-data``: split one COCO instance JSON into train / val (/ test) files.

    maskrcnn split-data --json all.json --output-dir D [--fractions 0.8,0.2] [--names train,val]
                        [--seed 0] [--group-by REGEX] [--images FOLDER] [--force]

Writes ``D/<name>.json`` per part. The file is read with the validation ``train`` runs (bad records
reported by file and id, left out, counted); with ``--images`` the image files are looked for too (an
image without its file is left out, as in training). The split is stratified by class (iterative
stratification, rarest class first: ``maskrcnn/data/split.py``), images without annotations spread by the
fractions too; ``--group-by REGEX`` keeps the images whose ``file_name`` gives the same match (the first
group when the regex has one) in one part: frames of one video, tiles of one scene; fewer groups than
parts (a regex matching the same everywhere makes one group) is warned about, the parts left empty.
The image records that name one file (an export listing a picture once per task; 'a.png',
'../img/a.png' and '/data/img/a.png' from the folder img/) are always kept in one part, said in a line:
with ``--images`` the rule merge-data and show-data use (the file's real path: ``data/file_keys.py``);
without, by name (an absolute or '..' path goes with the record whose name is the longest end of it,
said in its own line as the guess it is; two such paths of one kind that differ, '/d/a/x.png' and
'/e/b/x.png', go with 'x.png' too: at most one of them is it, but leaving that one apart would put one
picture in two parts; said in a line, --images tells them apart).
Same file and seed, same split, on any machine. Every part keeps the full ``categories`` list, ``info``
and ``licenses``, and the image and annotation ids. Prints images and instances per class per part and
warns, by name, of each class left without an instance in some part. The files are written atomically,
after all are built, all to temporary files before any is renamed into place (a failed write leaves
the old parts as they were, and no temporary file); an existing one is an error unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from maskrcnn.commands.data_report import folded_classes, shown_name, skipped_line
from maskrcnn.listing import short_listing
from maskrcnn.shown_text import display_name
from maskrcnn.text_width import display_width, pad

HELP = "split a COCO JSON into train / val (/ test) files, stratified by class, groups kept whole"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", required=True, help="the COCO instance JSON file to split")
    parser.add_argument("--output-dir", required=True, metavar="D", help="folder for D/<name>.json")
    parser.add_argument("--fractions", default="0.8,0.2", metavar="F1,F2,..",
                        help="the share of images of each part, summing to 1 (default 0.8,0.2)")
    parser.add_argument("--names", default=None, metavar="N1,N2,..",
                        help="the parts' names (default train,val; train,val,test for three fractions)")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the split (default 0)")
    parser.add_argument("--group-by", default=None, metavar="REGEX",
                        help="keep images whose file_name gives the same match (its first group when it has "
                             "one) in one part, e.g. '^([^/]+)/' for one folder per video")
    parser.add_argument("--images", default=None, metavar="FOLDER",
                        help="also check that every image file exists under FOLDER (as train does) and "
                             "leave out those that do not (default: the files are not looked for)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _fractions(spec: str) -> list:
    try:
        return [float(f) for f in spec.split(",")]
    except ValueError:
        raise ValueError(f"--fractions {spec!r}: give comma-separated numbers, e.g. 0.8,0.2") from None


def _categories_as_read(categories) -> list:
    """The file's categories as written, with ids as the loader reads them ("7" -> 7): the annotations
    are written with those ids, and a category id "7" beside category_id 7 matched nothing in
    pycocotools (every annotation of the part lost to its evaluation)."""
    from maskrcnn.data.validated import as_id

    return [dict(c, id=as_id(c["id"])) if isinstance(c, dict) and "id" in c else c for c in categories or []]


def _separator_hint(images: list, keys: list) -> str:
    """A hint when names --group-by did not match are written with Windows separators ('vid1\\f1.jpg'):
    a regex written for '/' (the README's '^([^/]+)/') matches none of them, and the frames of one video
    land in train and val."""
    windows = [img["file_name"] for img, key in zip(images, keys)
               if key is None and "\\" in img["file_name"]]
    if not windows:
        return ""
    return (f"; {len(windows)} of them are written with '\\' separators (e.g. '{display_name(windows[0])}'), "
            f"which a regex written for '/' does not match: write [/\\\\] for a separator, e.g. "
            f"'^([^/\\\\]+)[/\\\\]'")


def _print_table(table: dict, parts: list, out) -> None:
    """One row per class (then all images): its images and instances in each part."""
    shown = {n: "(all images)" if n is None else shown_name(n) for n in table}
    heads = [h for p in parts for h in (f"{p} images", f"{p} instances")]
    width = max([len("class")] + [display_width(n) for n in shown.values()])  # 葉: 2 columns
    print(f"  {'class':<{width}}" + "".join(f"  {h:>{max(len(h), 6)}}" for h in heads), file=out)
    for name, row in table.items():
        values = [v for p in parts for v in row[p]]
        cells = "".join(f"  {v:>{max(len(h), 6)}}" for h, v in zip(heads, values))
        print(f"  {pad(shown[name], width)}{cells}", file=out)


def run(args) -> int:
    from maskrcnn.data.file_keys import file_key
    from maskrcnn.data.split import (
        check_fractions,
        compile_group_by,
        default_part_names,
        group_keys,
        split_by_keys,
        split_table,
        written_file_matches,
    )
    from maskrcnn.data.validated import read_validated
    from maskrcnn.io_utils import atomic_write_all, check_output_dir, folder_targets

    fractions = _fractions(args.fractions)
    if len(fractions) < 2:  # before the --names that one part would otherwise be asked for
        check_fractions(fractions, [])
    names = ([n.strip() for n in args.names.split(",")] if args.names is not None
             else default_part_names(len(fractions)))
    # 'x.json' is the part x (its file x.json), not x.json.json
    names = [n[:-len(".json")] if n.lower().endswith(".json") and len(n) > len(".json") else n for n in names]
    check_fractions(fractions, names)
    if sum(fractions) != 1.0:  # within 0.01 of 1 (check_fractions): 0.333,0.333,0.333 is a third each
        print(f"--fractions {args.fractions}: they sum to {sum(fractions):g}; scaled to sum to 1")
        fractions = [f / sum(fractions) for f in fractions]
    pattern = compile_group_by(args.group_by) if args.group_by is not None else None
    out_dir = check_output_dir(args.output_dir, "--output-dir")
    outputs = {name: out_dir / f"{name}.json" for name in names}
    # a folder where a part goes: refused before the file is read (atomic_write_all refuses it too, with
    # no word of --output-dir)
    folders = folder_targets(outputs.values())
    if folders:
        raise ValueError(f"{', '.join(folders)}: is a folder, not a file; remove it or choose another "
                         f"--output-dir (nothing written)")
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing and not args.force:
        raise ValueError(f"{', '.join(existing)}: already there; give --force to overwrite")
    src = Path(args.json)
    if src.is_dir():
        raise ValueError(f"--json {src}: is a folder; give the COCO JSON file to split")
    if src.resolve() in {p.resolve() for p in outputs.values()}:
        raise ValueError(f"--json {src}: is one of the outputs; choose another --output-dir")

    data = read_validated(src, args.images)
    # the kept records in place of the file's; split_coco carries the other top-level keys (info, licenses)
    coco = {**data.raw, "images": data.images, "annotations": data.annotations,
            "categories": _categories_as_read(data.raw.get("categories"))}
    if not coco["images"]:
        raise ValueError(f"{src}: no usable image (see the problems above); nothing written")
    # drawn once: the groups are looked at here, then split
    keys, unmatched = group_keys([img["file_name"] for img in coco["images"]], pattern)
    if pattern is not None:  # a regex whose match is the same everywhere ('^', '(x)?val') makes one group
        groups = len({k for k in keys if k is not None}) + keys.count(None)
        if groups == 1:
            warnings.warn(f"--group-by {args.group_by!r} put all {len(keys)} images in 1 group: every part "
                          f"but one is empty", stacklevel=1)
        elif groups < len(names):
            warnings.warn(f"--group-by {args.group_by!r} made {groups} groups of the {len(keys)} images for "
                          f"{len(names)} parts: at least {len(names) - groups} part(s) are empty",
                          stacklevel=1)
    # which file each record names: merge-data's and show-data's rule where the folder is known
    joined, crowded = [], {}
    if args.images is not None:
        files = [file_key(img["file_name"], args.images) for img in coco["images"]]
        written = files
    else:  # by name: an absolute or '..' name taken for the plain one that is its end, said below
        files, joined, crowded = written_file_matches([img["file_name"] for img in coco["images"]])
        written = [file_key(img["file_name"]) for img in coco["images"]]
    parts = split_by_keys(coco, keys, fractions=fractions, names=names, seed=args.seed, files=files)
    twins: dict = {}  # file -> the ids of its records, where more than one (names alike, or one real path)
    for img, file in zip(coco["images"], written):
        twins.setdefault(file, []).append(img["id"])
    twins = {file: ids for file, ids in twins.items() if len(ids) > 1}
    if twins:  # the loader's note says the file is read once per record; here: where they went
        name, ids = next(iter(twins.items()))
        print(f"{src}: {len(twins)} image file(s) named by more than one image record (e.g. "
              f"{display_name(name)}: image ids {', '.join(map(str, ids))}); the records of each file are "
              "kept in one part")
    if joined:  # a guess from the names: said as one, not as a file known to be the same
        name, end = joined[0]
        print(f"{src}: {len(joined)} absolute or '..' file_name(s) kept in one part with the record whose "
              f"name is their end, taken for one file as the image folder is not known (e.g. "
              f"{display_name(name)} with {display_name(end)}); --images FOLDER compares the files")
    if crowded:  # kept together (a leak is worse than fractions a little off), said as the guess it is
        end, outs = next(iter(crowded.items()))
        count = sum(len(o) + 1 for o in crowded.values())  # the different names and the one they end in
        which = f"at most one of {', '.join(map(display_name, outs[:3]))} is {display_name(end)}"
        kept = "in one part" if len(crowded) == 1 else "each with the name they end in, e.g."
        print(f"{src}: {count} names kept together {kept}: {which}; --images FOLDER tells them apart")
    if unmatched:
        warnings.warn(f"--group-by {args.group_by!r} matched no part of {unmatched} file_name(s): each of "
                      f"those images is a group of its own" + _separator_hint(coco["images"], keys),
                      stacklevel=1)
    table = split_table(parts, {c["id"]: c["name"] for c in data.categories})  # names told apart already
    out_dir.mkdir(parents=True, exist_ok=True)
    # all parts to temporary files, then renamed: a failed write leaves every old part as it was
    atomic_write_all({outputs[name]: json.dumps(part).encode("utf-8") for name, part in parts.items()})
    print(f"{src}: {len(coco['images'])} images, {len(coco['annotations'])} annotations, split "
          + ", ".join(f"{n} {f:g}" for n, f in zip(names, fractions)) + f" (seed {args.seed})")
    # past a screenful the classes without an instance anywhere are one line, not a row and a warning each
    absent = [n for n, row in table.items() if n is not None and not any(row[p][1] for p in names)]
    folded = folded_classes(len(table) - 1, absent)
    _print_table({n: row for n, row in table.items() if n not in folded}, names, sys.stdout)
    if folded:
        warnings.warn(f"{len(absent)} classes have no instance in any part: "
                      + short_listing((shown_name(n) for n in absent), what="more"), stacklevel=1)
    for name, row in table.items():
        empty = [p for p in names if row[p][1] == 0]
        if name is not None and empty and name not in folded:
            total = sum(row[p][1] for p in names)
            warnings.warn(f"class {name!r} has no instance in {', '.join(empty)} ({total} instance(s) in "
                          f"{sum(row[p][0] for p in names)} image(s) in all)", stacklevel=1)
    for name, fraction in zip(names, fractions):
        if not parts[name]["images"]:
            warnings.warn(f"part {name!r} ({outputs[name]}, fraction {fraction:g}) is empty: none of the "
                          f"{len(coco['images'])} image(s) fell in it", stacklevel=1)
    crowd = {p: sum(1 for a in parts[p]["annotations"] if a.get("iscrowd", 0)) for p in names}
    if any(crowd.values()):  # the table's instances leave them out: its totals would not match the files
        print("  crowd regions (iscrowd 1), counted apart from the instances above: "
              + ", ".join(f"{p} {n}" for p, n in crowd.items()))
    print(f"  {skipped_line(data.skipped)}")
    print("wrote " + ", ".join(str(p) for p in outputs.values()))
    return 0
