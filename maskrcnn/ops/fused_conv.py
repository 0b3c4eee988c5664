"""``relu(conv(x) + residual)`` (or without the ReLU) in one pass, for residual blocks and FPN's
top-down additions at CPU inference.

A ResNet block ends with a convolution whose output is added to the block's input and rectified. Done
as three operations, the convolution writes its output, the addition reads it back with the residual
and writes a third tensor, and the ReLU passes over it again: at 200 x 272 x 256 (res2 of an 800-pixel
image) that is ~55 MB per pass. oneDNN can add the residual and apply the ReLU while the convolution's
output is still in registers ("post-ops"); PyTorch exposes that kernel as
``torch.ops.mkldnn._convolution_pointwise.binary`` (the operator its own compiler emits for this
pattern). It is an internal operator, so it is used only after a self-test against the plain
computation has passed once in this process, and only where it is exactly the same computation:
float32 CPU tensors in channels_last, no autograd, no autocast. Everything else takes the plain path.
Results are bitwise equal to the plain path in the self-test (same convolution, same additions).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["conv_add", "fused_conv_add_available"]

_AVAILABLE: Optional[bool] = None  # decided by the first call of fused_conv_add_relu_available()


def _fused(x: Tensor, conv: nn.Conv2d, residual: Tensor, relu: bool) -> Tensor:
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, residual, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation),
        conv.groups, "add", None, "relu" if relu else None, [], "",
    )


def _plain(x: Tensor, conv: nn.Module, residual: Tensor, relu: bool) -> Tensor:
    out = conv(x) + residual
    return F.relu(out, inplace=True) if relu else out


def fused_conv_add_available() -> bool:
    """Whether this PyTorch build has the fused kernel and it computes what the plain path does."""
    global _AVAILABLE
    if _AVAILABLE is None:
        _AVAILABLE = False
        if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
            try:
                g = torch.Generator().manual_seed(0)
                conv = nn.Conv2d(8, 16, 1).to(memory_format=torch.channels_last)
                cl = torch.channels_last
                x = torch.randn(2, 8, 5, 7, generator=g).contiguous(memory_format=cl)
                res = torch.randn(2, 16, 5, 7, generator=g).contiguous(memory_format=cl)
                with torch.no_grad():
                    _AVAILABLE = all(
                        bool(torch.allclose(_fused(x, conv, res, relu), _plain(x, conv, res, relu),
                                            rtol=1e-5, atol=1e-6))
                        for relu in (False, True)
                    )
            except (RuntimeError, TypeError, AttributeError, NotImplementedError):
                _AVAILABLE = False
    return _AVAILABLE


def _can_fuse(x: Tensor, conv: nn.Module, residual: Tensor) -> bool:
    cl = torch.channels_last
    return (
        type(conv) is nn.Conv2d
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and x.device.type == "cpu"
        and x.dtype == residual.dtype == conv.weight.dtype == torch.float32
        and x.dim() == 4
        and x.is_contiguous(memory_format=cl)
        and residual.is_contiguous(memory_format=cl)
        and conv.weight.is_contiguous(memory_format=cl)
        and not torch.is_autocast_enabled("cpu")
        and not (torch.is_grad_enabled() and (x.requires_grad or residual.requires_grad
                                              or conv.weight.requires_grad))
        and residual.shape[0] == x.shape[0]
        and fused_conv_add_available()
    )


def conv_add(x: Tensor, conv: nn.Module, residual: Tensor, *, relu: bool) -> Tensor:
    """``conv(x) + residual``, rectified if ``relu``; x (N, Cin, H, W), residual of the conv's output
    shape (N, Cout, H', W'). Fused into the convolution where that is safe (see the module docstring)."""
    if _can_fuse(x, conv, residual):
        return _fused(x, conv, residual, relu)
    return _plain(x, conv, residual, relu)
