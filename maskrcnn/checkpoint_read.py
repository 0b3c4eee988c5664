"""One reading of this library's weights for every command that takes them: ``train --init`` and
``convert --from maskrcnn`` (``checked_ours``), ``predict`` / ``eval`` / ``export`` (``inference_weights``,
through ``Predictor.from_checkpoint``).

    checked_ours(path, obj, ema=False, ema_how=None) -> (ckpt, notes)
    inference_weights("FILE[#ema]", config=None, overrides=None, config_how=None) -> (ckpt, notes)

``checked_ours`` checks a checkpoint of ours already read (``checkpoint.check_checkpoint``: fields,
config, finite weights; ``check_class_names``) and says what was taken: the EMA copy ("model_ema") on
request, else a note naming it and ``ema_how`` (the caller's way to ask for it); the wrapper prefix
dropped from its keys.

``inference_weights`` also takes a bare state dict of our model (``torch.save(model.state_dict())``, or
one under "model" / "state_dict", behind a wrapper's prefix) when ``config`` (a preset name or a YAML
file, ``config.load_config``) says how to build the model: it loads strictly, a key missing or extra, or
a shape the model does not have, refused in one line; entries that are not tensors dropped with a note.
Its EMA copy beside it (a torchvision ``train.py`` file: "model", "model_ema", "epoch") is noted, taken
with "FILE#ema". Without ``config`` it is refused saying what to add (``config_how``: the caller's way).
A checkpoint of ours holds its config: ``config`` is refused for it (``--set`` changes it).

Notes are returned, never printed: the commands print them (``note: ...`` on stderr).
"""

from __future__ import annotations

from typing import Optional

from maskrcnn.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    check_checkpoint,
    check_class_names,
    config_from_checkpoint,
    read_checkpoint_object,
)

_SAVE = ("save it as a checkpoint: maskrcnn.checkpoint.save_checkpoint(OUT, model_state=STATE_DICT, "
         "config=CONFIG, class_names=[...]); docs/checkpoints.md")
_NAMES = ("with no class names stored its classes are named class1, class2, ... unless that YAML sets "
          "data.class_names")
CONFIG_HOW_LIBRARY = (f"pass config=PRESET_OR_YAML (Predictor.from_checkpoint, inference_weights), the "
                      f"preset (e.g. r50_fpn) or YAML file it was trained with; {_NAMES} (or {_SAVE})")
CONFIG_HOW_CLI = (f"add --config PRESET_OR_YAML, the preset (e.g. r50_fpn) or YAML file it was trained with; "
                  f"{_NAMES} (or {_SAVE})")


def config_how_without_option(command: str) -> str:
    """The no-config refusal's remedy for a command with no ``--config`` for its weights."""
    return (f"`maskrcnn {command}` takes no --config for its weights: {_SAVE} (predict, eval and export run "
            "it as it is with --config PRESET_OR_YAML)")


def ema_how_for(path) -> str:
    """How a caller of ``inference_weights`` takes a checkpoint's EMA copy: both spellings, the commands'
    and the library's."""
    from maskrcnn.interop.weights import EMA_SUFFIX

    return (f"`--weights {path}{EMA_SUFFIX}` / `Predictor.from_checkpoint(\"{path}{EMA_SUFFIX}\")` takes the "
            "EMA copy")


def checked_ours(path, obj: dict, *, ema: bool = False, ema_how: Optional[str] = None) -> tuple:
    """``(ckpt, notes)``: ``obj``, a checkpoint of ours read from ``path``, checked as ``load_checkpoint``
    checks it and its class names against its model; with ``ema`` its "model_ema" copy as "model"
    (ConversionError naming the file when it has none). ``ema_how``: how the caller's user takes the EMA
    copy, said in a note when the file holds one and ``ema`` is not asked for (None: no note)."""
    from maskrcnn.interop.wrappers import dropped_prefix, ema_copy, ema_note, no_ema_error, prefix_note

    notes = []
    if ema:
        found = ema_copy(obj)
        if found is None or found[0] != "model_ema":
            raise no_ema_error(str(path), "the checkpoint has no 'model_ema', the copy a maskrcnn checkpoint "
                                          "keeps when saved with save_checkpoint(..., model_ema=...)")
        obj = {**obj, "model": found[1]}  # checked below as 'model' is
        notes.append("took the EMA copy of the weights ('model_ema')")
    elif ema_how is not None:
        note = ema_note(obj, taken="'model'", how=ema_how)
        notes += [note] if note else []
    ckpt = check_checkpoint(path, obj)
    check_class_names(path, ckpt)
    prefix = dropped_prefix(obj["model"], ckpt["model"]) if isinstance(obj.get("model"), dict) else None
    notes += [prefix_note(prefix)] if prefix else []
    return ckpt, notes


def bare_state_dict(obj) -> Optional[tuple]:
    """``(state dict, notes)`` when ``obj`` is a bare state dict of our model (itself, or under "model" /
    "state_dict", its keys behind a wrapper's prefix: ``wrappers``), else None. Its tensors are taken:
    entries that are not (an "epoch" count, a counter saved as a number) are dropped, named in a note,
    as a wrapper's prefix is. The one test of a bare state dict of ours (``check_checkpoint``'s refusal
    says so by it too)."""
    import torch

    from maskrcnn.interop.wrappers import (
        dropped_prefix,
        inner_note,
        inner_state_dict,
        is_our_layout,
        prefix_note,
        strip_common_prefix,
    )

    if not isinstance(obj, dict) or obj.get("format") == FORMAT:
        return None
    inner, taken, ignored = inner_state_dict(obj)
    tensors = {k: v for k, v in inner.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        return None
    sd, _prefix = strip_common_prefix(tensors, is_our_layout)
    if not is_our_layout(sd):
        return None
    notes = [inner_note(taken, ignored)] if ignored else []
    prefix = dropped_prefix(tensors, sd)
    notes += [prefix_note(prefix)] if prefix else []
    others = [str(k) for k in inner if k not in tensors]
    if others:
        from maskrcnn.listing import short_listing

        one = len(others) == 1
        notes.append(f"dropped {len(others)} entr{'y' if one else 'ies'} that {'is' if one else 'are'} not a "
                     f"tensor: {short_listing(others, limit=5)}")
    return sd, notes


def inference_weights(spec, *, config: Optional[str] = None, overrides: Optional[dict] = None,
                      config_how: Optional[str] = None, overrides_word: str = "overrides=") -> tuple:
    """``(ckpt, notes)`` for predict / eval / export (module docstring): ``spec`` a file, "FILE#ema" for
    its EMA copy; ``config`` the preset or YAML file a bare state dict needs (``overrides`` applied to it,
    as the caller applies them to a checkpoint's); ``config_how``: the remedy the refusal of a bare state
    dict without ``config`` names (``CONFIG_HOW_LIBRARY`` by default; the commands give theirs);
    ``overrides_word``: how the refusal of a shape key names ``overrides`` ("overrides=", the commands'
    "--set"). ``CheckpointError`` naming the file otherwise."""
    from maskrcnn.checkpoint import not_ours_error
    from maskrcnn.engine.caller_words import set_item, word_beside, written
    from maskrcnn.interop.weights import split_ema
    from maskrcnn.interop.wrappers import ema_copy, ema_note, inner_state_dict, no_ema_error

    path, ema = split_ema(str(spec))
    obj = read_checkpoint_object(path, map_location="cpu")
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        if config is not None:  # in the caller's words: Predictor's config= / overrides=, a command's options
            raise CheckpointError(
                f"{path}: {written(word_beside(overrides_word, '--config'), config)} is for a bare state "
                f"dict; this checkpoint holds its own config (change it with "
                f"{set_item(overrides_word, 'KEY', None, shown='VALUE')})")
        ckpt, notes = checked_ours(path, obj, ema=ema, ema_how=ema_how_for(path))
        # refused here in the bare state dict's words, before a model is built (torch's text spans a line
        # per key); the caller applies the same overrides to the model it builds
        try:
            refuse_misfit(path, ckpt["model"], config_from_checkpoint(ckpt, overrides or None))
        except CheckpointError:
            # a key that shapes the model asked for: that setting is at fault, not the file
            line = asked_shape_refusal(path, ckpt["model"], config_from_checkpoint(ckpt), overrides or {},
                                       word=overrides_word)
            if line:
                raise CheckpointError(line) from None
            raise
        return ckpt, notes + _dtype_notes(ckpt["model"])
    found = bare_state_dict(obj)
    if found is None:  # not ours: refused in load_checkpoint's words (what it is), with #ema / --config
        raise not_ours_error(path, obj, ema=ema, config=config)
    entry = inner_state_dict(obj)[1]
    taken = f"'{entry}'" if entry else "its tensors"
    copy = ema_copy(obj)
    notes = []
    if ema:
        ours = bare_state_dict(copy[1]) if copy is not None else None
        if ours is None:
            raise no_ema_error(path, "this bare state dict holds one copy of the weights (no 'model_ema' or "
                                     "'state_dict_ema' of this library's model beside them)")
        found = ours
        notes.append(f"took the EMA copy of the weights ('{copy[0]}')")
    elif copy is not None:
        notes.append(ema_note(obj, taken=taken, how=ema_how_for(path)))
    if config is None:
        raise CheckpointError(f"{path}: the weights of this library's model without the config that says how "
                              f"to build it: {config_how or CONFIG_HOW_LIBRARY}")
    sd, found_notes = found
    ckpt, config_notes = _with_config(path, sd, config, overrides, overrides_word=overrides_word)
    return ckpt, [*notes, *found_notes, *config_notes, *_dtype_notes(ckpt["model"])]


def _dtype_notes(state: dict) -> list:
    """[the note on weights stored in a floating dtype other than float32] or []: a half-precision file
    runs, scoring slightly apart from its float32 original (``interop.float_dtypes``)."""
    from maskrcnn.interop.float_dtypes import LOADED, dtype_note

    note = dtype_note(state, LOADED)
    return [note] if note else []


def _with_config(path, sd: dict, config: str, overrides: Optional[dict], *,
                 overrides_word: str = "overrides=") -> tuple:
    """A bare state dict of ours as a checkpoint of the model ``config`` describes, strictly fitting;
    ``config`` named as the caller whose overrides are ``overrides_word`` names it (``word_beside``)."""
    from maskrcnn.config import load_config
    from maskrcnn.engine.caller_words import word_beside, written

    cfg = load_config(config, overrides or None, stored=True)  # (no training checks: nothing is trained)
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": cfg.to_dict(),
            "class_names": list(cfg.data.class_names), "model": sd}
    ckpt = check_checkpoint(path, ckpt)
    named = written(word_beside(overrides_word, "--config"), config)  # "--config X" or "config='X'"
    check_class_names(named, ckpt)  # (the names are the config's: it is named)
    refuse_misfit(path, ckpt["model"], cfg, described=f"{named} describes")
    notes = []
    if not cfg.data.class_names:
        k = int(cfg.model.num_classes) - 1
        which = "class is named class1" if k == 1 else f"classes are named class1..class{k}"
        notes.append(f"no class names stored: its {k} {which} (data.class_names in a "
                     f"{word_beside(overrides_word, '--config')} YAML names them)")
    return ckpt, notes


def refuse_misfit(path, state: dict, cfg, *, described: str = "its config describes", error=CheckpointError,
                  after: str = "") -> None:
    """``error`` in one line naming the file and the first key of ``state`` that does not fit the model
    ``cfg`` describes (``first_misfit``), with the likely cause when it is a class layer; ``after`` ends
    the line (e.g. "; nothing written")."""
    misfit = first_misfit(state, cfg)
    if misfit is None:
        return
    if " has shape " in misfit and any(layer in misfit.split(" ", 1)[0] for layer in _CLASS_LAYERS):
        k = int(cfg.model.num_classes)
        misfit += (f" (a class layer: the weights were trained for a different number of classes than "
                   f"model.num_classes={k} and the class_names say, the background counted)")
    raise error(f"{path}: does not fit the model {described}: {misfit}{after}")


def asked_shape_refusal(path, state: dict, held, overrides: dict, *, word: str = "overrides=") -> str:
    """One line when the model keys of ``overrides`` (``word``: the commands' "--set", ``Predictor``'s
    "overrides=", as the caller passed them) make the
    model unable to load ``state``, weights that fit their own config ``held`` (the checkpoint's): it names
    each such key, the value asked and the checkpoint's; "" when the file misfits on its own, or the
    overrides shape nothing (``refuse_misfit``'s line stands)."""
    from maskrcnn.config import apply_overrides, get_key, set_keys

    if not overrides or first_misfit(state, held) is not None:
        return ""
    asked = apply_overrides(held, overrides)
    misfit = first_misfit(state, asked)
    if misfit is None:
        return ""
    keys = sorted(k for k in set_keys(overrides)
                  if k.startswith("model.") and get_key(asked, k) != get_key(held, k))
    # of those, the ones that alone keep the weights out (a threshold asked beside them is no culprit)
    alone = [k for k in keys
             if first_misfit(state, apply_overrides(held, {k: get_key(asked, k)})) is not None]
    keys = alone or keys
    if not keys:
        return ""
    asked_words = ", ".join(f"{k}={_plain(get_key(asked, k))}" for k in keys)
    theirs = ", ".join(f"{k} is {_plain(get_key(held, k))}" for k in keys)
    return (f"{path}: {asked_words} asked for ({word}) contradicts the checkpoint's architecture: "
            f"its {theirs} ({misfit}); keys that shape the model come from the checkpoint: drop "
            f"{'that setting' if len(keys) == 1 else 'those settings'}")


def _plain(value):
    """A config value as the user wrote it: a tuple as a list."""
    return list(value) if isinstance(value, tuple) else value


# the layers whose rows are the classes: a mismatch there is a class count the config does not share
_CLASS_LAYERS = ("box_predictor.", "mask_head.predictor.")


def first_misfit(state: dict, cfg) -> Optional[str]:
    """Why ``state`` does not load strictly into the model ``cfg`` describes, in a few words about its
    first key that does not (a shape, a key missing or extra); None when it loads. The model is built on
    the meta device: no memory, no initialisation."""
    import warnings

    import torch

    from maskrcnn.modeling.mask_rcnn import build_model

    # only the shapes are read: what building says of the config (an unused roi_features) is said once,
    # by the build that makes the model used
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = build_model(cfg).state_dict()
    extra = [k for k in state if k not in expected]
    for key, want in expected.items():
        if key not in state:
            missing = [k for k in expected if k not in state]
            said = f"the file has no {key} ({len(missing)} of the model's {len(expected)} tensors missing)"
            # a key renamed (another version's name, a typo) is one missing and one extra: both named
            return said + (f"; the file's {_extra_words(extra)}" if extra else "")
        have = state[key]
        if tuple(have.shape) != tuple(want.shape):
            return (f"{key} has shape {tuple(have.shape)} in the file, the model expects "
                    f"{tuple(want.shape)}")
    if extra:
        return f"the file's {_extra_words(extra)}"
    return None


def _extra_words(extra: list) -> str:
    """The file's keys the model has no place for: the first few and how many."""
    from maskrcnn.listing import short_listing

    many = len(extra) > 1
    return (f"{short_listing(extra, limit=3)} {'are' if many else 'is'} not in the model ({len(extra)} such "
            f"tensor{'s' * many})")
