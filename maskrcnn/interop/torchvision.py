"""Convert torchvision detection state dicts (Mask / Faster / Keypoint R-CNN, v1 and v2) to ours.

Shapes: K classes incl. background (read from ``box_predictor.cls_score.weight`` (K, 1024)),
J keypoints (read from ``kps_score_lowres.weight`` (512, J, 4, 4)).

Layouts recognised (docs/checkpoints.md has the full key table):
- ``maskrcnn``  maskrcnn_resnet50_fpn (v1): 2fc box head, 1-conv RPN head, no norm in FPN / heads;
- ``maskrcnn_v2`` maskrcnn_resnet50_fpn_v2: BatchNorm in FPN and heads, 4conv1fc, 2-conv RPN head;
- ``keypointrcnn`` keypointrcnn_resnet50_fpn; ``fasterrcnn`` / ``fasterrcnn_v2`` (no mask head);
plus the legacy names that torchvision's published v1 files still carry (``rpn.head.conv.weight``,
``fpn.inner_blocks.0.weight``, ``mask_head.mask_fcn1``, ``keypoint_head.conv_fcn1``), which torchvision
itself renames on load.

Torchvision's label convention is ours (0 = background), so class rows are copied as they are.

Files saved like torchvision's classification reference ``train.py --model-ema`` saves them (its detection
``train.py`` has no such option) hold a second copy of the weights, averaged over the steps:
``{"model": sd, "model_ema": {"n_averaged": tensor, "module.<key>": tensor, ...}, ...}``.
``model`` is taken unless ``ema=True`` asks for the average (``model_ema`` without its ``module.``
prefix and counter); either way a note says which copy was taken. timm's "state_dict_ema" beside
"state_dict" is read the same way.

Only ResNet / ResNeXt backbones (``backbone.body.layer1..4``) convert; another backbone under
``backbone.body`` (MobileNet's ``features.*``) is refused in one line naming it. Only R-CNNs convert (told
by their parts, ``rpn.head.*`` and ``roi_heads.*``): torchvision's one-stage detectors (RetinaNet, FCOS,
SSD, SSDlite: one ``head.classification_head`` / ``head.regression_head``) are refused naming the family
(``rcnn_problem``), and only an R-CNN whose box predictor is missing is told it was dropped to fine-tune.
Published v1 COCO weights need frozen batch norm with eps 0 (torchvision overwrites eps on load);
weights from a model built with ``weights=None`` (plain BatchNorm, eps 1e-5) need ``frozen_bn_eps=1e-5``.
The file tells them apart (``v1_eps``): ``nn.BatchNorm2d`` saves a ``num_batches_tracked`` counter per
norm, torchvision's ``FrozenBatchNorm2d`` none. Frozen norms are eps 0 in the published files (and models
fine-tuned from them) but 1e-5 in a model built with ``weights_backbone`` only, which the reference
script's saved command line ("args") tells. A note says which eps was taken and why.
"""

from __future__ import annotations

import os
import re
from typing import Optional

import torch

from maskrcnn.class_names import BACKGROUND_NAMES
from maskrcnn.interop.key_rules import (
    compile_rules,
    conversion_problems,
    drop_frozen_counters,
    first_rule,
    rename_key,
    shape_mismatches,
)
from maskrcnn.interop.wrappers import (  # noqa: F401 - strip_module_prefix re-exported
    EMA_KEYS,
    MMENGINE_RAW_KEY,
    STATE_DICT_ENTRIES,
    common_prefix,
    ema_copy,
    inner_note,
    inner_state_dict,
    mmengine_ema_note,
    no_ema_error,
    prefix_note,
    state_dict_problem,
    strip_common_prefix,
    strip_module_prefix,
    swapped_by_mmengine,
    where_keys,
)

COCO_CLASS_NAMES_91 = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella",
    "N/A", "N/A", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "N/A",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "N/A", "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)

# resnet depth from the number of blocks in layer3 (bottleneck nets) / basic-block nets
_DEPTHS = {(3, 4, 6, 3): "50", (3, 4, 23, 3): "101", (3, 8, 36, 3): "152"}
_BASIC = {(2, 2, 2, 2): "resnet18", (3, 4, 6, 3): "resnet34"}


class ConversionError(ValueError):
    """A state dict that cannot be converted; the message names the keys."""


_CONV_OR_NORM = {"conv": "conv", "bn": "norm"}

# (pattern, replacement) tried in order; a replacement is a template or a function of the match groups.
_RULES = [
    (r"^backbone\.body\.conv1\.(.+)$", r"backbone.stem.conv1.conv.\1"),
    (r"^backbone\.body\.bn1\.(.+)$", r"backbone.stem.conv1.norm.\1"),
    # torchvision's layer1..layer4 are our res2..res5
    (r"^backbone\.body\.layer(\d)\.(\d+)\.(conv|bn)(\d)\.(.+)$",
     lambda g: f"backbone.res{int(g[0]) + 1}.{g[1]}.conv{g[3]}.{_CONV_OR_NORM[g[2]]}.{g[4]}"),
    (r"^backbone\.body\.layer(\d)\.(\d+)\.downsample\.([01])\.(.+)$",
     lambda g: f"backbone.res{int(g[0]) + 1}.{g[1]}.shortcut.{'conv' if g[2] == '0' else 'norm'}.{g[3]}"),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.0\.(.+)$", r"fpn.lateral.\1.conv.\2"),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.1\.(.+)$", r"fpn.lateral.\1.norm.\2"),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.(weight|bias)$", r"fpn.lateral.\1.conv.\2"),  # legacy
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.0\.(.+)$", r"fpn.output.\1.conv.\2"),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.1\.(.+)$", r"fpn.output.\1.norm.\2"),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.(weight|bias)$", r"fpn.output.\1.conv.\2"),  # legacy
    (r"^rpn\.head\.conv\.(\d+)\.0\.(.+)$", r"rpn.head.convs.\1.conv.\2"),
    (r"^rpn\.head\.conv\.(weight|bias)$", r"rpn.head.convs.0.conv.\1"),  # legacy
    (r"^rpn\.head\.cls_logits\.(.+)$", r"rpn.head.objectness.\1"),
    (r"^rpn\.head\.bbox_pred\.(.+)$", r"rpn.head.deltas.\1"),
    (r"^roi_heads\.box_head\.fc6\.(.+)$", r"roi_heads.box_head.fcs.0.\1"),
    (r"^roi_heads\.box_head\.fc7\.(.+)$", r"roi_heads.box_head.fcs.1.\1"),
    (r"^roi_heads\.box_head\.(\d+)\.0\.(.+)$", r"roi_heads.box_head.convs.\1.conv.\2"),
    (r"^roi_heads\.box_head\.(\d+)\.1\.(.+)$", r"roi_heads.box_head.convs.\1.norm.\2"),
    # v2: Linear layers after a Flatten at Sequential index 4 (numbered in order of appearance)
    (r"^roi_heads\.box_head\.(\d+)\.(weight|bias)$", "box_linear"),
    (r"^roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(.+)$", r"roi_heads.box_predictor.\1.\2"),
    (r"^roi_heads\.mask_head\.(\d+)\.0\.(.+)$", r"roi_heads.mask_head.convs.\1.conv.\2"),
    (r"^roi_heads\.mask_head\.(\d+)\.1\.(.+)$", r"roi_heads.mask_head.convs.\1.norm.\2"),
    (r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(.+)$",  # legacy, numbered from 1
     lambda g: f"roi_heads.mask_head.convs.{int(g[0]) - 1}.conv.{g[1]}"),
    (r"^roi_heads\.mask_predictor\.conv5_mask\.(.+)$", r"roi_heads.mask_head.deconv.\1"),
    (r"^roi_heads\.mask_predictor\.mask_fcn_logits\.(.+)$", r"roi_heads.mask_head.predictor.\1"),
    # Sequential(conv, relu, conv, relu, ...): conv i sits at index 2i
    (r"^roi_heads\.keypoint_head\.(\d*[02468])\.(weight|bias)$",
     lambda g: f"roi_heads.keypoint_head.convs.{int(g[0]) // 2}.conv.{g[1]}"),
    (r"^roi_heads\.keypoint_head\.conv_fcn(\d+)\.(.+)$",  # legacy, numbered from 1
     lambda g: f"roi_heads.keypoint_head.convs.{int(g[0]) - 1}.conv.{g[1]}"),
    (r"^roi_heads\.keypoint_predictor\.kps_score_lowres\.(.+)$", r"roi_heads.keypoint_head.predictor.\1"),
]
_COMPILED = compile_rules(_RULES)


def _map_key(key: str, box_linear_index: dict) -> Optional[str]:
    hit = first_rule(_COMPILED, key)
    if hit is not None and hit[1] == "box_linear":
        m = hit[0]
        return f"roi_heads.box_head.fcs.{box_linear_index[int(m.group(1))]}.{m.group(2)}"
    return rename_key(_COMPILED, key)


def ema_state_dict(obj) -> Optional[dict]:
    """The averaged copy a file keeps beside its weights (``wrappers.EMA_KEYS``: torchvision's
    ``--model-ema`` "model_ema", timm's "state_dict_ema", other scripts' "ema_state_dict"), without its
    ``module.`` prefix and step counter; None when the file has none."""
    found = ema_copy(obj)
    return None if found is None else found[1]


def _ema_label(obj) -> str:
    key, _sd, steps = ema_copy(obj)
    return f"'{key}'" + (f", averaged over {steps} steps" if steps is not None else "")


def pick_weights(obj, source: str = "checkpoint", *, ema: bool = False) -> tuple:
    """``(obj or its EMA copy, [notes])``: the weights ``unwrap_state_dict`` reads, "model_ema" when
    ``ema`` (an error when the file has none), and a note naming the copy taken when there are two."""
    averaged = ema_state_dict(obj)
    swapped = mmengine_ema_note(obj) if swapped_by_mmengine(obj) else None
    if ema:
        if swapped is not None:  # its "ema_state_dict" holds the raw weights
            raise no_ema_error(source, f"this file's 'state_dict' already is the EMA average (mmengine's "
                                       f"EMAHook swaps it in before saving; the raw weights are in "
                                       f"'{MMENGINE_RAW_KEY}'): convert it without --ema / #ema")
        if averaged is None:
            raise no_ema_error(source, "the file has no 'model_ema' (train.py --model-ema writes one), "
                                       "'state_dict_ema' (timm) nor 'ema_state_dict' beside its weights, "
                                       "the copies --from torchvision takes")
        return averaged, [f"took the EMA copy of the weights ({_ema_label(obj)})"]
    if averaged is None:
        return obj, [swapped] if swapped is not None else []
    entry = inner_state_dict(obj)[1]
    taken = f"'{entry}'" if entry else "its tensors"
    return obj, [f"the file also holds an EMA copy of the weights ({_ema_label(obj)}); took {taken}; "
                 "`maskrcnn convert --ema` or `train --init FILE#ema` takes the EMA copy"]


def unwrap_state_dict(obj, source: str = "checkpoint") -> dict:
    """A plain name -> tensor dict from a torchvision file (a state dict, or one under 'model')."""
    return unwrap_with_prefix(obj, source)[0]


def unwrap_with_prefix(obj, source: str = "checkpoint") -> tuple:
    """``(unwrap_state_dict's dict, the extra prefix dropped or None)``: besides the ``module.`` /
    ``model.`` wrappers, a single prefix every key shares ("detector." of a LightningModule's
    ``self.detector``) is dropped when the names without it are torchvision's
    (``wrappers.strip_common_prefix``)."""
    problem = state_dict_problem(obj, source)
    if problem is not None:
        raise ConversionError(problem)
    obj, _taken, _ignored = inner_state_dict(obj)
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{source}: not a state dict (expected a mapping of names to tensors)")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f"{source}: entries that are not tensors: {bad[:5]}")
    return strip_common_prefix(obj, is_torchvision)


def backbone_only(sd: dict) -> bool:
    """Whether every key is a ``backbone.*`` one (``backbone.body`` / ``resnet_fpn_backbone`` saved alone),
    not a detector's (``rpn.*``, ``roi_heads.*``, a one-stage ``head.*``)."""
    return all(isinstance(k, str) and k.startswith("backbone.") for k in sd)


# What makes a torchvision R-CNN, whatever its heads: region proposals (rpn.head.*) and per-region heads
# (roi_heads.box_head.*, then the box predictor a fine-tuning recipe may drop). torchvision's one-stage
# detectors (RetinaNet, FCOS, SSD, SSDlite) have neither: one dense head, head.classification_head.* and
# head.regression_head.*, over the backbone's features.
_RCNN_PARTS = ("rpn.head.", "roi_heads.box_head.")
ONE_STAGE_HEADS = ("head.classification_head.", "head.regression_head.")


def is_torchvision(keys) -> bool:
    """Key names only torchvision's detectors use: a ``backbone.body`` (its R-CNNs, RetinaNet, FCOS) or a
    one-stage dense head (``ONE_STAGE_HEADS``: SSD's and SSDlite's sit over ``backbone.features``)."""
    return any(isinstance(k, str) and k.startswith(("backbone.body.",) + ONE_STAGE_HEADS) for k in keys)


def one_stage_family(sd: dict) -> Optional[str]:
    """The torchvision one-stage detector the keys are ("RetinaNet", "FCOS", "SSD", "SSDlite", or "one-stage
    detector" for another head of that shape), told by what only that family's head has; None when the
    keys have no one-stage head (``ONE_STAGE_HEADS``)."""
    keys = [k for k in sd if isinstance(k, str)]
    if not any(k.startswith(ONE_STAGE_HEADS) for k in keys):
        return None
    if any(k.startswith("head.regression_head.bbox_ctrness.") for k in keys):  # FCOS's centre-ness branch
        return "FCOS"
    if any(k.startswith("head.classification_head.module_list.") for k in keys):  # one conv per feature map
        # SSDlite's per-map predictor is a depthwise-separable Sequential (module_list.i.0.0.weight),
        # SSD's a plain conv (module_list.i.weight)
        lite = any(re.match(r"^head\.classification_head\.module_list\.\d+\.\d+\.", k) for k in keys)
        return "SSDlite" if lite else "SSD"
    if any(k.startswith("head.classification_head.cls_logits.") for k in keys) and \
            any(k.startswith("head.regression_head.bbox_reg.") for k in keys):
        return "RetinaNet"
    return "one-stage detector"


def _other_family(sd: dict, family: str) -> str:
    """A torchvision detector of another family than the R-CNNs, said as such (its keys are not a dropped
    box predictor's), with what of it a run could still start from."""
    if any(k.startswith("backbone.body.layer1.") for k in sd):
        use = ("only its ResNet body could start a run: save its backbone.* tensors alone (from the state "
               "dict: a training checkpoint's 'model' entry, names without a 'module.' prefix; "
               "`torch.save({k: v for k, v in sd.items() if k.startswith('backbone.')}, 'body.pth')`) and "
               "give that file to `maskrcnn train --init`")
    else:
        parts = dict.fromkeys(".".join(k.split(".")[:2]) + (".*" if k.count(".") > 1 else "")
                              for k in sd if k.startswith("backbone."))  # in the file's order
        shown = f" ({', '.join(list(parts)[:3])})" if parts else ""
        use = f"its backbone{shown} is no ResNet/ResNeXt either: nothing of it can start a run"
    return (f"a torchvision {family} ({', '.join(p + '*' for p in ONE_STAGE_HEADS)}): no RPN or RoI heads "
            "(rpn.*, roi_heads.*), so not a Mask / Faster / Keypoint R-CNN, the detectors this library "
            f"reads; {use}")


def _not_whole_rcnn(sd: dict) -> str:
    """What a file with a ResNet ``backbone.body``, other keys and no box predictor is, from the R-CNN
    parts it has (``_RCNN_PARTS``)."""
    has = [p for p in _RCNN_PARTS if any(k.startswith(p) for k in sd)]
    if "roi_heads.box_head." in has:  # a real R-CNN, less the predictor a fine-tuning recipe drops
        lacks = "rpn.head.* and roi_heads.box_predictor.*" if "rpn.head." not in has else \
            "roi_heads.box_predictor.*"
        return (f"a torchvision R-CNN saved without {lacks} (dropped to fine-tune on new classes?): not "
                "read; save the whole detector instead (`maskrcnn train --init` starts the class rows it "
                "lacks fresh by itself)")
    if has:  # rpn.head.* and no RoI head at all
        return ("a torchvision backbone and RPN (rpn.head.*) without RoI heads (no roi_heads.*): not a whole "
                "R-CNN; save the whole detector, or its backbone.* tensors alone for `maskrcnn train --init` "
                "to start the backbone from")
    other = next(k for k in sd if not k.startswith("backbone."))
    return (f"a backbone.body with other keys than an R-CNN's ({other}, ...; no rpn.head.* or roi_heads.*): "
            "not a Mask / Faster / Keypoint R-CNN, the detectors this library reads")


def rcnn_problem(sd: dict) -> Optional[str]:
    """Why torchvision-named weights are no R-CNN (the sentence after the file's name): a one-stage
    detector (RetinaNet, FCOS, SSD, SSDlite: ``one_stage_family``), or a ResNet body with some of an
    R-CNN's parts but no box predictor (one dropped to fine-tune, an RPN alone); None for an R-CNN with
    its box predictor, a backbone saved alone (read as one) and another body (``check_resnet_body``
    refuses it: that comes first)."""
    sd = {k: v for k, v in sd.items() if isinstance(k, str)}  # a stray non-text key is no layer of any
    family = one_stage_family(sd)
    if family is not None:
        return _other_family(sd, family)
    if "roi_heads.box_predictor.cls_score.weight" in sd or backbone_only(sd):
        return None
    if not any(k.startswith("backbone.body.layer1.") for k in sd):
        return None
    return _not_whole_rcnn(sd)


def detect_layout(sd: dict, source: str = "checkpoint") -> str:
    """One of maskrcnn, maskrcnn_v2, keypointrcnn, fasterrcnn, fasterrcnn_v2; another detector (a
    RetinaNet, an SSD) or an R-CNN less its box predictor is refused, naming which (``rcnn_problem``)."""
    problem = rcnn_problem(sd)
    if problem is not None:
        raise ConversionError(f"{source}: {problem}")
    has_body = any(k.startswith("backbone.body.") for k in sd)
    if has_body and "roi_heads.box_predictor.cls_score.weight" not in sd:  # said by what is missing
        check_resnet_body(sd, source)  # (train --init takes a ResNet body only)
        raise ConversionError(
            f"{source}: not a torchvision detection state dict: has backbone.body.* but no "
            "roi_heads.box_predictor.cls_score.weight: backbone weights only, not a detector; use them "
            "with `maskrcnn train --init`"
        )
    if not has_body:
        shared = common_prefix(list(sd))  # a wrapper this reader does not know: said, not guessed
        shared = f" (every key starts with '{shared}')" if shared else ""
        missing = "backbone.body.*" if "roi_heads.box_predictor.cls_score.weight" in sd else \
            "backbone.body.* or roi_heads.box_predictor.cls_score.*"
        raise ConversionError(f"{source}: not a torchvision detection state dict: no {missing} keys{shared}")
    check_resnet_body(sd, source)
    v2 = "roi_heads.box_head.0.0.weight" in sd
    if any(k.startswith("roi_heads.keypoint_predictor.") for k in sd):
        return "keypointrcnn"
    if any(k.startswith("roi_heads.mask_predictor.") for k in sd):
        return "maskrcnn_v2" if v2 else "maskrcnn"
    return "fasterrcnn_v2" if v2 else "fasterrcnn"


# torchvision's other detection backbones, by the names under backbone.body: MobileNet's
# IntermediateLayerGetter numbers its blocks (an InvertedResidual holds ".block."), RegNet's has a trunk
_OTHER_BODIES = ((re.compile(r"^backbone\.body\.(\d+\.block)\."), "MobileNet?"),
                 (re.compile(r"^backbone\.body\.(features)\."), "MobileNet?"),
                 (re.compile(r"^backbone\.body\.(trunk_output)\."), "RegNet?"))


def check_resnet_body(sd: dict, source: str = "checkpoint") -> None:
    """Refuse, in one line naming the keys, a detector whose ``backbone.body`` is not a ResNet / ResNeXt
    (torchvision's ``fasterrcnn_mobilenet_v3_large_fpn`` has ``backbone.body.0.*``, ``1.block.*``, ...):
    counting its ResNet stages found none and said "(0, 0, 0, 0) blocks per stage"."""
    if not any(k.startswith("backbone.body.layer1.") for k in sd):
        raise ConversionError(f"{source}: {_not_resnet(sd)}")


# names only a ResNet body has: one with none of them is another network (told before any conversion)
_RESNET_NAMES = ("backbone.body.conv1.", "backbone.body.bn1.", "backbone.body.layer")


def body_problem(sd: dict) -> Optional[str]:
    """Why a ``backbone.body`` is plainly no ResNet / ResNeXt, having none of its names ("backbone.body.1.
    block.* is not a ResNet/ResNeXt backbone (MobileNet?); supported: ..."), in ``check_resnet_body``'s
    words; None otherwise (no body at all too). Said by ``predict`` of such a file instead of sending it
    to ``convert``, which refuses it."""
    keys = [k for k in sd if isinstance(k, str)]
    body = [k for k in keys if k.startswith("backbone.body.")]
    if not body or any(k.startswith(_RESNET_NAMES) for k in body):
        return None
    return _not_resnet(sd)


def _not_resnet(sd: dict) -> str:
    from maskrcnn.modeling.backbone import ARCHS

    shown, guess = None, ""
    for pattern, name in _OTHER_BODIES:
        hit = next((m for m in map(pattern.match, sd) if m), None)
        if hit:
            shown, guess = hit.group(1), f" ({name})"
            break
    if shown is None:
        body = [k for k in sd if k.startswith("backbone.body.") and k.count(".") >= 3]
        shown = body[0].split(".")[2] if body else "?"
    return f"backbone.body.{shown}.* is not a ResNet/ResNeXt backbone{guess}; supported: {', '.join(ARCHS)}"


def resnet_arch(blocks: tuple, res2_conv2_weight, *, bottleneck: bool) -> str:
    """Our backbone name from the blocks per stage (res2..res5) and the first res2 block's 3x3 conv
    weight (width, width / groups, 3, 3), which tells ResNeXt's groups and width. Shared by the
    converters: every layout numbers its stages differently but builds the same nets."""
    blocks = tuple(blocks)
    if not bottleneck:
        if blocks not in _BASIC:
            raise ConversionError(f"unrecognised basic-block ResNet with {blocks} blocks per stage")
        return _BASIC[blocks]
    if blocks not in _DEPTHS:
        raise ConversionError(f"unrecognised bottleneck ResNet with {blocks} blocks per stage")
    w = res2_conv2_weight
    groups = w.shape[0] // w.shape[1]
    if groups == 1:
        return "resnet" + _DEPTHS[blocks]
    from maskrcnn.modeling.backbone import ARCHS

    name = f"resnext{_DEPTHS[blocks]}_{groups}x{w.shape[0] // groups}d"  # res2 width = groups x per-group
    if name not in ARCHS:
        raise ConversionError(f"ResNeXt {name} (from res2's conv2 {tuple(w.shape)}) is not one of our "
                              f"backbones: {', '.join(ARCHS)}")
    return name


def _backbone_arch(sd: dict) -> str:
    blocks = []
    for layer in range(1, 5):
        pattern = re.compile(rf"backbone\.body\.layer{layer}\.(\d+)\.")
        blocks.append(len({int(m.group(1)) for m in map(pattern.match, sd) if m}))
    return resnet_arch(tuple(blocks), sd.get("backbone.body.layer1.0.conv2.weight"),
                       bottleneck="backbone.body.layer1.0.conv3.weight" in sd)


# the class-specific tensors of torchvision's heads -> rows per class; each counts the background
_CLASS_ROWS = (("roi_heads.box_predictor.cls_score.weight", 1), ("roi_heads.box_predictor.cls_score.bias", 1),
               ("roi_heads.box_predictor.bbox_pred.weight", 4), ("roi_heads.box_predictor.bbox_pred.bias", 4),
               ("roi_heads.mask_predictor.mask_fcn_logits.weight", 1),
               ("roi_heads.mask_predictor.mask_fcn_logits.bias", 1))


def class_count_conflict(sd: dict, source: str, layout: str) -> Optional[str]:
    """The refusal of a file whose heads disagree on the class count (a mask predictor replaced for 3
    classes beside a 91-class box predictor), naming both keys and shapes; None when they agree. Said
    before a model is guessed from the box predictor: the shape mismatch against that guess ("the model
    needs (91, ...)") spoke of a model nobody asked for."""
    first = "roi_heads.box_predictor.cls_score.weight"
    if first not in sd:
        return None
    k = int(sd[first].shape[0])
    for key, per in _CLASS_ROWS:
        t = sd.get(key)
        if not isinstance(t, torch.Tensor) or t.dim() == 0 or int(t.shape[0]) == k * per:
            continue
        rows = int(t.shape[0])
        theirs = f"{rows // per} classes" if rows % per == 0 else f"{rows} rows (not {per} per class)"
        return (f"{source} ({layout} layout): the file contradicts itself on the class count: {first} "
                f"{tuple(sd[first].shape)} has {k} classes, {key} {tuple(t.shape)} has {theirs} (each "
                "counting the background); no model holds both: a head replaced for another class set "
                "without the other?")
    return None


def config_overrides(sd: dict, layout: str, *, frozen_bn_eps: float = 0.0) -> dict:
    """Config keys (dotted) that make ``build_model`` produce this layout."""
    num_classes = int(sd["roi_heads.box_predictor.cls_score.weight"].shape[0])
    v2 = layout.endswith("_v2")
    out = {
        "model.backbone": _backbone_arch(sd),
        "model.fpn": True,
        "model.num_classes": num_classes,
        "model.norm": "frozen_bn",
        "model.frozen_bn_eps": float(frozen_bn_eps),
        "model.fpn_norm": "bn" if v2 else "none",
        "model.rpn.head_convs": 1 + sum(
            1 for k in sd if re.match(r"^rpn\.head\.conv\.[1-9]\d*\.0\.weight$", k)),
        "model.rpn.anchor_rounding": True,
        "model.roi_heads.box_head": "4conv1fc" if v2 else "2fc",
        "model.roi_heads.box_head_norm": "bn" if v2 else "none",
        "model.roi_heads.mask_head_norm": "bn" if v2 else "none",
        "model.roi_heads.mask_on": layout.startswith("maskrcnn"),
        "model.roi_heads.keypoint_on": layout == "keypointrcnn",
        "model.roi_heads.pooler_aligned": False,
    }
    # widths, read from the weights so that custom-trained torchvision models convert too
    out["model.fpn_dim"] = int(sd[_first(sd, "backbone.fpn.inner_blocks.0.0.weight",
                                         "backbone.fpn.inner_blocks.0.weight")].shape[0])
    box_fcs = sorted(k for k in sd if re.match(r"^roi_heads\.box_head\.(fc6|\d+)\.weight$", k)
                     and sd[k].dim() == 2)
    out["model.roi_heads.box_head_dim"] = int(sd[box_fcs[0]].shape[0]) if box_fcs else 1024
    if layout.startswith("maskrcnn"):
        out["model.roi_heads.mask_head_dim"] = int(sd["roi_heads.mask_predictor.conv5_mask.weight"].shape[1])
    anchors_per_location = int(sd["rpn.head.cls_logits.weight"].shape[0])
    if anchors_per_location != 3:
        raise ConversionError(f"rpn.head.cls_logits has {anchors_per_location} anchors per location; "
                              "only torchvision's default 3 (ratios 0.5, 1, 2) is supported")
    if layout == "keypointrcnn":
        kps = sd["roi_heads.keypoint_predictor.kps_score_lowres.weight"]  # (512, J, 4, 4)
        out["model.roi_heads.num_keypoints"] = int(kps.shape[1])
    return out


def _first(sd: dict, *keys: str) -> str:
    for k in keys:
        if k in sd:
            return k
    raise ConversionError(f"none of {', '.join(keys)} in the state dict")


def default_class_names(num_classes: int, layout: str = "") -> list:
    if num_classes == 91:
        return list(COCO_CLASS_NAMES_91)
    if layout == "keypointrcnn" and num_classes == 2:
        return ["__background__", "person"]
    return ["__background__"] + [f"class_{i}" for i in range(1, num_classes)]


def meta_class_names(held, num_classes: int, layout: str = "") -> tuple:
    """``(class names background first, [note])``: those an MMDetection-style ``meta`` beside the weights
    stores (``{"meta": {"CLASSES": (...)}, "state_dict": ...}``, or mmengine's ``dataset_meta.classes``:
    a training loop that saved torchvision's weights the mmcv way) when their count fits the weights'
    ``num_classes``: as they are when they are one fewer (mmdet's lists never hold the background, so a
    first class called "background" is a dataset's own), without a background-like first name when they
    are as many; else ``default_class_names`` with a note giving the count the file stores and why it was
    not taken; no note when the file stores none."""
    from maskrcnn.interop.mmdetection import class_names_of

    meta = held.get("meta") if isinstance(held, dict) else None
    stored = class_names_of(meta) if isinstance(meta, dict) else None
    if stored is None:
        return default_class_names(num_classes, layout), []
    where = "meta['CLASSES']" if meta.get("CLASSES") is not None else "meta['dataset_meta']['classes']"
    leading_background = stored[0].lower() in BACKGROUND_NAMES
    if len(stored) == num_classes and leading_background:
        stored = stored[1:]
    if len(stored) == num_classes - 1:
        return ["__background__", *stored], [f"class names from the file's {where} ({len(stored)})"]
    names = default_class_names(num_classes, layout)
    shown = ", ".join(names[1:3]) + (", ..." if len(names) > 3 else "")
    first = f" (the first {stored[0]!r})" if leading_background else ""
    return names, [f"the file's {where} names {len(stored)} classes{first} but the weights have "
                   f"{num_classes - 1} (plus background): not taken; named {shown} (--class-names a,b,c "
                   "to name them)"]


def convert_state_dict(sd: dict) -> tuple:
    """Rename torchvision keys to ours. Returns (our state dict, [unmapped torchvision keys])."""
    out, unmapped = {}, []
    renamed = renamed_keys(sd)
    for key, value in sd.items():
        if renamed.get(key) is None:
            unmapped.append(key)
        else:
            out[renamed[key]] = value
    return out, unmapped


def renamed_keys(sd: dict) -> dict:
    """{torchvision key: our key, or None where no rule maps it}."""
    pattern = re.compile(r"^roi_heads\.box_head\.(\d+)\.weight$")
    box_linears = sorted({int(m.group(1)) for m in map(pattern.match, sd) if m})
    box_linear_index = {idx: i for i, idx in enumerate(box_linears)}
    return {key: _map_key(key, box_linear_index) for key in sd}


# The v1 builders' COCO weights (the reference script's --weights, an enum member's name with or without
# its class): torchvision resets the frozen norms' eps to 0 for COCO_V1 (DEFAULT) only; keypoint R-CNN's
# COCO_LEGACY keeps the 1e-5 FrozenBatchNorm2d is built with.
_COCO_WEIGHTS_EPS = {"COCO_V1": 0.0, "DEFAULT": 0.0, "COCO_LEGACY": 1e-5}


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reference_args_eps(held) -> Optional[tuple]:
    """``(frozen_bn_eps, note)`` told by the command line torchvision's detection reference script saves as
    "args" beside the weights (``{"model", "optimizer", "lr_scheduler", "args", "epoch"}``: an
    ``argparse.Namespace``), or None when the file holds none or its fields do not decide. Since
    torchvision 0.13 the script builds ``get_model(weights=args.weights,
    weights_backbone=args.weights_backbone)``: COCO weights -> eps 0 (torchvision resets it on loading
    them); backbone weights only -> frozen norms with eps 1e-5; neither -> plain BatchNorm (the counters
    tell it). Before, ``pretrained=args.pretrained``: True -> the COCO weights, eps 0; False -> an ImageNet
    backbone with frozen norms, eps 1e-5 from torchvision 0.9 (0 before). The fields are read as the data
    the file stored (``vars``), only strings and booleans taken."""
    import argparse

    args = held.get("args") if isinstance(held, dict) else None
    if not isinstance(args, argparse.Namespace):
        return None
    fields = vars(args)  # (a crafted file's field may be long: shown cut, one line)
    shown = {k: _cut(repr(fields.get(k))) for k in ("weights", "weights_backbone")}
    weights, backbone, pretrained = (fields.get(k) for k in ("weights", "weights_backbone", "pretrained"))
    if isinstance(weights, str) and weights:
        enum, _, member = weights.rpartition(".")
        eps = None if "_V2_" in enum else _COCO_WEIGHTS_EPS.get(member)
        if eps is None:  # not a v1 builder's COCO weights (another fork's meaning): not known
            return None
        if eps:
            return eps, (f"model.frozen_bn_eps 1e-5: from the file's args.weights ({shown['weights']}): "
                         "torchvision's reference script started from the legacy keypoint COCO weights, "
                         "whose frozen norms torchvision leaves at eps 1e-5 (it sets 0 for COCO_V1 only)")
        return eps, (f"model.frozen_bn_eps 0: from the file's args.weights ({shown['weights']}): "
                     "torchvision's reference script started from the published COCO v1 weights, whose "
                     "frozen norms it sets to eps 0")
    if weights is not None:
        return None
    if isinstance(backbone, str) and backbone:
        return 1e-5, ("model.frozen_bn_eps 1e-5: from the file's args.weights_backbone "
                      f"({shown['weights_backbone']}; args.weights None): torchvision's reference script "
                      "built the model with backbone weights only, whose frozen norms keep eps 1e-5")
    if "weights_backbone" in fields or fields.get("prototype"):
        return None  # neither given (plain BatchNorm, told by its counters), or an 0.11/0.12 prototype run
    if pretrained is True:
        return 0.0, ("model.frozen_bn_eps 0: from the file's args.pretrained (True): torchvision's "
                     "reference script (before 0.13) started from the published COCO weights, whose frozen "
                     "norms use eps 0")
    if pretrained is False:
        return 1e-5, ("model.frozen_bn_eps 1e-5: from the file's args.pretrained (False): torchvision's "
                      "reference script (before 0.13) built the model with an ImageNet backbone and frozen "
                      "norms, eps 1e-5 from torchvision 0.9; --set model.frozen_bn_eps=0 for one trained "
                      "with torchvision 0.8 or older (eps 0 then)")
    return None


def _published_v1_file(source: str) -> bool:
    """Whether ``source`` names one of torchvision's published COCO v1 files by its own hash-suffixed
    name (as the download cache keeps it): those are frozen-norm weights with eps 0, known without asking
    the keys."""
    from maskrcnn.interop.download import PUBLISHED

    name = os.path.basename(str(source))
    return any(url.startswith("https://download.pytorch.org/models/") and "_coco-" in url
               and "_v2_" not in url and url.rsplit("/", 1)[-1] == name for url in PUBLISHED.values())


def v1_eps(sd: dict, held=None, source: str = "checkpoint") -> tuple:
    """``(frozen_bn_eps, note)`` for a v1 layout. First the backbone's batch-norm counters
    (``num_batches_tracked``): ``nn.BatchNorm2d`` keeps one, ``FrozenBatchNorm2d`` none, so a model built
    with ``weights=None`` (plain BatchNorm, eps 1e-5) is told by its keys. Frozen norms (no counters) are
    either torchvision's published COCO v1 weights and models fine-tuned from them (eps 0, torchvision
    sets it on loading them) or a model built with ``weights_backbone`` only (eps 1e-5; the reference
    script's recipe): the keys cannot tell them apart, the reference script's saved command line in
    ``held`` (the file's object) can (``reference_args_eps``). Without it eps 0 is taken, and the note
    says it is a guess and gives the ``--set`` for the other case."""
    counters = [k for k in sd if k.startswith("backbone.body.") and k.endswith(".num_batches_tracked")]
    if counters:
        return 1e-5, (f"model.frozen_bn_eps 1e-5: the file has {len(counters)} batch-norm counters "
                      "(num_batches_tracked), so it was saved from plain BatchNorm (a torchvision model "
                      "built with weights=None, eps 1e-5); torchvision's published COCO v1 weights, "
                      "which need eps 0, have none")
    told = reference_args_eps(held)
    if told is not None:
        return told
    if _published_v1_file(source):
        return 0.0, None  # the published file itself: nothing to guess, nothing to say
    return 0.0, ("model.frozen_bn_eps 0: the file has no batch-norm counters (num_batches_tracked), so its "
                 "norms were frozen: eps 0 if it is torchvision's published COCO v1 weights or was "
                 "fine-tuned from them, 1e-5 if it was built with weights_backbone only (the reference "
                 "script's recipe): --set model.frozen_bn_eps=1e-5 for that")


def convert_torchvision(obj, *, frozen_bn_eps: Optional[float] = None, source: str = "checkpoint",
                        overrides: Optional[dict] = None, ema: bool = False) -> dict:
    """Full conversion with a check against the model ``build_model`` makes from the overrides.

    ``frozen_bn_eps``: None picks 1e-5 for v2 layouts and, for v1, by the file's batch-norm counters and
    the reference script's saved "args" (``v1_eps``: 1e-5 for a model built with ``weights=None`` or
    ``weights_backbone`` only, 0.0 for torchvision's published COCO v1 weights and a guess of 0.0 when
    nothing tells), with a note saying which and why (none when ``overrides`` sets it).
    ``overrides``: extra config keys (e.g. ``{"model.frozen_bn_eps": 1e-5}``), applied last.
    ``ema``: take the file's "model_ema" copy (module docstring).
    Class names: those an MMDetection-style ``meta`` beside the weights stores (``meta_class_names``).
    Returns ``{"state_dict", "config" (Config), "class_names", "layout", "report", "notes"}``; raises
    ConversionError naming unmapped, missing or mis-shaped keys.
    """
    from maskrcnn.config import Config, apply_overrides
    from maskrcnn.modeling.mask_rcnn import build_model

    held = obj  # what the file holds: its keys name the tensors in messages (where_keys)
    obj, notes = pick_weights(obj, source, ema=ema)
    note = inner_note(*inner_state_dict(obj)[1:])
    notes += [note] if note else []
    sd, prefix = unwrap_with_prefix(obj, source)
    if prefix is not None:
        notes.append(prefix_note(prefix))
    layout = detect_layout(sd, source)
    conflict = class_count_conflict(sd, source, layout)
    if conflict is not None:
        raise ConversionError(conflict)
    if frozen_bn_eps is None and layout.endswith("_v2"):
        frozen_bn_eps = 1e-5
    elif frozen_bn_eps is None:
        frozen_bn_eps, eps_note = v1_eps(sd, held, source)
        notes += [] if "model.frozen_bn_eps" in (overrides or {}) or eps_note is None else [eps_note]
    cfg_over = config_overrides(sd, layout, frozen_bn_eps=frozen_bn_eps)
    cfg_over.update(overrides or {})
    cfg = apply_overrides(Config(), cfg_over)
    ours, unmapped = convert_state_dict(sd)
    ours, counters = drop_frozen_counters(ours, cfg.model.norm)
    model_sd = build_model(cfg).state_dict()
    for k in model_sd:  # frozen-BN sources (published files) have no batch counters for a trainable BN
        if k.endswith("num_batches_tracked") and k not in ours:
            ours[k] = torch.tensor(0, dtype=torch.int64)
    missing = [k for k in model_sd if k not in ours]
    unexpected = [k for k in ours if k not in model_sd]
    # the file's keys: the entry and the wrapper prefixes the reader dropped are the file's, not ours
    entry, held_prefix = where_keys(held, sd, EMA_KEYS if ema else STATE_DICT_ENTRIES)
    origin = {new: held_prefix + key for key, new in renamed_keys(sd).items() if new is not None}
    shapes = shape_mismatches(ours, model_sd, origin)  # (the file's key and ours, each shape said)
    report = {"layout": layout, "unmapped": unmapped, "missing": missing, "unexpected": unexpected,
              "shape_mismatch": shapes, "num_tensors": len(ours), "origin": origin, "entry": entry,
              "counters_dropped": counters}
    problems = conversion_problems(unmapped, missing, unexpected, shapes, source_name="torchvision",
                                   origin=origin)
    if problems:
        raise ConversionError(f"{source} ({layout} layout): " + "; ".join(problems))
    from maskrcnn.interop.float_dtypes import size_as_float32, to_model_dtypes

    report["as_float32"] = size_as_float32(ours)  # what a file of them costs: convert says it, --init not
    ours, dtype_said = to_model_dtypes(ours, model_sd)
    notes += [dtype_said] if dtype_said else []
    names, said = meta_class_names(held, cfg.model.num_classes, layout)
    notes += said
    return {"state_dict": ours, "config": cfg, "class_names": names, "layout": layout, "report": report,
            "notes": notes}


def torch_load_weights(path):
    """``torch.load(weights_only=True)`` of another project's file (no code runs), also when it holds
    the training's ``argparse.Namespace``: torchvision's detection reference scripts save their command
    line as "args" beside the weights (an attribute holder; unpickling it sets attributes, nothing else).
    A safetensors file (``safetensors_io``) is read by its own library: its tensors, or our checkpoint."""
    import argparse
    import pickle

    from maskrcnn.checkpoint_refusal import not_weights_message
    from maskrcnn.safe_load import load_weights_only
    from maskrcnn.safetensors_io import is_safetensors, read_safetensors

    if os.path.isdir(path):  # (worded as every reader of weights words it; torch's would be "Errno 21")
        raise ConversionError(f"{path}: is a folder, not a checkpoint file")
    if is_safetensors(path):  # its tensors, recognised by their names as a torch file's state dict
        return read_safetensors(path, error=ConversionError)
    refusal = not_weights_message(path)  # not torch's, or a .pt2 / TorchScript archive: told before torch
    if refusal is not None:  # (the callers word every refusal through checkpoint_refusal)
        raise pickle.UnpicklingError(refusal)
    return load_weights_only(path, extra=[argparse.Namespace])


def load_torchvision_file(path, **kwargs) -> dict:
    """``convert_torchvision`` on a file; loading never runs code (``weights_only=True``)."""
    import pickle
    import zipfile

    try:
        obj = torch_load_weights(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as e:
        from maskrcnn.checkpoint_refusal import unreadable_message

        raise ConversionError(unreadable_message(path, e)) from None  # torch's refusal spans a screen
    return convert_torchvision(obj, source=str(path), **kwargs)
