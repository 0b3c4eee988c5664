"""Which strings an XML 1.0 file can hold, for the XML exports (``to_cvat``, ``to_labelstudio``).

XML 1.0 allows tab, newline, CR and the characters from U+0020 on, less the lone surrogates and
U+FFFE / U+FFFF; no escape writes the others (``&#27;`` is as ill-formed as a raw ESC). ElementTree
writes them unchanged, so a class named ``"a\\x1bb"`` gave a CVAT file and a Label Studio config that
no parser (CVAT's, Label Studio's, ``convert-data``'s) reads. Such a name is refused before any image
is predicted (``check_xml_names``), as ``--export yolo`` refuses a line break; the formats that are not
XML keep the name.
"""

from __future__ import annotations

from typing import Optional, Sequence

__all__ = ["check_xml_names", "check_xml_text", "xml_forbidden_char"]

_ALLOWED_CONTROLS = frozenset("\t\n\r")


def xml_forbidden_char(text: str) -> Optional[str]:
    """The first character of ``text`` that XML 1.0 cannot hold, or None."""
    for ch in str(text):
        code = ord(ch)
        if (code < 0x20 and ch not in _ALLOWED_CONTROLS) or 0xD800 <= code <= 0xDFFF \
                or code in (0xFFFE, 0xFFFF):
            return ch
    return None


def check_xml_text(text: str, *, fmt: str, what: str) -> None:
    """ValueError naming ``what`` (``class 3 'a\\x1bb'``) and the character when ``text`` holds one XML
    1.0 cannot hold."""
    ch = xml_forbidden_char(text)
    if ch is not None:
        raise ValueError(f"--export {fmt}: {what} holds the character U+{ord(ch):04X}, which an XML 1.0 file "
                         f"cannot hold: leave {fmt} out of --export (the other formats keep the name), "
                         "or rename it")


def check_xml_names(categories: Sequence, fmt: str) -> None:
    """``check_xml_text`` over the class names (``Category``), in class index order."""
    from maskrcnn.shown_text import display_name

    for c in sorted(categories, key=lambda c: c.label):
        check_xml_text(c.name, fmt=fmt, what=f"class {c.label - 1} {display_name(c.name)}")
