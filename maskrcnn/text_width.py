"""Padding text to a column by how wide a terminal shows it, for the plain-text tables the commands print
(show-data, split-data, eval's per-class table): a class name "葉 leaf" or "🍃 emoji" is 2 columns a
character for its wide characters, so padding by ``len`` left its row's numbers one column off per such
character.

Width of a character: 2 for East Asian Wide and Fullwidth (``unicodedata.east_asian_width`` W / F: CJK,
most emoji), 0 for combining marks and zero-width format characters, 1 otherwise. "Ambiguous" characters
count 1, as Western terminals show them.
"""

from __future__ import annotations

import unicodedata

__all__ = ["display_width", "pad"]


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal (see the module docstring)."""
    return sum(_char_width(c) for c in text)


def pad(text: str, width: int, align: str = "<") -> str:
    """``text`` padded with spaces to ``width`` display columns: ``"<"`` left-aligned, ``">"`` right;
    as it is when already as wide or wider."""
    fill = " " * max(0, width - display_width(text))
    return text + fill if align == "<" else fill + text


def _char_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
