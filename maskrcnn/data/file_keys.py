"""When two image records name one file: the key both spellings of a ``file_name`` come to.

Windows separators are turned ('a\\x.png' is 'a/x.png') and the path is normalised as a path
(``posixpath.normpath``): './a/x.png', 'a//x.png', 'a/./x.png' and 'b/../a/x.png' are 'a/x.png'. Nothing
else is made equal: case and spaces are part of a name on the systems the images come from.
"""

from __future__ import annotations

import posixpath

__all__ = ["file_key"]


def file_key(file_name: str) -> str:
    """``file_name`` as compared with another record's (module docstring)."""
    return posixpath.normpath(file_name.replace("\\", "/"))
