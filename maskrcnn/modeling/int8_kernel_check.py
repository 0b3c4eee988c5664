"""Whether this PyTorch's INT8 transposed convolution computes what its float32 one does.

PyTorch's x86 quantized engine hands a ``ConvTranspose2d`` to fbgemm on CPUs without AVX-512, and there
its kernel for the mask head's geometry (kernel 2, stride 2, 8 or more channels) returns numbers of the
size of the signal itself, not a rounding of it (measured: relative error 1.5-5 against float32 with
torch 2.13 on an AVX2 CPU; 0.02 with kernel 3 or on AVX-512 CPUs, as int8 should be). Such a layer is
left in float32 when the model is converted (``modeling.quantize.convert_int8``): its observers are
kept, so an INT8 file is the same whichever CPU wrote it, and each CPU decides for itself on loading.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

__all__ = ["int8_transposed_conv_works"]

# int8 weights and activations keep a layer's output within a few percent of float32; a broken kernel
# is off by the output's own size
_TOLERANCE = 0.1


@functools.cache
def _works(engine: str, in_channels: int, out_channels: int, kernel: tuple, stride: tuple) -> bool:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    g = torch.Generator().manual_seed(0)
    layer = nn.utils.skip_init(nn.ConvTranspose2d, in_channels, out_channels, kernel, stride=stride)
    with torch.no_grad():  # no default init: the global RNG is not touched
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.1)
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * 0.1)
    model = nn.Sequential(layer).eval()
    x = torch.randn(2, in_channels, 5, 6, generator=g)
    try:  # fork_rng: whatever the quantization flow draws leaves the caller's RNG as it was
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")
            prepared = prepare_fx(model, get_default_qconfig_mapping(engine), (x,))
            with torch.no_grad():
                prepared(x)
                quantized = convert_fx(prepared)
                ref, out = model(x), quantized(x)
    except (RuntimeError, NotImplementedError, AssertionError):
        return False
    return bool(((out - ref).norm() / ref.norm().clamp(min=1e-12)) < _TOLERANCE)


def int8_transposed_conv_works(layer: nn.ConvTranspose2d) -> bool:
    """Whether the current quantized engine's INT8 kernel for a transposed convolution of ``layer``'s
    geometry agrees with float32 (a few milliseconds on tiny tensors; the answer is kept per engine and
    geometry for the process: it is a fact about the CPU and the PyTorch build)."""
    return _works(torch.backends.quantized.engine, int(layer.in_channels), int(layer.out_channels),
                  tuple(layer.kernel_size), tuple(layer.stride))
