"""Paths in the command lines the commands suggest ("use --train-images DIR", "maskrcnn predict --weights
FILE ..."), written so that pasting the line into the user's shell gives the path back as one word: a
folder "run 葉#ema" or "C:\\My Runs" must not split at its space or end at its ``#``.

POSIX shells take ``shlex.quote`` (single quotes); cmd.exe keeps single quotes literally, so on Windows
the word is quoted the way the C runtime splits a command line (``subprocess.list2cmdline``: double
quotes where needed, backslashes as they are).
"""

from __future__ import annotations

import os
import shlex
import subprocess

__all__ = ["shell_word"]


def shell_word(path: os.PathLike | str) -> str:
    """``path`` as one word of the platform's shell (see the module docstring)."""
    text = str(path)
    if os.name == "nt":
        return subprocess.list2cmdline([text])
    return shlex.quote(text)
