"""The test-time augmentation options shared by ``predict`` and ``eval`` (``engine/tta.py`` does the work):

    --tta [--tta-sizes 400,600,800,1000] [--tta-max-size PX] [--tta-no-flip]

``--tta`` runs each image at several scales (detectron2's 400, 500, ..., 1200 by default, long side at
most 4000) and their mirror images, merges the boxes by NMS and averages the masks (and keypoint
heatmaps): better boxes and masks for about twice as many forwards as augmentations.
"""

from __future__ import annotations

import argparse

from maskrcnn.commands.flag_options import options_from_flags, refuse_without


def add_tta_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("test-time augmentation")
    group.add_argument("--tta", action="store_true",
                       help="run each image at several scales and mirrored, merge boxes (NMS), average masks "
                            "and keypoint heatmaps")
    group.add_argument("--tta-sizes", default=None, metavar="S1,S2,...",
                       help="short sides of the scales, comma-separated (default 400,500,...,1200)")
    group.add_argument("--tta-max-size", type=int, default=None, metavar="PX",
                       help="long side limit at every scale (default 4000)")
    group.add_argument("--tta-no-flip", action="store_true", help="scales only, no mirrored versions")


def tta_from_args(args: argparse.Namespace):
    """``TTAOptions`` from the command line, or None without ``--tta``; a bad value is one line naming
    the option."""
    from maskrcnn.engine.tta import TTAOptions

    if not args.tta:
        refuse_without("--tta", (("--tta-sizes", args.tta_sizes is not None),
                                 ("--tta-max-size", args.tta_max_size is not None),
                                 ("--tta-no-flip", args.tta_no_flip)))
        return None
    flags = []
    if args.tta_sizes is not None:
        items = args.tta_sizes.split(",")
        if len(items) > 1 and any(not s.strip() for s in items):  # "128," is a typo, not one size
            raise ValueError(f"--tta-sizes: an empty item in {args.tta_sizes!r}: give comma-separated "
                             "integers, e.g. 400,600,800")
        try:
            sizes = tuple(int(s) for s in items if s.strip())
        except ValueError:
            raise ValueError(f"--tta-sizes: expected comma-separated integers, got {args.tta_sizes!r}"
                             ) from None
        flags.append(("--tta-sizes", "min_sizes", sizes))
    if args.tta_max_size is not None:
        flags.append(("--tta-max-size", "max_size", args.tta_max_size))
    return options_from_flags(TTAOptions, flags, flip=not args.tta_no_flip)
