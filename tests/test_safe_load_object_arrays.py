"""Numpy arrays of dtype object are refused by every reader of foreign files (their elements are object
pointers: ``np.ndarray((1,), object, b"A" * 8)`` points at 0x4141414141414141); the crafted files are
read in a subprocess, so that a regression crashes it, not pytest. And a load leaves the caller's
``add_safe_globals`` entries in place."""

import argparse
import copyreg
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from maskrcnn.checkpoint import CheckpointError, load_checkpoint
from maskrcnn.safe_load import ObjectArrayRefused, load_weights_only, numpy_data_globals

ROOT = Path(__file__).resolve().parents[1]


class _ForgedArray:
    """Pickles as ``numpy.ndarray((1,), object, b"A" * 8)``: REDUCE."""

    def __reduce__(self):
        return np.ndarray, ((1,), np.dtype("O"), b"A" * 8)


class _ForgedNewobj:
    """The same through NEWOBJ (``cls.__new__(cls, *args)``); the pickler wants ``__class__`` to be
    ``cls``."""

    @property
    def __class__(self):
        return np.ndarray

    def __reduce__(self):  # protocol 2 writes copyreg.__newobj__ as the NEWOBJ opcode
        return copyreg.__newobj__, (np.ndarray, (1,), np.dtype("O"), b"A" * 8)


# Runs in the subprocess: each reader on each crafted file; prints the one line it refused with.
_READ_ALL = """
import sys
from maskrcnn.checkpoint import CheckpointError, load_checkpoint
from maskrcnn.interop.detectron2 import read_detectron2_file
from maskrcnn.interop.mmdet_file import read_mmdet_file, read_pickle_file
from maskrcnn.interop.torchvision import ConversionError, load_torchvision_file

calls = [(load_checkpoint, "reduce.pth"), (load_checkpoint, "newobj.pth"),
         (load_torchvision_file, "reduce.pth"), (read_detectron2_file, "reduce.pth"),
         (read_mmdet_file, "reduce.pth"), (read_mmdet_file, "newobj.pth"),
         (read_detectron2_file, "reduce.pkl"), (read_detectron2_file, "newobj.pkl"),
         (read_pickle_file, "reduce.pkl")]
for reader, name in calls:
    try:
        obj = reader(sys.argv[1] + "/" + name)
    except (CheckpointError, ConversionError, ValueError) as e:
        print(reader.__name__, name, "REFUSED", str(e).splitlines()[0], flush=True)
    else:
        print(reader.__name__, name, "LOADED", flush=True)
"""


def test_forged_object_array_is_refused_by_every_reader(tmp_path):
    for kind, forged in (("reduce", _ForgedArray), ("newobj", _ForgedNewobj)):
        torch.save({"model": {"w": forged()}}, tmp_path / f"{kind}.pth")
        (tmp_path / f"{kind}.pkl").write_bytes(pickle.dumps({"model": {"w": forged()}}, protocol=2))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _READ_ALL, str(tmp_path)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # a crash (SIGSEGV) is -11
    lines = proc.stdout.splitlines()
    assert len(lines) == 9, proc.stdout + proc.stderr
    for line in lines:
        reader, name, outcome, message = line.split(" ", 3)
        assert outcome == "REFUSED", line
        assert str(tmp_path / name) in message, line  # names the file
        assert "dtype object" in message, line


def test_object_array_built_through_setstate_is_refused_after_the_load(tmp_path):
    # _reconstruct(ndarray, (0,), b"b") + BUILD with a list: no pointers, still not weights (second fence)
    path = tmp_path / "objects.pth"
    torch.save({"model": {"w": torch.ones(1)}, "meta": [{"names": np.array([1, None], dtype=object)}]}, path)
    with pytest.raises(ObjectArrayRefused, match="dtype object") as e:
        load_weights_only(path)
    assert str(e.value).startswith(f"{path}: ")
    with pytest.raises(CheckpointError, match="dtype object"):
        load_checkpoint(path)
    ns = tmp_path / "namespace.pth"
    torch.save({"args": argparse.Namespace(classes=np.array(["a", None], dtype=object))}, ns)
    with pytest.raises(ObjectArrayRefused, match="dtype object"):
        load_weights_only(ns, extra=[argparse.Namespace])


def test_plain_arrays_still_load_through_the_checked_names(tmp_path):
    path = tmp_path / "arrays.pth"
    stored = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(2.5),
              "b": np.ndarray((2,), np.int64, b"\x01" * 16), "d": np.dtype("int16")}
    torch.save(stored, path)
    obj = load_weights_only(path)
    assert type(obj["a"]) is np.ndarray and np.array_equal(obj["a"], stored["a"])
    assert np.array_equal(obj["b"], stored["b"]) and obj["s"] == 2.5 and obj["d"] == np.dtype("int16")


def test_a_load_keeps_globals_the_caller_allowed_before():
    pre = [np.dtype, argparse.Namespace, numpy_data_globals()[0]]
    before = set(torch.serialization.get_safe_globals())
    torch.serialization.add_safe_globals(pre)
    try:
        import io

        buf = io.BytesIO()
        torch.save({"n": np.int64(3)}, buf)
        buf.seek(0)
        assert load_weights_only(buf, extra=[argparse.Namespace])["n"] == 3
        kept = torch.serialization.get_safe_globals()
        assert all(entry in kept for entry in pre)
    finally:  # the test's own entries only, as it found the set
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(list(before))
