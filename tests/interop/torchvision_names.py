"""torchvision's (and timm's) ImageNet ResNet names of our backbone's keys, for the tests that write files
in that layout (our shapes under its names: ``ResNet(...).state_dict()`` renamed key by key)."""

from __future__ import annotations

import re

# res<stage>.<block>.<conv1|conv2|conv3|shortcut>.<conv|norm>.<leaf>
_BLOCK_KEY = re.compile(r"res(\d)\.(\d+)\.(conv\d|shortcut)\.(conv|norm)\.(\w+)$")


def torchvision_resnet_name(key: str) -> str:
    """torchvision's name of our backbone key (``res2.0.conv1.norm.weight`` -> ``layer1.0.bn1.weight``)."""
    if key == "stem.conv1.conv.weight":
        return "conv1.weight"
    if key.startswith("stem."):
        return key.replace("stem.conv1.norm.", "bn1.")
    stage, block, layer, kind, leaf = _BLOCK_KEY.match(key).groups()
    if layer == "shortcut":
        part = f"downsample.{0 if kind == 'conv' else 1}"
    else:
        part = layer if kind == "conv" else layer.replace("conv", "bn")
    return f"layer{int(stage) - 1}.{block}.{part}.{leaf}"
