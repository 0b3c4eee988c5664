"""Training assembly: datasets, transforms, model, loader, evaluation and ``Trainer`` from one config.

``build_training(cfg, ...)`` is what ``maskrcnn train`` and ``maskrcnn demo`` run; it reads the config
(``model.num_classes`` and ``data.class_names`` come from the training set: a ``model.num_classes``
asked for that differs is named in a note, with the data's) and writes ``RUN_DIR/config.yaml`` (under
torchrun only once every process has set up: a start one of them refused leaves nothing behind). It
leaves the process's RNG state alone: the initial weights are drawn from a generator seeded with
``cfg.seed`` inside ``torch.random.fork_rng``, the same on every rank.

``model.init_weights`` (``--init``) starts the run from existing weights (``engine/init_weights.py``): the
config follows the weights, the model is loaded from them and ``RUN_DIR/init_report.json`` says what was
loaded. A resumed run continues from its own checkpoint with the config it was started with
(``RUN_DIR/config.yaml``: model, solver, input, data, seed, device), not a preset's; the init is not applied
again. Its model section is the one stored in the checkpoint resumed from (``_checkpoints_model``: a
``config.yaml`` edited since is named in a warning, key by key, and written back; a run folder without
``config.yaml`` goes on with the whole config stored in that checkpoint, said in a note). Settings asked for
explicitly (``--set``, the ``overrides`` argument) go over it: solver, input and data changes are applied, one
line each (``resume: solver.iters 900 -> 1200 (from --set)``; the trainer then follows the new lr and
schedule, ``engine/trainer.py``); a value of ``config.yaml`` outside the model edited since the checkpoint is
applied and said the same way (``resume: input.max_size 1333 -> 1024 (from config.yaml, not the
checkpoint's: an edit, or an earlier --resume's --set)``, ``_edited_keys``: a resume's ``--set`` is written
there before the run's next checkpoint);
model settings that differ from the run's are named in a warning line (they are not applied: the checkpoint
holds that model). A ``--config`` given with ``--resume`` is not applied
either: its values that differ from the run's are named in one warning (model keys in the model warning), so
that only what ``--set`` says changes. The written ``config.yaml`` is what the resumed run uses. The training
set's class names must be the run's: a changed class list is refused before anything loads.

``solver.best_metric`` and ``solver.early_stop_patience`` (the best checkpoint and early stopping,
``engine/best_model.py``) are checked against the model and the data before anything trains
(``check_best_metric``): a metric the model's evaluation cannot report, or early stopping without a
validation set, is one error line now rather than at the first evaluation. A validation set whose
objects all lack a mask (rectangles) has no segm AP: ``auto`` then follows ``bbox/AP`` (one warning line)
and a ``segm/*`` metric the user set is refused (``best_metric_for``).

``solver.accumulate`` must divide each process's share of ``solver.batch_size`` (checked here, where the
number of processes is known); schedule settings the run does not use (``solver.steps`` other than a
preset's with the cosine schedule, ``solver.lr_min_factor`` with the step one) and a warm-up as long as
the run are said in note lines (``schedule.schedule_notes``). A training set without a usable image is
one error saying why (image files not found, only crowd annotations); images ``data.filter_empty`` left
out (no annotations, only crowd ones) and those ``data.min_keypoints_per_image`` left out of a keypoint
run are counted by reason in one note line (``left_out_line``). The set-up's note and warning lines are
said once every check has passed: a refused run says its one error line alone.

A training size set explicitly (``--set``, a ``--config`` file) without its test size brings it along
(``follow_training_sizes``: ``input.min_size_test`` the largest ``input.min_size``, ``input.max_size_test``
the ``input.max_size``; a note says so); a test size more than 2x from the training sizes is warned of
(``input_size_notes``).

A run that starts from no weights (no ``model.init_weights``, not a resume) with frozen layers
(``model.freeze_at`` > 0) or frozen batch norm is refused before anything is read
(``frozen_parts.untrained_frozen_refusal``): those parts would stay random for the whole run.

``data.repeat_threshold`` > 0 turns on repeat-factor sampling (``data/repeat_factors.py``): the factors
are computed here once from the training annotations and a summary is printed (rank 0).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from maskrcnn.config import INPUT_SIZE_KEYS
from maskrcnn.engine.caller_words import init_word, new_run, option_word, set_item, set_word
from maskrcnn.engine.trainer import RUN_FILE_PATTERNS, earlier_run_files  # noqa: F401 (importable here)
from maskrcnn.listing import short_listing
from maskrcnn.shell import shell_word

INIT_REPORT = "init_report.json"


# Keys a run's config takes from its training set (for keypoints, from the person category) or, for
# init_weights, from --init (checked on its own), not from what is asked: a resumed run keeps the run's
# and ``build_training`` fills them from the data again; a preset's value is no change asked for.
DATA_KEYS = ("model.num_classes", "model.roi_heads.num_keypoints", "model.init_weights", "data.class_names",
             "data.keypoint_names", "data.keypoint_skeleton", "data.keypoint_classes")


def _asked(key: str, overrides: dict) -> bool:
    """Whether ``--set`` named ``key`` (or a section above it: ``--set solver={...}``)."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in overrides for i in range(1, len(parts) + 1))


def _resumed_config(cfg, output: Path, say, *, overrides=None, config_named=None, from_checkpoint=True,
                    notes=None, config_said=None, read=None, caller="maskrcnn train"):
    """The config a resumed run really uses: the run's own ``config.yaml`` as the base (model, solver,
    input, data, seed, device: the run goes on with the settings it was started with), then what this
    command asks for explicitly, and the run's class names.

    ``overrides`` (dotted keys: ``--set``, ``--init``) are the settings asked for explicitly: those outside
    ``model.`` are applied over the run's config, each change said in a line (``resume: solver.iters 900
    -> 50 (from --set)``); ``config_named`` (the ``--config`` given, if one was) is not applied: its values
    that differ from the run's are named in one warning line. ``overrides=None`` (library callers) takes
    every value of ``cfg`` as asked for: all of its non-model settings are applied (each change said, as
    "from the config"). Model settings are never applied (the checkpoint holds the run's model); those
    asked for that differ from the run's are named in the model warning line. An ``--init`` that differs
    from the run's is an error, the same one is not applied again (``from_checkpoint`` False: the run has
    no checkpoint yet and starts again from scratch with its own settings, its own ``--init`` included).
    ``notes``: a list that takes the change lines, to be said once the run is known to go on (said at
    once without it). ``config_said``: how the lines name that config (``config_phrase``). ``read``: a dict
    that takes the checkpoint read for its config (``_checkpoints_config``), for ``Trainer.resume``.
    ``caller``: how the lines name the changes asked for ("--set", or ``maskrcnn.train()``'s "set=":
    ``caller_words``)."""
    from maskrcnn.config import (
        PRESETS,
        apply_overrides,
        config_file_keys,
        flatten_sections,
        load_config,
        set_keys,
        validate_config,
    )

    resume = option_word(caller, "--resume")  # "--resume", or maskrcnn.train()'s "resume=True"
    saved_path = output / "config.yaml"
    later = say if notes is None else notes.append  # said once the run goes on (config.yaml written)
    edited = {}  # key -> the checkpoint's value, where config.yaml was edited since (_edited_keys)
    if saved_path.is_file():
        saved = load_config(str(saved_path), stored=True)
        if from_checkpoint:
            read = {} if read is None else read  # the checkpoint read once, for both
            saved = _checkpoints_model(saved, saved_path, later, read=read, caller=caller)
            edited = _edited_keys(saved, read)
    else:
        # a run folder copied without its config.yaml (or the file deleted): the checkpoint's own config
        # is the run's (the preset's model was built, and torch's kilobytes of load_state_dict errors said)
        held = _checkpoints_config(output, read=read) if from_checkpoint else None
        if held is None:
            return cfg, ()
        saved, path = held
        later(f"note: {resume}: {output} has no config.yaml: the run goes on with the config stored in "
              f"{path.name}, which is written as {saved_path.name}")
    everything = overrides is None
    overrides = dict(overrides or {})
    asked = flatten_sections(cfg.to_dict(), cfg)
    kept = flatten_sections(saved.to_dict(), saved)
    # Set from the data or from the weights the run started from, not asked for: a preset's value differs.
    # A key the weights set that this command names itself (--set, or written in the --config file) is
    # asked for all the same: not applied to the model, it is named in the model warning like any other.
    explicit = set_keys(overrides) | set(config_file_keys(config_named))
    derived = {*DATA_KEYS, *(k for k in _followed_weights(output) if k not in explicit)}
    # set_keys, not _asked: --set data={filter_empty: false} names filter_empty, not the flip map
    if "data.keypoint_flip_map" not in set_keys(overrides):  # the pairs the run derived and stored
        derived.add("data.keypoint_flip_map")

    asked_init, started = cfg.model.init_weights, saved.model.init_weights
    # a --config file: only the keys it wrote are asked for (the rest are its base preset's, not the
    # user's: other.yaml holding solver.lr alone was said to differ in ~20 of r50_fpn's keys)
    from_file = config_named and config_named not in PRESETS
    file_keys = set(config_file_keys(config_named)) if from_file else set()

    def named(key: str) -> bool:  # asked for at all: by --set, or by a --config given
        if everything or _asked(key, overrides):
            return True
        return bool(config_named) and (not from_file or _asked(key, dict.fromkeys(file_keys)))

    if not named("model.init_weights"):
        asked_init = ""  # the default preset's init_weights: nothing asked
    if asked_init and asked_init != started:
        raise ValueError(
            f"{option_word(caller, '--init')} {asked_init}: {output} is a run started from "
            f"{started or 'random initialisation'}; {option_word(caller, '--resume')} continues that run "
            f"from its last checkpoint and never loads other weights. To fine-tune from {asked_init}, "
            f"choose another {option_word(caller, '--output')}.")
    if asked_init and from_checkpoint:
        say(f"{resume}: continuing from the run's checkpoint; {option_word(caller, '--init')} {asked_init} "
            "was applied when the run started and is not applied again")

    differing = [k for k in asked if k not in derived and asked[k] != kept.get(k)]
    ignored = [f"{k}={asked[k]!r} (the run's: {kept.get(k)!r})" for k in sorted(differing)
               if k.startswith("model.") and named(k)]
    if ignored:
        why = ("its checkpoint holds that model" if from_checkpoint else
               f"{output} holds no checkpoint yet: the run starts again from scratch with its own settings")
        say(f"warning: {resume} keeps the run's model config ({why}); not applied: {', '.join(ignored)}")
    applied = [k for k in differing if not k.startswith("model.") and (everything or _asked(k, overrides))]
    from_config = [k for k in differing if not k.startswith("model.") and k not in applied and named(k)]
    if from_config:
        listed = ", ".join(f"{k}={asked[k]} (the run's: {kept.get(k)})" for k in from_config)
        said = config_phrase(config_named, config_said)
        say(f"warning: {resume} goes on with the run's settings ({saved_path}); {said} "
            f"differs in {listed}: not applied (on {option_word(caller, '--resume')} only {set_word(caller)} "
            "changes a setting)")
    # stored=True: the run's own values stand (fractional solver.steps earlier versions took); those asked
    # for are checked as any config to train with is
    cfg = apply_overrides(saved, {k: asked[k] for k in applied}, stored=True)
    if applied:
        validate_config(cfg, keys=tuple(applied))
    source = "the config" if everything else set_word(caller)
    # one list of changes, whatever asked for them: (key, the run's value, the new one, where from); a key
    # edited in config.yaml and --set again is said once, from --set
    changes = [(k, kept.get(k), asked[k], source) for k in applied]
    # config.yaml differing from the checkpoint is all that is known: an edit, or an earlier resume's change
    # written there by a run stopped before its next checkpoint (not the user's edit, then)
    from_file = (f"{saved_path.name}, not the checkpoint's: an edit, or an earlier "
                 f"{option_word(caller, '--resume')}'s {set_word(caller)}")
    changes += [(k, edited[k], kept.get(k), from_file) for k in sorted(edited) if k not in applied]
    for k, was, now, where in changes:
        said = "" if where == source else f" (from {where})"  # --set's warnings predate naming it
        if k == "data.repeat_threshold":  # applied, but the epochs change
            say(f"warning: {resume} with data.repeat_threshold={now:g}{said}, the run's was {was:g}: the "
                "images drawn from now on differ from the run's")
        elif k == "solver.batch_size":  # applied, but iteration t is now batch t of another epoch plan
            say(f"warning: {resume} with solver.batch_size={now}{said}, the run's was {was}: the images "
                "drawn from now on differ from an uninterrupted run's (the order is planned per iteration "
                f"and batch size), and solver.iters counts batches of {now}")
        else:
            later(f"resume: {k} {was} -> {now} (from {where})")
    return cfg, tuple(saved.data.class_names)


# Keys build_training fills in from the training data (DATA_KEYS and what the photos showed of their EXIF
# frame), not settings: a config.yaml value of theirs that differs from the checkpoint's is no edit to say.
_FILLED_KEYS = frozenset(DATA_KEYS) | {"data.exif_frame_seen"}


def _edited_keys(saved, read: dict) -> dict:
    """{key: the checkpoint's value} for each setting outside ``model.`` (solver, input, data, seed,
    device) of the run's ``config.yaml`` (``saved``) that differs from the config stored in the checkpoint
    resumed from (``read``, as ``_checkpoints_config`` fills it): an edited lr, input size or loader key
    was applied without a word, while the same change by ``--set`` was said. Model keys are the
    checkpoint's anyway (``_checkpoints_model``); keys filled from the data are left out (``_FILLED_KEYS``).
    Empty when no checkpoint loads."""
    from maskrcnn.config import flatten_sections, from_dict

    if not read.get("checkpoint") or "config" not in read["checkpoint"]:
        return {}
    held = from_dict(read["checkpoint"]["config"], stored=True)
    ours, theirs = (flatten_sections(c.to_dict(), c) for c in (saved, held))
    return {k: theirs[k] for k in theirs
            if not k.startswith("model.") and k not in _FILLED_KEYS and ours.get(k) != theirs[k]}


def _checkpoints_model(saved, saved_path: Path, say, read=None, caller="maskrcnn train"):
    """``saved`` (the run's ``config.yaml``) with the model section of the checkpoint the resume continues
    from, the one ``Trainer.resume`` loads (the first of ``checkpoint_candidates`` that loads): its weights
    are of that model. A ``config.yaml`` whose model section was edited, or copied from another run, made
    the model from the file: torch's kilobytes of ``load_state_dict`` errors for a shape, and a
    shape-neutral setting (``pooler_aligned``, ``mask_paste``, ``frozen_bn_eps``) applied without a word.
    The differing keys are named in one warning, with both values; ``config.yaml`` is written back with
    the checkpoint's once it has loaded. ``saved`` as it is when no checkpoint loads (``resume`` says why)."""
    from maskrcnn.config import flatten_sections

    found = _checkpoints_config(saved_path.parent, read=read)
    if found is None:
        return saved
    held, path = found
    ours, theirs = (flatten_sections(c.to_dict(), c) for c in (saved, held))
    differing = [k for k in theirs if k.startswith("model.") and ours.get(k) != theirs[k]]
    if not differing:
        return saved
    shown = [f"{k}={ours.get(k)!r} (the checkpoint's: {theirs[k]!r})" for k in differing[:_SHOWN_KEYS]]
    more = len(differing) - len(shown)
    listed = ", ".join(shown) + (f" and {more} more model key{'s' if more > 1 else ''}" if more > 0 else "")
    say(f"warning: {option_word(caller, '--resume')}: {saved_path} differs from the checkpoint it "
        f"continues from ({path.name}) in "
        f"{listed}; the checkpoint's model is used (its weights are of that model), and {saved_path.name} "
        "is written back with it")
    saved = saved.copy()
    saved.model = held.model
    return saved


def _checkpoints_config(run_dir: Path, read=None):
    """``(Config, path)``: the config stored in the checkpoint a resume of ``run_dir`` continues from, the
    one ``Trainer.resume`` loads (``trainer.read_resume_checkpoint``); None when none loads (``resume``
    says why). ``read`` (a dict) takes what was read, ``{"path", "checkpoint", "errors"}``:
    handed to ``Trainer.resume``, the checkpoint is read once (hundreds of MB, on every process)."""
    from maskrcnn.config import from_dict
    from maskrcnn.engine.trainer import read_resume_checkpoint

    found = read_resume_checkpoint(run_dir)
    if found["path"] is None:
        return None
    if read is not None:
        read.update(found)
    return from_dict(found["checkpoint"]["config"], stored=True), found["path"]


_SHOWN_KEYS = 8  # differing model keys a resume's warning lists by name (another run's config: dozens)


def _refused_config_phrase(config_named, config_said, caller: str, output: Path, resume: bool) -> str:
    """How the refusal of frozen parts over random weights names the config: the run's config.yaml on a
    resume that starts over, the default preset where none was named (with no weights it is always
    r50_fpn: ``commands.train.default_config``), else ``config_phrase``'s."""
    if resume and (output / "config.yaml").is_file():
        return f"{output / 'config.yaml'} (the run's config)"
    if config_named or config_said:
        return config_phrase(config_named, config_said)
    return {"maskrcnn train": "the default config r50_fpn (no --config given)",
            "maskrcnn.train()": "the default config r50_fpn (no config= given)",
            "maskrcnn demo": "the demo's config"}.get(caller, "the config")


def config_phrase(config_named, config_said=None) -> str:
    """How a message names the config the run was given: ``config_said`` where the caller gave one
    (``maskrcnn.train`` with a Config object: "the Config given to train()", not the temporary file it
    was written to), else ``--config FILE``; "the config" for none given."""
    return config_said or (f"--config {config_named}" if config_named else "the config")


def _explicit_keys(keys, overrides: dict | None, config_named: str | None,
                   config_keys: frozenset | None = None, config_said: str | None = None, *,
                   caller: str = "maskrcnn train") -> dict:
    """{key: "--set" | "--config FILE"} for those of ``keys`` the user set explicitly: named by ``--set``
    (in a section's mapping too), or written in the YAML file given as ``--config`` (``config_keys``, as
    ``config.load_config_keys`` gave them; None: read from ``config_named``; a preset sets nothing
    explicitly; ``config_said``: as ``config_phrase``). ``init_weights.follow_weights_keeping`` keeps these
    where the weights only suggest. ``caller``: how ``--set`` is named ("set=" for ``maskrcnn.train()``:
    ``caller_words.set_word``)."""
    from maskrcnn.config import config_file_keys, set_keys

    named = set_keys(overrides or {})
    out = {k: set_word(caller) for k in keys if k in named}
    in_file = (config_file_keys(config_named) if config_keys is None else config_keys) if config_named else ()
    said = config_phrase(config_named, config_said)
    out.update({k: said for k in keys if k in in_file and k not in out})
    return out


def _followed_weights(output: Path) -> list:
    """The dotted config keys that the run's ``--init`` weights set (``init_report.json``): the model's,
    and input settings such as detectron2's ``input.resize_method``."""
    import json

    try:
        changes = json.loads((output / INIT_REPORT).read_text(encoding="utf-8")).get("config_changes") or {}
    except (OSError, ValueError, AttributeError):
        return []
    return [k for k in changes if isinstance(k, str)]


def check_resumed_classes(run_classes: tuple, data_classes: tuple, *, output: Path, train_json,
                          caller: str = "maskrcnn train") -> None:
    """A resumed run's training set must name the run's classes in the run's order: the checkpoint's class
    rows follow that order, so another list would load wrong or fail on shapes deep in ``load_state_dict``."""
    if not run_classes or tuple(run_classes) == tuple(data_classes):
        return
    run_set, data_set = list(run_classes[1:]), list(data_classes[1:])
    added = [c for c in data_set if c not in run_set]
    missing = [c for c in run_set if c not in data_set]
    what = "; ".join(x for x in (
        f"new in the data: {', '.join(added)}" if added else "",
        f"no longer in the data: {', '.join(missing)}" if missing else "",
        "the same names in another order" if not added and not missing else "",
    ) if x)  # fmt: skip
    raise ValueError(
        f"{option_word(caller, '--resume')}: {output} was trained on the classes {', '.join(run_set)}, "
        f"but {train_json} has "
        f"{', '.join(data_set)} ({what}); a resumed run continues with the same classes. To train on the "
        f"new set from this run's weights, start a new run: "
        f"{new_run(caller, _weights_to_start_from(output))}")


def _weights_to_start_from(output: Path) -> str:
    """The run's file a new run could start from, as a shell word: ``model_final.pth`` when there is one,
    else its newest ``model_NNNNNNN.pth`` (a run stopped before its end has no final weights)."""
    final = Path(output) / "model_final.pth"
    if final.is_file():
        return shell_word(final)
    checkpoints = sorted(Path(output).glob("model_[0-9]*.pth"))
    if checkpoints:
        return shell_word(checkpoints[-1])
    return f"{shell_word(final)} (or its newest model_*.pth)"  # none here now: the form to look for


def _read_init_weights(spec: str, rank: int, world_size: int, *, reads=None):
    """The weights on every rank; rank 0 downloads first, so that the others find them in the cache.
    ``reads``: this process's ``FileReads`` (the file the preset was chosen by, read once)."""
    from maskrcnn.engine import distributed as du
    from maskrcnn.interop.weights import read_weights

    source = read_weights(spec, reads=reads) if rank == 0 else None
    if world_size > 1:
        du.barrier()
    return source if source is not None else read_weights(spec, reads=reads)


def place_for_training(model: torch.nn.Module, device) -> torch.nn.Module:
    """The model on ``device``, its 4-d weights channels_last on the CPU: oneDNN's convolutions then run
    without reordering each input, and the multi-level RoIAlign reads the FPN maps and returns their
    gradients in place (measured 2-4% of an R18-FPN training step on a 2-core CPU; same values).
    Activations follow the weights' layout; checkpoints hold the same values in either layout.
    Where ``torch.mm`` lags oneDNN's matrix product (``ops.gemm_rates``: AMD CPUs with AVX-512), the
    linear layers are ``OneDnnLinear``s, forward and backward by oneDNN (same parameters and keys)."""
    device = torch.device(device)
    if device.type == "cpu":
        from maskrcnn.modeling.fuse import use_onednn_linear
        from maskrcnn.ops.gemm_rates import matmul_lags_onednn
        from maskrcnn.ops.onednn_linear import onednn_linear_available

        model = model.to(device=device, memory_format=torch.channels_last)
        if onednn_linear_available() and matmul_lags_onednn():
            use_onednn_linear(model)
        return model
    return model.to(device)


def _batch_share_refusal(solver, world_size: int, *, caller: str, run_config=None) -> str:
    """Why ``solver.batch_size`` cannot be shared by ``world_size`` processes, and the ways out: a batch
    they share (each process's share also divisible by ``solver.accumulate``), or a number of processes
    that divides it. ``run_config``: the resumed run's config.yaml, where the value comes from (a resume
    refused with the value alone left the user looking for it in the command)."""
    batch, step = solver.batch_size, world_size * solver.accumulate
    other = set_item(set_word(caller), "solver.batch_size", -(-batch // step) * step)
    counts = [str(n) for n in range(1, min(batch, 64) + 1) if batch % (n * solver.accumulate) == 0][:6]
    # none with a solver.accumulate that does not divide the batch either: only another batch size helps
    listed = ", ".join(counts[:-1]) + " or " + counts[-1] if len(counts) > 1 else "".join(counts)
    counts_text = f"a number of processes that divides {batch} ({listed})" if counts else ""
    if run_config is not None:
        return (f"solver.batch_size {batch} (the run's, from {run_config}) is not divisible by {world_size} "
                f"processes: resume with {counts_text + ', or with ' if counts else ''}{other} (a batch of "
                "another size: the images drawn from then on differ from an uninterrupted run's)")
    return (f"solver.batch_size {batch} is not divisible by {world_size} processes, which take equal shares "
            f"of the batch: {other}{', or start ' + counts_text if counts else ''}")


def _noting_unread(batches, unread: dict):
    """``batches`` with the files each sample replaced (``coco.UNREAD_IMAGES``, set by the process that
    read it, maybe a DataLoader worker) taken out of its target and noted in ``unread``."""
    from maskrcnn.data.coco import UNREAD_IMAGES

    for images, targets in batches:
        for target in targets:
            for path in target.pop(UNREAD_IMAGES, ()):
                unread[path] = None
        yield images, targets


UNREAD_LISTED = 10  # names of unread images the run's last line shows; the rest are counted


def unread_line(unread, *, total=None, at_most: bool = False) -> str:
    """The training images that could not be read during the run, one line ("" when none): each was
    warned about once as it failed, and a sample of another image trained in its place. ``total``: how
    many there were when ``unread`` holds only some of them (``unread_run_line``); ``at_most``: that
    count may hold an image twice (two processes met it, neither named it)."""
    paths = list(unread)
    total = len(paths) if total is None else total
    if not total:
        return ""
    more = total - min(len(paths), UNREAD_LISTED)
    listed = ", ".join(str(p) for p in paths[:UNREAD_LISTED]) + (f", ... ({more} more)" if more else "")
    return (f"warning: {'up to ' if at_most else ''}{total} training image(s) could not be used "
            f"(unreadable, or not the size their record gives) and were replaced by other images: {listed}")


def unread_share(unread) -> tuple:
    """What a process sends rank 0 for the run's unread-images line: (how many it met, the first
    ``UNREAD_LISTED`` names): a run over a folder of broken files gathered every name of every process on
    rank 0, to print ten of them."""
    paths = list(unread)
    return len(paths), paths[:UNREAD_LISTED]


def unread_run_line(shares) -> str:
    """The run's one unread-images line from every process's ``unread_share``: each image named once (two
    processes may both have met it). Where every process sent all its names the count is exact; else the
    names not sent are counted as each process met them, and the line says "up to" when more than one
    process counted (an image two of them met and neither named counts twice)."""
    shares = [(int(n), list(sent)) for n, sent in shares or ()]
    named = list(dict.fromkeys(p for _, sent in shares for p in sent))
    unsent = sum(n - len(sent) for n, sent in shares)
    at_most = bool(unsent) and sum(1 for n, _ in shares if n) > 1
    return unread_line(named, total=len(named) + unsent, at_most=at_most)


def left_out_line(skipped: dict, kept: int, min_keypoints: int = 1) -> str:
    """What the training set's filters left out, one line ("" when nothing): ``skipped`` as
    ``CocoDataset.skipped`` counts it, ``kept`` the images that train, ``min_keypoints`` the
    ``data.min_keypoints_per_image`` that skipped ``image_with_too_few_keypoints``. Every image left out is
    in it by reason, so its "N of M" adds up: left out without a word, a user counting images wonders where
    they went. Crowd-only images count apart, in the words of the no-usable-image error: the losses ignore
    crowd regions, so with filter_empty=false such an image trains as a background image too, its crowd
    regions ignored."""
    empty = skipped.get("image_without_annotations", 0)
    crowd = skipped.get("image_with_only_crowd_annotations", 0)
    few = skipped.get("image_with_too_few_keypoints", 0)
    if not empty and not crowd and not few:
        return ""
    total = kept + empty + crowd + few
    crowd_words = "only crowd annotations (iscrowd 1: regions the losses ignore)"
    few_words = ("no labelled keypoint (data.min_keypoints_per_image 1)" if min_keypoints == 1 else
                 f"fewer than {min_keypoints} labelled keypoints (data.min_keypoints_per_image)")
    # the setting that keeps each kind: a keypoint-less image trains the box (and mask) heads only
    few_keeps = (f"data.min_keypoints_per_image=0 keeps {'them' if few > 1 else 'it'} for the box "
                 "(and mask) heads")
    reasons = [(n, what) for n, what in ((empty, "no annotations"), (crowd, crowd_words), (few, few_words))
               if n]
    if len(reasons) == 1:
        n, what = reasons[0]
        keeps = (few_keeps if few else "data.filter_empty=false keeps them as background images"
                 + ("" if empty else ", crowd regions ignored"))
        return (f"{n} of {total} training images {_has(n)} {what} and {'is' if n == 1 else 'are'} left out "
                f"({keeps})")
    keeps = []
    if empty or crowd:
        keeps.append("data.filter_empty=false keeps " + ("them" if not few else "those without objects")
                     + " as background images" + (", their crowd regions ignored" if crowd else ""))
    if few:  # with another reason: a single reason took the early return
        keeps.append("data.min_keypoints_per_image=0 those with too few keypoints, for the box (and mask) "
                     "heads")
    listed = ", ".join(f"{n} {_has(n)} {what}" for n, what in reasons)
    return (f"{empty + crowd + few} of {total} training images are left out: {listed}; "
            f"{'; '.join(keeps)}")


def skip_words(skipped: dict) -> str:
    """``CocoDataset.skipped`` in words, most frequent first: "image without annotations: 47; missing
    image file: 3" (the raw dict read as Python, not as a reason)."""
    if not skipped:
        return "nothing"
    ordered = sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))
    return "; ".join(f"{reason.replace('_', ' ')}: {n}" for reason, n in ordered)


def keypoint_config_refusal(cfg, train_set, config_named=None, config_said=None, *,
                            caller="maskrcnn train") -> str:
    """One line when ``cfg`` trains keypoints (``model.roi_heads.keypoint_on``) and the training file
    has none (no category names a keypoint set, no kept annotation holds keypoints), else "". Every
    annotation was then skipped as having no keypoint, and the run failed with "no usable training
    image", the reason unsaid. ``config_said``: as ``config_phrase``; ``caller``: as ``caller_words``."""
    if not cfg.model.roi_heads.keypoint_on or train_set.defines_keypoints:  # (unnamed: read as COCO's 17)
        return ""
    config = config_phrase(config_named, config_said)
    if getattr(train_set, "keypoints_of_other_count", None):  # all of another count than COCO's 17
        return (f"{train_set.json_path}: its annotations' keypoints hold {train_set.keypoint_counts_text()} "
                f"but no category names them (COCO's 17 were assumed), and {config} trains keypoints "
                "(model.roi_heads.keypoint_on): name them in the category's 'keypoints' list (and "
                "'skeleton')")
    return (f"{train_set.json_path}: no category defines keypoints (a 'keypoints' list of names) and no "
            f"annotation holds any, but {config} trains keypoints (model.roi_heads.keypoint_on); train "
            "boxes and masks with a mask config (--config r50_fpn), or "
            f"{set_item(set_word(caller), 'model.roi_heads.keypoint_on', False)}")


def stale_flip_map_note(pairs, config_names, names, *, source, caller="maskrcnn train") -> str:
    """A note when ``data.keypoint_flip_map`` (``pairs``, not given with ``--set``) is of another keypoint
    set than the training file's (``names``), as when a run's config.yaml is reused with other data:
    pairs by name naming a keypoint the file lacks (they failed, naming the config's keypoint), or pairs
    by index of a config whose ``data.keypoint_names`` (``config_names``) are not the file's (they
    swapped other points, unsaid); "" when the pairs fit. The caller derives the map from the names."""
    names = [str(n) for n in names or ()]
    if not names:  # a file without keypoint names: the config's names (and pairs) stand
        return ""
    ends = [v for p in pairs or () if isinstance(p, (list, tuple)) for v in p]
    missing = [str(v) for v in dict.fromkeys(v for v in ends if isinstance(v, str)) if v not in names]
    by_index = any(isinstance(v, int) and not isinstance(v, bool) for v in ends)
    other_set = by_index and config_names and [str(n) for n in config_names] != names
    if not missing and not other_set:
        return ""
    from maskrcnn.shown_text import display_name  # the names from a file, escaped as in its problem lines

    if missing:
        why = f"names {short_listing(map(display_name, missing), limit=5)}, not among its keypoints"
    else:
        listed = short_listing(map(display_name, config_names), limit=5)
        why = f"is by index into the config's keypoints ({listed}), not its own"
    return (f"note: {source}: the config's data.keypoint_flip_map ({flip_line(pairs)}) {why}: the pairs are "
            f"derived from its keypoint names instead ({_flip_map_item(caller)} gives them)")


def _flip_map_item(caller: str) -> str:
    """How ``caller`` gives flip pairs: ``--set data.keypoint_flip_map='[[a, b], ...]'``."""
    word = set_word(caller)
    return set_item(word, "data.keypoint_flip_map", None,
                    shown="'[[a, b], ...]'" if word.startswith("--") else "[[a, b], ...]")


def flip_line(pairs) -> str:
    """``flip_pairs_line`` of configured pairs as written ([a, b] lists, of indices or names)."""
    from maskrcnn.data.keypoints import flip_pairs_line

    return flip_pairs_line([tuple(p) for p in pairs if isinstance(p, (list, tuple)) and len(p) == 2])


def _has(n: int) -> str:
    return "has" if n == 1 else "have"


def input_size_notes(inp) -> list:
    """Note lines for sizes that cannot act as set: a ``min_size`` above ``max_size`` never applies (the
    scale is min(min_size / shorter side, max_size / longer side), and the second is the smaller), so every
    image is scaled to a longer side of ``max_size`` (for training, each such choice the same one)."""
    notes = []
    train = [int(s) for s in inp.min_size] if isinstance(inp.min_size, (list, tuple)) else [int(inp.min_size)]
    above = [s for s in train if s > inp.max_size]
    if above:
        sizes, to = ", ".join(map(str, above)), f"to a longer side of {inp.max_size} pixels"
        which = (f"every training image is scaled {to}" if len(above) == len(train) else
                 f"an image drawn at {sizes} is scaled {to} instead" if len(above) == 1 else
                 f"an image drawn at any of {sizes} is scaled {to} instead, so they act as one size")
        notes.append(f"note: input.min_size {sizes} above input.max_size {inp.max_size} never applies: "
                     f"{which} (raise input.max_size to train at the shorter side asked for; the presets' "
                     "ratio is 800 to 1333)")
    if inp.min_size_test > inp.max_size_test:
        notes.append(f"note: input.min_size_test {inp.min_size_test} above input.max_size_test "
                     f"{inp.max_size_test} never applies: evaluation and predict scale every image to a "
                     f"longer side of {inp.max_size_test} pixels")
    # a model tested at several times the scale it learnt sees objects of sizes it never met: AP near 0
    # for weights that are fine (both sizes set apart on purpose: still said, once)
    low, high = min(train), max(train)
    if inp.min_size_test > _SCALE_APART * high or inp.min_size_test * _SCALE_APART < low:
        above = inp.min_size_test > high
        how = (f"{inp.min_size_test / high:.1f}x the largest input.min_size {high}" if above
               else f"{low / inp.min_size_test:.1f}x smaller than the smallest input.min_size {low}")
        notes.append(f"warning: input.min_size_test {inp.min_size_test} is {how}: validation, eval and "
                     "predict see objects at another scale than training; set input.min_size_test (and "
                     "input.max_size_test) near the training sizes unless that is meant")
    return notes


_SCALE_APART = 2  # test / training shorter side beyond which input_size_notes warns


def follow_training_sizes(cfg, explicit: dict) -> tuple:
    """(cfg, note lines): a test size not set explicitly follows a training size that was (``explicit``:
    ``_explicit_keys`` of the four input size keys): ``input.min_size_test`` becomes the largest
    ``input.min_size``, ``input.max_size_test`` the ``input.max_size``. ``--set input.min_size=[128]`` alone
    otherwise left validation, eval and predict at the preset's 800 px, ~6x the scale trained at."""
    from maskrcnn.config import apply_overrides

    inp, changed, by = cfg.input, {}, []
    sizes = inp.min_size if isinstance(inp.min_size, (list, tuple)) else (inp.min_size,)
    for train_key, test_key, value in (("input.min_size", "input.min_size_test", max(int(s) for s in sizes)),
                                       ("input.max_size", "input.max_size_test", int(inp.max_size))):
        if train_key in explicit and test_key not in explicit:
            current = getattr(inp, test_key.split(".")[1])
            if current != value:
                changed[test_key] = (current, value)
                by.append(f"{train_key} ({explicit[train_key]})")
    if not changed:
        return cfg, []
    cfg = apply_overrides(cfg, {k: v for k, (_old, v) in changed.items()})
    listed = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
    return cfg, [f"note: {listed}: the test sizes follow {' and '.join(by)}, so validation, eval and predict "
                 "see images at the training scale (set input.min_size_test / input.max_size_test to choose "
                 "others)"]


def check_best_metric(cfg, *, has_val: bool, caller: str = "build_training") -> None:
    """``solver.best_metric`` and early stopping against this model and data, before any training: a
    metric the model's evaluation cannot report (``segm/AP`` without masks) and early stopping without a
    validation set are errors now, not at the first evaluation hours in. ``caller``: as ``caller_words``."""
    from maskrcnn.engine.best_model import resolve_metric, unavailable_metric_problem
    from maskrcnn.engine.inference import iou_types

    s = cfg.solver
    if s.early_stop_patience > 0 and not has_val:
        raise ValueError(f"solver.early_stop_patience {s.early_stop_patience} needs a validation set to "
                         f"evaluate on: give {option_word(caller, '--val-json')} (and "
                         f"{option_word(caller, '--val-images')} where its images are elsewhere; or set it "
                         "to 0)")
    metric = resolve_metric(s.best_metric, mask_on=cfg.model.roi_heads.mask_on)
    problem = metric and has_val and s.eval_period > 0 and unavailable_metric_problem(metric, iou_types(cfg))
    if problem:
        raise ValueError(problem)


def best_metric_for(cfg, val_set, val_json, *, caller="maskrcnn train") -> tuple:
    """(the metric the best checkpoint follows, a warning line or ""), once the validation set is read.

    A validation set whose objects all lack a mask (rectangles: box and empty segmentation) has no segm
    AP (``evaluator._run_segm``: NaN, ``not_reported``), so a run following ``segm/*`` never wrote
    ``model_best.pth`` and never counted its patience. ``auto`` then follows ``bbox/AP``, said in the
    line; a ``segm/*`` metric the user set is refused (ValueError) before anything trains. ``caller``: as
    ``caller_words``."""
    from maskrcnn.engine.best_model import AUTO, resolve_metric

    s = cfg.solver
    metric = resolve_metric(s.best_metric, mask_on=cfg.model.roi_heads.mask_on)
    if not metric or not metric.startswith("segm/") or s.eval_period <= 0:
        return metric, ""
    objects, without_mask = val_set.object_mask_counts()  # keypoints without a segmentation: no mask
    if not objects or without_mask < objects:
        return metric, ""
    why = (f"none of the {objects} objects of the validation set {val_json} has a mask (each has a box "
           f"and no segmentation), so its segm AP is never reported")
    if str(s.best_metric).strip().lower() != AUTO:
        raise ValueError(f"solver.best_metric {metric}: {why}; follow a bbox metric (e.g. "
                         f"{set_item(set_word(caller), 'solver.best_metric', 'bbox/AP')}) or none")
    return "bbox/AP", f"warning: solver.best_metric auto follows bbox/AP, not segm/AP: {why}"


def build_training(
    cfg,
    *,
    train_json,
    train_images,
    output,
    val_json=None,
    val_images=None,
    device="cpu",
    resume=False,
    overwrite=False,
    log_stream=None,
    trainer_kwargs=None,
    asked_num_classes=None,
    asked_class_names=None,
    overrides=None,
    config_named=None,
    config_keys=None,
    init_reads=None,
    config_said=None,
    parsed=None,
    weights_given=False,
    caller="build_training",
    held_lines=(),
):
    """Datasets, model, loader and Trainer for ``cfg``; returns (trainer, cfg with dataset fields set).

    ``asked_num_classes``: a ``model.num_classes`` the user set (``--set``, a YAML file); it is not
    applied (the training set decides), and a note says so when it differs from the data's; so for
    ``asked_class_names`` (``data.class_names``).
    A resumed run uses its own ``config.yaml`` with ``overrides`` (the dotted keys asked for explicitly,
    ``--set``) over it; ``config_named``: the ``--config`` given, whose other values are named in a
    warning, not applied; ``overrides=None`` applies all of ``cfg``'s non-model settings
    (``_resumed_config``). ``config_keys``: the keys that file wrote (``config.load_config_keys``; None:
    read from ``config_named``), kept over what ``--init`` weights only suggest. ``device`` None: the
    config's (the run's, on resume). ``init_reads``: the ``FileReads`` the preset was chosen with
    (``commands.train.default_config``): the ``--init`` file it read is not read again. ``config_said``:
    how messages name the config given, where ``--config FILE`` would mislead (``config_phrase``).
    ``parsed``: {JSON path: the parsed file}, the train JSON if choosing its image folder read it
    (``data_report.image_dir_or_default``): taken from there, not read again (the validation JSON is
    not held there: it would be kept in memory while the training set is built).
    ``weights_given``: True when the caller loads trained weights into ``trainer.model`` itself after this
    returns (``benchmarks/ablations.py`` loads a demo's backbone, frozen): frozen parts are then not
    refused as random (``frozen_parts.untrained_frozen_refusal``). ``caller``: who asks, a key of
    ``frozen_parts.CALLERS`` ("maskrcnn train", "maskrcnn demo", "maskrcnn.train()"; this function's
    own keywords by default): how that refusal spells its way out. ``held_lines``: the caller's set-up
    lines (``commands.train.default_config``'s preset note), said first once every check has passed, as
    this function's own: a refused run says its one error, not a note before it."""
    from maskrcnn.config import plain_config, preset_solver_steps, save_config, set_keys
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.data.keypoints import (
        FlipMapError,
        flip_pairs,
        flip_pairs_line,
        keypoint_flip_map,
        keypoint_sigmas,
        no_flip_pairs,
        pairs_nothing,
    )
    from maskrcnn.data.loader import build_train_loader
    from maskrcnn.data.transforms import build_train_transforms
    from maskrcnn.engine import distributed as du
    from maskrcnn.engine.device import resolve_device
    from maskrcnn.engine.frozen_parts import frozen_line, untrained_frozen_refusal
    from maskrcnn.engine.inference import check_keypoint_count, ground_truth, make_evaluate_fn
    from maskrcnn.engine.init_weights import follow_weights_keeping, initialise_model, summary_lines
    from maskrcnn.engine.same_setup import check_same_setup
    from maskrcnn.engine.schedule import schedule_notes
    from maskrcnn.engine.trainer import (
        build_trainer,
        checkpoint_candidates,
        finished_without_checkpoint,
        no_training_state,
    )
    from maskrcnn.io_utils import atomic_write_json
    from maskrcnn.modeling.mask_rcnn import build_model

    output = Path(output)
    if (val_json is None) != (val_images is None):
        raise ValueError(f"{option_word(caller, '--val-json')} and {option_word(caller, '--val-images')} go "
                         "together")
    # a checkpoint whose last_checkpoint pointer a kill prevented counts too: trainer.resume() loads it
    resuming = resume and bool(checkpoint_candidates(output))
    earlier = earlier_run_files(output)
    if earlier and not resume and not overwrite:
        names = short_listing((p.name for p in earlier), limit=5)
        raise ValueError(
            f"{output} already holds a training run ({names}); pass {option_word(caller, '--resume')} to "
            f"continue it, {option_word(caller, '--overwrite')} to replace it, or choose another "
            f"{option_word(caller, '--output')}")
    refusal = finished_without_checkpoint(output, caller=caller) if resume else ""
    if refusal:  # before anything is written: the config.yaml of a fresh start would replace the run's
        raise ValueError(refusal)

    # the set-up's lines (the schedule's notes, the data's, a resume's changes) wait until every check has
    # passed: a run refused on its data or its validation set says its one error, not notes before it
    waiting: list = list(held_lines)

    def say(line: str) -> None:
        if waiting is not None:
            waiting.append(line)
        else:
            du.say_on_launch_rank0(line, file=log_stream)

    def checks_passed() -> None:
        nonlocal waiting
        lines, waiting = waiting, None
        for line in lines:
            say(line)

    source, changes, kept, run_classes, resume_notes = None, {}, {}, (), []
    read: dict = {}  # the checkpoint resumed from, read once for its config and its weights
    if resume:  # before the device: the run's config names it unless asked otherwise
        # also with no checkpoint yet (the run starts again from scratch with its own settings)
        cfg, run_classes = _resumed_config(cfg, output, say, overrides=overrides, config_named=config_named,
                                           from_checkpoint=resuming, notes=resume_notes,
                                           config_said=config_said, read=read, caller=caller)
        run_classes = run_classes if resuming else ()
        held = read.get("checkpoint")  # an INT8 or weights-only file: refused before the data is read
        refusal = (no_training_state(read["path"], held, checkpoint_candidates(output), caller=caller)
                   if held else "")
        if refusal:
            raise ValueError(refusal)
    # before the device, the data and the model: frozen layers over random weights never train
    refusal = "" if resuming or weights_given else untrained_frozen_refusal(
        cfg, config=_refused_config_phrase(config_named, config_said, caller, output, resume), caller=caller)
    if refusal:
        raise ValueError(refusal)
    device = resolve_device(cfg.device, what="the config's device") if device is None else device
    rank, world_size, device = du.init_distributed(str(device))
    if not resuming and cfg.model.init_weights:
        source = _read_init_weights(cfg.model.init_weights, rank, world_size, reads=init_reads)
        explicit = _explicit_keys(source.implied, overrides, config_named, config_keys, config_said,
                                  caller=caller)
        cfg, changes, kept = follow_weights_keeping(cfg, source.implied, explicit, weights=str(
            source.provenance.get("spec") or cfg.model.init_weights), init=init_word(caller))
    size_lines = []
    if not resume:  # a resumed run keeps its own test sizes (its config.yaml), changed only by --set
        cfg, size_lines = follow_training_sizes(cfg, _explicit_keys(
            INPUT_SIZE_KEYS, overrides, config_named, config_keys, config_said, caller=caller))
    if cfg.solver.batch_size % world_size:
        raise ValueError(_batch_share_refusal(cfg.solver, world_size, caller=caller, run_config=(
            output / "config.yaml" if resume and overrides is not None
            and not _asked("solver.batch_size", overrides) else None)))
    per_rank, accumulate = cfg.solver.batch_size // world_size, cfg.solver.accumulate
    if per_rank % accumulate:
        raise ValueError(
            f"solver.batch_size {cfg.solver.batch_size} over {world_size} processes is {per_rank} images "
            f"per process, not divisible by solver.accumulate {accumulate} (micro-batches of equal size)")
    for line in schedule_notes(cfg.solver, preset_steps=preset_solver_steps()) + size_lines + \
            input_size_notes(cfg.input):
        say(line)
    rh = cfg.model.roi_heads
    parsed = parsed if parsed is not None else {}
    train_set = CocoDataset(
        json_path=train_json,
        coco=parsed.pop(Path(train_json), None),
        image_dir=train_images,
        keypoints=rh.keypoint_on,
        filter_empty=cfg.data.filter_empty,
        min_keypoints_per_image=cfg.data.min_keypoints_per_image if rh.keypoint_on else 0,
        crowd_as_objects=cfg.data.crowd_as_objects,
        exif_frame=cfg.data.exif_frame,
        fold_shared_files=True,  # one picture under two records: trained once, with all its objects
    )
    no_keypoints = keypoint_config_refusal(cfg, train_set, config_named, config_said, caller=caller)
    if no_keypoints:  # every annotation skipped as lacking keypoints: "no usable training image" hid why
        raise ValueError(no_keypoints)
    if len(train_set) == 0:
        missing = train_set.skipped.get("missing_image_file", 0)
        crowd_only = train_set.skipped.get("image_with_only_crowd_annotations", 0)
        hint = ""
        if missing:  # nothing usable and files not found: the folder is the likely fault
            hint = (f"; {missing} of its image files are not under {train_images}: give the folder that "
                    "holds them with --train-images")
        elif crowd_only:  # every object marked iscrowd: crowd regions are ignored, not learnt from
            hint = (f"; {crowd_only} of its images {_has(crowd_only)} only crowd annotations (iscrowd 1: "
                    "regions the losses ignore, not objects to learn): an object to train on has iscrowd 0")
        raise ValueError(f"{train_json}: no usable training image (skipped: {skip_words(train_set.skipped)})"
                         f"{hint}")
    line = left_out_line(train_set.skipped, len(train_set), cfg.data.min_keypoints_per_image)
    if line:
        say(f"note: {train_json}: {line}")
    if cfg.solver.batch_size > len(train_set):  # harmless, but most likely a setting meant for other data
        say(f"note: solver.batch_size {cfg.solver.batch_size} is more than the {len(train_set)} usable "
            f"training images of {train_json}: each batch holds some of them more than once")
    # how photos whose size cannot tell their EXIF turn are read: settled here, once, before the DataLoader's
    # workers start (each worker settled it anew: every header read again, the note said again)
    line = train_set.settle_exif_frame()
    if line:
        say(f"note: {line}")
    if not resume or train_set.evidenced_exif_frame:  # kept in config.yaml and checkpoints for eval
        cfg.data.exif_frame_seen = train_set.evidenced_exif_frame or ""
    check_resumed_classes(run_classes, tuple(train_set.class_names), output=output, train_json=train_json,
                          caller=caller)
    counts = train_set.instances_per_class()
    unseen = [name for name, n in zip(train_set.class_names[1:], counts[1:]) if n == 0]
    if unseen:  # a category the labelling tool defined but nobody drew: the model gets no example of it
        say(f"warning: {train_json}: no training instance of the class{'es' if len(unseen) > 1 else ''} "
            f"{', '.join(unseen)} (crowd regions aside); the model cannot learn to detect "
            f"{'them' if len(unseen) > 1 else 'it'}")
    if asked_num_classes is not None and asked_num_classes != train_set.num_classes:
        n = train_set.num_classes
        say(f"note: model.num_classes {asked_num_classes} is not applied: num_classes comes from the "
            f"training data, and {train_json} has {n} ({n - 1} classes and the background)"
            + (f"; the {option_word(caller, '--init')} weights' class rows are matched to them by name"
               if cfg.model.init_weights and not resuming else ""))
    if asked_class_names is not None and tuple(asked_class_names) != tuple(train_set.class_names[1:]) \
            and tuple(asked_class_names) != tuple(train_set.class_names):
        names = ", ".join(train_set.class_names[1:])
        say(f"note: data.class_names {list(asked_class_names)} is not applied: class names come from the "
            f"training data, and {train_json} has {names}")
    cfg = plain_config(cfg).copy()  # a library caller's numpy / torch numbers as Python's; theirs left as is
    cfg.model.num_classes = int(train_set.num_classes)
    cfg.data.class_names = tuple(train_set.class_names)
    flip_map = None
    if rh.keypoint_on:
        configured = cfg.data.keypoint_flip_map
        stale = "" if "data.keypoint_flip_map" in set_keys(overrides or {}) else stale_flip_map_note(
            configured, cfg.data.keypoint_names, train_set.keypoint_names, source=str(train_json),
            caller=caller)
        if stale:  # another keypoint set's pairs (a run's config.yaml reused with other data)
            say(stale)
            configured = ()
        if train_set.keypoint_names:
            cfg.data.keypoint_names = tuple(train_set.keypoint_names)
            cfg.data.keypoint_skeleton = tuple(tuple(p) for p in train_set.keypoint_skeleton)
            cfg.model.roi_heads.num_keypoints = len(train_set.keypoint_names)
            # the classes that own the set: a category without keypoints gets none at inference
            cfg.data.keypoint_classes = tuple(
                train_set.class_names[train_set.category_id_to_label[c]]
                for c in sorted(train_set.keypoint_category_ids))
        asked_pairs = "data.keypoint_flip_map" in set_keys(overrides or {})
        if asked_pairs and not configured:  # --set data.keypoint_flip_map=[]: no pairs, not "from the names"
            configured = no_flip_pairs(cfg.data.keypoint_names, cfg.model.roi_heads.num_keypoints)
        # left_* <-> right_* from the names: the flip map of any keypoint set, not only COCO's
        with warnings.catch_warnings(record=True) as caught:  # said once, in the log, not on each stderr
            warnings.simplefilter("always")
            # on --resume the configured pairs are those this run derived and stored (warned about then),
            # unless --set gives others
            unneeded = None  # the names' problem, when they give no map and training flips nothing
            try:
                flip_map = keypoint_flip_map(
                    cfg.data.keypoint_names, cfg.model.roi_heads.num_keypoints, configured=configured,
                    source=str(train_json), warn_unpaired=not resume or asked_pairs)
            except FlipMapError as e:  # names that give no map: needed only when training flips images
                if cfg.input.flip_prob > 0:
                    raise
                flip_map, unneeded = None, e.problem
                say(f"note: {e.problem}: input.flip_prob=0 flips no training image, so no flip map is needed "
                    f"(predict's flip TTA on this model refuses it, --tta-no-flip predicts without; "
                    f"{_flip_map_item(caller)} gives the pairs, [] for none)")
        for caught_warning in caught:  # the unpaired sided names (flip_map_from_names)
            say(f"warning: {caught_warning.message}")
        # the pairs used, in the run's config.yaml: predict's flip TTA, --resume and export read them
        # there, not from whatever names a later file brings; a map of the user's that swaps nothing is
        # stored as such (no_flip_pairs), not as () which would derive the pairs again
        cfg.data.keypoint_flip_map = flip_pairs(flip_map, cfg.data.keypoint_names) or (
            no_flip_pairs(cfg.data.keypoint_names, cfg.model.roi_heads.num_keypoints)
            if configured and flip_map is not None else ())
        if unneeded is None:
            say(f"keypoint flip pairs: {flip_pairs_line(cfg.data.keypoint_flip_map)}")
        if cfg.input.flip_prob > 0 and pairs_nothing(flip_map) and not configured:  # (the user's own: warned
            # about its sided names) half the images: left and right exchanged
            say(f"warning: {train_json}: its keypoint names pair no left with a right, so the training flips "
                f"(input.flip_prob {cfg.input.flip_prob:g}) swap no point; if it has left/right points, give "
                f"the pairs with {_flip_map_item(caller)} (0-based indices or names), or "
                "train without flips: input.flip_prob=0")
        keypoint_sigmas(cfg.data.keypoint_names, cfg.model.roi_heads.num_keypoints,
                        cfg.data.keypoint_sigmas)  # a bad data.keypoint_sigmas fails now, not at evaluation
    train_set.transforms = build_train_transforms(
        min_size=cfg.input.min_size,
        max_size=cfg.input.max_size,
        flip_prob=cfg.input.flip_prob,
        method=cfg.input.resize_method,
        keypoint_flip_map=flip_map,
        scale_range=cfg.input.scale_range,
        crop_size=cfg.input.crop_size,
        color_jitter=cfg.input.color_jitter,
    )
    label_to_cat = {int(k): int(v) for k, v in train_set.label_to_category_id.items()}
    repeat_factors = None
    if cfg.data.repeat_threshold > 0:
        # once, from the annotations: every (re)start of the loader reuses them, so a resumed run with the
        # same data and threshold draws the same epochs
        from maskrcnn.data import repeat_factors as rf

        labels = train_set.labels_per_image()
        by_class = rf.category_repeat_factors(labels, threshold=cfg.data.repeat_threshold)
        repeat_factors = rf.image_repeat_factors(labels, by_class)
        for line in rf.summary_lines(repeat_factors, by_class, cfg.data.class_names,
                                     threshold=cfg.data.repeat_threshold):
            say(line)

    # the validation set is checked before anything is written into --output: a run refused here (its
    # images not found, say) leaves no config.yaml that would make its corrected retry "a training run"
    check_best_metric(cfg, has_val=val_json is not None, caller=caller)  # before the validation set is read
    evaluate_fn, best_metric, val_set = None, None, None  # None: as cfg.solver.best_metric resolves
    if val_json is not None:
        val_set = CocoDataset(json_path=val_json, image_dir=val_images, keypoints=rh.keypoint_on,
                              crowd_as_objects=cfg.data.crowd_as_objects, exif_frame=cfg.data.exif_frame)
        missing = val_set.skipped.get("missing_image_file", 0)
        if len(val_set) == 0 and missing:  # else every evaluation "could evaluate none of its 0 images"
            raise ValueError(f"{val_json}: none of its {missing} image files is under {val_images}: give the "
                             f"folder that holds them with {option_word(caller, '--val-images')}")
        check_keypoint_count(cfg, val_set)  # now, not at the first evaluation hours in
        # now, once, as for the training set; a validation file whose photos do not tell reads them as
        # the training file's showed its tool did (one tool annotated both, usually)
        line = val_set.settle_exif_frame(borrowed=(cfg.data.exif_frame_seen or None, str(train_json)))
        if line:
            say(f"note: {line}")
        ground_truth(val_set)  # read as each evaluation will read it: a value it refuses fails now
        # a val set of rectangles: bbox/AP
        best_metric, line = best_metric_for(cfg, val_set, val_json, caller=caller)
        if line:
            say(line)
        evaluate_fn = make_evaluate_fn(cfg, val_set, val_json, device=device)
    # under torchrun, before the model (DDP's own check of the weights' shapes fails obscurely) and before
    # any write: a process given other data or another --set would train on silently
    check_same_setup(cfg, train_set, train_json, val_set, val_json)
    checks_passed()
    with torch.random.fork_rng(devices=[]):  # the same initial weights on every rank, global RNG untouched
        torch.manual_seed(cfg.seed)
        model = build_model(cfg)
    report = initialise_model(model, cfg, source) if source is not None else None
    model = place_for_training(model, device)
    unread: dict = {}  # image files that could not be read, in the order met (a dict: each once)

    def make_batches(start_iter: int):
        return _noting_unread(
            build_train_loader(
                train_set,
                batch_size=cfg.solver.batch_size // world_size,
                num_workers=cfg.data.num_workers,
                seed=cfg.seed,
                aspect_ratio_grouping=cfg.data.aspect_ratio_grouping,
                rank=rank,
                world_size=world_size,
                start_iter=start_iter,
                repeat_factors=repeat_factors,
            ),
            unread,
        )

    trainer = build_trainer(
        cfg,
        model,
        make_batches=make_batches,
        output_dir=output,
        class_names=cfg.data.class_names,
        device=device,
        evaluate_fn=evaluate_fn,
        best_metric=best_metric,
        checkpoint_extra={"label_to_category_id": label_to_cat},
        log_stream=log_stream,
        **(trainer_kwargs or {}),
    )
    # Nothing is written into --output before every process has set up: a start refused by one of them
    # (its file missing, its memory short) must leave no config.yaml that makes the corrected retry "a
    # training run". Rank 0 waits here; when another process failed, the barrier fails (gloo: the
    # connection closed) or torchrun ends rank 0 (SIGTERM) while it waits: either way before any write.
    du.barrier()
    if rank == 0:
        if earlier and overwrite and not resume:
            # only now that the new run is assembled (a typo must not cost the old run); metrics.jsonl
            # is appended to, so an old one would mix with the new run
            for path in earlier:
                path.unlink(missing_ok=True)
        output.mkdir(parents=True, exist_ok=True)
        if not resuming:  # a resumed run's: once its checkpoint has loaded under these settings (below)
            save_config(cfg, output / "config.yaml")
        if report is not None:
            report = {"source": report.pop("source"), "config_changes": changes, "config_kept": kept,
                      **report}
            atomic_write_json(output / INIT_REPORT, report, indent=2)
            for line in summary_lines(report, changes):
                say(line)
            say(f"  report: {output / INIT_REPORT}")
        say(frozen_line(model, freeze_at=cfg.model.freeze_at))  # from requires_grad, not the config
    trainer.unread_images = unread  # filled as the run reads: said at its end (unread_line)
    trainer.caller = caller  # its lines name the way on as the caller does (continue with --resume)

    def say_notes() -> None:  # only once the run goes on (a refused resume says one line), right after
        while resume_notes:  # "resumed from" and before what they lead to (an earlier end set aside, or
            say(resume_notes.pop(0))  # solver.iters cut to the checkpoint's iteration: its end)

    resumed = resume and trainer.resume(then=say_notes, read=read or None)
    read.clear()  # its tensors are the model's and the optimizer's now
    if resume and not resumed and rank == 0:
        trainer.logger.print(f"{option_word(caller, '--resume')}: no checkpoint in {output}, starting "
                             "from scratch")
    say_notes()  # no checkpoint resumed from: the run starts again with the run's settings
    if resumed and trainer.iteration >= trainer.max_iter and rank == 0:
        # what the run's end left undone (model_final.pth, the final evaluation) is done next, and said
        left = getattr(trainer, "_left", None) or {}
        rest = ("no iteration left to train" if left.get("weights") or left.get("eval") else
                "nothing left to train (raise solver.iters to train on)")
        trainer.logger.print(f"{option_word(caller, '--resume')}: the run is already at iteration "
                             f"{trainer.iteration} of solver.iters "
                             f"{trainer.max_iter}: {rest}")
    if resuming and rank == 0:  # a resume refused by the checkpoint leaves the run's config.yaml as it was
        save_config(cfg, output / "config.yaml")
    return trainer, cfg


