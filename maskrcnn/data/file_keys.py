"""When two image records name one file: the key both spellings of a ``file_name`` come to.

Where the image folder is known (``folder``: train, show-data, merge-data, split-data --images) the key
is the file's real path (``os.path.realpath`` of the folder joined with the name found): 'a.png',
'../img/a.png' from the folder 'img' and '/data/img/a.png' are one file, and 'lnk/../a.png' is the file
the link leads to, as the system opens it. merge-data, split-data and show-data all use this rule, so
they agree on which records are one picture.

Where it is not (names compared as written): Windows separators are turned ('a\\x.png' is 'a/x.png'),
and '.' and empty path parts are dropped: './a/x.png', 'a//x.png' and 'a/./x.png' are 'a/x.png'. '..'
is kept as written: 'lnk/../a.png' is another file than 'a.png' when lnk is a link to a folder
elsewhere, and without the folder no file can be looked at. Nothing else is made equal: case and spaces
are part of a name on the systems the images come from.
"""

from __future__ import annotations

import os
from typing import Optional, Union

__all__ = ["file_key"]


def file_key(file_name: str, folder: Optional[Union[str, os.PathLike]] = None) -> str:
    """``file_name`` as compared with another record's (module docstring); ``folder``: the image folder
    ``file_name`` is relative to (an absolute ``file_name`` stays itself), None when it is not known."""
    path = file_name.replace("\\", "/")
    if folder is not None:
        return os.path.realpath(os.path.join(os.fspath(folder), path))
    kept = "/".join(part for part in path.split("/") if part not in ("", "."))
    return ("/" if path.startswith("/") else "") + kept or "."
