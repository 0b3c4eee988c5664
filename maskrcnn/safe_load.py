"""``torch.load(weights_only=True)`` of a weights file, widened only to numpy's data types, and the zip
archives torch writes that are programs, not weights.

    load_weights_only(path, map_location="cpu", extra=()) -> the file's object (never runs its code)
    program_archive(path) -> "torch.export" | "torchscript" | None

Why numpy: training loops store numpy scalars beside the weights (a detectron2 trainer's custom loop saves
``"iteration": numpy.int64(...)``, an MMDetection meta a ``numpy.float64``); torch's weights-only
unpickler refuses them ("Unsupported global: GLOBAL numpy._core.multiarray.scalar"), although rebuilding
a scalar, a dtype or an array runs no code of the file's choosing. They are allowed through
``torch.serialization.safe_globals`` as a context manager around this one load (``add_safe_globals``
would change every later ``torch.load`` of the process), under numpy 1's ``numpy.core`` and numpy 2's
``numpy._core`` names alike: a file keeps the module name of the numpy that wrote it. Anything else that
names a global (a class, a function) is still refused by torch.

Why ``program_archive``: ``maskrcnn export --format pt2`` (``torch.export.save``) and ``torch.jit.save``
write zip archives that ``torch.load`` cannot read as weights (a ``.pt2`` has no ``data.pkl``; for a
TorchScript archive torch warns and dispatches to ``torch.jit.load``, which would build its code). They are
recognised by their member names before any load, so the refusal says what the file is.
"""

from __future__ import annotations

import contextlib
import warnings
import zipfile
from typing import Optional

import torch


def numpy_data_globals() -> list:
    """numpy's scalar, dtype, dtype classes and array rebuilders as ``safe_globals`` entries: the object,
    or ``(object, "module.name")`` where a file may name it under the other numpy's module."""
    import numpy as np

    entries: list = [np.dtype, np.ndarray]
    scalar = np.float32(0).__reduce__()[0]
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 rebuilds arrays from a bytes buffer
    for module in ("numpy.core", "numpy._core"):
        entries += [(scalar, f"{module}.multiarray.scalar"),
                    (reconstruct, f"{module}.multiarray._reconstruct"),
                    (frombuffer, f"{module}.numeric._frombuffer")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles a dtype through its class
    if dtypes is not None:
        entries += [getattr(dtypes, n) for n in dir(dtypes)
                    if n.endswith("DType") and isinstance(getattr(dtypes, n), type)]
    return entries


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
    are silenced (the callers word every refusal themselves)."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    allowed = numpy_data_globals() + list(extra)
    with safe_globals(allowed) if safe_globals else contextlib.nullcontext():
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            warnings.filterwarnings("ignore", message=".*looks like a TorchScript archive")
            return torch.load(path, map_location=map_location, weights_only=True)
