"""Which of this CPU's two float32 matrix-product engines is faster: PyTorch's ``torch.mm`` (the BLAS the
build links, Intel's MKL on x86) or oneDNN (the library behind PyTorch's CPU convolutions).

Why it matters: on most CPUs the two run at about the same rate, but on AMD CPUs with AVX-512 (EPYC
Zen 4 / Zen 5) MKL takes its AVX2 code path while oneDNN uses AVX-512, and ``torch.mm`` runs at a
third of oneDNN's rate (measured on a 2-core AMD EPYC VM with AVX-512: 121 against 391 GFLOP/s). There
the inference rewrites of ``modeling.fuse`` that lean on ``torch.mm`` / ``torch.bmm`` lose: Winograd's
36 small products are slower than oneDNN's direct 3x3 convolution, and the box head's fully connected
layers are faster through oneDNN's matmul (``ops.onednn_linear``).

``matmul_rate_ratio()`` measures it once per process and thread count (about 20 ms: the same
(2048 x 256) @ (256 x 256) product through both engines, best of several runs each), and
``matmul_lags_onednn()`` reads it against a margin that noise on a shared machine does not cross.
The environment variable ``MASKRCNN_MATMUL`` pins the answer instead of measuring it: ``blas`` (as if
``torch.mm`` kept pace: Winograd, plain linear layers) or ``onednn`` (as if it lagged), e.g. to make
runs on a machine near the margin take the same path every time.
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F

__all__ = ["matmul_rate_ratio", "matmul_lags_onednn", "best_seconds", "LAG_MARGIN", "PIN_VARIABLE"]

PIN_VARIABLE = "MASKRCNN_MATMUL"
_PINNED = {"blas": False, "onednn": True, "measure": None, "": None}

# oneDNN must be this many times faster than torch.mm before the fallbacks are taken: the ratio is
# ~1.0 where the BLAS is native to the CPU and ~2-3 where it is not, so a machine does not flip
# between the two answers from one process to the next
LAG_MARGIN = 1.5

_ratios: dict = {}  # torch.get_num_threads() -> measured ratio (a measurement, not configuration)


def best_seconds(fn, repeats: int) -> float:
    """The shortest of ``repeats`` timed calls of ``fn()``, after one untimed call."""
    fn()  # the first call creates oneDNN's primitive and touches the output's pages
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@torch.no_grad()
def _measure(repeats: int) -> float:
    g = torch.Generator().manual_seed(0)  # its own generator: the global RNG is not touched
    a = torch.randn(2048, 256, generator=g)  # (M, K)
    b = torch.randn(256, 256, generator=g)  # (K, N)
    # the same product as a 1x1 convolution over a channels_last (1, K, 32, 64) map: oneDNN's GEMM
    x = a.view(1, 32, 64, 256).permute(0, 3, 1, 2)
    w = b.t().reshape(256, 256, 1, 1).contiguous(memory_format=torch.channels_last)
    t_mm = best_seconds(lambda: torch.mm(a, b), repeats)
    t_onednn = best_seconds(lambda: F.conv2d(x, w), repeats)
    return t_mm / max(t_onednn, 1e-9)


def matmul_rate_ratio(*, repeats: int = 5) -> float:
    """oneDNN's float32 matrix-product rate over ``torch.mm``'s on this CPU at the current thread count
    (> 1: oneDNN is faster). Measured at the first call per thread count, then remembered; 1.0 where
    oneDNN is not available (nothing to choose)."""
    if not torch.backends.mkldnn.is_available():
        return 1.0
    threads = torch.get_num_threads()
    if threads not in _ratios:
        _ratios[threads] = _measure(repeats)
    return _ratios[threads]


def matmul_lags_onednn() -> bool:
    """Whether ``torch.mm`` is clearly slower than oneDNN here (``LAG_MARGIN``): then Winograd's products
    do not pay and linear layers run faster through oneDNN. ``MASKRCNN_MATMUL`` (see above) pins it."""
    pinned = os.environ.get(PIN_VARIABLE, "").strip().lower()
    if pinned not in _PINNED:
        raise ValueError(f"{PIN_VARIABLE}={os.environ[PIN_VARIABLE]!r}: expected blas, onednn or measure")
    if _PINNED[pinned] is not None:
        return _PINNED[pinned]
    return matmul_rate_ratio() >= LAG_MARGIN
