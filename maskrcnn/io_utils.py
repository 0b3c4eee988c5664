"""Atomic file writes: a reader (or a crash) never sees half a file.

Every write goes to a temporary file in the target's folder (same file system, so the rename is
atomic), is flushed and fsynced, then ``os.replace``d over the target; the folder is fsynced too, so
the rename survives a power cut (POSIX; best effort elsewhere). A failed write removes its temporary
file and leaves the old target as it was. Temporary names start with a dot and end in ``.tmp``.

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
import tempfile
from pathlib import Path
from typing import Any, Union

__all__ = [
    "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_output_dir", "check_output_file",
]

PathLike = Union[str, os.PathLike]


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, data: Any, **dumps_kwargs: Any) -> None:
    """Write ``json.dumps(data, **dumps_kwargs)`` to ``path`` atomically (serialised first, so an
    object JSON cannot encode raises before the old file is touched)."""
    atomic_write_text(path, json.dumps(data, **dumps_kwargs))


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
