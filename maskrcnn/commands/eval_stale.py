"""``maskrcnn eval --output DIR``: the files an earlier evaluation wrote into DIR that this one did not
rewrite (its error analysis, confusion matrices, drawn images, Cityscapes predictions) are moved into a
new folder ``DIR/stale/N/``: left beside the new metrics.json they read as this run's.

Only what an earlier evaluation demonstrably wrote is moved: the names its metrics.json lists under
``"artefacts"`` (each run records what it wrote there), or, for a metrics.json of an older version that
lists none, eval's own names beside a metrics.json that eval wrote (it names its ``"json"`` and its
``"weights"`` or ``"results"``). No metrics.json, or one eval did not write: nothing is moved, whatever
the names. Nothing is ever deleted or replaced: each run that moves anything gets its own numbered folder
under ``stale/`` (a ``stale`` that is not a folder: nothing is moved). ``predictions.json`` is never
moved by --results (it may be all that is left of a long inference: ``eval._other_predictions`` names
it instead); --weights, which writes its own, first moves one there that is not an earlier --weights
run's (``foreign_predictions``: the user's, another tool's, copied there) into ``stale/N/``, said in one
line, where it replaced it without a word."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

# what eval writes into --output besides metrics.json and predictions.json (engine/analysis_report.py,
# engine/cityscapes_eval.py)
EVAL_ARTEFACTS = ("analysis.json", "confusion.csv", "confusion.png", "confusion_segm.csv",
                  "confusion_segm.png", "analysis_images", "cityscapes_predictions")
STALE_DIR = "stale"
ARTEFACTS_KEY = "artefacts"  # in metrics.json: the names this run wrote into --output besides it


def earlier_artefacts(output) -> Optional[Tuple[List[str], bool]]:
    """Before this run writes its metrics.json: (the artefact names the earlier evaluation in ``output``
    may have written, whether its metrics.json lists them), or None when ``output`` holds no metrics.json
    that eval wrote (then nothing is moved)."""
    try:
        earlier = json.loads((Path(output) / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(earlier, dict) and isinstance(earlier.get("json"), str)
            and ("weights" in earlier or isinstance(earlier.get("results"), list))):
        return None  # another tool's metrics.json (a training run's, the user's): not eval's
    listed = earlier.get(ARTEFACTS_KEY)
    if isinstance(listed, list):
        return [n for n in EVAL_ARTEFACTS if n in listed], True
    return list(EVAL_ARTEFACTS), False  # written before eval listed its artefacts


def _new_stale_folder(out: Path) -> Optional[Path]:
    """A folder ``out/stale/N`` made here, N the first number free; None when ``stale`` is no folder."""
    stale = out / STALE_DIR
    try:
        stale.mkdir(exist_ok=True)
    except OSError:
        return None
    if stale.is_symlink() or not stale.is_dir():
        return None
    for n in range(1, 10_000):
        folder = stale / str(n)
        try:
            folder.mkdir()  # exclusive: never one a user or an earlier run already has
        except FileExistsError:
            continue
        except OSError:
            return None
        return folder
    return None


def foreign_predictions(output) -> bool:
    """Before this run writes: whether ``output/predictions.json`` is there and is not what an earlier
    ``eval --weights`` wrote beside its metrics.json (that one writes predictions.json first and
    metrics.json last, and names the first as its "weights" run's). Its own is replaced by a new run, as its
    metrics.json is; any other (a --results run's folder, another tool's file, one copied in after) is
    not eval's to replace."""
    out = Path(output)
    predictions = out / "predictions.json"
    if not predictions.is_file():
        return False
    try:
        earlier = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        newer = predictions.stat().st_mtime > (out / "metrics.json").stat().st_mtime
    except (OSError, ValueError):
        return True
    if not isinstance(earlier, dict) or "weights" not in earlier or not isinstance(earlier.get("json"), str):
        return True
    named = earlier.get("predictions")  # (absent from the metrics.json of an older eval)
    return newer or (named is not None and Path(str(named)).name != "predictions.json")


def set_aside_predictions(output) -> Optional[Path]:
    """Move ``output/predictions.json`` into a new ``output/stale/N/`` (``foreign_predictions``: not an
    earlier --weights run's); that folder, or None when it could not be moved."""
    folder = _new_stale_folder(Path(output))
    if folder is None:
        return None
    try:
        os.replace(Path(output) / "predictions.json", folder / "predictions.json")
    except OSError:
        folder.rmdir()
        return None
    return folder


def set_aside_stale(output, written: Iterable[str], earlier: Optional[Tuple[List[str], bool]], *,
                    folder: Optional[Path] = None) -> Tuple[List[str], Optional[Path]]:
    """Move the names of ``earlier`` (``earlier_artefacts``, read before this run wrote) that are in
    ``output`` and not in ``written`` (this run's) into a new ``output/stale/N/`` (``folder``: the one this
    run already made, for its predictions.json); returns their names and that folder. A file that cannot
    be moved is left where it is (the note says only the moved ones)."""
    if not earlier:
        return [], None
    out = Path(output)
    kept = set(written)
    names = [n for n in earlier[0] if n not in kept and (out / n).exists() and not (out / n).is_symlink()]
    if not names:
        return [], None
    made = folder is None
    folder = _new_stale_folder(out) if made else folder
    if folder is None:
        return [], None
    moved = []
    for name in names:
        target = folder / name
        if target.exists():  # the folder is new: never, unless another process writes into it
            continue
        try:
            os.replace(out / name, target)
        except OSError:
            continue
        moved.append(name)
    if not moved:
        if made:
            folder.rmdir()  # made here, empty
        return [], None
    return moved, folder


def stale_note(output, moved: List[str], folder: Path, listed: bool) -> str:
    """The line that says what ``set_aside_stale`` moved, and why."""
    why = ("the earlier evaluation's metrics.json there lists them as written by it" if listed else
           "they are names eval writes, beside the metrics.json of an earlier evaluation")
    return (f"note: {', '.join(moved)} in {output}: {why}, and this evaluation did not rewrite them: "
            f"moved to {folder}")
