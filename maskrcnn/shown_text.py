"""User strings (class names, file names) as pictures, figures and text tables show them: one display
form, one shortening rule, and matplotlib text drawn literally. The full strings stay in the JSON files.

- ``display_name(name)``: a name with a control character (newline, tab, escape, ...) or a line /
  paragraph separator is shown quoted with those characters escaped (``'a\\nb'``), as ``repr`` would
  (an empty name is ``''``): a newline drew a label on two lines and broke a table's row, a tab drew a
  missing-glyph box. Other characters (CJK, emoji with their zero-width joiners, right-to-left text)
  are left as written.
- ``shorten(text, max_width)``: at most ``max_width`` display columns (``text_width.display_width``: a
  CJK character is 2), cut with "…" at the end: a 300-character class name covered the overlay and
  hid the objects, cut the confusion matrix's tick labels and padded every table row to 376 columns.
- ``short_name(name)``: both, at ``NAME_COLUMNS`` (40) columns: what overlays, figure tick labels and
  the tables' name columns show.
- ``mpl_literal(text)``: a string matplotlib draws as written: by default a ``$`` pair is read as
  mathtext, so a class named ``$x$`` was drawn as an italic x and one named ``a$b $c`` raised
  ParseSyntaxException mid-eval. Every user string in the project's figures goes through it (not the
  global ``text.parse_math`` switch: the log-scale tick labels of curves.png are mathtext).
"""

from __future__ import annotations

import unicodedata

from maskrcnn.text_width import display_width

__all__ = ["NAME_COLUMNS", "display_name", "mpl_literal", "short_name", "shorten"]

NAME_COLUMNS = 40  # display columns of a name in a picture, a figure or a table row
ELLIPSIS = "…"

_ESCAPED = ("Cc", "Cs", "Zl", "Zp")  # controls, lone surrogates, line / paragraph separators
_SHORT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def display_name(name) -> str:
    """``name`` as shown to a user (see the module docstring): as written, or quoted with its control
    characters escaped; ``''`` for an empty name."""
    name = str(name)
    if name and not any(unicodedata.category(c) in _ESCAPED for c in name):
        return name
    return "'" + "".join(_escape(c) if unicodedata.category(c) in _ESCAPED else c for c in name) + "'"


def shorten(text: str, max_width: int = NAME_COLUMNS) -> str:
    """``text`` if it takes at most ``max_width`` display columns, else its longest prefix that fits
    with "…" after it (the result takes at most ``max_width`` columns)."""
    if display_width(text) <= max_width:
        return text
    room = max(0, max_width - display_width(ELLIPSIS))
    kept = ""
    for char in text:
        if display_width(kept + char) > room:
            break
        kept += char
    return kept + ELLIPSIS


def short_name(name, max_width: int = NAME_COLUMNS) -> str:
    """``display_name`` of ``name`` shortened to ``max_width`` columns."""
    return shorten(display_name(name), max_width)


def mpl_literal(text) -> str:
    """``text`` for a matplotlib Text (title, tick label, legend label) that draws it as written: each
    ``$`` escaped as ``\\$``, which matplotlib shows as a plain ``$`` (in every version, unlike the
    ``parse_math`` switch of 3.5+, which would also need setting on every tick matplotlib makes later)."""
    return str(text).replace("$", "\\$")
