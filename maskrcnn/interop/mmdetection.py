"""Convert MMDetection Mask / Faster R-CNN checkpoints (ResNet / ResNeXt FPN, mmdet v2 and v3) to ours.

Files are read by ``mmdet_file.read_mmdet_file`` (no code from the file runs); the weights are under
``state_dict``, the class names under ``meta["CLASSES"]`` (v2) or ``meta["dataset_meta"]["classes"]`` (v3),
and the training config as Python text under ``meta["config"]`` (v2) or ``meta["cfg"]`` (v3), parsed
without running it (``mmdet_file.parse_config_text``).

Shapes: K object classes (mmdet's ``num_classes``), so ours counts K + 1; A anchors per location.

Conventions bridged here (the model itself never knows mmdet's):
- Labels: ``roi_head.bbox_head.fc_cls`` has K + 1 rows with the background LAST; ``fc_reg`` 4K rows
  (class-specific, no background) or 4 (``reg_class_agnostic``); ``mask_head.conv_logits`` K channels
  (or 1, ``class_agnostic``). Ours has background first: the last score row moves to row 0 and zero
  background slots go in front of the deltas and mask logits (never read: predictions use labels >= 1).
- Input: mmdet reads images as BGR 0-255 and normalises them as its config says (``img_norm_cfg`` in v2,
  ``model.data_preprocessor`` in v3: mean, std and whether BGR is turned to RGB first). Ours takes RGB in
  [0, 1]: the statistics are divided by 255 (and reversed to RGB order), and for a model fed BGR
  (``to_rgb=False``, the caffe-style configs) the stem conv's input channels are reversed.
- Backbone: style ``pytorch`` strides on the 3x3 conv (``model.stride_in_1x1=False``), ``caffe`` on the
  first 1x1 (True). The weights cannot tell; the config text does. Without it, a backbone whose batch
  norms all have mean 0 and variance 1 (what mmdet's caffe-style backbones, converted from Caffe2 and
  trained frozen, carry) is refused unless ``model.stride_in_1x1`` is given (True = caffe style and its
  input convention: BGR, mean (103.53, 116.28, 123.675), std 1); any other is taken as ``pytorch``.
- Heads (mmdet v2 / v3 defaults, checked against the config text where there is one, refused where ours
  cannot represent them): anchors ``scales=[8]`` x strides 4..64 = sizes 32..512, ratios 0.5, 1, 2, centre
  offset 0, not rounded (``anchor_rounding=False``: ours tiles them the same way, ratio-major); RPN deltas
  with stds 1, box deltas with stds (0.1, 0.1, 0.2, 0.2) = ours ``box_reg_weights`` (10, 10, 5, 5), their
  reciprocals; RoIAlign ``aligned=True``, ``sampling_ratio=0`` (ours: ``pooler_aligned``, ratio 0 =
  adaptive); RoI level ``floor(log2(sqrt(wh) / finest_scale))`` with finest_scale 56 = ours with
  canonical level 4 and box size 224 (4 x 56); masks pasted with ``grid_sample`` as mmdet's
  ``_do_paste_mask``; the test settings (RPN ``nms_pre`` / ``max_per_img`` / NMS IoU, R-CNN ``score_thr``,
  NMS IoU, ``max_per_img``, ``mask_thr_binary``, the test resize) copied from the config text.
- Refused in one line naming the design: mmdet 1.x files, Cascade R-CNN, HTC, SCNet, PointRend, Mask
  Scoring R-CNN, Grid R-CNN, the C4 / DC5 designs, one-stage detectors, GroupNorm, deformable convs,
  backbone plugins (GCNet, ...), deep-stem and non-ResNet backbones (ResNeSt, RegNet, HRNet, Swin, ...), necks
  other than FPN with P6 by max-pooling, softmax RPNs and sigmoid box classifiers.
"""

from __future__ import annotations

import re
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
from maskrcnn.interop.mmdet_file import UNKNOWN, lookup, parse_config_text, read_mmdet_file
from maskrcnn.interop.torchvision import ConversionError, resnet_arch
from maskrcnn.interop.wrappers import prefix_note, strip_common_prefix, where_keys

# mmdet's defaults (configs/_base_/models/mask_rcnn_r50_fpn.py), on 0-255 images
PYTORCH_MEAN_RGB = (123.675, 116.28, 103.53)
PYTORCH_STD_RGB = (58.395, 57.12, 57.375)
CAFFE_MEAN_BGR = (103.53, 116.28, 123.675)
CAFFE_STD_BGR = (1.0, 1.0, 1.0)

_NORM = r"(?:bn|norm)"  # the BN of a ConvModule is called ``bn``
_RULES = [
    (r"^backbone\.conv1\.weight$", "backbone.stem.conv1.conv.weight"),
    (r"^backbone\.bn1\.(.+)$", r"backbone.stem.conv1.norm.\1"),
    # mmdet's layer1..layer4 are our res2..res5
    (r"^backbone\.layer(\d)\.(\d+)\.conv(\d)\.weight$",
     lambda g: f"backbone.res{int(g[0]) + 1}.{g[1]}.conv{g[2]}.conv.weight"),
    (r"^backbone\.layer(\d)\.(\d+)\.bn(\d)\.(.+)$",
     lambda g: f"backbone.res{int(g[0]) + 1}.{g[1]}.conv{g[2]}.norm.{g[3]}"),
    (r"^backbone\.layer(\d)\.(\d+)\.downsample\.0\.weight$",
     lambda g: f"backbone.res{int(g[0]) + 1}.{g[1]}.shortcut.conv.weight"),
    (r"^backbone\.layer(\d)\.(\d+)\.downsample\.1\.(.+)$",
     lambda g: f"backbone.res{int(g[0]) + 1}.{g[1]}.shortcut.norm.{g[2]}"),
    (r"^neck\.lateral_convs\.(\d+)\.conv\.(weight|bias)$", r"fpn.lateral.\1.conv.\2"),
    (rf"^neck\.lateral_convs\.(\d+)\.{_NORM}\.(.+)$", r"fpn.lateral.\1.norm.\2"),
    (r"^neck\.fpn_convs\.(\d+)\.conv\.(weight|bias)$", r"fpn.output.\1.conv.\2"),
    (rf"^neck\.fpn_convs\.(\d+)\.{_NORM}\.(.+)$", r"fpn.output.\1.norm.\2"),
    # one RPN conv is a bare Conv2d; several (v3 num_convs > 1) a Sequential of ConvModules
    (r"^rpn_head\.rpn_conv\.(weight|bias)$", r"rpn.head.convs.0.conv.\1"),
    (r"^rpn_head\.rpn_conv\.(\d+)\.conv\.(weight|bias)$", r"rpn.head.convs.\1.conv.\2"),
    (r"^rpn_head\.rpn_cls\.(weight|bias)$", r"rpn.head.objectness.\1"),
    (r"^rpn_head\.rpn_reg\.(weight|bias)$", r"rpn.head.deltas.\1"),
    # Shared4Conv1FCBBoxHead: shared_convs then shared_fcs.0; Shared2FCBBoxHead: shared_fcs.0, .1
    (r"^roi_head\.bbox_head\.shared_convs\.(\d+)\.conv\.(weight|bias)$",
     r"roi_heads.box_head.convs.\1.conv.\2"),
    (rf"^roi_head\.bbox_head\.shared_convs\.(\d+)\.{_NORM}\.(.+)$", r"roi_heads.box_head.convs.\1.norm.\2"),
    (r"^roi_head\.bbox_head\.shared_fcs\.(\d+)\.(weight|bias)$", r"roi_heads.box_head.fcs.\1.\2"),
    (r"^roi_head\.bbox_head\.fc_cls\.(weight|bias)$", r"roi_heads.box_predictor.cls_score.\1"),
    (r"^roi_head\.bbox_head\.fc_reg\.(weight|bias)$", r"roi_heads.box_predictor.bbox_pred.\1"),
    (r"^roi_head\.mask_head\.convs\.(\d+)\.conv\.(weight|bias)$", r"roi_heads.mask_head.convs.\1.conv.\2"),
    (rf"^roi_head\.mask_head\.convs\.(\d+)\.{_NORM}\.(.+)$", r"roi_heads.mask_head.convs.\1.norm.\2"),
    (r"^roi_head\.mask_head\.upsample\.(weight|bias)$", r"roi_heads.mask_head.deconv.\1"),
    (r"^roi_head\.mask_head\.conv_logits\.(weight|bias)$", r"roi_heads.mask_head.predictor.\1"),
]
_COMPILED = compile_rules(_RULES)

# key fragments of designs ours does not build -> what to call them (first match wins)
_DESIGNS = [
    (r"^roi_head\.semantic_head\.", "Hybrid Task Cascade (HTC, roi_head.semantic_head.*)"),
    (r"^roi_head\.(feat_relay_head|glbctx_head)\.", "SCNet (roi_head.feat_relay_head / glbctx_head)"),
    (r"^roi_head\.bbox_head\.\d+\.", "Cascade R-CNN (several box stages: roi_head.bbox_head.0, .1, ...)"),
    (r"^roi_head\.point_head\.", "PointRend (roi_head.point_head.*)"),
    (r"^roi_head\.mask_iou_head\.", "Mask Scoring R-CNN (roi_head.mask_iou_head.*)"),
    (r"^roi_head\.grid_head\.", "Grid R-CNN (roi_head.grid_head.*)"),
    (r"^roi_head\.shared_head\.", "the C4 design (res5 as a shared RoI head: roi_head.shared_head.*)"),
    (r"\.conv_offset\.", "deformable convolutions (DCN: *.conv_offset.*)"),
    (r"\.(context_block|gen_attention_block|nonlocal_block)\w*\.", "a backbone plugin (GCNet / attention)"),
    (r"\.gn\d*\.", "GroupNorm (*.gn.*)"),
    (r"^backbone\.stem\.", "a deep stem (ResNetV1d / ResNeSt: backbone.stem.*)"),
    (r"^backbone\.(patch_embed|stages)\.", "a transformer backbone (Swin / PVT: backbone.patch_embed.*)"),
    (r"^backbone\.(transition1|stage2)\.", "HRNet (backbone.transition1.*)"),
    (r"^backbone\.layer\d\.\d+\.conv2\.(fc1|rsoftmax)", "ResNeSt (split-attention convs)"),
    (r"^neck\.(downsample_convs|pafpn_convs)\.", "PAFPN (neck.pafpn_convs.*), not a plain FPN"),
]
_DESIGNS_COMPILED = [(re.compile(p), name) for p, name in _DESIGNS]


# --------------------------------------------------------------------------------------------
# What the file holds


def unwrap(obj, source: str = "checkpoint") -> tuple:
    """(state dict of tensors, meta dict, the extra prefix dropped or None) from what an mmdet file holds:
    besides the ``module.`` / ``model.`` wrappers, a single prefix every key shares ("detector." of a
    LightningModule's ``self.detector``) is dropped when the names without it are mmdet's, as the
    torchvision reader drops it (``wrappers.strip_common_prefix``)."""
    from maskrcnn.interop.wrappers import state_dict_problem

    problem = state_dict_problem(obj, source)
    if problem is not None:
        raise ConversionError(problem)
    meta = obj.get("meta") if isinstance(obj, dict) and isinstance(obj.get("meta"), dict) else {}
    sd = obj.get("state_dict") if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) else obj
    if not isinstance(sd, dict) or not sd:
        raise ConversionError(f"{source}: not an MMDetection checkpoint (expected a state_dict of tensors)")
    out, bad = {}, []
    for k, v in sd.items():
        if isinstance(v, np.ndarray) and isinstance(k, str):
            out[k] = torch.from_numpy(np.array(v))
        elif isinstance(v, torch.Tensor) and isinstance(k, str):
            out[k] = v
        else:
            bad.append(k)
    if bad:
        raise ConversionError(f"{source}: state_dict entries that are not tensors: {bad[:5]}")
    sd, prefix = strip_common_prefix(out, is_mmdetection)
    return sd, meta, prefix


def class_names_of(meta: dict) -> Optional[list]:
    """The dataset's class names stored with the weights (v2 CLASSES, v3 dataset_meta.classes)."""
    names = meta.get("CLASSES")
    if names is None and isinstance(meta.get("dataset_meta"), dict):
        names = meta["dataset_meta"].get("classes")
    if isinstance(names, str):  # one class, stored as a bare string by some v2 datasets
        names = [names]
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return list(names)
    return None


def config_of(meta: dict) -> dict:
    """The parsed config text (v2 ``config``, v3 ``cfg``); {} when the file has none."""
    text = meta.get("config", meta.get("cfg"))
    return parse_config_text(text) if isinstance(text, str) else {}


def is_mmdetection(keys) -> bool:
    """Key names only mmdet's two-stage detectors use (and its 1.x and one-stage files, refused later)."""
    return any(k.startswith(("rpn_head.", "roi_head.", "neck.lateral_convs.")) for k in keys)


# --------------------------------------------------------------------------------------------
# Layout and design


def detect_layout(sd: dict, source: str = "checkpoint", version: str = "") -> str:
    """maskrcnn or fasterrcnn; anything else is refused in one line naming the design."""
    if str(version).startswith(("0.", "1.")) or (any(k.startswith("bbox_head.fc_cls") for k in sd)
                                                 and any(k.startswith("rpn_head.") for k in sd)):
        raise ConversionError(
            f"{source}: an MMDetection 1.x checkpoint (mmdet_version {version or '?'}, bbox_head.* at the "
            "top level); its conventions (+1 box sizes, unaligned RoIAlign, rounded anchors) are not "
            "supported")
    for pattern, name in _DESIGNS_COMPILED:
        hit = next((k for k in sd if pattern.search(k)), None)
        if hit is not None:
            raise ConversionError(f"{source}: {name} is not supported (key {hit}); plain Mask / Faster R-CNN "
                                  "with a ResNet / ResNeXt FPN converts")
    if not any(k.startswith("rpn_head.") for k in sd) or "roi_head.bbox_head.fc_cls.weight" not in sd:
        raise ConversionError(f"{source}: not a two-stage R-CNN (no rpn_head.* or roi_head.bbox_head.fc_cls: "
                              "a one-stage detector, an RPN alone or Fast R-CNN); Mask / Faster R-CNN "
                              "converts")
    if not any(k.startswith("backbone.layer1.") for k in sd):
        example = next((k for k in sd if k.startswith("backbone.")), "none")
        raise ConversionError(f"{source}: a backbone that is not a ResNet / ResNeXt (keys like {example}) "
                              "is not supported")
    if not any(k.startswith("neck.lateral_convs.") for k in sd):
        raise ConversionError(f"{source}: no FPN (neck.lateral_convs.*): the DC5 design and other necks are "
                              "not supported")
    lateral = count_indices(sd, r"^neck\.lateral_convs\.(\d+)\.")
    extra = count_indices(sd, r"^neck\.fpn_convs\.(\d+)\.") - lateral
    if extra > 0:
        raise ConversionError(f"{source}: an FPN with {extra} extra conv level(s) (add_extra_convs) is not "
                              "supported: ours makes P6 by max-pooling P5")
    return "maskrcnn" if any(k.startswith("roi_head.mask_head.") for k in sd) else "fasterrcnn"


def _backbone_arch(sd: dict, source: str) -> str:
    blocks = tuple(count_indices(sd, rf"^backbone\.layer{i}\.(\d+)\.") for i in range(1, 5))
    try:
        return resnet_arch(blocks, sd.get("backbone.layer1.0.conv2.weight"),
                           bottleneck="backbone.layer1.0.conv3.weight" in sd)
    except ConversionError as e:
        raise ConversionError(
            f"{source}: {e} (RegNet and other ResNet-shaped bodies are not supported)") from None


def _norm_of(sd: dict, prefix: str) -> str:
    """none or bn, from the keys of a ConvModule (``{prefix}.bn.running_var`` present: BN)."""
    return "bn" if any(k.startswith((f"{prefix}.bn.", f"{prefix}.norm.")) for k in sd) else "none"


def _box_head(sd: dict, source: str) -> str:
    convs = count_indices(sd, r"^roi_head\.bbox_head\.shared_convs\.(\d+)\.")
    fcs = count_indices(sd, r"^roi_head\.bbox_head\.shared_fcs\.(\d+)\.")
    if (convs, fcs) == (0, 2):
        return "2fc"
    if (convs, fcs) == (4, 1):
        return "4conv1fc"
    raise ConversionError(f"{source}: a box head of {convs} shared convs and {fcs} shared fcs is not "
                          "supported; ours are Shared2FCBBoxHead (2fc) and Shared4Conv1FCBBoxHead (4conv1fc)")


def _identity_backbone_stats(sd: dict) -> bool:
    """Every backbone BN has running mean 0 and variance 1: a caffe-style (Caffe2-converted) backbone."""
    means = [v for k, v in sd.items() if k.startswith("backbone.") and k.endswith("running_mean")]
    var = [v for k, v in sd.items() if k.startswith("backbone.") and k.endswith("running_var")]
    return bool(means) and all(not m.any() for m in means) and all(bool((v == 1).all()) for v in var)


# --------------------------------------------------------------------------------------------
# The config text: what it fixes, checked against what ours can build


class _Refuse:
    def __init__(self, source: str):
        self.source = source

    def __call__(self, what: str, value, supported: str):
        raise ConversionError(
            f"{self.source}: the config's {what} = {value!r} is not supported ({supported})")


def _num(value, default):
    return default if value is None or value is UNKNOWN else value


def _input_convention(cfgtext: dict, sd: dict, overrides: dict, source: str) -> tuple:
    """(style caffe?, model fed BGR?, mean, std in the fed order on 0-255, how it was decided)."""
    backbone = lookup(cfgtext, "model.backbone")
    if isinstance(backbone, dict):
        style = backbone.get("style", "pytorch")
        if style not in ("pytorch", "caffe"):
            _Refuse(source)("model.backbone.style", style, "pytorch or caffe")
        caffe = style == "caffe"
        norm = lookup(cfgtext, "model.data_preprocessor")  # v3
        to_rgb_key = "bgr_to_rgb"
        if not isinstance(norm, dict) or "mean" not in norm:
            norm, to_rgb_key = cfgtext.get("img_norm_cfg"), "to_rgb"  # v2
        if isinstance(norm, dict) and all(isinstance(norm.get(k), list) for k in ("mean", "std")):
            rgb = norm.get(to_rgb_key, False) is True or norm.get("rgb_to_bgr") is True
            return caffe, not rgb, tuple(norm["mean"]), tuple(norm["std"]), "the file's config"
        how = "the file's config (style); mmdet's default statistics for that style"
    elif "model.stride_in_1x1" in overrides:
        caffe, how = bool(overrides["model.stride_in_1x1"]), "--set model.stride_in_1x1"
    elif _identity_backbone_stats(sd):
        raise ConversionError(
            f"{source}: the file has no config, and its backbone's batch norms all have mean 0 and "
            "variance 1, as mmdet's caffe-style backbones (mask_rcnn_r50_caffe_fpn_*: stride in the 1x1 "
            "conv, BGR input, std 1); the weights cannot tell the style: maskrcnn convert --from mmdetection "
            "... --set model.stride_in_1x1=true for caffe style or =false for pytorch style (train --init "
            "then takes the converted file)")
    else:
        caffe, how = False, "mmdet's defaults (the file has no config)"
    if caffe:
        return True, True, CAFFE_MEAN_BGR, CAFFE_STD_BGR, how
    return False, False, PYTORCH_MEAN_RGB, PYTORCH_STD_RGB, how


def _roi_layer(cfgtext: dict, extractor: str, refuse) -> Optional[dict]:
    ex = lookup(cfgtext, f"model.roi_head.{extractor}")
    if not isinstance(ex, dict):
        return None
    if ex.get("type", "SingleRoIExtractor") != "SingleRoIExtractor":
        refuse(f"model.roi_head.{extractor}.type", ex.get("type"), "SingleRoIExtractor")
    if list(ex.get("featmap_strides", [4, 8, 16, 32])) != [4, 8, 16, 32]:
        refuse(f"model.roi_head.{extractor}.featmap_strides", ex.get("featmap_strides"), "[4, 8, 16, 32]")
    layer = ex.get("roi_layer") if isinstance(ex.get("roi_layer"), dict) else {}
    kind = layer.get("type", "RoIAlign")
    if kind not in ("RoIAlign", "RoIPool"):
        refuse(f"model.roi_head.{extractor}.roi_layer.type", kind, "RoIAlign or RoIPool")
    size = layer.get("output_size", 7)
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            refuse(f"model.roi_head.{extractor}.roi_layer.output_size", size, "square")
        size = size[0]
    return {"pooler": "roialign" if kind == "RoIAlign" else "roipool", "size": int(size),
            "aligned": bool(layer.get("aligned", True)),
            "sampling_ratio": int(layer.get("sampling_ratio", 0)),
            "finest_scale": ex.get("finest_scale", 56)}


def _from_config_text(cfgtext: dict, layout: str, source: str) -> tuple:
    """(config overrides, notes) that the config text fixes; refuses what ours cannot represent."""
    refuse = _Refuse(source)
    out, notes = {}, []
    model = cfgtext.get("model")
    if not isinstance(model, dict):
        return out, notes
    backbone = model.get("backbone") if isinstance(model.get("backbone"), dict) else {}
    if backbone.get("type", "ResNet") not in ("ResNet", "ResNeXt"):
        refuse("model.backbone.type", backbone.get("type"), "ResNet or ResNeXt")
    for key in ("dcn", "plugins"):
        if backbone.get(key) not in (None, UNKNOWN, [], ()):
            refuse(f"model.backbone.{key}", backbone.get(key), "none")
    for key in ("deep_stem", "avg_down"):
        if backbone.get(key) is True:
            refuse(f"model.backbone.{key}", True, "False: ours is the plain ResNet stem and shortcut")
    norm = lookup(cfgtext, "model.backbone.norm_cfg.type", "BN")
    if norm not in ("BN", "SyncBN", UNKNOWN):
        refuse("model.backbone.norm_cfg.type", norm, "BN or SyncBN")
    neck = model.get("neck") if isinstance(model.get("neck"), dict) else {}
    if neck.get("type", "FPN") != "FPN":
        refuse("model.neck.type", neck.get("type"), "FPN")
    if neck.get("num_outs", 5) != 5 or neck.get("start_level", 0) != 0 or neck.get("add_extra_convs") not in (
            None, False):
        refuse("model.neck (num_outs, start_level, add_extra_convs)",
               (neck.get("num_outs"), neck.get("start_level"), neck.get("add_extra_convs")),
               "5 outputs from level 0, P6 by max-pooling")
    anchors = lookup(cfgtext, "model.rpn_head.anchor_generator")
    if isinstance(anchors, dict):
        scales, strides = anchors.get("scales", [8]), anchors.get("strides", [4, 8, 16, 32, 64])
        if anchors.get("type", "AnchorGenerator") != "AnchorGenerator":
            refuse("model.rpn_head.anchor_generator.type", anchors.get("type"), "AnchorGenerator")
        if list(strides) != [4, 8, 16, 32, 64] or anchors.get("base_sizes") not in (None,):
            refuse("model.rpn_head.anchor_generator.strides / base_sizes",
                   (strides, anchors.get("base_sizes")), "strides [4, 8, 16, 32, 64], base sizes = strides")
        if not isinstance(scales, list) or len(scales) != 1 or "octave_base_scale" in anchors:
            refuse("model.rpn_head.anchor_generator.scales", scales, "one scale per level")
        if _num(anchors.get("center_offset"), 0.0) != 0.0:
            refuse("model.rpn_head.anchor_generator.center_offset", anchors.get("center_offset"), "0")
        out["model.rpn.anchor_sizes"] = tuple(float(scales[0]) * s for s in strides)
        out["model.rpn.aspect_ratios"] = tuple(float(r) for r in anchors.get("ratios", [0.5, 1.0, 2.0]))
    for head, key in (("rpn_head", "model.rpn_head.bbox_coder"),
                      ("bbox_head", "model.roi_head.bbox_head.bbox_coder")):
        coder = lookup(cfgtext, key)
        if not isinstance(coder, dict):
            continue
        if coder.get("type", "DeltaXYWHBBoxCoder") != "DeltaXYWHBBoxCoder" or any(
                m != 0 for m in coder.get("target_means", [0, 0, 0, 0])):
            refuse(key, coder, "DeltaXYWHBBoxCoder with target_means 0")
        default = [1.0] * 4 if head == "rpn_head" else [0.1, 0.1, 0.2, 0.2]
        stds = [float(s) for s in coder.get("target_stds", default)]
        if head == "rpn_head" and stds != [1.0] * 4:
            refuse(f"{key}.target_stds", stds, "ours decodes RPN deltas with stds 1")
        if head == "bbox_head":
            out["model.roi_heads.box_reg_weights"] = tuple(1.0 / s for s in stds)
    if lookup(cfgtext, "model.rpn_head.loss_cls.use_sigmoid", True) is not True:
        refuse("model.rpn_head.loss_cls.use_sigmoid", False, "a sigmoid RPN: one objectness logit per anchor")
    if lookup(cfgtext, "model.roi_head.bbox_head.loss_cls.use_sigmoid", False) is True:
        refuse("model.roi_head.bbox_head.loss_cls.use_sigmoid", True, "a softmax box classifier with a "
               "background row")
    box = _roi_layer(cfgtext, "bbox_roi_extractor", refuse)
    mask = _roi_layer(cfgtext, "mask_roi_extractor", refuse) if layout == "maskrcnn" else None
    if box is not None:
        same = ("pooler", "aligned", "sampling_ratio", "finest_scale")
        if mask is not None and any(mask[k] != box[k] for k in same):
            refuse("model.roi_head.mask_roi_extractor", "differs from the box extractor",
                   "one RoI pooler setting")
        out.update({"model.roi_heads.pooler": box["pooler"], "model.roi_heads.pooler_aligned": box["aligned"],
                    "model.roi_heads.pooler_sampling_ratio": box["sampling_ratio"],
                    "model.roi_heads.box_pool_size": box["size"],
                    "model.roi_heads.canonical_box_size": int(4 * box["finest_scale"])})
        if mask is not None:
            out["model.roi_heads.mask_pool_size"] = mask["size"]
    mask_head = lookup(cfgtext, "model.roi_head.mask_head")
    if layout == "maskrcnn" and isinstance(mask_head, dict):
        if mask_head.get("type", "FCNMaskHead") != "FCNMaskHead" or mask_head.get("conv_kernel_size", 3) != 3:
            refuse("model.roi_head.mask_head", (mask_head.get("type"), mask_head.get("conv_kernel_size")),
                   "FCNMaskHead with 3x3 convs")
        up = mask_head.get("upsample_cfg") if isinstance(mask_head.get("upsample_cfg"), dict) else {}
        if up.get("type", "deconv") != "deconv" or up.get("scale_factor", 2) != 2:
            refuse("model.roi_head.mask_head.upsample_cfg", up, "a 2x2 stride-2 deconv")
    _test_settings(cfgtext, out, notes, refuse)
    return out, notes


def _test_settings(cfgtext: dict, out: dict, notes: list, refuse) -> None:
    test = lookup(cfgtext, "model.test_cfg")
    if not isinstance(test, dict):
        test = cfgtext.get("test_cfg") if isinstance(cfgtext.get("test_cfg"), dict) else {}  # early v2
    rpn = test.get("rpn") if isinstance(test.get("rpn"), dict) else {}
    if rpn.get("nms_across_levels") is True:
        refuse("test_cfg.rpn.nms_across_levels", True, "ours runs the RPN's NMS per level")
    iou = lookup(rpn, "nms.iou_threshold", rpn.get("nms_thr"))
    for key, value in (("model.rpn.pre_nms_topk_test", rpn.get("nms_pre")),
                       ("model.rpn.post_nms_topk_test", rpn.get("max_per_img", rpn.get("max_num"))),
                       ("model.rpn.nms_thresh", iou)):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    rcnn = test.get("rcnn") if isinstance(test.get("rcnn"), dict) else {}
    for key, value in (("model.roi_heads.score_thresh", rcnn.get("score_thr")),
                       ("model.roi_heads.nms_thresh", lookup(rcnn, "nms.iou_threshold")),
                       ("model.roi_heads.detections_per_image", rcnn.get("max_per_img")),
                       ("model.roi_heads.mask_threshold", rcnn.get("mask_thr_binary"))):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    nms = lookup(rcnn, "nms.type", "nms")
    if nms != "nms":
        iou = out.get("model.roi_heads.nms_thresh")
        notes.append(f"the config's test NMS is {nms!r}; ours runs plain NMS (IoU {iou})")
    scale = _test_scale(cfgtext.get("test_pipeline"))
    if scale is not None:
        out["input.max_size_test"], out["input.min_size_test"] = max(scale), min(scale)


def _test_scale(pipeline) -> Optional[tuple]:
    """The one (long, short) test scale of a keep-ratio Resize (v3 ``scale``, v2 ``img_scale``)."""
    if not isinstance(pipeline, list):
        return None
    for step in pipeline:
        if not isinstance(step, dict):
            continue
        scale = step.get("scale", step.get("img_scale"))
        if isinstance(scale, (list, tuple)) and len(scale) == 2 and all(isinstance(s, int) for s in scale):
            return tuple(scale)
        inner = _test_scale(step.get("transforms"))
        if inner is not None:
            return inner
    return None


# --------------------------------------------------------------------------------------------
# Conversion


def config_overrides(sd: dict, layout: str, cfgtext: dict, overrides: dict, *, source: str) -> tuple:
    """(config keys that make ``build_model`` produce this model in mmdet's conventions, feed BGR?, notes)."""
    arch = _backbone_arch(sd, source)
    caffe, bgr, mean, std, how = _input_convention(cfgtext, sd, overrides, source)
    if bgr:  # our images are RGB: the statistics are reversed with the stem's channels
        mean, std = mean[::-1], std[::-1]
    num_classes = int(sd["roi_head.bbox_head.fc_cls.weight"].shape[0])  # K + 1, background last
    out = {
        "model.backbone": arch,
        "model.fpn": True,
        "model.num_classes": num_classes,
        "model.norm": "frozen_bn",  # norm_eval=True: mmdet's BN runs in eval mode (eps 1e-5)
        "model.frozen_bn_eps": 1e-5,
        "model.stride_in_1x1": caffe,
        "model.pixel_mean": tuple(float(m) / 255.0 for m in mean),
        "model.pixel_std": tuple(float(s) / 255.0 for s in std),
        "model.fpn_dim": int(sd["neck.lateral_convs.0.conv.weight"].shape[0]),
        "model.fpn_norm": _norm_of(sd, "neck.lateral_convs.0"),
        "model.rpn.head_convs": max(1, count_indices(sd, r"^rpn_head\.rpn_conv\.(\d+)\.")),
        "model.rpn.anchor_rounding": False,
        "model.roi_heads.box_head": _box_head(sd, source),
        "model.roi_heads.box_head_norm": _norm_of(sd, "roi_head.bbox_head.shared_convs.0"),
        "model.roi_heads.box_head_dim": int(sd["roi_head.bbox_head.shared_fcs.0.weight"].shape[0])
        if "roi_head.bbox_head.shared_fcs.0.weight" in sd else 1024,
        "model.roi_heads.pooler_aligned": True,
        "model.roi_heads.pooler_sampling_ratio": 0,
        "model.roi_heads.canonical_level": 4,
        "model.roi_heads.canonical_box_size": 224,
        "model.roi_heads.box_reg_weights": (10.0, 10.0, 5.0, 5.0),
        "model.roi_heads.mask_paste": "grid_sample",
        "model.roi_heads.mask_on": layout == "maskrcnn",
        "model.roi_heads.keypoint_on": False,
        # mmcv resizes with cv2's bilinear, no antialiasing: the same kernel as torch's bilinear
        "input.resize_method": "torchvision",
    }
    if layout == "maskrcnn":
        out["model.roi_heads.mask_head_convs"] = count_indices(sd, r"^roi_head\.mask_head\.convs\.(\d+)\.")
        out["model.roi_heads.mask_head_norm"] = _norm_of(sd, "roi_head.mask_head.convs.0")
        if "roi_head.mask_head.upsample.weight" in sd:  # ConvTranspose2d: (in, out, 2, 2)
            out["model.roi_heads.mask_head_dim"] = int(sd["roi_head.mask_head.upsample.weight"].shape[1])
        logits = sd.get("roi_head.mask_head.conv_logits.weight")
        if logits is not None and logits.shape[0] == 1 and num_classes > 2:
            out["model.roi_heads.mask_class_agnostic"] = True
    from_text, notes = _from_config_text(cfgtext, layout, source)
    out.update(from_text)
    anchors = len(out.get("model.rpn.aspect_ratios", (0.5, 1.0, 2.0)))
    rows = int(sd["rpn_head.rpn_cls.weight"].shape[0]) if "rpn_head.rpn_cls.weight" in sd else anchors
    if rows != anchors:
        raise ConversionError(
            f"{source}: rpn_head.rpn_cls has {rows} rows for {anchors} anchors per location; ours is a "
            "sigmoid RPN with one objectness logit per anchor"
            + (" (this looks like a softmax RPN: 2 per anchor)" if rows == 2 * anchors else ""))
    notes.insert(0, f"input convention from {how}: {'caffe' if caffe else 'pytorch'} style, "
                    f"{'BGR (stem channels reversed)' if bgr else 'RGB'}")
    return out, bgr, notes


def _map_key(key: str) -> Optional[str]:
    return rename_key(_COMPILED, key)


def convert_state_dict(sd: dict) -> tuple:
    """Rename mmdet keys to ours (values untouched). Returns (ours, [unmapped keys])."""
    out, unmapped = {}, []
    for key, value in sd.items():
        new = _map_key(key)
        if new is None:
            unmapped.append(key)
        else:
            out[new] = value
    return out, unmapped


def default_class_names(num_classes: int) -> list:
    from maskrcnn.interop.detectron2 import COCO_CLASS_NAMES_81

    if num_classes == 81:  # mmdet's COCO classes are detectron2's 80, in the same order
        return list(COCO_CLASS_NAMES_81)
    return ["__background__"] + [f"class_{i}" for i in range(1, num_classes)]


def convert_mmdetection(obj, overrides: Optional[dict] = None, *, source: str = "checkpoint",
                        ema: bool = False) -> dict:
    """Full conversion with a check against the model ``build_model`` makes from the overrides.

    ``obj``: what the file holds (``{"meta", "state_dict", ...}`` or the state dict itself).
    ``overrides``: extra config keys, applied last (``model.stride_in_1x1`` also picks the input
    convention of a file without config: see the module docstring). ``ema``: refused (ConversionError):
    mmengine's ``EMAHook`` swaps the copies before saving, so "state_dict" already is the EMA average
    (a note says so when "ema_state_dict", the raw weights, is beside it) and no other copy is offered.
    Returns ``{"state_dict", "config" (Config), "class_names", "layout", "report", "notes"}``; raises
    ConversionError naming the design, or the unmapped, missing or mis-shaped keys.
    """
    from maskrcnn.config import Config, apply_overrides
    from maskrcnn.interop.wrappers import MMENGINE_RAW_KEY, mmengine_ema_note, no_ema_error
    from maskrcnn.modeling.mask_rcnn import build_model

    overrides = dict(overrides or {})
    swapped = mmengine_ema_note(obj)
    if ema:
        if swapped is not None:
            raise no_ema_error(source, "this file's 'state_dict' already is the EMA average (mmengine's "
                                       "EMAHook swaps it in before saving; the raw weights are in "
                                       f"'{MMENGINE_RAW_KEY}'): convert it without --ema / #ema")
        raise no_ema_error(source, "--from mmdetection takes no other copy: mmengine's EMAHook saves the "
                                   "EMA average as 'state_dict' itself (converted without --ema / #ema), "
                                   f"and this file has no '{MMENGINE_RAW_KEY}' beside it")
    ema_notes = [swapped] if swapped is not None else []
    sd, meta, prefix = unwrap(obj, source)
    layout = detect_layout(sd, source, str(meta.get("mmdet_version", "")))
    cfgtext = config_of(meta)
    cfg_over, bgr, notes = config_overrides(sd, layout, cfgtext, overrides, source=source)
    notes = [*([prefix_note(prefix)] if prefix is not None else []), *notes, *ema_notes]
    cfg_over.update(overrides)
    cfg = apply_overrides(Config(), cfg_over)
    ours, unmapped = convert_state_dict(sd)
    ours, counters = drop_frozen_counters(ours, cfg.model.norm)
    if bgr:
        stem_bgr_to_rgb(ours)
    # mmdet's order is detectron2's: background last in fc_cls, no background slot in fc_reg / conv_logits
    background_first(ours, cfg.model.num_classes, source, cfg.model.roi_heads.mask_class_agnostic)
    model_sd = build_model(cfg).state_dict()
    missing = [k for k in model_sd if k not in ours]
    unexpected = [k for k in ours if k not in model_sd]
    # the file's keys: the entry and the wrapper prefixes the reader dropped are the file's, not ours
    entry, held_prefix = where_keys(obj, sd, ("state_dict",))
    origin = {new: held_prefix + key for key in sd if (new := _map_key(key)) is not None}
    shapes = shape_mismatches(ours, model_sd, origin)  # (the file's key and ours, each shape said)
    problems = conversion_problems(unmapped, missing, unexpected, shapes, source_name="MMDetection",
                                   origin=origin)
    if problems:
        raise ConversionError(f"{source} (mmdetection {layout} layout): "
                              + "; ".join(p.replace("detectron2", "mmdetection") for p in problems))
    from maskrcnn.interop.float_dtypes import size_as_float32, to_model_dtypes

    as_float32 = size_as_float32(ours)  # what a file of them costs: convert says it, --init not
    ours, dtype_said = to_model_dtypes(ours, model_sd)
    notes += [dtype_said] if dtype_said else []
    names = class_names_of(meta)
    if names is not None and len(names) == cfg.model.num_classes - 1:
        names = ["__background__"] + names
    else:
        if names is not None:
            notes.append(f"the file names {len(names)} classes but the weights have "
                         f"{cfg.model.num_classes - 1}; default names used")
        names = default_class_names(cfg.model.num_classes)
    report = {"layout": layout, "unmapped": unmapped, "missing": missing, "unexpected": unexpected,
              "shape_mismatch": shapes, "num_tensors": len(ours), "origin": origin,
              "entry": entry,
              "counters_dropped": counters,
              "config_text": bool(cfgtext),
              "mmdet_version": str(meta.get("mmdet_version", "")), "as_float32": as_float32}
    return {"state_dict": ours, "config": cfg, "class_names": names, "layout": layout, "report": report,
            "notes": notes}


def load_mmdetection_file(path, overrides: Optional[dict] = None, *, ema: bool = False) -> dict:
    """``convert_mmdetection`` on a file; loading never runs code from it."""
    return convert_mmdetection(read_mmdet_file(path), overrides, source=str(path), ema=ema)
