"""Configuration: nested dataclasses, named presets, YAML files and ``--set a.b=c`` overrides.

The configuration is read in one place only, the builders (``modeling.mask_rcnn.build_model``,
``engine.trainer.build_trainer``, ``data.loader.build_loader``); modules take plain keyword arguments.

Conventions fixed here (see also the top of ``modeling/box_head.py``):
- ``model.num_classes`` counts the background: label 0 is background, 1..num_classes-1 are objects
  (torchvision's convention; detectron2 checkpoints are converted at the border).
- Images enter the model as RGB floats in [0, 1]; ``pixel_mean`` / ``pixel_std`` are on that scale.

Overrides (``apply_overrides``, ``load_config(name, overrides)``) read numpy and torch numbers as their
values, by ``plain_value``, the rule ``train(set=...)`` writes them by. A name that is not a key, assigned
to a Config or section (``cfg.solver.learning_rate = 0.1``), is an AttributeError at once (``_Section``).

Checked when read (``validate_config``, after every override): types, and ranges that any run needs (sizes and
counts > 0, finite learning rate and factors, thresholds and fractions in [0, 1]); the error names the key;
whole numbers for int keys and the ``WHOLE_LISTS`` (``solver.steps``, ``input.min_size``); a config to train
with (not one stored in a checkpoint) also needs ``solver.iters`` in [1, ``MAX_ITERS``], ``solver.steps`` in
increasing order and ``seed`` in [-2**63, 2**64) (a stored config's fractional lists, which earlier versions
took, load). A number YAML 1.1 reads as text (``1e-5``: no dot) is read as the number, in a list of numbers
too; a quoted number or true/false (``"5"``, ``"true"``) as the value inside the quotes, in a YAML file and in
``--set`` alike. YAML is read with ``yaml.SafeLoader`` (no tag runs code; an unknown tag is
an error naming the file and line), syntax errors name the file and line, and aliases may add at most
``MAX_YAML_NODES`` nodes (a "billion laughs" file is refused at once, not after minutes). YAML 1.1 readings
that change a number (``010`` octal 8, ``1:2`` base-60 62; ``00``-``07`` read the same and load), in values
and keys (a key ``08`` YAML reads as text is refused too), and keys given twice (``1`` and ``'1'`` are two
keys: the resolved tag counts) are refused by the loader with the key and the line; a stored config's device
(mps, xpu, another machine's GPU) is not checked at load, only when used; errors about a file's keys and
values end with "(FILE line N)".
Which keys a YAML file wrote (``train --init`` keeps those over the weights' suggestions) come with its
Config from ``load_config_keys``, the file read once (``written_keys``).
Reading is PyYAML's pure-Python parser, ~0.4 MB/s (a 10 MB file of class names takes ~25 s, all of it
in the parser: the checks here are linear).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import numbers
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml

# --------------------------------------------------------------------------------------------
# Sections


class _Section:
    """Base of the config classes: assigning a name that is not one of the section's keys
    (``cfg.model.roi_heads.score_treshold = 0.9``, a typo) is an AttributeError naming the dotted key, with
    the close match an unknown YAML key gets; a plain class would keep it as a new attribute that no
    builder reads, and the setting would vanish without a word."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.__dataclass_fields__:  # the class's own keys: set by __init__, replace, users
            dotted = _section_prefix(type(self)) + name
            near = nearest_key(dotted, Config())
            hint = f"; did you mean {near!r}?" if near else ""
            raise AttributeError(f"unknown config key {dotted!r}{hint}")
        object.__setattr__(self, name, value)


def _section_prefix(cls: type) -> str:
    """The dotted prefix of a section class in a Config ("model.roi_heads."); each class is used once."""
    prefixes = {Config: ""}
    todo = [(Config(), "")]
    while todo:
        node, prefix = todo.pop()
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if dataclasses.is_dataclass(value):
                prefixes[type(value)] = f"{prefix}{f.name}."
                todo.append((value, f"{prefix}{f.name}."))
    return prefixes.get(cls, "")


@dataclass
class RPNConfig(_Section):
    head_convs: int = 1  # 1 (v1 / detectron2) or 2 (torchvision v2)
    anchor_sizes: tuple = (32, 64, 128, 256, 512)  # one size per level P2..P6
    aspect_ratios: tuple = (0.5, 1.0, 2.0)
    anchor_rounding: bool = True  # torchvision rounds base anchors to integers, detectron2 does not
    pre_nms_topk_train: int = 2000  # per level
    pre_nms_topk_test: int = 1000
    post_nms_topk_train: int = 2000  # per image
    post_nms_topk_test: int = 1000
    nms_thresh: float = 0.7
    min_box_size: float = 1e-3
    score_thresh: float = 0.0
    fg_iou_thresh: float = 0.7
    bg_iou_thresh: float = 0.3
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5
    box_loss: str = "smooth_l1"  # smooth_l1 | l1
    smooth_l1_beta: float = 1.0 / 9.0
    loss_weight: float = 1.0


@dataclass
class ROIHeadsConfig(_Section):
    box_head: str = "2fc"  # 2fc (v1) | 4conv1fc (v2)
    box_head_dim: int = 1024
    box_head_norm: str = "none"  # none | bn
    pooler: str = "roialign"  # roialign | roipool (the paper's ablation)
    pooler_sampling_ratio: int = 2
    # False: torchvision; True: detectron2's half-pixel convention (RoIAlign features and mask targets)
    pooler_aligned: bool = False
    box_pool_size: int = 7
    mask_pool_size: int = 14
    canonical_level: int = 4  # FPN level assignment k0
    canonical_box_size: int = 224  # FPN level assignment s0
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.5
    box_reg_weights: tuple = (10.0, 10.0, 5.0, 5.0)
    box_loss: str = "smooth_l1"  # smooth_l1 | l1
    smooth_l1_beta: float = 1.0 / 9.0
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_image: int = 100
    mask_on: bool = True
    mask_head_convs: int = 4
    mask_head_dim: int = 256
    mask_head_norm: str = "none"  # none | bn
    mask_loss: str = "sigmoid"  # sigmoid (per-class binary, the paper's) | softmax (ablation)
    # True: one mask for every class (the predictor has 1 channel), the paper's class-agnostic ablation
    mask_class_agnostic: bool = False
    mask_threshold: float = 0.5
    mask_paste: str = "torchvision"  # torchvision | grid_sample (detectron2's, more accurate)
    keypoint_on: bool = False
    num_keypoints: int = 17
    keypoint_head_convs: int = 8
    keypoint_head_dim: int = 512
    keypoint_pool_size: int = 14
    # a keypoint's score: logit (torchvision: the heatmap's peak value) | softmax (detectron2: the peak's
    # share of the heatmap's spatial softmax, in (0, 1])
    keypoint_score: str = "logit"


@dataclass
class ModelConfig(_Section):
    backbone: str = "resnet50"  # resnet18/34/50/101/152, resnext50_32x4d, resnext101_32x4d / _32x8d
    fpn: bool = True  # False: the paper's C4 design (res5 as the RoI head)
    # Without an FPN, where RoIs are pooled from: "c4" (the paper's C4: the body stops at res4, stride 16,
    # and res5 is the RoI head), "res4" (res4, stride 16, into the light FPN-style heads: 2fc box head,
    # FCN mask head) or "res5" (the whole ResNet, stride 32, into those heads: the paper's "ResNet-50-C5,
    # stride 32" of Table 2d, where RoIPool's quantisation hurts most)
    roi_features: str = "c4"
    fpn_dim: int = 256
    fpn_norm: str = "none"  # none | bn (torchvision v2)
    num_classes: int = 91  # includes the background (label 0)
    norm: str = "frozen_bn"  # frozen_bn | bn
    frozen_bn_eps: float = 1e-5  # 0.0 for torchvision's v1 COCO weights
    freeze_at: int = 2  # 0: nothing frozen; 1: stem; 2: stem + res2; ... 5: whole ResNet
    stride_in_1x1: bool = False  # True for detectron2's MSRA ResNets (stride on the first 1x1 conv)
    pixel_mean: tuple = (0.485, 0.456, 0.406)  # RGB, on images in [0, 1]
    pixel_std: tuple = (0.229, 0.224, 0.225)
    size_divisibility: int = 32
    # Start training from these weights (``maskrcnn train --init``): a checkpoint of ours, a torchvision or
    # detectron2 detector, or an ImageNet backbone; a file, a URL or a published name. "" = the builder's
    # random initialisation. See engine/init_weights.py.
    init_weights: str = ""
    # our class name -> the weights' class name, for class-specific rows whose names differ
    # (e.g. {pedestrian: person}); "" as the value starts that class fresh. Names not listed match
    # case-insensitively by name.
    init_class_map: dict = field(default_factory=dict)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: ROIHeadsConfig = field(default_factory=ROIHeadsConfig)


@dataclass
class InputConfig(_Section):
    min_size: Union[int, tuple] = 800  # training: one size or a tuple to sample from per image
    max_size: int = 1333
    min_size_test: int = 800
    max_size_test: int = 1333
    flip_prob: float = 0.5
    resize_method: str = "torchvision"  # torchvision (bilinear on the float image) | pil
    # Augmentations for small datasets (defaults: off). After the short-side resize, the image is scaled
    # again by a factor drawn uniformly from scale_range ((0.1, 2.0): large-scale jitter), then a random
    # window of at most crop_size x crop_size is cut out (0: no crop); instances cut by the window are
    # clipped, those left with no area dropped.
    scale_range: tuple = (1.0, 1.0)
    crop_size: int = 0
    # brightness, contrast, saturation, hue: each factor drawn from [1 - v, 1 + v] (hue: a shift in
    # [-v, v] of a full turn, v <= 0.5), as torchvision's ColorJitter; zeros: off
    color_jitter: tuple = (0.0, 0.0, 0.0, 0.0)


@dataclass
class SolverConfig(_Section):
    lr: float = 0.02  # for batch_size 16; the linear scaling rule: lr = 0.02 * batch_size / 16
    momentum: float = 0.9
    weight_decay: float = 1e-4
    weight_decay_norm: float = 0.0  # weight decay on norm layers
    weight_decay_bias: Optional[float] = None  # None: same as weight_decay
    iters: int = 90000
    batch_size: int = 16  # images per iteration (optimizer step), over all processes
    # Gradient accumulation: each iteration sums the gradients of `accumulate` micro-batches of
    # batch_size / accumulate images (batch_size must divide evenly; per process under DDP), so that
    # batch 16 at lr 0.02 runs in the memory of a smaller batch; iterations, periods, warm-up and steps
    # still count optimizer steps (engine/trainer.py says what equals the full batch exactly).
    accumulate: int = 1
    warmup_iters: int = 1000
    warmup_factor: float = 0.001
    # lr schedule after the warm-up (engine/schedule.py): step = x gamma at each of `steps`; cosine =
    # lr * 0.5 * (1 + cos(pi * it / iters)) down to lr_min_factor * lr at `iters` (steps, gamma unused)
    lr_schedule: str = "step"
    steps: tuple = (60000, 80000)
    gamma: float = 0.1
    lr_min_factor: float = 0.0
    clip_grad_norm: float = 0.0  # 0: no clipping
    checkpoint_period: int = 5000
    eval_period: int = 0  # 0: evaluate only at the end
    amp: bool = False  # float16 autocast on CUDA, bfloat16 on CPU
    log_period: int = 20
    # Divergence guard (engine/divergence.py): a total loss above divergence_factor x its
    # median over the last divergence_window iterations, for divergence_patience iterations in a row,
    # stops the run (a too-high lr makes it explode to 1e4..1e8 yet stay finite); 0 turns it off.
    divergence_factor: float = 20.0
    divergence_window: int = 20
    divergence_patience: int = 5
    # The best checkpoint and early stopping (engine/best_model.py), with periodic evaluation: the metric
    # model_best.pth is kept by, as iou_type/metric (segm/AP, bbox/AP50, keypoints/AP; auto: segm/AP with
    # masks, else bbox/AP; none: off); stop after early_stop_patience evaluations in a row without a gain
    # of at least early_stop_min_delta (AP points) in it (0: never).
    best_metric: str = "auto"
    early_stop_patience: int = 0
    early_stop_min_delta: float = 0.0


@dataclass
class DataConfig(_Section):
    num_workers: int = 2
    aspect_ratio_grouping: bool = True
    # leave out training images without annotations or with crowd regions only (one line says how many);
    # false trains on them as background images
    filter_empty: bool = True
    class_names: tuple = ()  # filled from the dataset or the checkpoint
    keypoint_names: tuple = ()  # filled from the dataset's person category (keypoint models)
    # the category's COCO skeleton (1-based keypoint index pairs), filled from the dataset; for drawing
    keypoint_skeleton: tuple = ()
    # the classes whose category defines the keypoint set (class names), filled from the dataset; the
    # others' detections carry no keypoints at inference (data/keypoint_classes.py); () = every class
    keypoint_classes: tuple = ()
    # OKS sigmas of keypoint AP, one per keypoint; () = COCO's sigma for each COCO keypoint name, 0.0669
    # (the mean of COCO's) for other names (data/keypoints.py)
    keypoint_sigmas: tuple = ()
    # the horizontal flip's left/right keypoint pairs, [[a, b], ...] of 0-based indices or of names; () =
    # from the names (left_* <-> right_*, LEye <-> REye, ...; data/keypoints.py). Wins when given.
    keypoint_flip_map: tuple = ()
    # keypoint training skips images with fewer labelled keypoints than this (detectron2's default: 1)
    min_keypoints_per_image: int = 1
    # crowd annotations (iscrowd 1) read as ordinary objects, in training and in its evaluation: CVAT's COCO
    # 1.0 export writes masks drawn with its mask / brush tool so (data/crowd.py); false: COCO's meaning,
    # regions the losses leave out and the evaluation ignores
    crowd_as_objects: bool = False
    # photos turned 180 degrees or mirrored (EXIF orientation 2, 3, 4; their size does not tell): auto =
    # as the same COCO file's quarter-turned photos show its tool did (their record gives the stored size:
    # read unturned; else turned, with a note), turned (as browsers show them) or stored (LabelImg)
    exif_frame: str = "auto"
    # what training's own file showed ("stored" | "turned"; "" when its quarter-turned photos told
    # nothing), recorded by training: a file evaluated later whose own photos do not tell reads them so
    exif_frame_seen: str = ""
    # repeat-factor sampling for rare classes (LVIS; data/repeat_factors.py): 0 = off (each image once
    # per epoch); LVIS uses 0.001, small custom sets 0.1-0.3
    repeat_threshold: float = 0.0


@dataclass
class Config(_Section):
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps | xpu (:N too)

    def to_dict(self) -> dict:
        """Plain data (lists, numbers as Python's: ``plain_config``) for YAML, JSON and checkpoints."""
        return to_plain(dataclasses.asdict(plain_config(self)))

    def copy(self) -> Config:
        return copy.deepcopy(self)


# --------------------------------------------------------------------------------------------
# Presets


def _r50_fpn() -> Config:
    return Config()


def _with(cfg: Config, **overrides: Any) -> Config:
    return apply_overrides(cfg, overrides)


PRESETS = {
    "r18_fpn": lambda: _with(Config(), **{"model.backbone": "resnet18"}),
    "r34_fpn": lambda: _with(Config(), **{"model.backbone": "resnet34"}),
    "r50_fpn": _r50_fpn,
    "r101_fpn": lambda: _with(Config(), **{"model.backbone": "resnet101"}),
    "x101_fpn": lambda: _with(Config(), **{"model.backbone": "resnext101_32x8d"}),
    "r50_c4": lambda: _with(
        Config(),
        **{
            "model.fpn": False,
            "model.rpn.anchor_sizes": (32, 64, 128, 256, 512),
            "model.roi_heads.box_pool_size": 14,
            "model.roi_heads.mask_pool_size": 14,
            "model.rpn.pre_nms_topk_test": 6000,
            "model.rpn.post_nms_topk_test": 1000,
            "model.rpn.pre_nms_topk_train": 12000,
        },
    ),
    # torchvision's maskrcnn_resnet50_fpn_v2 layout: BN in FPN and heads, 4conv1fc, 2-conv RPN head.
    "r50_fpn_v2": lambda: _with(
        Config(),
        **{
            "model.norm": "bn",
            "model.fpn_norm": "bn",
            "model.rpn.head_convs": 2,
            "model.roi_heads.box_head": "4conv1fc",
            "model.roi_heads.box_head_norm": "bn",
            "model.roi_heads.mask_head_norm": "bn",
        },
    ),
    "keypoint_r50_fpn": lambda: _with(
        Config(),
        **{
            "model.num_classes": 2,
            "model.roi_heads.mask_on": False,
            "model.roi_heads.keypoint_on": True,
        },
    ),
    # Fine-tuning a COCO-trained model on a few hundred images of your own classes (README: "Fine-tune on
    # your data"). The architecture follows the weights (--init replaces the default); stem and res2 stay
    # frozen with frozen batch norm (torchvision's trainable_backbone_layers=3), the LR follows the linear
    # scaling rule for 4 images (0.02 * 4 / 16), ~2000 iterations are ~25 epochs of 300 images.
    "finetune": lambda: _with(
        Config(),
        **{
            "model.init_weights": "maskrcnn_resnet50_fpn_coco",
            "model.roi_heads.batch_size_per_image": 256,
            "input.min_size": (640, 672, 704, 736, 768, 800),
            "solver.batch_size": 4,
            "solver.lr": 0.005,
            "solver.iters": 2000,
            "solver.warmup_iters": 100,
            "solver.steps": (1500, 1850),
            "solver.checkpoint_period": 500,
            "solver.eval_period": 500,
        },
    ),
    # Cityscapes fine annotations (convert-data --from cityscapes: its 8 instance classes), the paper's
    # recipe: the shorter side sampled from [800, 1024] in steps of 32 for training, 1024 at test, 24k
    # iterations of 8 images at LR 0.01 dropped to 0.001 at 18k, starting from COCO weights (the paper's
    # better row: 36.4 AP on val against 31.5 from ImageNet; the rows of COCO classes with the same names,
    # person, car, truck, bus, train, motorcycle, bicycle, are kept, rider starts fresh).
    "cityscapes_r50_fpn": lambda: _with(
        Config(),
        **{
            "model.num_classes": 9,
            "model.init_weights": "maskrcnn_resnet50_fpn_coco",
            "input.min_size": tuple(range(800, 1025, 32)),
            "input.max_size": 2048,
            "input.min_size_test": 1024,
            "input.max_size_test": 2048,
            "solver.batch_size": 8,
            "solver.lr": 0.01,
            "solver.iters": 24000,
            "solver.steps": (18000,),
            "solver.checkpoint_period": 2000,
            "solver.eval_period": 6000,
        },
    ),
    # Small enough to train on a laptop CPU in minutes (the demo).
    "demo": lambda: _with(
        Config(),
        **{
            "model.backbone": "resnet18",
            "model.norm": "bn",
            "model.freeze_at": 0,
            "model.fpn_dim": 64,
            "model.rpn.anchor_sizes": (16, 32, 64, 128, 256),
            "model.rpn.pre_nms_topk_train": 600,
            "model.rpn.post_nms_topk_train": 300,
            "model.rpn.pre_nms_topk_test": 300,
            "model.rpn.post_nms_topk_test": 150,
            "model.roi_heads.box_head_dim": 256,
            "model.roi_heads.mask_head_dim": 32,
            # trained from scratch: the aligned conventions (detectron2's), whose masks paste back
            # without torchvision's half-pixel shifts (better at high IoU, i.e. on small objects)
            "model.roi_heads.pooler_aligned": True,
            "model.roi_heads.mask_paste": "grid_sample",
            "model.roi_heads.batch_size_per_image": 64,
            "model.roi_heads.positive_fraction": 0.5,
            "input.min_size": (112, 128, 144),
            "input.max_size": 192,
            "input.min_size_test": 128,
            "input.max_size_test": 192,
            "solver.lr": 0.01,
            "solver.batch_size": 4,
            "solver.iters": 900,
            "solver.warmup_iters": 100,
            "solver.steps": (700, 850),
            "solver.clip_grad_norm": 10.0,
            "solver.checkpoint_period": 300,
            "data.num_workers": 0,
        },
    ),
}
# The keypoint demo (``maskrcnn demo --task keypoints``): the demo model with a keypoint head instead of
# the mask head, on the synthetic pose set (data/poses.py). The head is narrower than the paper's
# (8 x 512) to fit the CPU budget; the heatmaps stay 56 x 56.
PRESETS["demo_keypoints"] = lambda: _with(
    PRESETS["demo"](),
    **{
        "model.num_classes": 2,
        "model.roi_heads.mask_on": False,
        "model.roi_heads.keypoint_on": True,
        "model.roi_heads.keypoint_head_convs": 4,
        "model.roi_heads.keypoint_head_dim": 64,
    },
)


# --------------------------------------------------------------------------------------------
# Loading, overriding, saving


# --------------------------------------------------------------------------------------------
# YAML, bounded

MAX_YAML_NODES = 100_000  # nodes that aliases add (a document without aliases is never refused for size)
MAX_YAML_DEPTH = 64  # a config nests 4 deep; PyYAML's composer recurses once per level

# YAML 1.1 (PyYAML's) number forms that read as another number than the one written: a leading zero is
# octal (010 -> 8), colons are base 60 (1:20 -> 80, 1:2 -> 62); refused, never read silently
_OCTAL = re.compile(r"^[-+]?0[0-7_]+$")
_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$")
_BOOL_WORDS = {"yes", "no", "on", "off", "y", "n", "true", "false"}


def _number_trap(node, path: str = "") -> str:
    """Why the plain number scalar ``node`` is refused (YAML 1.1 reads it as another number than the one
    written), or ''. The regexes are tried first: a value is constructed only for a refused scalar."""
    text = node.value
    if _OCTAL.match(text):
        digits = text.replace("_", "")
        if int(digits, 8) == int(digits, 10):  # 00 .. 07: the same number either way
            return ""
        shown = digits.lstrip("+-").lstrip("0") or "0"
        return f"{text} reads as octal {int(digits, 8)} in YAML 1.1: write {shown}, or quote it"
    if _BASE60.match(text):
        value = yaml.SafeLoader.yaml_constructors[node.tag](yaml.SafeLoader(""), node)
        if "ratio" in path and text.count(":") == 1 and "." not in text:
            a, b = (int(x.replace("_", "")) for x in text.lstrip("+-").split(":"))
            ratio = f"{a / b:g}" if b else "a number"
            return f"{text} reads as base-60 {value} in YAML 1.1: write {ratio} (or quote it)"
        return f"{text} reads as base-60 {value} in YAML 1.1: write the number (or quote it)"
    return ""


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
# a plain key with a leading zero that YAML 1.1 reads as text (08, 09: not octal), next to keys read as
# numbers (00 .. 07): one mapping with int and str keys
_ZERO_TEXT = re.compile(r"^[-+]?0[0-9_]+$")


_MAX_NUMBER_CHARS = 1000


def _scalar_problem(node, path: str, key: bool) -> str:
    """Why the scalar ``node`` (a mapping key when ``key``) is refused, or ''."""
    if node.style is not None:  # quoted or block text: read as written
        return ""
    if node.tag in _NUMBER_TAGS and len(node.value) > _MAX_NUMBER_CHARS:
        # Python refuses to read an int of more than 4300 digits, with advice meant for programmers
        return (f"a number of {len(node.value)} characters (more than {_MAX_NUMBER_CHARS}); no config value "
                "is that long")
    if node.tag in _NUMBER_TAGS:
        return _number_trap(node, path)
    if key and node.tag == "tag:yaml.org,2002:str" and _ZERO_TEXT.match(node.value):
        digits = node.value.replace("_", "").lstrip("+-").lstrip("0") or "0"
        return f"key {node.value} reads as the text {node.value!r} in YAML 1.1: write {digits}, or quote it"
    return ""


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents nested deeper than ``MAX_YAML_DEPTH``, whose aliases
    add more than ``MAX_YAML_NODES`` nodes, with a key given twice in one mapping, or with YAML 1.1's
    octal / base-60 numbers; it keeps the line of every key (``key_lines``: dotted key -> 1-based line)."""

    _depth = 0

    def compose_node(self, parent, index):
        if self._depth >= MAX_YAML_DEPTH:
            mark = self.peek_event().start_mark
            problem = f"nested more than {MAX_YAML_DEPTH} levels deep"
            raise yaml.MarkedYAMLError(problem=problem, problem_mark=mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):
        node = super().get_single_node()
        self.key_lines = {}
        if node is not None:
            memo: dict = {}
            size = _expanded_size(node, memo)
            if size - len(memo) > MAX_YAML_NODES:  # what the aliases add to the nodes written
                raise yaml.MarkedYAMLError(
                    problem=f"aliases expand to {size:.3g} nodes (at most {MAX_YAML_NODES} more than "
                            "the file holds allowed)",
                    problem_mark=node.start_mark,
                )
            _check_nodes(node, "", self.key_lines, set())
        return node


def _check_nodes(node, path: str, lines: dict, seen: set) -> None:
    """Duplicate keys and misread numbers under ``node`` (``path``: its dotted key), each node once."""
    if id(node) in seen:
        return
    seen.add(id(node))
    where = f" (key {path!r})" if path else ""
    if isinstance(node, yaml.ScalarNode):
        problem = _scalar_problem(node, path, key=False)
        if problem:
            raise yaml.MarkedYAMLError(problem=problem + where, problem_mark=node.start_mark)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_nodes(item, path, lines, seen)
    elif isinstance(node, yaml.MappingNode):
        first: dict = {}  # (resolved tag, text) -> line: 1 and '1' are two keys
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                name = k.value
                problem = _scalar_problem(k, path, key=True)
                if problem:
                    raise yaml.MarkedYAMLError(problem=problem + where, problem_mark=k.start_mark)
                ident = (k.tag, name)
                if ident in first and name != "<<":
                    raise yaml.MarkedYAMLError(
                        problem=f"duplicate key {name!r} at line {k.start_mark.line + 1} (first at line "
                                f"{first[ident] + 1}){where}",
                        problem_mark=k.start_mark)
                first[ident] = k.start_mark.line
                dotted = f"{path}.{name}" if path else name
                lines.setdefault(dotted, k.start_mark.line + 1)
                _check_nodes(v, dotted, lines, seen)
            else:
                _check_nodes(v, path, lines, seen)


def _expanded_size(node, memo: dict) -> int:
    """Nodes in the document once every alias is replaced by its target (memoised: linear in the file;
    ``memo`` ends with one entry per distinct node)."""
    key = id(node)
    if key not in memo:
        memo[key] = 1  # a node reached again while being sized is a cycle; count it once
        if isinstance(node, yaml.SequenceNode):
            memo[key] = 1 + sum(_expanded_size(v, memo) for v in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[key] = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    return memo[key]


def _yaml_error_text(e: Exception) -> str:
    """'line L, column C: problem' from a yaml error (the caller prefixes the file)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{context + ': ' if context else ''}{problem}"


def load_yaml(text_or_stream, source: str) -> Any:
    """Parse YAML safely and boundedly; ValueError naming ``source`` and the line on any problem."""
    return load_yaml_lines(text_or_stream, source)[0]


def load_yaml_lines(text_or_stream, source: str) -> tuple:
    """``(data, key_lines)``: ``load_yaml``'s data and the 1-based line of each dotted key in it."""
    loader = None
    try:
        loader = _BoundedLoader(text_or_stream)  # reads the first bytes: may refuse them
        data = loader.get_single_data()
        return data, getattr(loader, "key_lines", {})
    except yaml.YAMLError as e:
        raise ValueError(f"{source}: invalid YAML at {_yaml_error_text(e)}") from None
    except RecursionError:
        raise ValueError(f"{source}: invalid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


# --------------------------------------------------------------------------------------------
# Ranges

def _finite(v) -> bool:
    """An int is finite however long (math.isfinite raises OverflowError past a float's range: a
    400-digit solver.iters in a YAML file was a traceback, not the key's range)."""
    return isinstance(v, int) or math.isfinite(v)


def _positive(v) -> bool:
    return v > 0 and _finite(v)


def _non_negative(v) -> bool:
    return v >= 0 and _finite(v)


def _unit(v) -> bool:
    return 0.0 <= v <= 1.0


def _up_to(limit, *, zero: bool = False) -> tuple:
    """(rule, how it reads) of ``0 < v <= limit`` (``0 <= v`` with ``zero``): the sizes the model is built
    with. A stored config (a checkpoint's, a run's YAML) is read before any weight: a value far past every
    real model would reach the allocator (fpn_dim 10**12 asks for terabytes) before a weight's shape could
    disagree with it."""
    if zero:
        return (lambda v: 0 <= v <= limit), f"in [0, {limit}]"
    return (lambda v: 0 < v <= limit), f"in (0, {limit}]"


def _at_most(limit, *, zero: bool = False, why: str = "") -> tuple:
    """``_up_to`` in the words of the lower bound first (``> 0 and at most 100,000``; ``why`` after it):
    the counts whose lower bound users meet (``solver.batch_size must be > 0``)."""
    low = ">= 0" if zero else "> 0"
    return (lambda v: (0 <= v if zero else 0 < v) and v <= limit), f"{low}{why} and at most {limit:,}"


# generous upper bounds of what the model is built with: many times any published model's values
_MAX_CHANNELS = 8192  # fpn_dim and the heads' widths (published models: 256 to 1024)
_MAX_CLASSES = 100_000  # num_classes (LVIS: 1203)
_MAX_KEYPOINTS = 1024  # num_keypoints (COCO: 17, whole-body sets: 133)
_MAX_POOL = 64  # RoI pool sizes (7, 14)
_MAX_SIDE = 100_000  # image sides and anchor sizes, in pixels
_MAX_ANCHORS = 64  # anchor sizes per level and aspect ratios: the RPN head has one output per pair
_MAX_COUNT = 10_000_000  # proposal and detection counts
_MAX_LAYERS = 64  # convolutions of a head (published models: 0 to 8)
_MAX_BATCH = 100_000  # images per iteration (published recipes: 16 to 256)
_MAX_WORKERS = 1024  # DataLoader processes: one per core of the largest machines, several times over
# solver.iters of a config to train with: 1e9 is ~30 years at 1 iteration a second (COCO's 1x: 90000);
# the bound of the other iteration counts (warm-up, periods) too
MAX_ITERS = 10**9
# every whole number of every key, whatever its own range: 64 bits, what torch, numpy and the C code under
# them hold (a seed takes all of them). A 400-digit warmup_iters or num_workers was taken when read and
# failed later in torch or the loader; a 400-digit pixel_mean passed as "finite" (``_huge_problems``)
_MAX_WHOLE = 2**64


# what a config to train with asks of solver.iters (_training_problems); a negative value says it too, not
# the ">= 0" of a stored config, which a user who then sets 0 would be refused again for
_ITERS_TO_TRAIN = ">= 1 (0 would train nothing and write the initial weights as model_final.pth)"

# key -> (test of each value, what the test asks for); a tuple-valued key is tested value by value
_RANGES = {
    "input.min_size": _up_to(_MAX_SIDE),
    "input.max_size": _up_to(_MAX_SIDE),
    "input.min_size_test": _up_to(_MAX_SIDE),
    "input.max_size_test": _up_to(_MAX_SIDE),
    "input.flip_prob": (_unit, "in [0, 1]"),
    "input.scale_range": (_positive, "> 0"),
    "input.crop_size": _up_to(_MAX_SIDE, zero=True),
    "input.color_jitter": (_non_negative, ">= 0"),
    # 2 at least: the background (label 0) and one object class; 1 built a model with no class to find
    "model.num_classes": ((lambda v: 2 <= v <= _MAX_CLASSES), f"in [2, {_MAX_CLASSES}]"),
    "model.fpn_dim": _up_to(_MAX_CHANNELS),
    "model.size_divisibility": _at_most(_MAX_SIDE, zero=True,
                                        why=" (0: no padding multiple, as detectron2's C4)"),
    "model.pixel_std": (_positive, "> 0"),
    "model.pixel_mean": (_finite, "finite"),
    "model.frozen_bn_eps": (_non_negative, ">= 0"),
    "model.rpn.anchor_sizes": _up_to(_MAX_SIDE),
    "model.rpn.aspect_ratios": _up_to(1000),
    "model.rpn.pre_nms_topk_train": _up_to(_MAX_COUNT),
    "model.rpn.pre_nms_topk_test": _up_to(_MAX_COUNT),
    "model.rpn.post_nms_topk_train": _up_to(_MAX_COUNT),
    "model.rpn.post_nms_topk_test": _up_to(_MAX_COUNT),
    "model.rpn.nms_thresh": (_unit, "in [0, 1]"),
    "model.rpn.min_box_size": (_non_negative, ">= 0"),
    "model.rpn.score_thresh": (_unit, "in [0, 1]"),
    "model.rpn.fg_iou_thresh": (_unit, "in [0, 1]"),
    "model.rpn.bg_iou_thresh": (_unit, "in [0, 1]"),
    "model.rpn.batch_size_per_image": _up_to(_MAX_COUNT),
    "model.rpn.positive_fraction": (_unit, "in [0, 1]"),
    "model.rpn.smooth_l1_beta": (_non_negative, ">= 0"),
    "model.rpn.loss_weight": (_non_negative, ">= 0"),
    "model.roi_heads.box_head_dim": _up_to(_MAX_CHANNELS),
    "model.roi_heads.pooler_sampling_ratio": _up_to(_MAX_POOL, zero=True),
    "model.roi_heads.box_pool_size": _up_to(_MAX_POOL),
    "model.roi_heads.mask_pool_size": _up_to(_MAX_POOL),
    "model.roi_heads.keypoint_pool_size": _up_to(_MAX_POOL),
    "model.roi_heads.canonical_box_size": _at_most(_MAX_SIDE),
    "model.roi_heads.batch_size_per_image": _up_to(_MAX_COUNT),
    "model.roi_heads.positive_fraction": (_unit, "in [0, 1]"),
    "model.roi_heads.fg_iou_thresh": (_unit, "in [0, 1]"),
    "model.roi_heads.bg_iou_thresh": (_unit, "in [0, 1]"),
    "model.roi_heads.box_reg_weights": (_positive, "> 0"),
    "model.roi_heads.smooth_l1_beta": (_non_negative, ">= 0"),
    "model.roi_heads.score_thresh": (_unit, "in [0, 1]"),
    "model.roi_heads.nms_thresh": (_unit, "in [0, 1]"),
    "model.roi_heads.detections_per_image": _up_to(_MAX_COUNT),
    "model.roi_heads.mask_head_dim": _up_to(_MAX_CHANNELS),
    "model.roi_heads.mask_threshold": (_unit, "in [0, 1]"),
    "model.roi_heads.num_keypoints": _up_to(_MAX_KEYPOINTS),
    "model.roi_heads.keypoint_head_dim": _up_to(_MAX_CHANNELS),
    "model.rpn.head_convs": _up_to(_MAX_LAYERS, zero=True),
    "model.roi_heads.mask_head_convs": _up_to(_MAX_LAYERS, zero=True),
    "model.roi_heads.keypoint_head_convs": _up_to(_MAX_LAYERS, zero=True),
    "solver.lr": (_non_negative, "a finite number >= 0"),
    "solver.momentum": (_unit, "in [0, 1]"),
    "solver.weight_decay": (_non_negative, "a finite number >= 0"),
    "solver.weight_decay_norm": (_non_negative, "a finite number >= 0"),
    "solver.weight_decay_bias": (_non_negative, "a finite number >= 0 (or null)"),
    # >= 0 here, for the configs stored in checkpoints and run folders (runs of 0 iterations were allowed);
    # a config to train with must ask for 1 or more (load_config, _training_problems)
    "solver.iters": (_non_negative, ">= 0"),  # config_problems says _ITERS_TO_TRAIN unless stored
    "solver.batch_size": _at_most(_MAX_BATCH),
    "solver.accumulate": (_positive, "a whole number >= 1"),
    "solver.warmup_iters": _at_most(MAX_ITERS, zero=True),
    "solver.warmup_factor": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "solver.steps": (_non_negative, ">= 0"),
    "solver.gamma": (_positive, "a finite number > 0"),
    "solver.lr_min_factor": (_unit, "in [0, 1]"),
    "solver.clip_grad_norm": (_non_negative, "a finite number >= 0"),
    "solver.checkpoint_period": (_non_negative, ">= 0"),
    "solver.eval_period": (_non_negative, ">= 0"),
    "solver.log_period": (_positive, "> 0"),
    # below 1 would stop a run whose loss merely stays where it is
    "solver.divergence_factor": (lambda v: v == 0 or _positive(v - 1), "0 (off) or a finite number > 1"),
    "solver.divergence_window": (_positive, "> 0"),
    "solver.divergence_patience": (_positive, "> 0"),
    "solver.early_stop_patience": (_non_negative, ">= 0 (0: off)"),
    "solver.early_stop_min_delta": (_non_negative, "a finite number >= 0"),
    "data.num_workers": _at_most(_MAX_WORKERS, zero=True),
    "data.min_keypoints_per_image": _at_most(_MAX_KEYPOINTS, zero=True),
    "data.repeat_threshold": (_unit, "in [0, 1] (0: off)"),
}


# key -> the names it accepts (checked at load, not when the model or the data is built). Each tuple is the
# one of the module that reads the key (modeling/backbone.py's ARCHS, modeling/layers.py's NORMS, ...),
# spelled out here so that reading a config needs no torch; a test keeps them equal.
_NORMS = ("none", "frozen_bn", "bn", "gn")
_CHOICES = {
    "model.backbone": ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                       "resnext101_32x4d", "resnext101_32x8d"),
    "model.roi_features": ("c4", "res4", "res5"),
    "model.fpn_norm": _NORMS,
    "model.norm": _NORMS,
    "model.rpn.box_loss": ("smooth_l1", "l1"),
    "model.roi_heads.box_head": ("2fc", "4conv1fc"),
    "model.roi_heads.box_head_norm": _NORMS,
    "model.roi_heads.pooler": ("roialign", "roipool"),
    "model.roi_heads.box_loss": ("smooth_l1", "l1"),
    "model.roi_heads.mask_head_norm": _NORMS,
    "model.roi_heads.mask_loss": ("sigmoid", "softmax"),
    "model.roi_heads.mask_paste": ("torchvision", "grid_sample"),
    "model.roi_heads.keypoint_score": ("logit", "softmax"),
    "input.resize_method": ("torchvision", "pil"),
    "data.exif_frame": ("auto", "turned", "stored"),  # data/coco.py's EXIF_FRAMES
    "data.exif_frame_seen": ("", "turned", "stored"),
}
_DEVICE = re.compile(r"^(auto|cpu|(cuda|mps|xpu)(:[0-9]+)?)$")
# tuple keys of a fixed length: the model reshapes them to (3, 1, 1)
_LENGTHS = {"model.pixel_mean": 3, "model.pixel_std": 3}


def _choice_problems(cfg: Config, stored: bool = False) -> list:
    """``stored``: a checkpoint's or a run's config; its device is the one it was trained on, not one this
    machine must have (resolve_device refuses a bad one when it is used)."""
    problems = []
    for key, allowed in _CHOICES.items():
        value = get_key(cfg, key)
        if value not in allowed:
            problems.append(f"{key} must be one of {'|'.join(allowed)}, got {value!r}")
    if not stored and not (isinstance(cfg.device, str) and _DEVICE.match(cfg.device)):
        problems.append(f"device must be auto, cpu, cuda or cuda:N, got {cfg.device!r} (mps, xpu, mps:N "
                        f"and xpu:N too)")
    for key, n in _LENGTHS.items():
        value = get_key(cfg, key)
        if len(value) != n:
            problems.append(f"{key} must be {n} values (R, G, B), got {to_plain(value)!r}")
    if isinstance(cfg.input.min_size, tuple) and not cfg.input.min_size:
        problems.append("input.min_size must be a size or a non-empty list of sizes, got []")
    names = cfg.data.class_names
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        # identity, not ==: 1.0 == True, and a float name is not YAML's reading of yes
        word = next((w for v, w in ((True, "yes"), (False, "no"), (None, "null")) if bad[0] is v), bad[0])
        problems.append(f"data.class_names must be strings, got {bad[0]!r} (YAML 1.1 reads no, yes, on, off "
                        f"and null as other values): quote it: '{word}'")
    return problems


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _is_whole(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def plain_value(value: Any, key: str, label: str = "{}") -> Any:
    """``value`` as YAML and JSON write it: numpy and torch scalars, arrays and tensors as their numbers
    (a numpy float by its shortest repr: ``np.float32(0.1)`` is 0.1, not 0.10000000149011612), a path
    (``os.PathLike``) as its string, inside lists and mappings too; anything else that is not plain data
    is a TypeError naming the (dotted) ``key``, in ``label``'s ``{}``, and the type."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, os.PathLike):  # a path is a string to the config (data.root, a weights file)
        return os.fspath(value)
    # a tensor or an array exists only where torch or numpy was imported (reading a config imports neither)
    torch, np = sys.modules.get("torch"), sys.modules.get("numpy")
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        return plain_value((t.float() if t.dtype == torch.bfloat16 else t).numpy(), key, label)
    if np is None:
        pass
    elif isinstance(value, np.ndarray):
        if value.ndim == 0:
            return plain_value(value[()], key, label)
        return [plain_value(v, key, label) for v in value]
    elif isinstance(value, np.bool_):
        return bool(value)
    elif isinstance(value, np.floating):
        return float(np.format_float_positional(value, unique=True, trim="0"))
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [plain_value(v, key, label) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: plain_value(v, f"{key}.{k}", label) for k, v in value.items()}
    kind = type(value).__name__
    article = "an" if kind[:1].lower() in "aeio" else "a"  # an object, an ellipsis; a uint8 ("u" as "you")
    raise TypeError(f"{label.format(key)}: {article} {kind} is not a config value (a string, a number, "
                    "true/false, a list or a mapping of them; numpy and torch scalars and arrays are read "
                    "as their numbers)")


# a field's annotation -> (the test of its value's kind, what it asks for). YAML and --set values are
# converted by _coerce (a number given for a string field is passed through, as is: the key's own check,
# _CHOICES, device, best_metric, names it), so a value set by attribute assignment fails most of these
# (str: None too, as a YAML file's empty value is read)
_KINDS = {
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int": (_is_whole, "a whole number"),
    "float": (_is_number, "a number"),
    "Optional[float]": (lambda v: v is None or _is_number(v), "a number or None"),
    "Union[int, tuple]": (lambda v: _is_whole(v) or isinstance(v, (tuple, list)), "a whole number or a list"),
    "str": (lambda v: v is None or isinstance(v, str), "a string"),
    "tuple": (lambda v: isinstance(v, (tuple, list)), "a list"),
    "dict": (lambda v: isinstance(v, dict), "a mapping"),
}
# string keys whose own check below names what they accept (the choices, a did-you-mean): a number there
# (YAML ``backbone: 50``) is said by that check, not as "must be a string"
_OWN_STRING_CHECKS = {*_CHOICES, "device", "solver.best_metric", "solver.lr_schedule"}


def plain_config(node):
    """``node`` (a Config or a section) with numpy and torch values (and paths) set by attribute
    assignment replaced by the Python values a loaded config has (``plain_value``; a list as a tuple in a
    tuple field), sections walked, so that they are checked, compared and written (``yaml.safe_dump``) as
    those; another type is left for the kind check to name. The caller's object is never changed: ``node``
    itself when every value is plain already, else a new one (``dataclasses.replace``) holding the
    replacements, its unchanged values shared."""
    # The result shares the unchanged mutable values (lists, dicts, sections left as they were) with
    # ``node``: it is for checking, comparing and writing, and must not be mutated (a change to it could
    # change the caller's Config).
    changes = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            plain = plain_config(value)
        else:
            try:
                plain = plain_value(value, f.name)
            except TypeError:
                continue
            if isinstance(plain, list) and "tuple" in str(f.type):
                plain = tuple(plain)
        if not _same_data(value, plain):
            changes[f.name] = plain
    return dataclasses.replace(node, **changes) if changes else node


def _same_data(value, plain) -> bool:
    """Whether ``plain`` (``plain_value(value)``) is ``value`` over again: containers of the same types
    holding the same objects (a tuple is rebuilt, its numbers are not), so a plain Config is not copied."""
    if value is plain:
        return True
    if type(value) is not type(plain):
        return False
    if isinstance(value, (list, tuple)):
        return len(value) == len(plain) and all(_same_data(a, b) for a, b in zip(value, plain))
    if isinstance(value, dict):
        return list(value) == list(plain) and all(_same_data(value[k], plain[k]) for k in value)
    return False


def _kind_problems(node, prefix: str = "") -> tuple:
    """(problems, fatal): each value of its field's kind, sections walked, so that a Config changed by
    attribute assignment (``cfg.model.num_classes = "3"``) is refused as a YAML file's bad value is;
    ``fatal``: a kind the checks of ``config_problems`` cannot compare (a number's, a list's, a section's)."""
    problems, fatal = [], False
    for f in dataclasses.fields(node):
        key, value = prefix + f.name, getattr(node, f.name)
        if f.type in _KINDS:
            test, wanted = _KINDS[f.type]
            if f.type == "str" and key in _OWN_STRING_CHECKS:
                continue
            if not test(value):
                problems.append(f"{key} must be {wanted}, got {value!r}")
                fatal = fatal or f.type != "str"
        elif not isinstance(value, f.default_factory):  # a section: RPNConfig, ModelConfig, ...
            problems.append(f"{key} must be a section ({f.default_factory.__name__}), got {value!r}")
            fatal = True
        else:
            more, more_fatal = _kind_problems(value, key + ".")
            problems.extend(more)
            fatal = fatal or more_fatal
    return problems, fatal


_TRAINING_BOUNDS = ("solver.iters", "seed")


def _huge_problems(cfg: Config) -> dict:
    """{key: its problem} for each key holding a whole number of 64 bits or more (``_MAX_WHOLE``), one
    list item or its only value: every key, its own range or none, so that no key takes a number that
    torch or the loader fail on later. Said by its length, not its 400 digits."""
    found = {}
    for key in config_keys(cfg):
        big = _first_huge(get_key(cfg, key))
        if big is not None:
            found[key] = (f"{key} must be below 2**64 in size (what torch and numpy hold), got "
                          f"{_shown_whole(big)}")
    return found


def _first_huge(value) -> Optional[int]:
    """The first whole number of 64 bits or more in ``value``, looking inside lists and mappings at any
    depth (``data.keypoint_flip_map``'s pairs, ``model.init_class_map``'s values): a flat look let a
    400-digit pair through and showed a nested one whole in a later check's message."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if abs(value) >= _MAX_WHOLE else None
    if isinstance(value, Mapping):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (tuple, list)):
        for v in value:
            big = _first_huge(v)
            if big is not None:
                return big
    return None


def _with_defaults(cfg: Config, keys) -> Config:
    """A copy of ``cfg`` with ``keys`` at their defaults: the other keys' checks run without the huge
    numbers they hold (a check showing or converting one would print its digits or overflow)."""
    out, default = copy.deepcopy(cfg), Config()
    for key in keys:
        *path, name = key.split(".")
        node = out
        for part in path:
            node = getattr(node, part)
        setattr(node, name, copy.deepcopy(get_key(default, key)))
    return out


def _shown_whole(v: int) -> str:
    """A whole number as a message shows it: by its length past 20 digits (a 400-digit one filled lines)."""
    digits = len(str(abs(v)))
    return f"an integer of {digits} digits" if digits > 20 else repr(v)


# the keys a model is built from (build_model): a stored config's other values (an outdated solver one)
# do not keep it from loading for inference
MODEL_KEYS = ("model.", "input.")


def config_problems(cfg: Config, *, stored: bool = False, keys: Optional[tuple] = None,
                    pairs_later: bool = False) -> list:
    """Every key whose value no run can use, one line each (empty when the config is usable); ``stored``:
    as ``_choice_problems``; ``keys``: only the problems of the keys starting with one of these prefixes
    (each value's kind is checked whatever they are); ``pairs_later``: the keys checked together
    (``_cross_key_problems``) are left to a later stage that sees every value (a file's pair that --set
    mends is not refused before the --set is applied)."""
    kinds, fatal = _kind_problems(cfg)
    if fatal:  # the checks below compare values of the kinds these ask for
        return kinds
    # a config to train with: solver.iters and seed are bounded by _training_problems, in their own words
    huge = {k: p for k, p in _huge_problems(cfg).items() if stored or k not in _TRAINING_BOUNDS}
    shown = [p for p in huge.values() if keys is None or p.startswith(keys)]
    if shown:  # the checks below would show those numbers whole (and compare them): the rest once mended
        return kinds + shown
    if huge:  # only keys the caller does not ask about: theirs are still checked (a bad model key was
        # hidden by a huge solver one when only the model keys were asked for)
        cfg = _with_defaults(cfg, huge)
    problems = []
    for key, (test, wanted) in _RANGES.items():
        value = get_key(cfg, key)
        if value is None:  # Optional fields: None means "same as ..." (weight_decay_bias)
            continue
        values = value if isinstance(value, (tuple, list)) else (value,)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            # a list key takes a list only (a single number is refused when read: "expects a list")
            what = "a list of numbers" if isinstance(get_key(Config(), key), tuple) else "a number"
            if key in _ONE_OR_MANY:
                what = "a number or a list of numbers"
            problems.append(f"{key} must be {what}, got {to_plain(value)!r}")
        elif not all(test(v) for v in values):
            if key == "solver.iters" and not stored:
                wanted = _ITERS_TO_TRAIN
            problems.append(f"{key} must be {wanted}, got {value!r}")
    for key in WHOLE_LISTS if not stored else ():
        # a stored config is not checked: earlier versions took fractions (a script's 0.75 * iters), and
        # its checkpoints must still load for predict, eval and resume (both keys only shape training)
        value = get_key(cfg, key)
        values = value if isinstance(value, (tuple, list)) else (value,)
        if all(_is_number(v) for v in values) and not all(_is_whole(v) for v in values):
            problems.append(f"{key} must be whole numbers, got {to_plain(value)!r}")
    for key in ("model.rpn.anchor_sizes", "model.rpn.aspect_ratios"):
        value = get_key(cfg, key)
        if isinstance(value, (tuple, list)) and len(value) > _MAX_ANCHORS:
            problems.append(f"{key} must have at most {_MAX_ANCHORS} values, got {len(value)}")
    for key in ("model.rpn.anchor_sizes", "model.rpn.aspect_ratios"):
        value = get_key(cfg, key)
        if isinstance(value, (tuple, list)) and not value:  # the RPN head got 0 outputs: torch's conv error
            what = "size" if key.endswith("sizes") else "ratio"
            problems.append(f"{key} must hold at least one {what}, got []")
    if not pairs_later:
        problems.extend(_cross_key_problems(cfg))
    scale, jitter = cfg.input.scale_range, cfg.input.color_jitter
    if len(scale) != 2 or scale[0] > scale[1]:
        problems.append(f"input.scale_range must be [low, high] with low <= high, got {scale!r}")
    if len(jitter) != 4 or jitter[-1] > 0.5:
        problems.append(f"input.color_jitter must be 4 values, the hue one <= 0.5, got {jitter!r}")
    if not 0 <= cfg.model.freeze_at <= 5:
        problems.append(f"model.freeze_at must be in 0..5, got {cfg.model.freeze_at!r}")
    problems.extend(_best_model_problems(cfg.solver))
    problems.extend(_solver_problems(cfg.solver))
    problems.extend(_choice_problems(cfg, stored))
    if keys is not None:
        problems = [p for p in problems if p.startswith(keys)]
    return kinds + problems


# keys whose value is one number or a list of them (``Union[int, tuple]``)
_ONE_OR_MANY = ("input.min_size",)
# GroupNorm's group count (modeling/layers.py get_norm uses this one): a width it does not divide is
# refused when read, naming the key, not by torch when the layer is built
GN_GROUPS = 32
# the four input sizes: what training follows from a checkpoint of ours (interop.weights) and what a test
# size follows when only its training size is set (engine.training.follow_training_sizes)
INPUT_SIZE_KEYS = ("input.min_size", "input.max_size", "input.min_size_test", "input.max_size_test")


# the FPN's output levels, P2..P6 (modeling/fpn.py): one anchor size each
FPN_LEVELS = 5


def _cross_key_problems(cfg: Config) -> list:
    """Values that are each in range but that no model can be built with together: the matchers'
    thresholds in the wrong order, GroupNorm on a width that its group count does not divide. Each
    line names the keys and their values (earlier, torch's or the Matcher's own words came at model
    build, after the data had been read, naming no key)."""
    problems = []
    m, h = cfg.model, cfg.model.roi_heads
    for prefix, section in (("model.rpn", m.rpn), ("model.roi_heads", h)):
        fg, bg = section.fg_iou_thresh, section.bg_iou_thresh
        if _is_number(fg) and _is_number(bg) and fg < bg:
            problems.append(f"{prefix}.fg_iou_thresh {fg} must be >= {prefix}.bg_iou_thresh {bg} (an anchor "
                            "or proposal at IoU >= fg is an object, below bg background; in between, "
                            "ignored)")
    sizes = m.rpn.anchor_sizes
    if m.fpn and isinstance(sizes, (tuple, list)) and sizes and len(sizes) != FPN_LEVELS:
        # the builder's words, said when read, not after the dataset (a 10-minute read on COCO)
        problems.append(f"model.rpn.anchor_sizes has {len(sizes)} size{'s' if len(sizes) != 1 else ''} for "
                        f"{FPN_LEVELS} FPN levels "
                        f"(one per level P2..P6 with model.fpn=true; without an FPN all go on one level)")
    widths = []  # (norm key, its value, width key, its value): each layer GroupNorm would normalise
    if m.fpn:
        widths.append(("model.fpn_norm", m.fpn_norm, "model.fpn_dim", m.fpn_dim))
        if h.box_head == "4conv1fc":  # its convs are as wide as the FPN's maps
            widths.append(("model.roi_heads.box_head_norm", h.box_head_norm, "model.fpn_dim", m.fpn_dim))
    if h.mask_on and h.mask_head_convs and (m.fpn or m.roi_features != "c4"):  # C4: no mask convs
        widths.append(("model.roi_heads.mask_head_norm", h.mask_head_norm, "model.roi_heads.mask_head_dim",
                       h.mask_head_dim))
    for norm_key, norm, width_key, width in widths:
        if norm == "gn" and _is_whole(width) and width % GN_GROUPS:
            problems.append(f"{width_key} {width} must be a multiple of {GN_GROUPS} with {norm_key}=gn "
                            f"(GroupNorm's {GN_GROUPS} groups split the channels evenly)")
    return problems


LR_SCHEDULES = ("step", "cosine")  # solver.lr_schedule (engine/schedule.py)


def _solver_problems(s: SolverConfig) -> list:
    """The schedule's name and the batch's split into micro-batches (each value's range is in _RANGES)."""
    problems = []
    if s.lr_schedule not in LR_SCHEDULES:
        problems.append(f"solver.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {s.lr_schedule!r}")
    b, a = s.batch_size, s.accumulate
    whole = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (b, a))
    if whole and b % a:
        problems.append(
            f"solver.batch_size {b} is not divisible by solver.accumulate {a}: each iteration's {b} images "
            f"are split into {a} micro-batches of equal size (choose an accumulate that divides {b})")
    return problems


def _best_model_problems(s: SolverConfig) -> list:
    from maskrcnn.engine.best_model import is_off, metric_name_problem  # no torch, no pycocotools

    problem = metric_name_problem(s.best_metric)  # also a number or a list: not a name it knows
    if problem:
        return [problem]
    patience = s.early_stop_patience
    if not (isinstance(patience, int) and patience > 0):  # off, or a bad value reported by its own check
        return []
    if is_off(s.best_metric):
        return [f"solver.early_stop_patience {patience} needs a metric to watch; solver.best_metric is none"]
    if s.eval_period == 0:
        return [f"solver.early_stop_patience {patience} counts periodic evaluations: set solver.eval_period "
                "> 0 (and give a validation set)"]
    return []


# seeds in [-2**63, 2**64): what torch.manual_seed takes (64 bits, signed or not; checked). The data
# loader masks a seed to 64 bits and the trainer's draws take it modulo, so every such seed trains
SEED_RANGE = (-(2**63), 2**64)


def _training_problems(cfg: Config) -> list:
    """What a config read to train with (a preset, a YAML file, ``--set``; not a stored one) may not ask
    for: 0 iterations trained nothing and wrote the initial weights as ``model_final.pth``, exit 0."""
    problems = []
    iters = cfg.solver.iters
    if isinstance(iters, int) and not isinstance(iters, bool) and iters < 1:
        problems.append(f"solver.iters must be {_ITERS_TO_TRAIN}, got {iters!r}")
    # 1e30 was taken: the log's eta ran to 26 digits and the run never ends; a bound as the seed's
    if isinstance(iters, int) and not isinstance(iters, bool) and iters > MAX_ITERS:
        got = f"{iters:.3g}" if iters < 10**300 else _shown_whole(iters)  # float range
        problems.append(f"solver.iters must be at most {MAX_ITERS:,} (more than any run can train), "
                        f"got {got}")
    # torch.manual_seed takes 64 bits: seed=1e30 failed later as "Overflow when unpacking long long", not
    # naming the key (a stored config is not checked: its run is over or resumed with its own seed)
    if _is_whole(cfg.seed) and not SEED_RANGE[0] <= cfg.seed < SEED_RANGE[1]:
        problems.append(f"seed must be a whole number in [-2**63, 2**64) (torch's generators take 64 bits), "
                        f"got {_shown_whole(cfg.seed)}")
    # the C4 ablation's key with an FPN (the default) changed nothing: the FPN model trained without a word
    if cfg.model.fpn and cfg.model.roi_features != "c4":
        problems.append(f"model.roi_features {cfg.model.roi_features} applies only with model.fpn=false "
                        "(set model.fpn=false for the paper's C4/C5 ablation, or leave roi_features as c4)")
    steps = tuple(cfg.solver.steps)
    # the schedule sorts them, so [15000, 1800] (18000 meant) dropped the lr at 1800 without a word; a
    # stored config is not checked (earlier versions took any order, and its run is over or resumed as is).
    # Equal steps stay allowed: recipes scaled to a few iterations give them ([0, 0]). A cosine schedule
    # reads no steps
    if cfg.solver.lr_schedule == "step" and any(b < a for a, b in zip(steps, steps[1:])):
        problems.append(f"solver.steps must be in increasing order (the iterations of the lr drops, first "
                        f"to last), got {to_plain(steps)!r}: a typo? (sorted: {sorted(steps)!r})")
    return problems


def validate_config(cfg: Config, *, lines: Optional[dict] = None, source: str = "",
                    stored: bool = False, keys: Optional[tuple] = None, pairs_later: bool = False) -> Config:
    """``cfg`` (plain, see below) if every value is usable, else ValueError listing the keys at fault (each
    with its line in the YAML file ``source`` where ``lines`` has it; ``stored``: as ``from_dict``;
    ``keys``: as ``config_problems``). Numpy and torch values set by attribute assignment read as their
    Python numbers (``plain_config``): the Config returned holds those, ``cfg`` is left as it was (callers
    use the returned one)."""
    cfg = plain_config(cfg)
    problems = config_problems(cfg, stored=stored, keys=keys, pairs_later=pairs_later)
    if problems:
        said = [_with_line(p, lines or {}, source) for p in problems]
        raise ValueError("invalid configuration: " + "; ".join(said))
    return cfg


def to_plain(value: Any) -> Any:
    """Tuples become lists so that YAML / JSON stay plain."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def _coerce(name: str, current: Any, value: Any, type_name: str = "", *, stored: bool = False) -> Any:
    """Convert ``value`` (from YAML or a ``--set`` string) to the type of the field's current value.

    ``type_name`` is the field's annotation: ``Union[int, tuple]`` fields accept one number or a list.
    Numpy and torch scalars and arrays, and paths, read as ``plain_value`` reads them (``train(set=...)``'s
    rule): ``np.int64(5)`` is 5, ``np.float32(0.1)`` 0.1, ``np.bool_(True)`` true. ``stored`` (a checkpoint's
    or a run's config): a fraction in a ``WHOLE_LISTS`` key is kept, as earlier versions wrote it.
    """
    if not isinstance(value, str):
        try:
            value = plain_value(value, name)
        except TypeError:  # not data at all (object()): the checks below name the key and what it expects
            pass
    if isinstance(value, str) and not isinstance(current, str):
        text = value.strip()
        if text.startswith("(") and text.endswith(")") and isinstance(current, (tuple, int)):
            text = f"[{text[1:-1]}]"  # Python's tuple form, (640, 672): read as the list it means
        value = load_yaml(text, f"config key {name!r}")
        if isinstance(value, str) and value != text.strip():
            # quoted (--set solver.amp='"true"'): the text inside, as a YAML file's quoted value is read
            # (``iters: "5"`` reaches here as the text 5), so that quotes mean the same in both
            value = load_yaml(value, f"config key {name!r}")
        value = _number_text(value)
    if isinstance(value, (list, tuple)) and name in _NUMBER_LISTS:
        value = [_number_text(v) for v in value]  # inside a list too: solver.steps=[1e3, 2e3]
    if value is None and "Optional" in type_name:
        return None
    one_or_many = "Union" in type_name and "tuple" in type_name
    if isinstance(current, dict):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"config key {name!r} expects a mapping of names, got {value!r}")
        return {k: ("" if v is None else str(v)) for k, v in value.items()}
    if isinstance(value, dict):
        raise ValueError(f"config key {name!r} expects one value, got the mapping {value!r}")
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"config key {name!r} expects true/false, got {value!r}")
        return value
    if isinstance(value, (list, tuple)):
        if isinstance(current, tuple) or one_or_many:
            # a stored one keeps its fractions (earlier versions took them: see config_problems)
            if name not in WHOLE_LISTS:
                return tuple(value)
            return tuple(_whole(name, v, strict=not stored) for v in value)
        raise ValueError(f"config key {name!r} expects one value, got the list {value!r}")
    if isinstance(current, tuple) and not one_or_many:
        raise ValueError(f"config key {name!r} expects a list, got {value!r}")
    if isinstance(value, bool) and not isinstance(current, bool) and current is not None:
        if isinstance(current, str):
            allowed = _CHOICES.get(name, ("auto", "cpu", "cuda", "cuda:N") if name == "device" else ())
            what = f"one of {'|'.join(allowed)}" if allowed else "a string"
            raise ValueError(f"config key {name!r} expects {what} (YAML reads no/off as false, yes/on as "
                             f"true: quote it)")
        raise ValueError(f"config key {name!r} expects a number, got {value!r}")
    number_field = isinstance(current, (int, float)) or one_or_many or "float" in type_name
    if number_field and not isinstance(value, (int, float)):
        raise ValueError(f"config key {name!r} expects a number, got {value!r}")
    if (isinstance(current, float) or "float" in type_name) and isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # a 400-digit integer: past every float, so past every range too
            raise ValueError(f"config key {name!r} expects a number within a float's range, got an "
                             f"integer of {len(str(value))} digits") from None
    if type_name == "int" or name in WHOLE_LISTS:
        # counts, sizes, periods, seeds: solver.iters=1.5 trained 1 iteration without a word (2.0 is 2)
        return _whole(name, value, strict=not (stored and name in WHOLE_LISTS))
    return value


# tuple keys of numbers: a list item YAML 1.1 reads as text (1e3, 1e-1: no dot) is read as its number,
# as a scalar's is (``_number_text``); other lists (class names, keypoint names) keep their text
_NUMBER_LISTS = frozenset(_RANGES) | {"data.keypoint_sigmas"}
# number lists of whole numbers, as the int keys are (iterations, sizes in pixels): no fractions
WHOLE_LISTS = ("solver.steps", "input.min_size")


def _number_text(value: Any) -> Any:
    """``value``; a string that Python reads as a number (YAML 1.1 reads ``1e-5``, without a dot, as
    text) as that float."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _whole(name: str, value: Any, *, strict: bool = True) -> Any:
    """A float that is a whole number (``1e3``, 2.0) as the int; a fraction is a ValueError naming the
    key (``strict`` False, a stored config's list: left as it is; anything else is left for the kind and
    range checks)."""
    if isinstance(value, float) and not isinstance(value, bool):
        if not value.is_integer():
            if not strict:
                return value
            raise ValueError(f"config key {name!r} expects a whole number, got {value!r}")
        return int(value)
    return value


def config_keys(node: Any, prefix: str = "") -> list:
    """Every settable dotted key of a Config (or section), sections walked, in declaration order."""
    keys = []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            keys += config_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


# Other libraries' names for our keys (detectron2's SOLVER.*, common spellings): matched, typos included,
# as the names of the keys themselves are
_KEY_ALIASES = {"learning_rate": "lr", "base_lr": "lr", "ims_per_batch": "batch_size", "max_iter": "iters",
                "max_iters": "iters", "checkpoint_interval": "checkpoint_period",
                "eval_interval": "eval_period", "random_seed": "seed"}


def nearest_key(dotted: str, cfg: Any) -> Optional[str]:
    """The existing key an unknown ``dotted`` most likely meant, or None. In order: a close name in the
    same section (typos; another library's name, ``solver.lerning_rate`` -> ``solver.lr``); the same name
    in another section (``solver.seed`` -> ``seed``, ``model.lr`` -> ``solver.lr``); a close dotted key
    anywhere (a mistyped section: ``solvr.lr``); a close name in another section."""
    keys = config_keys(cfg)
    leaf = dotted.rsplit(".", 1)[-1].lower()
    section = dotted[: -len(leaf)]
    by_leaf: dict = {}
    for key in keys:
        by_leaf.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    names = [k[len(section):] for k in keys if k.startswith(section) and "." not in k[len(section):]]
    if names:
        candidates = {**{n: n for n in names}, **{a: n for a, n in _KEY_ALIASES.items() if n in names}}
        # a name cut short (rpn.batch_size: batch_size_per_image), then typos and other names, then a
        # prefixed one (base_lr: lr)
        near = ([n for n in names if n.startswith(leaf + "_")]
                or difflib.get_close_matches(leaf, list(candidates), n=1, cutoff=0.6)
                or [n for n in names if leaf.endswith("_" + n)])
        if near:
            return section + candidates.get(near[0], near[0])
    if leaf in by_leaf:
        return by_leaf[leaf][0]
    near = difflib.get_close_matches(dotted.lower(), keys, n=1, cutoff=0.8)
    if near:
        return near[0]
    aliases = {**{n: n for n in by_leaf}, **{a: n for a, n in _KEY_ALIASES.items() if n in by_leaf}}
    near = difflib.get_close_matches(leaf, list(aliases), n=1, cutoff=0.75)
    return by_leaf[aliases[near[0]]][0] if near else None


def apply_overrides(cfg: Config, overrides: dict, *, lines: Optional[dict] = None,
                    source: str = "", stored: bool = False, pairs_later: bool = False) -> Config:
    """Set dotted keys (``{"model.num_classes": 5}``), naming unknown keys in the error; ``lines``: the
    1-based line of each key in the YAML file ``source`` they came from, added to the errors; ``stored``:
    as ``from_dict`` (the device is not checked); ``pairs_later``: as ``config_problems``."""
    check_overrides(overrides)
    cfg = copy.deepcopy(cfg)
    lines = lines or {}
    for dotted, value in overrides.items():
        try:
            cfg = _apply_one(cfg, dotted, value, stored=stored)
        except (KeyError, ValueError) as e:
            if dotted not in lines:
                raise
            raise type(e)(f"{e.args[0] if e.args else e} ({source} line {lines[dotted]})") from None
    return validate_config(cfg, lines=lines, source=source, stored=stored, pairs_later=pairs_later)


def check_overrides(overrides: Any, name: str = "overrides") -> None:
    """One-line TypeError naming ``name`` unless ``overrides`` is a mapping of dotted keys (strings) to
    values: a list of "key=value" strings (``train(set=...)``'s other form) failed deep inside."""
    if not isinstance(overrides, Mapping):
        raise TypeError(f"{name}: a mapping of dotted config keys to values ({{'model.roi_heads."
                        f"score_thresh': 0.5}}) is expected, got {type(overrides).__name__}")
    bad = next((k for k in overrides if not isinstance(k, str)), None)
    if bad is not None:
        raise TypeError(f"{name}: the keys are dotted config keys (strings), got {bad!r}")


def _with_line(problem: str, lines: dict, source: str) -> str:
    """``problem`` (which starts with the key at fault) with the line the key has in ``source``."""
    key = problem.split(" ", 1)[0]
    return f"{problem} ({source} line {lines[key]})" if key in lines else problem


def _apply_one(cfg: Config, dotted: str, value: Any, *, stored: bool = False) -> Config:
    """``cfg`` (changed in place) with one dotted key set; a section's mapping sets each of its keys
    (``stored``: as ``_coerce``)."""
    parts = dotted.split(".")
    node = cfg
    for i, part in enumerate(parts[:-1]):
        if not dataclasses.is_dataclass(node) or not hasattr(node, part):
            near = nearest_key(dotted, cfg)
            hint = f"; did you mean {near!r}?" if near else ""
            raise KeyError(f"unknown config key {'.'.join(parts[: i + 1])!r} (in {dotted!r}){hint}")
        node = getattr(node, part)
    leaf = parts[-1]
    fields = {f.name: f for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else {}
    if leaf not in fields:
        near = nearest_key(dotted, cfg)
        hint = f"; did you mean {near!r}?" if near else ""
        raise KeyError(f"unknown config key {dotted!r}{hint}")
    current = getattr(node, leaf)
    if dataclasses.is_dataclass(current):
        if isinstance(value, str):  # --set model={num_classes: 3}: read as a file's value is
            value = load_yaml(value, f"config key {dotted!r}")
        if value is None:  # a section whose keys are all commented out: nothing to change
            return cfg
        if not isinstance(value, dict):
            raise ValueError(f"config key {dotted!r} is a section; give a mapping")
        for k, v in value.items():
            cfg = _apply_one(cfg, f"{dotted}.{k}", v, stored=stored)
        return cfg
    setattr(node, leaf, _coerce(dotted, current, value, str(fields[leaf].type), stored=stored))
    return cfg


def get_key(cfg: Config, dotted: str) -> Any:
    """The value of a dotted key (``"model.rpn.nms_thresh"``)."""
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def flatten_sections(d: dict, node: Any, prefix: str = "") -> dict:
    """Nested sections -> dotted keys; a mapping under a mapping-valued field (``init_class_map``) stays
    whole. ``node`` is the matching part of a Config, so the walk knows which is which."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        child = getattr(node, str(k), None) if dataclasses.is_dataclass(node) else None
        unknown = dataclasses.is_dataclass(node) and not hasattr(node, str(k))
        if isinstance(v, dict) and v and (dataclasses.is_dataclass(child) or unknown):
            # an unknown section's keys too: the hint is looked up on the full dotted key, as for --set
            out.update(flatten_sections(v, child, key + "."))
        else:
            out[key] = v
    return out


# Keys that earlier versions wrote into checkpoints and config.yaml files but that nothing read (the mask
# and heatmap resolutions follow from the pool sizes: 2 x mask_pool_size, 4 x keypoint_pool_size). Stored
# configs may still hold them (dropped); a user's YAML file naming them (a copied old config.yaml) gets a
# warning and loads; --set naming them is an error like any unknown key.
RETIRED_KEYS = ("model.roi_heads.mask_resolution", "model.roi_heads.keypoint_resolution")


def from_dict(d: dict, base: Optional[Config] = None, *, stored: bool = False, lines: Optional[dict] = None,
              source: str = "", pairs_later: bool = False) -> Config:
    """A Config from a nested dict over ``base``; retired keys are dropped (``stored``: the dict was written
    by this library, a checkpoint's or a run's config; else with a warning naming each: a user's copy of an
    old run's config). ``lines`` / ``source``: as ``apply_overrides``."""
    import warnings

    base = base or Config()
    flat = flatten_sections(d, base)
    for key in [k for k in flat if k in RETIRED_KEYS]:
        if not stored:
            where = f"{source} line {lines[key]}: " if lines and key in lines else ""
            warnings.warn(f"{where}{key}: retired key, no longer used: delete it", stacklevel=2)
        del flat[key]
    return apply_overrides(base, flat, lines=lines, source=source, stored=stored, pairs_later=pairs_later)


def parse_set_args(items: list, *, word: str = "--set") -> dict:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": "1", "c": "x"}`` (values are parsed against field types). A key
    given twice, also once alone and once in its section's mapping (``solver.lr=0.1 'solver={lr: 0.3}'``),
    is warned about; the last one given is used (the dict's order is the order to apply them in).
    ``word``: how an item without "=" is refused, as the caller named the items ("--set", ``maskrcnn.train``'s
    "set=": ``caller_words.set_word``)."""
    import warnings

    out: dict = {}
    now: dict = {}  # dotted key -> the value the items so far give it
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{word} expects key=value, got {item!r}")
        key, value = (part.strip() for part in item.split("=", 1))
        before = now
        earlier = out.pop(key, None)  # the same key again (a typo, a script adding to a line): dropped
        out[key] = value  # last: applied after the items given before it
        # a key alone and in its section's mapping: both applied, the last given wins. Each leaf whose
        # value this item changes is named with the value now used (the dict applied, not this item's)
        now = _effective_leaves(out)
        changed = [d for d in _set_values(key, value)
                   if d in before and _read_value(before[d]) != _read_value(now.get(d))]
        for dotted in changed:
            warnings.warn(f"{dotted} given twice: {_shown_value(now[dotted])} (the last) used", stacklevel=2)
        if not changed and earlier is not None and _read_value(earlier) != _read_value(value):
            warnings.warn(f"{key} given twice: {value} (the last) used", stacklevel=2)
    return out


def _effective_leaves(overrides: dict) -> dict:
    """{dotted key: value} that applying ``overrides`` in order sets (a section's mapping walked)."""
    leaves: dict = {}
    for key, value in overrides.items():
        leaves.update(_set_values(key, value))
    return leaves


def _set_values(key: str, value: str) -> dict:
    """{dotted key: value} that one ``--set`` item names: a section given a mapping (``solver={lr: 0.3}``)
    names each of its keys (a mapping-valued field, ``model.init_class_map``, stays whole); ``{key: value}``
    for anything else, a value that does not parse included (load_config says what is wrong with it)."""
    if not value.startswith("{"):
        return {key: value}
    try:
        node = get_key(Config(), key)
        mapping = load_yaml(value, "--set")
    except (AttributeError, ValueError):
        return {key: value}
    if not dataclasses.is_dataclass(node) or not isinstance(mapping, dict):
        return {key: value}
    return flatten_sections(mapping, node, key + ".")


def _read_value(value: Any) -> Any:
    """A ``--set`` text as YAML reads it (``0.10`` and ``0.1`` are one value), else as it is."""
    if not isinstance(value, str):
        return value
    try:
        return load_yaml(value, "--set")
    except ValueError:
        return value


def _shown_value(value: Any) -> str:
    return value if isinstance(value, str) else str(to_plain(value))


def preset_solver_steps() -> set:
    """The ``solver.steps`` of every preset and of the defaults: steps a config has without the user's
    choosing them (a schedule that ignores steps says so only for others)."""
    return {tuple(make().solver.steps) for make in PRESETS.values()} | {tuple(SolverConfig().steps)}


def load_config(preset_or_path: Optional[str] = None, overrides: Optional[dict] = None, *,
                stored: bool = False) -> Config:
    """A preset name (``r50_fpn``), or a YAML file (optionally with ``_base_: PRESET``), then overrides.
    ``stored``: the file is a run's own ``config.yaml`` (see ``from_dict``); any other config is one to
    train with, and ``solver.iters`` must be >= 1 (a stored one may hold the 0 earlier versions allowed)."""
    return load_config_keys(preset_or_path, overrides, stored=stored)[0]


def written_keys(data) -> frozenset:
    """The dotted keys a config mapping (a YAML file's) writes: ``flatten_sections``' (a section's keys,
    a mapping-valued field such as ``model.init_class_map`` whole), ``_base_`` left out; none for no
    mapping. What a ``--config`` file set explicitly, as against the preset under it. From the parsed
    data, not the loader's key lines: keys a merge (``<<: *defaults``) brings in are written too."""
    if not isinstance(data, dict):
        return frozenset()
    return frozenset(flatten_sections({k: v for k, v in data.items() if k != "_base_"}, Config()))


def config_file_keys(preset_or_path: Optional[str]) -> frozenset:
    """``written_keys`` of the YAML file ``preset_or_path`` for a caller that has only its name (a library
    caller of ``build_training``); none for a preset, a missing or an unreadable file. ``load_config_keys``
    gives them with the Config, the file read once."""
    if not preset_or_path or preset_or_path in PRESETS or not Path(preset_or_path).is_file():
        return frozenset()
    try:
        with open(preset_or_path, "rb") as f:
            return written_keys(load_yaml(f, str(preset_or_path)))
    except (OSError, ValueError):
        return frozenset()


def load_config_keys(preset_or_path: Optional[str] = None, overrides: Optional[dict] = None, *,
                     stored: bool = False) -> tuple:
    """``(cfg, written)``: ``load_config``'s Config and the ``written_keys`` of its YAML file (none for a
    preset), the file read once: which keys the user set in ``--config`` (``train --init`` keeps those
    where the weights only suggest; a ``model.num_classes`` written there is named when the data's
    differs)."""
    name = preset_or_path or "r50_fpn"
    written: frozenset = frozenset()
    lines, source = {}, ""  # a YAML file's: the line each of its keys is on
    if name in PRESETS:
        cfg = PRESETS[name]()
    else:
        path = Path(name)
        if path.is_dir():  # "neither a preset nor a file" read as if nothing were there
            inside = path / "config.yaml"  # a run folder: its config is the likely meaning
            meant = f"; did you mean {inside}?" if inside.is_file() else ""
            raise IsADirectoryError(f"config {name!r} is a folder: a YAML file or a preset name is expected "
                                    f"({', '.join(sorted(PRESETS))}){meant}")
        if not path.is_file():
            raise FileNotFoundError(
                f"config {name!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor a file"
            )
        if path.suffix == ".py":  # never executed
            raise ValueError(f"{path}: a Python config (MMDetection?) is not read; use a preset and --set "
                             "(docs/checkpoints.md says how to convert its weights)")
        with open(path, "rb") as f:  # bytes: the YAML reader reports bad encodings by position
            data, lines = load_yaml_lines(f, str(path))
        if data is None:
            import warnings

            warnings.warn(f"{path} is empty: the r50_fpn preset is used", stacklevel=2)
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        if "_BASE_" in data or any(isinstance(k, str) and k.isupper() and len(k) > 1 for k in data):
            raise ValueError(f"{path}: looks like a detectron2 config (_BASE_, upper-case keys): not read; "
                             "use a preset and --set (docs/checkpoints.md for converting its weights)")
        base_name = data.pop("_base_", "r50_fpn")
        source = path.name
        if not isinstance(base_name, str):  # a list or a mapping: `in PRESETS` raised "unhashable type"
            where = f" ({source} line {lines['_base_']})" if "_base_" in lines else ""
            raise ValueError(f"{path}: _base_ must be a preset name ({', '.join(sorted(PRESETS))}), got "
                             f"{to_plain(base_name)!r}{where}")
        if base_name not in PRESETS:
            raise KeyError(f"{path}: _base_ {base_name!r} is not a preset")
        written = written_keys(data)
        try:
            # the pairs are checked once the overrides are in (apply_overrides below): --set may mend them
            cfg = from_dict(data, PRESETS[base_name](), stored=stored, lines=lines, source=path.name,
                            pairs_later=bool(overrides))
        except (KeyError, ValueError) as e:
            raise type(e)(f"{path}: {e.args[0] if e.args else e}") from None
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    problems = [] if stored else _training_problems(cfg)
    if problems:  # the file's line for a key the file set, not one --set gave
        given = set_keys(overrides or {})
        from_file = {k: n for k, n in lines.items() if k not in given}
        raise ValueError("invalid configuration: " + "; ".join(_with_line(p, from_file, source)
                                                                for p in problems))
    return cfg, written


# keys whose value the weights were trained with: another one at inference reads the same weights another
# way (sigmoid-trained mask logits read as a softmax over classes give empty masks), without an error
TRAINED_WITH_KEYS = ("model.roi_heads.mask_loss", "model.roi_heads.box_reg_weights", "model.pixel_mean",
                     "model.pixel_std")


def trained_with_changes(before: Config, after: Config) -> list:
    """One line for each ``TRAINED_WITH_KEYS`` key whose value ``after`` (a checkpoint's config with the
    inference overrides applied) changes from ``before`` (the checkpoint's own): for a warning."""
    lines = []
    for key in TRAINED_WITH_KEYS:
        old, new = to_plain(get_key(before, key)), to_plain(get_key(after, key))
        if old != new:
            lines.append(f"{key} {new!r} differs from the {old!r} the weights were trained with: the output "
                         "changes (a mask_loss the masks were not trained with gives empty masks)")
    return lines


def save_config(cfg: Config, path: Union[str, Path]) -> None:
    """Write ``cfg`` as UTF-8 YAML, atomically; class names in any script are written as they are
    ("猫", not the escape "\\u732B" PyYAML writes by default)."""
    from maskrcnn.io_utils import atomic_write_text

    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True)
    atomic_write_text(path, text, unless_same=True)  # the same settings (a resume): the file is left as it is


def set_keys(overrides: dict) -> set:
    """The dotted keys ``--set`` names; a section given a mapping (``--set model={num_classes: 3}``) names
    only the keys inside it, not every key of the section."""

    def flat(prefix: str, value) -> set:
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                value = load_yaml(value, "--set")  # read once already by load_config: valid
            except ValueError:
                return {prefix}
        if isinstance(value, dict):
            return set().union(*(flat(f"{prefix}.{k}", v) for k, v in value.items())) if value else set()
        return {prefix}

    return set().union(*(flat(dotted, value) for dotted, value in overrides.items())) if overrides else set()
