"""A fully connected layer computed by oneDNN's matmul instead of ``torch.mm``'s BLAS, on CPUs where the
BLAS is the slower of the two (``ops.gemm_rates``): the box head's fc6, (R, 12544) @ (12544, 1024) for
R = 1000 proposals, takes 140 ms through MKL and 70 ms through oneDNN on an AMD EPYC with AVX-512
(forward and backward at training, R = 1024: 519 against 240 ms), with the same float32 result up to
summation order (~1e-6 relative).

PyTorch exposes oneDNN's linear as ``torch.ops.mkldnn._linear_pointwise`` (the operator its own
compiler emits for linear layers on the CPU). It is internal, so ``OneDnnLinear`` calls it only for
what it is known to compute exactly like ``F.linear``: float32 CPU tensors, no autocast, and not while a
graph is traced or exported (an exported graph holds plain ``Linear`` operators); everything else takes
``F.linear``. With autograd (training) the backward's two products are oneDNN linears too:
``grad_x = grad_y @ W`` and ``grad_W = grad_y^T @ x``, on transposed views (no copies).

Shapes: x (..., F_in) -> (..., F_out); weight (F_out, F_in), bias (F_out,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["OneDnnLinear", "onednn_linear_available", "plain_linears"]


def onednn_linear_available() -> bool:
    """Whether this PyTorch build has oneDNN's linear operator."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn(x: Tensor, weight: Tensor, bias) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDnnLinearFn(torch.autograd.Function):
    """y = x W^T + b for 2-D x (R, F_in), forward and backward by oneDNN."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable  # no second derivative: refused, not wrong
    def backward(ctx, grad_out: Tensor):
        x, weight = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad
        # (R, F_out) @ (F_out, F_in): a linear whose weight (F_in, F_out) is W's transposed view
        grad_x = _onednn(grad_out, weight.t(), None) if need_x else None
        # (F_out, R) @ (R, F_in): a linear of grad_out^T whose weight (F_in, R) is x's transposed view
        grad_w = _onednn(grad_out.t(), x.t(), None) if need_w else None
        grad_b = grad_out.sum(0) if (need_b and ctx.has_bias) else None
        return grad_x, grad_w, grad_b


def _in_graph_capture() -> bool:
    compiling = getattr(torch.compiler, "is_compiling", lambda: False)
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export() or compiling()


class OneDnnLinear(nn.Module):
    """Inference replacement of an ``nn.Linear``: the same ``weight`` / ``bias`` parameters (and
    state-dict keys), computed by oneDNN where that is the same computation (see the module docstring).
    ``modeling.fuse.use_onednn_linear`` swaps it in (for inference by ``optimise_for_inference``, for
    training by ``engine.training.place_for_training``); ``plain_linears`` swaps it back."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        if type(linear) is not nn.Linear:
            raise ValueError(f"OneDnnLinear: needs an nn.Linear, got {type(linear).__name__}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias

    def _use_onednn(self, x: Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype == self.weight.dtype == torch.float32
            and (self.bias is None or self.bias.dtype == torch.float32)
            and not torch.is_autocast_enabled("cpu")
            and not _in_graph_capture()
        )

    def forward(self, x: Tensor) -> Tensor:
        if self._use_onednn(x):
            params = (self.weight, self.bias) if self.bias is not None else (self.weight,)
            if not (torch.is_grad_enabled() and any(t.requires_grad for t in (x, *params))):
                return _onednn(x, self.weight, self.bias)
            if x.dim() == 2 and x.shape[0] > 0:  # oneDNN has no product over zero rows (grad_W)
                return _OneDnnLinearFn.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)

    def as_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` holding the same parameters (for INT8 quantization, which maps
        ``nn.Linear`` by type)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device="meta")  # no init: the parameters come next
        linear.weight = self.weight
        linear.bias = self.bias
        return linear

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN"


def plain_linears(module: nn.Module) -> int:
    """Swap every ``OneDnnLinear`` below ``module`` back to a plain ``nn.Linear``; returns how many."""
    swapped = 0
    for name, child in list(module.named_children()):
        if isinstance(child, OneDnnLinear):
            setattr(module, name, child.as_linear())
            swapped += 1
        else:
            swapped += plain_linears(child)
    return swapped
