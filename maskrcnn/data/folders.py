"""The files of some kinds in a folder: the one folder walk behind ``list_images`` and ``list_videos``.

Rules (both listings keep them): a file is of a kind by its extension, in any case; the files are sorted
(by path, over the whole tree when recursive); macOS's "._" resource forks ("._photo.jpg", written beside
each file on a USB stick or a network share, never an image or a video: each was reported unreadable, on
every run) are left out, other dot-files kept; symlinked files are listed, symlinked subfolders are not
descended into (pathlib's ``**`` does not follow them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List

__all__ = ["files_with_suffixes"]


def files_with_suffixes(folder: Path, suffixes: Iterable[str], *, recursive: bool) -> List[Path]:
    """The files in ``folder`` (and, with ``recursive``, in its subfolders) whose extension lower-cased is
    one of ``suffixes`` (".jpg", ...), sorted; "._" resource forks left out."""
    wanted = {s.lower() for s in suffixes}
    pattern = "**/*" if recursive else "*"
    return sorted(f for f in Path(folder).glob(pattern)
                  if f.is_file() and f.suffix.lower() in wanted and not f.name.startswith("._"))
