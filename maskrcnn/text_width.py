"""Padding text to a column by how wide a terminal shows it, for the plain-text tables the commands print
(show-data, split-data, eval's per-class table): a class name "葉 leaf" or "🍃 emoji" is 2 columns a
character for its wide characters, so padding by ``len`` left its row's numbers one column off per such
character.

Width of a character: 2 for East Asian Wide and Fullwidth (``unicodedata.east_asian_width`` W / F: CJK,
most emoji), 0 for combining marks and zero-width format characters, 1 otherwise. "Ambiguous" characters
count 1, as Western terminals show them. An emoji's skin-tone modifier (U+1F3FB..U+1F3FF) and a character
joined by U+200D (ZERO WIDTH JOINER, as in family or profession emoji "👩‍🔬") count 0: they are drawn
into the emoji before them, not beside it.
"""

from __future__ import annotations

import unicodedata

__all__ = ["display_width", "pad"]


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal (see the module docstring)."""
    return sum(0 if previous == _ZWJ else _char_width(c) for previous, c in zip(" " + text, text))


def pad(text: str, width: int, align: str = "<") -> str:
    """``text`` padded with spaces to ``width`` display columns: ``"<"`` left-aligned, ``">"`` right;
    as it is when already as wide or wider."""
    fill = " " * max(0, width - display_width(text))
    return text + fill if align == "<" else fill + text


_ZWJ = "\u200d"
_SKIN_TONES = range(0x1F3FB, 0x1F400)  # EMOJI MODIFIER FITZPATRICK TYPE-1-2 .. TYPE-6


def _char_width(char: str) -> int:
    if ord(char) in _SKIN_TONES:
        return 0
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
