"""Convert detectron2 R-CNN checkpoints (Mask / Keypoint / Faster R-CNN, R50/R101/X101-FPN) to ours.

Files: the model zoo's ``model_final_*.pkl`` (a pickle of ``{"model": {name: numpy array}, ...}``, read
by a restricted unpickler that only rebuilds numpy arrays, so loading never runs code) and the ``.pth``
files detectron2's trainer writes (``{"model": state dict, "optimizer": ..., ...}``, read with
``torch.load(weights_only=True)``). Caffe2-style ImageNet backbones (``res2_0_branch2a_w``) are refused:
they are not detectors.

Conventions bridged here (the model itself never knows detectron2's):
- Input: detectron2 feeds BGR images in 0-255, minus a BGR pixel mean, divided by a BGR pixel std
  (model zoo: mean (103.530, 116.280, 123.675); std (1, 1, 1) for the MSRA R50/R101 nets and
  (57.375, 57.120, 58.395) for X101-32x8d; ``pixel_mean`` / ``pixel_std`` entries in the file win).
  Ours takes RGB in [0, 1], so the stem conv's input channels are reversed (BGR -> RGB) and
  ``model.pixel_mean`` / ``model.pixel_std`` become mean / 255 and std / 255 in RGB order.
- Labels: detectron2 puts the background LAST in ``cls_score`` (K+1 rows) and has no background slot in
  ``bbox_pred`` (4K rows) or the mask predictor (K channels); ours has background first everywhere. The
  last score row moves to row 0, and zero background slots are inserted in front of the box deltas and
  the mask logits (never used: predictions are read for labels >= 1 only).
- Backbone: MSRA ResNets stride on the first 1x1 conv (``model.stride_in_1x1=True``); the X101 nets
  (torchvision-style), the GroupNorm nets (``*_gn``) and ``Misc/*_syncbn`` on the 3x3 (as their configs
  say: the weights cannot tell). FrozenBN eps 1e-5.
- Norms: read per part from the keys: ``norm.running_var`` present -> BN (FrozenBN in the backbone),
  only ``norm.weight/bias`` -> GroupNorm (32 groups, as detectron2's "GN"), no ``norm.*`` -> none.
- Refused in one line: Cascade R-CNN, PointRend, DC5, Panoptic FPN, deformable convs, RegNet / other
  non-ResNet FPN bodies, box heads other than 2fc / 4conv1fc.
- Heads: anchors are not rounded (``model.rpn.anchor_rounding=False``); RoIAlignV2, i.e. half-pixel
  aligned with adaptive sampling (``pooler_aligned=True``, ``pooler_sampling_ratio=0``; our RoIAlign
  samples adaptively for ratios <= 0); masks pasted with ``grid_sample``.

Shapes: K object classes (detectron2's NUM_CLASSES), so ours counts K + 1; J keypoints read from
``roi_heads.keypoint_head.score_lowres.weight`` (512, J, 4, 4).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from maskrcnn.interop.conventions import background_first, stem_bgr_to_rgb
from maskrcnn.interop.key_rules import (
    compile_rules,
    conversion_problems,
    count_indices,
    drop_frozen_counters,
    rename_key,
    shape_mismatches,
)
from maskrcnn.interop.torchvision import (
    COCO_CLASS_NAMES_91,
    ConversionError,
    resnet_arch,
    torch_load_weights,
)
from maskrcnn.interop.wrappers import prefix_note, strip_common_prefix, where_keys

# detectron2's COCO classes are the 80 contiguous ones: torchvision's 91 ids minus the unused "N/A"s
COCO_CLASS_NAMES_81 = tuple(n for n in COCO_CLASS_NAMES_91 if n != "N/A")

# BGR, on 0-255 images: the model zoo's MSRA nets and its X101-32x8d (converted from torchvision)
D2_PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
D2_PIXEL_STD_BGR_MSRA = (1.0, 1.0, 1.0)
D2_PIXEL_STD_BGR_X101 = (57.375, 57.120, 58.395)


# entries that are buffers, not weights: detectron2 rebuilds them from its config, and so do we
_IGNORED = re.compile(r"^(pixel_mean|pixel_std|proposal_generator\.anchor_generator\.cell_anchors\.\d+)$")

# FPN models nest the ResNet as backbone.bottom_up.*; C4 models have it directly as backbone.*
_BOTTOM_UP = r"^backbone\.(?:bottom_up\.)?"
# (pattern, replacement) tried in order; a replacement is a template or a function of the match groups.
_RULES = [
    (_BOTTOM_UP + r"stem\.conv1\.weight$", "backbone.stem.conv1.conv.weight"),
    (_BOTTOM_UP + r"stem\.conv1\.norm\.(.+)$", r"backbone.stem.conv1.norm.\1"),
    (_BOTTOM_UP + r"res(\d)\.(\d+)\.(conv\d|shortcut)\.weight$", r"backbone.res\1.\2.\3.conv.weight"),
    (_BOTTOM_UP + r"res(\d)\.(\d+)\.(conv\d|shortcut)\.norm\.(.+)$", r"backbone.res\1.\2.\3.norm.\4"),
    # C4: res5 runs on the pooled RoIs and lives in the RoI heads, in detectron2 as in ours
    (r"^roi_heads\.res5\.(\d+)\.(conv\d|shortcut)\.weight$", r"roi_heads.res5.\1.\2.conv.weight"),
    (r"^roi_heads\.res5\.(\d+)\.(conv\d|shortcut)\.norm\.(.+)$", r"roi_heads.res5.\1.\2.norm.\3"),
    # detectron2 names FPN levels by their stage (2..5); ours index them from 0
    (r"^backbone\.fpn_lateral(\d)\.(weight|bias)$", lambda g: f"fpn.lateral.{int(g[0]) - 2}.conv.{g[1]}"),
    (r"^backbone\.fpn_output(\d)\.(weight|bias)$", lambda g: f"fpn.output.{int(g[0]) - 2}.conv.{g[1]}"),
    # FPN.NORM "GN" / "SyncBN" (the _gn and _syncbn zoo models): a norm after each FPN conv
    (r"^backbone\.fpn_(lateral|output)(\d)\.norm\.(.+)$",
     lambda g: f"fpn.{g[0]}.{int(g[1]) - 2}.norm.{g[2]}"),
    (r"^proposal_generator\.rpn_head\.conv\.(weight|bias)$", r"rpn.head.convs.0.conv.\1"),
    (r"^proposal_generator\.rpn_head\.conv\.conv(\d+)\.(weight|bias)$", r"rpn.head.convs.\1.conv.\2"),
    (r"^proposal_generator\.rpn_head\.objectness_logits\.(.+)$", r"rpn.head.objectness.\1"),
    (r"^proposal_generator\.rpn_head\.anchor_deltas\.(.+)$", r"rpn.head.deltas.\1"),
    # fc / mask_fcn / conv_fcn are numbered from 1
    (r"^roi_heads\.box_head\.fc(\d+)\.(weight|bias)$",
     lambda g: f"roi_heads.box_head.fcs.{int(g[0]) - 1}.{g[1]}"),
    # FastRCNNConvFCHead with NUM_CONV 4 (the _gn / _syncbn models' 4conv1fc head): conv1..conv4
    (r"^roi_heads\.box_head\.conv(\d+)\.(weight|bias)$",
     lambda g: f"roi_heads.box_head.convs.{int(g[0]) - 1}.conv.{g[1]}"),
    (r"^roi_heads\.box_head\.conv(\d+)\.norm\.(.+)$",
     lambda g: f"roi_heads.box_head.convs.{int(g[0]) - 1}.norm.{g[1]}"),
    (r"^roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(weight|bias)$", r"roi_heads.box_predictor.\1.\2"),
    (r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$",
     lambda g: f"roi_heads.mask_head.convs.{int(g[0]) - 1}.conv.{g[1]}"),
    (r"^roi_heads\.mask_head\.mask_fcn(\d+)\.norm\.(.+)$",
     lambda g: f"roi_heads.mask_head.convs.{int(g[0]) - 1}.norm.{g[1]}"),
    (r"^roi_heads\.mask_head\.(deconv|predictor)\.(weight|bias)$", r"roi_heads.mask_head.\1.\2"),
    (r"^roi_heads\.keypoint_head\.conv_fcn(\d+)\.(weight|bias)$",
     lambda g: f"roi_heads.keypoint_head.convs.{int(g[0]) - 1}.conv.{g[1]}"),
    (r"^roi_heads\.keypoint_head\.score_lowres\.(weight|bias)$", r"roi_heads.keypoint_head.predictor.\1"),
]
_COMPILED = compile_rules(_RULES)

# newer detectron2 RPN heads with several convs name them conv.conv0, conv.conv1, ...
_RPN_CONVS = r"^proposal_generator\.rpn_head\.conv\.conv(\d+)\.weight$"
_CAFFE2_KEY = re.compile(r"^(res\d+_\d+_branch\w+|res_conv1_bn_\w+|conv1_[wb]|fc1000_[wb])$")


# --------------------------------------------------------------------------------------------
# Reading files without running code


def _numpy_globals() -> dict:
    """The globals a pickle of numpy arrays names, ``(module, name) -> object``: safe_load's one numpy
    table (``numpy.ndarray`` and the rebuilders refuse object dtypes) plus the containers such a pickle
    uses."""
    import codecs
    from collections import OrderedDict

    from maskrcnn.safe_load import numpy_globals

    allowed = {tuple(full.rsplit(".", 1)): obj for full, obj in numpy_globals().items()}
    allowed[("collections", "OrderedDict")] = OrderedDict
    # protocol-2 pickles (Python 2 era) store raw bytes as _codecs.encode(text, "latin1")
    allowed[("_codecs", "encode")] = codecs.encode
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and plain containers and refuses every other global."""

    def __init__(self, file, source: str):
        # latin1: Python 2 pickles hold numpy buffers as str, which must come back byte for byte
        super().__init__(file, encoding="latin1")
        self._source = source
        self._allowed = _numpy_globals()

    def find_class(self, module, name):
        found = self._allowed.get((module, name))
        if found is None:
            raise ConversionError(f"{self._source} asks to run code (global {module}.{name}) when unpickled; "
                                  "refused (a file of numpy arrays never needs it)")
        return found


def _read_pickle(path: Path):
    from maskrcnn.safe_load import ObjectDtypeError, refuse_object_arrays

    with open(path, "rb") as f:
        try:
            obj = _NumpyOnlyUnpickler(f, str(path)).load()
        except ConversionError:
            raise
        except ObjectDtypeError as e:
            raise ConversionError(f"{path}: {e}") from None
        except MemoryError:  # pickle allocates what a length field asks for: a damaged one (2**50) lands here
            from maskrcnn.checkpoint_refusal import damaged_pickle_message

            damaged = damaged_pickle_message(path)
            if damaged is None:  # a whole file, too big for this machine's memory
                raise
            raise ConversionError(damaged) from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
            if path.stat().st_size == 0:
                raise ConversionError(f"{path} is empty (0 bytes)") from None
            from maskrcnn.checkpoint_refusal import damaged_pickle_message

            damaged = damaged_pickle_message(path)  # cut off or damaged: said as every reader says it
            if damaged is not None:
                raise ConversionError(damaged) from None
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConversionError(f"{path}: cannot be read as a pickle of numpy arrays ({reason})") from None
    refuse_object_arrays(obj, path, error=ConversionError)  # one that came another way (ndarray.__setstate__)
    return obj


def _read_torch(path: Path):
    try:
        return torch_load_weights(path)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as e:
        from maskrcnn.checkpoint_refusal import unreadable_message

        raise ConversionError(unreadable_message(path, e)) from None  # torch's refusal spans a screen


def reader_for(path) -> str:
    """Which reader ``read_detectron2_file`` gives an existing file: "safetensors" for one by its bytes,
    "pickle" (the numpy-only unpickler) for a ``.pkl`` / ``.pickle`` that is not a zip archive, else
    "torch" (``torch.load``)."""
    from maskrcnn.safetensors_io import is_safetensors

    path = Path(path)
    if is_safetensors(path):
        return "safetensors"
    if path.suffix.lower() in (".pkl", ".pickle") and not zipfile.is_zipfile(path):
        return "pickle"
    return "torch"


def read_detectron2_file(path) -> object:
    """The file's object: zip archives (torch.save) through ``torch.load``, ``.pkl`` through the
    numpy-only unpickler, a safetensors file through its library, anything else through ``torch.load``
    (the legacy torch format): ``reader_for``."""
    path = Path(path)
    if path.is_dir():  # (worded as every reader of weights words it)
        raise ConversionError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    reader = reader_for(path)
    if reader == "pickle":
        return _read_pickle(path)
    if reader == "safetensors":
        from maskrcnn.safetensors_io import read_safetensors

        return read_safetensors(path, error=ConversionError)
    return _read_torch(path)


# --------------------------------------------------------------------------------------------
# The state dict


def unwrap_state_dict(obj, source: str = "checkpoint") -> dict:
    """A plain name -> tensor dict from a detectron2 file (numpy arrays become tensors)."""
    return unwrap_with_prefix(obj, source)[0]


def is_detectron2(keys) -> bool:
    """Key names of detectron2's R-CNNs: FPN models nest the ResNet as backbone.bottom_up, C4 models do
    not (both have an RPN under proposal_generator)."""
    return any(isinstance(k, str) and k.startswith(("backbone.bottom_up.", "proposal_generator."))
               for k in keys)


def unwrap_with_prefix(obj, source: str = "checkpoint") -> tuple:
    """``(unwrap_state_dict's dict, the extra prefix dropped or None)``: besides the ``module.`` /
    ``model.`` wrappers, a single prefix every key shares ("detector." of a LightningModule's
    ``self.detector``) is dropped when the names without it are detectron2's, as the torchvision reader
    drops it (``wrappers.strip_common_prefix``)."""
    from maskrcnn.interop.wrappers import state_dict_problem

    problem = state_dict_problem(obj, source)
    if problem is not None:
        raise ConversionError(problem)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("blobs"), dict):  # Caffe2 / Detectron1 pickles
        obj = obj["blobs"]
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{source}: not a detectron2 checkpoint "
                              "(expected a mapping of names to arrays)")
    caffe2 = [k for k in obj if isinstance(k, str) and _CAFFE2_KEY.match(k)]
    if caffe2:
        raise ConversionError(
            f"{source}: a Caffe2-style ImageNet backbone (keys like {caffe2[0]}), not a detectron2 detector; "
            "only full Mask / Keypoint / Faster R-CNN checkpoints (backbone.bottom_up.*, roi_heads.*) "
            "convert")
    out, bad = {}, []
    for k, v in obj.items():
        if isinstance(v, np.ndarray) and isinstance(k, str):
            out[k] = torch.from_numpy(np.array(v))  # a copy: the unpickled buffer may be read-only
        elif isinstance(v, torch.Tensor) and isinstance(k, str):
            out[k] = v
        else:
            bad.append(k)
    if bad:
        raise ConversionError(f"{source}: entries that are not arrays: {bad[:5]}")
    return strip_common_prefix(out, is_detectron2)


def is_c4(sd: dict) -> bool:
    """The C4 design: ResNet directly under ``backbone.`` (no FPN) and res5 as the RoI head."""
    return any(k.startswith("roi_heads.res5.") for k in sd)


_POINTREND_HEADS = ("roi_heads.mask_coarse_head.", "roi_heads.mask_point_head.")


def unsupported_design(sd: dict) -> Optional[str]:
    """Why a model-zoo design our model does not build is refused, in one sentence naming the design
    (they would otherwise fail on a backbone of "0 blocks" or on a list of dozens of unmapped keys); None
    for a design that converts. Also said by ``predict`` on such a file, not sent to ``convert``."""
    stages = sorted({m.group(1) for m in map(re.compile(r"^roi_heads\.box_predictor\.(\d+)\.").match, sd)
                     if m})
    if stages:
        return (f"Cascade R-CNN ({len(stages)} box stages: roi_heads.box_head.0..{len(stages) - 1}, "
                "roi_heads.box_predictor.0..) is not supported: our model has a single box head")
    point = sorted({k.split(".")[1] for k in sd if k.startswith(_POINTREND_HEADS)})
    if point:  # projects/PointRend: a coarse mask head and a point head refine the masks point by point
        return (f"PointRend ({', '.join(f'roi_heads.{h}.*' for h in point)}) is not supported: our mask "
                "head is the standard one (roi_heads.mask_head.*)")
    if any(k.startswith("sem_seg_head.") for k in sd):  # COCO-PanopticSegmentation/panoptic_fpn_*
        return ("Panoptic FPN (a semantic segmentation head, sem_seg_head.*) is not supported: our model "
                "is instance-only")
    offsets = [k for k in sd if re.search(r"\.conv2_offset\.weight$", k)]
    if offsets:  # Misc/*_dconv_c3-c5 (RESNETS.DEFORM_ON_PER_STAGE): a conv that predicts sampling offsets
        return (f"deformable convolutions ({len(offsets)} blocks, e.g. {offsets[0]}) are not supported: "
                "our ResNet has plain 3x3 convs")
    bottom_up = sorted(k for k in sd if k.startswith("backbone.bottom_up."))
    if bottom_up and not any(k.startswith("backbone.bottom_up.res2.") for k in bottom_up):
        # new_baselines/*RegNet* (backbone.bottom_up.s1.b1.*), or any other FPN body: no ResNet stages
        regnet = any(k.startswith("backbone.bottom_up.s1.") for k in bottom_up)
        kind = "a RegNet" if regnet else "a non-ResNet"
        example = next((k for k in bottom_up if not k.startswith("backbone.bottom_up.stem.")), bottom_up[0])
        return (f"{kind} backbone under the FPN (keys like {example}, no backbone.bottom_up.res2.*) is not "
                "supported: ours are ResNet / ResNeXt")
    if not is_c4(sd) and not bottom_up \
            and any(k.startswith("backbone.res5.") for k in sd):
        return ("the DC5 design (dilated res5 as the last backbone stage, no FPN: backbone.res5.*) is not "
                "supported; FPN (backbone.bottom_up.*) and C4 (roi_heads.res5.*) models convert")
    shape = _box_head_shape(sd)  # (checked again, with the file's name, where the config is read)
    return None if shape in _BOX_HEADS else _box_head_problem(shape)


def _refuse_unsupported_design(sd: dict, source: str) -> None:
    design = unsupported_design(sd)
    if design is not None:
        raise ConversionError(f"{source}: {design}")


def detect_layout(sd: dict, source: str = "checkpoint") -> str:
    """One of maskrcnn, keypointrcnn, fasterrcnn (FPN or C4 alike: see ``is_c4``)."""
    _refuse_unsupported_design(sd, source)
    resnet = any(k.startswith(("backbone.bottom_up.", "backbone.res2.")) for k in sd)
    if not resnet or "roi_heads.box_predictor.cls_score.weight" not in sd:
        raise ConversionError(f"{source}: not a detectron2 R-CNN checkpoint: no backbone.bottom_up.* (FPN) "
                              "or backbone.res2.* (C4) keys, or no roi_heads.box_predictor.cls_score.*")
    if any(k.startswith("roi_heads.keypoint_head.") for k in sd):
        return "keypointrcnn"
    if any(k.startswith("roi_heads.mask_head.") for k in sd):
        return "maskrcnn"
    return "fasterrcnn"


def _backbone_arch(sd: dict) -> str:
    body = "backbone." if is_c4(sd) else "backbone.bottom_up."
    blocks = tuple(count_indices(sd, rf"^{re.escape(body)}res{s}\.(\d+)\.") for s in range(2, 5))
    res5 = r"^roi_heads\.res5\.(\d+)\." if is_c4(sd) else rf"^{re.escape(body)}res5\.(\d+)\."
    return resnet_arch(blocks + (count_indices(sd, res5),), sd.get(f"{body}res2.0.conv2.weight"),
                       bottleneck=f"{body}res2.0.conv3.weight" in sd)


def _norm_of(sd: dict, conv: str) -> str:
    """Our norm name for a detectron2 conv's norm: none, bn (running statistics: FrozenBN, BN, SyncBN)
    or gn (GroupNorm: weight and bias only; detectron2's GN is always 32 groups, as is ours)."""
    if f"{conv}.norm.weight" not in sd:
        return "none"
    return "bn" if f"{conv}.norm.running_var" in sd else "gn"


# (convs, fcs) of detectron2's FastRCNNConvFCHead -> ours; (0, 0): C4, whose box head is res5
_BOX_HEADS = {(0, 2): "2fc", (0, 0): "2fc", (4, 1): "4conv1fc"}


def _box_head_shape(sd: dict) -> tuple:
    return (count_indices(sd, r"^roi_heads\.box_head\.conv(\d+)\.weight$"),
            count_indices(sd, r"^roi_heads\.box_head\.fc(\d+)\.weight$"))


def _box_head(sd: dict, source: str) -> str:
    """2fc (the zoo's default) or 4conv1fc (FastRCNNConvFCHead NUM_CONV 4, NUM_FC 1: _gn / _syncbn)."""
    shape = _box_head_shape(sd)
    if shape not in _BOX_HEADS:
        raise ConversionError(f"{source}: {_box_head_problem(shape)}")
    return _BOX_HEADS[shape]


def _box_head_problem(shape: tuple) -> str:
    return (f"a box head of {shape[0]} convs and {shape[1]} fcs is not supported; ours are 2fc (NUM_CONV 0, "
            "NUM_FC 2) and 4conv1fc (NUM_CONV 4, NUM_FC 1)")


def _pixel_stats(sd: dict, arch: str, source: str) -> tuple:
    """(mean, std) in BGR on 0-255 images: the file's buffers where present, else the model zoo's."""
    default_std = D2_PIXEL_STD_BGR_X101 if arch.startswith("resnext") else D2_PIXEL_STD_BGR_MSRA
    stats = []
    for name, default in (("pixel_mean", D2_PIXEL_MEAN_BGR), ("pixel_std", default_std)):
        if name not in sd:
            stats.append(tuple(default))
            continue
        values = sd[name].flatten().tolist()
        if len(values) != 3:
            raise ConversionError(f"{source}: {name} has {len(values)} values, expected 3")
        stats.append(tuple(float(v) for v in values))
    return tuple(stats)


def config_overrides(sd: dict, layout: str, *, source: str = "checkpoint", input_format: str = "BGR") -> dict:
    """Config keys (dotted) that make ``build_model`` produce this layout with detectron2's conventions."""
    arch = _backbone_arch(sd)
    mean, std = _pixel_stats(sd, arch, source)
    if input_format == "BGR":  # our images are RGB: the statistics are reversed with the stem's channels
        mean, std = mean[::-1], std[::-1]
    c4 = is_c4(sd)
    # detectron2's defaults: FPN, one size per level and 3 ratios; C4, 5 sizes x 3 ratios on res4
    expected = 15 if c4 else 3
    anchors = int(sd["proposal_generator.rpn_head.objectness_logits.weight"].shape[0]) \
        if "proposal_generator.rpn_head.objectness_logits.weight" in sd else expected
    if anchors != expected:
        raise ConversionError(
            f"{source}: the RPN has {anchors} anchors per location; only detectron2's default {expected} "
            + ("(sizes 32-512 x ratios 0.5, 1, 2 on res4) is supported for C4" if c4 else
               "(one size per level, ratios 0.5, 1, 2) is supported"))
    body = "backbone." if c4 else "backbone.bottom_up."
    # RESNETS.NORM: FrozenBN / BN / SyncBN all keep running statistics (frozen at inference alike);
    # GN keeps none. STRIDE_IN_1X1 cannot be read from the weights (same shapes either way), so it
    # follows the zoo's configs: True for the MSRA BN nets and new_baselines/*_LSJ (SyncBN FPN and
    # heads, 2-conv RPN); False for the X101 nets (from torchvision), every GN config and
    # Misc/*_syncbn (SyncBN FPN and heads, 1-conv RPN). --set model.stride_in_1x1=... overrides.
    gn = _norm_of(sd, f"{body}stem.conv1") == "gn"
    fpn_norm, rpn_convs = _norm_of(sd, "backbone.fpn_lateral2"), max(1, count_indices(sd, _RPN_CONVS))
    misc_syncbn = fpn_norm == "bn" and rpn_convs == 1
    out = {
        "model.backbone": arch,
        "model.fpn": not c4,
        "model.num_classes": int(sd["roi_heads.box_predictor.cls_score.weight"].shape[0]),
        "model.norm": "gn" if gn else "frozen_bn",
        "model.frozen_bn_eps": 1e-5,
        "model.stride_in_1x1": not (gn or misc_syncbn or arch.startswith("resnext")),
        "model.pixel_mean": tuple(m / 255.0 for m in mean),
        "model.pixel_std": tuple(s / 255.0 for s in std),
        "model.fpn_norm": fpn_norm,
        "model.rpn.head_convs": rpn_convs,
        "model.rpn.anchor_rounding": False,
        "model.roi_heads.box_head": _box_head(sd, source),
        "model.roi_heads.box_head_norm": _norm_of(sd, "roi_heads.box_head.conv1"),
        "model.roi_heads.pooler_aligned": True,
        "model.roi_heads.pooler_sampling_ratio": 0,
        "model.roi_heads.mask_paste": "grid_sample",
        "model.roi_heads.mask_on": layout == "maskrcnn",
        "model.roi_heads.mask_head_norm": _norm_of(sd, "roi_heads.mask_head.mask_fcn1"),
        "model.roi_heads.keypoint_on": layout == "keypointrcnn",
        "model.roi_heads.keypoint_score": "softmax",
        # ResizeShortestEdge: PIL bilinear on the uint8 image, the output size rounded
        "input.resize_method": "pil",
    }
    if c4:  # Base-RCNN-C4: 14x14 RoIs for res5 (-> 7x7), more proposals before NMS, no padding multiple
        out.update({
            "model.rpn.anchor_sizes": (32, 64, 128, 256, 512),
            "model.rpn.pre_nms_topk_test": 6000, "model.rpn.post_nms_topk_test": 1000,
            "model.rpn.pre_nms_topk_train": 12000, "model.rpn.post_nms_topk_train": 2000,
            "model.roi_heads.box_pool_size": 14, "model.roi_heads.mask_pool_size": 14,
            "model.size_divisibility": 0,
        })
    # widths and depths read from the weights, so that custom-trained detectron2 models convert too
    if "backbone.fpn_lateral2.weight" in sd:
        out["model.fpn_dim"] = int(sd["backbone.fpn_lateral2.weight"].shape[0])
    if "roi_heads.box_head.fc1.weight" in sd:
        out["model.roi_heads.box_head_dim"] = int(sd["roi_heads.box_head.fc1.weight"].shape[0])
    if layout == "maskrcnn":
        out["model.roi_heads.mask_head_convs"] = count_indices(
            sd, r"^roi_heads\.mask_head\.mask_fcn(\d+)\.weight$")
        predictor = sd.get("roi_heads.mask_head.predictor.weight")
        # CLS_AGNOSTIC_MASK: one mask channel for K > 1 classes (ours: mask_class_agnostic, same 1 channel)
        if predictor is not None and predictor.shape[0] == 1 and out["model.num_classes"] > 2:
            out["model.roi_heads.mask_class_agnostic"] = True
        if "roi_heads.mask_head.deconv.weight" in sd:  # ConvTranspose2d: (in, out, 2, 2)
            out["model.roi_heads.mask_head_dim"] = int(sd["roi_heads.mask_head.deconv.weight"].shape[1])
    if layout == "keypointrcnn":
        out["model.roi_heads.keypoint_head_convs"] = count_indices(
            sd, r"^roi_heads\.keypoint_head\.conv_fcn(\d+)\.weight$")
        first = "roi_heads.keypoint_head.conv_fcn1.weight"
        score = "roi_heads.keypoint_head.score_lowres.weight"
        if first in sd:
            out["model.roi_heads.keypoint_head_dim"] = int(sd[first].shape[0])
        if score in sd:  # (512, J, 4, 4)
            out["model.roi_heads.num_keypoints"] = int(sd[score].shape[1])
    return out


def _map_key(key: str) -> Optional[str]:
    return rename_key(_COMPILED, key)


def convert_state_dict(sd: dict) -> tuple:
    """Rename detectron2 keys to ours (values untouched). Returns (ours, [unmapped keys], [ignored keys])."""
    out, unmapped, ignored = {}, [], []
    for key, value in sd.items():
        if _IGNORED.match(key):
            ignored.append(key)
            continue
        new = _map_key(key)
        if new is None:
            unmapped.append(key)
        else:
            out[new] = value
    return out, unmapped, ignored


# --------------------------------------------------------------------------------------------
# Value changes: channel order and the background slot


def _anchors_ratio_major(ours: dict, num_sizes: int, num_ratios: int) -> None:
    """detectron2 orders a location's anchors size-major (size s, ratio r at s * R + r), ours
    ratio-major (r * S + s): reorder the RPN's objectness rows and its 4-row groups of deltas. A no-op
    for FPN models (one size per level)."""
    if num_sizes == 1 or num_ratios == 1:
        return
    order = torch.tensor([s * num_ratios + r for r in range(num_ratios) for s in range(num_sizes)])
    for name in ("weight", "bias"):
        key = f"rpn.head.objectness.{name}"
        if key in ours:
            ours[key] = ours[key][order].contiguous()
        key = f"rpn.head.deltas.{name}"
        if key in ours:  # rows a * 4 + k
            rows = (order[:, None] * 4 + torch.arange(4)[None, :]).reshape(-1)
            ours[key] = ours[key][rows].contiguous()


def default_class_names(num_classes: int, layout: str = "") -> list:
    if num_classes == 81:
        return list(COCO_CLASS_NAMES_81)
    if layout == "keypointrcnn" and num_classes == 2:
        return ["__background__", "person"]
    return ["__background__"] + [f"class_{i}" for i in range(1, num_classes)]


def convert_detectron2(obj, overrides: Optional[dict] = None, *, source: str = "checkpoint",
                       input_format: str = "BGR") -> dict:
    """Full conversion with a check against the model ``build_model`` makes from the overrides.

    ``obj``: what the file holds (a dict with ``model``, or the state dict itself; numpy arrays or
    tensors). ``overrides``: extra config keys, applied last. ``input_format``: the model's INPUT.FORMAT
    (the model zoo's nets are all BGR; "RGB" keeps the stem and the statistics' order).
    Returns ``{"state_dict", "config" (Config), "class_names", "layout", "report", "notes"}`` (notes: a
    wrapper's prefix dropped); raises
    ConversionError naming unmapped, missing or mis-shaped keys.
    """
    from maskrcnn.config import Config, apply_overrides
    from maskrcnn.modeling.mask_rcnn import build_model

    if input_format not in ("BGR", "RGB"):
        raise ValueError(f"input_format must be BGR or RGB, got {input_format!r}")
    sd, prefix = unwrap_with_prefix(obj, source)
    notes = [prefix_note(prefix)] if prefix is not None else []
    layout = detect_layout(sd, source)
    cfg_over = config_overrides(sd, layout, source=source, input_format=input_format)
    cfg_over.update(overrides or {})
    cfg = apply_overrides(Config(), cfg_over)
    ours, unmapped, ignored = convert_state_dict(sd)
    ours, counters = drop_frozen_counters(ours, cfg.model.norm)  # SyncBN-trained files have one
    if input_format == "BGR":
        stem_bgr_to_rgb(ours)
    background_first(ours, int(sd["roi_heads.box_predictor.cls_score.weight"].shape[0]), source,
                      cfg.model.roi_heads.mask_class_agnostic)
    sizes = cfg.model.rpn.anchor_sizes if not cfg.model.fpn else (1,)  # FPN: one size per level
    _anchors_ratio_major(ours, len(sizes), len(cfg.model.rpn.aspect_ratios))
    model_sd = build_model(cfg).state_dict()
    missing = [k for k in model_sd if k not in ours]
    unexpected = [k for k in ours if k not in model_sd]
    # the file's keys: the entry and the wrapper prefixes the reader dropped are the file's, not ours
    entry, held_prefix = where_keys(obj, sd, ("model", "blobs"))
    origin = {new: held_prefix + key for key in sd
              if not _IGNORED.match(key) and (new := _map_key(key)) is not None}
    shapes = shape_mismatches(ours, model_sd, origin)  # (the file's key and ours, each shape said)
    report = {"layout": layout, "unmapped": unmapped, "missing": missing, "unexpected": unexpected,
              "shape_mismatch": shapes, "ignored": ignored, "num_tensors": len(ours), "origin": origin,
              "entry": entry,
              "counters_dropped": counters,
              "pixel_stats_from_file": [k for k in ("pixel_mean", "pixel_std") if k in sd]}
    problems = conversion_problems(unmapped, missing, unexpected, shapes, source_name="detectron2",
                                   origin=origin)
    if problems:
        raise ConversionError(f"{source} ({layout} layout): " + "; ".join(problems))
    from maskrcnn.interop.float_dtypes import size_as_float32, to_model_dtypes

    report["as_float32"] = size_as_float32(ours)  # what a file of them costs: convert says it, --init not
    ours, dtype_said = to_model_dtypes(ours, model_sd)
    notes += [dtype_said] if dtype_said else []
    names = default_class_names(cfg.model.num_classes, layout)
    return {"state_dict": ours, "config": cfg, "class_names": names, "layout": layout, "report": report,
            "notes": notes}


def load_detectron2_file(path, overrides: Optional[dict] = None, **kwargs) -> dict:
    """``convert_detectron2`` on a ``.pkl`` or ``.pth`` file; loading never runs code."""
    obj = read_detectron2_file(path)
    return convert_detectron2(obj, overrides, source=str(path), **kwargs)
