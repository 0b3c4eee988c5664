"""The files of some kinds in a folder: the one folder walk behind ``list_images`` and ``list_videos``.

Rules (both listings keep them): a file is of a kind by its extension, in any case; the files are sorted
(by path, over the whole tree when recursive); macOS's "._" resource forks ("._photo.jpg", written beside
each file on a USB stick or a network share, never an image or a video: each was reported unreadable, on
every run) are left out, other dot-files kept; symlinked files are listed, symlinked subfolders are not
descended into (pathlib's ``**`` does not follow them).

``list_folder`` also says what it passed over that a user may have meant to be listed, each with a
reason, for the caller to report (a listing that drops a file without a word hides it): a broken
symlink with a wanted extension ("broken link (to TARGET)", the path the link holds: a link made with a
relative target from the wrong folder, or to a drive not mounted, is told by it; "a symlink loop" for
links that lead back to themselves), with ``recursive`` a
symlinked subfolder ("link to a folder, not followed"), without ``recursive`` a subfolder with a wanted
extension ("a folder"), and anything else with a wanted extension that is not a regular file (a FIFO, a
socket). With ``recursive`` a subfolder is searched like any other, whatever its name, so it is not
reported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Tuple

from maskrcnn.shown_text import display_name

__all__ = ["dangling_link_problem", "files_with_suffixes", "is_symlink_loop", "link_target", "list_folder",
           "spelled_path"]


def link_target(path: Path) -> str:
    """What the symlink ``path`` points to, as it is written in the link (relative targets stay relative:
    that is what to fix), control characters escaped (``shown_text.display_name``); "?" when it cannot
    be read."""
    try:
        return display_name(os.readlink(path))
    except OSError:
        return "?"


def is_symlink_loop(path) -> bool:
    """Whether ``path`` is a symlink that leads, link by link, back to itself (ELOOP): no file at its end,
    like a broken link, but there is no missing target to name."""
    import errno

    try:
        Path(path).resolve(strict=True)
    except RuntimeError:  # Python < 3.13 raises this for a loop
        return True
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


def dangling_link_problem(path) -> str:
    """Why the symlink ``path`` leads to no file: "a symlink loop" or "broken link (to TARGET)"."""
    return "a symlink loop" if is_symlink_loop(path) else f"broken link (to {link_target(path)})"


def files_with_suffixes(folder: Path, suffixes: Iterable[str], *, recursive: bool) -> List[Path]:
    """The files in ``folder`` (and, with ``recursive``, in its subfolders) whose extension lower-cased is
    one of ``suffixes`` (".jpg", ...), sorted; "._" resource forks left out."""
    return list_folder(folder, suffixes, recursive=recursive)[0]


def list_folder(folder: Path, suffixes: Iterable[str], *, recursive: bool) -> Tuple[List[Path], list]:
    """``(files, passed_over)``: ``files_with_suffixes``' files, and ``[(path, reason)]`` for the entries
    passed over that a user may have meant (the module docstring), both sorted."""
    wanted = {s.lower() for s in suffixes}
    pattern = "**/*" if recursive else "*"
    files, passed_over = [], []
    for f in Path(folder).glob(pattern):
        named = f.suffix.lower() in wanted and not f.name.startswith("._")
        if f.is_file():
            if named:
                files.append(f)
        elif recursive and f.is_symlink() and f.is_dir():
            passed_over.append((f, "link to a folder, not followed"))
        elif not named or (recursive and f.is_dir()):
            continue  # searched (recursive), or not asked for
        elif f.is_symlink() and not f.exists():
            passed_over.append((f, dangling_link_problem(f)))
        else:
            passed_over.append((f, "a folder" if f.is_dir() else "not a regular file"))
    return sorted(files), sorted(passed_over)


def spelled_path(path) -> str:
    """``path`` absolute and with '.' and '..' taken out as written (links not followed): two arguments
    that are one path spelled twice ('v.mp4', './v.mp4') compare equal, a link and its target do not."""
    return os.path.normpath(os.path.abspath(path))
