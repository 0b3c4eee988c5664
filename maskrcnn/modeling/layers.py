"""Building blocks shared by the backbone, FPN and heads: frozen batch norm, conv + norm, norm factory.

Shapes: N images, C channels, H x W spatial size.

Plain PyTorch only: inference rewrites (folding a norm into its convolution, fused kernels) are
``modeling.fuse.optimise_for_inference``'s job, which swaps modules in.

State-dict keys of a ``ConvNorm`` named ``<name>``: ``<name>.conv.weight`` (``<name>.conv.bias`` only
when there is no norm) and ``<name>.norm.{weight,bias,running_mean,running_var}`` (plain BatchNorm
adds ``num_batches_tracked``). ``FrozenBatchNorm2d`` silently drops a ``num_batches_tracked`` entry
when loading, so state dicts written with plain BatchNorm load into frozen models and back.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("none", "frozen_bn", "bn", "gn")


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (all buffers, never trained).

    ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias``; torchvision's published v1
    COCO weights need ``eps=0``, everything else uses ``1e-5``.
    """

    def __init__(self, num_features: int, *, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A frozen norm has no batch counter; accept checkpoints written with a plain BatchNorm2d.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def scale_shift(self) -> tuple:
        """The per-channel affine map this norm computes: ``y = x * scale + shift`` (both (C,))."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale_shift()
        # (C,) -> (1, C, 1, 1) to broadcast over N, H, W
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def get_norm(name: str, channels: int, eps: float = 1e-5) -> Optional[nn.Module]:
    """``none`` -> None, ``frozen_bn`` -> FrozenBatchNorm2d, ``bn`` -> BatchNorm2d, ``gn`` -> GroupNorm."""
    if name in ("none", "", None):
        return None
    if name == "frozen_bn":
        return FrozenBatchNorm2d(channels, eps=eps)
    if name == "bn":
        return nn.BatchNorm2d(channels, eps=eps)
    if name == "gn":
        from maskrcnn.config import GN_GROUPS  # the config check refuses a width it does not divide

        return nn.GroupNorm(GN_GROUPS, channels, eps=eps)
    raise ValueError(f"unknown norm {name!r}; expected one of {', '.join(NORMS)}")


class ConvNorm(nn.Module):
    """Conv2d, optional norm, optional ReLU. The conv has a bias only when there is no norm."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: Optional[int] = None,
        dilation: int = 1,
        groups: int = 1,
        norm: str = "none",
        eps: float = 1e-5,
        relu: bool = False,
        bias: Optional[bool] = None,
    ):
        super().__init__()
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        norm_layer = get_norm(norm, out_channels, eps)
        if bias is None:
            bias = norm_layer is None
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding,
            dilation=dilation, groups=groups, bias=bias,
        )
        self.norm = norm_layer if norm_layer is not None else nn.Identity()
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frozen_norm = isinstance(self.norm, FrozenBatchNorm2d) and type(self.conv) is nn.Conv2d
        if frozen_norm and (self.training or torch.is_grad_enabled()):
            # A frozen norm is a per-channel affine map: training convolves with the scaled kernel and
            # adds the shift as the bias (norm(conv(x, W)) = conv(x, W * scale) + shift), which saves
            # two passes over the activations forward and one backward; the kernel's gradient flows
            # through the scaling. The frozen stages of a training model are in eval mode but run
            # under autograd: they take this path too (a multiply and an add over each output saved).
            # Inference (no autograd) runs the model as built; modeling.fuse folds the norm once.
            scale, shift = self.norm.scale_shift()  # (C_out,) each
            weight = self.conv.weight * scale.view(-1, 1, 1, 1).to(self.conv.weight.dtype)
            bias = shift if self.conv.bias is None else self.conv.bias * scale + shift
            x = self.conv._conv_forward(x, weight, bias.to(weight.dtype))
        else:
            x = self.norm(self.conv(x))
        return F.relu(x, inplace=True) if self.relu else x

    def add(self, x: torch.Tensor, residual: torch.Tensor, *, relu: bool) -> torch.Tensor:
        """``self(x) + residual``, rectified if ``relu`` (the end of a residual block, FPN's top-down sum).
        The layer's own ``relu`` flag must be off: the ReLU comes after the sum. (At CPU inference
        ``optimise_for_inference`` swaps in ``ops.fused_conv.ConvAdd``, which does this in one kernel.)"""
        if self.relu:
            raise ValueError("ConvNorm.add: this layer applies its ReLU before any sum")
        out = self(x) + residual
        return F.relu(out, inplace=True) if relu else out
