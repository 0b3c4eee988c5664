"""``torch.load(weights_only=True)`` of a weights file, widened only to numpy's data types, and the zip
archives torch writes that are programs, not weights.

    load_weights_only(path, map_location="cpu", extra=()) -> the file's object (never runs its code)
    numpy_globals() -> {"module.name": object}: numpy's data names, object dtypes refused
    refuse_object_arrays(obj, source) -> None, or ObjectArrayRefused naming source
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
process). The name ``numpy.ndarray`` resolves to ``CheckedNdarray`` and the rebuilders to wrappers that
refuse any dtype holding objects (``numpy_globals``, the one table also used by the detectron2 and
MMDetection pickle readers); after the load ``refuse_object_arrays`` refuses any object array that came
another way, reading only its dtype.

Why ``program_archive``: ``maskrcnn export --format pt2`` (``torch.export.save``) and ``torch.jit.save``
write zip archives that ``torch.load`` cannot read as weights (a ``.pt2`` has no ``data.pkl``; for a
TorchScript archive torch warns and dispatches to ``torch.jit.load``, which would build its code). They are
recognised by their member names before any load, so the refusal says what the file is.
"""

from __future__ import annotations

import contextlib
import pickle
import warnings
import zipfile
from typing import Optional

import torch


class ObjectDtypeError(ValueError):
    """A numpy rebuilder asked for a dtype holding Python objects (raised while unpickling, which does not
    know the file: the caller names it)."""


class ObjectArrayRefused(pickle.UnpicklingError):
    """A file refused for a numpy array of dtype object; the message names the file."""


_OBJECT_WORDS = ("a numpy array of dtype object (Python object pointers, not numbers) is refused: "
                 "weights and their metadata never need one")


def _refuse_object_dtype(dtype, what: str):
    import numpy as np

    if np.dtype(dtype).hasobject:  # np.dtype() of the file's own dtype object or type code: no code runs
        raise ObjectDtypeError(f"{what} asked for dtype {np.dtype(dtype)}; {_OBJECT_WORDS}")


class CheckedNdarray:
    """What the name ``numpy.ndarray`` resolves to: calling it (REDUCE, or NEWOBJ's ``cls.__new__``)
    builds a plain ``np.ndarray`` unless the dtype holds objects. ``np.ndarray(shape, object, buffer)``
    would take the buffer's bytes for object pointers (a crafted file gets an array whose element points
    anywhere: touching it crashes the process)."""

    def __new__(cls, *args, **kwargs):  # np.ndarray(shape, dtype=float, buffer=None, ...)
        import numpy as np

        _refuse_object_dtype(kwargs.get("dtype", args[1] if len(args) > 1 else float), "numpy.ndarray")
        return np.ndarray(*args, **kwargs)


def _checked_rebuilders():
    """numpy's array / scalar rebuilders behind the same dtype check (numpy itself refuses object dtypes
    in ``scalar`` and ``_frombuffer``, and ``ndarray.__setstate__`` wants a list of objects for one, but one
    rule for every path costs nothing)."""
    import numpy as np

    scalar = np.float32(0).__reduce__()[0]
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 rebuilds arrays from a bytes buffer

    def checked_scalar(dtype, *args):
        _refuse_object_dtype(dtype, "numpy scalar")
        return scalar(dtype, *args)

    def checked_reconstruct(subtype, shape, dtype):
        # a pickled array names its class through ``numpy.ndarray``, i.e. CheckedNdarray here
        if subtype is CheckedNdarray or subtype is np.ndarray:
            subtype = np.ndarray
        else:
            raise ObjectDtypeError(f"numpy _reconstruct asked for class {subtype!r}, not numpy.ndarray")
        _refuse_object_dtype(dtype, "numpy _reconstruct")
        return reconstruct(subtype, shape, dtype)

    def checked_frombuffer(buf, dtype, *args):
        _refuse_object_dtype(dtype, "numpy _frombuffer")
        return frombuffer(buf, dtype, *args)

    return checked_scalar, checked_reconstruct, checked_frombuffer


def numpy_globals() -> dict:
    """The one table of numpy names a pickle of numpy data may ask for, ``"module.name" -> object``:
    numpy 1's ``numpy.core`` and numpy 2's ``numpy._core`` names alike (a file keeps the module name of
    the numpy that wrote it). ``numpy.ndarray`` is ``CheckedNdarray``, never the raw constructor."""
    import numpy as np

    scalar, reconstruct, frombuffer = _checked_rebuilders()
    table = {"numpy.ndarray": CheckedNdarray, "numpy.dtype": np.dtype}
    for module in ("numpy.core", "numpy._core"):
        table[f"{module}.multiarray.scalar"] = scalar
        table[f"{module}.multiarray._reconstruct"] = reconstruct
        table[f"{module}.numeric._frombuffer"] = frombuffer
    return table


def numpy_data_globals() -> list:
    """``numpy_globals`` as ``torch.serialization.safe_globals`` entries ``(object, "module.name")``, with
    the dtype classes and ``np.ndarray`` itself that torch's BUILD wants among the allowed objects (it
    sets the state of an instance only when its type is allowed)."""
    import numpy as np

    entries: list = [(obj, name) for name, obj in numpy_globals().items()]
    # Torch reads a GLOBAL's module and name line by line, so a name with a newline matches no file's
    # GLOBAL: np.ndarray is allowed as a type to BUILD, never reachable as a callable.
    entries.append((np.ndarray, "numpy.ndarray\n(as a type for BUILD only)"))
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles a dtype through its class
    if dtypes is not None:
        entries += [getattr(dtypes, n) for n in dir(dtypes)
                    if n.endswith("DType") and isinstance(getattr(dtypes, n), type)]
    return entries


def refuse_object_arrays(obj, source) -> None:
    """ObjectArrayRefused naming ``source`` when a loaded object holds a numpy array of dtype object
    (in dicts, lists, tuples, sets, an ``argparse.Namespace``): the second fence after the rebuilders'
    check. Only each array's dtype is read, never its elements (which may be forged pointers)."""
    import argparse

    import numpy as np

    seen = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen:  # a pickle may hold cycles and shared objects
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            if item.dtype.hasobject:
                raise ObjectArrayRefused(f"{source}: {_OBJECT_WORDS}")
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
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except ObjectDtypeError as e:
        raise ObjectArrayRefused(f"{path}: {e}") from None
    refuse_object_arrays(obj, path)
    return obj
