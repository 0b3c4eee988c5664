"""``relu(conv(x) + residual)`` (or without the ReLU) in one pass, for residual blocks and FPN's
top-down additions at CPU inference: ``ConvAdd``, the module ``modeling.fuse.optimise_for_inference``
swaps in for a folded ``ConvNorm`` whose output is summed with a residual.

A ResNet block ends with a convolution whose output is added to the block's input and rectified. Done
as three operations, the convolution writes its output, the addition reads it back with the residual
and writes a third tensor, and the ReLU passes over it again: at 200 x 272 x 256 (res2 of an 800-pixel
image) that is ~55 MB per pass. oneDNN can add the residual and apply the ReLU while the convolution's
output is still in registers ("post-ops"); PyTorch exposes that kernel as
``torch.ops.mkldnn._convolution_pointwise.binary`` (the operator its own compiler emits for this
pattern). It is an internal operator, so ``fused_kernel_works()`` checks it against the plain
computation when a model is optimised, and the ``ConvAdd`` modules hold that verdict; they call the
kernel only where it is exactly the same computation: float32 CPU tensors in channels_last, no
autograd, no autocast. Everything else takes the plain path.

Shapes: x (N, Cin, H, W); conv output and residual (N, Cout, H', W').
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConvAdd", "fused_kernel_works"]


def _fused(x: Tensor, conv: nn.Conv2d, residual: Tensor, relu: bool) -> Tensor:
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, residual, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation),
        conv.groups, "add", None, "relu" if relu else None, [], "",
    )


def _plain(x: Tensor, conv: nn.Module, residual: Tensor, relu: bool) -> Tensor:
    out = conv(x) + residual
    return F.relu(out, inplace=True) if relu else out


@torch.no_grad()
def fused_kernel_works() -> bool:
    """Whether this PyTorch build has the fused kernel and it computes what the plain path does (a few
    milliseconds on tiny tensors; the caller keeps the answer)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")):
        return False
    cl = torch.channels_last
    g = torch.Generator().manual_seed(0)
    # float32 whatever torch.get_default_dtype() says: the kernel is float32 only, and a float64 default
    # (a caller's) must not give a model optimised under it another verdict, so other float rounding
    f32 = torch.float32
    conv = nn.utils.skip_init(nn.Conv2d, 8, 16, 1, dtype=f32)  # no default init: the global RNG untouched
    conv.weight.copy_(torch.randn(conv.weight.shape, generator=g, dtype=f32))
    conv.bias.copy_(torch.randn(conv.bias.shape, generator=g, dtype=f32))
    conv = conv.to(memory_format=cl)
    x = torch.randn(2, 8, 5, 7, generator=g, dtype=f32).contiguous(memory_format=cl)
    res = torch.randn(2, 16, 5, 7, generator=g, dtype=f32).contiguous(memory_format=cl)
    try:
        return all(
            bool(torch.allclose(_fused(x, conv, res, relu), _plain(x, conv, res, relu), rtol=1e-5, atol=1e-6))
            for relu in (False, True)
        )
    except (RuntimeError, TypeError, AttributeError, NotImplementedError):
        return False


def _can_fuse(x: Tensor, conv: nn.Conv2d, residual: Tensor) -> bool:
    cl = torch.channels_last
    return (
        x.device.type == "cpu"
        and x.dtype == residual.dtype == conv.weight.dtype == torch.float32
        and x.dim() == 4
        and x.is_contiguous(memory_format=cl)
        and residual.is_contiguous(memory_format=cl)
        and conv.weight.is_contiguous(memory_format=cl)
        and not torch.is_autocast_enabled("cpu")
        and not (torch.is_grad_enabled() and (x.requires_grad or residual.requires_grad
                                              or conv.weight.requires_grad))
        and residual.shape[0] == x.shape[0]
    )


class ConvAdd(nn.Module):
    """Inference replacement of a ``ConvNorm`` whose norm is folded and that has no ReLU of its own:
    ``forward(x) = conv(x)`` and ``add(x, residual, relu=...)`` as ``ConvNorm.add``, fused into one
    oneDNN kernel where that is safe. Same state-dict keys (``conv.weight``, ``conv.bias``).

    Args:
        conv: the folded convolution (a plain ``nn.Conv2d`` with zero padding given as numbers).
        fused: whether the fused kernel may be used (``fused_kernel_works()``'s verdict).
    """

    def __init__(self, conv: nn.Conv2d, *, fused: bool):
        super().__init__()
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"ConvAdd: needs a plain zero-padded Conv2d, got {conv}")
        self.conv = conv
        self.fused = bool(fused)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def add(self, x: Tensor, residual: Tensor, *, relu: bool) -> Tensor:
        """``conv(x) + residual``, rectified if ``relu``."""
        if self.fused and _can_fuse(x, self.conv, residual):
            return _fused(x, self.conv, residual, relu)
        return _plain(x, self.conv, residual, relu)

    def extra_repr(self) -> str:
        return f"fused={self.fused}"
