"""Read any weights a run can start from into one record: our checkpoints, torchvision, detectron2 and
MMDetection detectors, and ImageNet backbones (``imagenet.py``), given as a file, a URL or a published name.

``read_weights(spec)`` resolves the spec (downloads are cached and, where the publisher gives a hash,
checked; ``download.py``), opens the file without running code from it (``torch.load(weights_only=True)``
for torch files, ``safetensors`` for a safetensors file (our config in its metadata, or bare tensors
recognised by their names like a torch file's), a numpy-only unpickler for ``.pkl``; MMDetection v3
files, whose training state holds mmengine objects, through ``mmdet_file.read_mmdet_file``), recognises
the layout from the key names, converts to our parameter names and returns a ``SourceWeights``:

- ``state_dict``: tensors under our names (``docs/checkpoints.md``), in our conventions (RGB stem,
  background first);
- ``implied``: the dotted config keys the weights fix, with their values: the input convention
  (``model.pixel_mean``, ``model.pixel_std``, ``model.stride_in_1x1``, ``model.frozen_bn_eps``) and, for a
  detector, the architecture and conventions of every part it has (``IMPLIED_BY_PART``); for a checkpoint of
  ours also its input sizes (``INPUT_SIZE_KEYS``);
- ``class_names`` (background first) and ``keypoint_names`` where the weights have class rows or
  keypoint channels; ``unused``: source keys no detector of ours uses (an ImageNet ``fc``);
- ``provenance``: the spec, resolved path, URL and SHA-256 of the file.

A spec ending in ``#ema`` (``train --init model_25.pth#ema``) takes the EMA copy a file holds beside its
weights (``wrappers.EMA_KEYS``: "model_ema" of torchvision's ``train.py --model-ema`` and of our
checkpoints, timm's "state_dict_ema", another script's "ema_state_dict") instead of them; without it a
note says the copy exists. An MMDetection file refuses it: mmengine's ``EMAHook`` saves the average as
"state_dict" itself (the raw weights go to "ema_state_dict", with its "steps" counter), so the plain spec
already takes the average (a note says so); so does a torchvision file with such an "ema_state_dict".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from maskrcnn.config import INPUT_SIZE_KEYS, get_key
from maskrcnn.interop.torchvision import ConversionError

# COCO's person keypoints, the order of torchvision's and detectron2's keypoint models
COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)

# How RoIs are pooled and their boxes regressed: the conventions of whichever RoI box head the weights
# have, the box_head.* of an FPN model or the res5 stage a C4 model runs on each RoI (it has no box_head.*)
_ROI_BOX_KEYS = ("model.roi_heads.box_pool_size", "model.roi_heads.box_reg_weights", "model.roi_heads.pooler",
                 "model.roi_heads.pooler_aligned", "model.roi_heads.pooler_sampling_ratio",
                 "model.roi_heads.canonical_level", "model.roi_heads.canonical_box_size")
# The config keys a detector's weights fix, by the part of the model that holds them: their tensor shapes
# and the conventions the weights were trained with (what a feature, an anchor or a delta means). A C4
# file (roi_heads.res5.*) also brings its proposal counts and padding multiple, as its config gives them:
# a detectron2 file those ``convert`` writes for it (detectron2's C4 defaults: 12000/6000 proposals before
# NMS, 2000/1000 after, ROIAlignV2, size_divisibility 0), a checkpoint of ours its own stored config (the
# r50_c4 preset's size_divisibility 32, unaligned RoIAlign): one rule, so that ``train --init FILE`` builds
# the model ``convert FILE`` describes.
IMPLIED_BY_PART = {
    "backbone.": ("model.backbone", "model.stride_in_1x1", "model.pixel_mean", "model.pixel_std",
                  "model.fpn", "model.roi_features"),
    "fpn.": ("model.fpn_dim", "model.fpn_norm"),
    "rpn.": ("model.rpn.head_convs", "model.rpn.anchor_sizes", "model.rpn.aspect_ratios",
             "model.rpn.anchor_rounding"),
    "roi_heads.box_head.": ("model.roi_heads.box_head", "model.roi_heads.box_head_dim",
                            "model.roi_heads.box_head_norm", *_ROI_BOX_KEYS),
    "roi_heads.res5.": (*_ROI_BOX_KEYS, "model.size_divisibility", "model.rpn.pre_nms_topk_train",
                        "model.rpn.pre_nms_topk_test", "model.rpn.post_nms_topk_train",
                        "model.rpn.post_nms_topk_test"),
    "roi_heads.mask_head.": ("model.roi_heads.mask_head_convs", "model.roi_heads.mask_head_dim",
                             "model.roi_heads.mask_head_norm", "model.roi_heads.mask_pool_size",
                             "model.roi_heads.mask_loss", "model.roi_heads.mask_paste",
                             "model.roi_heads.mask_class_agnostic"),
    "roi_heads.keypoint_head.": ("model.roi_heads.keypoint_head_convs", "model.roi_heads.keypoint_head_dim",
                                 "model.roi_heads.keypoint_pool_size"),
}

@dataclass
class SourceWeights:
    """Weights to start a run from, converted to our names and conventions (module docstring)."""

    state_dict: dict
    kind: str  # maskrcnn | torchvision | detectron2 | mmdetection | imagenet
    layout: str  # the converter's layout name (maskrcnn, maskrcnn_v2, keypointrcnn, ..., or caffe2 ...)
    implied: dict
    class_names: Optional[list] = None
    keypoint_names: Optional[list] = None
    unused: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    # our key -> the file's (a converter's report["origin"]; ours to ours for our checkpoint), for
    # messages naming its tensors; None or a key it lacks: not known (said as our name, marked so)
    origin: Optional[dict] = None
    # the file's entry holding the weights ("model", "state_dict"; None: at its top), said beside its keys
    entry: Optional[str] = None
    # batch-norm counters (num_batches_tracked, our names) the conversion dropped: a frozen BN keeps none
    counters: list = field(default_factory=list)

    def describe(self) -> str:
        if self.kind == "imagenet":
            return f"ImageNet backbone ({self.layout} layout)"
        return f"{self.kind} detector ({self.layout} layout)"


def implied_by_config(cfg, state_dict: dict) -> dict:
    """The keys of ``IMPLIED_BY_PART`` for the parts ``state_dict`` has, with ``cfg``'s values; plus the
    batch-norm eps the backbone's statistics were computed with."""
    out = {}
    for part, keys in IMPLIED_BY_PART.items():
        if any(k.startswith(part) for k in state_dict):
            out.update({k: get_key(cfg, k) for k in keys})
    m = cfg.model
    out["model.frozen_bn_eps"] = m.frozen_bn_eps if m.norm == "frozen_bn" else 1e-5
    if m.norm not in ("frozen_bn", "bn"):  # group norm / none: other tensors, not convertible
        out["model.norm"] = m.norm
    return out


def resolve_spec(spec: str, *, cache=None) -> dict:
    """A file, URL or published name -> {"spec", "path", "url"} with the file present locally."""
    from maskrcnn.interop.download import PUBLISHED, download, is_published, resolve

    spec = str(spec)
    if os.path.exists(spec):
        if not os.path.isfile(spec):
            raise ValueError(f"{spec}: a folder, not a weights file")
        return {"spec": spec, "path": str(Path(spec).resolve()), "url": None}
    if is_published(spec) or "://" in spec:
        url = resolve(spec)
        return {"spec": spec, "path": str(download(spec, cache=cache)), "url": url}
    raise FileNotFoundError(f"{spec}: no such file, and not a published name or URL (published: "
                            f"{', '.join(PUBLISHED)}; or detectron2://PATH)")


def _unwrap(obj, source: str) -> dict:
    from maskrcnn.interop.wrappers import inner_state_dict, state_dict_problem

    problem = state_dict_problem(obj, source)
    if problem is not None:
        raise ConversionError(problem)
    obj, taken, _ignored = inner_state_dict(obj)
    if taken is None and isinstance(obj, dict) and isinstance(obj.get("blobs"), dict):  # Caffe2 pickles
        obj = obj["blobs"]
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{source}: not a state dict (expected a mapping of names to arrays)")
    return obj


def _holds_namespace(obj) -> bool:
    """Whether ``obj`` holds an ``argparse.Namespace`` (the one global ``torch_load_weights`` allows beyond
    ``load_checkpoint``'s), looked for through dicts, lists and tuples without recursion."""
    import argparse

    stack, seen = [obj], set()
    while stack:
        item = stack.pop()
        if isinstance(item, argparse.Namespace):
            return True
        if isinstance(item, (dict, list, tuple)) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item.values() if isinstance(item, dict) else item)
    return False


def _ours(path: str, obj: dict, ema: bool = False) -> SourceWeights:
    """Our checkpoint's weights from ``obj``, the file's object already read, checked as
    ``load_checkpoint`` checks it (not read again; ``checkpoint_read.checked_ours``, as ``convert --from
    maskrcnn`` and ``predict`` check it); ``ema``: its "model_ema" copy instead of "model"."""
    from maskrcnn.checkpoint import config_from_checkpoint
    from maskrcnn.checkpoint import load_checkpoint as refuse_as_load_checkpoint
    from maskrcnn.checkpoint_read import checked_ours

    if _holds_namespace(obj):  # read with torchvision's allow-list; predict / eval / --resume refuse it:
        refuse_as_load_checkpoint(path)  # so does --init, in its words (it raises CheckpointError)
    from maskrcnn.engine.int8 import INT8_KEY

    ckpt, notes = checked_ours(path, obj, ema=ema,
                               ema_how=f"`train --init FILE{EMA_SUFFIX}` takes the EMA copy")
    if INT8_KEY in obj:  # quantize keeps the float32 weights beside the INT8 calibration: those start the run
        notes = [*notes, f"{path} is an INT8 file (written by quantize): the run starts from the float32 "
                         "weights it holds; its INT8 calibration is not used (quantize the new weights "
                         "again)"]
    cfg = config_from_checkpoint(ckpt)
    sd = dict(ckpt["model"])
    from maskrcnn.interop.float_dtypes import CONVERTED, dtype_note

    said = dtype_note(sd, CONVERTED)  # (the run's model takes them as its float32 parameters)
    notes = [*notes, said] if said else notes
    names = list(ckpt["class_names"]) or None
    # our checkpoint stores the sizes its objects were learnt at: a run from it keeps that scale (the
    # finetune preset's 800 px would scale a 150 px model's images up 5x), as a suggestion (--set or a
    # --config file wins); other files' converted configs hold only their framework's defaults
    implied = {**implied_by_config(cfg, sd), **{k: get_key(cfg, k) for k in INPUT_SIZE_KEYS}}
    return SourceWeights(
        state_dict=sd, kind="maskrcnn", layout="maskrcnn-checkpoint", implied=implied,
        class_names=names, keypoint_names=list(cfg.data.keypoint_names) or None, notes=notes,
        origin={k: k for k in sd},
    )


EMA_SUFFIX = "#ema"


def split_ema(spec: str) -> tuple:
    """``(spec, ema)``: "FILE#ema" asks for the EMA copy of FILE's weights (a file named so stays a file)."""
    spec = str(spec)
    if spec.endswith(EMA_SUFFIX) and not os.path.exists(spec):
        return spec[: -len(EMA_SUFFIX)], True
    return spec, False


def _no_ema(source: str, what: str) -> ConversionError:
    """The refusal of ``#ema`` on a file of which no EMA copy is read (``what`` it is)."""
    from maskrcnn.interop.wrappers import no_ema_error

    return no_ema_error(source, f"this is {what}; {EMA_SUFFIX} takes 'model_ema' (torchvision's "
                                "train.py --model-ema, our save_checkpoint), timm's 'state_dict_ema' or an "
                                "'ema_state_dict' beside a torchvision detector's or our checkpoint's "
                                "weights")


def _detector(obj, kind: str, source: str, ema: bool = False) -> SourceWeights:
    if ema and kind == "detectron2":
        raise _no_ema(source, f"a {kind} file")
    if kind == "mmdetection":
        from maskrcnn.interop.mmdetection import convert_mmdetection

        result = convert_mmdetection(obj, source=source, ema=ema)
        cfg, sd = result["config"], result["state_dict"]
        return SourceWeights(state_dict=sd, kind=kind, layout=result["layout"],
                             implied=implied_by_config(cfg, sd), class_names=list(result["class_names"]),
                             notes=["class rows moved: mmdet's background-last order to background-first",
                                    *result["notes"]], origin=result["report"]["origin"],
                             entry=result["report"].get("entry"),
                             counters=result["report"]["counters_dropped"])
    if kind == "torchvision":
        from maskrcnn.interop.torchvision import convert_torchvision as convert
    else:
        from maskrcnn.interop.detectron2 import convert_detectron2 as convert
    result = convert(obj, source=source, ema=ema) if kind == "torchvision" else convert(obj, source=source)
    cfg, sd = result["config"], result["state_dict"]
    notes = list(result.get("notes", []))
    if kind == "detectron2":
        notes = [*notes, "stem conv input channels reversed: BGR weights, RGB images",
                 "class rows moved: detectron2's background-last order to background-first"]
    keypoints = list(COCO_KEYPOINT_NAMES) if cfg.model.roi_heads.keypoint_on and \
        cfg.model.roi_heads.num_keypoints == len(COCO_KEYPOINT_NAMES) else None
    return SourceWeights(state_dict=sd, kind=kind, layout=result["layout"],
                         implied=implied_by_config(cfg, sd), class_names=list(result["class_names"]),
                         keypoint_names=keypoints, notes=notes, origin=result["report"]["origin"],
                             entry=result["report"].get("entry"),
                         counters=result["report"]["counters_dropped"])


def _state_dict_keys(obj, source: str) -> tuple:
    """``(state_dict, its string keys)`` of a file's object, recognised without the "module." of a
    (Distributed)DataParallel model (or a Lightning "model."), as ``convert`` reads such files;
    ConversionError when it holds no state dict. Another prefix every key shares ("detector.") is
    dropped when the names without it are a detector's layout, as each converter drops it
    (``wrappers.strip_common_prefix``)."""
    from maskrcnn.interop.wrappers import strip_common_prefix

    sd, _prefix = strip_common_prefix(_unwrap(obj, source), lambda keys: _detector_layout(keys) is not None)
    return sd, [k for k in sd if isinstance(k, str)]


def _detector_layout(keys: list) -> Optional[str]:
    """"torchvision" | "detectron2" | "mmdetection" by a state dict's key names, None for none of them."""
    from maskrcnn.interop.detectron2 import is_detectron2
    from maskrcnn.interop.mmdetection import is_mmdetection
    from maskrcnn.interop.torchvision import is_torchvision

    if is_torchvision(keys):  # (its one-stage detectors too: the torchvision reader names them)
        return "torchvision"
    if is_detectron2(keys):
        return "detectron2"
    if is_mmdetection(keys):  # rpn_head.*, roi_head.*, neck.lateral_convs.*
        return "mmdetection"
    return None


_BODY = "backbone.body."


def _backbone_body(sd: dict) -> Optional[dict]:
    """The ``backbone.body.*`` tensors, under torchvision's ImageNet names (``conv1.weight``,
    ``layer1.*``), of a file that holds ``backbone.*`` keys only (``backbone.body`` / ``resnet_fpn_backbone``
    saved alone); None for a detector (with or without its box predictor) or another body."""
    from maskrcnn.interop import imagenet
    from maskrcnn.interop.torchvision import backbone_only

    if not backbone_only(sd):  # a detector (maybe without its box predictor): not an ImageNet body
        return None
    body = {k[len(_BODY):]: v for k, v in sd.items() if isinstance(k, str) and k.startswith(_BODY)}
    return body if imagenet.detect_layout(body) == "torchvision" else None


def _torchvision_backbone(sd: dict, body: dict, source: str) -> SourceWeights:
    """A torchvision backbone saved without its detector: its ResNet body starts ours as an ImageNet
    backbone does; the rest (an FPN, an RPN) is listed unused, not guessed into place."""
    from maskrcnn.interop import imagenet
    from maskrcnn.listing import short_listing

    bb = imagenet.convert_imagenet(body, source=source)
    rest = sorted(k for k in sd if not (isinstance(k, str) and k.startswith(_BODY)))
    note = "backbone weights only (backbone.body.*, no roi_heads.box_predictor): the ResNet body loaded"
    if rest:
        note += f"; {len(rest)} other tensors unused ({short_listing(rest, limit=3)})"
    return SourceWeights(state_dict=bb.state_dict, kind="imagenet", layout=f"torchvision-backbone {bb.arch}",
                         implied=bb.implied, unused=[_BODY + k for k in bb.unused] + rest,
                         notes=[*bb.notes, note])


def convert_any(obj, *, source: str = "checkpoint", ema: bool = False) -> SourceWeights:
    """What a weights file held (already read safely) -> ``SourceWeights`` (our checkpoints excepted:
    ``read_weights`` validates those with ``checkpoint.check_checkpoint``). ``ema``: a torchvision
    file's "model_ema" copy instead of "model"."""
    from maskrcnn.interop import imagenet

    sd, keys = _state_dict_keys(obj, source)  # ``train --init`` once refused what ``convert`` took
    kind = _detector_layout(keys)
    body = _backbone_body(sd) if kind == "torchvision" else None
    if body is not None:
        if ema:
            raise _no_ema(source, "backbone weights only, not a detector's file")
        return _torchvision_backbone(sd, body, source)
    if kind is not None:
        return _detector(obj, kind, source, ema)
    if ema:
        raise _no_ema(source, "not a detector's file")
    if imagenet.detect_layout(sd) is not None:
        bb = imagenet.convert_imagenet(sd, source=source)
        return SourceWeights(state_dict=bb.state_dict, kind="imagenet", layout=f"{bb.layout} {bb.arch}",
                             implied=bb.implied, unused=bb.unused, notes=bb.notes)
    if any(k.startswith("backbone.stem.") for k in keys):
        raise ConversionError(f"{source}: a bare state dict of this library's model, without the config that "
                              "says how to build it; save it with maskrcnn.checkpoint.save_checkpoint")
    from maskrcnn.interop.wrappers import common_prefix

    shared = common_prefix(keys)
    shared = f"; every key starts with '{shared}'" if shared else ""
    raise ConversionError(
        f"{source}: not weights this library can start from (keys like {', '.join(map(str, keys[:3]))}"
        f"{shared}); "
        "expected a maskrcnn checkpoint, a torchvision, detectron2 or MMDetection R-CNN, or an ImageNet "
        "ResNet/ResNeXt")


def layout_of(obj) -> Optional[str]:
    """What a weights file's object looks like, by its format marker and key names: "maskrcnn" (our
    checkpoint) | "torchvision" | "detectron2" | "mmdetection" | "imagenet" | None (none of these).
    The recognition ``convert_any`` uses, without converting."""
    from maskrcnn.checkpoint import FORMAT
    from maskrcnn.interop import imagenet

    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return "maskrcnn"
    try:
        sd, keys = _state_dict_keys(obj, "file")
    except (ConversionError, AttributeError, TypeError):
        return None
    kind = _detector_layout(keys)
    if kind == "torchvision" and _backbone_body(sd) is not None:
        return "imagenet"  # a backbone saved alone: a run starts from it as from an ImageNet one
    if kind is not None:
        return kind
    try:
        return "imagenet" if imagenet.detect_layout(sd) is not None else None
    except ConversionError:
        return None


def _read_weights_object(path, *, any_pickle: bool = False, reads=None, take: bool = False) -> object:
    """A weights file's object, never running code from it: a zip through ``torch.load(weights_only=True)``,
    a safetensors file (told by its bytes) through its library, a ``.pkl`` (``any_pickle``: any plain
    pickle, whatever its suffix) through the numpy-only unpickler, an MMDetection v3 file that
    ``weights_only`` refuses (its mmengine training state) with foreign objects left inert.
    ConversionError (the first reader's) when none reads it; FileNotFoundError.
    ``reads`` (a ``FileReads``): the call's earlier read of the file is used (``take``: and forgotten)."""
    from maskrcnn.checkpoint_refusal import is_plain_pickle
    from maskrcnn.interop.detectron2 import reader_for

    pickled = any_pickle and is_plain_pickle(path)
    if reads is None:
        return _read_object(path, pickled)
    # the reader read_detectron2_file picks for a .pkl is the one any_pickle picks: one entry for both
    reader = "pickle" if pickled else reader_for(path) if os.path.isfile(path) else "torch"
    return reads.read(path, reader, lambda: _read_object(path, pickled), take=take)


def _read_object(path, pickled: bool) -> object:
    from maskrcnn.interop.detectron2 import _read_pickle, read_detectron2_file

    try:
        if pickled:
            return _read_pickle(Path(path))
        return read_detectron2_file(path)  # zip: torch.load(weights_only=True); .pkl: numpy-only unpickler
    except ConversionError:
        obj = _mmdet_or_none(str(path))
        if obj is None:
            raise
        return obj


def identify_file(path, *, reads=None) -> Optional[str]:
    """``layout_of`` the file's object, read by ``_read_weights_object`` as ``read_weights`` reads it (a plain
    pickle through the numpy-only unpickler whatever its suffix); None when it cannot be read or is none
    of the layouts. Used to word a refusal: which ``--from`` (or none) the file needs. ``reads`` (a
    ``FileReads``): the object is kept there for the call's ``read_weights``."""
    obj = read_object_or_none(path, reads)
    return None if obj is None else layout_of(obj)


def read_object_or_none(path, reads=None):
    """The file's object as ``read_weights`` reads it (``_read_weights_object``), or None when it cannot be
    read: for telling a file (``identify_file``, ``init_kind``), not for refusing it."""
    try:
        return _read_weights_object(path, any_pickle=True, reads=reads)
    except (ConversionError, OSError, ValueError):
        return None


def init_kind(spec: str, *, reads=None) -> Optional[str]:
    """What ``train --init SPEC`` starts from, told before the config is chosen: "detector" (ours or
    another library's: a whole model, fine-tuned with the ``finetune`` recipe) | "imagenet" (a backbone:
    the from-scratch recipe) | None (unreadable or unknown, or a detector no run can start from: a
    torchvision RetinaNet, an R-CNN saved without its box predictor; ``read_weights`` refuses it later,
    naming why: no "is a detector, so the finetune preset" line before it). A published name or URL is
    told by its cached file when there is one, else by its name (nothing downloaded: every torchrun rank
    decides alike before rank 0 downloads); a file is read as ``read_weights`` reads it (kept in
    ``reads``, a ``FileReads``, for the call's ``read_weights``)."""
    from maskrcnn.interop.download import cache_dir, cache_name, is_published, resolve

    spec, _ = split_ema(spec)  # FILE#ema: the file is told like any other (read_weights refuses a wrong one)
    if is_published(spec) or "://" in spec:
        try:
            url = resolve(spec)
        except ValueError:
            return None
        cached = cache_dir() / cache_name(url)
        if not cached.is_file():  # told by its name, as every rank tells it: nothing fetched before the run
            # every published detector's URL names its R-CNN; no ImageNet backbone's does
            if "rcnn" in url.lower():
                return "detector"
            return "imagenet" if is_published(spec) else None
        spec = str(cached)
    try:
        path = resolve_spec(spec)["path"]
    except (OSError, ValueError, RuntimeError):
        return None
    obj = read_object_or_none(path, reads)
    found = None if obj is None else layout_of(obj)
    if convert_problem(obj, found) is not None:
        return None  # a RetinaNet, an R-CNN less its box predictor: no detector to fine-tune (refused later)
    return None if found is None else ("imagenet" if found == "imagenet" else "detector")


def torchvision_problem(obj) -> Optional[str]:
    """Why a torchvision file's object (``layout_of`` "torchvision") is no detector this library reads: no
    R-CNN (``torchvision.rcnn_problem``: a RetinaNet, an R-CNN less its box predictor) or another body
    than a ResNet's (``torchvision.body_problem``: a MobileNet); None for one it reads."""
    from maskrcnn.interop.torchvision import body_problem, rcnn_problem

    try:
        sd, _keys = _state_dict_keys(obj, "file")
    except (ConversionError, AttributeError, TypeError):
        return None
    return rcnn_problem(sd) or body_problem(sd)


def convert_problem(obj, found: Optional[str]) -> Optional[str]:
    """Why ``maskrcnn convert --from FOUND`` would refuse the file's object that ``layout_of`` calls
    ``found`` although it is that library's (a torchvision RetinaNet or MobileNet detector, a detectron2
    Cascade or PointRend: ``torchvision_problem``, ``detectron2.unsupported_design``), in the converter's
    words; None when it converts (as far as its key names tell). What ``predict`` says of such a file,
    rather than sending it to ``convert``."""
    if found == "torchvision":
        return torchvision_problem(obj)
    if found == "detectron2":
        from maskrcnn.interop.detectron2 import unsupported_design

        try:
            sd, _keys = _state_dict_keys(obj, "file")
        except (ConversionError, AttributeError, TypeError):
            return None
        return unsupported_design(sd)
    return None


def wrong_source_hint(path, asked: str) -> Optional[str]:
    """The refusal of ``convert --from ASKED`` on a file that is recognisably something else (our
    checkpoint, or another library's layout); None when it is what was asked for, or unrecognised."""
    found = identify_file(path)
    if found is None or found == asked:
        return None
    if found == "maskrcnn":
        return (f"{path}: this is a maskrcnn checkpoint: no conversion needed, use it as --weights / --init "
                f"(not --from {asked}); to rewrite it: maskrcnn convert --from maskrcnn {path} OUT "
                "[--to safetensors]")
    if found == "imagenet":
        return (f"{path}: backbone weights only (an ImageNet ResNet, or a torchvision backbone saved alone), "
                f"not a {asked} detector: start a run from them with train --init")
    shown = {"mmdetection": "an MMDetection"}.get(found, f"a {found}")
    return f"{path}: this looks like {shown} file, not {asked}: use --from {found}"


def is_mmdetection_file(path) -> bool:
    """Whether ``path`` is an MMDetection v3 checkpoint that ``weights_only`` refuses for its training
    state (read as ``convert --from mmdetection`` reads it: foreign objects inert, an attack global
    refused): the refusal of predict / export / quantize then names that command."""
    return _mmdet_or_none(str(path)) is not None


def _mmdet_or_none(path: str):
    """An MMDetection v3 checkpoint that ``weights_only`` refused (its mmengine training state), read with
    foreign objects left inert; None when the file is not one (the original refusal then stands)."""
    import zipfile

    from maskrcnn.interop.mmdet_file import read_mmdet_file
    from maskrcnn.interop.mmdetection import is_mmdetection

    if not zipfile.is_zipfile(path):
        return None
    try:
        obj = read_mmdet_file(path)
    except ConversionError:
        return None
    from maskrcnn.interop.wrappers import strip_common_prefix

    sd = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        return None
    sd, _prefix = strip_common_prefix(sd, is_mmdetection)  # ("detector.": as the converter reads it)
    return obj if is_mmdetection([k for k in sd if isinstance(k, str)]) else None


def read_weights(spec: str, *, cache=None, reads=None) -> SourceWeights:
    """Resolve, read (never running code from the file) and convert ``spec``; see the module docstring.
    ``reads`` (a ``FileReads``): the object ``init_kind`` read in the same call is used, not read again;
    emptied when this returns or raises."""
    try:
        return _read_weights(spec, cache=cache, reads=reads)
    finally:
        if reads is not None:  # the call's other reads (another reader's, a file since replaced): not kept
            reads.clear()


def _read_weights(spec: str, *, cache, reads) -> SourceWeights:
    from maskrcnn.checkpoint import FORMAT
    from maskrcnn.interop.download import sha256_of

    spec, ema = split_ema(spec)
    where = resolve_spec(spec, cache=cache)
    path = where["path"]
    obj = _read_weights_object(path, reads=reads, take=True)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        weights = _ours(path, obj, ema)
    else:
        weights = convert_any(obj, source=str(spec), ema=ema)
    weights.provenance = {**where, "sha256": sha256_of(path), "bytes": os.path.getsize(path),
                          "format": weights.describe()}
    return weights
