"""safetensors files (Hugging Face's weights format): read wherever weights are read, written for sharing.

    is_safetensors(path) -> bool                          told by the file's bytes, never by its name
    read_safetensors(path, error=ValueError) -> dict      our checkpoint's dict, or the bare tensors
    safetensors_bytes(*, model_state, config, class_names, **fields) -> bytes
    save_safetensors(path, **same) -> None                atomic (``io_utils.atomic_write_bytes``)

The format: an 8-byte little-endian header length N, N bytes of JSON naming each tensor's dtype, shape
and byte range (plus ``__metadata__``, a string -> string map), then the raw bytes. Reading it runs no
code, whatever the file holds (``safetensors.safe_open``): no pickle is involved.

Our checkpoint as safetensors: the tensors are the "model" state dict under our names; the rest of
``checkpoint.py``'s format travels as JSON strings in the metadata under ``maskrcnn.*`` keys
(``maskrcnn.format``, ``maskrcnn.format_version``, ``maskrcnn.config``, ``maskrcnn.class_names`` and, when
present, ``label_to_category_id`` and ``converted_from``), so ``predict --weights model.safetensors``
needs no ``--config``. ``read_safetensors`` rebuilds the same dict ``torch.load`` gives for a ``.pth``
(validated by ``checkpoint.check_checkpoint`` as any other). A file without ``maskrcnn.format`` is read
as a bare state dict, which the layout detection of ``interop/`` recognises (torchvision / timm ImageNet
names, detectron2's, MMDetection's) exactly as it would a torch file's.

The metadata also says ``"format": "pt"``, the key Hugging Face's loaders look for. Training state
(optimizer, RNG, an INT8 section) is not carried: a safetensors file is for sharing weights.

safetensors is an optional dependency (``pip install safetensors``): without it such a file is refused in
one line saying what it is.
"""

from __future__ import annotations

import json
import os
import re
import struct
from typing import Any, Union

PathLike = Union[str, os.PathLike]

# safetensors' own limit on the JSON header (its MAX_HEADER_SIZE): larger counts are not this format
_MAX_HEADER = 100_000_000
PREFIX = "maskrcnn."
# our checkpoint's fields that travel in the metadata, beside the required config and class names
CARRIED = ("label_to_category_id", "converted_from")
INSTALL = "pip install safetensors"


def is_safetensors(path: PathLike) -> bool:
    """Whether ``path``'s first bytes are a safetensors header: a length within the format's limit, then
    a JSON object. Said also of a truncated one (the reader then names it truncated). A PyTorch zip
    (``PK``) or pickle (0x80, then opcodes) never has a ``{`` at byte 8 after a header count this small.
    A count past the limit before a ``{`` is this format's layout with a corrupt count (the reader names
    it corrupt, "header too large") only when its 8 bytes cannot be text (``_could_be_text``): any text
    file (a YAML config, a JSON given as weights) reads as a count past 2**59, and is not this format
    (its reader then says what the file starts with)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (length,) = struct.unpack("<Q", head[:8])
    if length <= _MAX_HEADER:
        return length >= 2
    return not head.startswith((b"PK", b"\x80")) and not _could_be_text(head[:8])


# the control bytes text holds: tab, line feed, vertical tab, form feed, carriage return
_TEXT_CONTROLS = frozenset(b"\t\n\x0b\x0c\r")


def _could_be_text(raw: bytes) -> bool:
    """Whether ``raw`` reads as UTF-8 text (ASCII included) without control bytes other than whitespace.
    A corrupt count, in practice, has a zero or other control byte, or bytes no UTF-8 text has; a text
    file has neither. (The ``{`` after these bytes ends any UTF-8 character, so none is cut.)"""
    if any((b < 0x20 and b not in _TEXT_CONTROLS) or b == 0x7F for b in raw):
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _library(path, error, *, what: str = "reading it"):
    try:
        import safetensors
        import safetensors.torch as st
    except ImportError:
        where = f"{path} is a safetensors file; " if path is not None else ""
        raise error(f"{where}{what} needs the safetensors package: {INSTALL}") from None
    return safetensors, st


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text.replace("Error while deserializing header: ", "")


def read_safetensors(path: PathLike, *, error: type = ValueError) -> dict:
    """The file's object as ``torch.load`` would give it: for a file we wrote (``maskrcnn.format`` in its
    metadata) our checkpoint's dict, tensors under "model"; for any other the bare ``{name: tensor}``.
    ``error`` (the caller's refusal type) names the file: the package missing, a truncated or corrupt
    file, a header that is not JSON, no tensors, a metadata field that is not the JSON we write."""
    safetensors, st = _library(path, error)
    try:
        with safetensors.safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except OSError:  # missing, a folder, no permission: the caller's words for the file system
        raise
    except (safetensors.SafetensorError, ValueError, RuntimeError, TypeError) as e:
        raise error(f"{path} is a safetensors file that is truncated or corrupt ({_reason(e)})") from None
    if not tensors:
        raise error(f"{path}: a safetensors file holding no tensors")
    if PREFIX + "format" not in metadata:
        return tensors
    return _checkpoint(path, metadata, tensors, error)


def _field(path, metadata: dict, name: str, error):
    text = metadata[PREFIX + name]
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # (nested past the JSON parser's depth: RecursionError)
        reason = e if isinstance(e, ValueError) else "nested too deeply"
        if "integer string conversion" in str(reason):  # Python's limit, with advice for programmers
            reason = "a number of more than 4300 digits; no checkpoint value is that long"
        raise error(f"{path}: safetensors metadata field '{PREFIX}{name}' is not JSON ({reason})") from None


def _checkpoint(path, metadata: dict, tensors: dict, error) -> dict:
    """Our checkpoint's dict from the metadata we write (module docstring); ``check_checkpoint`` then
    checks the fields' types and the config as it does for a torch file."""
    version = metadata.get(PREFIX + "format_version", "")
    ckpt: dict = {"format": metadata[PREFIX + "format"], "model": tensors,
                  "format_version": int(version) if re.fullmatch(r"[0-9]+", version) else version}
    for name in ("config", "class_names", *CARRIED):
        if PREFIX + name in metadata:
            ckpt[name] = _field(path, metadata, name, error)
    pairs = ckpt.get("label_to_category_id")
    if pairs is not None:  # JSON objects have string keys: stored as [label, category id] pairs
        if not _int_pairs(pairs):
            raise error(f"{path}: safetensors metadata field '{PREFIX}label_to_category_id' is not a list "
                        "of [label, category id] pairs")
        ckpt["label_to_category_id"] = {a: b for a, b in pairs}
    return ckpt


def _int_pairs(value) -> bool:
    """Whether ``value`` is what we write for label_to_category_id: a list of 2-element lists of ints
    (not bools, not floats, not a JSON object, whose keys would be iterated)."""
    return isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and all(type(x) is int for x in p) for p in value)


def _own_storage(state: dict) -> dict:
    """Each tensor on the CPU, contiguous and over a storage of its own: safetensors refuses tensors that
    share memory (tied weights, views of one buffer), and writes only whole contiguous tensors."""
    import torch

    out, seen = {}, set()
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"model entry {name!r} is a {type(value).__name__}, not a tensor: safetensors "
                             "holds tensors only")
        t = value.detach().to("cpu")
        storage = t.untyped_storage()
        whole = t.is_contiguous() and t.data_ptr() == storage.data_ptr() and t.nbytes == storage.nbytes()
        if t.nbytes and (not whole or storage.data_ptr() in seen):
            t = t.contiguous().clone()  # (clone: a contiguous view still shares the buffer)
        elif t.nbytes:
            seen.add(storage.data_ptr())
        out[name] = t
    return out


def safetensors_bytes(*, model_state: dict, config: Any, class_names, path: Any = None,
                      **fields: Any) -> bytes:
    """Our checkpoint (the arguments of ``checkpoint.save_checkpoint``) as a safetensors file's bytes.
    ``fields`` other than ``CARRIED`` are refused: training state is not what such a file shares.
    ``path``: the file being written, named when the safetensors package is missing."""
    from maskrcnn.checkpoint import FORMAT, FORMAT_VERSION

    what = f"writing {path} (a safetensors file)" if path is not None else "writing a safetensors file"
    _, st = _library(None, RuntimeError, what=what)
    unknown = sorted(set(fields) - set(CARRIED))
    if unknown:
        raise ValueError(f"safetensors files carry the weights, config and class names only, not {unknown}")
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    metadata = {"format": "pt", PREFIX + "format": FORMAT, PREFIX + "format_version": str(FORMAT_VERSION),
                PREFIX + "config": json.dumps(cfg), PREFIX + "class_names": json.dumps([str(c) for c in
                                                                                       class_names])}
    for name, value in fields.items():
        if value is None:
            continue
        if name == "label_to_category_id":
            value = [[int(a), int(b)] for a, b in sorted(dict(value).items())]
        metadata[PREFIX + name] = json.dumps(value)
    return st.save(_own_storage(model_state), metadata=metadata)


def save_safetensors(path: PathLike, *, model_state: dict, config: Any, class_names, **fields: Any) -> None:
    """Write our checkpoint as a safetensors file atomically (``safetensors_bytes``)."""
    from maskrcnn.io_utils import atomic_write_bytes

    atomic_write_bytes(path, safetensors_bytes(model_state=model_state, config=config,
                                               class_names=class_names, path=path, **fields))
