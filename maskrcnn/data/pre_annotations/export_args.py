"""``predict --export``'s options and their checks, apart from the writers so that ``maskrcnn predict
--help`` and the argument checks run without importing torch (the writers decode masks with it)."""

from __future__ import annotations

import argparse
from typing import Optional

__all__ = ["DEFAULT_TOLERANCE", "EXPORT_FORMATS", "PIXEL_FORMATS", "add_export_arguments",
           "check_export_arguments", "parse_export_formats"]

DEFAULT_TOLERANCE = 0.5  # pixels a traced polygon may stray from the mask's outline (LabelMe, YOLO)
EXPORT_FORMATS = ("coco", "labelme", "cvat", "labelstudio", "yolo", "masks", "cutouts")
PIXEL_FORMATS = ("masks", "cutouts")  # written image by image (MaskFiles), the others at the end


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--export", default=None, metavar="FORMATS",
        help="also write the predictions as pre-annotations to correct in an annotation tool, as mask "
             f"images (masks) or cut-outs (cutouts): a comma list of {', '.join(EXPORT_FORMATS)} (files "
             "beside predictions.json)",
    )  # fmt: skip
    parser.add_argument(
        "--export-url-prefix", default="", metavar="PREFIX",
        help="labelstudio: put PREFIX before each task's image path, e.g. /data/local-files/?d= "
             "(default: the path relative to the images folder)",
    )  # fmt: skip
    parser.add_argument(
        "--export-tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="PX",
        help=f"labelme, yolo: how far (pixels) a polygon may stray from the mask's outline (default "
             f"{DEFAULT_TOLERANCE}; 0 keeps every corner)",
    )  # fmt: skip
    parser.add_argument(
        "--export-min-area", type=int, default=0, metavar="PX",
        help="cutouts only (mask images and other formats keep every instance): leave out the cut-outs "
             "of masks with fewer pixels than PX; the count left out is printed (default 0: none)",
    )  # fmt: skip


def parse_export_formats(spec: Optional[str]) -> tuple:
    """``--export`` ("coco,labelme") -> the formats in the order given, without repeats; ValueError
    naming the option for an unknown one."""
    if spec is None:
        return ()
    names = [n.strip().lower() for n in spec.split(",")]
    unknown = [n for n in names if n not in EXPORT_FORMATS]
    if unknown:
        raise ValueError(f"--export {spec!r}: {', '.join(repr(n) for n in unknown)} is not a format; "
                         f"choose from {', '.join(EXPORT_FORMATS)}")
    return tuple(dict.fromkeys(names))


def check_export_arguments(args: argparse.Namespace) -> tuple:
    """The formats of ``--export``, its options checked (before the model is loaded)."""
    formats = parse_export_formats(args.export)
    if not (0.0 <= args.export_tolerance < float("inf")):  # NaN fails too
        raise ValueError(f"--export-tolerance must be a finite number >= 0, got {args.export_tolerance}")
    if args.export_min_area < 0:
        raise ValueError(f"--export-min-area must be a number of pixels >= 0, got {args.export_min_area}")
    return formats
