"""ResNet / ResNeXt backbones returning a dict of features with known strides.

Shapes: N images, 3 x H x W input (normalised, padded to a multiple of 32); outputs
``res2`` (N, C2, H/4, W/4), ``res3`` (H/8), ``res4`` (H/16), ``res5`` (H/32) where C2..C5 are
256, 512, 1024, 2048 for bottleneck nets and 64, 128, 256, 512 for ResNet-18/34.

State-dict keys (see docs/checkpoints.md): ``stem.conv1.{conv,norm}.*``, then per stage
``res{2..5}.{block}.conv{1,2,3}.{conv,norm}.*`` and ``res{k}.0.shortcut.{conv,norm}.*``.
The stride of a bottleneck sits on the 3x3 conv (torchvision, "ResNet v1.5"); ``stride_in_1x1``
moves it to the first 1x1 conv (the original MSRA weights that detectron2 uses).

C4 design (the paper's): ``ResNet(..., num_stages=3)`` stops at res4 (stride 16) and
``make_stage(stage=5, ...)`` builds res5 to run on pooled RoIs as the box head.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from maskrcnn.modeling.layers import ConvNorm

# name -> (block kind, blocks per stage res2..res5, groups, width per group)
ARCHS = {
    "resnet18": ("basic", (2, 2, 2, 2), 1, 64),
    "resnet34": ("basic", (3, 4, 6, 3), 1, 64),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1, 64),
    "resnet101": ("bottleneck", (3, 4, 23, 3), 1, 64),
    "resnet152": ("bottleneck", (3, 8, 36, 3), 1, 64),
    "resnext50_32x4d": ("bottleneck", (3, 4, 6, 3), 32, 4),
    "resnext101_32x4d": ("bottleneck", (3, 4, 23, 3), 32, 4),  # MMDetection's zoo x101_32x4d
    "resnext101_32x8d": ("bottleneck", (3, 4, 23, 3), 32, 8),
}

STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, planes: int, *, stride: int, norm: str, eps: float, **_):
        super().__init__()
        out = planes
        self.conv1 = ConvNorm(in_channels, planes, 3, stride=stride, norm=norm, eps=eps, relu=True)
        self.conv2 = ConvNorm(planes, out, 3, norm=norm, eps=eps)
        self.shortcut = (
            ConvNorm(in_channels, out, 1, stride=stride, norm=norm, eps=eps)
            if stride != 1 or in_channels != out else None
        )

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.conv2.add(self.conv1(x), identity, relu=True)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self, in_channels: int, planes: int, *, stride: int, norm: str, eps: float,
        groups: int = 1, width_per_group: int = 64, stride_in_1x1: bool = False,
    ):
        super().__init__()
        width = int(planes * width_per_group / 64) * groups
        out = planes * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(in_channels, width, 1, stride=s1, norm=norm, eps=eps, relu=True)
        self.conv2 = ConvNorm(width, width, 3, stride=s3, groups=groups, norm=norm, eps=eps, relu=True)
        self.conv3 = ConvNorm(width, out, 1, norm=norm, eps=eps)
        self.shortcut = (
            ConvNorm(in_channels, out, 1, stride=stride, norm=norm, eps=eps)
            if stride != 1 or in_channels != out else None
        )

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.conv3.add(self.conv2(self.conv1(x)), identity, relu=True)


def msra_init(module: nn.Module) -> nn.Module:
    """He init (normal, fan_out) of every conv, as torchvision's ResNet and detectron2's c2_msra_fill;
    PyTorch's default conv init is too small for training from scratch."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def stage_channels(arch: str) -> dict:
    """Output channels of res2..res5 for ``arch``."""
    kind = _arch(arch)[0]
    expansion = 4 if kind == "bottleneck" else 1
    return {f"res{k}": 64 * 2 ** (k - 2) * expansion for k in range(2, 6)}


def _arch(arch: str) -> tuple:
    if arch not in ARCHS:
        raise ValueError(f"unknown backbone {arch!r}; expected one of {', '.join(ARCHS)}")
    return ARCHS[arch]


def make_stage(
    *, arch: str, stage: int, norm: str, eps: float, stride_in_1x1: bool = False,
    in_channels: int = None,
) -> nn.Sequential:
    """Stage ``res{stage}`` (2..5) of ``arch``: a Sequential of blocks (keys ``{i}.conv1...``)."""
    kind, blocks, groups, width_per_group = _arch(arch)
    block = Bottleneck if kind == "bottleneck" else BasicBlock
    planes = 64 * 2 ** (stage - 2)
    if in_channels is None:
        in_channels = 64 if stage == 2 else planes // 2 * block.expansion
    layers = []
    for i in range(blocks[stage - 2]):
        stride = 2 if (i == 0 and stage > 2) else 1
        layers.append(block(
            in_channels, planes, stride=stride, norm=norm, eps=eps, groups=groups,
            width_per_group=width_per_group, stride_in_1x1=stride_in_1x1,
        ))
        in_channels = planes * block.expansion
    return msra_init(nn.Sequential(*layers))


class Stem(nn.Module):
    """7x7 stride-2 conv + norm + ReLU, 3x3 stride-2 max pool: stride 4."""

    def __init__(self, *, norm: str, eps: float):
        super().__init__()
        self.conv1 = ConvNorm(3, 64, 7, stride=2, padding=3, norm=norm, eps=eps, relu=True)
        msra_init(self)

    def forward(self, x):
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)


class ResNet(nn.Module):
    """ResNet body: ``forward(x) -> {"res2": ..., ..., "res{num_stages+1}": ...}``.

    ``freeze_at``: 0 trains everything, 1 freezes the stem, k freezes the stem and res2..res{k}.
    Frozen parts get ``requires_grad=False`` and their plain BatchNorms stay in eval mode.
    """

    def __init__(
        self, *, arch: str = "resnet50", norm: str = "frozen_bn", eps: float = 1e-5, freeze_at: int = 2,
        num_stages: int = 4, stride_in_1x1: bool = False,
    ):
        super().__init__()
        self.arch = arch
        self.stem = Stem(norm=norm, eps=eps)
        self.stage_names = [f"res{k}" for k in range(2, 2 + num_stages)]
        for k in range(2, 2 + num_stages):
            setattr(self, f"res{k}", make_stage(
                arch=arch, stage=k, norm=norm, eps=eps, stride_in_1x1=stride_in_1x1))
        channels = stage_channels(arch)
        self.out_channels = {name: channels[name] for name in self.stage_names}
        self.strides = {name: STRIDES[name] for name in self.stage_names}
        self.freeze_at = freeze_at
        for module in self._frozen_modules():
            for p in module.parameters():
                p.requires_grad_(False)

    def _frozen_modules(self) -> list:
        names = ["stem"] + [f"res{k}" for k in range(2, 6)]
        return [getattr(self, n) for n in names[: self.freeze_at] if hasattr(self, n)]

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()  # frozen stages keep their running statistics
        return self

    def forward(self, x):
        out = {}
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            out[name] = x
        return out
