"""Whether this PyTorch's INT8 transposed convolution computes what its float32 one does, on this CPU.

For the mask head's geometry (kernel 2, stride 2) some of PyTorch's INT8 kernels return numbers of the
size of the signal itself, not a rounding of it. Measured with torch 2.13 against float32 on random data
(relative error; int8 should give a few hundredths): on an AVX-512 / AMX Xeon, the x86 and onednn
engines give 0.02-0.03 for 256 input channels (an FPN mask head) but 1.4 for 512 and 2048 (a C4 mask
head reading res5: resnet18, resnet50), and the fbgemm engine 4.5-4.9 for any of them; on an AVX2 CPU
the x86 engine gave 1.5-5 for 256 channels too. So the answer is measured, per engine and geometry, on
the CPU at hand, never assumed from its instruction set. Such a layer is left in float32 when the model
is converted (``modeling.quantize.convert_int8``): its observers are kept, so an INT8 file is the same
whichever CPU wrote it, and each CPU decides for itself on loading.
"""


from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

__all__ = ["INT8_TOLERANCE", "int8_transposed_conv_error", "int8_transposed_conv_works"]

# int8 weights and activations keep a layer's output within a few percent of float32; a broken kernel
# is off by the output's own size
INT8_TOLERANCE = 0.1


@functools.cache
def _error(engine: str, in_channels: int, out_channels: int, kernel: tuple, stride: tuple):
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from maskrcnn.modeling.int8_qconfig import int8_qconfig_mapping

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
            prepared = prepare_fx(model, int8_qconfig_mapping(engine), (x,))
            with torch.no_grad():
                prepared(x)
                quantized = convert_fx(prepared)
                ref, out = model(x), quantized(x)
    except (RuntimeError, NotImplementedError, AssertionError):
        return None
    return float((out - ref).norm() / ref.norm().clamp(min=1e-12))


def int8_transposed_conv_error(layer: nn.ConvTranspose2d):
    """The current quantized engine's INT8 kernel for a transposed convolution of ``layer``'s geometry,
    against float32 on random data: relative error (a few hundredths when it works), or None when it
    cannot run. A few milliseconds on tiny tensors; kept per engine and geometry for the process: it is a
    fact about the CPU and the PyTorch build."""
    return _error(torch.backends.quantized.engine, int(layer.in_channels), int(layer.out_channels),
                  tuple(layer.kernel_size), tuple(layer.stride))


def int8_transposed_conv_works(layer: nn.ConvTranspose2d) -> bool:
    """Whether ``int8_transposed_conv_error(layer)`` is within ``INT8_TOLERANCE``."""
    error = int8_transposed_conv_error(layer)
    return error is not None and error < INT8_TOLERANCE
