"""``maskrcnn.train(...)``: ``maskrcnn train`` from Python (a notebook, a script), through the command's
own parser and code path (``commands/train.py``), so the two cannot drift apart::

    import maskrcnn
    final = maskrcnn.train(train_json="data/train.json", output="runs/mine",
                           init="maskrcnn_resnet50_fpn_coco", config="r50_fpn",
                           set={"solver.iters": 300, "solver.batch_size": 2})
    predictor = maskrcnn.Predictor.from_weights(final)

The keywords are the command's options (``train_json`` is ``--train-json``; ``set`` a dict of dotted
config keys, each value written as ``--set key=value``: a string or a path as it is, anything else as
JSON, so ``[10]``, ``true``, ``0.001``). Returns the path of ``RUN_DIR/model_final.pth``. A failure
raises the exception the command would print as "maskrcnn train: error: ..." (``ValueError``,
``OSError``, ``KeyError`` for an unknown config key, ...; a bad keyword a ``TypeError``, a bad option
value a ``ValueError``) instead of returning an exit status; a run stopped by Ctrl-C or SIGTERM
(checkpoint saved) raises ``TrainingStopped`` (continue with ``resume=True``). Warnings (a dataset's
skipped records) read as the command's, one line each ("maskrcnn train: warning: ..."). Process state is
left as found: the trainer's SIGINT / SIGTERM handlers and the warnings' format are restored when it
returns, and no exit is called.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Optional


class TrainingStopped(RuntimeError):
    """A signal (Ctrl-C, SIGTERM) stopped the run at the end of an iteration; its checkpoint is saved."""


def _value_text(value) -> str:
    if isinstance(value, os.PathLike):  # a path is a string to the config (data.root, a weights file)
        return os.fspath(value)
    return value if isinstance(value, str) else json.dumps(list(value) if isinstance(value, tuple) else value)


def train_argv(*, train_json=None, output, init=None, config=None, set: Optional[Mapping] = None,
               train_images=None, val_json=None, val_images=None, resume: bool = False,
               overwrite: bool = False, device=None) -> list:
    """The ``maskrcnn train`` arguments the keywords stand for (see the module docstring)."""
    argv = ["train", "--output", str(output)]
    for option, value in (("--train-json", train_json), ("--train-images", train_images),
                          ("--val-json", val_json), ("--val-images", val_images), ("--config", config),
                          ("--init", init), ("--device", device)):
        if value is not None:
            argv += [option, str(value)]
    argv += ["--resume"] if resume else []
    argv += ["--overwrite"] if overwrite else []
    if set:
        argv += ["--set", *(f"{key}={_value_text(value)}" for key, value in set.items())]
    return argv


def train(*, train_json=None, output, init=None, config=None, set: Optional[Mapping] = None,
          train_images=None, val_json=None, val_images=None, resume: bool = False, overwrite: bool = False,
          device=None) -> Path:
    """Train as ``maskrcnn train`` does; returns ``RUN_DIR/model_final.pth``. Keywords: the module
    docstring; ``train_json`` may be left out only with ``resume=True`` (the run's data)."""
    from maskrcnn.cli import build_parser, one_line_warnings
    from maskrcnn.commands import train as command

    argv = train_argv(train_json=train_json, output=output, init=init, config=config, set=set,
                      train_images=train_images, val_json=val_json, val_images=val_images, resume=resume,
                      overwrite=overwrite, device=device)
    args = build_parser(argv, raise_errors=True).parse_args(argv)  # a bad value: ValueError, no exit
    # the dataset's skipped records are warnings: one line each as the command prints them, beside its
    # "note: ..." lines, not "/.../coco.py:119: UserWarning: ..." with a line of our source under it
    with one_line_warnings("train"):
        result = command.run_training(args)
    if result.get("stopped"):  # mid-iteration, not saved (the DataLoader workers ended by the same signal)
        raise TrainingStopped(result["stopped"])
    if result.get("interrupted"):
        raise TrainingStopped(f"the run in {output} was stopped by a signal at iteration "
                              f"{result.get('iteration')}; its checkpoint is saved: continue with "
                              "resume=True")
    return Path(output) / "model_final.pth"
