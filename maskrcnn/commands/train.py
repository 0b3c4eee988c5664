"""``maskrcnn train``: train on COCO-format data.

    maskrcnn train --config PRESET_OR_YAML [--set key=value ...] --train-json J [--train-images D]
                   [--val-json J [--val-images D]] --output RUN_DIR [--resume | --overwrite] [--init WEIGHTS]
                   [--device D]

``RUN_DIR/run.json`` records the data arguments (as given and as absolute paths, ``engine/run_data.py``):
``--resume`` without them trains on the run's data ("data from the run: ..."); given and different, a
warning names them (an exact resume needs the run's data); recorded paths that are gone are one error.

A RUN_DIR holding an earlier run's files (checkpoints, ``metrics.jsonl``, ``config.yaml``) is refused
unless ``--resume`` continues that run or ``--overwrite`` replaces it (both together: a usage error).
One run at a time per RUN_DIR: the launch's rank 0 holds ``RUN_DIR/.lock`` for the run's duration
(``engine/run_lock.py``); a second run into it is refused ("RUN_DIR is in use by another training run
(pid N)"). Training images that could not be read (each replaced by another, ``data/coco.py``) are
counted and named in one line at the end.

``--resume`` goes on with the run's own ``RUN_DIR/config.yaml`` (model, solver, input, data): ``--config``
is not needed. ``--set`` changes a setting on resume (one line says each change: ``resume: solver.iters
900 -> 1200 (from --set)``; an lr or schedule change takes effect from the next iteration); model settings
are the run's (the model is built from its checkpoint's stored config; asked-for ones, and a ``config.yaml``
model section edited since, are named in a warning). A ``--config``
given with ``--resume`` is not applied: its values that differ from the run's are named in one warning
(``engine/training.py``).

``--init WEIGHTS`` (``model.init_weights``) starts from a checkpoint of ours, a torchvision or detectron2
detector or an ImageNet backbone (file, URL or published name); the config follows the weights, class
rows are kept for classes whose names match, and ``RUN_DIR/init_report.json`` lists what was loaded
(``engine/init_weights.py``). Without ``--config``, a detector as ``--init`` trains with the ``finetune``
preset (one line says so; ``--config r50_fpn`` for the from-scratch recipe), an ImageNet backbone with
``r50_fpn``; ``--set`` applies over either, and the model keys the weights imply are followed as usual.

``model.num_classes`` and ``data.class_names`` come from the training set (a ``model.num_classes`` set
with ``--set`` or in the YAML file that differs is named in a note, with the data's); the label -> category id
map travels in every checkpoint; the final config is written to ``RUN_DIR/config.yaml``. With a validation
set and ``solver.eval_period`` > 0, ``RUN_DIR/model_best.pth`` and ``best.json`` follow the best
``solver.best_metric`` so far; ``solver.early_stop_patience`` ends the run when it stops improving
(``engine/best_model.py``). A finished run's last line names its weights (``finished_line``: "done:
iteration N; final weights: RUN_DIR/model_final.pth; best segm/AP 41.20 (iteration M):
RUN_DIR/model_best.pth").
Ctrl-C (SIGINT) or SIGTERM saves a checkpoint at the end of the iteration, says "stopped at iteration N;
continue with --resume" and exits with 130 (SIGINT) or 143 (SIGTERM), not 0: the run is not finished
(the first signal counts: a SIGTERM after a Ctrl-C still exits 130). After the last iteration the write
in progress is finished and one line says what was written (``Trainer.train``): 143 / 130 when the final
evaluation was skipped or (SIGTERM) stopped, 0 when nothing was. A SIGTERM during the set-up: "stopped
by SIGTERM: before training started; no checkpoint written", 143. Under ``torchrun --max-restarts N``
that non-zero status is a failure torchrun restarts the workers for (``--max-restarts 0`` to stop).
A SIGTERM sent to the whole process group (``timeout``, ``kill -- -PGID``) also ends the DataLoader workers,
and PyTorch reports their death mid-iteration: the signal's line wins ("stopped by SIGTERM during iteration
N, which ended the DataLoader workers too; not saved: ..."), exit 143. A worker that died alone (most likely
out of memory) is one error saying so, with the way round it (``--set data.num_workers=0``).
``--resume`` of a folder with finished weights (``model_final.pth``) and no checkpoint is refused.
Multi-process: ``torchrun --nproc_per_node P -m maskrcnn.cli train ...`` (``solver.batch_size`` is the
total over all processes).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

HELP = "train on COCO-format data"


class _NotWith(argparse.Action):
    """A flag (store_true) that is a usage error beside ``other``: ``--resume --overwrite`` would both
    continue the run and delete it."""

    def __init__(self, option_strings, dest, *, other: str, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)
        self.other = other

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.other, False):
            parser.error("--resume and --overwrite contradict each other: --resume continues the run in "
                         "--output, --overwrite deletes it to start a new one; give one of them")
        setattr(namespace, self.dest, True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None,
                   help="a preset name or a YAML file (default r50_fpn; finetune when --init is a detector; "
                        "--resume: the run's config.yaml)")
    p.add_argument(
        "--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides"
    )
    p.add_argument("--train-json", help="COCO instances JSON of the training set (required; --resume: the "
                                        "run's, from RUN_DIR/run.json, when left out)")
    p.add_argument("--train-images",
                   help="folder of the training images (default, from the export's layout: the folder of "
                        "--train-json when it holds images (Roboflow's), a folder named after the JSON "
                        "(train/ beside train.json; val2017/ beside or above instances_val2017.json), its "
                        "images/ or data/, ../images; of several, the one holding most of its file_names; "
                        "of none, the JSON's folder)")
    p.add_argument("--val-json", help="COCO JSON of the validation set (evaluated every solver.eval_period)")
    p.add_argument("--val-images",
                   help="folder of the validation images (default: from the validation JSON's layout as for "
                        "--train-images, or the --train-images folder when that holds more of its images)")
    p.add_argument("--output", required=True, help="run folder: checkpoints, metrics.jsonl, config.yaml")
    p.add_argument("--resume", action=_NotWith, other="overwrite",
                   help="continue from RUN_DIR/last_checkpoint")
    p.add_argument("--overwrite", action=_NotWith, other="resume",
                   help="start a new run in a RUN_DIR that holds an earlier run's files (they are replaced)")
    p.add_argument("--init", metavar="WEIGHTS", default=None,
                   help="start from these weights: our checkpoint, a torchvision / detectron2 / MMDetection "
                        "detector or an ImageNet ResNet / ResNeXt (file, URL or published name, e.g. "
                        "maskrcnn_resnet50_fpn_coco, resnext50_32x4d, "
                        "detectron2://ImageNetPretrained/MSRA/R-50.pkl; FILE#ema: a torchvision detector "
                        "file's EMA copy 'model_ema'); sets model.init_weights")
    p.add_argument("--device", default=None,
                   help="auto | cpu | cuda | cuda:N; mps, xpu accepted, untested (default: config's device)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _sets_key(written: frozenset, overrides: dict, dotted: str) -> bool:
    """Whether the user set ``dotted`` (a ``section.name`` key) with ``--set`` (``config.set_keys``) or in
    the ``--config`` file (``written``: its keys, ``load_config_keys``'): the training set decides
    ``model.num_classes`` and ``data.class_names``, and a value asked for that differs is named in a note."""
    from maskrcnn.config import set_keys

    return dotted in written or dotted in set_keys(overrides)


def default_config(init, *, resume: bool, say, reads=None, caller: str = "maskrcnn train") -> str:
    """The preset when ``--config`` is left out: ``finetune`` when ``--init`` is a whole detector (ours, or
    torchvision's, detectron2's, MMDetection's), said in one line (``say``) with how to choose otherwise;
    ``r50_fpn`` (the from-scratch recipe: lr 0.02, 16 images, 90k iterations) otherwise: no ``--init``, an
    ImageNet backbone, weights that cannot be read (their refusal comes later), and ``--resume`` (the run's
    own config.yaml). ``reads``: a ``FileReads`` keeping the file read here for the run's weights.
    ``caller``: how the line names the options (``caller_words``: ``maskrcnn.train()``'s keywords)."""
    if not init or resume:
        return "r50_fpn"
    from maskrcnn.interop.weights import init_kind

    if init_kind(init, reads=reads) != "detector":
        return "r50_fpn"
    from maskrcnn.engine.caller_words import given, option_word

    config = option_word(caller, "--config")
    say(f"{config} not given: {given(caller, '--init', init)} is a detector, so the finetune preset's recipe "
        "is used (4 images per iteration, lr 0.005, 2000 iterations, validation and a checkpoint every 500; "
        f"{option_word(caller, '--set')} changes any of it); {given(caller, '--config', 'r50_fpn')} for the "
        "from-scratch recipe")
    return "finetune"


def run(args) -> int:
    return exit_status(run_training(args, stop_at_set_up=True))


@contextlib.contextmanager
def _sigterm_stops_set_up():
    """A SIGTERM while the run is set up (the data read, the model built, a checkpoint loaded: minutes on a
    big dataset) stops it with one line, "stopped by SIGTERM: before training started; no checkpoint
    written", exit 143, as Ctrl-C does, not silently. The command's own (``run``): a program calling
    ``maskrcnn.train`` keeps its handlers; the earlier one is back after the set-up."""
    from maskrcnn.stop_signals import StoppedBySignal, handling

    def stop(signum, frame):
        raise StoppedBySignal("before training started; no checkpoint written", signum)

    with handling((signal.SIGTERM,), stop):
        yield


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM recorded, not acted on, while a run that has ended leaves the process group
    (``du.cleanup``'s barrier): under torchrun a rank that returned from ``train()`` before rank 0 had
    written model_final.pth waited there with the default handlers, so torchrun's SIGTERM killed it and
    rank 0 then failed on the lost peer ("another process stopped") after a finished run. The trainer has
    already said how the run ended; the previous handlers are back after (main thread only)."""
    from maskrcnn.stop_signals import handling

    with handling((signal.SIGINT, signal.SIGTERM), lambda signum, frame: None):
        yield


def run_training(args, *, config_said=None, caller="maskrcnn train", stop_at_set_up=False) -> dict:
    """The run the arguments ask for; returns the trainer's result ({"interrupted", "iteration",
    "signal", ...}; a stop mid-iteration, not saved: also "stopped", its line): ``run`` makes it an exit
    status, ``maskrcnn.train`` an exception. ``config_said``: how messages name ``--config`` where its file
    means nothing to the user (``maskrcnn.train`` given a Config object writes it to a temporary one).
    ``caller``: who asks ("maskrcnn.train()": refusals name its keywords, not the options).
    ``stop_at_set_up``: a SIGTERM during the set-up stops it with a line (the command's, ``run``)."""
    from maskrcnn.engine import distributed as du
    from maskrcnn.engine.run_data import DATA_ARGUMENTS
    from maskrcnn.engine.run_lock import run_lock
    from maskrcnn.io_utils import check_output_dir

    check_output_dir(args.output)
    given = {name: getattr(args, name) or None for name in DATA_ARGUMENTS}
    if args.resume and not given["train_json"]:
        nothing = nothing_to_resume(args.output)
        if nothing:  # before the lock: taking it would make the folder
            raise ValueError(f"{args.output}: no training run to resume there ({nothing}); --train-json is "
                             "required to start one (the training set's COCO JSON)")
    # one run per folder: a second one into it would overwrite this one's checkpoints and metrics
    with run_lock(args.output) if du.env_world()[0] == 0 else contextlib.nullcontext():
        return _locked_run(args, given, config_said=config_said, caller=caller, stop_at_set_up=stop_at_set_up)


def nothing_to_resume(output) -> str:
    """Why ``output`` holds no run a ``--resume`` could continue ("no such folder", ...); "" when it
    holds one (its ``run.json``, a checkpoint or its pointer)."""
    from maskrcnn.engine.run_data import RUN_DATA
    from maskrcnn.engine.trainer import LAST_CHECKPOINT, checkpoint_candidates

    output = Path(output)
    if not output.is_dir():
        return "no such folder"
    if (output / RUN_DATA).is_file() or (output / LAST_CHECKPOINT).is_file() or checkpoint_candidates(output):
        return ""
    return f"the folder holds no {RUN_DATA}, {LAST_CHECKPOINT} or checkpoint"


def _locked_run(args, given: dict, *, config_said=None, caller="maskrcnn train",
                stop_at_set_up=False) -> dict:
    from maskrcnn.engine import distributed as du
    from maskrcnn.engine.trainer import StoppedBySignal
    from maskrcnn.engine.training import unread_line, unread_run_line, unread_share

    # the setup is every process's alike (one config, one annotation file): its warnings and skipped
    # records are said by rank 0 alone; from the first iteration each process reads its own share
    with du.setup_said_by_rank0(), _sigterm_stops_set_up() if stop_at_set_up else contextlib.nullcontext():
        trainer = _set_up(args, given, config_said=config_said, caller=caller)
    try:
        try:
            with du.warnings_name_the_rank():  # each process warns of the images its own batches read
                result = trainer.train()
        except BaseException:  # the others may be in a collective, or gone: this process's own share
            line = unread_line(getattr(trainer, "unread_images", ()))
            if line:
                share = f" (rank {du.get_rank()}'s share)" if du.get_world_size() > 1 else ""
                print(line + share, flush=True)
            raise
        # every process got here (its stop shared): one line for the run, from rank 0, each image once (two
        # processes may both have met it); each sends its count and the names the line shows, not them all
        shares = du.gather_objects(unread_share(getattr(trainer, "unread_images", ())))
        line = unread_run_line(shares) if shares is not None else ""
        if line:
            print(line, flush=True)
    except StoppedBySignal as e:  # mid-iteration, its DataLoader workers ended by the same signal
        du.cleanup(wait_for_peers=False)
        if trainer.is_main:
            print(e, file=sys.stderr)
        return {"interrupted": True, "signal": e.signum, "saved": False, "stopped": str(e)}
    except BaseException as e:
        du.cleanup(wait_for_peers=False)
        du.mark_own(e)  # this process's (its batches, its memory): printed with its rank under torchrun
        raise
    with _signals_held():  # under torchrun the other ranks get here first, their handlers already restored
        du.cleanup()
    if result["interrupted"] and result.get("end_line"):
        pass  # stopped after the last iteration: the trainer said what its end wrote and what it skipped
    elif result["interrupted"] and trainer.is_main:  # once, not once per process
        from maskrcnn.engine.caller_words import option_word

        print(f"stopped at iteration {result['iteration']}; continue with {option_word(caller, '--resume')}")
    elif getattr(trainer, "is_main", du.get_rank() == 0):  # a caller's stand-in may not say
        line = finished_line(args.output, result)
        if line:
            print(line, flush=True)
    return result


def finished_line(output, result: dict) -> str:
    """The last line of a finished run: where its weights are, as ``predict`` and ``eval`` end saying what
    they wrote (``done: iteration 30; final weights: RUN/model_final.pth; best segm/AP 33.28 (iteration
    30): RUN/model_best.pth``). Only files that are there are named ("" when there is none)."""
    from maskrcnn.engine.trainer import BEST_NAME, FINAL_NAME

    output = Path(output)
    parts = []
    if (output / FINAL_NAME).is_file():
        parts.append(f"final weights: {output / FINAL_NAME}")
    best = result.get("best") or {}
    if best.get("value") is not None and (output / BEST_NAME).is_file():
        parts.append(f"best {best['metric']} {best['value']:.2f} (iteration {best['iteration']}): "
                     f"{output / BEST_NAME}")
    return (f"done: iteration {result.get('iteration')}; " + "; ".join(parts)) if parts else ""


def _set_up(args, given: dict, *, config_said=None, caller="maskrcnn train"):
    """The trainer of the run the arguments ask for, its data read and its files written."""
    from maskrcnn.commands.data_report import image_dir_or_default
    from maskrcnn.config import load_config_keys, parse_set_args
    from maskrcnn.engine import distributed as du
    from maskrcnn.engine.caller_words import option_word
    from maskrcnn.engine.device import resolve_device
    from maskrcnn.engine.run_data import RUN_DATA, record_run_data, resume_data_arguments
    from maskrcnn.engine.training import build_training
    from maskrcnn.interop.file_reads import FileReads

    data = dict(given)
    if args.resume:  # the data arguments left out: the run's (RUN_DIR/run.json)
        data = resume_data_arguments(args.output, given, du.say_on_launch_rank0, caller=caller)
    if not data["train_json"]:
        raise ValueError(f"{option_word(caller, '--train-json')} is required (the training set's COCO JSON)"
                         + (f"; {Path(args.output) / RUN_DATA} records no run's data to resume on"
                            if args.resume else ""))
    # the train JSON read to choose its image folder: the training set takes it, not read twice; the
    # validation JSON not kept (held while the training set is built it would double the memory)
    parsed: dict = {}
    train_images = option_word(caller, "--train-images")  # "train_images=" for maskrcnn.train()
    data["train_images"] = image_dir_or_default(data["train_images"], data["train_json"], train_images,
                                                parsed=parsed)
    if data["val_json"]:
        data["val_images"] = image_dir_or_default(data["val_images"], data["val_json"],
                                                  option_word(caller, "--val-images"),
                                                  also=(data["train_images"], train_images))
    overrides = parse_set_args(args.set, word=option_word(caller, "--set"))
    if args.init:
        overrides["model.init_weights"] = args.init
    # the --init file read to choose the preset is the one whose weights start the run: read once
    reads = FileReads()
    # the preset's note is held for build_training to say once every check has passed: a run refused on
    # its data said "--config not given: ... finetune preset" before its one error
    held: list = []
    config = args.config or default_config(overrides.get("model.init_weights"), resume=args.resume,
                                           say=held.append, reads=reads,
                                           caller=caller)  # --init, or --set model.init_weights
    cfg, written = load_config_keys(config, overrides)  # the --config file read once
    trainer, cfg = build_training(
        cfg,
        train_json=data["train_json"],
        train_images=data["train_images"],
        val_json=data["val_json"],
        val_images=data["val_images"],
        output=args.output,
        # None: the config's (the run's)
        device=resolve_device(args.device, what="--device") if args.device else None,
        resume=args.resume,
        overwrite=args.overwrite,
        asked_num_classes=(cfg.model.num_classes if _sets_key(written, overrides, "model.num_classes")
                           else None),
        asked_class_names=(cfg.data.class_names if _sets_key(written, overrides, "data.class_names")
                           else None),
        overrides=overrides,
        config_named=args.config,
        config_keys=written,
        init_reads=reads,
        config_said=config_said,
        parsed=parsed,
        caller=caller,
        held_lines=held,
    )
    parsed.clear()  # not held during the run
    reads.clear()  # what the weights' reading did not take (a --resume, a file changed in between): not
    del reads  # held during the run
    if du.get_rank() == 0:  # the run folder exists now; a later --resume reads its data from here
        record_run_data(args.output, given=given, resolved=data)
    return trainer


def exit_status(result: dict) -> int:
    """0 for a finished run (early stop included); 128 + the signal's number for one a signal stopped
    (130 Ctrl-C, 143 SIGTERM), as a shell reports a process the signal ended: ``train ... && next-step``
    and job schedulers must not take a stopped run (checkpoint saved, to be resumed) for a finished one."""
    if not result.get("interrupted"):
        return 0
    from maskrcnn.stop_signals import exit_status as signal_exit_status

    return signal_exit_status(int(result.get("signal") or signal.SIGINT))
