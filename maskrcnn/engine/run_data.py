"""The data a training run trains on, remembered in its folder: ``RUN_DIR/run.json``.

``maskrcnn train`` writes it once the run is assembled (rank 0, atomically), so that ``--resume`` needs
only ``--output``: the data arguments are not part of the config (``config.yaml`` travels inside every
checkpoint, and a machine's paths have no place in a model shared with others), so they get a file of
their own. Its content::

    {"data": {"train_json":   {"given": "train.json", "path": "/abs/train.json"},
              "train_images": {"given": null,         "path": "/abs/images"},
              "val_json": ..., "val_images": ...}}

``given`` is the argument as typed (None when left out: ``path`` is then the folder found for it),
``path`` the same resolved to an absolute path (what a resume from another working folder uses). The
validation pair is absent for a run without one.

A resume that took a path from the record writes it back with the ``given`` it was recorded with.
``resume_data_arguments`` fills the arguments a ``--resume`` left out from the record (one line says
so), warns when one given differs from the run's (training on other data breaks an exact resume) and
refuses, in one line naming them, recorded paths that are gone. Pure apart from reading ``run.json``;
nothing here touches the process state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from maskrcnn.engine.caller_words import option_word, written

__all__ = ["RUN_DATA", "DATA_ARGUMENTS", "read_run_data", "record_run_data", "resume_data_arguments"]

RUN_DATA = "run.json"
# argument name -> its flag, in the order the lines name them
DATA_ARGUMENTS = {"train_json": "--train-json", "train_images": "--train-images", "val_json": "--val-json",
                  "val_images": "--val-images"}
_IMAGES_OF = {"train_images": "train_json", "val_images": "val_json"}


def _absolute(path) -> str:
    return os.path.abspath(os.path.expanduser(str(path)))


def _same_path(given, recorded: str) -> bool:
    """Whether ``given`` names the file or folder ``recorded`` (an absolute path): the same file through
    a symlink or another spelling (``data/../data``, a mount seen twice) is the run's data, not other
    data; paths that are not both there compare as absolute strings."""
    path = _absolute(given)
    if path == recorded:
        return True
    try:
        return os.path.samefile(path, recorded)
    except OSError:  # one of them is not there
        return False


def record_run_data(output, *, given: dict, resolved: dict) -> dict:
    """Write ``output/run.json`` from ``given`` (the arguments as typed, None when left out) and
    ``resolved`` (the paths trained on, images folders found included); returns what was written."""
    from maskrcnn.io_utils import atomic_write_json

    before = read_run_data(output)  # a resume that took a path from the record keeps its "given"
    data = {}
    for name in DATA_ARGUMENTS:
        if resolved.get(name) is None:
            continue
        path, typed = _absolute(resolved[name]), given.get(name)
        if typed is None and before.get(name, {}).get("path") == path:
            typed = before[name].get("given")
        data[name] = {"given": None if typed is None else str(typed), "path": path}
    record = {"data": data}
    Path(output).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(output) / RUN_DATA, record, indent=2, unless_same=True)  # unchanged: not touched
    return record


def read_run_data(output, *, caller: str = "maskrcnn train") -> dict:
    """{argument name: {"given", "path"}} from ``output/run.json``; {} when there is none (a run written
    before it existed). A file that is not such a record is one error naming it (the ways out in
    ``caller``'s words: ``caller_words``)."""
    path = Path(output) / RUN_DATA
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8")).get("data")
        if not isinstance(data, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("path"), str) for v in data.values()):
            raise ValueError("not a {\"data\": {name: {\"given\", \"path\"}}} record")
    except (ValueError, AttributeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: unreadable record of the run's data ({e}); give the data arguments "
                         f"({option_word(caller, '--train-json')} ...) with {option_word(caller, '--resume')}"
                         ) from None
    return {k: v for k, v in data.items() if k in DATA_ARGUMENTS}


def resume_data_arguments(output, given: dict, say: Callable[[str], None], *,
                          caller: str = "maskrcnn train") -> dict:
    """The data arguments a resume of ``output`` trains on: those ``given`` (None: left out) and, for
    the ones left out, the run's recorded paths. Says "data from the run: ..." for those taken, warns
    when one given differs from the run's, and raises ValueError naming recorded paths that are gone.
    An images folder is taken from the record only when its JSON is the run's too (another JSON's
    images are found for it as on a new run). ``caller``: whose words the lines use ("maskrcnn.train()":
    its keywords, ``train_json=``, not the command's ``--train-json``; ``caller_words``)."""
    recorded = read_run_data(output, caller=caller)
    flag = {name: option_word(caller, option) for name, option in DATA_ARGUMENTS.items()}
    resume = option_word(caller, "--resume")
    if not recorded:
        return dict(given)
    out, taken = dict(given), []
    for name in DATA_ARGUMENTS:
        if given.get(name) is not None or name not in recorded:
            continue
        json_name = _IMAGES_OF.get(name)
        if json_name and given.get(json_name) is not None and (
                json_name not in recorded or not _same_path(given[json_name], recorded[json_name]["path"])):
            continue  # other data than the run's: its images are not the run's either
        out[name] = recorded[name]["path"]
        taken.append(name)
    gone = [f"{recorded[n]['path']} ({flag[n]})" for n in taken if not os.path.exists(out[n])]
    if gone:
        raise ValueError(f"{resume}: the run's data ({Path(output) / RUN_DATA}) is not there any more: "
                         f"{', '.join(gone)}; give its new place with {flag[taken[0]]} ...")
    if taken:
        say(f"data from the run ({Path(output) / RUN_DATA}): "
            + " ".join(written(flag[n], out[n]) for n in taken))
    differing = [f"{written(flag[n], given[n])} (the run's: {recorded[n]['path']})" for n in DATA_ARGUMENTS
                 if given.get(n) is not None and n in recorded
                 and not _same_path(given[n], recorded[n]["path"])]
    if differing:
        say(f"warning: {resume} on other data than the run's: {', '.join(differing)}; the resume is exact "
            "only on the run's data (other training data: the batches from now on differ from an "
            "uninterrupted run's; another validation set: its AP is not comparable with the best so far)")
    return out
