"""``maskrcnn eval --output DIR``: the files an earlier evaluation wrote into DIR that this one did not
rewrite (its error analysis, confusion matrices, drawn images, Cityscapes predictions) are moved into
``DIR/stale/``: left beside the new metrics.json they read as this run's. Only the names eval itself
writes are touched (never a user's file), and ``predictions.json`` is never moved (with --results it may
be all that is left of a long inference: ``eval._other_predictions`` names it instead)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, List

# what eval writes into --output besides metrics.json and predictions.json (engine/analysis_report.py,
# engine/cityscapes_eval.py)
EVAL_ARTEFACTS = ("analysis.json", "confusion.csv", "confusion.png", "confusion_segm.csv",
                  "confusion_segm.png", "analysis_images", "cityscapes_predictions")
STALE_DIR = "stale"


def set_aside_stale(output, written: Iterable[str]) -> List[str]:
    """Move the eval artefacts in ``output`` whose names are not in ``written`` (this run's) into
    ``output/stale/`` (replacing what an earlier run set aside there under the same name); returns their
    names. A file that cannot be moved is left where it is (the note says only the moved ones)."""
    out = Path(output)
    kept = set(written)
    moved = []
    for name in EVAL_ARTEFACTS:
        path = out / name
        if name in kept or not (path.is_file() or path.is_dir()) or path.is_symlink():
            continue
        target = out / STALE_DIR / name
        try:
            target.parent.mkdir(exist_ok=True)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)  # an earlier run's, set aside here before
            os.replace(path, target)
        except OSError:
            continue
        moved.append(name)
    return moved


def stale_note(output, moved: List[str]) -> str:
    """The line that says what ``set_aside_stale`` moved."""
    return (f"note: {', '.join(moved)} in {output} came from an earlier evaluation (this one did not write "
            f"them): moved to {Path(output) / STALE_DIR}")
