"""Which strings an XML 1.0 file can hold, for the XML exports (``to_cvat``, ``to_labelstudio``).

XML 1.0 allows tab, newline, CR and the characters from U+0020 on, less the lone surrogates and
U+FFFE / U+FFFF; no escape writes the others (``&#27;`` is as ill-formed as a raw ESC). ElementTree
writes them unchanged, so a class named ``"a\\x1bb"`` gave a CVAT file and a Label Studio config that
no parser (CVAT's, Label Studio's, ``convert-data``'s) reads. Such a name is refused before any image
is predicted (``check_xml_names``), as ``--export yolo`` refuses a line break; the formats that are not
XML keep the name.
"""

from __future__ import annotations

import unicodedata
from typing import Optional, Sequence

from maskrcnn.shown_text import display_name, is_unshowable

__all__ = ["check_xml_names", "check_xml_text", "shown_in_message", "xml_forbidden_char"]

_ALLOWED_CONTROLS = frozenset("\t\n\r")


def xml_forbidden_char(text: str) -> Optional[str]:
    """The first character of ``text`` that XML 1.0 cannot hold, or None."""
    for ch in str(text):
        code = ord(ch)
        if (code < 0x20 and ch not in _ALLOWED_CONTROLS) or 0xD800 <= code <= 0xDFFF \
                or code in (0xFFFE, 0xFFFF):
            return ch
    return None


def _hidden(ch: str) -> bool:
    """Whether ``ch`` prints as nothing, a box or garbage: one XML cannot hold, or a noncharacter or
    unassigned code point (category Cn: U+FFFE, U+FFFF), which ``display_name`` leaves as written."""
    return xml_forbidden_char(ch) is not None or unicodedata.category(ch) == "Cn"


def _escape(ch: str) -> str:
    """``ch`` as ``repr`` escapes it (\\n, \\x1b, \\ufffe)."""
    code = ord(ch)
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def shown_in_message(text) -> str:
    """``text`` (a file name, a class name) as a refusal shows it: ``display_name``'s form, and quoted with
    the ``_hidden`` characters escaped too when it holds any (a raw U+FFFE printed as nothing or garbage:
    the message named a file or class that cannot be told from another)."""
    text = str(text)
    if not any(_hidden(c) for c in text):
        return display_name(text)
    return "'" + "".join(_escape(c) if _hidden(c) or is_unshowable(c) else "\\\\" if c == "\\" else c
                         for c in text) + "'"


def _escaped_hidden(message: str) -> str:
    """``message`` with any ``_hidden`` character left in it escaped (a name a caller showed by
    ``display_name``, which leaves U+FFFE as written)."""
    return "".join(_escape(c) if _hidden(c) else c for c in message)


def check_xml_text(text: str, *, fmt: str, what: str) -> None:
    """ValueError naming ``what`` (``class 3 'a\\x1bb'``) and the character when ``text`` holds one XML
    1.0 cannot hold; no such character printed raw."""
    ch = xml_forbidden_char(text)
    if ch is not None:
        raise ValueError(_escaped_hidden(
            f"--export {fmt}: {what} holds the character U+{ord(ch):04X}, which an XML 1.0 file cannot hold: "
            f"leave {fmt} out of --export (the other formats keep the name), or rename it"))


def check_xml_names(categories: Sequence, fmt: str) -> None:
    """``check_xml_text`` over the class names (``Category``), in class index order."""
    for c in sorted(categories, key=lambda c: c.label):
        check_xml_text(c.name, fmt=fmt, what=f"class {c.label - 1} {shown_in_message(c.name)}")
