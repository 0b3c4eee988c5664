"""User strings (class names, file names) as pictures, figures and text tables show them: one display
form, one shortening rule, and matplotlib text drawn literally. The full strings stay in the JSON files.

- ``display_name(name)``: a name with a control character (newline, tab, escape, C1 controls, ...), a
  line / paragraph separator, a bidi control (U+202A-202E, U+2066-2069), a lone surrogate or a
  noncharacter (U+FFFE, U+FFFF, U+FDD0-FDEF, each plane's last two) is shown quoted with those
  characters and its backslashes escaped (``'a\\nb'``; a name typed with a backslash and an n is
  ``'a\\\\nb'`` there), as ``repr`` would (an empty name is ``''``): a newline drew a label on two
  lines and broke a table's row, a tab drew a missing-glyph box, a right-to-left override reversed the
  score after the name, a U+FFFE printed as nothing or garbage (two files that could not be told apart
  in a message; the XML refusals escaped it, the other messages did not). Other characters (CJK, emoji
  with their zero-width joiners, right-to-left letters) are left as written.
- ``shorten(text, max_width)``: at most ``max_width`` display columns (``text_width.display_width``: a
  CJK character is 2), cut with "…" at the end: a 300-character class name covered the overlay and
  hid the objects, cut the confusion matrix's tick labels and padded every table row to 376 columns.
- ``short_name(name)``: both, at ``NAME_COLUMNS`` (40) columns: what overlays, figure tick labels and
  the tables' name columns show; a quoted name is cut between whole escapes and keeps its closing quote.
- ``with_shown(text, name)``: a message that names a file or class as written (an error's text) with
  that name in its ``display_name`` form.
- ``mpl_literal(text)``: a string matplotlib draws as written: by default a ``$`` pair is read as
  mathtext, so a class named ``$x$`` was drawn as an italic x and one named ``a$b $c`` raised
  ParseSyntaxException mid-eval. Every user string in the project's figures goes through it (not the
  global ``text.parse_math`` switch: the log-scale tick labels of curves.png are mathtext).
"""

from __future__ import annotations

import unicodedata

from maskrcnn.text_width import display_width

__all__ = ["NAME_COLUMNS", "display_name", "is_noncharacter", "is_unshowable", "mpl_literal", "short_name",
           "shorten", "with_shown"]

NAME_COLUMNS = 40  # display columns of a name in a picture, a figure or a table row
ELLIPSIS = "…"

_ESCAPED = ("Cc", "Cs", "Zl", "Zp")  # controls, lone surrogates, line / paragraph separators
_SHORT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
# Bidi embedding / override / isolate controls (U+202A-202E, U+2066-2069): drawn invisibly, they reverse
# the text after them ("\u202ecat 0.91" shows as "19.0 tac"). Other format characters (the zero-width
# joiners of emoji, the marks inside Arabic or Hebrew names) stay as written.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def is_noncharacter(char: str) -> bool:
    """Whether ``char`` is one of Unicode's 66 noncharacters (U+FDD0-FDEF, and U+FFFE / U+FFFF of each
    plane): never meant to be shown, a terminal prints one as nothing or garbage. Exactly these, not every
    code point unassigned in this Python's tables: a newer emoji is a character a newer font draws."""
    code = ord(char)
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def _escape(char: str) -> str:
    """``char`` as ``repr`` escapes it: \\n, \\x1b, \\u202e, \\U0001fffe."""
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def is_unshowable(char: str) -> bool:
    """Whether ``display_name`` escapes ``char`` (a C0 / C1 control, a lone surrogate, a line / paragraph
    separator, a bidi control, a noncharacter); ``overlay_paths.safe_file_name`` replaces the same
    characters."""
    return char in _BIDI_CONTROLS or is_noncharacter(char) or unicodedata.category(char) in _ESCAPED


_escaped = is_unshowable


def _quoted(name: str) -> bool:
    return not name or any(_escaped(c) for c in name)


def _pieces(name: str) -> list:
    """The quoted form's inside, one piece per character of ``name``: an escape is one piece."""
    return [_escape(c) if _escaped(c) else "\\\\" if c == "\\" else c for c in name]


def display_name(name) -> str:
    """``name`` as shown to a user (see the module docstring): as written, or quoted with its control
    characters, bidi controls and backslashes escaped; ``''`` for an empty name."""
    name = str(name)
    return "'" + "".join(_pieces(name)) + "'" if _quoted(name) else name


def with_shown(text: str, name) -> str:
    """``text`` with ``name`` (a path, a class name), where it appears as written, in its
    ``display_name`` form: an error message that names a file as written (an ``ImageReadError``'s) made
    printable without changing the rest of it. ``text`` unchanged when ``name`` is None or shows as
    written."""
    if name is None:
        return text
    name = str(name)
    shown = display_name(name)
    return text if shown == name or not name else text.replace(name, shown)


def _cut(pieces, room: int) -> str:
    """The longest run of whole ``pieces`` from the start that takes at most ``room`` columns."""
    kept = ""
    for piece in pieces:
        if display_width(kept + piece) > room:
            break
        kept += piece
    return kept


def shorten(text: str, max_width: int = NAME_COLUMNS) -> str:
    """``text`` if it takes at most ``max_width`` display columns, else its longest prefix that fits
    with "…" after it (the result takes at most ``max_width`` columns)."""
    if display_width(text) <= max_width:
        return text
    return _cut(text, max(0, max_width - display_width(ELLIPSIS))) + ELLIPSIS


def short_name(name, max_width: int = NAME_COLUMNS) -> str:
    """``display_name`` of ``name`` shortened to ``max_width`` columns. A quoted name is cut between
    whole escapes and keeps its closing quote after the "…" (``'aaa…'``): cut as plain text, 35 a's
    and ``\\u2028b`` became ``'aaa…a\\u2…``, an escape cut in two and no closing quote."""
    name = str(name)
    shown = display_name(name)
    if display_width(shown) <= max_width or not _quoted(name):
        return shorten(shown, max_width)
    room = max(0, max_width - 2 - display_width(ELLIPSIS))  # the two quotes and "…"
    return "'" + _cut(_pieces(name), room) + ELLIPSIS + "'"


def mpl_literal(text) -> str:
    """``text`` for a matplotlib Text (title, tick label, legend label) that draws it as written: each
    ``$`` escaped as ``\\$``, which matplotlib shows as a plain ``$`` (in every version, unlike the
    ``parse_math`` switch of 3.5+, which would also need setting on every tick matplotlib makes later)."""
    return str(text).replace("$", "\\$")
