"""Which of this CPU's two float32 matrix-product engines is faster: PyTorch's ``torch.mm`` (the BLAS the
build links, Intel's MKL on x86) or oneDNN (the library behind PyTorch's CPU convolutions).

Why it matters: on most CPUs the two run at about the same rate, but on AMD CPUs with AVX-512 (EPYC
Zen 4 / Zen 5) MKL takes its AVX2 code path while oneDNN uses AVX-512, and ``torch.mm`` runs at a
third of oneDNN's rate (measured on a 2-core AMD EPYC VM with AVX-512: 121 against 391 GFLOP/s). There
the inference rewrites of ``modeling.fuse`` that lean on ``torch.mm`` / ``torch.bmm`` lose: Winograd's
36 small products on ``torch.bmm`` are slower than oneDNN's direct 3x3 convolution (as oneDNN matmuls
they are faster: ``ops.winograd``), and the box head's fully connected layers are faster through
oneDNN's matmul (``ops.onednn_linear``).

``matmul_rate_ratio()`` measures it once per process and thread count, when the first model is
optimised or placed for training (the same (1024 x 1024) @ (1024 x 512) product through ``torch.mm``
and through oneDNN's matmul, the operator ``OneDnnLinear`` runs, five times each, interleaved, the best
of each compared: 0.1-0.3 s; an answer of "lags" is measured twice more, ``_confirmed_ratio``: 0.3-0.9 s
where the BLAS lags),
and ``matmul_lags_onednn()`` reads it against a margin. On a machine busy with other work a measurement
can still land on the other side of the margin; the choice only changes speed and float rounding (~1e-6,
which training compounds: a training checkpoint records its run's choice and a resume keeps it; under
torchrun every rank takes rank 0's; a run's evaluations follow its model's, ``settled``), and the
variable below pins it (over a checkpoint's choice too).
The environment variable ``MASKRCNN_MATMUL`` pins the answer instead of measuring it: ``blas`` (as if
``torch.mm`` kept pace: Winograd on ``torch.bmm``, plain linear layers) or ``onednn`` (as if it lagged),
e.g. to make runs on a machine near the margin take the same path every time.
"""

from __future__ import annotations

import contextlib
import os
import time
from contextvars import ContextVar
from typing import Iterator, Optional

import torch

__all__ = ["matmul_rate_ratio", "matmul_lags_onednn", "onednn_matmul", "best_seconds", "check_pin",
           "pinned", "measured_lags", "settled", "LAG_MARGIN", "CONFIRM_ROUNDS", "PIN_VARIABLE"]

PIN_VARIABLE = "MASKRCNN_MATMUL"
_PINNED = {"blas": False, "onednn": True, "measure": None, "": None}

# oneDNN must be this many times faster than torch.mm before the fallbacks are taken: the ratio is
# ~1.0 where the BLAS is native to the CPU and ~2-3 where it is not, so a machine does not flip
# between the two answers from one process to the next
LAG_MARGIN = 1.5
# further measurements an answer of "lags" must hold in (``_confirmed_ratio``)
CONFIRM_ROUNDS = 2

_ratios: dict = {}  # torch.get_num_threads() -> measured ratio (a measurement, not configuration)
# the answer in force inside a ``settled`` block (this thread / context only), None outside one
_settled: ContextVar[Optional[bool]] = ContextVar("maskrcnn_matmul_settled", default=None)


def best_seconds(fn, repeats: int) -> float:
    """The shortest of ``repeats`` timed calls of ``fn()``, after one untimed call."""
    fn()  # the first call creates oneDNN's primitive and touches the output's pages
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def onednn_matmul(a, b_t):
    """``a @ b_t.T`` through oneDNN's matmul, the operator ``OneDnnLinear`` runs (at any thread count;
    a 1x1 convolution would fall back to the BLAS at one thread). a: (M, K); b_t: (N, K)."""
    return torch.ops.mkldnn._linear_pointwise(a, b_t, None, "none", [], "")


@torch.no_grad()
def _measure(repeats: int) -> float:
    g = torch.Generator().manual_seed(0)  # its own generator: the global RNG is not touched
    a = torch.randn(1024, 1024, generator=g)  # (M, K)
    b = torch.randn(1024, 512, generator=g)  # (K, N)
    b_t = b.t().contiguous()  # (N, K): the linear layer's weight layout
    engines = (lambda: torch.mm(a, b), lambda: onednn_matmul(a, b_t))
    for fn in engines:
        fn()  # the first call creates oneDNN's primitive and touches the output's pages
    # interleaved, best of each: a busy moment of a shared machine slows one try, not one engine
    best = [float("inf")] * 2
    for _ in range(repeats):
        for i, fn in enumerate(engines):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best[0] / max(best[1], 1e-9)


def matmul_rate_ratio(*, repeats: int = 5) -> float:
    """oneDNN's float32 matrix-product rate over ``torch.mm``'s on this CPU at the current thread count
    (> 1: oneDNN is faster). Measured at the first call per thread count, then remembered; 1.0 where
    oneDNN is not available (nothing to choose)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return 1.0
    threads = torch.get_num_threads()
    if threads not in _ratios:
        _ratios[threads] = _confirmed_ratio(repeats)
    return _ratios[threads]


def _confirmed_ratio(repeats: int) -> float:
    """One measurement, and where it lands at or above ``LAG_MARGIN`` up to ``CONFIRM_ROUNDS`` more, the
    smallest counting. Why: with another process busy on one of the cores, every ``torch.mm`` try of a
    measurement can be slowed (its threads wait for the preempted one) and the ratio jumps (measured at 2
    threads on a 2-core VM: ~0.97 idle, 2.07 in 1 of 6 processes with one core busy). The answer picks the
    linear layers' engine, whose float rounding differs (~1e-6), so two runs of one command, or a run and
    its resume, trained apart. A true lag (~2-3 where the BLAS is not native) holds in every measurement;
    where the BLAS keeps pace the extra rounds are never taken."""
    ratio = _measure(repeats)
    for _ in range(CONFIRM_ROUNDS):
        if ratio < LAG_MARGIN:
            break
        ratio = min(ratio, _measure(repeats))
    return ratio


def check_pin() -> None:
    """ValueError for a ``MASKRCNN_MATMUL`` other than blas / onednn / measure (the program checks it at
    start, before any work)."""
    pinned = os.environ.get(PIN_VARIABLE, "").strip().lower()
    if pinned not in _PINNED:
        raise ValueError(f"{PIN_VARIABLE}={os.environ[PIN_VARIABLE]!r}: expected blas, onednn or measure")


def pinned() -> Optional[bool]:
    """``MASKRCNN_MATMUL``'s answer: True (onednn), False (blas), None (not set, or measure)."""
    check_pin()
    return _PINNED[os.environ.get(PIN_VARIABLE, "").strip().lower()]


def measured_lags() -> Optional[bool]:
    """What this process measured at the current thread count (``matmul_lags_onednn``'s reading of it),
    None where it has not measured: lets a message say "measured" only where a measurement was made."""
    ratio = _ratios.get(torch.get_num_threads())
    return None if ratio is None else ratio >= LAG_MARGIN


@contextlib.contextmanager
def settled(lags: Optional[bool]) -> Iterator[None]:
    """Within the block (this thread), ``matmul_lags_onednn`` answers ``lags`` instead of measuring (None:
    as outside; a ``MASKRCNN_MATMUL`` pin still wins). Why: a training run's evaluations must follow the
    engine its model trains on, which a resume or rank 0 (torchrun) may have chosen against this
    process's own measurement. Nothing is left set after the block."""
    token = _settled.set(lags)
    try:
        yield
    finally:
        _settled.reset(token)


def matmul_lags_onednn() -> bool:
    """Whether ``torch.mm`` is clearly slower than oneDNN here (``LAG_MARGIN``): then Winograd's products
    and the linear layers run faster through oneDNN. ``MASKRCNN_MATMUL`` (see above) pins it; inside a
    ``settled`` block that block's answer is taken instead of a measurement."""
    pin = pinned()
    if pin is not None:
        return pin
    answer = _settled.get()
    if answer is not None:
        return answer
    return matmul_rate_ratio() >= LAG_MARGIN
