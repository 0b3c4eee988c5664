"""The folders a ``predict`` run makes for its output, and their removal again when they stay empty (a run
that read no image leaves no empty ``--output`` behind)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["folders_to_make", "remove_empty_folders"]


def folders_to_make(folder: Path) -> list:
    """``folder`` and those of its parents that do not exist yet, deepest first: the folders a run makes."""
    missing = []
    for path in (folder.absolute(), *folder.absolute().parents):
        if path.exists() or path.is_symlink():
            break
        missing.append(path)
    return missing


def remove_empty_folders(folders) -> None:
    """Remove ``folders`` (deepest first) while they are empty: a run that wrote nothing leaves no empty
    --output behind (its line says no predictions.json was written)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (a video's results, a file put there meanwhile): its parents neither
            return
