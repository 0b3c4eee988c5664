"""Where an image's overlay goes: ``overlays/<the image's path relative to the images folder>.png``, the
layout of the LabelMe, YOLO, mask and cut-out exports, so that ``a/x.jpg`` and ``b/x.jpg`` get
``a/x.png`` and ``b/x.png`` (flat names made them ``x.png`` and ``x_2.png``, and nothing said which was
which). Images whose overlays would share a name (``x.jpg`` beside ``x.png``, or ``Y.PNG``: case is
ignored, as macOS and Windows disks ignore it) are named by their whole file name instead, each of them
(``x.jpg.png`` and ``x.png.png``), as ``predict --export masks`` names its mask files; an image file of
the same name beside one on disk counts too (``same_name_beside``), so that a re-run with ``x.jpg``
alone, ``x.png`` beside it, into the same folder names it ``x.jpg.png`` as before (a clash among the
images given, or with a name a made name takes, may still be numbered in the order given). Used by
``maskrcnn predict`` and ``maskrcnn show-data``.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Iterable, List, Sequence

__all__ = ["overlay_relpaths", "same_name_beside", "safe_relpath", "safe_file_name"]


def safe_relpath(file_name: str) -> PurePosixPath:
    """``file_name`` ('/'- or '\\'-separated, relative to the images folder) made a path that stays inside
    the overlays folder: parts that would leave it (``..``, a drive, a root) are dropped, so a file given
    outside the images folder lands under its name. A ``:`` or NUL inside a part becomes ``_``:
    ``C:foo.jpg`` is a drive-relative name on Windows (outside overlays/) and NUL no file name anywhere
    (saving it raised)."""
    parts = [p.replace(":", "_").replace("\0", "_")
             for p in PurePosixPath(str(file_name).replace("\\", "/")).parts
             if p not in ("", ".", "..", "/") and not p.endswith(":")]
    return PurePosixPath(*parts) if parts else PurePosixPath("image")


def _short(path: PurePosixPath) -> str:
    """The overlay name without a clash: the path with ``.png`` for its extension."""
    return (path.with_suffix(".png") if path.suffix else PurePosixPath(f"{path}.png")).as_posix()


def overlay_relpaths(file_names: Sequence[str], *, beside: Iterable[str] = ()) -> List[str]:
    """The overlays of the images ``file_names`` (one each, in their order), relative to the overlays
    folder: the path with ``.png`` for its extension, or, for images whose names would then clash with
    another's among ``file_names`` and ``beside`` (image files not drawn that lie beside them, same
    relative form; case ignored), the whole name: ``x.jpg`` and ``x.png`` give ``x.jpg.png`` and
    ``x.png.png``,
    whichever comes first, and ``x.jpg`` alone gives ``x.jpg.png`` when ``beside`` has ``x.png``. The
    same name twice (two drives) or a made name that is another image's own (``x.jpg.png`` beside
    ``x.jpg`` and ``x.png``) is made unique in the given order: ``x.png``, then the whole name, then
    ``<whole name>_2.png``, ..."""
    paths = [safe_relpath(f) for f in file_names]
    wanted: dict = {}  # short overlay name -> the distinct image paths that would take it
    for path in [*paths, *(safe_relpath(f) for f in beside)]:
        wanted.setdefault(_short(path).casefold(), set()).add(path.as_posix())
    used, names = set(), []  # used: casefolded, one file on a disk that ignores case
    for path in paths:
        whole = f"{path}.png"
        candidates = [whole] if len(wanted[_short(path).casefold()]) > 1 else [_short(path), whole]
        name = next((c for c in candidates if c.casefold() not in used), None)
        if name is None:
            n = 2
            while f"{path}_{n}.png".casefold() in used:
                n += 1
            name = f"{path}_{n}.png"
        used.add(name.casefold())
        names.append(name)
    return names


def same_name_beside(paths: Sequence, extensions: Sequence[str]) -> List[Path]:
    """Files with one of ``extensions`` that lie in the folder of one of ``paths``, have the same name
    but for the extension and are not among ``paths``: the images that, drawn in another run, would take
    the same overlay or mask file name. Each folder is listed once; one that cannot be listed adds none."""
    given = {Path(p).absolute() for p in paths}
    stems_by_folder: dict = {}
    for p in given:
        stems_by_folder.setdefault(p.parent, set()).add(p.stem.lower())
    lower = {e.lower() for e in extensions}
    found = []
    for folder, stems in stems_by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = Path(entry.name)
            if name.suffix.lower() in lower and name.stem.lower() in stems and \
                    folder / entry.name not in given and entry.is_file():
                found.append(folder / entry.name)
    return sorted(found)


def safe_file_name(file_name: str) -> str:
    """``file_name`` with each control character (newline, tab, escape, ...), line / paragraph separator
    and bidi control replaced by ``_``: a newline inside an overlay's name broke every listing of the
    folder and every line naming it (``shown_text`` decides which characters those are)."""
    from maskrcnn.shown_text import is_unshowable

    return "".join("_" if is_unshowable(c) else c for c in str(file_name))
