"""The training loop: optimizer, schedule, AMP, clipping, checkpoints, exact resume, DDP, evaluation.

One iteration: take the next batch from ``batches`` (an iterator of ``(images, targets)``), compute the
loss dict with the model in training mode, check every term is finite (a NaN stops the run with an error
naming the iteration and the terms -- under DDP from the first rank that saw it, the others stop with one
shared line; the last good checkpoint stays; weights gone non-finite on a finite
loss are caught when a checkpoint is due and never saved), backward (with a GradScaler for
float16 on CUDA), optionally clip, step the optimizer and the LR schedule, log (the ``lr`` logged is the
one the iteration's step used, not the schedule's next value).

Gradient accumulation (``solver.accumulate`` = k > 1): each iteration's batch (this process's
batch_size / world_size images, the same images as with k = 1) is split into k micro-batches in order;
each is forwarded and backwarded with its loss divided by k, so the summed gradient is that of the
micro-batches' mean loss; then one (GradScaler-unscaled, clipped) optimizer step and one schedule step.
Under DDP the backwards of all but the last micro-batch run in ``no_sync`` (one all-reduce a step). The
logged terms are the means over the micro-batches; iteration counts, checkpoint and evaluation periods,
warm-up and steps count optimizer steps, and the batches an iteration sees do not depend on k, so exact
resume holds (and a run may even resume with another k). The gradient equals the full batch's exactly
where each loss is a mean over a count that is the same in every micro-batch (the RPN's sampled anchors
and the RoI heads' sampled RoIs when every image fills its batch_size_per_image); it differs where the
count varies with the images (loss_mask over positive RoIs, loss_keypoint over visible keypoints, a
sampler short of candidates): each micro-batch is then normalised by its own count. The model's sampling
draws differ from the full batch's (one generator, drawn micro-batch after micro-batch), and trainable
batch norm (``model.norm=bn``) sees micro-batch statistics.

Divergence without NaN (``engine/divergence.py``): a total loss above
``solver.divergence_factor`` x the median of the last ``solver.divergence_window`` iterations for
``solver.divergence_patience`` iterations in a row stops the run with ``DivergenceError`` (the iteration,
the loss against the median, the learning rate, what to try). A periodic checkpoint due while the loss is
above the threshold is put off until the loss is back under it, so the exploded state is never saved and
the last checkpoint is the last good one. The guard's history is part of the checkpoint (exact resume).

Exact resume: a checkpoint holds model, optimizer, scheduler, GradScaler, the number of finished
iterations, the RNG states (torch CPU and CUDA, numpy, python) and the engine of the linear layers
(``OneDnnLinear`` or ``nn.Linear``: picked by a speed measurement, ``ops.gemm_rates``, that may answer
otherwise in the resuming process; the engines round differently; under torchrun every rank takes rank
0's; None for a run on a GPU, where nothing is chosen). A ``MASKRCNN_MATMUL`` pin wins over the
checkpoint's engine (said: that resume is not bit-exact); evaluations follow the training model's engine.
The solver settings are the config's, not the checkpoint's: the optimizer's momentum buffers and the
schedule's position are loaded, while lr (the schedule's base lrs), momentum and weight decay follow the
config, so a run resumed with another ``solver.lr`` or schedule trains at the lr it prints and logs (the
same settings give the same values bit for bit). The batches are rebuilt by
``make_batches(start_iter)``, which must give the batches an uninterrupted run would have seen from that
iteration on (the loader's ``start_iter``); with ``num_workers=0`` and deterministic ops, every later
loss and the final weights equal those of an uninterrupted run.

Files in ``output_dir`` (main process only): ``model_{iter:07d}.pth`` every ``checkpoint_period``
iterations and on SIGTERM / SIGINT, ``last_checkpoint`` (the name of the newest, written atomically),
``model_final.pth`` at the end, ``metrics.jsonl``, ``curves.png``. Checkpoints are written before the
evaluation due at the same iteration (and the final ones before the final evaluation): an evaluation that
fails costs no training. A second Ctrl-C (SIGINT) while the
first is waiting for the iteration to end raises KeyboardInterrupt at once, naming the kept checkpoint.
Every write of weights goes through one helper: a failed write (disk full, folder gone) is one
``CheckpointWriteError`` naming the file, the iteration and the checkpoint kept. ``train`` returns the
number of the signal that stopped the run (the command exits with 128 + it: 130, 143). A DataLoader worker's
death (PyTorch raises it wherever the main process is) is ``StoppedBySignal`` (not saved: mid-iteration)
when this process got a stop signal too (a SIGTERM to the process group), else an error saying the worker
was ended (out of memory?) and that ``data.num_workers=0`` avoids the workers. When it starts,
the trainer removes the hidden temporary files of its run files (``.model_0000010.pth.<hex>.tmp``) that a
killed run left (older than this process, unchanged for 10 minutes); a resume that finds no checkpoint
starts ``metrics.jsonl``, ``best.json``, ``curves.png`` and the TensorBoard curves afresh, and is refused
when the folder holds finished weights (``model_final.pth``, ``model_best.pth``) without a checkpoint.

Best checkpoint and early stopping (``engine/best_model.py``), with periodic evaluation (``eval_period``
> 0 and an ``evaluate_fn``) and a ``best_metric``, or a resume with ``eval_period`` 0 of a run that kept
a best (its checkpoint holds the tracker: its final evaluation counts against that best): each
evaluation, the final one included, that beats the best value so far writes ``model_best.pth``
(weights, config, class names, the iteration and ``"best_model": {"metric", "value", "iteration"}``;
loads wherever ``model_final.pth`` does) and then
``best.json`` (``{"metric", "value", "iteration", "file"}``). With ``early_stop_patience`` > 0, that many
evaluations in a row without a gain of ``early_stop_min_delta`` end the run normally (full checkpoint,
``model_final.pth`` with the last weights; the final evaluation is not repeated on the weights just
evaluated), saying why and where the best is. Every process runs ``evaluate_fn`` (validation is sharded
over them: ``engine/inference.py``); only the main process gets its results, logs and writes; it decides
the stop and every rank follows (``distributed.any_true``). The tracker's state is in every checkpoint.
Checkpoints are written before the evaluation due at the same iteration, so a run resumed from one
first runs that evaluation (the checkpoint's weights are the ones it evaluates) and then goes on: it
writes the best model and stops exactly where an uninterrupted run does. An evaluation that did run
before the run stopped (``metrics.jsonl`` holds its record, ``best.json`` the best it leads to: the final
evaluation of a shorter schedule, or a kill after it) is counted from its record, not run again.
A resume from the checkpoint where the run ends (``max_iter`` reached, or stopped early) trains nothing:
it finishes only what the end left undone (``model_final.pth`` of that iteration, the final evaluation
with its record), and a finished run is left as it is (no evaluation, no record, no file written:
``metrics.jsonl``, ``config.yaml``, ``run.json`` are rewritten only when their contents change). A resume
that trains past the end a shorter schedule reached sets that end's ``model_final.pth`` aside first
(``_set_aside_final``: removed, or renamed after its iteration), so that a stop before the new end leaves
no final weights that are not the last.
Checkpoints without the state (older ones, or written while following another metric) resume with the
tracking started afresh.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
from torch import nn

from maskrcnn import stop_signals
from maskrcnn.checkpoint import CheckpointError, load_checkpoint, non_finite_keys, save_checkpoint
from maskrcnn.engine import distributed as du
from maskrcnn.engine.best_model import BestTracker, metric_value, resolve_metric
from maskrcnn.engine.divergence import DivergenceGuard
from maskrcnn.engine.logger import TrainingLogger, eval_record, truncate_metrics
from maskrcnn.engine.schedule import build_scheduler
from maskrcnn.io_utils import (
    PROCESS_START,
    atomic_write_bytes,
    atomic_write_json,
    remove_stale_temps,
    temp_target,
)
from maskrcnn.listing import short_listing
from maskrcnn.shell import shell_word

LAST_CHECKPOINT = "last_checkpoint"
FINAL_NAME = "model_final.pth"
BEST_NAME = "model_best.pth"
BEST_JSON = "best.json"
# What a run leaves in its folder (this module, logger.py, training.py): a new run must not mix with them;
# the temporary files of any of them a killed run left are removed when the next run starts.
RUN_FILE_PATTERNS = (
    LAST_CHECKPOINT, "model_*.pth", "metrics.jsonl", "config.yaml", "init_report.json", "curves.png",
    "events.out.tfevents.*", "tensorboard/events.out.tfevents.*", BEST_JSON, "run.json",
)
# run files a resume without checkpoint keeps: the resumed run's own settings
_KEPT_ON_A_FRESH_START = ("config.yaml", "init_report.json", "run.json", LAST_CHECKPOINT)


def earlier_run_files(output: Path) -> list:
    """The files of an earlier run in ``output`` (sorted; empty when there is none or no folder)."""
    output = Path(output)
    if not output.is_dir():
        return []
    return sorted({p for pattern in RUN_FILE_PATTERNS for p in output.glob(pattern) if p.is_file()})


def _free_name(folder: Path, stem: str) -> str:
    """``stem``.pth, or ``stem``_2.pth, _3, ... : the first name no file in ``folder`` has."""
    name, n = f"{stem}.pth", 1
    while (folder / name).exists():
        n += 1
        name = f"{stem}_{n}.pth"
    return name


def _same_tensors(a: dict, b: dict) -> bool:
    """Whether two state dicts hold the same names and, under each, equal tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def checkpoint_candidates(output_dir: Path) -> list:
    """The checkpoints a resume of ``output_dir`` tries, in order: the one ``last_checkpoint`` names
    (when that file is there), then every ``model_NNNNNNN.pth``, newest first. Empty: the folder holds
    no checkpoint to continue from (a run killed after writing a checkpoint but before its pointer still
    has one)."""
    output_dir = Path(output_dir)
    candidates = sorted(output_dir.glob("model_[0-9]*.pth"), reverse=True)
    pointer = output_dir / LAST_CHECKPOINT
    if pointer.is_symlink() or pointer.is_file():
        named = output_dir / _pointed_name(pointer)
        candidates = [named] + [c for c in candidates if c != named]
    return candidates


_POINTER_BYTES = 4096  # a checkpoint's file name, with room to spare: more is not a pointer the run wrote


def _pointed_name(pointer: Path) -> str:
    """The file name ``pointer`` (a run's ``last_checkpoint``) holds: its first line, at most
    ``_POINTER_BYTES`` read. ``CheckpointError`` naming the pointer, quoting no more than a short excerpt of
    what it holds, when it is not a plain file naming a file of the run's own folder: a resume continues
    the run's checkpoints, never a file elsewhere (a link, an absolute path, ``..``)."""
    way_out = ("; remove it to resume from the run's newest model_NNNNNNN.pth, or write the name of one "
               "of the run's checkpoints into it")
    if pointer.is_symlink():
        raise CheckpointError(f"{pointer} is a link, not the file the run writes{way_out}")
    try:
        with open(pointer, "rb") as f:
            head = f.read(_POINTER_BYTES + 1)
    except OSError as e:
        raise CheckpointError(f"{pointer}: cannot read it: {e.strerror or e}{way_out}") from None
    line = head.split(b"\n", 1)[0].strip()
    excerpt = repr(line[:60]) + ("..." if len(line) > 60 else "")
    if len(head) > _POINTER_BYTES and b"\n" not in head[:_POINTER_BYTES]:
        raise CheckpointError(f"{pointer}: more than {_POINTER_BYTES} bytes without a line break (it starts "
                              f"{excerpt}), not a checkpoint's name{way_out}")
    try:
        name = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{pointer}: not UTF-8 text ({e.reason} at byte {e.start} of {excerpt})"
                              f"{way_out}") from None
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise CheckpointError(f"{pointer} names {excerpt}, not a file of the run's folder {pointer.parent}"
                              f"{way_out}")
    return name


def read_resume_checkpoint(output_dir: Path) -> dict:
    """The checkpoint a resume of ``output_dir`` continues from: ``{"path", "checkpoint", "errors"}``, the
    first of ``checkpoint_candidates`` that loads (on the CPU: ``load_state_dict`` moves it to the device)
    and the errors of those before it that did not; path and checkpoint None when none loads (errors empty:
    there was none). ``Trainer.resume`` and the resumed config (``engine/training._checkpoints_config``)
    both read through it, so that they take the same file."""
    errors, stateless, skipped = [], None, []
    pointer = Path(output_dir) / LAST_CHECKPOINT
    named = Path(output_dir) / _pointed_name(pointer) if pointer.is_file() else None  # its checks, one rule
    for path in checkpoint_candidates(output_dir):
        try:
            ckpt = load_checkpoint(path, map_location="cpu")
        except CheckpointError as e:
            errors.append(str(e))
            continue
        if path == named or not _lacks_training_state(ckpt):
            return {"path": path, "checkpoint": ckpt, "errors": errors, "stateless": skipped}
        # no pointer names it: an INT8 file (`quantize --output RUN/model_N.pth`) or weights alone sorted
        # newest, not one of the run's checkpoints: skipped, said; refused (no_training_state) if all are
        if stateless is None:
            stateless = {"path": path, "checkpoint": ckpt, "errors": list(errors), "stateless": []}
        skipped.append((path, "int8" if "int8" in ckpt else "weights"))
        errors.append(f"{path}: {_what_lacks_state(ckpt)}, not a checkpoint of the run (no training state)")
    return stateless or {"path": None, "checkpoint": None, "errors": errors, "stateless": []}


def writes_checkpoint_of(number: int, *, iteration: int, max_iter: int, checkpoint_period: int) -> bool:
    """Whether a run resumed at ``iteration`` writes ``model_{number}.pth`` on its way to ``max_iter``:
    every ``checkpoint_period`` iterations, and at ``max_iter`` (the end's full checkpoint). A stop by a
    signal or an early stop cannot be foreseen; those are not counted."""
    if not iteration < number <= max_iter:
        return False
    return number == max_iter or (checkpoint_period > 0 and number % checkpoint_period == 0)


def _stateless_later_files(found: dict, iteration: int, written) -> list:
    """(path, "int8" | "weights") of every ``model_N.pth`` beside the resumed checkpoint with N above
    ``iteration`` that lacks training state: those ``read_resume_checkpoint`` skipped, and those it never
    reached (``last_checkpoint`` named the run's checkpoint first, so the loop ended there); of the latter
    only those whose N ``written(N)`` says the run writes are loaded (each a whole checkpoint)."""
    known = dict(found.get("stateless", ()))
    path = found.get("path")
    if path is None:
        return list(known.items())
    for candidate in sorted(Path(path).parent.glob("model_[0-9]*.pth")):
        number = candidate.stem[len("model_"):]
        later = number.isdigit() and int(number) > iteration and written(int(number))
        if candidate in known or candidate == Path(path) or not later:
            continue
        try:
            ckpt = load_checkpoint(candidate, map_location="cpu")
        except CheckpointError:
            continue  # unreadable: not a file to keep from being overwritten
        if _lacks_training_state(ckpt):
            known[candidate] = "int8" if "int8" in ckpt else "weights"
    return sorted(known.items())


def set_aside_stateless(found: dict, iteration: int, *, max_iter: int, checkpoint_period: int) -> list:
    """Move the ``model_N.pth`` files that lack training state (an INT8 file, weights alone) out of the
    names the resumed run writes: ``model_0000901.pth`` -> ``int8_model_0000901.pth`` when the run,
    resumed at ``iteration`` from ``found`` (``read_resume_checkpoint``'s answer, with or without a
    ``last_checkpoint`` pointer), will write its own checkpoint of that number over it
    (``writes_checkpoint_of``); one it never writes is left where it is. Returns the lines that say so
    (main process only: the others see the same folder)."""
    lines = []

    def written(number: int) -> bool:
        return writes_checkpoint_of(number, iteration=iteration, max_iter=max_iter,
                                    checkpoint_period=checkpoint_period)

    for path, kind in _stateless_later_files(found, iteration, written):
        number = path.stem[len("model_"):]
        if not (number.isdigit() and path.is_file() and written(int(number))):
            continue
        target = path.parent / _free_name(path.parent, f"{kind}_{path.stem}")
        os.replace(path, target)
        lines.append(f"moved {path} to {target}: the run writes its own checkpoint of iteration "
                     f"{int(number)} under that name")
    return lines


TRAINING_STATE = ("optimizer", "scheduler", "iteration")  # what a resume cannot go on without


def _new_run_words(caller: str, weights: Path, folder: str, config: Optional[Path] = None) -> str:
    """A new run from ``weights`` (with ``config``) into ``folder`` as ``caller`` starts one: "--init W
    --config C --output F", or ``maskrcnn.train()``'s "init='W', config='C', output='F'"."""
    from maskrcnn.engine.caller_words import API, given

    if caller != API:  # the command's words are shell words (a path with spaces stays one word)
        weights, config = shell_word(weights), config and shell_word(config)
    parts = [given(caller, "--init", str(weights))]
    parts += [given(caller, "--config", str(config))] if config else []
    parts.append(given(caller, "--output", folder))
    return (", " if caller == API else " ").join(parts)


def no_training_state(path: Path, ckpt: dict, candidates=(), *, caller: str = "maskrcnn train") -> str:
    """The refusal of resuming from ``ckpt`` (read from ``path``) when it lacks ``TRAINING_STATE``: an INT8
    file written by ``quantize`` (its "int8" section; weights and config only), or weights saved without
    the run's state; "" when it has it. ``candidates``: the run's other checkpoint files, named as the way
    out. (Loaded as it was, the bare KeyError said only "optimizer".) ``caller``: whose words the way out
    is in (``caller_words``: "--init ...", or ``maskrcnn.train()``'s "init=...")."""
    from maskrcnn.engine.caller_words import option_word

    missing = [key for key in TRAINING_STATE if key not in ckpt]
    if not missing:
        return ""
    what = _what_lacks_state(ckpt)
    others = [Path(c).name for c in candidates if Path(c) != Path(path)]
    pointer = Path(path).parent / LAST_CHECKPOINT
    listed = short_listing(others, limit=3)
    point = f"point {pointer} at a checkpoint the run wrote ({listed}), or " if others else ""
    config = Path(path).parent / "config.yaml"  # without it the new run would take another preset
    way = _new_run_words(caller, Path(path), "ANOTHER_FOLDER", config if config.is_file() else None)
    return (f"{option_word(caller, '--resume')}: {path} is {what}: it holds no training state (no "
            f"{', '.join(missing)}), so the run cannot go on from it; {point}train on from its weights in a "
            f"new run: {way}" + ("" if others else " (the run holds no other checkpoint)"))


def _lacks_training_state(ckpt: dict) -> bool:
    return any(key not in ckpt for key in TRAINING_STATE)


def _what_lacks_state(ckpt: dict) -> str:
    return "an INT8 file written by `maskrcnn quantize`" if "int8" in ckpt else "a weights-only file"


def finished_without_checkpoint(output_dir: Path, *, caller: str = "maskrcnn train") -> str:
    """The refusal of a resume of ``output_dir`` when it holds finished weights (model_final.pth,
    model_best.pth) but no checkpoint to continue from (no ``last_checkpoint``, no model_NNNNNNN.pth: a
    finished run whose periodic checkpoints were cleaned up); "" otherwise. Starting such a run again
    from iteration 0 would remove its best model and metrics and overwrite its final weights. ``caller``:
    whose words the ways out are in (``caller_words``)."""
    from maskrcnn.engine.caller_words import option_word

    output_dir = Path(output_dir)
    if checkpoint_candidates(output_dir):
        return ""
    finished = [n for n in (FINAL_NAME, BEST_NAME) if (output_dir / n).is_file()]
    if not finished:
        return ""
    return (f"{output_dir} holds finished weights ({finished[0]}) but no checkpoint to continue from; "
            f"{_new_run_words(caller, output_dir / finished[0], 'ANOTHER')} to train on from them, or "
            f"{option_word(caller, '--overwrite')} to start again")


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the message names the iteration and every term."""


class DivergenceError(RuntimeError):
    """The loss exploded (finite, but far above its recent median for several iterations)."""

    # every rank judges the same all-reduced loss and raises it at the same iteration: printed once (rank 0)
    maskrcnn_shared_error = True


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written; the message names the file, the iteration and the kept one."""


class StoppedBySignal(Exception):
    """The run stopped mid-iteration by the signal ``signum`` (the command exits with 128 + it), not saved:
    a SIGTERM sent to the whole process group (``timeout``, a job scheduler, ``kill -- -PGID``) ends the
    DataLoader workers too, and PyTorch raises their death wherever the main process is, mid-step."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def is_worker_death(e: BaseException) -> bool:
    """Whether ``e`` is PyTorch's error for a DataLoader worker that died ("DataLoader worker (pid N) is
    killed by signal: Terminated.", "... exited unexpectedly")."""
    return isinstance(e, RuntimeError) and str(e).startswith("DataLoader worker")


# ----------------------------------------------------------------------------------- optimizer

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm)


def build_optimizer(model: nn.Module, cfg) -> torch.optim.SGD:
    """SGD with momentum; weight decay ``solver.weight_decay``, ``solver.weight_decay_norm`` on norm layers
    (their weights and biases), ``solver.weight_decay_bias`` on other biases (None: the same as weights).
    Frozen parameters (requires_grad False) are left out."""
    s = cfg.solver
    wd_bias = s.weight_decay if s.weight_decay_bias is None else s.weight_decay_bias
    groups: Dict[float, List[nn.Parameter]] = {}
    seen = set()
    for module in model.modules():
        is_norm = isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if is_norm:
                wd = s.weight_decay_norm
            elif name == "bias":
                wd = wd_bias
            else:
                wd = s.weight_decay
            groups.setdefault(float(wd), []).append(p)
    param_groups = [{"params": ps, "weight_decay": wd} for wd, ps in groups.items()]
    # The fused kernel does the whole update (decay, momentum, step) in one pass over each tensor where
    # the default ``foreach`` form makes several: 12 ms instead of 40 ms a step for R18-FPN's 31M
    # parameters on a 2-core CPU. Same arithmetic; only for devices that have the kernel.
    params = [p for ps in groups.values() for p in ps]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.SGD(param_groups, lr=s.lr, momentum=s.momentum, fused=fused or None)


def _groups_text(groups) -> str:
    """An optimizer's parameter groups as a resume's refusal names them: "4 tensors at weight decay 0.0001,
    2 at 0", each group's size (the tensors trained: frozen ones are in none) and its weight decay; a saved
    state's groups (``params``: indices) and a live optimizer's alike."""
    parts = [f"{len(g['params'])} {'at' if i else 'tensors at weight decay'} {g.get('weight_decay', 0):g}"
             for i, g in enumerate(groups)]
    return ", ".join(parts) or "no groups"


# ----------------------------------------------------------------------------------- RNG state


def _linear_engine(model: nn.Module) -> str:
    """Which engine computes the model's linear layers: "onednn" (``OneDnnLinear``, chosen where
    ``torch.mm`` lags oneDNN, ``ops.gemm_rates``) or "plain"."""
    from maskrcnn.ops.onednn_linear import OneDnnLinear

    return "onednn" if any(isinstance(m, OneDnnLinear) for m in model.modules()) else "plain"


_ENGINE_NAMES = {"onednn": "oneDNN", "plain": "torch.mm"}
_NO_RECORD = object()  # a checkpoint written before the engine was recorded (no "linear_engine" key)


def _use_linear_engine(model: nn.Module, engine: str) -> None:
    """Put the model's linear layers on ``engine`` (same Parameter objects: the optimizer and DDP's
    hooks stay valid)."""
    from maskrcnn.modeling.fuse import use_onednn_linear
    from maskrcnn.ops.onednn_linear import plain_linears

    (use_onednn_linear if engine == "onednn" else plain_linears)(model)


def get_rng_state() -> dict:
    """Every RNG a training step may draw from, as tensors / plain values (weights_only-loadable)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    random.setstate(_python_state_from_plain(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):  # a different GPU count: CUDA streams differ anyway
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _python_state_to_plain(st) -> dict:
    version, internal, gauss = st
    return {"version": int(version), "internal": list(internal), "gauss": gauss}


def _python_state_from_plain(d: dict):
    return (d["version"], tuple(int(x) for x in d["internal"]), d["gauss"])


# ----------------------------------------------------------------------------------- trainer


def _in_a_row(n: int, noun: str) -> str:
    """"3 evaluations in a row", "1 evaluation" (a patience of 1 printed "1 evaluations in a row")."""
    return f"1 {noun}" if n == 1 else f"{n} {noun}s in a row"


class Trainer:
    """Runs ``max_iter`` iterations of a model that returns a loss dict; see the module docstring.

    make_batches(start_iter) -> iterator of (images: list of (3, H, W), targets: list of dicts) for this
    process. evaluate_fn(model) -> results dict (CocoEvaluator.evaluate's) or None; called every
    ``eval_period`` iterations (0: at the end only) on every process (a collective under torchrun: only the
    main process's results are used; the others may return None). best_metric (``iou_type/metric``,
    None: off), early_stop_patience and early_stop_min_delta: the best checkpoint and early stopping
    (module docstring); they need an ``evaluate_fn`` and ``eval_period`` > 0. accumulate: micro-batches
    per iteration (gradient accumulation, module docstring); each batch must split into that many of
    equal size.
    """

    # who runs it, as build_training's ``caller``: its lines name the way on as that caller does ("continue
    # with --resume", or maskrcnn.train()'s "resume=True": ``caller_words``); set by build_training
    caller = "maskrcnn train"

    @property
    def _resume(self) -> str:
        from maskrcnn.engine.caller_words import option_word

        return option_word(self.caller, "--resume")

    def _set_item(self, key: str, value) -> str:
        from maskrcnn.engine.caller_words import set_item, set_word

        return set_item(set_word(self.caller), key, value)

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler,
        make_batches: Callable[[int], Iterator],
        max_iter: int,
        output_dir,
        config,
        class_names,
        checkpoint_extra: Optional[dict] = None,
        checkpoint_period: int = 5000,
        log_period: int = 20,
        clip_grad_norm: float = 0.0,
        amp: bool = False,
        device="cpu",
        evaluate_fn: Optional[Callable[[nn.Module], Optional[dict]]] = None,
        eval_period: int = 0,
        handle_signals: bool = True,
        tensorboard: bool = True,
        log_stream=None,
        find_unused_parameters: bool = False,
        plot: bool = True,
        seed: int = 0,
        divergence_guard: Optional[DivergenceGuard] = None,
        best_metric: Optional[str] = None,
        early_stop_patience: int = 0,
        early_stop_min_delta: float = 0.0,
        accumulate: int = 1,
    ):
        if int(accumulate) < 1:
            raise ValueError(f"accumulate must be a whole number >= 1, got {accumulate!r}")
        self.accumulate = int(accumulate)
        self.device = torch.device(device)
        self.seed = int(seed)
        self.rank, self.world_size = du.get_rank(), du.get_world_size()
        self.is_main = self.rank == 0
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.make_batches = make_batches
        self.max_iter = int(max_iter)
        self.output_dir = Path(output_dir)
        self.config = config
        self.class_names = list(class_names)
        self.checkpoint_extra = dict(checkpoint_extra or {})
        self.checkpoint_period = int(checkpoint_period)
        self.clip_grad_norm = float(clip_grad_norm)
        self.amp = bool(amp)
        self.evaluate_fn = evaluate_fn
        self.eval_period = int(eval_period)
        self.handle_signals = handle_signals
        self.iteration = 0  # finished iterations
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.device.type == "cuda")
        self.logger = TrainingLogger(
            output_dir=self.output_dir,
            max_iter=self.max_iter,
            log_period=log_period,
            enabled=self.is_main,
            tensorboard=tensorboard,
            stream=log_stream,
        )
        self._agree_linear_engine()  # before DDP: every rank must train on one engine
        self.ddp_model = model
        if self.world_size > 1:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters,
            )
        self.plot = plot
        self._stop_signal: Optional[int] = None
        self.last_eval: Optional[dict] = None
        self._saved_at = -1
        # None: no divergence check (a finite loss, however large, trains on)
        self.divergence = divergence_guard or DivergenceGuard(factor=0, window=1, patience=1)
        self._checkpoint_put_off = False  # a periodic checkpoint fell due while the loss was exploding
        # the best checkpoint and early stopping: only where evaluations come periodically
        periodic = evaluate_fn is not None and self.eval_period > 0
        self.best = (
            BestTracker(metric=best_metric, patience=early_stop_patience, min_delta=early_stop_min_delta)
            if best_metric and periodic else None
        )  # fmt: skip
        if early_stop_patience > 0 and self.best is None:
            raise ValueError(
                f"early_stop_patience {early_stop_patience} needs periodic evaluation (an evaluate_fn, "
                f"eval_period > 0) and a best_metric; got eval_period {self.eval_period}, "
                f"{'an' if evaluate_fn is not None else 'no'} evaluate_fn, best_metric {best_metric!r}")
        # eval_period 0 (only the final evaluation): no best of its own, but a resumed run that kept one
        # (its checkpoint holds the tracker) goes on keeping it: its final evaluation counts as any other
        self._best_if_kept = (
            (best_metric, early_stop_min_delta) if best_metric and evaluate_fn is not None and not periodic
            else None
        )  # fmt: skip
        self._eval_pending = False  # resumed at an iteration whose evaluation the checkpoint predates
        # resumed where the run had ended (solver.iters reached, or stopped early): what its end left
        # undone, {"weights": model_final.pth due, "eval": the final evaluation due}; None otherwise
        self._left: Optional[dict] = None
        self.stopped_early = False
        # past the last iteration: what the run's end is doing ("writing model_final.pth"), for the line of
        # a second Ctrl-C that stops it there; None in the loop
        self._ending: Optional[str] = None
        # what the run's end has written, for that line: None, "final" (model_final.pth written, the final
        # evaluation due or skipped) or "finished" (the final evaluation run too, or none due)
        self._end_state: Optional[str] = None
        self._evaluating = False  # in evaluate_fn: a SIGTERM stops the final evaluation at once

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "rng": get_rng_state(),
            "data_state": {"start_iter": self.iteration},
            # a resume under another process count is not bit-exact (``_world_size_note``)
            "world_size": self.world_size,
            "divergence": self.divergence.state_dict(),
            # None on a GPU: nothing was chosen, and a CPU resume is not made to follow it
            "linear_engine": _linear_engine(self.model) if self.device.type == "cpu" else None,
            **({"best_model": self.best.state_dict()} if self.best is not None else {}),
            **self.checkpoint_extra,
        }

    def save(self, name: Optional[str] = None) -> Optional[Path]:
        """Write a full training checkpoint and point ``last_checkpoint`` at it (main process only).

        Weights that are no longer finite (a step on an infinite gradient whose loss was still finite) are
        never saved: ``last_checkpoint`` would point ``--resume`` at them. A write that fails (disk full,
        folder gone) is one error naming the file and the checkpoint that is kept (the writes are atomic).
        """
        state = self.model.state_dict()
        self._check_finite_weights(state)  # every rank: the same weights, so all stop together
        if not self.is_main:
            return None
        name = name or f"model_{self.iteration:07d}.pth"
        path = self.output_dir / name
        self._write_weights(path, state, what="the checkpoint", **self.checkpoint_state())
        with self._writing(path, what="the checkpoint"):
            atomic_write_bytes(self.output_dir / LAST_CHECKPOINT, (name + "\n").encode())
        self._saved_at = self.iteration
        return path

    def _write_weights(self, path: Path, state: dict, *, what: str, kept_note: str = "", **fields) -> None:
        """One checkpoint file (weights, config, class names, ``fields``), atomically (main process)."""
        with self._writing(path, what=what, kept_note=kept_note):
            save_checkpoint(path, model_state=state, config=self.config, class_names=self.class_names,
                            **fields)

    @contextlib.contextmanager
    def _writing(self, path: Path, *, what: str, kept_note: str = ""):
        """A failed write (disk full, folder gone) becomes one CheckpointWriteError naming the file, the
        iteration and the checkpoint kept (the writes are atomic: the old file, if any, is intact)."""
        try:
            yield
        except OSError as e:
            raise CheckpointWriteError(
                f"could not write {what} {path} after iteration {self.iteration}: {e.strerror or e}; "
                f"{self._kept_checkpoint_text()}{kept_note} (make room or fix the folder, then continue with "
                f"{self._resume})"
            ) from e

    def _check_finite_weights(self, state: dict) -> None:
        bad = non_finite_keys(state)
        if bad:
            names = short_listing(bad, limit=3)
            raise du.mark_shared(NonFiniteLossError(  # every rank holds the same weights: printed once
                f"non-finite weights after iteration {self.iteration} ({names}), not saved; "
                + self._kept_checkpoint_text()
                + " (a lower solver.lr or solver.clip_grad_norm may help)"
            ))

    def _kept_checkpoint_text(self) -> str:
        """Where the last good checkpoint is, or that there is none (never claim one not written)."""
        pointer = self.output_dir / LAST_CHECKPOINT
        name = pointer.read_text().strip() if pointer.is_file() else ""
        if name and (self.output_dir / name).is_file():
            return f"the last good checkpoint is {self.output_dir / name}"
        return f"no checkpoint was written before it ({self.output_dir} holds none to resume from)"

    def resume(self, then: Optional[Callable[[], None]] = None, read: Optional[dict] = None) -> bool:
        """Load the newest readable checkpoint in ``output_dir``; True if there was one.

        ``last_checkpoint`` names it; should that file be unreadable (a disk problem after the write),
        the newest other ``model_*.pth`` that loads is used instead, with a warning. ``then`` is called
        (every process) once it has loaded, right after "resumed from ...": what the caller has to say
        about the resume (``--set solver.iters 2 -> 3``) comes before what it leads to (the earlier end's
        ``model_final.pth`` set aside). ``read``: ``read_resume_checkpoint``'s answer, already read by the
        caller (``engine/training._checkpoints_config``): not read again.
        """
        found = read or read_resume_checkpoint(self.output_dir)
        path, ckpt, errors = found["path"], found["checkpoint"], list(found["errors"])
        if path is None and not errors:  # no checkpoint at all
            self._start_afresh()
            return False
        if path is None:
            raise CheckpointError(
                f"{self.output_dir}: no readable checkpoint to resume from: {'; '.join(errors)}"
            )
        refusal = no_training_state(path, ckpt, checkpoint_candidates(self.output_dir), caller=self.caller)
        if refusal:
            raise CheckpointError(refusal)
        for e in errors:
            self.logger.print(f"warning: skipped {e}")
        self.load_training_state(ckpt)
        if self.is_main:  # a skipped INT8 file named as a later checkpoint would be overwritten
            for line in set_aside_stateless(found, self.iteration, max_iter=self.max_iter,
                                            checkpoint_period=self.checkpoint_period):
                self.logger.print(line)
        self._saved_at = self.iteration  # the checkpoint just loaded is this iteration's
        on_record = False
        if self._eval_pending:  # every rank asks (a collective); the main process, which logs, answers
            on_record = self.is_main and self._evaluated_on_record()
            self._eval_pending = du.any_true(self.is_main and not on_record)
        elif self._earlier_end_on_record():
            on_record = True  # the final evaluation of a shorter schedule: counted, none is due here
        self._left = self._left_at_the_end() if not self._eval_pending else None
        if self.is_main:
            # an evaluation to run again is logged again: its earlier record (if any) goes
            truncate_metrics(self.logger.metrics_path, self.iteration,
                             drop_eval_at_last=self._eval_pending or bool(self._left and self._left["eval"]))
            self.logger.print(f"resumed from {path} at iteration {self.iteration}")
            note = world_size_note(ckpt.get("world_size"), self.world_size)
            if note:
                self.logger.print(note)
            if on_record:
                self.logger.print(f"iteration {self.iteration} was evaluated before the resume "
                                  f"(metrics.jsonl, {BEST_JSON}): not evaluated again")
        if then is not None:
            then()
        if self.is_main and self._left is None:  # training left: past the end a shorter schedule reached
            self._set_aside_final(ckpt["model"], path)
        return True

    def _set_aside_final(self, resumed: dict, resumed_from: Path) -> None:
        """A resume that trains on (``solver.iters`` raised after the run had finished) finds the
        ``model_final.pth`` of the earlier end: no longer the run's last weights, yet left in place it would
        look so should this run be stopped before its own end (``eval --weights RUN/model_final.pth`` would
        take the earlier end's weights without a word). It goes now, said in one line: removed when the
        checkpoint resumed from holds the same weights (the end writes both), else (that checkpoint was
        lost, another was resumed from) renamed after its iteration, ``model_final_0000004.pth``, which no
        resume takes for a checkpoint. ``model_best.pth`` stays: the best of the run's evaluations so far
        (``best.json`` names its iteration), which this run replaces only with a better one (main process)."""
        final = self.output_dir / FINAL_NAME
        if not final.is_file():
            return
        try:
            held = load_checkpoint(final, map_location="cpu")
        except CheckpointError:
            held = None  # unreadable: which iteration it was is unknown; kept aside all the same
        it = held.get("iteration") if held is not None else None
        until = f"this run goes on to iteration {self.max_iter} and writes its own at its end"
        when = f"iteration {it}'s weights" if isinstance(it, int) else "weights of an unknown iteration"
        what = (f"{FINAL_NAME} (unreadable)" if held is None else f"{FINAL_NAME} ({when}"
                + (", where the run ended before this resume)" if it == self.iteration else ")"))
        try:
            if it == self.iteration and _same_tensors(held["model"], resumed):
                final.unlink()
                self.logger.print(f"removed {what}: {until}; {resumed_from.name}, resumed from, holds the "
                                  "same weights")
            else:
                aside = _free_name(self.output_dir, f"model_final_{it:07d}" if isinstance(it, int) else
                                   "model_final_earlier")  # never over weights set aside before
                os.replace(final, self.output_dir / aside)
                self.logger.print(f"renamed {what} to {aside}: {until}")
        except OSError as e:
            raise CheckpointWriteError(f"could not set {final} aside before training on past iteration "
                                       f"{self.iteration}: {e.strerror or e}") from e
        best = self.output_dir / BEST_NAME
        if self.best is not None and self.best.value is not None and best.is_file():
            self.logger.print(f"{BEST_NAME} (iteration {self.best.iteration}, {self.best.metric} "
                              f"{self.best.value:.2f}) stays: the best so far; an evaluation that beats it "
                              "replaces it")

    def _left_at_the_end(self) -> Optional[dict]:
        """For a checkpoint where the run ends (``max_iter`` reached, or the run had stopped early): what
        the end of the run did not finish before it stopped (a kill while writing ``model_final.pth`` or
        during the final evaluation): {"weights": bool, "eval": bool}, both False for a finished run,
        which a resume then leaves as it is. None when there is training left (every rank: collectives)."""
        stopped = self.iteration < self.max_iter and self._stop_early()  # early: before max_iter only
        if self.iteration < self.max_iter and not stopped:
            return None
        eval_due = (self.evaluate_fn is not None and not stopped
                    and not (self.is_main and self._final_on_record()))
        return {"weights": self.is_main and not self._final_weights_on_disk(),
                "eval": du.any_true(self.is_main and eval_due)}

    def _final_weights_on_disk(self) -> bool:
        """Whether ``model_final.pth`` holds this iteration's weights (main process): a kill before its
        write leaves none, or an earlier, shorter schedule's."""
        try:
            final = load_checkpoint(self.output_dir / FINAL_NAME, map_location="cpu")
        except CheckpointError:
            return False
        return final.get("iteration") == self.iteration

    def _final_on_record(self) -> bool:
        """Whether the final evaluation of this iteration ran to its end before the run stopped (main
        process): with a tracker, its record and the best it leads to (``_evaluated_on_record``)."""
        if self.best is not None:
            return self._evaluated_on_record()
        results = eval_record(self.logger.metrics_path, self.iteration)
        if results:  # {}: an evaluation that returned no results, on record all the same
            self.last_eval = results
        return results is not None

    def _finish_resumed(self) -> bool:
        """A resume where the run ended: only what its end left undone (``_left``), nothing more; a
        finished run is left as it is: no evaluation, no record, no file written. True if it wrote an
        evaluation record (curves.png is drawn again only then)."""
        left, self._left = self._left, None
        todo = ([f"writing {FINAL_NAME}"] if left["weights"] else []) + (
            ["running the final evaluation"] if left["eval"] else [])
        if todo and self.is_main:
            self.logger.print(f"the run was stopped before it had finished: {' and '.join(todo)} now")
        if left["weights"]:  # main process only (see _left_at_the_end)
            self._write_final()
            if self.stopped_early:  # as the uninterrupted run said it
                self.logger.print(self._early_stop_text())
        if left["eval"]:
            self._evaluate()  # one record, results or none (main process)
        return left["eval"]

    def _write_final(self) -> None:
        """``model_final.pth``: this iteration's weights (main process)."""
        self._write_weights(self.output_dir / FINAL_NAME, self.model.state_dict(),
                            what="the final weights", kept_note=" and holds the same weights",
                            iteration=self.iteration, **self.checkpoint_extra)

    def _start_afresh(self) -> None:
        """A resume with no checkpoint starts from iteration 0: what the earlier attempt left of its run
        files (``earlier_run_files``: metrics.jsonl, best.json, curves.png, its TensorBoard event
        files) goes, as a resume from a checkpoint truncates them to it; appended to, iterations 1..k
        would be in metrics.jsonl twice (main process). The run's config.yaml and init_report.json stay
        (the resumed run's own). A folder with finished weights (model_final.pth, model_best.pth) but no
        checkpoint is refused (``finished_without_checkpoint``): starting again would throw them away."""
        refusal = finished_without_checkpoint(self.output_dir, caller=self.caller)
        if refusal:
            raise CheckpointError(refusal)
        if not self.is_main:
            return
        # of the TensorBoard event files, those written before this process started: this run's writer's
        # (open since the logger was made) is newer; the other run files this run has not written yet
        # (no checkpoint or finished weights are here, so a model_*.pth left is not the run's: it stays)
        stale = [p for p in earlier_run_files(self.output_dir)
                 if p.name not in _KEPT_ON_A_FRESH_START and not fnmatch.fnmatch(p.name, "model_*.pth")
                 and (not p.name.startswith("events.out.tfevents.") or p.stat().st_mtime < PROCESS_START)]
        for p in stale:
            p.unlink()
        if stale:
            names = [p.name for p in stale if not p.name.startswith("events.out.tfevents.")]
            events = len(stale) - len(names)
            names += [f"{events} TensorBoard event file(s)"] if events else []
            self.logger.print(f"removed the earlier attempt's {', '.join(names)}")

    def _remove_stale_temps(self) -> None:
        """Temporary files of this folder's checkpoints and records left by a killed run (SIGKILL: no
        cleanup ran), up to a checkpoint's size each: every ``.NAME.<12 hex>.tmp`` of a run file (any of
        ``RUN_FILE_PATTERNS``) that ``io_utils.remove_stale_temps`` finds dead (older than this process,
        unchanged for 10 minutes; main process only: the only writer)."""
        if not self.is_main or not self.output_dir.is_dir():
            return
        names = {temp_target(p.name) for p in self.output_dir.glob(".*.tmp")} - {None}
        for name in sorted(names):
            if any(fnmatch.fnmatch(name, pattern) for pattern in RUN_FILE_PATTERNS):
                remove_stale_temps(self.output_dir / name)

    def load_training_state(self, ckpt: dict) -> None:
        from maskrcnn.engine.caller_words import init_word

        self.model.load_state_dict(ckpt["model"])
        # torch's load_state_dict brings back each group's settings as they were saved; the run goes on
        # with the config's (momentum, weight decay: a resume may change them) and keeps only the state
        # (momentum buffers). Same settings: the same values, and the resume stays exact.
        settings = [{k: v for k, v in g.items() if k not in ("params", "lr", "initial_lr")}
                    for g in self.optimizer.param_groups]
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError:  # groups of other sizes: the weight decays group the parameters otherwise
            theirs = _groups_text(ckpt["optimizer"].get("param_groups", ()))
            raise ValueError(
                f"{self._resume}: the checkpoint's optimizer state does not fit this run's parameter "
                f"groups (the checkpoint's: {theirs}; this run's: "
                f"{_groups_text(self.optimizer.param_groups)}): "
                "solver.weight_decay, weight_decay_norm and weight_decay_bias group the parameters: keep "
                f"the run's values, or start a new run with {init_word(self.caller)}") from None
        for group, kept in zip(self.optimizer.param_groups, settings):
            group.update(kept)
        self.scheduler.load_state_dict(ckpt["scheduler"])  # the position; the lr curve is the config's
        if "scaler" in ckpt and ckpt["scaler"]:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.iteration = int(ckpt["iteration"])
        if "rng" in ckpt:
            set_rng_state(ckpt["rng"])
        self.divergence.load_state_dict(ckpt.get("divergence"))  # absent from older checkpoints
        self._load_best_state(ckpt.get("best_model"))
        self._keep_linear_engine(ckpt.get("linear_engine", _NO_RECORD))  # absent from older checkpoints
        # again after it: each rank kept the checkpoint's engine or its own MASKRCNN_MATMUL pin, and a pin
        # set on one machine only would otherwise split the ranks once more
        self._agree_linear_engine()

    def _agree_linear_engine(self) -> None:
        """Under torchrun on the CPU, every rank's linear layers on rank 0's engine: each process measured
        for itself (``ops.gemm_rates``), at one moment on a shared machine, and may have answered
        otherwise; ranks on engines that round apart would train apart from what the checkpoint (rank
        0's) records, and a resume could not be exact. A ``MASKRCNN_MATMUL`` pin on another rank that
        disagrees is overridden, said by that rank (its logger is rank 0's only). One collective, every
        rank constructing and every rank resuming."""
        if self.world_size <= 1 or self.device.type != "cpu":
            return
        import torch.distributed as dist

        mine = _linear_engine(self.model)
        flag = torch.tensor([1 if mine == "onednn" else 0], device=du.reduce_device())
        dist.broadcast(flag, src=0)
        chosen = "onednn" if flag.item() else "plain"
        if chosen != mine:
            from maskrcnn.ops.onednn_linear import onednn_linear_available

            if chosen == "onednn" and not onednn_linear_available():  # a machine whose build lacks it
                raise RuntimeError(f"rank {self.rank}: rank 0 trains its linear layers on oneDNN, which this "
                                   "process's PyTorch build lacks; set MASKRCNN_MATMUL=blas on every machine")
            _use_linear_engine(self.model, chosen)
            from maskrcnn.ops import gemm_rates

            if gemm_rates.pinned() is not None:
                value = os.environ[gemm_rates.PIN_VARIABLE].strip().lower()
                self.logger.stream.write(
                    f"rank {self.rank}: linear layers on {_ENGINE_NAMES[chosen]}, rank 0's engine (every "
                    f"process trains on one), not on {_ENGINE_NAMES[mine]} as this process's "
                    f"{gemm_rates.PIN_VARIABLE}={value} asks: set it alike on every machine\n")
                self.logger.stream.flush()

    def _keep_linear_engine(self, engine) -> None:
        """The linear layers on the engine the checkpoint's run used (``ops.gemm_rates``: this process's
        measurement may have answered otherwise, and the engines round differently, ~1e-6, which training
        compounds): the resume stays exact. A ``MASKRCNN_MATMUL`` pin wins (said: not bit-exact then).
        None (a run on a GPU: nothing chosen) or resumed on a GPU: as this process chose, silently;
        ``_NO_RECORD`` (an older checkpoint): as chosen, with a note."""
        from maskrcnn.ops import gemm_rates
        from maskrcnn.ops.onednn_linear import onednn_linear_available

        if self.device.type != "cpu" or (engine is _NO_RECORD and not onednn_linear_available()):
            return  # no choice to keep (the GPU; a CPU without oneDNN's linear has only torch.mm)
        now = _linear_engine(self.model)
        if engine is _NO_RECORD:
            self.logger.print("resume: the checkpoint predates the record of its linear layers' engine: "
                              f"they run on {_ENGINE_NAMES[now]}, as this process chose; the resume cannot "
                              "be checked bit-exact (another engine rounds apart, ~1e-6, which training "
                              "compounds)")
            return
        pin = gemm_rates.pinned()
        if pin is not None:  # the pin wins: the model on its engine, whatever the checkpoint says
            pinned_engine = "onednn" if pin and onednn_linear_available() else "plain"
            if pinned_engine != now:
                _use_linear_engine(self.model, pinned_engine)
            now = pinned_engine
        if engine not in _ENGINE_NAMES or engine == now:
            return
        not_exact = "the resume is not bit-exact (the engines round apart, ~1e-6, which training compounds)"
        if pin is not None:
            value = os.environ[gemm_rates.PIN_VARIABLE].strip().lower()
            self.logger.print(f"resume: linear layers on {_ENGINE_NAMES[now]} ({gemm_rates.PIN_VARIABLE}="
                              f"{value}), the run's checkpoint was trained on {_ENGINE_NAMES[engine]}: "
                              f"{not_exact}")
            return
        if engine == "onednn" and not onednn_linear_available():
            self.logger.print("resume: linear layers on torch.mm, the run's checkpoint was trained on "
                              f"oneDNN, which this PyTorch build lacks: {not_exact}")
            return
        _use_linear_engine(self.model, engine)
        measured = gemm_rates.measured_lags()
        why = ("this process measured otherwise" if measured is not None and (measured == (now == "onednn"))
               else f"the model was built on {_ENGINE_NAMES[now]}")
        self.logger.print(f"resume: linear layers on {_ENGINE_NAMES[engine]}, as the run's checkpoint was "
                          f"trained (kept for an exact resume; {why})")

    def _load_best_state(self, state: Optional[dict]) -> None:
        if not state:  # a checkpoint written without tracking: start afresh, resume as before
            return
        if self.best is None and self._best_if_kept is not None:  # eval_period 0 now: the run kept a best
            metric, min_delta = self._best_if_kept
            self.best = BestTracker(metric=metric, patience=0, min_delta=min_delta)
        if self.best is None:
            return
        if state.get("metric") != self.best.metric:
            self.logger.print(
                f"warning: the run kept its best checkpoint by {state.get('metric')}, now by "
                f"{self.best.metric}: the best so far starts afresh (the next evaluation writes {BEST_NAME})")
            return
        self.best.load_state_dict(state)
        # the checkpoint was written before the evaluation due at its iteration: run that one first
        it = self.iteration
        self._eval_pending = (
            0 < it < self.max_iter and self.eval_period > 0 and it % self.eval_period == 0
            and self.best.evaluated_at != it
        )  # fmt: skip

    def _earlier_end_on_record(self) -> bool:
        """With ``eval_period`` 0 and a best kept (``_load_best_state``): the checkpoint where a shorter
        schedule ended predates that end's final evaluation, which is counted from its record
        (``_evaluated_on_record``), so that the longer run's final evaluation must beat the best
        ``best.json`` names (main process; none is due there: none is run without a record)."""
        it = self.iteration
        return (self.is_main and self.best is not None and self.eval_period <= 0 and 0 < it < self.max_iter
                and self.best.evaluated_at != it and self._evaluated_on_record())

    def _evaluated_on_record(self) -> bool:
        """Whether the evaluation the resumed checkpoint predates had run to its end before the run stopped
        (the final one of a shorter schedule, or a kill after it): ``metrics.jsonl`` holds its record and
        ``best.json`` the best it leads to. Then it is counted from the record (the tracker as after it)
        rather than run again: its weights are the checkpoint's, its result would be the same (main
        process)."""
        import copy

        results = eval_record(self.logger.metrics_path, self.iteration)
        if results is None:
            return False
        try:  # {}: an evaluation that returned no results counts as NaN, as _follow_best counts it
            value = metric_value(results, self.best.metric) if results else float("nan")
        except ValueError:  # the record lacks the metric followed now: evaluate again
            return False
        after = copy.deepcopy(self.best)
        after.update(value, self.iteration)
        if after.value is not None:  # the best it leads to must be the one on disk (written before the kill)
            record = self.output_dir / BEST_JSON
            try:
                best = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return False
            if not (isinstance(best, dict) and best.get("metric") == after.metric
                    and best.get("iteration") == after.iteration and best.get("value") == after.value
                    and (self.output_dir / BEST_NAME).is_file()):  # value: the same float (JSON keeps it)
                return False
        self.best = after
        if results:
            self.last_eval = results
        return True

    # ------------------------------------------------------------------ signals
    @contextlib.contextmanager
    def _signals(self):
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            # The first signal only sets a flag: the loop saves at the end of the iteration. A second Ctrl-C
            # stops at once (a stalled loader or a very long step must not make Ctrl-C useless).
            if signum == signal.SIGINT and self._stop_signal is not None:
                # a write in progress removes its temporary file (io_utils)
                raise KeyboardInterrupt(self._stopped_at_once_text())
            if (signum == signal.SIGTERM and self._evaluating
                    and self._ending == "running the final evaluation"):
                # the weights are on disk and a resume runs it; waiting minutes for a whole val set would
                # outlast a scheduler's grace period (docker stop: 10 s), whose SIGKILL says nothing
                first = self._stop_signal or signum  # the first signal counts (a Ctrl-C before: 130)
                raise StoppedBySignal(
                    f"stopped by {stop_signals.signal_name(signum)} after iteration {self.iteration}"
                    f"{self._last_text()}: {self.output_dir / FINAL_NAME} written; final evaluation stopped; "
                    f"continue with {self._resume} to run it", first)
            if self._stop_signal is None:  # the first one: a SIGTERM after a Ctrl-C still exits 130
                self._stop_signal = signum
            if self.is_main and signum == signal.SIGINT:
                # os.write, not print: a handler that prints while the loop prints can hit a reentrant write
                os.write(2, f"\nCtrl-C: {self._ending} first, then the run stops (Ctrl-C again to stop at "
                            "once)\n".encode() if self._ending else
                         b"\nCtrl-C: a checkpoint is saved at the end of this iteration, then the run "
                         b"stops (Ctrl-C again to stop at once, without saving)\n")

        with stop_signals.handling((signal.SIGTERM, signal.SIGINT), handler):  # restored after the run
            yield

    def _stopped_at_once_text(self) -> str:
        """The line of a second Ctrl-C: where it stopped and what is on disk (past the last iteration
        ``model_final.pth`` may be written already: "not saved" would send the user after weights they
        have)."""
        kept = self._kept_checkpoint_text()
        if not self._ending:
            return (f"stopped at once during iteration {self.iteration + 1}, not saved; {kept} (continue "
                    f"with {self._resume})")
        where = f"stopped at once after iteration {self.iteration}{self._last_text()}, while {self._ending}"
        final = f"{self.output_dir / FINAL_NAME} written"
        curves = ", curves.png not drawn" if self._ending == "drawing curves.png" else ""
        if self._end_state == "finished":
            return f"{where}: the run is finished ({final}){curves} (continue with {self._resume} to draw it)"
        if self._end_state == "final":
            return (f"{where}: {final}; final evaluation not run{curves} (continue with {self._resume} to "
                    "run it)")
        if curves:  # after a stop in the loop, which saved its checkpoint
            return f"{where}: {kept}{curves} (continue with {self._resume})"
        return f"{where}, not saved; {kept} (continue with {self._resume})"

    # ------------------------------------------------------------------ loop
    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cpu", dtype=torch.bfloat16)

    def run_step(self, images, targets) -> Dict[str, float]:
        """One iteration (optimizer step) on this process's batch, in ``accumulate`` micro-batches; returns
        each loss term's mean over them."""
        k = self.accumulate
        if len(images) % k:
            raise ValueError(
                f"a batch of {len(images)} images cannot be split into solver.accumulate {k} micro-batches "
                "of equal size (solver.batch_size, per process, must be a multiple of solver.accumulate)")
        size = len(images) // k
        # The model's random sampling (anchors, RoIs) draws from a generator that is a pure function of
        # (seed, iteration, rank): a resumed run then repeats it exactly, whatever else drew from the
        # global RNG in between. The micro-batches draw from it one after the other.
        generator = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.iteration * 9_973 + self.rank) % (2**63 - 1)
        )
        self.optimizer.zero_grad(set_to_none=True)
        sums: Dict[str, float] = {}
        first_bad = None  # (micro-batch, its loss terms): the first whose loss is not finite
        for i in range(k):
            last = i == k - 1
            # DDP all-reduces the gradients in the last micro-batch's backward only: the earlier ones sum
            # into .grad locally (one all-reduce per step, not k)
            local = not last and self.ddp_model is not self.model
            with self.ddp_model.no_sync() if local else contextlib.nullcontext():
                values = self._micro_step(images[i * size:(i + 1) * size], targets[i * size:(i + 1) * size],
                                          generator)
            if first_bad is None and not all(math.isfinite(v) for v in values.values()):
                first_bad = (i, values)
            for name, v in values.items():
                sums[name] = sums.get(name, 0.0) + v
        # one collective per step: every process learns whether any saw a non-finite loss before stepping
        # (the backward of a non-finite loss is harmless: no step follows it), and the first that did
        bad_rank = du.first_rank_with(first_bad is not None)
        if bad_rank is not None:
            self._raise_non_finite(bad_rank, *(first_bad or (None, sums)))
        if self.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {name: v / k for name, v in sums.items()}

    def _raise_non_finite(self, bad_rank: int, part, values: Dict[str, float]) -> None:
        """Stop on a non-finite loss: ``bad_rank`` is the first process whose loss was not finite, ``part``
        this process's first bad micro-batch (None when its loss was finite). Every process stops; only
        ``bad_rank`` names the terms (its own error: ``rank N:``), the others raise one shared text (printed
        once, by rank 0): with 8 GPUs that all went NaN, two lines, not eight."""
        if bad_rank != self.rank:
            raise du.mark_shared(NonFiniteLossError(
                f"non-finite loss at iteration {self.iteration + 1} on rank {bad_rank} (its terms in its own "
                "error); " + self._kept_checkpoint_text()
                + " (a lower solver.lr, solver.clip_grad_norm or a look at the data may help)"
            ))
        terms = ", ".join(f"{k}={v}" for k, v in values.items())
        split = part is not None and self.accumulate > 1
        where = f", micro-batch {part + 1} of {self.accumulate}" if split else ""
        raise NonFiniteLossError(
            f"non-finite loss at iteration {self.iteration + 1} (rank {self.rank}{where}): {terms}; "
            + self._kept_checkpoint_text()
            + " (a lower solver.lr, solver.clip_grad_norm or a look at the data may help)"
        )

    def _micro_step(self, images, targets, generator) -> Dict[str, float]:
        """Forward and backward of one micro-batch (the whole batch when ``accumulate`` is 1), its loss
        divided by ``accumulate``: the summed gradients are those of the micro-batches' mean loss."""
        images = [im.to(self.device, non_blocking=True) for im in images]
        targets = [
            {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets
        ]
        with self._autocast():
            losses = self.ddp_model(images, targets, generator=generator)
        total = sum(losses.values())
        values = {k: float(v.detach()) for k, v in losses.items()}
        if self.accumulate > 1:
            total = total / self.accumulate
        self.scaler.scale(total).backward()
        return values

    def _divergence_text(self, loss: float, lr: float) -> str:
        """``lr``: the one the iteration that gave ``loss`` used."""
        g = self.divergence
        since = self.iteration - g.streak + 1
        kept = self._kept_checkpoint_text()
        if self._saved_at == since - 1:
            # its weights gave the first exploded loss: the step before it may have started the explosion
            kept += " (written just before the first exploded loss: if it diverges again, use the one before)"
        return (
            f"training diverged at iteration {self.iteration}: the total loss has been above {g.factor:g}x "
            f"its median over the last {len(g.history)} good iterations ({g.median:.4g}) since iteration "
            f"{since}, {_in_a_row(g.streak, 'iteration')} (now {loss:.4g}; learning rate "
            f"{lr:.4g}); not saved; {kept}. Try a lower solver.lr, a "
            "longer solver.warmup_iters or gradient clipping (solver.clip_grad_norm), then train again or "
            f"{self._resume} (solver.divergence_factor=0 turns this check off)"
        )

    def _evaluate(self) -> None:
        if self.evaluate_fn is None:
            return
        # Every process evaluates its share of the images (``make_evaluate_fn``: sharded; rank 0 gets the
        # results, the others None): on 8 GPUs 7 no longer wait idle, nor into the collective timeout.
        # Evaluation must not perturb the training RNG streams (exact resume compares them), on any rank.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            state = (np.random.get_state(), random.getstate())
            was_training = self.model.training
            self.model.eval()
            try:
                with self._linear_engine_settled():
                    self._evaluating = True
                    results = self.evaluate_fn(self.model)
            finally:
                self._evaluating = False
                self.model.train(was_training)
                np.random.set_state(state[0])
                random.setstate(state[1])
        if self.is_main:
            if results:
                self.last_eval = results
            # no results (nothing evaluated): a record of the iteration all the same, so that a resume
            # knows it ran (the final evaluation of a run killed after it is not run again)
            self.logger.log_eval(self.iteration, results or {})
            if self.best is not None:
                self._follow_best(results)
        du.barrier()

    def _linear_engine_settled(self):
        """The evaluation copy's engines as the training model's (``gemm_rates.settled``): its linear
        layers, and Winograd's products with them, on the engine the run trains on, which a resume or
        rank 0 may have chosen against this process's measurement (an uninterrupted run measured the
        same answer: unchanged there)."""
        from maskrcnn.ops import gemm_rates

        lags = _linear_engine(self.model) == "onednn" if self.device.type == "cpu" else None
        return gemm_rates.settled(lags)

    def _follow_best(self, results: Optional[dict]) -> None:
        """Count this evaluation; a new best writes ``model_best.pth``, then ``best.json`` (main process).
        An evaluation that cannot count (no results, an undefined metric, non-finite weights) is a NaN
        for the tracker: it only notes the iteration evaluated."""
        # a name the evaluation lacks fails here, listing the ones it has; no results: nothing to compare
        value = metric_value(results, self.best.metric) if results else float("nan")
        if results and math.isnan(value):
            # the evaluation's own reason when it gives one (segm AP of a val set without masks)
            why = (results.get(self.best.metric.split("/", 1)[0]) or {}).get("not_reported")
            self.logger.print(
                f"warning: {self.best.metric} is undefined at iteration {self.iteration} ("
                f"{why if isinstance(why, str) and why else 'no ground truth in that range?'}): this "
                "evaluation does not count for the best checkpoint")
        state = self.model.state_dict()
        if not math.isnan(value) and non_finite_keys(state):
            value = float("nan")  # (the next loss stops the run) such a file would not even load
        if not self.best.update(value, self.iteration):
            return
        path, record = self.output_dir / BEST_NAME, self.output_dir / BEST_JSON
        self._write_weights(path, state, what="the best checkpoint",
                            iteration=self.iteration, best_model=self.best.summary(), **self.checkpoint_extra)
        with self._writing(record, what="the best checkpoint's record"):  # after the weights it describes
            atomic_write_json(record, {**self.best.summary(), "file": BEST_NAME}, indent=2)
        self.logger.print(f"new best {self.best.metric} {value:.2f} at iteration {self.iteration}: {path}")

    def _stop_early(self) -> bool:
        """True on every rank when the main process's tracker has run out of patience."""
        if self.best is None or self.best.patience == 0:
            return False
        return du.any_true(self.is_main and self.best.stop)

    def _early_stop_text(self) -> str:
        b = self.best
        gain = f"a gain of at least {b.min_delta:g}" if b.min_delta > 0 else "an improvement"
        return (
            f"stopped early after iteration {self.iteration} of {self.max_iter}: "
            f"{_in_a_row(b.patience, 'evaluation')} without {gain} in {b.metric}; the best, {b.metric} "
            f"{b.value:.2f} at iteration {b.iteration}, is {self.output_dir / BEST_NAME}; the last weights "
            f"are {self.output_dir / FINAL_NAME}"
        )

    def _loop(self, batches, timer_data: float) -> bool:
        """The training iterations of ``train``; True when a signal stopped them (checkpoint saved)."""
        interrupted = False
        while self.iteration < self.max_iter and not self.stopped_early:
            with torch.random.fork_rng(devices=[]):  # a loader that starts lazily draws here too
                images, targets = next(batches)
            data_time = time.perf_counter() - timer_data
            t0 = time.perf_counter()
            # the lr this step uses: run_step steps the schedule, which then holds the next one's
            lr = self.optimizer.param_groups[0]["lr"]
            values = self.run_step(images, targets)
            self.iteration += 1
            if self.world_size > 1:
                values = du.all_reduce_mean(values)
            self.logger.log_iteration(
                self.iteration,
                values,
                lr=lr,
                iter_time=time.perf_counter() - t0 + data_time,
                data_time=data_time,
            )
            # Every rank judges the same (all-reduced) values: all stop together.
            total = sum(values.values())
            if self.divergence.update(total):
                raise DivergenceError(self._divergence_text(total, lr))
            # The checkpoint before the evaluation: an evaluation that fails (out of memory, a bad
            # validation image) must not cost the iterations since the last checkpoint.
            if self.checkpoint_period > 0 and self.iteration % self.checkpoint_period == 0:
                self._checkpoint_put_off = True
            if self._checkpoint_put_off and self.divergence.streak == 0:
                # not while the loss is above the divergence threshold: those weights may be garbage,
                # and last_checkpoint would point --resume at them
                self._checkpoint_put_off = False
                self.save()
            if (
                self.eval_period > 0
                and self.iteration % self.eval_period == 0
                and self.iteration < self.max_iter
            ):
                self._evaluate()
                if self._stop_early():
                    self.stopped_early = True
                    break
            # the signal's number, not a yes/no: a process that got none exits as the signalled one (128 +
            # it, rank 0's if several got one), not with Ctrl-C's 130 (a signal since is shared next time)
            shared = du.first_nonzero(self._stop_signal or 0)
            stop, self._stop_signal = bool(shared), shared or self._stop_signal
            if stop and self._saved_at != self.iteration:
                self.save()
            if stop:
                interrupted = True
                self.logger.print(
                    f"stopped by a signal after iteration {self.iteration}; checkpoint saved"
                )
                break
            timer_data = time.perf_counter()
        return interrupted

    def _worker_death_error(self, e: RuntimeError) -> Exception:
        """A dead DataLoader worker, in words: the signal the main process got too wins (a SIGTERM to the
        process group: the user's stop, exit 128 + it); a worker that died alone was most likely killed for
        memory (or from outside), and reading the images in the training process avoids the workers."""
        if self._stop_signal is not None:
            name = signal.Signals(self._stop_signal).name
            return StoppedBySignal(
                f"stopped by {name} during iteration {self.iteration + 1}, which ended the DataLoader "
                f"workers too; not saved: {self._kept_checkpoint_text()} (continue with {self._resume})",
                self._stop_signal)
        return RuntimeError(
            f"{str(e).strip().rstrip('.')}: a process reading the training images was ended (most likely "
            "out of memory, or killed from outside); fewer workers "
            f"({self._set_item('data.num_workers', 1)}) or none "
            "(data.num_workers=0: the images are read in the training process itself) work around it")

    def train(self) -> dict:
        """Run to ``max_iter`` (or until a signal, or an early stop); returns {"iteration", "interrupted",
        "signal" (the number of the signal that stopped it, or None), "eval", "stopped_early", "best":
        {"metric", "value", "iteration"} or None; and "end_line", only where a signal came after the last
        iteration: the line said of it}.

        The stop handlers stay installed through the run's end (the last checkpoint, ``model_final.pth``,
        the final evaluation, curves.png): a signal there lets the write in progress finish, skips the
        final evaluation if it has not begun, and says in one line what was written (``_end``); a SIGTERM
        during the final evaluation stops it at once (``StoppedBySignal``: a resume runs it)."""
        self.model.train()
        self._remove_stale_temps()
        with self._signals():  # restored after the run
            return self._train()

    def _train(self) -> dict:
        interrupted = False
        if self._eval_pending:
            self._eval_pending = False
            self.logger.print(f"evaluating iteration {self.iteration} first: its checkpoint was written "
                              "before its evaluation (best checkpoint, early stopping)")
            self._evaluate()
        # also a resumed run that had already stopped early (before max_iter: the final evaluation, counted
        # from its record on a resume, may leave the tracker out of patience, but it stops nothing)
        self.stopped_early = self.iteration < self.max_iter and self._stop_early()
        if self.stopped_early:
            self.logger.print(f"nothing to train: the run had stopped early at iteration {self.iteration} "
                              "(raise solver.early_stop_patience, or set it to 0, to train on)")
        if self._left is not None:  # resumed where the run ended: nothing to train
            did = self._left["weights"] or self._left["eval"]
            self._ending = "finishing the run"
            wrote = self._finish_resumed()
            if self.is_main:  # curves.png: for a new evaluation record, or missing from the end finished now
                # (also of a finished run: a second Ctrl-C while they were drawn left them undrawn)
                curves_missing = not (self.output_dir / "curves.png").is_file()
                self.logger.close(plot=self.plot and (wrote or curves_missing))
            # a signal while it ran: what it was writing was finished, and said so
            end_line = self._end_line(skipped=False) if did and self._stop_signal is not None else ""
            return {**self._result(interrupted=False), **({"end_line": end_line} if end_line else {})}
        # Creating a DataLoader iterator draws from the global RNG: keep that draw out of the
        # training streams, which a resumed run restores from the checkpoint.
        with torch.random.fork_rng(devices=[]):
            batches = iter(self.make_batches(self.iteration))
        timer_data = time.perf_counter()
        try:
            interrupted = self._loop(batches, timer_data)
        except RuntimeError as e:
            if not is_worker_death(e):
                raise
            raise self._worker_death_error(e) from None
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # stops the loader's worker processes now, not when the iterator is collected
        # BN running statistics are per-rank (DDP only broadcasts them before each forward): end with rank
        # 0's everywhere, as saved in the checkpoints (a no-op for one process)
        du.broadcast_buffers(self.model)
        finished = not interrupted
        if finished:
            interrupted = self._end()
        if self.is_main:
            self._ending = "drawing curves.png"
            self.logger.close(plot=self.plot)
        end_line = self._end_line(skipped=interrupted) if finished and self._stop_signal is not None else ""
        return {**self._result(interrupted=interrupted), **({"end_line": end_line} if end_line else {})}

    def _end(self) -> bool:
        """The end of a run that reached its last iteration: the last checkpoint, ``model_final.pth``, the
        final evaluation. A stop signal during it (the handlers are still installed) lets the write in
        progress finish; the final evaluation, if it has not begun, is not run (a resume runs it).
        Returns whether it was skipped (the run is then not finished: 128 + the signal)."""
        self._ending = "writing the last checkpoint"
        if self._saved_at != self.iteration:
            self.save()  # full state at the end too, so that a longer run can resume from it
        if self.is_main:
            self._ending = f"writing {FINAL_NAME}"
            self._write_final()
        self._end_state = "final"
        if self.stopped_early:  # the weights were evaluated just now (or before the resume)
            if self.is_main:  # (only the main process's tracker has seen the evaluations)
                self.logger.print(self._early_stop_text())
            self._end_state = "finished"
            return False
        shared = du.first_nonzero(self._stop_signal or 0) if self.evaluate_fn is not None else 0
        if shared:  # every rank alike, the signal's number too (each process exits 128 + it)
            self._stop_signal = shared
            return True
        self._ending = "running the final evaluation"
        self._evaluate()  # last: the run's weights are on disk whatever the evaluation does
        self._end_state = "finished"
        return False

    def _end_line(self, *, skipped: bool) -> str:
        """The line of a stop signal that came during the run's end (said by the main process): what was
        written, and the final evaluation if it was ``skipped``."""
        name = stop_signals.signal_name(self._stop_signal)
        written = f"{self.output_dir / FINAL_NAME} written"
        after = f"after iteration {self.iteration}{self._last_text()}"
        line = (f"stopped by {name} {after}: {written}; final evaluation not run (continue with "
                f"{self._resume} to "
                "run it)" if skipped else
                f"{name} came {after}, during the run's end: it was finished ({written})")
        if self.is_main:
            self.logger.print(line)
        return line

    def _last_text(self) -> str:
        return " (the last)" if self.iteration >= self.max_iter else ""

    def _result(self, *, interrupted: bool) -> dict:
        return {
            "iteration": self.iteration, "interrupted": interrupted, "eval": self.last_eval,
            "signal": self._stop_signal if interrupted else None,
            "stopped_early": self.stopped_early,
            "best": self.best.summary() if self.best is not None else None,
        }



def world_size_note(saved, now: int) -> str:
    """The note of a resume under another number of processes than the checkpoint's run had ("" when the
    same, or unknown: a checkpoint from before the count was stored). The global batch holds the same
    images in the same order (the sampler slices it by position), but the anchor and RoI sampling draws
    are seeded per process (``run_step``): the resume goes on as a run of ``now`` processes would, not
    bit-exactly as the interrupted one."""
    if not isinstance(saved, int) or saved == now:
        return ""
    def words(n: int) -> str:
        return f"{n} process{'es' if n != 1 else ''}"

    return (f"note: resumed with {words(now)}, the run had {words(saved)}: each iteration trains on the same "
            "images, but the random sampling draws (anchors, RoIs) differ, so the resume is not bit-exact")


def build_trainer(
    cfg,
    model: nn.Module,
    *,
    make_batches: Callable[[int], Iterator],
    output_dir,
    class_names,
    device="cpu",
    evaluate_fn=None,
    checkpoint_extra: Optional[dict] = None,
    best_metric: Optional[str] = None,
    **kwargs,
) -> Trainer:
    """Read ``cfg.solver`` once and build optimizer, scheduler and trainer (``solver.best_metric`` auto is
    resolved here: segm/AP with masks, else bbox/AP). ``best_metric``: the metric to follow instead, as
    resolved from the data (``training.best_metric_for``: bbox/AP for a validation set of rectangles)."""
    s = cfg.solver
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, s)
    return Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        make_batches=make_batches,
        max_iter=s.iters,
        output_dir=output_dir,
        config=cfg,
        class_names=class_names,
        checkpoint_extra=checkpoint_extra,
        checkpoint_period=s.checkpoint_period,
        log_period=s.log_period,
        clip_grad_norm=s.clip_grad_norm,
        amp=s.amp,
        device=device,
        evaluate_fn=evaluate_fn,
        eval_period=s.eval_period,
        seed=cfg.seed,
        divergence_guard=DivergenceGuard(
            factor=s.divergence_factor,
            window=s.divergence_window,
            patience=s.divergence_patience,
        ),
        best_metric=best_metric or resolve_metric(s.best_metric, mask_on=cfg.model.roi_heads.mask_on),
        early_stop_patience=s.early_stop_patience,
        early_stop_min_delta=s.early_stop_min_delta,
        accumulate=s.accumulate,
        **kwargs,
    )
