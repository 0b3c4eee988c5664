"""``maskrcnn convert-data``: Cityscapes, LabelMe, VIA, CVAT, Label Studio, YOLO or Pascal VOC annotations
-> one COCO instance JSON file.

    maskrcnn convert-data --from cityscapes ROOT --output val.json [--split val]
    maskrcnn convert-data --from labelme FOLDER_OR_FILE --output train.json [--classes a,b,c] [--images ROOT]
    maskrcnn convert-data --from via FOLDER_OR_FILE --output train.json [--class-attribute A]   (VIA 1, 2, 3)
                          [--class-name N] [--classes a,b,c] [--images ROOT]
    maskrcnn convert-data --from voc VOC_ROOT --output train.json [--split train] [--classes a,b,c]
                          [--boxes-as-masks] (a tree with boxes only: box-only COCO, or rectangles)
    maskrcnn convert-data --from cvat XML_OR_FOLDER --output train.json [--split Train] [--classes a,b,c]
                          [--images ROOT] (CVAT for images or for video)
    maskrcnn convert-data --from labelstudio EXPORT.json --output train.json [--images ROOT]
                          [--classes a,b,c] [--ls-use-predictions]
    maskrcnn convert-data --from yolo DATA_YAML_OR_FOLDER --output train.json [--split train|val|test]
                          [--classes a,b,c] [--boxes-as-masks]

Every image's ``file_name`` is its path relative to SRC (for a single LabelMe / VIA file: the file's
folder), so ``maskrcnn train --train-images SRC`` finds every image; an image outside SRC is reached
through ``..``. ``--images ROOT`` (labelstudio, cvat, via, labelme: the formats whose files name images
by a relative path) is the folder the names are relative to when the images are not beside the file;
file_name values are then relative to ROOT, and an image not found without it says to pass it. CVAT:
the folder ``predict --export cvat`` recorded in the XML is ROOT by default. Label Studio exports name their
images by URL: they are looked for under ``--images``
(default: the folder ``predict --export labelstudio`` recorded in the tasks, else the export's folder),
and ``file_name`` is relative to that folder. LabelMe images that exist
only inside their JSON file (``imageData``) are written to
``<OUT stem>_images/`` beside OUT.json, never into SRC; when every image came so, ``file_name`` is
relative to OUT.json's folder (``<OUT stem>_images/a.png``), else to SRC like the others.
YOLO: relative to the dataset root (the YAML's ``path``, else its folder).

Categories: Cityscapes' 8 instance classes with its label ids; VOC's 20 classes with their indices (or
``labelmap.txt``'s, or ``--classes`` for indices 1..N; a box-only tree whose XML names are not VOC's:
those names, sorted); YOLO's classes in index order from id 1
(``--classes`` selects some by name; it names the indices when the dataset has no names); otherwise the
labels met (CVAT: and those its ``<meta>`` lists), sorted by name and numbered from 1, or exactly
``--classes`` in the order given (use it when converting splits apart, so that a class missing from one
split does not shift the ids of the others).

An existing OUT.json under a folder the source is read from (the folder SRC; a YOLO YAML's ``path:``
root and split folders) is refused before reading, whatever it holds (a label file, an image, a VOC
val.txt, a Cityscapes polygons JSON, a notes.txt: the COCO file would replace the user's data); one
outside them that is a file the conversion opens (a link or hard link to a label file or an image) is
refused as that file is opened. Nothing is written either way; a new file name under SRC is fine.
This command's own earlier output in the folder (a COCO instances file, told by its content) is
replaced instead (a LabelMe / VIA / Label Studio folder: left out of the reading, with one
line), so that a re-run works (``data/formats/output_guard.py``). OUT's folder is checked for writes
first, naming ``--output``.

Each record that cannot be converted is printed naming its file and record and skipped; the counts
follow at the end. The output is written atomically, and only when at least one image and one instance
were converted (a dataset without instances trains nothing: a failure, never status 0).
See ``maskrcnn/data/formats/`` for what each format's conversion does.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from maskrcnn.listing import short_listing
from maskrcnn.shell import shell_word
from maskrcnn.shown_text import display_name

HELP = "convert annotations of other tools and datasets (see --from) into COCO instance JSON"

FORMATS = ("cityscapes", "labelme", "via", "cvat", "labelstudio", "yolo", "voc")
# formats whose files name images by a path relative to some folder, which --images gives
IMAGES_FORMATS = ("labelstudio", "cvat", "via", "labelme")
IMAGES_HINT = "pass --images ROOT, the folder the image names are relative to"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source_format", required=True, choices=FORMATS,
                        help="the annotation format of SRC")
    parser.add_argument("src", metavar="SRC",
                        help="Cityscapes root; VOC: the folder holding JPEGImages/ and SegmentationObject/ "
                             "(boxes only: Annotations/); "
                             "LabelMe / VIA: a folder (searched recursively for .json "
                             "files) or one JSON file (VIA: or its CSV export); CVAT: its XML export "
                             "(annotations.xml) or the folder holding it; Label Studio: its JSON or JSON-MIN "
                             "export; YOLO: the dataset YAML, a folder holding it, or a folder of images/ "
                             "and labels/")
    parser.add_argument("--output", required=True, metavar="OUT.json", help="the COCO JSON file to write")
    parser.add_argument("--split", default=None,
                        help="cityscapes / yolo: the split to convert (default: train); voc: the names in "
                             "ImageSets/Segmentation/S.txt (default: train, or every SegmentationObject PNG "
                             "when there is no train.txt; a tree with boxes only: ImageSets/Main/S.txt, "
                             "else every Annotations/ XML); cvat: the images of subset S, e.g. Train or "
                             "Validation of a project export (default: all)")
    parser.add_argument("--class-attribute", default=None, metavar="A",
                        help="via: the region attribute holding the class (default: a project's dropdown / "
                             "radio / checkbox attribute, else the first one found unless it looks like free "
                             "text; a line says which)")
    parser.add_argument("--class-name", default=None, metavar="N",
                        help="via: the class of regions without a class attribute (default when no region "
                             "has any attribute: 'object')")
    parser.add_argument("--classes", default=None, metavar="A,B,C",
                        help="labelme / via / cvat / labelstudio / voc: the categories, in id order from 1 "
                             "(voc: the names of the class indices 1..N); other labels are reported and "
                             "skipped (default: the labels found, sorted by name); yolo: classes chosen by "
                             "name, or the names of the indices 0, 1, .. when the dataset has none")
    parser.add_argument("--images", default=None, metavar="ROOT",
                        help="labelstudio / cvat / via / labelme: the folder the file's image names are "
                             "relative to, when the images are not beside it (labelstudio: searched "
                             "recursively; default: the folder predict --export recorded in the tasks, else "
                             "the export's folder; cvat: the folder predict --export "
                             "recorded, else the XML's; via / labelme: looked in first / after the JSON "
                             "file's folder); file_name values are relative to it. yolo / voc / cityscapes: "
                             "the dataset's own layout says where the images are")
    parser.add_argument("--ls-use-predictions", action="store_true", default=None,
                        help="labelstudio: a task without annotations (none, not cancelled ones) is read "
                             "from its latest prediction; by default predictions are read only from a file "
                             "holding no annotation at all (pre-annotations read back), and annotations "
                             "always win")
    parser.add_argument("--boxes-as-masks", action="store_true", default=None,
                        help="yolo: write box-only lines (class cx cy w h) as rectangle masks instead of "
                             "leaving them out; voc (a tree with boxes only): write the boxes as rectangle "
                             "masks instead of box-only annotations (segmentation [])")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _check_options(args) -> None:
    """An option that does not apply to the format is an error, not silently ignored."""
    applies = {"split": ("cityscapes", "voc", "yolo", "cvat"), "class_attribute": ("via",),
               "class_name": ("via",),
               "classes": ("labelme", "via", "cvat", "labelstudio", "voc", "yolo"),
               "images": IMAGES_FORMATS, "boxes_as_masks": ("yolo", "voc"),
               "ls_use_predictions": ("labelstudio",)}
    for option, formats in applies.items():
        if getattr(args, option) is not None and args.source_format not in formats:
            flag = "--" + option.replace("_", "-")
            raise ValueError(f"{flag} applies to --from {' / '.join(formats)}, not {args.source_format}")


def _images_folder(args) -> Path:
    """``--images`` as a folder (None when not given); FileNotFoundError when it is no folder."""
    if args.images is None:
        return None
    images = Path(args.images)
    if not images.is_dir():
        raise FileNotFoundError(f"--images {images}: no such folder")
    return images


def _fixed_categories(spec) -> list:
    if spec is None:
        return None
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"--classes {spec!r}: give distinct, comma-separated class names")
    return [(i + 1, name) for i, name in enumerate(names)]


def _source_json_files(args, src: Path, out: Path, report) -> tuple:
    """(root, the JSON files to read): an --output among them refused, or left out when it is our own
    earlier COCO file (output_guard)."""
    from maskrcnn.data.formats.common import json_files
    from maskrcnn.data.formats.output_guard import drop_earlier_output

    root, files = json_files(src)
    files = drop_earlier_output(files, output=out, src=src, source_format=args.source_format, report=report)
    return root, [report.reading(p) for p in files]


def _cityscapes(args, src: Path, out: Path, report, description: str):
    from maskrcnn.data.formats.cityscapes import CATEGORIES, read_cityscapes
    from maskrcnn.data.formats.common import CocoBuilder

    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder (the Cityscapes root)")
    split = args.split or "train"
    builder = CocoBuilder(root=src, categories=CATEGORIES, description=f"{description} ({split})",
                          guard=report.guard)
    read_cityscapes(src, split=split, builder=builder, report=report)
    return builder


def _voc(args, src: Path, out: Path, report, description: str):
    from maskrcnn.data.formats.common import CocoBuilder
    from maskrcnn.data.formats.voc import read_voc, voc_classes

    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder (the VOC folder holding JPEGImages/)")
    classes = voc_classes(src, [name for _, name in _fixed_categories(args.classes) or []] or None,
                          report=report)
    builder = CocoBuilder(root=src, categories=classes.categories, description=description,
                          guard=report.guard)
    read_voc(src, split=args.split, classes=classes, builder=builder, report=report,
             boxes_as_masks=bool(args.boxes_as_masks))
    return builder


def _cvat(args, src: Path, out: Path, report, description: str):
    from maskrcnn.data.formats.common import CocoBuilder, recorded_folder_unusable
    from maskrcnn.data.formats.cvat import cvat_file, read_cvat, recorded_images_folder
    from maskrcnn.data.formats.output_guard import refusal, same_files

    xml_path = cvat_file(src)
    if same_files(out, [xml_path]):  # read, then replaced by the COCO file: the user's export gone
        raise ValueError(refusal(out, xml_path, src=src, source_format="cvat"))
    report.reading(xml_path)
    root = _images_folder(args) or xml_path.parent
    recorded, why = recorded_images_folder(xml_path) if args.images is None else (None, None)
    if recorded is not None:
        root = recorded
        report.tell(xml_path.name, f"images looked for under {recorded} (the folder predict recorded in it)")
    elif why is not None:
        report.tell(xml_path.name, recorded_folder_unusable("its recorded images folder", why))
    builder = CocoBuilder(root=root, categories=_fixed_categories(args.classes), description=description,
                          guard=report.guard)
    read_cvat(xml_path, builder=builder, report=report, split=args.split)
    return builder


def _yolo(args, src: Path, out: Path, report, description: str):
    from maskrcnn.data.formats.yolo import convert_yolo

    classes = _fixed_categories(args.classes)
    return convert_yolo(src, split=args.split, classes=classes and [name for _, name in classes],
                        boxes_as_masks=bool(args.boxes_as_masks), report=report, description=description)


def _labelstudio(args, src: Path, out: Path, report, description: str):
    from maskrcnn.data.formats.common import CocoBuilder
    from maskrcnn.data.formats.labelstudio import read_labelstudio

    root, files = _source_json_files(args, src, out, report)
    images = _images_folder(args) or root
    builder = CocoBuilder(root=images, categories=_fixed_categories(args.classes), description=description,
                          guard=report.guard)
    used = read_labelstudio(files, builder=builder, report=report, images=images, names_from=root,
                            use_predictions=bool(args.ls_use_predictions), recorded=args.images is None)
    folders = set(used.values())
    if len(folders) == 1 and None not in folders:  # every file's images in the folder predict recorded
        builder.rebase(folders.pop())  # file_name relative to it, as to --images that folder
    return builder


def _labelme(args, src: Path, out: Path, report, description: str):
    from maskrcnn.data.formats.common import CocoBuilder
    from maskrcnn.data.formats.labelme import read_labelme

    root, files = _source_json_files(args, src, out, report)
    images = _images_folder(args)
    builder = CocoBuilder(root=images or root, categories=_fixed_categories(args.classes),
                          description=description, guard=report.guard)
    embedded = out.parent / f"{out.stem}_images"
    read_labelme(files, builder=builder, report=report, embedded_dir=embedded, json_root=root, images=images)
    inside = f"{builder.relative(embedded)}/"
    if builder.images and images is None and all(i["file_name"].startswith(inside) for i in builder.images):
        builder.rebase(out.parent)  # every image came from imageData: "lm_images/a.png", not "../out/..."
    return builder


def _via(args, src: Path, out: Path, report, description: str):
    from maskrcnn.data.formats.common import CocoBuilder
    from maskrcnn.data.formats.via import read_via

    root, files = _source_json_files(args, src, out, report)
    images = _images_folder(args)
    builder = CocoBuilder(root=images or root, categories=_fixed_categories(args.classes),
                          description=description, guard=report.guard)
    read_via(files, builder=builder, report=report, class_attribute=args.class_attribute,
             class_name=args.class_name, images=images)
    return builder


# --from NAME -> the function filling a CocoBuilder from SRC (each imports its reader on use)
_CONVERTERS = {"cityscapes": _cityscapes, "labelme": _labelme, "via": _via, "cvat": _cvat,
               "labelstudio": _labelstudio, "yolo": _yolo, "voc": _voc}


def _convert(args, out: Path, report):
    description = f"converted from {args.source_format} by maskrcnn convert-data"
    return _CONVERTERS[args.source_format](args, Path(args.src), out, report, description)


def run(args) -> int:
    from maskrcnn.data.formats.common import Report, warn_label_case, write_json
    from maskrcnn.data.formats.left_out import left_out_line
    from maskrcnn.data.formats.output_guard import FileGuard, OutputIsSource, check_under_roots
    from maskrcnn.io_utils import check_output_dir, check_output_file

    _check_options(args)
    out = check_output_file(args.output, "--output")
    # its folder takes new files: said now naming --output, not after the conversion (nor as the
    # embedded-images folder beside it)
    check_output_dir(out.parent, f"--output {args.output}: its folder")
    # an image not found where the file's names point: the images may be elsewhere, which --images says
    hint = args.images is None and args.source_format in IMAGES_FORMATS
    # an existing --output under the folders the source is read from: the user's data, refused before
    # reading; one outside them that is a file read (a link): refused as that file is opened
    check_under_roots(out, src=Path(args.src), source_format=args.source_format)
    guard = FileGuard(output=out, src=Path(args.src), source_format=args.source_format)
    report = Report(stream=sys.stderr, hints={"missing_image": IMAGES_HINT} if hint else None, guard=guard)
    try:
        builder = _convert(args, out, report)
    except OutputIsSource as e:  # said as the command's other refusals are
        raise ValueError(str(e)) from None
    warn_label_case(builder, report, str(args.src))  # "Cat" beside "cat": one warning naming them
    print(report.summary(), file=sys.stderr)
    if not builder.images:
        why = "see the problems above" if report.messages else f"no {args.source_format} annotations there"
        if hint and report.skipped.get("missing_image"):
            why += f"; {IMAGES_HINT}"
        raise ValueError(f"{args.src}: no image could be converted ({why}); nothing written")
    coco = builder.to_dict()
    if not coco["annotations"]:
        # no object (every one skipped: an unknown class, a wrong --classes; or none drawn): a dataset
        # without instances trains and scores nothing, so it is a failure, never a file written with status 0
        # what the file held that is not imported (a keypoint-only file) is said, not "no object"
        found = ["see the problems above" if report.skipped else None, left_out_line(report)]
        why = "; ".join(x for x in found if x) or "the annotations hold no object"
        raise ValueError(f"{args.src}: {len(coco['images'])} image(s) but no instance could be converted "
                         f"({why}); nothing written")
    write_json(out, coco)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    per_class = Counter(names[a["category_id"]] for a in coco["annotations"] if not a["iscrowd"])
    crowd = sum(a["iscrowd"] for a in coco["annotations"])
    # names as show-data prints them: a newline or tab in a class name escaped, not breaking the line
    listing = short_listing((f"{display_name(name)} {per_class[name]}" for name in names.values()),
                            what="more classes")
    print(f"{len(coco['images'])} images, {sum(per_class.values())} instances ({listing}), {crowd} crowd "
          f"regions -> {out}")
    print(f"file_name values are relative to {builder.root}: "
          f"{images_flag_hint(args.split, shell_word(builder.root))}")  # quoted: pasted into a shell as it is
    return 0


def images_flag_hint(split, root: str) -> str:
    """Which flag takes ``root`` for the converted split: ``--train-images`` for a training split (or none
    given), else ``--val-images`` (train) or ``--images`` (eval): a val.json is not trained on."""
    if split is None or str(split).strip().lower().startswith("train"):
        return f"use --train-images {root}"
    return f"use --val-images {root} (train) or --images {root} (eval)"
