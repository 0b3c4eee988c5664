"""Inference-only rewrites of a built model, the one seam for speed-ups: ``build_model`` returns plain
PyTorch, and ``optimise_for_inference`` swaps modules in. Outputs stay equal up to float rounding.

1. Fold eval / frozen batch norm into the convolution before it (``fold_conv_norm``, the only folder).
2. Switch the weights to channels_last (NHWC), which oneDNN's CPU convolutions and cuDNN's tensor-core
   kernels run fastest in.
3. (CPU) Compute the 3x3 convolutions of 128+ channels with Winograd's F(4x4, 3x3): ``WinogradConv2d``
   (``ops.winograd``).
4. (CPU) Replace each folded ``ConvNorm`` without a ReLU of its own, whose output residual blocks and
   FPN's top-down path sum with a residual, by ``ConvAdd`` (``ops.fused_conv``): the sum (and ReLU)
   inside oneDNN's convolution. The kernel's self-test runs here; its verdict is held by the modules.
5. (CPU) Where ``torch.mm`` is clearly slower than oneDNN's matrix product (``ops.gemm_rates``: AMD CPUs
   with AVX-512, where MKL takes its AVX2 path), run Winograd's 36 products on oneDNN too, for the 3x3
   convolutions of 256+ channels outside the mask / keypoint heads, whose 14 x 14 RoIs waste the tiles
   (on ``torch.bmm`` the products were slower than oneDNN's direct convolution),
   and compute the linear layers by oneDNN (``OneDnnLinear``, ``ops.onednn_linear``). The rate is
   measured once per process, when the first model is optimised.

Shapes: C_out x C_in x kh x kw convolution weights; a norm layer is a per-channel affine map on C_out.

Folding: an inference-mode norm computes ``y = x * s + t`` per channel (``s = w / sqrt(var + eps)``,
``t = b - mean * s``), so ``norm(conv(x)) = conv'(x)`` with ``W' = W * s`` (per output channel) and
``b' = b * s + t``. The norm is then replaced by ``nn.Identity``. The model is changed in place and
must not be trained afterwards (the batch statistics are gone): optimise a copy of a model in training.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from maskrcnn.modeling.layers import ConvNorm
from maskrcnn.ops.fused_conv import ConvAdd, fused_kernel_works
from maskrcnn.ops.gemm_rates import matmul_lags_onednn
from maskrcnn.ops.onednn_linear import OneDnnLinear, onednn_linear_available
from maskrcnn.ops.winograd import WinogradConv2d, tiles_use_enough, winograd_eligible

__all__ = ["optimise_for_inference", "fold_conv_norm", "norm_affine", "use_winograd", "use_fused_add",
           "use_onednn_linear"]


def _is_foldable_norm(m: nn.Module) -> bool:
    """A per-channel affine map at inference: eval BatchNorm with running statistics, or frozen BN
    (GroupNorm depends on the input, so it is never folded)."""
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        # Only with running statistics: in training mode (or without them) the batch decides the affine.
        return (not m.training) and m.track_running_stats and m.running_mean is not None
    return "FrozenBatchNorm" in type(m).__name__


@torch.no_grad()
def norm_affine(norm: nn.Module, *, dtype=torch.float64) -> tuple:
    """Per-channel ``(scale, shift)`` (C,) of an inference-mode batch norm (``BatchNorm2d`` in eval mode,
    this library's or torchvision's ``FrozenBatchNorm2d``), from its statistics, computed in ``dtype``:
    ``scale = weight / sqrt(running_var + eps)``, ``shift = bias - running_mean * scale``."""
    if not _is_foldable_norm(norm):
        raise ValueError(f"cannot fold {type(norm).__name__} (training-mode or batch-dependent norm)")
    mean = norm.running_mean.to(dtype)
    scale = (norm.running_var.to(dtype) + float(norm.eps)).rsqrt()
    if norm.weight is not None:  # BatchNorm2d(affine=False) has neither weight nor bias
        scale = scale * norm.weight.to(dtype)
    shift = -mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias.to(dtype)
    return scale, shift


@torch.no_grad()
def fold_conv_norm(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """Fold ``norm`` into ``conv`` in place (conv gains a bias if it had none) and return ``conv``."""
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"fold_conv_norm: needs an nn.Conv2d, got {type(conv).__name__}")
    # Folding in float64 keeps the rounding of the folded weights below that of the float32 forward.
    scale, shift = (v.to(conv.weight.device) for v in norm_affine(norm))
    w = conv.weight
    new_w = w.double() * scale[:, None, None, None]  # (C_out, C_in/g, kh, kw) * (C_out, 1, 1, 1)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    new_b = bias * scale + shift
    w.copy_(new_w.to(w.dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(new_b.to(w.dtype), requires_grad=False)
    else:
        conv.bias.copy_(new_b.to(w.dtype))
    return conv


def _fold_children(module: nn.Module) -> int:
    """Fold conv -> norm pairs below ``module``; returns how many were folded.

    Recognised: attribute pairs ``conv`` / ``norm`` (the library's ``ConvNorm``), ``convN`` / ``bnN``
    or ``normN`` (ResNet blocks written the torchvision way), and consecutive conv, norm entries of an
    ``nn.Sequential``."""
    folded = sum(_fold_children(child) for child in module.children())
    children = dict(module.named_children())
    for name, child in children.items():
        if not (isinstance(child, nn.Conv2d) and name.startswith("conv")):
            continue
        suffix = name[len("conv") :]
        for norm_name in (f"bn{suffix}", f"norm{suffix}"):
            norm = children.get(norm_name)
            if norm is not None and _is_foldable_norm(norm):
                fold_conv_norm(child, norm)
                setattr(module, norm_name, nn.Identity())
                folded += 1
                break
    if isinstance(module, nn.Sequential):
        items = list(module._modules.items())
        for (_, a), (name_b, b) in zip(items, items[1:]):
            if isinstance(a, nn.Conv2d) and _is_foldable_norm(b):
                fold_conv_norm(a, b)
                module._modules[name_b] = nn.Identity()
                folded += 1
    return folded


@torch.no_grad()
def use_winograd(module: nn.Module, *, min_channels: int = 128, onednn_products: bool = False,
                 skip: tuple = ()) -> int:
    """Replace every eligible 3x3 convolution below ``module`` by a ``WinogradConv2d`` (same parameters),
    its products on oneDNN with ``onednn_products``, except below the modules in ``skip``; returns how
    many were replaced. Convolutions followed by a norm must be folded first."""
    replaced = 0
    for name, child in list(module.named_children()):
        if any(child is s for s in skip):
            continue
        if winograd_eligible(child, min_channels=min_channels):
            setattr(module, name, WinogradConv2d(child, onednn_products=onednn_products))
            replaced += 1
        else:
            replaced += use_winograd(child, min_channels=min_channels, onednn_products=onednn_products,
                                     skip=skip)
    return replaced


def roi_heads_on_wasteful_tiles(model: nn.Module) -> tuple:
    """The mask / keypoint heads whose maps have their pooler's fixed size, where Winograd's tiles with
    the products on oneDNN always lose to the direct convolution (14 x 14: ``ops.winograd``): replacing
    their convolutions would only hold transformed kernels never read (~300 MB for a keypoint head)."""
    roi_heads = getattr(model, "roi_heads", None)
    heads = []
    for pooler_name, head_name in (("mask_pooler", "mask_head"), ("keypoint_pooler", "keypoint_head")):
        size = getattr(getattr(roi_heads, pooler_name, None), "output_size", None)
        head = getattr(roi_heads, head_name, None)
        if head is not None and size is not None and not tiles_use_enough(*size):
            heads.append(head)
    return tuple(heads)


def use_fused_add(module: nn.Module, *, fused: bool) -> int:
    """Replace every folded ``ConvNorm`` without a ReLU of its own whose convolution is a plain
    ``nn.Conv2d`` (not one ``use_winograd`` replaced) by a ``ConvAdd`` holding ``fused``; returns how
    many were replaced."""
    replaced = 0
    for name, child in list(module.named_children()):
        if (
            isinstance(child, ConvNorm)
            and isinstance(child.norm, nn.Identity)
            and not child.relu
            and type(child.conv) is nn.Conv2d
            and child.conv.padding_mode == "zeros"
        ):
            setattr(module, name, ConvAdd(child.conv, fused=fused).train(child.training))
            replaced += 1
        else:
            replaced += use_fused_add(child, fused=fused)
    return replaced


def use_onednn_linear(module: nn.Module) -> int:
    """Replace every plain ``nn.Linear`` below ``module`` by a ``OneDnnLinear`` (same parameters);
    returns how many were replaced."""
    replaced = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear:
            setattr(module, name, OneDnnLinear(child))
            replaced += 1
        else:
            replaced += use_onednn_linear(child)
    return replaced


def _on_cpu(model: nn.Module) -> bool:
    first = next(iter(model.parameters()), None)
    return first is not None and first.device.type == "cpu"


@torch.no_grad()
def optimise_for_inference(
    model: nn.Module,
    *,
    fold_bn: bool = True,
    channels_last: bool = True,
    winograd: Optional[bool] = None,
    fused_add: Optional[bool] = None,
    onednn_linear: Optional[bool] = None,
) -> nn.Module:
    """Put ``model`` in eval mode, fold its norm layers into convolutions, use channels_last weights,
    Winograd 3x3 convolutions or oneDNN linear layers, and fused conv + residual additions.

    winograd, fused_add, onednn_linear: True / False, or None for "when the model is on the CPU" (on
    CUDA, cuDNN chooses its own algorithms; the fused kernel is oneDNN's), and for ``onednn_linear``
    also "where ``torch.mm`` lags oneDNN" (``ops.gemm_rates``), where Winograd's products run on oneDNN
    too (``model.winograd_products``: "onednn" or "bmm", None without Winograd convolutions).
    ``fused_add`` needs ``fold_bn`` and is used only where the kernel's self-test passes. Changes
    ``model`` in place and returns it. ``model.folded_norms``, ``model.winograd_convs``,
    ``model.fused_adds`` and ``model.onednn_linears`` record how many norms were folded and modules
    replaced (0 is legitimate, e.g. for a model without norm layers)."""
    model.eval()
    folded = _fold_children(model) if fold_bn else 0
    if channels_last:
        # 4-D weights only; the conv output follows the weight's memory format, so the whole
        # backbone / FPN / heads chain stays NHWC without converting the input batch.
        model.to(memory_format=torch.channels_last)
    on_cpu = _on_cpu(model)
    blas_lags = False  # measured only where it decides something (the GPU path never measures the CPU)
    if on_cpu and (winograd is not False or onednn_linear is None):
        blas_lags = matmul_lags_onednn() and onednn_linear_available()
    if winograd is None:
        winograd = on_cpu
    if onednn_linear is None:
        onednn_linear = blas_lags
    # after folding: a Winograd conv's kernel is transformed once, so the norm must already be in it.
    # With its products on oneDNN Winograd pays from 256 channels (ops.winograd's measurements)
    min_channels = 256 if blas_lags else 128
    skip = roi_heads_on_wasteful_tiles(model) if blas_lags else ()  # 14 x 14 RoIs: direct convolution
    model.winograd_convs = (use_winograd(model, min_channels=min_channels, onednn_products=blas_lags,
                                         skip=skip) if winograd else 0)
    model.winograd_products = ("onednn" if blas_lags else "bmm") if model.winograd_convs else None
    model.onednn_linears = use_onednn_linear(model) if onednn_linear and onednn_linear_available() else 0
    fused_add = (on_cpu if fused_add is None else fused_add) and fold_bn and fused_kernel_works()
    # after Winograd: a 3x3 sum-conv it took keeps its plain addition (Winograd is the bigger win)
    model.fused_adds = use_fused_add(model, fused=True) if fused_add else 0
    model.folded_norms = folded
    for p in model.parameters():
        p.requires_grad_(False)
    return model
