"""Atomic file writes: a reader (or a crash) never sees half a file.

Every write goes to a temporary file in the target's folder (same file system, so the rename is
atomic), is flushed and fsynced, then ``os.replace``d over the target; the folder is fsynced too, so
the rename survives a power cut (POSIX; best effort elsewhere). A failed write removes its temporary
file and leaves the old target as it was. Temporary names start with a dot and end in ``.tmp``.
``atomic_write_all`` writes several files so: all temporary files first, then the renames, so one failed
write leaves all the old files (outputs that belong together, such as a dataset's parts).

``check_output_dir`` / ``check_output_file`` say, before any work is done, that an output location
cannot be written (a file where a folder is wanted, a folder where a file is, a file among its
parents), in one line naming the option and the path.

Used for checkpoints and ``last_checkpoint``, ``metrics.jsonl`` rewrites, curves, JSON reports and
datasets the commands write. (The weight download streams into its own temporary file: it cannot hold
the whole file in memory.)
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Union

__all__ = [
    "atomic_write_all", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_output_dir",
    "check_output_file", "create_temp_file", "replace_durably",
]

PathLike = Union[str, os.PathLike]


def create_temp_file(folder: PathLike, *, prefix: str, suffix: str) -> tuple:
    """A new, empty file in ``folder`` with a name no other file has: ``(fd open for writing, path)``.

    Unlike ``tempfile.mkstemp`` (mode 0600: only its owner may read it), the file is created with the
    mode any ordinary new file gets (0666 less the process's umask), since it is renamed into the
    user's result (a checkpoint, predictions.json, a video) that others on the machine (a group, a web
    server, a container's other user) may need to read."""
    folder = Path(folder)
    for _ in range(100):
        path = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        return fd, str(path)
    raise FileExistsError(f"{folder}: no free temporary name {prefix}*{suffix} after 100 tries")


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, os.replace)."""
    atomic_write_all({path: data})


def atomic_write_all(contents: dict) -> None:
    """Write several files as one step: ``contents`` is {path: bytes}. Every file is written to its
    temporary file in the target's folder (fsynced) first, and only when all are written are they
    renamed over their targets, so a failed write (a full disk, a folder gone) leaves every old target
    as it was and no temporary file behind. (The renames themselves, one per file, are not one atomic
    step: a crash between two of them would leave the first ones new.)"""
    pending = []  # (temporary path, target), those not renamed yet
    try:
        for path, data in contents.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = create_temp_file(path.parent, prefix=f".{path.name}.", suffix=".tmp")
            pending.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        while pending:
            os.replace(*pending[0])
            pending.pop(0)
    except BaseException:
        for tmp, _ in pending:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise
    for folder in {Path(p).parent for p in contents}:
        _fsync_dir(folder)


def replace_durably(tmp: PathLike, path: PathLike) -> None:
    """Rename a finished temporary file (closed by its writer, e.g. a video encoder) over ``path`` as
    ``atomic_write_bytes`` does: its bytes on disk first, then the rename, then the folder entry."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """``value`` with every NaN / infinite float (in dicts, lists, tuples) as None: ``json.dumps`` would
    write bare ``NaN``, which is not JSON (JavaScript's JSON.parse, jq and many others refuse it). COCO's
    AP of a size range without objects is such a NaN."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def atomic_write_json(path: PathLike, data: Any, **dumps_kwargs: Any) -> None:
    """Write ``json.dumps(data, **dumps_kwargs)`` to ``path`` atomically (serialised first, so an
    object JSON cannot encode raises before the old file is touched). UTF-8 with non-ASCII text as it is
    (``ensure_ascii=False`` unless asked otherwise): a class name such as "Ölfleck" reads as itself in
    our own files (run.json, best.json, init_report.json, metrics.json), as in the YAML config, not as
    ``\\u00d6lfleck``. Files meant for other tools (COCO datasets, predictions.json) pass
    ``ensure_ascii=True``: pycocotools opens them with the locale's encoding (cp1252 on Windows garbles
    UTF-8), and the escapes read back exactly.

    A file name that is not valid UTF-8 (``os.fsdecode`` gives its bytes as lone surrogates, e.g.
    b"caf\\xe9.png" -> "caf\\udce9.png") is written as the escape ``\\udce9`` (what ``ensure_ascii=True``
    writes), which ``json.loads`` reads back as the same string, rather than failing the whole file."""
    dumps_kwargs.setdefault("ensure_ascii", False)
    text = json.dumps(data, **dumps_kwargs)
    atomic_write_bytes(path, text.encode("utf-8", errors="backslashreplace"))


def _fsync_dir(folder: Path) -> None:
    # The rename itself is durable only once the directory entry is on disk (POSIX); best effort elsewhere.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _parent_problem(path: Path) -> str:
    for parent in path.parents:
        if parent.exists():
            return "" if parent.is_dir() else f"{parent} is a file, so nothing can be written under it"
    return ""


def check_output_dir(path: PathLike, option: str = "--output") -> Path:
    """``path`` as a Path if a folder can be made or used there; ValueError naming ``option`` if not."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path}: is an existing file, not a folder; choose a folder")
    problem = _parent_problem(path)
    if problem:
        raise ValueError(f"{option} {path}: {problem}")
    return path


def check_output_file(path: PathLike, option: str = "OUT") -> Path:
    """``path`` as a Path if a file can be written there; ValueError naming ``option`` if not."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a folder; give the path of the file to write")
    problem = _parent_problem(path)
    if problem:
        raise ValueError(f"{option} {path}: {problem}")
    return path
