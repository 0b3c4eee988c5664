"""Checkpoint files: atomic writes, safe loads, the config and class names travel with the weights.

Format (a ``torch.save`` dict that loads with ``weights_only=True``, so opening a checkpoint never runs
code from it):
    {"format": "maskrcnn-checkpoint", "format_version": 1, "config": dict, "class_names": [str, ...],
     "model": state_dict, ...extra}
Training checkpoints add "optimizer", "scheduler", "iteration", "rng" and "data_state"; everything in
them is tensors or plain Python values (RNG states are stored as uint8 tensors / lists).

A file that cannot be loaded is refused in one line naming it (``checkpoint_refusal``: empty, asking to
run code, a plain pickle, truncated), never with torch's advice to load it with ``weights_only=False``.

A safetensors file (``safetensors_io``: told by its bytes, the config and class names in its metadata)
loads into the same dict; one of another project's tensors is refused as a bare state dict.

Writes are atomic (``io_utils.atomic_write_bytes``: temporary file in the same folder, fsync,
``os.replace``): a crash at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

# re-exported: the trainer writes ``last_checkpoint`` with it
from maskrcnn.io_utils import atomic_write_bytes  # noqa: F401
from maskrcnn.listing import short_listing

FORMAT = "maskrcnn-checkpoint"
FORMAT_VERSION = 1

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, not ours or of an unknown format version."""


_CONVERT_HINT = "a torchvision, detectron2 or MMDetection checkpoint? `maskrcnn convert` reads it"


def save_checkpoint(path: PathLike, *, model_state: dict, config: Any, class_names, **extra: Any) -> None:
    """Write a checkpoint atomically. ``config`` is a ``Config`` or a plain dict."""
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": cfg,
        "class_names": [str(c) for c in class_names],
        "model": model_state,
    }
    clash = set(extra) & set(payload)
    if clash:
        raise ValueError(f"save_checkpoint: extra keys {sorted(clash)} clash with the format's own keys")
    payload.update(extra)
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: PathLike, *, map_location: Any = "cpu") -> dict:
    """Load and validate a checkpoint (``weights_only=True``); raise ``CheckpointError`` naming the file.
    ``map_location`` applies to torch files; a safetensors file's tensors are read onto the CPU."""
    return check_checkpoint(path, read_checkpoint_object(path, map_location=map_location))


def read_checkpoint_object(path: PathLike, *, map_location: Any = "cpu") -> object:
    """What a weights file holds, read as ``load_checkpoint`` reads it (never running code from it) but
    not yet checked to be our checkpoint (``check_checkpoint``); ``CheckpointError`` naming the file when
    it cannot be read."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes)")
    from maskrcnn.checkpoint_refusal import not_weights_message
    from maskrcnn.safe_load import load_weights_only
    from maskrcnn.safetensors_io import is_safetensors, read_safetensors

    if is_safetensors(path):  # told by its bytes (its first ones would read as "not a PyTorch file")
        return read_safetensors(path, error=CheckpointError)  # (onto the CPU)
    refusal = not_weights_message(path)  # not torch's, or a .pt2 / TorchScript archive: told before torch
    if refusal is not None:
        raise CheckpointError(refusal)
    try:  # (numpy scalars a training loop stored beside the weights are data: allowed)
        ckpt = load_weights_only(path, map_location=map_location)
    except Exception as e:  # noqa: BLE001 - weights_only refuses arbitrary objects with UnpicklingError and friends
        raise CheckpointError(_refusal(path, e)) from None
    return ckpt


def check_checkpoint(path: PathLike, ckpt: object) -> dict:
    """``ckpt``, the object read from ``path``, when it is a checkpoint of ours this library reads;
    ``CheckpointError`` naming the file and the field otherwise (``load_checkpoint``'s checks, for a
    reader that has read the file already)."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise not_ours_error(path, ckpt)
    version = ckpt.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format_version {version!r} is not supported "
            f"(this library reads {FORMAT_VERSION})"
        )
    for key, kind in (("config", dict), ("class_names", list), ("model", dict)):
        if not isinstance(ckpt.get(key), kind):
            raise CheckpointError(f"{path}: field {key!r} is missing or not a {kind.__name__}")
    from maskrcnn.interop.wrappers import strip_module_prefix

    # a model saved while wrapped in (Distributed)DataParallel or a LightningModule: its names behind
    # "module." / "model.", which none of ours start with (read as the other libraries' files are)
    ckpt = {**ckpt, "model": strip_module_prefix(ckpt["model"])}
    from maskrcnn.config import from_dict

    try:  # unknown keys and values no run can use (min_size_test 0, a NaN threshold) named here
        from_dict(ckpt["config"], stored=True)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: its 'config' cannot be used: {e.args[0] if e.args else e}") from None
    bad = non_finite_keys(ckpt["model"])
    if bad:  # such weights predict nothing (or NaN boxes) without any error: refuse them here
        listing = short_listing(bad, limit=5)
        raise CheckpointError(f"{path}: weights hold NaN or infinite values in 'model' tensors {listing}")
    return ckpt


def not_ours_error(path, obj, *, ema: bool = False, config: Optional[str] = None) -> CheckpointError:
    """The refusal of a file that is not our checkpoint, saying what it is (``_not_ours_hint``); ``ema``
    and ``config``: the reader's "FILE#ema" and ``--config``, carried into the command it suggests."""
    from maskrcnn.interop.wrappers import state_dict_problem

    problem = state_dict_problem(obj, str(path))  # nothing to convert or run: said, not "not ours"
    if problem is not None:
        return CheckpointError(problem)
    hint = _not_ours_hint(path, obj, ema=ema, config=config)
    return CheckpointError(f"{path}: not a maskrcnn checkpoint{hint}")


def _not_ours_hint(path, obj, *, ema: bool = False, config: Optional[str] = None) -> str:
    """Why a file that is not our checkpoint is not, and what to do, from its key names: the exact
    ``maskrcnn convert --from X`` command for another library's detector (with ``--ema`` when ``ema``),
    how to run or save a bare state dict of our model (``checkpoint_read.bare_state_dict``), the prefix
    every key shares; "" when the object says nothing."""
    if not isinstance(obj, dict):
        return ""
    from maskrcnn.checkpoint_read import bare_state_dict
    from maskrcnn.interop.weights import convert_problem, layout_of
    from maskrcnn.interop.wrappers import common_prefix, inner_state_dict, is_our_layout, strip_common_prefix

    found = layout_of(obj)
    unused = " (--config applies only to a bare state dict of this library's model)" if config else ""
    shown = {"mmdetection": "an MMDetection", "detectron2": "a detectron2"}.get(found, "a torchvision")
    problem = convert_problem(obj, found)
    if problem is not None:  # a RetinaNet, a MobileNet, a PointRend: `convert` refuses it, so not sent there
        said = problem if problem.startswith("a torchvision") else \
            f"{shown} file that `maskrcnn convert` refuses: {problem}"
        return f" ({said}){unused}"
    if found in ("torchvision", "detectron2", "mmdetection"):
        flag = " --ema" if ema else ""
        return f" ({shown} checkpoint: maskrcnn convert --from {found}{flag} {path} OUT.pth){unused}"
    if found == "imagenet":
        return (" (backbone weights only, not a detector (an ImageNet ResNet, or a torchvision backbone "
                f"saved alone): start a training run from them with maskrcnn train --init){unused}")
    if bare_state_dict(obj) is not None:
        return (" (the weights of this library's model without the config that says how to build it: "
                "predict, eval and export run them with --config PRESET_OR_YAML; no --from converts them: "
                "save them with maskrcnn.checkpoint.save_checkpoint(OUT, model_state=STATE_DICT, "
                "config=CONFIG, class_names=[...]) and the config they were trained with; "
                "docs/checkpoints.md)")
    inner = inner_state_dict(obj)[0]
    if not any(isinstance(v, torch.Tensor) for v in inner.values()):
        return (f" ({_CONVERT_HINT})" if inner is not obj else "") + unused
    sd, _prefix = strip_common_prefix(inner, is_our_layout)
    shared = common_prefix(list(sd))
    shared = f"; every key starts with '{shared}'" if shared else ""
    some = ", ".join(map(str, list(sd)[:3]))
    what = "a bare state_dict" if inner is obj else "weights"
    return (f" ({what} with keys like {some}{shared}: not a torchvision, detectron2 or MMDetection layout "
            f"`maskrcnn convert` reads){unused}")


def check_class_names(path: PathLike, ckpt: dict) -> None:
    """CheckpointError naming the file and 'class_names' when a loaded checkpoint's class names are not
    one per class of its model (``model.num_classes`` counts the background, as the list does). Checked
    by the readers that label detections or copy class rows (``Predictor.from_checkpoint``,
    ``train --init``); ``load_checkpoint`` itself leaves it to them (a resumed run keeps its own names)."""
    from maskrcnn.config import from_dict

    names, k = ckpt.get("class_names") or [], int(from_dict(ckpt["config"], stored=True).model.num_classes)
    if names and len(names) != k:  # (empty: the default names are made for the model's classes)
        raise CheckpointError(
            f"{path}: 'class_names' has {len(names)} name{'' if len(names) == 1 else 's'} for a model with "
            f"num_classes={k} (the list starts with '__background__'; its model.num_classes counts it too)")


def _refusal(path: Path, error: Exception) -> str:
    """One line for a file ``torch.load(weights_only=True)`` refused (``checkpoint_refusal``), with what
    another reader of ours makes of it (``_other_reader_hint``: the exact ``maskrcnn convert --from X``)
    where the file may be another library's weights."""
    from maskrcnn.checkpoint_refusal import describe_refusal

    kind, message, bad = describe_refusal(path, error)  # (the global: the pickle read once)
    if kind == "code":
        bad = bad or ""
        from maskrcnn.interop.weights import is_mmdetection_file

        # an MMDetection v3 training state: by its globals' module, else by its keys, read with the foreign
        # objects left inert (a trainer's own class in message_hub names neither mmengine nor mmdet)
        # the evidence said is the one found: "holds X" only for X of mmengine / mmdet / mmcv (a
        # trainer's own __main__.Hook says nothing of MMDetection), else the keys that told it
        ours = bad.split(".", 1)[0] in ("mmengine", "mmdet", "mmcv")
        if ours or is_mmdetection_file(path):
            why = f"it holds {bad}" if ours else "its state_dict keys are MMDetection's"
            return (f"{path} is an MMDetection checkpoint ({why}): "
                    f"maskrcnn convert --from mmdetection {path} OUT.pth")
    if kind in ("pickle", "code", "refused"):
        return message + _other_reader_hint(path)
    return message


def _other_reader_hint(path) -> str:
    """What the readers of other libraries' weights make of a file ``load_checkpoint`` refused, read as
    ``convert`` / ``train --init`` read it (a plain pickle through the numpy-only unpickler, a torchvision
    reference script's file with its ``argparse.Namespace``; never running code): the exact ``maskrcnn
    convert --from X`` command, or why ``convert`` would refuse it too (``_not_ours_hint``); "" when none
    of them reads it (``convert`` would refuse it alike: no pointer there)."""
    from maskrcnn.interop.weights import read_object_or_none

    obj = read_object_or_none(path)
    return "" if obj is None else _not_ours_hint(path, obj)


def non_finite_keys(state_dict: dict) -> list:
    """Names of the floating-point tensors of ``state_dict`` holding a NaN or an infinity.

    Checked on every load: one sum per tensor (a reduction, no tensor-sized boolean copy as
    ``isfinite(v).all()`` makes), the sums checked together; a sum is finite when every element is, so
    only a tensor whose sum is not (a NaN, an infinity, or finite values summing past the dtype's range)
    is looked at element by element. Each sum is taken in the tensor's own dtype and kept as float64 (a
    float64 tensor summing past float32's range is not a suspect); 1-byte floats (float8_e5m2,
    float8_e4m3fn), which have no CPU sum or isfinite, are read as float16, which holds each of their
    values. Integer tensors (batch counters) cannot hold either: skipped."""
    floats = [(k, v) for k, v in state_dict.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not floats:
        return []
    with torch.no_grad():
        sums = torch.stack([_summable(v).sum().double().cpu() for _k, v in floats])  # (float64 holds each)
        suspects = (~torch.isfinite(sums)).nonzero().flatten().tolist()
    return [floats[i][0] for i in suspects if not bool(torch.isfinite(_summable(floats[i][1])).all())]


def _summable(v: torch.Tensor) -> torch.Tensor:
    """``v``, or a 1-byte float tensor as float16 (its values exactly: NaN and infinities kept)."""
    return v.to(torch.float16) if v.element_size() == 1 else v


def label_to_category_id(ckpt: dict):
    """The checkpoint's label -> dataset category id map: its own field, else one an older file kept
    under "metadata"; None when it has neither."""
    l2c = ckpt.get("label_to_category_id")
    if l2c is None and isinstance(ckpt.get("metadata"), dict):
        l2c = ckpt["metadata"].get("label_to_category_id")
    return l2c


def config_from_checkpoint(ckpt: dict, overrides: Optional[dict] = None):
    """The ``Config`` stored in a loaded checkpoint (unknown keys are an error naming the key)."""
    from maskrcnn.config import apply_overrides, from_dict

    cfg = from_dict(ckpt["config"], stored=True)
    if ckpt.get("class_names"):
        cfg.data.class_names = tuple(ckpt["class_names"])
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg
