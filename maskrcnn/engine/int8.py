"""INT8 models for CPU inference: calibrate a ``Predictor``'s model, save it, load it again.

Calibration (``quantize_predictor``) prepares the model (``modeling.quantize.prepare_int8``), runs the
calibration images through ``Predictor.predict_tensors`` (the inference path itself, so the observers
see the tensors inference will see: same resize, padding, proposals, detected boxes) and converts it.

The saved artifact is an ordinary checkpoint (``checkpoint.py`` format, read with
``torch.load(weights_only=True)``: opening it never runs code) holding the fp32 weights, plus

    "int8": {"format_version": 1, "parts": ["features", "rpn", "box_head", "mask_head"],
             "engine": "x86", "observers": {"<part>.activation_post_process_<i>.<buffer>": tensor},
             "sites": {"<part>.activation_post_process_<i>": "what it watches: backbone.res2.0.conv1.conv"},
             "calibration": {"images": int, "skipped": int, "skipped_reasons": {reason: int}, "source": str},
             "torch_version": str}

A quantized FX module cannot be saved without pickling code, so loading rebuilds it: build the model
from the config, load the fp32 weights, fold the norms, prepare the same parts (FX tracing is
deterministic), load the observer statistics, convert. The weight scales come from the weights at
conversion, so the rebuilt model computes what the calibrated one did. ``Predictor.from_checkpoint``
does this for any checkpoint that has an "int8" section, so ``predict``, ``eval``, ``serve`` and
``benchmark`` take the file as it is.

The file is tied to the quantized engine it was calibrated under (``"engine"``): the scales depend on
the engine's integer range. It loads under that engine or one whose qconfig mapping is the same
(``modeling.int8_qconfig.same_quantization``: x86 and fbgemm); any other is refused naming the engine
to set (``engine_problem``). After conversion ``quantize_predictor`` runs each quantized part once on a
tiny input (``modeling.quantize.check_int8_runs``), so a model the engine cannot run is refused before
a file is written.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from maskrcnn.engine.int8_choices import DEFAULT_CALIBRATION_IMAGES, PARTS

INT8_KEY = "int8"
INT8_FORMAT_VERSION = 1

__all__ = [
    "INT8_KEY",
    "DEFAULT_CALIBRATION_IMAGES",
    "calibration_files",
    "quantize_predictor",
    "apply_int8_section",
    "int8_section_problem",
    "save_int8_checkpoint",
    "engine_problem",
]


def _spread(items: list, count: int) -> list:
    """``count`` items evenly spaced over ``items`` (all when there are fewer), in order."""
    if count <= 0:
        raise ValueError(f"the number of calibration images must be >= 1, got {count}")
    if len(items) <= count:
        return list(items)
    return [items[(i * len(items)) // count] for i in range(count)]


def _pattern_hint(images) -> str:
    """The hint for a quoted glob given as ``--calib-images`` (paths are taken as written): the folder
    before its first component with a pattern character ('cal/**/*.png' -> cal), shell-quoted; none named
    when the pattern starts at once ('cal*': '.' would calibrate on whatever the working folder holds)."""
    from maskrcnn.shell import shell_word

    parts = Path(images).parts
    first = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), None)
    if first is None:
        return ""
    if first == 0:
        return " (a pattern is not expanded: give the folder of the calibration images)"
    return f" (a pattern is not expanded: give the folder, --calib-images {shell_word(Path(*parts[:first]))})"


def calibration_files(
    images: Union[str, os.PathLike], *, json_path: Optional[Union[str, os.PathLike]] = None,
    count: int = DEFAULT_CALIBRATION_IMAGES,
) -> list:
    """Calibration image paths: ``count`` files evenly spaced over the sorted image files of the folder
    ``images`` (searched recursively), or, with ``json_path``, over the images a COCO JSON lists
    (``file_name`` relative to ``images``). ``images`` may be one file instead of a folder: a one-image
    set, whatever its extension (as ``predict`` takes one file; one that is no image is reported when it
    is read). Raises naming the folder or file when none is found."""
    root = Path(images)
    if root.is_file():
        if json_path is not None:
            raise ValueError(f"{root}: is a file; with a COCO JSON give the folder its file_names are "
                             "relative to")
        return _spread([root], count)  # the count is checked all the same
    if not root.is_dir():
        hint = _pattern_hint(images)
        raise FileNotFoundError(f"{root}: calibration image folder or file not found{hint}")
    if json_path is not None:
        from maskrcnn.data.coco import load_coco_json

        data = load_coco_json(json_path)
        entries = data.get("images") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ValueError(f"{json_path}: field 'images' is missing or not a list")
        names = [e.get("file_name") for e in entries if isinstance(e, dict)]
        files = [root / n for n in names if isinstance(n, str) and (root / n).is_file()]
        if not files:
            raise ValueError(f"{json_path}: none of its 'images' file_names is a file under {root}")
    else:
        from maskrcnn.data.images import list_images

        files = list_images(root, recursive=True)
        if not files:
            raise ValueError(f"{root}: no image files to calibrate on")
    return _spread(files, count)


def _check_plain_convolutions(model) -> None:
    from maskrcnn.ops.fused_conv import ConvAdd
    from maskrcnn.ops.winograd import WinogradConv2d

    for name, m in model.named_modules():
        if isinstance(m, (WinogradConv2d, ConvAdd)):
            raise ValueError(
                f"int8: {name} is a {type(m).__name__}; build the predictor with winograd=False and "
                "fused_add=False (the int8 kernels replace them)"
            )


@torch.no_grad()
def quantize_predictor(
    predictor, images: Sequence, *, parts=None, source: str = "", on_unreadable=None,
    parts_named: str = "int8",
) -> dict:
    """Quantize ``predictor.model`` in place, calibrated on ``images`` (paths or (3, H, W) tensors, at
    their original size), and return the "int8" section to save with the checkpoint. ``parts`` None:
    all the model has (``modeling.quantize.quantizable_parts``); one it lacks is refused before any
    image is read, the message starting with ``parts_named`` (a command's "--parts mask_head").

    The predictor must run on the CPU, in float32, with its norms folded and without Winograd / fused
    additions: ``Predictor(..., optimise=True, winograd=False, fused_add=False)``. When a part saw no data
    (``ValueError``), the model is left prepared, not quantized: build the predictor again.

    ``on_unreadable(path, reason)``: given, an image file that cannot be read is skipped (it is called
    with the file and why; the section's "calibration" counts the ``skipped`` ones, and in
    ``skipped_reasons`` by the key predict counts them under: ``unreadable_image``, ``image_too_large``)
    and only a set of which none could be read is refused; None: the first unreadable file raises
    (``ImageReadError``)."""
    from maskrcnn.modeling.quantize import (
        check_int8_runs,
        convert_int8,
        int8_engine,
        observer_sites,
        observer_state,
        prepare_int8,
        unobserved_parts,
    )

    if predictor.runtime:
        raise ValueError("int8: an ONNX model is quantized by onnxruntime's own tools, not here")
    if predictor.device.type != "cpu":
        raise ValueError(f"int8: quantized kernels run on the CPU; the predictor is on {predictor.device}")
    if predictor.dtype is not None:
        raise ValueError(f"int8: calibrate in float32, not with autocast {predictor.dtype}")
    if len(images) == 0:
        raise ValueError("int8: no calibration images")
    _check_plain_convolutions(predictor.model)
    from maskrcnn.data.images import ImageReadError, reason_counts, skip_reason, too_large_line

    # None: all it has
    prepare_int8(predictor.model, parts=None if parts is None else list(parts), named=parts_named)
    parts = list(predictor.model.int8_parts)
    used = skipped = detected = 0  # detected: images with a box for the mask head to see
    reasons = Counter()  # skip reason -> images: image_too_large apart, its limit can be raised
    for item in images:  # one at a time: the observers' histograms grow with each image, memory does not
        try:
            image = predictor.load(item)
        except (ImageReadError, OSError) as e:
            if on_unreadable is None:
                raise
            on_unreadable(item, str(e))
            skipped += 1
            reasons[skip_reason(e)] += 1
            continue
        result = predictor.predict_tensors([image])[0]
        used += 1
        detected += bool(len(result["boxes"]))
    if used == 0:  # every file was skipped: nothing was measured
        too_large = too_large_line(reasons)  # good files over the pixel limit: how to read them
        raise ValueError(f"int8: none of the {skipped} calibration image(s) in {source or 'the set'} "
                         f"could be read ({reason_counts(reasons)})"
                         + (f"; {too_large}" if too_large else ""))
    observers = observer_state(predictor.model)
    sites = observer_sites(predictor.model)
    unseen = unobserved_parts(observers)
    if unseen:
        raise ValueError(_unseen_message(unseen, parts, used=used, detected=detected, cfg=predictor.cfg))
    convert_int8(predictor.model)
    # one converted forward on tiny inputs: a model this engine cannot run on this CPU is refused now,
    # naming the engine, before a file is written that would fail at its first prediction
    check_int8_runs(predictor.model)
    predictor.int8_parts = list(predictor.model.int8_parts)
    return {
        "format_version": INT8_FORMAT_VERSION,
        "parts": list(predictor.model.int8_parts),
        "engine": int8_engine(),
        "observers": observers,
        "sites": sites,
        "calibration": {"images": used, "skipped": skipped, "skipped_reasons": dict(sorted(reasons.items())),
                        "source": str(source)},
        "torch_version": torch.__version__.split("+")[0],
    }


def _unseen_message(unseen: list, parts: list, *, used: int, detected: int, cfg) -> str:
    """Why a part saw no tensor, and what to do. The heads after the box head run on the detected boxes
    only (those scoring >= ``model.roi_heads.score_thresh``, as in inference), so they are calibrated by
    the images that gave a detection: one is enough, none is the usual cause, not the number of images."""
    them = "it" if len(unseen) == 1 else "them"
    keep = ",".join(p for p in parts if p not in unseen) or "..."
    if detected == 0:
        thresh = cfg.model.roi_heads.score_thresh
        verb = "is" if len(unseen) == 1 else "are"
        return (f"int8: {', '.join(unseen)} {verb} calibrated on the detected boxes, and none of the {used} "
                f"calibration image(s) gave a detection (score >= model.roi_heads.score_thresh {thresh}); "
                "calibrate on images that show the objects the model finds (one with a detection is "
                f"enough; check with `maskrcnn predict`), or leave {them} out with --parts {keep}")
    return (f"int8: the {used} calibration image(s) never reached {', '.join(unseen)}; calibrate on more "
            f"or more typical images, or leave {them} out with --parts {keep}")


def int8_section_problem(section) -> Optional[str]:
    """What is wrong with a checkpoint's "int8" section (field named), or None."""
    if not isinstance(section, dict):
        return f"'{INT8_KEY}' must be a dict, got {type(section).__name__}"
    version = section.get("format_version")
    if version != INT8_FORMAT_VERSION:
        return (f"'{INT8_KEY}.format_version' {version!r} is not supported "
                f"(this library reads {INT8_FORMAT_VERSION})")
    parts = section.get("parts")
    if not isinstance(parts, list) or not parts or any(p not in PARTS for p in parts):
        return f"'{INT8_KEY}.parts' must be a non-empty list of {list(PARTS)}, got {parts!r}"
    observers = section.get("observers")
    if not isinstance(observers, dict):
        return f"'{INT8_KEY}.observers' is missing or not a dict"
    for key, value in observers.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            return f"'{INT8_KEY}.observers' must map names to tensors ({key!r} does not)"
    sites = section.get("sites")
    if not isinstance(sites, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in sites.items()):
        return f"'{INT8_KEY}.sites' is missing or does not map observer names to strings"
    return None


@torch.no_grad()
def apply_int8_section(model, section: dict, *, where: str):
    """Rebuild the calibrated int8 model from its fp32 ``model`` (norms folded, plain convolutions) and a
    checkpoint's "int8" section; in place. Errors name ``where`` (the file) and the field."""
    from maskrcnn.checkpoint import CheckpointError
    from maskrcnn.modeling.quantize import (
        convert_int8,
        load_observer_state,
        missing_parts_problem,
        observer_sites,
        prepare_int8,
    )

    problem = int8_section_problem(section)
    if problem:
        raise CheckpointError(f"{where}: {problem}")
    problem = engine_problem(section.get("engine"))
    if problem:
        raise CheckpointError(f"{where}: '{INT8_KEY}.engine' {problem}")
    problem = missing_parts_problem(model, section["parts"])
    if problem:  # a file calibrated for another architecture, or edited
        raise CheckpointError(f"{where}: '{INT8_KEY}.parts' {section['parts']}: {problem}")
    prepare_int8(model, parts=section["parts"])
    sites = observer_sites(model)
    moved = sorted(k for k in set(sites) | set(section["sites"]) if sites.get(k) != section["sites"].get(k))
    if moved:
        k = moved[0]
        raise CheckpointError(
            f"{where}: '{INT8_KEY}.sites': the model's graph is not the one calibrated ({len(moved)} "
            f"observers differ; {k} watched {section['sites'].get(k)!r}, here {sites.get(k)!r}) -- calibrate "
            "again with this version (maskrcnn quantize)"
        )
    try:
        load_observer_state(model, section["observers"])
    except ValueError as e:
        raise CheckpointError(f"{where}: '{INT8_KEY}.observers': {e} -- calibrate again with this version "
                              "(maskrcnn quantize)") from None
    return convert_int8(model)


def engine_problem(saved) -> Optional[str]:
    """Why a file calibrated under the quantized engine ``saved`` cannot load under the current one, in
    words that say which engine to set; None when it can. The scales come from the engine's qconfig
    (x86 and fbgemm: 7-bit activations, onednn and qnnpack: 8-bit), so a file loads under the engine it
    was calibrated under, or under one whose qconfig mapping is the same (``same_quantization``:
    x86 and fbgemm); any other would quantize differently from what calibration measured."""
    from maskrcnn.modeling.int8_qconfig import same_quantization
    from maskrcnn.modeling.quantize import int8_engine

    engine = int8_engine()
    if saved is None or saved == engine:
        return None
    if not isinstance(saved, str):
        return f"must be an engine name, got {saved!r}"
    supported = list(torch.backends.quantized.supported_engines)
    if saved in supported and same_quantization(saved, engine):
        return None
    again = (f"calibrate again under {engine!r} (`maskrcnn quantize --engine {engine}`; in Python: "
             "quantize_predictor from maskrcnn.engine.int8, with the engine set before the Predictor is "
             "built)")
    if saved in supported:
        return (f"is {saved!r} and this process runs {engine!r}, which quantizes differently: set "
                f"torch.backends.quantized.engine = {saved!r} before loading it (the maskrcnn commands "
                f"predict, eval, serve and benchmark do so themselves), or {again}")
    offered = [e for e in supported if e != "none"]
    return (f"is {saved!r}, which this PyTorch build or CPU does not offer (it has "
            f"{', '.join(offered)}): {again}")


def save_int8_checkpoint(path: Union[str, os.PathLike], ckpt: dict, section: dict) -> None:
    """Write ``ckpt`` (a loaded checkpoint: config, class names, fp32 weights, metadata) with the "int8"
    section, atomically. Training state (optimizer, RNG, the training run's linear engine) is left out:
    the file is for inference."""
    from maskrcnn.io_utils import atomic_write_bytes

    training_state = ("optimizer", "scheduler", "scaler", "rng", "data_state", "linear_engine")
    keep = {k: v for k, v in ckpt.items() if k not in training_state}
    keep[INT8_KEY] = section
    buf = io.BytesIO()
    torch.save(keep, buf)
    atomic_write_bytes(path, buf.getvalue())
