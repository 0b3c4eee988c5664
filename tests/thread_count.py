"""Thread count for comparisons with recorded references (torchvision's and detectron2's golden runs).

Those references were recorded with a pool of threads. torch's CPU kernels split their sums by thread,
so one thread rounds differently, and on random weights the rounding decides near-ties: on an AVX2 CPU
with one thread (a pytest-xdist worker's share of a 2-core machine), torchvision's R50-FPN 320 model
kept other boxes of a class whose overlaps sit at the NMS threshold (93 of 100 matched), where two
threads match 99-100 of 100 as on every CPU measured.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def recorded_threads(count: int = 2):
    """At least ``count`` intra-op threads inside the block, the caller's count restored after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(count, threads))
    try:
        yield
    finally:
        torch.set_num_threads(threads)
