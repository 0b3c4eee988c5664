"""Numpy arrays of dtype object are refused by every reader of foreign files (their elements are object
pointers: ``np.ndarray((1,), object, b"A" * 8)`` points at 0x4141414141414141); the crafted files are
read in a subprocess, so that a regression crashes it, not pytest. And a load leaves the caller's
``add_safe_globals`` entries in place."""

import argparse
import collections
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


# --------------------------------------------------------------------------------------------
# Forged dtypes and memory reservations (the crafted files are built here: a few hundred bytes each)


class _ForgedDtype:
    """Pickles as ``numpy.dtype(spec, False, True)`` then BUILD with ``state``: numpy takes the fields,
    sub-array and flags from the state, so a "V16" can hold an object field while ``hasobject`` is False."""

    def __init__(self, spec, state):
        self.spec, self.state = spec, state

    def __reduce__(self):
        return np.dtype, (self.spec, False, True), self.state


def _object_field_dtype():
    return _ForgedDtype("V16", (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 16, 1, 0))


class _Call:
    """Pickles as ``func(*args)`` (REDUCE), optionally followed by BUILD with ``state``."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _crafted_files(tmp_path):
    reduce_fn, frombuffer = np.zeros(1).__reduce__()[0], np.zeros(1).__reduce_ex__(5)[0]
    scalar = np.float32(0).__reduce__()[0]
    subarray = _ForgedDtype("V8", (3, "|", (np.dtype("O"), (1,)), None, None, 8, 1, 0))
    far_field = _ForgedDtype("V8", (3, "|", None, ("a",), {"a": (np.dtype("f8"), 1 << 40)}, 8, 1, 0))
    forged = {
        "void": _Call(frombuffer, (b"A" * 16, _object_field_dtype(), (1,), "C")),
        "subarray": _Call(frombuffer, (b"B" * 8, subarray, (1,), "C")),
        "offset": _Call(frombuffer, (b"\0" * 8, far_field, (1,), "C")),
        "scalar": _Call(scalar, (_object_field_dtype(), b"A" * 16)),
        # numpy's own _reconstruct(ndarray, (0,), b"b"), then BUILD setting the forged dtype and the bytes
        "setstate": _Call(reduce_fn, (np.ndarray, (0,), b"b"),
                          (1, (1,), _object_field_dtype(), False, b"A" * 16)),
        # an object dtype whose flags say it holds none: the array takes the bytes for pointers, and
        # OrderedDict iterates it during the load, before any walk
        "iterobject": _Call(collections.OrderedDict, (_Call(reduce_fn, (np.ndarray, (0,), b"b"), (
            1, (1,), _ForgedDtype("O", (3, "|", None, None, None, 8, 8, 0)), False, b"A" * 8)),)),
        "itervoid": _Call(collections.OrderedDict, (_Call(reduce_fn, (np.ndarray, (0,), b"b"), (
            1, (1,), _object_field_dtype(), False, b"A" * 16)),)),
        "big": [_Call(np.ndarray, ((2_000_000_000,), "f8")) for _ in range(50)],
        "bigreconstruct": [_Call(reduce_fn, (np.ndarray, (2_000_000_000,), b"f8")) for _ in range(50)],
    }
    for name, obj in forged.items():
        (tmp_path / f"{name}.pkl").write_bytes(pickle.dumps({"arr": obj}, protocol=2))
        torch.save({"arr": obj}, tmp_path / f"{name}.pth")
    return list(forged)


# Runs in the subprocess: each reader on each crafted file, touching what it loaded (a forged element
# would crash the process here); prints one line per call.
_READ_FORGED = """
import sys
from pathlib import Path
import numpy as np
from maskrcnn.interop.detectron2 import _read_pickle
from maskrcnn.interop.mmdet_file import read_mmdet_file, read_pickle_file
from maskrcnn.checkpoint import load_checkpoint

readers = [("torch", load_checkpoint, ".pth"), ("mmdet", read_mmdet_file, ".pth"),
           ("d2pkl", lambda p: _read_pickle(Path(p)), ".pkl"), ("mmpkl", read_pickle_file, ".pkl")]
for name in sys.argv[2:]:
    for label, reader, ext in readers:
        path = sys.argv[1] + "/" + name + ext
        try:
            obj = reader(path)
        except Exception as e:
            print(label, name, "REFUSED", str(e).splitlines()[0], flush=True)
        else:
            print(label, name, "LOADED", repr(obj)[:80], flush=True)
"""


def test_forged_dtypes_and_reservations_are_refused_by_every_reader(tmp_path):
    names = _crafted_files(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _READ_FORGED, str(tmp_path), *names], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # a crash (SIGSEGV) is -11
    lines = proc.stdout.splitlines()
    assert len(lines) == 4 * len(names), proc.stdout + proc.stderr
    for line in lines:
        label, name, outcome, message = line.split(" ", 3)
        assert outcome == "REFUSED", line
        assert str(tmp_path / name) in message, line  # names the file
        if name in ("big", "bigreconstruct"):
            assert ("without a bytes buffer" if name == "big" else "an empty array") in message, line
        else:  # numpy.dtype itself refuses the spec: no void or object descriptor exists to be forged
            size = "|V8" if name in ("subarray", "offset") else "|V16"
            kind = "|O (kind 'O')" if name == "iterobject" else f"{size} (kind 'V')"
            assert f"numpy.dtype asked for dtype {kind}" in message, line


def test_rebuilders_build_with_a_fresh_dtype_and_refuse_void_ones():
    from maskrcnn.safe_load import CheckedNdarray, ObjectDtypeError, numpy_globals

    table = numpy_globals()
    frombuffer, scalar = table["numpy._core.numeric._frombuffer"], table["numpy._core.multiarray.scalar"]
    given = np.dtype("<f4", copy=True)
    built = frombuffer(np.arange(3, dtype="<f4").tobytes(), given, (3,), "C")
    assert built.dtype == np.dtype("<f4") and built.dtype is not given and built.tolist() == [0.0, 1.0, 2.0]
    assert scalar(np.dtype("<i8"), np.int64(7).tobytes()) == 7
    for bad in (np.dtype([("a", "f8")]), np.dtype("V8"), np.dtype(("f4", (2,))), np.dtype("O")):
        with pytest.raises(ObjectDtypeError, match="dtype"):
            frombuffer(b"\0" * 16, bad, (1,), "C")
    assert table["numpy.dtype"]("f8", False, True) == np.dtype("f8")
    for spec in ("O", "V16", [("a", "f8")]):
        with pytest.raises(ObjectDtypeError, match="numpy.dtype asked for dtype"):
            table["numpy.dtype"](spec, False, True)
    assert CheckedNdarray((2,), "<i2", b"\x01\x00\x02\x00").tolist() == [1, 2]
    with pytest.raises(ObjectDtypeError, match="over 3 bytes"):
        CheckedNdarray((2,), "<i2", b"\x01\x00\x02")
    with pytest.raises(ObjectDtypeError, match="without a bytes buffer"):
        CheckedNdarray((4,), "f8")
    assert not any(getattr(e, "__name__", "") in ("VoidDType", "ObjectDType") for e in numpy_data_globals())


def test_the_walk_refuses_structured_arrays_and_void_scalars(tmp_path):
    from maskrcnn.safe_load import refuse_object_arrays

    structured = np.zeros(2, dtype=[("a", "f8")])
    for item in (structured, structured[0], np.dtype(("f4", (2,)))):
        with pytest.raises(ObjectArrayRefused, match="^src: dtype "):
            refuse_object_arrays({"meta": [item]}, "src")
    refuse_object_arrays({"a": np.zeros(2, "f4"), "s": np.float64(1), "t": np.str_("x"),
                          "d": np.dtype("M8[s]")}, "src")  # plain data passes


def test_the_allow_list_is_built_once_and_each_caller_gets_its_own_list(tmp_path):
    from maskrcnn.safe_load import _numpy_data_entries

    first = numpy_data_globals()
    first.append("a caller's entry")
    second = numpy_data_globals()
    assert "a caller's entry" not in second and second == first[:-1]
    assert all(a is b for a, b in zip(second, first))  # the same entries: a rebuild makes new rebuilders
    path = tmp_path / "n.pth"
    torch.save({"n": np.int64(3)}, path)
    built = _numpy_data_entries.cache_info().misses
    assert load_weights_only(path)["n"] == 3 and load_weights_only(path)["n"] == 3
    assert _numpy_data_entries.cache_info().misses == built  # not rebuilt by a load
