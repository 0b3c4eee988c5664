"""glibc's allocator set to reuse freed memory (``maskrcnn.cpu_memory``): what it asks of mallopt, when it
leaves the allocator alone, that the ``maskrcnn`` program does it first, and its real effect on glibc (a
large tensor no longer gets an mmap of its own)."""

import platform
import subprocess
import sys

import pytest

from maskrcnn import cli
from maskrcnn.cpu_memory import reuse_freed_memory


def _recorder(result=1):
    calls = []
    return calls, (lambda param, value: calls.append((param, value)) or result)


def test_sets_no_mmap_and_a_high_trim_threshold():
    calls, mallopt = _recorder()
    assert reuse_freed_memory(environ={}, mallopt=mallopt) == "reusing freed memory"
    assert calls == [(-4, 0), (-1, 1 << 30)]  # M_MMAP_MAX 0, M_TRIM_THRESHOLD 1 GiB


@pytest.mark.parametrize("environ, said", [
    ({"MASKRCNN_MALLOC": "default"}, "MASKRCNN_MALLOC=default"),
    ({"MALLOC_MMAP_MAX_": "65536"}, "settings (MALLOC_MMAP_MAX_)"),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, "settings (GLIBC_TUNABLES)"),
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "preloaded allocator"),
])  # fmt: skip
def test_leaves_a_chosen_allocator_alone(environ, said):
    calls, mallopt = _recorder()
    assert said in reuse_freed_memory(environ=environ, mallopt=mallopt)
    assert calls == []


def test_bad_switch_and_refusal_are_said():
    calls, mallopt = _recorder(result=0)
    assert reuse_freed_memory(environ={"MASKRCNN_MALLOC": " Reuse "}, mallopt=mallopt) == (
        "left to the C library (mallopt refused)")
    with pytest.raises(ValueError, match=r"MASKRCNN_MALLOC='keep': expected reuse or default"):
        reuse_freed_memory(environ={"MASKRCNN_MALLOC": "keep"}, mallopt=mallopt)


def test_the_program_sets_it_before_main(monkeypatch, capsys):
    order = []
    monkeypatch.setattr("maskrcnn.cpu_memory.reuse_freed_memory", lambda: order.append("malloc"))
    monkeypatch.setattr(cli, "main", lambda: order.append("main") or 0)
    assert cli.console_entry() == 0 and order == ["malloc", "main"]
    monkeypatch.undo()  # the real reuse_freed_memory, which refuses the switch before touching glibc
    monkeypatch.setenv("MASKRCNN_MALLOC", "keep")
    monkeypatch.setattr(cli, "main", lambda: pytest.fail("main must not run after a bad MASKRCNN_MALLOC"))
    assert cli.console_entry() == 2
    assert "maskrcnn: error: MASKRCNN_MALLOC='keep': expected reuse or default" in capsys.readouterr().err
    monkeypatch.delenv("MASKRCNN_MALLOC")
    monkeypatch.setenv("MASKRCNN_MATMUL", "mkl")  # checked at start too, not when a model is first optimised
    assert cli.console_entry() == 2
    said = capsys.readouterr().err
    assert "maskrcnn: error: MASKRCNN_MATMUL='mkl': expected blas, onednn or measure" in said


# In a process of its own: the number of mmap'd blocks glibc holds while a 64 MB tensor lives
_PROBE = """
import ctypes, sys, torch
from maskrcnn.cpu_memory import reuse_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
info = ctypes.CDLL(None).mallinfo2
info.restype = MallInfo2
said = reuse_freed_memory() if sys.argv[1] == "reuse" else "as started"
before = info().hblks
x = torch.ones(16 * 2**20)  # 64 MB
print(said, "|", info().hblks - before)
"""


def _has_mallinfo2() -> bool:
    import ctypes

    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or not _has_mallinfo2(),
                    reason="glibc 2.33 or later only (mallinfo2)")
def test_a_large_tensor_comes_from_the_heap(monkeypatch):
    for name in ("MASKRCNN_MALLOC", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                 "GLIBC_TUNABLES", "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)
    out = {}
    for mode in ("reuse", "default"):
        proc = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        out[mode] = proc.stdout.strip()
    assert out["reuse"] == "reusing freed memory | 0"  # no mmap of its own: heap memory, reused when freed
    assert out["default"] == "as started | 1"  # glibc's default: a fresh mmap, unmapped when freed
