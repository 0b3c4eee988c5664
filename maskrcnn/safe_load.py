"""``torch.load(weights_only=True)`` of a weights file, widened only to numpy's data types, and the zip
archives torch writes that are programs, not weights.

    load_weights_only(path, map_location="cpu", extra=()) -> the file's object (never runs its code)
    numpy_globals() -> {"module.name": object}: numpy's data names, only plain data dtypes built
    refuse_object_arrays(obj, source, error=ObjectArrayRefused) -> None, or error naming source
    program_archive(path) -> "torch.export" | "torchscript" | None

Why numpy: training loops store numpy scalars beside the weights (a detectron2 trainer's custom loop saves
``"iteration": numpy.int64(...)``, an MMDetection meta a ``numpy.float64``); torch's weights-only
unpickler refuses them ("Unsupported global: GLOBAL numpy._core.multiarray.scalar"), although rebuilding
a scalar, a dtype or an array runs no code of the file's choosing. They are allowed through
``torch.serialization.safe_globals`` as a context manager around this one load (``add_safe_globals``
would change every later ``torch.load`` of the process), under numpy 1's ``numpy.core`` and numpy 2's
``numpy._core`` names alike: a file keeps the module name of the numpy that wrote it. Anything else that
names a global (a class, a function) is still refused by torch.

Why not numpy's raw names: ``np.ndarray(shape, dtype=object, buffer=bytes)`` takes the bytes for object
pointers, so a crafted file would load an array whose element points anywhere (printing it crashes the
process). Nor void / structured dtypes: ``numpy.dtype("V16")`` followed by BUILD takes its fields and
flags from the file, so it can hold an object field while saying it holds none, or a field past the end
of the item. The name ``numpy.dtype`` resolves to ``checked_dtype`` (no object or void descriptor ever
exists during a load, so none can be forged and iterated before the walk), ``numpy.ndarray`` to
``CheckedNdarray`` and the rebuilders to wrappers that
accept only plain data dtypes (kinds ``biufcSUMm``, no fields, no sub-array) and build with a fresh
``np.dtype(d.str)``, never the file's descriptor (``numpy_globals``, the one table also used by the
detectron2 and MMDetection pickle readers); they also refuse memory the file holds no bytes for. After
the load ``refuse_object_arrays`` refuses any array, numpy scalar or dtype that is not plain data and
came another way (``ndarray.__setstate__``), reading only its dtype.

Why ``program_archive``: ``maskrcnn export --format pt2`` (``torch.export.save``) and ``torch.jit.save``
write zip archives that ``torch.load`` cannot read as weights (a ``.pt2`` has no ``data.pkl``; for a
TorchScript archive torch warns and dispatches to ``torch.jit.load``, which would build its code). They are
recognised by their member names before any load, so the refusal says what the file is.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import warnings
import zipfile
from typing import Optional

import torch


class ObjectDtypeError(ValueError):
    """A numpy rebuilder asked for a dtype that is not plain data, or for more memory than the file holds
    (raised while unpickling, which does not know the file: the caller names it)."""


class ObjectArrayRefused(pickle.UnpicklingError):
    """A file refused for a numpy array whose dtype is not plain data; the message names the file."""


# The dtype kinds a weights file or its metadata holds: bool, signed / unsigned int, float, complex,
# bytes, text, datetime, timedelta. Never "O" (object pointers) nor "V" (void / structured: their fields
# and flags come from the file's own BUILD state, so a "V16" can hold an object field while it says it
# holds none, or a field at an offset past the item).
_DATA_KINDS = "biufcSUMm"

_OBJECT_WORDS = ("only plain number, bytes, text and datetime dtypes are allowed: a numpy array of dtype "
                 "object (Python object pointers, not numbers) or of a structured / void dtype is refused, "
                 "weights and their metadata never need one")


def _dtype_fault(dtype) -> Optional[str]:
    """None for a plain data dtype, else what is wrong with it; reads only the descriptor (kind, fields,
    subdtype), never an element."""
    if dtype.kind not in _DATA_KINDS:
        return f"{dtype.str} (kind {dtype.kind!r})"
    if dtype.fields is not None:
        return f"{dtype.str} with fields"
    if dtype.subdtype is not None:
        return f"{dtype.str} with a sub-array"
    return None


def _data_dtype(dtype, what: str):
    """The file's dtype (object or type code) as a FRESH descriptor built from its type string, when it
    is plain data; ObjectDtypeError otherwise. Fresh: a dtype object from the file carries whatever flags,
    fields and offsets its BUILD state gave it, and the array must not be built with those."""
    import numpy as np

    try:
        found = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
    except (TypeError, ValueError) as e:
        raise ObjectDtypeError(f"{what} asked for an unreadable dtype ({e})") from None
    fault = _dtype_fault(found)
    if fault is not None:
        raise ObjectDtypeError(f"{what} asked for dtype {fault}; {_OBJECT_WORDS}")
    return np.dtype(found.str)


def _shape(shape, what: str) -> tuple:
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ObjectDtypeError(f"{what} asked for shape {shape!r}, not a tuple of sizes")
    return shape


class CheckedNdarray:
    """What the name ``numpy.ndarray`` resolves to: calling it (REDUCE, or NEWOBJ's ``cls.__new__``)
    builds a plain ``np.ndarray`` over the file's bytes, with a plain data dtype. Refused: a dtype holding
    objects (``np.ndarray(shape, object, buffer)`` would take the bytes for object pointers) or a void /
    structured one (``_data_dtype``); a call without a buffer (``np.ndarray((2_000_000_000,), "f8")``
    reserves 16 GB from a line of the file: with a buffer the size is bounded by bytes in the file);
    strides (numpy's pickles never call the constructor: none needs them)."""

    def __new__(cls, shape, dtype=float, buffer=None, offset=0, strides=None, order=None):
        import math

        import numpy as np

        shape = _shape(shape, "numpy.ndarray")
        dtype = _data_dtype(dtype, "numpy.ndarray")
        if not isinstance(buffer, (bytes, bytearray)):
            raise ObjectDtypeError("numpy.ndarray called without a bytes buffer (memory not held by the "
                                   "file); refused")
        if strides is not None or not isinstance(offset, int) or offset < 0:
            raise ObjectDtypeError("numpy.ndarray called with strides or a bad offset; refused")
        if offset + math.prod(shape) * dtype.itemsize > len(buffer):
            raise ObjectDtypeError(f"numpy.ndarray asked for shape {shape} of {dtype.str} over "
                                   f"{len(buffer)} bytes; refused")
        return np.ndarray(shape, dtype, buffer, offset, None, order)


def _checked_rebuilders():
    """numpy's array / scalar rebuilders behind ``_data_dtype``: the dtype checked and rebuilt fresh from
    its type string, so that forged descriptor internals never reach numpy."""
    import math

    import numpy as np

    scalar = np.float32(0).__reduce__()[0]
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 rebuilds arrays from a bytes buffer

    def checked_scalar(dtype, *args):
        return scalar(_data_dtype(dtype, "numpy scalar"), *args)

    def checked_reconstruct(subtype, shape, dtype):
        # a pickled array names its class through ``numpy.ndarray``, i.e. CheckedNdarray here
        if subtype is CheckedNdarray or subtype is np.ndarray:
            subtype = np.ndarray
        else:
            raise ObjectDtypeError(f"numpy _reconstruct asked for class {subtype!r}, not numpy.ndarray")
        # numpy pickles _reconstruct(ndarray, (0,), b"b") and sets the data with BUILD: any other size is
        # memory not held by the file (2e9 elements: 16 GB reserved per call)
        shape = _shape(shape, "numpy _reconstruct")
        if math.prod(shape) != 0:
            raise ObjectDtypeError(f"numpy _reconstruct asked for shape {shape}; numpy's pickles ask for "
                                   "an empty array")
        return reconstruct(subtype, shape, _data_dtype(dtype, "numpy _reconstruct"))

    def checked_frombuffer(buf, dtype, *args):
        return frombuffer(buf, _data_dtype(dtype, "numpy _frombuffer"), *args)

    return checked_scalar, checked_reconstruct, checked_frombuffer


def checked_dtype(spec, align=False, copy=False):
    """What the name ``numpy.dtype`` resolves to: ``np.dtype(spec, align, copy)`` for a plain data spec
    only. An object or void dtype never exists during a load: a later BUILD (``dtype.__setstate__``) would
    set its flags and fields from the file (an object dtype saying it holds no objects, then an array
    built on it takes bytes for pointers and crashes whatever iterates it before the walk)."""
    import numpy as np

    _data_dtype(spec, "numpy.dtype")
    return np.dtype(spec, bool(align), bool(copy))


def numpy_globals() -> dict:
    """The one table of numpy names a pickle of numpy data may ask for, ``"module.name" -> object``:
    numpy 1's ``numpy.core`` and numpy 2's ``numpy._core`` names alike (a file keeps the module name of
    the numpy that wrote it). ``numpy.ndarray`` is ``CheckedNdarray``, never the raw constructor."""

    scalar, reconstruct, frombuffer = _checked_rebuilders()
    table = {"numpy.ndarray": CheckedNdarray, "numpy.dtype": checked_dtype}
    for module in ("numpy.core", "numpy._core"):
        table[f"{module}.multiarray.scalar"] = scalar
        table[f"{module}.multiarray._reconstruct"] = reconstruct
        table[f"{module}.numeric._frombuffer"] = frombuffer
    return table


# One type code per plain data kind and size: their dtype classes are the ones torch may BUILD
_BUILD_CODES = ("?", "b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "e", "f", "d", "g", "F", "D", "G",
                "S1", "U1", "M8", "m8")


def numpy_data_globals() -> list:
    """``numpy_globals`` as ``torch.serialization.safe_globals`` entries ``(object, "module.name")``, with
    the dtype classes and ``np.ndarray`` itself that torch's BUILD wants among the allowed objects (it
    sets the state of an instance only when its type is allowed). Only the plain data dtypes' classes: not
    void (``numpy.dtypes.VoidDType``, whose BUILD state could forge fields, offsets and flags), object or
    the variable-width string one; no real checkpoint holds them (``checked_dtype`` refuses them first).
    A new list each call (the caller's to extend) of the entries built once per process."""
    return list(_numpy_data_entries())


@functools.cache
def _numpy_data_entries() -> tuple:
    """``numpy_data_globals``' entries, built on the first load only (not at import: numpy is imported
    when a load needs it); the same objects every load, so an entry a caller added to torch's allow-list
    is recognised as present."""
    import numpy as np

    entries: list = [(obj, name) for name, obj in numpy_globals().items()]
    # Torch reads a GLOBAL's module and name line by line, so a name with a newline matches no file's
    # GLOBAL: np.ndarray is allowed as a type to BUILD, never reachable as a callable.
    entries.append((np.ndarray, "numpy.ndarray\n(as a type for BUILD only)"))
    for cls in {type(np.dtype(code)) for code in _BUILD_CODES}:  # numpy >= 1.25: numpy.dtypes.*DType
        if cls is not np.dtype:  # older numpy: one class, numpy.dtype itself, already in the table
            entries.append(cls)
    return tuple(entries)


def refuse_object_arrays(obj, source, *, error=ObjectArrayRefused) -> None:
    """``error`` (the caller's refusal type; ObjectArrayRefused by default) naming ``source`` when a loaded
    object holds a numpy array, numpy scalar or dtype that is not plain data (``_dtype_fault``: object,
    void / structured, sub-array), in dicts, lists, tuples, sets, an ``argparse.Namespace``: the second
    fence after the rebuilders' check (an array's dtype can come from ``ndarray.__setstate__``). Only each
    dtype is read, never the elements (which may be forged pointers)."""
    import argparse

    import numpy as np

    seen = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen:  # a pickle may hold cycles and shared objects
            continue
        seen.add(id(item))
        if isinstance(item, (np.ndarray, np.generic, np.dtype)):
            fault = _dtype_fault(item if isinstance(item, np.dtype) else item.dtype)
            if fault is not None:
                raise error(f"{source}: dtype {fault}; {_OBJECT_WORDS}")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif isinstance(item, argparse.Namespace):
            stack.extend(vars(item).values())


def program_archive(path) -> Optional[str]:
    """"torch.export" for a ``torch.export.save`` archive (``.pt2``), "torchscript" for a
    ``torch.jit.save`` one, None for anything else (a weights file, not a zip, unreadable)."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return None
    tails = {n.split("/", 1)[1] if "/" in n else n for n in names}
    export_members = ("models/", "serialized_exported_program")
    if "archive_format" in tails or any(t.startswith(export_members) for t in tails):
        return "torch.export"
    if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
        return "torchscript"
    return None


def program_archive_message(path, kind: str) -> str:
    """The one-line refusal of a ``program_archive`` given where weights are expected."""
    if kind == "torch.export":
        return (f"{path} is a torch.export program (from maskrcnn export: backbone + FPN only), not a "
                "checkpoint; give the checkpoint it was exported from")
    return f"{path} is a TorchScript archive, not weights; give the checkpoint it was saved from"


def _torch_load_bytes(path, map_location):
    """``torch.load(weights_only=True)`` of the file's bytes: given a path, torch >= 2.13 sends a name
    ending in ``.safetensors`` to the safetensors library whatever the bytes are, and files are told by
    their bytes here (a real safetensors file is sniffed by the callers first), so it gets an open file."""
    if isinstance(path, (str, bytes, os.PathLike)):
        with open(path, "rb") as f:
            return torch.load(f, map_location=map_location, weights_only=True)
    return torch.load(path, map_location=map_location, weights_only=True)


def load_weights_only(path, *, map_location="cpu", extra=()):
    """``torch.load(path, weights_only=True)`` with numpy's data types and ``extra`` allowed for this load
    only (module docstring); torch's warnings about a plain pickle's protocol and a TorchScript archive
    are silenced (the callers word every refusal themselves). A numpy array of dtype object is refused
    with ObjectArrayRefused naming the file.

    Torch's allow-list is process-wide: while the load runs, other threads' ``torch.load`` calls see the
    entries too (torch's design). Entries already in it (a caller's ``add_safe_globals``) are left out of
    the context manager, whose exit removes what it was given: theirs stay."""
    serialization = torch.serialization
    safe_globals = getattr(serialization, "safe_globals", None)  # torch >= 2.5
    context = contextlib.nullcontext()
    if safe_globals is not None:
        present = set(serialization.get_safe_globals())
        context = safe_globals([e for e in numpy_data_globals() + list(extra) if e not in present])
    try:
        with context, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            warnings.filterwarnings("ignore", message=".*looks like a TorchScript archive")
            obj = _torch_load_bytes(path, map_location)
    except ObjectDtypeError as e:
        raise ObjectArrayRefused(f"{path}: {e}") from None
    refuse_object_arrays(obj, path)
    return obj
