"""The tiled-prediction options shared by ``predict`` and ``eval`` (``engine/tiling.py`` does the work):

    --tile SIZE [--tile-overlap F] [--no-full-image] [--tile-scale S] [--tile-max-tiles N]

``--tile 1024`` cuts images larger than 1024 pixels into overlapping 1024 x 1024 tiles, runs each at the
model's usual resize (or ``--tile-scale`` times its size) plus the whole image, and merges the
detections: small objects in large images (aerial photos, slides, 48 MP photos) are found.
"""

from __future__ import annotations

import argparse
import sys

from maskrcnn.commands.flag_options import options_from_flags, refuse_without


def add_tile_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tiled prediction (large images, small objects)")
    group.add_argument(
        "--tile", type=int, default=None, metavar="SIZE",
        help="cut images larger than SIZE pixels into overlapping SIZE x SIZE tiles, each run at the usual "
        "resize, plus the whole image; detections merged (cut pieces joined, duplicates dropped)",
    )  # fmt: skip
    group.add_argument("--tile-overlap", type=float, default=None, metavar="F",
                       help="fraction of a tile shared with its neighbour, > 0 (default 0.2): objects cut "
                       "by a tile edge are joined from what both tiles saw, so 0 is refused and a strip "
                       "under 32 pixels is warned of")
    group.add_argument("--no-full-image", action="store_true",
                       help="tiles only: do not also run the whole image (for its large objects)")
    group.add_argument("--tile-scale", type=float, default=None, metavar="S",
                       help="run each tile at S times its size (1: the image's own pixels) instead of the "
                       "usual resize")
    group.add_argument("--tile-max-tiles", type=int, default=None, metavar="N",
                       help="refuse an image needing more than N tiles (default 10000; each is a forward)")


def tile_from_args(args: argparse.Namespace, *, warn: bool = True):
    """``TileOptions`` from the command line, or None without ``--tile``; a bad value is one line naming
    the option. ``warn=False``: the caller says ``warn_tile_options`` itself, after its own refusals (a
    warning about the tiles of a run then refused is noise before the line that matters)."""
    from maskrcnn.engine.tiling import TileOptions

    if args.tile is None:
        refuse_without("--tile SIZE", (("--tile-overlap", args.tile_overlap is not None),
                                       ("--no-full-image", args.no_full_image),
                                       ("--tile-scale", args.tile_scale is not None),
                                       ("--tile-max-tiles", args.tile_max_tiles is not None)))
        return None
    given = (("--tile", "size", args.tile), ("--tile-overlap", "overlap", args.tile_overlap),
             ("--tile-scale", "scale", args.tile_scale),
             ("--tile-max-tiles", "max_tiles", args.tile_max_tiles))
    options = options_from_flags(TileOptions, [g for g in given if g[2] is not None],
                                 full_image=not args.no_full_image)
    if getattr(args, "tta", False):  # refused here, before any warning about the tiles: the run is off
        raise ValueError("--tile and --tta do not combine: use one of them (test-time augmentation, or "
                         "tiles for small objects in large images)")
    if warn:
        warn_tile_options(options)
    return options


def warn_tile_options(options) -> None:
    """The warning about ``TileOptions`` (from ``tile_from_args``) accepted but risky, on stderr; nothing
    for None."""
    from maskrcnn.engine.tiling import overlap_note

    note = overlap_note(options) if options is not None else None  # the default 0.2 of a small tile too
    if note is not None:  # accepted (objects narrower than the strip still join), but said once
        print(f"warning: --tile-overlap: {note}", file=sys.stderr)
