"""``maskrcnn.train(...)``: ``maskrcnn train`` from Python (a notebook, a script), through the command's
own parser and code path (``commands/train.py``), so the two cannot drift apart::

    import maskrcnn
    final = maskrcnn.train(train_json="data/train.json", output="runs/mine",
                           init="maskrcnn_resnet50_fpn_coco", config="finetune",
                           set={"solver.iters": 300, "solver.batch_size": 2})
    predictor = maskrcnn.Predictor.from_weights(final)

(``finetune``: the fine-tuning recipe, which the command picks itself when ``init`` is a whole detector;
``r50_fpn`` is the from-scratch one, lr 0.02 for 90k iterations of 16 images.)

The keywords are the command's options (``train_json`` is ``--train-json``; each value joined to its
option, ``--output=-run1``, so one that starts with '-' is still a value). ``set``: a dict of dotted
config keys, each value written as ``--set key=value``: a string or a path as it is, anything else as
JSON, so ``[10]``, ``true``, ``0.001`` (numpy and torch scalars and arrays as their numbers; another
type is a ``TypeError`` naming the key), or a list of ``"key=value"`` strings as on the command line.
``config``: a preset name, a YAML file or a ``Config`` object (written for the run to a temporary YAML
file, removed after: the keys that differ from the r50_fpn preset's, over it; messages name it "the Config
given to train()", not that file; the object itself is left as it was, numpy and torch values included).
Returns the path of ``RUN_DIR/model_final.pth``. A failure
raises the exception the command would print as "maskrcnn train: error: ..." (``ValueError``,
``OSError``, ``KeyError`` for an unknown config key, ...; a bad keyword, or a value of a type no option
takes, a ``TypeError``; a bad value a ``ValueError`` from the command's own checks: each value is joined
to its option, so argparse's own errors, "expected one argument", cannot arise) instead of returning an
exit status; a run stopped by Ctrl-C or SIGTERM
(checkpoint saved) raises ``TrainingStopped`` (continue with ``resume=True``). Warnings (a dataset's
skipped records) read as the command's, one line each ("maskrcnn train: warning: ..."). Process state is
left as found: the trainer's SIGINT / SIGTERM handlers and the warnings' format are restored when it
returns, and no exit is called.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping


class TrainingStopped(RuntimeError):
    """A signal (Ctrl-C, SIGTERM) stopped the run at the end of an iteration; its checkpoint is saved."""


def _value_text(key: str, value) -> str:
    """One ``--set`` value: a string or a path as it is, anything else as JSON (``config.plain_value``:
    numpy and torch values as their numbers, paths as strings, in lists and mappings too)."""
    from maskrcnn.config import plain_value

    value = plain_value(value, key, "set[{!r}]")
    return value if isinstance(value, str) else json.dumps(value)


def _set_items(set) -> list:
    """``set`` as ``--set`` items: a mapping of dotted keys, or a list / tuple of ``"key=value"`` strings
    as on the command line."""
    if isinstance(set, Mapping):
        from maskrcnn.config import check_overrides

        check_overrides(set, "set")  # string keys
        return [f"{key}={_value_text(key, value)}" for key, value in set.items()]
    if isinstance(set, (list, tuple)) and all(isinstance(item, str) for item in set):
        return list(set)
    raise TypeError(f"set: a mapping of dotted config keys ({{'solver.iters': 300}}) or a list of "
                    f"'key=value' strings (['solver.iters=300']) is expected, got {type(set).__name__}"
                    + (" holding a non-string" if isinstance(set, (list, tuple)) else ""))


def train_argv(*, train_json=None, output, init=None, config=None, set=None,
               train_images=None, val_json=None, val_images=None, resume: bool = False,
               overwrite: bool = False, device=None) -> list:
    """The ``maskrcnn train`` arguments the keywords stand for (see ``train``). Each value is
    joined to its option (``--output=-run1``): a value starting with '-' is not read as an option."""
    if resume and overwrite:  # said in the caller's words, not as the command line's flags
        raise ValueError("resume=True and overwrite=True contradict each other: resume continues the run in "
                         "output, overwrite deletes it to start a new one; give one of them")
    argv = ["train", f"--output={output}"]
    for option, value in (("--train-json", train_json), ("--train-images", train_images),
                          ("--val-json", val_json), ("--val-images", val_images), ("--config", config),
                          ("--init", init), ("--device", device)):
        if value is not None:
            argv.append(f"{option}={value}")
    argv += ["--resume"] if resume else []
    argv += ["--overwrite"] if overwrite else []
    if set is not None:
        argv += [f"--set={item}" for item in _set_items(set)]
    return argv


def _config_file(cfg, folder: Path) -> Path:
    """A Config object written as a YAML file in ``folder`` for ``--config``: the keys whose values differ
    from the r50_fpn preset's, over ``_base_: r50_fpn``, so the run reads ``cfg`` back whole. Every key
    that differs from r50_fpn counts as set by the user (as in a YAML file of one's own), whichever preset
    ``cfg`` was made from: ``PRESETS["demo"]()`` passed whole sets each of demo's own values."""
    import yaml

    from maskrcnn.config import PRESETS, flatten_sections, validate_config
    from maskrcnn.io_utils import atomic_write_text

    cfg = validate_config(cfg)  # a value set by attribute assignment: the key named, not the temporary file
    base = PRESETS["r50_fpn"]()  # the _base_ written: a key equal to its value is left out
    default = flatten_sections(base.to_dict(), base)
    nested: dict = {"_base_": "r50_fpn"}
    for key, value in flatten_sections(cfg.to_dict(), cfg).items():
        if default.get(key, object()) != value:
            *sections, leaf = key.split(".")
            node = nested
            for section in sections:
                node = node.setdefault(section, {})
            node[leaf] = value
    path = folder / "config.yaml"
    atomic_write_text(path, yaml.safe_dump(nested, sort_keys=False, allow_unicode=True))
    return path


CONFIG_GIVEN = "the Config given to train()"  # how messages name a Config object, not its temporary file


def train(*, train_json=None, output, init=None, config=None, set=None,
          train_images=None, val_json=None, val_images=None, resume: bool = False, overwrite: bool = False,
          device=None) -> Path:
    """Train as ``maskrcnn train`` does, through the command's own parser and code path; returns the path
    of ``RUN_DIR/model_final.pth``::

        final = maskrcnn.train(train_json="data/train.json", output="runs/mine",
                               init="maskrcnn_resnet50_fpn_coco", config="finetune",
                               set={"solver.iters": 300, "solver.batch_size": 2})

    Each keyword is the command's option of that name (``train_json`` is ``--train-json``; see
    ``maskrcnn train --help``):

    - ``output`` (required): the run folder (checkpoints, metrics.jsonl, config.yaml).
    - ``train_json``, ``train_images``: the training set's COCO JSON and its images folder (default from
      the JSON's layout); ``train_json`` may be left out only with ``resume=True`` (the run's data).
    - ``val_json``, ``val_images``: a validation set, evaluated every ``solver.eval_period``.
    - ``init``: the starting weights: our checkpoint, a torchvision / detectron2 / MMDetection detector or
      an ImageNet backbone (a file, URL or published name such as ``maskrcnn_resnet50_fpn_coco``).
    - ``config``: a preset name, a YAML file or a ``maskrcnn.config.Config`` (default: ``finetune``, the
      fine-tuning recipe, when ``init`` is a whole detector; else ``r50_fpn``, the from-scratch one, lr
      0.02 for 90k iterations of 16 images).
    - ``set``: config changes, a dict of dotted keys (``{"solver.lr": 0.001}``; a string or a path as it
      is, any other value as JSON) or a list of ``"key=value"`` strings, as ``--set``.
    - ``resume``: continue the run in ``output``; ``overwrite``: start a new one in an ``output`` that
      holds an earlier run's files (not both).
    - ``device``: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (default: the config's).

    A failure raises the error the command would print (``ValueError``, ``OSError``, ``KeyError`` for an
    unknown config key; ``TypeError`` for a misspelt keyword or a value of a type no option takes);
    Ctrl-C or SIGTERM saves a checkpoint at the end of the iteration and raises ``TrainingStopped``
    (continue with ``resume=True``). More: ``help(maskrcnn.fine_tune)``."""
    from maskrcnn.config import Config

    keywords = dict(train_json=train_json, output=output, init=init, set=set, train_images=train_images,
                    val_json=val_json, val_images=val_images, resume=resume, overwrite=overwrite,
                    device=device)
    if isinstance(config, Config):  # read by the command as a file: a temporary one, removed after
        with tempfile.TemporaryDirectory(prefix="maskrcnn-config-") as folder:
            return _train(config=_config_file(config, Path(folder)), config_said=CONFIG_GIVEN, **keywords)
    return _train(config=config, config_said=None, **keywords)


def _train(*, config, config_said, train_json, output, init, set, train_images, val_json, val_images,
           resume, overwrite, device) -> Path:
    """``train`` with ``config`` a preset name or a file; ``config_said``: how messages name it."""
    if config is not None and not isinstance(config, (str, os.PathLike)):
        raise TypeError(f"config: a preset name, a YAML file's path or a maskrcnn.config.Config is "
                        f"expected, got {type(config).__name__}")
    from maskrcnn.cli import build_parser, one_line_warnings
    from maskrcnn.commands import train as command

    argv = train_argv(train_json=train_json, output=output, init=init, config=config, set=set,
                      train_images=train_images, val_json=val_json, val_images=val_images, resume=resume,
                      overwrite=overwrite, device=device)
    args = build_parser(argv, raise_errors=True).parse_args(argv)  # a bad value: ValueError, no exit
    # the dataset's skipped records are warnings: one line each as the command prints them, beside its
    # "note: ..." lines, not "/.../coco.py:119: UserWarning: ..." with a line of our source under it
    with one_line_warnings("train"):
        result = command.run_training(args, config_said=config_said, caller="maskrcnn.train()")
    if result.get("stopped"):  # mid-iteration, not saved (the DataLoader workers ended by the same signal)
        raise TrainingStopped(result["stopped"])
    if result.get("interrupted"):
        raise TrainingStopped(f"the run in {output} was stopped by a signal at iteration "
                              f"{result.get('iteration')}; its checkpoint is saved: continue with "
                              "resume=True")
    return Path(output) / "model_final.pth"
