"""One reading of this library's weights for every command that takes them: ``train --init`` and
``convert --from maskrcnn`` (``checked_ours``), ``predict`` / ``eval`` / ``export`` (``inference_weights``,
through ``Predictor.from_checkpoint``).

    checked_ours(path, obj, ema=False, ema_how=None) -> (ckpt, notes)
    inference_weights("FILE[#ema]", config=None, overrides=None) -> (ckpt, notes)

``checked_ours`` checks a checkpoint of ours already read (``checkpoint.check_checkpoint``: fields,
config, finite weights; ``check_class_names``) and says what was taken: the EMA copy ("model_ema") on
request, else a note naming it and ``ema_how`` (the caller's way to ask for it); the wrapper prefix
dropped from its keys.

``inference_weights`` also takes a bare state dict of our model (``torch.save(model.state_dict())``, or
one under "model" / "state_dict", behind a wrapper's prefix) when ``config`` (a preset name or a YAML
file, ``config.load_config``) says how to build the model: it loads strictly, a key missing or extra, or
a shape the model does not have, refused in one line. Without ``config`` it is refused saying what to
add. A checkpoint of ours holds its config: ``config`` is refused for it (``--set`` changes it).

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
    read_checkpoint_object,
)


def checked_ours(path, obj: dict, *, ema: bool = False, ema_how: Optional[str] = None) -> tuple:
    """``(ckpt, notes)``: ``obj``, a checkpoint of ours read from ``path``, checked as ``load_checkpoint``
    checks it and its class names against its model; with ``ema`` its "model_ema" copy as "model"
    (ConversionError naming the file when it has none). ``ema_how``: how the caller's user takes the EMA
    copy, said in a note when the file holds one and ``ema`` is not asked for (None: no note)."""
    from maskrcnn.interop.wrappers import ema_copy, ema_note, no_ema_error

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
    sd = ckpt["model"]
    if isinstance(obj.get("model"), dict) and sd and list(obj["model"])[:1] != list(sd)[:1]:
        wrapped = next(iter(obj["model"]))
        notes.append(f"dropped the prefix every key had ('{wrapped[: len(wrapped) - len(next(iter(sd)))]}': "
                     "a DataParallel / Lightning wrapper)")
    return ckpt, notes


def bare_state_dict(obj) -> Optional[tuple]:
    """``(state dict, the wrapper prefix dropped or None)`` when ``obj`` is a bare state dict of our model
    (itself, or under "model" / "state_dict", its keys behind a wrapper's prefix: ``wrappers``), else
    None."""
    import torch

    from maskrcnn.interop.wrappers import is_our_layout, strip_common_prefix

    if not isinstance(obj, dict) or obj.get("format") == FORMAT:
        return None
    inner = next((obj[k] for k in ("model", "state_dict") if isinstance(obj.get(k), dict)), obj)
    if not inner or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in inner.items()):
        return None
    sd, _prefix = strip_common_prefix(inner, is_our_layout)
    if not is_our_layout(sd):
        return None
    wrapped = next(iter(inner))  # (the order is kept: the first key of each is the same tensor's)
    return sd, wrapped[: len(wrapped) - len(next(iter(sd)))] or None


def inference_weights(spec, *, config: Optional[str] = None, overrides: Optional[dict] = None) -> tuple:
    """``(ckpt, notes)`` for predict / eval / export (module docstring): ``spec`` a file, "FILE#ema" for
    its EMA copy; ``config`` the preset or YAML file a bare state dict needs (``overrides`` applied to it,
    as the caller applies them to a checkpoint's). ``CheckpointError`` naming the file otherwise."""
    from maskrcnn.interop.weights import EMA_SUFFIX, split_ema

    path, ema = split_ema(str(spec))
    obj = read_checkpoint_object(path, map_location="cpu")
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        if config is not None:
            raise CheckpointError(f"{path}: --config {config} is for a bare state dict; this checkpoint "
                                  "holds its own config (change it with --set KEY=VALUE)")
        return checked_ours(path, obj, ema=ema,
                            ema_how=f"`--weights {path}{EMA_SUFFIX}` takes the EMA copy")
    found = bare_state_dict(obj)
    if found is None:
        return check_checkpoint(path, obj), []  # not ours: refused in load_checkpoint's words (what it is)
    if ema:
        from maskrcnn.interop.wrappers import no_ema_error

        raise no_ema_error(path, "a bare state dict holds one copy of the weights, no 'model_ema'")
    if config is None:
        raise CheckpointError(
            f"{path}: the weights of this library's model without the config that says how to build it: add "
            "--config PRESET_OR_YAML (predict, eval, export; config= in Predictor.from_checkpoint), the "
            "preset (e.g. r50_fpn) or YAML file it was trained with; with no "
            "class names stored its classes are named class1, class2, ... unless that YAML sets "
            "data.class_names (or save it as a checkpoint: maskrcnn.checkpoint.save_checkpoint(OUT, "
            "model_state=STATE_DICT, config=CONFIG, class_names=[...]); docs/checkpoints.md)")
    sd, prefix = found
    return _with_config(path, sd, prefix, config, overrides)


def _with_config(path, sd: dict, prefix: Optional[str], config: str, overrides: Optional[dict]) -> tuple:
    """A bare state dict of ours as a checkpoint of the model ``config`` describes, strictly fitting."""
    from maskrcnn.config import load_config

    cfg = load_config(config, overrides or None, stored=True)  # (no training checks: nothing is trained)
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": cfg.to_dict(),
            "class_names": list(cfg.data.class_names), "model": sd}
    ckpt = check_checkpoint(path, ckpt)
    check_class_names(f"--config {config}", ckpt)  # (the names are the config's: it is named)
    misfit = first_misfit(ckpt["model"], cfg)
    if misfit is not None:
        raise CheckpointError(f"{path}: does not fit the model --config {config} describes: {misfit}")
    notes = [f"dropped the prefix every key had ('{prefix}': a DataParallel / Lightning wrapper)"] \
        if prefix else []
    if not cfg.data.class_names:
        k = int(cfg.model.num_classes) - 1
        notes.append(f"no class names stored: its {k} class{'' if k == 1 else 'es'} are named "
                     f"class1..class{k} (data.class_names in a --config YAML names them)")
    return ckpt, notes


def first_misfit(state: dict, cfg) -> Optional[str]:
    """Why ``state`` does not load strictly into the model ``cfg`` describes, in a few words about its
    first key that does not (a shape, a key missing or extra); None when it loads. The model is built on
    the meta device: no memory, no initialisation."""
    import torch

    from maskrcnn.modeling.mask_rcnn import build_model

    with torch.device("meta"):
        expected = build_model(cfg).state_dict()
    for key, want in expected.items():
        if key not in state:
            missing = [k for k in expected if k not in state]
            return f"the file has no {key} ({len(missing)} of the model's {len(expected)} tensors missing)"
        have = state[key]
        if tuple(have.shape) != tuple(want.shape):
            return (f"{key} has shape {tuple(have.shape)} in the file, the model expects "
                    f"{tuple(want.shape)}")
    extra = [k for k in state if k not in expected]
    if extra:
        return f"the file's {extra[0]} is not in the model ({len(extra)} such tensor{'s' * (len(extra) > 1)})"
    return None
