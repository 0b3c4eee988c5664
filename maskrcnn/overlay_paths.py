"""Where an image's overlay goes: ``overlays/<the image's path relative to the images folder>.png``, the
layout of the LabelMe, YOLO, mask and cut-out exports, so that ``a/x.jpg`` and ``b/x.jpg`` get
``a/x.png`` and ``b/x.png`` whatever the order they were drawn in (flat names made them ``x.png`` and
``x_2.png``, and nothing said which was which). Used by ``maskrcnn predict`` and ``maskrcnn show-data``.
"""

from __future__ import annotations

from pathlib import PurePosixPath


def overlay_relpath(file_name: str, used: set) -> str:
    """The overlay of the image ``file_name`` ('/'-separated, relative to the images folder), relative to
    the overlays folder: the same path with ``.png`` for its extension; ``a.jpg`` beside ``a.png`` (both
    in ``used``, the paths given so far, updated here) gets its whole name, ``a.jpg.png``, then
    ``a.jpg_2.png``, ... Parts that would leave the overlays folder (``..``, a drive, a root) are dropped:
    a file given outside the images folder lands under its name. A ``:`` or NUL inside a part becomes
    ``_``: ``C:foo.jpg`` is a drive-relative name on Windows (outside overlays/) and NUL no file name
    anywhere (saving it raised)."""
    parts = [p.replace(":", "_").replace("\0", "_")
             for p in PurePosixPath(str(file_name).replace("\\", "/")).parts
             if p not in ("", ".", "..", "/") and not p.endswith(":")]
    path = PurePosixPath(*parts) if parts else PurePosixPath("image")
    candidates = [path.with_suffix(".png") if path.suffix else PurePosixPath(f"{path}.png"),
                  PurePosixPath(f"{path}.png")]
    for candidate in candidates:
        if candidate.as_posix() not in used:
            used.add(candidate.as_posix())
            return candidate.as_posix()
    n = 2
    while f"{path}_{n}.png" in used:
        n += 1
    used.add(f"{path}_{n}.png")
    return f"{path}_{n}.png"


def safe_file_name(file_name: str) -> str:
    """``file_name`` with each control character (newline, tab, escape, ...), line / paragraph separator
    and bidi control replaced by ``_``: a newline inside an overlay's name broke every listing of the
    folder and every line naming it (``shown_text`` decides which characters those are)."""
    from maskrcnn.shown_text import is_unshowable

    return "".join("_" if is_unshowable(c) else c for c in str(file_name))
