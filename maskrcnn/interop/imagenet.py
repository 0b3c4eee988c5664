"""ImageNet classification checkpoints as backbone initialisations (the paper's recipe starts from one).

Three layouts of the same ResNet / ResNeXt weights, each with the input convention it was trained in:

- torchvision (``resnet50-0676ba61.pth``, ...): ``conv1.weight``, ``bn1.*``, ``layer{1..4}.{b}.conv{n}.*``,
  ``.bn{n}.*``, ``.downsample.{0,1}.*``, ``fc.*``. RGB in [0, 1] normalised by ImageNet's mean
  (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); the stride of a bottleneck on its 3x3 conv.
- Caffe2 (detectron2's ``ImageNetPretrained/MSRA/R-50.pkl``, ``R-101.pkl`` and ``FAIR/X-101-32x8d.pkl``):
  ``conv1_w``, ``res_conv1_bn_{s,b}``, ``res{k}_{b}_branch{1,2a,2b,2c}_w`` and ``..._bn_{s,b}``, ``fc1000_*``,
  possibly inside ``{"blobs": ...}`` and with ``*_momentum`` entries. The norms are affine maps
  ``y = x * s + b`` with the batch statistics already folded in, so they load as frozen batch norm with
  mean 0, variance 1 and eps 0 (``model.frozen_bn_eps=0``), which computes exactly ``x * s + b``.
  BGR images in 0-255 minus the mean (103.530, 116.280, 123.675); the MSRA nets divide by 1 and put the
  stride on the first 1x1 conv (``model.stride_in_1x1``), FAIR's X-101 divides by (57.375, 57.120, 58.395)
  and strides on the 3x3.
- detectron2's own naming of torchvision's nets (``ImageNetPretrained/torchvision/R-50.pkl``, written by its
  conversion script): ``stem.conv1.*``, ``stem.conv1.norm.*``, ``res{k}.{b}.conv{n}.*``, ``.norm.*``,
  ``shortcut.*``, ``stem.fc.*``; torchvision's RGB convention.

Our model takes RGB in [0, 1] and normalises with ``model.pixel_mean`` / ``model.pixel_std`` on that scale,
so BGR weights get their stem's input channels reversed and their statistics reversed and divided by 255.
The result holds our ``backbone.*`` keys (``docs/checkpoints.md``) and the config keys the weights fix.

Shapes: stem conv (64, 3, 7, 7); res{k} block b conv{n} (Cout, Cin / groups, kh, kw); fc (1000, C5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from maskrcnn.interop import detectron2 as d2
from maskrcnn.interop import torchvision as tv
from maskrcnn.interop.conventions import stem_bgr_to_rgb
from maskrcnn.interop.torchvision import ConversionError

# torchvision's ImageNet statistics, on RGB images in [0, 1]
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)

_TV_KEY = re.compile(r"^(conv1\.weight|bn1\.\w+|layer[1-4]\.\d+\.\S+)$")
_TV_HEAD = re.compile(r"^fc\.(weight|bias)$")
_D2_HEAD = re.compile(r"^(stem\.)?(fc|linear)\.(weight|bias)$")
_D2_BACKBONE = re.compile(r"^(stem\.conv1\.|res[2-5]\.\d+\.)")

# Caffe2 blob names -> detectron2's module names
_BRANCH = {"1": "shortcut", "2a": "conv1", "2b": "conv2", "2c": "conv3"}
_NORM_LEAF = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
_CAFFE2_RULES = [
    (re.compile(r"^conv1_w$"), lambda g: "stem.conv1.weight"),
    (re.compile(r"^res_conv1_bn_(s|b|rm|riv)$"), lambda g: f"stem.conv1.norm.{_NORM_LEAF[g[0]]}"),
    (re.compile(r"^res(\d)_(\d+)_branch(1|2a|2b|2c)_w$"),
     lambda g: f"res{g[0]}.{g[1]}.{_BRANCH[g[2]]}.weight"),
    (re.compile(r"^res(\d)_(\d+)_branch(1|2a|2b|2c)_bn_(s|b|rm|riv)$"),
     lambda g: f"res{g[0]}.{g[1]}.{_BRANCH[g[2]]}.norm.{_NORM_LEAF[g[3]]}"),
]
_CAFFE2_HEAD = re.compile(r"^(fc1000_[wb]|pred_[wb]|.*_momentum)$")


@dataclass
class BackboneWeights:
    """A converted ImageNet backbone: our ``backbone.*`` tensors and what the weights fix in the config."""

    state_dict: dict
    layout: str  # torchvision | caffe2 | detectron2
    arch: str  # our model.backbone name
    implied: dict  # dotted config keys -> values the weights were trained with
    unused: list  # source keys (in the source's naming) that a detector has no place for (fc, momentum)
    notes: list = field(default_factory=list)


def detect_layout(sd: dict):
    """'torchvision', 'caffe2', 'detectron2' or None when ``sd`` is no ImageNet backbone of ours."""
    keys = [k for k in sd if isinstance(k, str)]
    if any(d2._CAFFE2_KEY.match(k) for k in keys):
        return "caffe2"
    if "conv1.weight" in sd and any(k.startswith("layer1.") for k in keys):
        return "torchvision"
    if "stem.conv1.weight" in sd and any(k.startswith("res2.") for k in keys):
        return "detectron2"
    return None


def _tensors(sd: dict, source: str) -> dict:
    out, bad = {}, []
    for k, v in sd.items():
        if isinstance(v, torch.Tensor):
            out[k] = v
        elif hasattr(v, "dtype") and hasattr(v, "shape"):  # numpy array from a pickle
            out[k] = torch.as_tensor(v.copy() if hasattr(v, "copy") else v)
        else:
            bad.append(k)
    if bad:
        raise ConversionError(f"{source}: entries that are not arrays: {bad[:5]}")
    return out


def _caffe2_to_detectron2(sd: dict) -> tuple:
    """Caffe2 blob names -> detectron2's backbone names; returns (renamed, unused, unmapped)."""
    out, unused, unmapped = {}, [], []
    for key, value in sd.items():
        if _CAFFE2_HEAD.match(key):
            unused.append(key)
            continue
        for pattern, rename in _CAFFE2_RULES:
            m = pattern.match(key)
            if m:
                out[rename(m.groups())] = value
                break
        else:
            unmapped.append(key)
    return out, unused, unmapped


def _fill_folded_norms(sd: dict) -> int:
    """Norms that carry only a scale and a shift (Caffe2's affine channels): mean 0 and variance 1, which
    with eps 0 is exactly ``x * s + b``. Returns how many norms were completed."""
    filled = 0
    for key in [k for k in sd if k.endswith("norm.weight")]:
        prefix = key[: -len("weight")]
        if prefix + "running_mean" not in sd and prefix + "running_var" not in sd:
            sd[prefix + "running_mean"] = torch.zeros_like(sd[key])
            sd[prefix + "running_var"] = torch.ones_like(sd[key])
            filled += 1
    return filled


def _rename(sd: dict, prefix: str, map_key) -> tuple:
    """Our names via a converter's own rules (for its ``backbone.*`` prefix); (ours, unmapped)."""
    ours, unmapped = {}, []
    for key, value in sd.items():
        new = map_key(prefix + key)
        if new is None or not new.startswith("backbone."):
            unmapped.append(key)
        else:
            ours[new] = value
    return ours, unmapped


def _arch_of(ours: dict, source: str) -> str:
    blocks = []
    for stage in range(2, 6):
        pattern = re.compile(rf"^backbone\.res{stage}\.(\d+)\.")
        blocks.append(len({int(m.group(1)) for m in map(pattern.match, ours) if m}))
    if 0 in blocks:
        raise ConversionError(f"{source}: an ImageNet ResNet needs stages res2..res5; found blocks {blocks}")
    try:
        return tv.resnet_arch(tuple(blocks), ours.get("backbone.res2.0.conv2.conv.weight"),
                              bottleneck="backbone.res2.0.conv3.conv.weight" in ours)
    except ConversionError as e:
        raise ConversionError(f"{source}: {e}") from None


def convert_imagenet(sd: dict, *, source: str = "checkpoint") -> BackboneWeights:
    """Any of the three layouts (module docstring) -> ``BackboneWeights``; raises ConversionError naming
    keys that belong to none of them."""
    layout = detect_layout(sd)
    if layout is None:
        raise ConversionError(f"{source}: not an ImageNet ResNet checkpoint (keys like {list(sd)[:3]})")
    sd = _tensors(sd, source)
    notes = []
    if layout == "torchvision":
        unused = sorted(k for k in sd if _TV_HEAD.match(k))
        body = {k: v for k, v in sd.items() if k not in unused}
        ours, unmapped = _rename(body, "backbone.body.", lambda k: tv._map_key(k, {}))
    else:
        if layout == "caffe2":
            body, unused, unmapped = _caffe2_to_detectron2(sd)
        else:
            unused = sorted(k for k in sd if _D2_HEAD.match(k))
            body = {k: v for k, v in sd.items() if k not in unused}
            unmapped = []
        ours, more = _rename(body, "backbone.bottom_up.", d2._map_key)
        unmapped += more
    unused = sorted(unused)
    if unmapped:
        more = " ..." if len(unmapped) > 8 else ""
        raise ConversionError(f"{source} ({layout} ImageNet layout): {len(unmapped)} keys belong to no "
                              f"ResNet layer: {', '.join(unmapped[:8])}{more}")
    arch = _arch_of(ours, source)
    implied = {"model.backbone": arch}
    if layout == "caffe2":
        filled = _fill_folded_norms(ours)
        if filled:
            notes.append(f"{filled} Caffe2 affine norms loaded as frozen BN with mean 0, variance 1, eps 0")
            implied["model.frozen_bn_eps"] = 0.0
        stem_bgr_to_rgb(ours)
        notes.append("stem conv input channels reversed: BGR weights, RGB images")
        mean_bgr = d2.D2_PIXEL_MEAN_BGR
        std_bgr = d2.D2_PIXEL_STD_BGR_X101 if arch.startswith("resnext") else d2.D2_PIXEL_STD_BGR_MSRA
        implied["model.pixel_mean"] = tuple(m / 255.0 for m in reversed(mean_bgr))
        implied["model.pixel_std"] = tuple(s / 255.0 for s in reversed(std_bgr))
        implied["model.stride_in_1x1"] = not arch.startswith("resnext")  # MSRA ResNets; X-101 is FAIR's
    else:
        implied["model.pixel_mean"] = IMAGENET_MEAN_RGB
        implied["model.pixel_std"] = IMAGENET_STD_RGB
        implied["model.stride_in_1x1"] = False
        implied["model.frozen_bn_eps"] = 1e-5  # the eps the batch statistics were computed with
    ours = {k: v.float() if v.is_floating_point() else v for k, v in ours.items()}
    return BackboneWeights(state_dict=ours, layout=layout, arch=arch, implied=implied, unused=unused,
                           notes=notes)
