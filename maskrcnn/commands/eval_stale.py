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
run's (``foreign_predictions``: the user's, another tool's, copied there; metrics.json records the size
and hash of the predictions.json each run wrote or scored, so a copied folder is still eval's) into
``stale/N/``, said in one line, where it replaced it without a word; refused before the inference when
it could not be moved (``stale_problem``)."""

from __future__ import annotations

import hashlib
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
# in metrics.json: {"size", "sha256"} of the predictions.json beside it that this run wrote or scored
PREDICTIONS_KEY = "predictions_file"
MTIME_SLACK = 2.0  # seconds: an older metrics.json (no PREDICTIONS_KEY) copied with its folder


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


def predictions_record(path) -> Optional[dict]:
    """{"size", "sha256"} of the file ``path`` (what metrics.json records of the predictions.json beside it,
    ``PREDICTIONS_KEY``), or None when it cannot be read. Its content, not its time: a copy of the folder
    (cp -r, unzip, rsync without -t) writes the two files in any order, a second apart or not."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return {"size": Path(path).stat().st_size, "sha256": digest.hexdigest()}


def foreign_predictions(output) -> bool:
    """Before this run writes: whether ``output/predictions.json`` is there and is not one an earlier
    eval wrote (--weights) or scored (--results of that very file) beside its metrics.json, which records
    its size and hash (``PREDICTIONS_KEY``). Its own is replaced by a new run, as its metrics.json is; any
    other (the user's, another tool's, one copied in after, one changed since) is not eval's to replace.
    The metrics.json of an older eval records neither: its --weights run's file is taken for its own
    unless newer than it by more than ``MTIME_SLACK`` (a copy of the folder writes the two in any order)."""
    out = Path(output)
    predictions = out / "predictions.json"
    if not predictions.is_file():
        return False
    try:
        earlier = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        gap = predictions.stat().st_mtime - (out / "metrics.json").stat().st_mtime
    except (OSError, ValueError):
        return True
    if not (isinstance(earlier, dict) and isinstance(earlier.get("json"), str)
            and ("weights" in earlier or isinstance(earlier.get("results"), list))):
        return True  # another tool's metrics.json
    recorded = earlier.get(PREDICTIONS_KEY)
    if isinstance(recorded, dict):
        if recorded.get("size") != predictions.stat().st_size:  # (no hash of a file that cannot be it)
            return True
        return recorded != predictions_record(predictions)
    if "weights" not in earlier:
        return True  # an older --results run's: it recorded nothing of the file
    named = earlier.get("predictions")  # (absent from the metrics.json of an older eval)
    return gap > MTIME_SLACK or (named is not None and Path(str(named)).name != "predictions.json")


def stale_problem(output) -> Optional[str]:
    """Why a predictions.json could not be moved into ``output/stale/N/`` (``stale`` there and no folder,
    or a folder not writable), or None. Asked before the inference: the move comes after it."""
    stale = Path(output) / STALE_DIR
    if stale.is_symlink() or (stale.exists() and not stale.is_dir()):
        return f"{stale} is not a folder"
    where = stale if stale.is_dir() else Path(output)
    if not os.access(where, os.W_OK | os.X_OK):
        return f"{where} is not writable"
    return None


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
