"""Inference-only rewrites of a built model: fold eval / frozen batch norm into the convolution before it,
switch the weights to channels_last (NHWC), which oneDNN's CPU convolutions and cuDNN's tensor-core
kernels run fastest in, and (on CPU) compute the 3x3 convolutions with Winograd's F(4x4, 3x3)
(``ops.winograd``). Outputs stay equal up to float rounding.

Shapes: C_out x C_in x kh x kw convolution weights; a norm layer is a per-channel affine map on C_out.

Folding: an inference-mode norm computes ``y = x * s + t`` per channel (``s = w / sqrt(var + eps)``,
``t = b - mean * s``), so ``norm(conv(x)) = conv'(x)`` with ``W' = W * s`` (per output channel) and
``b' = b * s + t``. The norm is then replaced by ``nn.Identity``. The model is changed in place and
must not be trained afterwards (the batch statistics are gone).
"""

from __future__ import annotations

import torch
from torch import nn

from maskrcnn.ops.winograd import WinogradConv2d, winograd_eligible

__all__ = ["optimise_for_inference", "fold_conv_norm", "norm_affine", "use_winograd"]


def _is_foldable_norm(m: nn.Module) -> bool:
    """A per-channel affine map at inference: eval BatchNorm with running statistics, or frozen BN
    (GroupNorm depends on the input, so it is never folded)."""
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        # Only with running statistics: in training mode (or without them) the batch decides the affine.
        return (not m.training) and m.track_running_stats and m.running_mean is not None
    return "FrozenBatchNorm" in type(m).__name__


@torch.no_grad()
def norm_affine(norm: nn.Module, channels: int, *, dtype=torch.float64) -> tuple:
    """Per-channel ``(scale, shift)`` (C,) of an inference-mode norm layer, measured by applying it to
    zeros and ones: this works for any per-channel affine norm (BatchNorm2d in eval mode, FrozenBatchNorm2d
    with whatever buffers it keeps) without depending on its parameter names."""
    ref = next(iter(norm.buffers()), None)
    device = ref.device if ref is not None else "cpu"
    work_dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    probe = torch.stack([torch.zeros(channels), torch.ones(channels)]).to(device, work_dtype)  # (2, C)
    out = norm(probe[:, :, None, None])[:, :, 0, 0].to(dtype)  # (2, C, 1, 1) -> (2, C)
    return out[1] - out[0], out[0]


@torch.no_grad()
def fold_conv_norm(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """Fold ``norm`` into ``conv`` in place (conv gains a bias if it had none) and return ``conv``."""
    if getattr(conv, "transposed", False):
        raise ValueError("fold_conv_norm: transposed convolutions are not supported")
    scale, shift = norm_affine(norm, conv.out_channels)
    w = conv.weight
    # Folding in float64 keeps the rounding of the folded weights below that of the float32 forward.
    new_w = w.double() * scale.to(w.device)[:, None, None, None]  # (C_out, C_in/g, kh, kw) * (C_out, 1, 1, 1)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale, device=w.device)
    new_b = bias * scale.to(w.device) + shift.to(w.device)
    conv.weight.copy_(new_w.to(w.dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(new_b.to(w.dtype), requires_grad=False)
    else:
        conv.bias.copy_(new_b.to(w.dtype))
    return conv


def _fold_children(module: nn.Module) -> int:
    """Fold conv -> norm pairs below ``module``; returns how many were folded.

    Recognised: a module with a ``fuse()`` method and a foldable ``norm`` (the library's ConvNorm folds
    itself), attribute pairs ``convN`` / ``bnN`` or ``normN`` (ResNet blocks written the torchvision
    way) and consecutive conv, norm entries of an ``nn.Sequential``."""
    folded = 0
    for name, child in list(module.named_children()):
        fuse = getattr(child, "fuse", None)
        norm = getattr(child, "norm", None)
        if callable(fuse) and isinstance(norm, nn.Module) and _is_foldable_norm(norm):
            replaced = fuse()  # may fold in place (returning None / itself) or return a new module
            if isinstance(replaced, nn.Module) and replaced is not child:
                setattr(module, name, replaced)
            folded += 1
            continue
        folded += _fold_children(child)

    # Attribute pairs: conv1/bn1, conv/norm, conv_a/norm_a, ...
    children = dict(module.named_children())
    for name, child in children.items():
        if not isinstance(child, nn.Conv2d):
            continue
        suffix = name[len("conv") :] if name.startswith("conv") else None
        if suffix is None:
            continue
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
def use_winograd(module: nn.Module, *, min_channels: int = 128) -> int:
    """Replace every eligible 3x3 convolution below ``module`` by a ``WinogradConv2d`` (same parameters);
    returns how many were replaced. Convolutions followed by a norm must be folded first."""
    replaced = 0
    for name, child in list(module.named_children()):
        if winograd_eligible(child, min_channels=min_channels):
            setattr(module, name, WinogradConv2d(child))
            replaced += 1
        else:
            replaced += use_winograd(child, min_channels=min_channels)
    return replaced


@torch.no_grad()
def optimise_for_inference(
    model: nn.Module, *, fold_bn: bool = True, channels_last: bool = True, winograd=None
) -> nn.Module:
    """Put ``model`` in eval mode, fold its norm layers into convolutions, use channels_last weights
    and Winograd 3x3 convolutions.

    winograd: True / False, or None for "when the model is on the CPU" (on CUDA, cuDNN chooses its own
    algorithms). Changes ``model`` in place and returns it. ``model.folded_norms`` and
    ``model.winograd_convs`` record how many norms were folded and convolutions replaced (0 is
    legitimate for a model without norm layers)."""
    model.eval()
    folded = _fold_children(model) if fold_bn else 0
    if channels_last:
        # 4-D weights only; the conv output follows the weight's memory format, so the whole
        # backbone / FPN / heads chain stays NHWC without converting the input batch.
        model.to(memory_format=torch.channels_last)
    if winograd is None:
        first = next(iter(model.parameters()), None)
        winograd = first is not None and first.device.type == "cpu"
    # after folding: a Winograd conv's kernel is transformed once, so the norm must already be in it
    model.winograd_convs = use_winograd(model) if winograd else 0
    model.folded_norms = folded
    for p in model.parameters():
        p.requires_grad_(False)
    return model
