"""When two image records name one file: the key both spellings of a ``file_name`` come to.

Windows separators are turned ('a\\x.png' is 'a/x.png'), and '.' and empty path parts are dropped:
'./a/x.png', 'a//x.png' and 'a/./x.png' are 'a/x.png'. '..' is kept as written: 'lnk/../a.png' is
another file than 'a.png' when lnk is a link to a folder elsewhere, and the key is a name compared
with names, no file looked at. Nothing else is made equal: case and spaces are part of a name on the
systems the images come from.
"""

from __future__ import annotations

__all__ = ["file_key"]


def file_key(file_name: str) -> str:
    """``file_name`` as compared with another record's (module docstring)."""
    path = file_name.replace("\\", "/")
    kept = "/".join(part for part in path.split("/") if part not in ("", "."))
    return ("/" if path.startswith("/") else "") + kept or "."
