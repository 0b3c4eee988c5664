"""Text shared by the reports of the dataset commands (``split-data``, ``merge-data``, ``show-data``), so
that they print skipped records and class names alike, and the image folder train, eval and show-data
chose when it was left out. Not a command: no ``HELP``, no ``run``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

# A class name for a table row: as pictures show it (shown_text: control characters escaped and quoted, an
# empty name '', at most 40 columns): a newline broke the row, a 300-character name widened every row.
from maskrcnn.shown_text import short_name as shown_name

__all__ = ["CLASS_ROWS", "IMAGE_DIR_ORDER", "folded_classes", "image_dir_or_default", "shown_name",
           "skipped_line"]

# a class table of more rows than this (a screenful) sums its classes without an instance up in one line:
# a file of 1000 classes and a few images printed 996 rows of zeros that hid the few that have objects
CLASS_ROWS = 40


def folded_classes(rows: int, empty) -> set:
    """The classes of ``empty`` (those without an instance) left out of a table of ``rows`` classes, to
    be said in one line: all of them past ``CLASS_ROWS`` rows, none up to it."""
    return set(empty) if rows > CLASS_ROWS else set()

# What --train-images / --images default to, in ``data/coco.image_dir_candidates``'s order, for --help
IMAGE_DIR_ORDER = ("the JSON's folder when it holds images (Roboflow's), a folder named after the JSON "
                   "(train/ beside train.json; val2017/ beside or above instances_val2017.json), its images/ "
                   "or data/, ../images; of several that exist, the one holding most of a sample of its "
                   "file_names; when none exists, the JSON's folder")


def skipped_line(skipped: dict) -> str:
    """{reason: count} -> 'skipped: 1 bad_bbox, 2 missing_image_file' (reasons sorted), or 'skipped: none'."""
    from maskrcnn.data.images import reason_counts  # torch: only when a report is printed, not for --help

    return "skipped: " + (reason_counts(skipped) or "none")


def image_dir_or_default(given: Optional[Union[str, os.PathLike]], json_path: Union[str, os.PathLike],
                         flag: str, also: Optional[tuple] = None, parsed: Optional[dict] = None) -> str:
    """The image folder a command was given, or else ``choose_image_dir(json_path)``, printing which
    folder was chosen and why (``flag``: the command's option left out, e.g. ``--images``), so that a
    wrong guess is seen before training or evaluating on it. train, eval and show-data use it. ``also``:
    (folder, its flag), one more candidate weighed after the layout's (train: --val-images defaults to the
    --train-images folder when the validation JSON's layout does not hold its images). ``parsed``:
    {JSON path: the parsed file}, the caller's: the JSON is read at most once between the folder's choice
    and the caller's loader (``choose_image_dir``)."""
    if given:
        return str(given)
    from maskrcnn.data.coco import choose_image_dir  # torch: only when the folder is guessed

    folder, why = choose_image_dir(json_path, also=(also[0],) if also else (), parsed=parsed)
    if not Path(json_path).is_file():  # the loader's "no such annotation file" is then the one line
        return str(folder)
    if also and Path(folder).resolve() == Path(also[0]).resolve():
        why = f"as {also[1]}" + (f"; {why}" if why else "")
    from maskrcnn.engine.distributed import say_on_launch_rank0  # under torchrun: once, not per process

    say_on_launch_rank0(f"{flag} not given: images of {json_path} read from {folder}"
                        + (f" ({why})" if why else ""))
    return str(folder)
