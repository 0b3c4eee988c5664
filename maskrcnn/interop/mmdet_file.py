"""Read MMDetection checkpoint files without running code from them, and their stored config text.

Files: mmdet v2 (mmcv's runner) saves ``{"meta": {"mmdet_version", "config": <the config as Python source
text>, "CLASSES": (...), ...}, "state_dict": ..., "optimizer": ...}``; mmdet v3 (mmengine) saves
``{"meta": {"cfg": <config text>, "dataset_meta": {"classes": (...), ...}, ...}, "state_dict", "message_hub",
"optimizer", "param_schedulers"}``, whose training state holds mmengine objects (``HistoryBuffer``) and
numpy arrays that ``torch.load(weights_only=True)`` refuses.

``read_mmdet_file``: ``torch.load`` with a pickle module whose unpickler rebuilds tensors, numpy arrays and
plain containers, and turns every other global the file names into an inert placeholder: its class is
never imported and nothing of it is called (what it held is dropped; the weights never need it).

``read_pickle_file``: a plain pickle (``mmengine.dump`` / ``mmcv.dump`` of ``tools/test.py --out
results.pkl``) read by the same unpickler; a tensor in it stores its data as a legacy torch file, read by
``torch.load`` with the same unpickler (torch's own ``_load_from_bytes`` would run any pickle).

``parse_config_text``: the config text is parsed (``ast.parse``), never executed: ``dict(...)`` calls,
literals, lists and tuples become Python values, top-level assignments become entries, and anything else
(a name, an expression) becomes ``UNKNOWN``.
"""

from __future__ import annotations

import ast
import builtins
import io
import pickle
import types
import zipfile
from pathlib import Path

import torch

from maskrcnn.interop.torchvision import ConversionError


class Inert:
    """Stands for an object of a class the file names but we refuse to import: built from nothing, keeps
    nothing. ``name`` says which global it replaced (for messages)."""

    name = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    # a pickled dict or list subclass (mmengine's ConfigDict) is filled item by item after it is built
    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass

    def __repr__(self):
        return f"<not loaded: {self.name}>"


def _allowed_globals() -> dict:
    import collections

    from maskrcnn.interop.detectron2 import _numpy_globals

    allowed = dict(_numpy_globals())  # numpy arrays, dtypes and scalars: data, rebuilt by numpy
    allowed.update({
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "tuple"): tuple,
        ("builtins", "list"): list, ("builtins", "dict"): dict,
    })
    return allowed


class _InertUnpickler(pickle.Unpickler):
    """Unpickler that resolves only ``_allowed_globals``; any other global becomes a fresh ``Inert``
    subclass, so that no module of the file's choosing is imported and no function of it runs."""

    _allowed = None

    def find_class(self, module, name):
        if _InertUnpickler._allowed is None:
            _InertUnpickler._allowed = _allowed_globals()
        found = self._allowed.get((module, name))
        if found is not None:
            return found
        from maskrcnn.checkpoint_refusal import is_attack_global

        # inert it would run nothing, but no file of weights or results asks for os.system or exec: refused
        # as `predict` refuses it (a builtin type, slice or complex, stays an inert placeholder)
        harmless_type = module == "builtins" and isinstance(getattr(builtins, name, None), type)
        if is_attack_global(f"{module}.{name}") and not harmless_type:
            raise _CodeRefused(f"{module}.{name}")
        return type(name if name.isidentifier() else "Foreign", (Inert,), {"name": f"{module}.{name}"})


class _CodeRefused(pickle.UnpicklingError):
    """A global (``os.system``, ``builtins.exec``) that no checkpoint or results file asks for."""


def _code_refusal(path, error: _CodeRefused) -> str:
    return f"{path} asks to run code (global {error.args[0]}) when unpickled; refused"


def _inert_pickle_module() -> types.ModuleType:
    """What ``torch.load(pickle_module=...)`` needs: ``Unpickler`` (torch subclasses it to resolve its
    storages first), ``load`` (the legacy format's headers) and ``UnpicklingError``."""
    module = types.ModuleType("maskrcnn_inert_pickle")
    module.Unpickler = _InertUnpickler
    module.load = lambda f, **kwargs: _InertUnpickler(f, **kwargs).load()
    module.UnpicklingError = pickle.UnpicklingError
    module.__name__ = "maskrcnn_inert_pickle"
    return module


def _storage_from_bytes(data: bytes):
    """A tensor's storage as a plain pickle holds it (a legacy torch file), read without running code."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False,
                      pickle_module=_inert_pickle_module())


def read_pickle_file(path) -> object:
    """A plain pickle's object, read as ``read_mmdet_file`` reads a checkpoint: tensors, numpy arrays and
    containers rebuilt, foreign objects left as ``Inert``; ValueError naming the file when it is not a
    pickle."""
    from maskrcnn.safe_load import refuse_object_arrays

    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _InertUnpickler(f).load()
    except _CodeRefused as e:
        raise ValueError(_code_refusal(path, e)) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, ImportError, MemoryError, RecursionError, ConversionError) as e:
        from maskrcnn.checkpoint_refusal import damaged_pickle_message

        damaged = damaged_pickle_message(path)  # cut off or damaged: said as every reader says it
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(damaged or f"{path}: cannot be read as a pickle ({reason})") from None
    refuse_object_arrays(obj, path, error=ValueError)  # one that came another way (ndarray.__setstate__)
    return obj


def read_mmdet_file(path) -> object:
    """The file's object; tensors and containers rebuilt, foreign objects left as ``Inert``."""
    path = Path(path)
    if path.is_dir():  # (worded as every reader of weights words it)
        raise ConversionError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    from maskrcnn.safetensors_io import is_safetensors, read_safetensors

    if is_safetensors(path):  # a bare state dict (no meta, so no config text: the defaults apply)
        return read_safetensors(path, error=ConversionError)
    from maskrcnn.checkpoint_refusal import code_global, is_attack_global
    from maskrcnn.safe_load import program_archive, program_archive_message

    program = program_archive(path)  # a .pt2 / TorchScript archive holds no state_dict to read
    if program is not None:
        raise ConversionError(program_archive_message(path, program))

    bad = code_global(path)  # left inert it would run nothing, but no checkpoint asks for os.system
    if bad is not None and is_attack_global(bad):
        raise ConversionError(f"{path} asks to run code (global {bad}) when unpickled; refused")
    try:
        with open(path, "rb") as f:  # (a file object: torch sends a *.safetensors name to safetensors)
            obj = torch.load(f, map_location="cpu", weights_only=False, pickle_module=_inert_pickle_module())
    except _CodeRefused as e:  # one behind the first code global (code_global names the first only)
        raise ConversionError(_code_refusal(path, e)) from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError,
            TypeError, AttributeError, IndexError, KeyError) as e:
        from maskrcnn.checkpoint_refusal import unreadable_message

        raise ConversionError(unreadable_message(path, e)) from None
    from maskrcnn.safe_load import refuse_object_arrays

    refuse_object_arrays(obj, path, error=ConversionError)  # one that came another way (ndarray.__setstate__)
    return obj


# --------------------------------------------------------------------------------------------
# The config text


class _Unknown:
    def __repr__(self):
        return "UNKNOWN"


UNKNOWN = _Unknown()


def _value(node):
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" \
            and not node.args:
        return {kw.arg: _value(kw.value) for kw in node.keywords if kw.arg is not None}
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values):
            key = _value(k) if k is not None else UNKNOWN
            if isinstance(key, (str, int, float, bool, tuple)):
                out[key] = _value(v)
        return out
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_value(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    try:
        return ast.literal_eval(node)  # constants, -1, 1e-5, ...
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return UNKNOWN


def parse_config_text(text: str) -> dict:
    """Top-level ``name = value`` assignments of an mmcv / mmengine config text, parsed, never run.
    A text that does not parse gives {}."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return {}
    out = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            out[stmt.targets[0].id] = _value(stmt.value)
    return out


def lookup(cfg: dict, dotted: str, default=None):
    """``cfg["a"]["b"]`` for ``"a.b"``; ``default`` where a level is missing."""
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
