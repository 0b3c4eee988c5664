"""Reuse freed memory instead of handing it back to the OS after every large tensor (glibc's malloc), for
processes that run this library's models on the CPU: the command line does it at start; Python callers
may call ``reuse_freed_memory()`` once (it changes how the whole process allocates, so the library
never does it on its own).

Why: glibc serves every block above its mmap threshold (128 KiB to 32 MiB) with a fresh ``mmap`` and
returns it with ``munmap`` when freed. A Mask R-CNN forward allocates and frees dozens of such blocks
(an 800x1067 image's stride-4 maps are 55 MB each, the box head's 1000 pooled RoIs 50 MB), so every one
of them costs a page fault per 4 KiB page the first time it is written, at every image and every
training step. Measured on a 2-core AMD EPYC VM (R50-FPN, 2 threads): 1.51-1.91 s an 800x1067 image
without, 1.14-1.29 s with, and an R50-FPN training step (batch 2 at 320x427) 1.53-2.12 s against
1.43-1.67 s; the peak resident memory stayed within -7% to +19%.

What it does (``mallopt``): no ``mmap`` for large blocks (``M_MMAP_MAX`` 0: they come from the heap and
go back to it when freed, to be reused) and free memory at the top of the heap is returned to the OS
only beyond 1 GiB (``M_TRIM_THRESHOLD``). The same as starting the process with
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824``. Left alone: non-glibc systems (macOS,
Windows, musl), a process whose environment already sets glibc's ``MALLOC_*`` variables or preloads
another allocator (jemalloc, tcmalloc, mimalloc), and ``MASKRCNN_MALLOC=default``.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Mapping, Optional

__all__ = ["reuse_freed_memory", "SWITCH_VARIABLE", "REUSE_ENVIRONMENT"]

SWITCH_VARIABLE = "MASKRCNN_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
_TRIM_THRESHOLD = 1 << 30
# the same setting as glibc reads it from the environment at a process's start (for another program,
# e.g. a benchmark's reference run)
REUSE_ENVIRONMENT = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(_TRIM_THRESHOLD)}
_GLIBC_VARIABLES = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
                    "GLIBC_TUNABLES")
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def _glibc_mallopt():
    """glibc's ``mallopt`` function, or None where the C library is another."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return None


def reuse_freed_memory(*, environ: Optional[Mapping[str, str]] = None, mallopt=None) -> str:
    """Set glibc's allocator to keep freed large blocks for reuse (see the module docstring); returns
    what was done, one phrase: "reusing freed memory", or why nothing was. ValueError for a
    ``MASKRCNN_MALLOC`` other than ``reuse`` / ``default``. ``environ`` / ``mallopt``: for tests."""
    env = os.environ if environ is None else environ
    switch = env.get(SWITCH_VARIABLE, "").strip().lower()
    if switch not in ("", "reuse", "default"):
        raise ValueError(f"{SWITCH_VARIABLE}={env[SWITCH_VARIABLE]!r}: expected reuse or default")
    if switch == "default":
        return f"left to the C library ({SWITCH_VARIABLE}=default)"
    given = [name for name in _GLIBC_VARIABLES if name in env]
    if given:
        return f"left to the C library's settings ({', '.join(given)})"
    preload = env.get("LD_PRELOAD", "")
    if any(name in preload for name in _OTHER_ALLOCATORS):
        return "left to the preloaded allocator (LD_PRELOAD)"
    mallopt = _glibc_mallopt() if mallopt is None else mallopt
    if mallopt is None:
        return "left to the C library (not glibc)"
    # mallopt returns 1 on success, 0 on error
    if not (mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)):
        return "left to the C library (mallopt refused)"
    return "reusing freed memory"
