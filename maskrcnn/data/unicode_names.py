"""Names that differ only in their Unicode form: 'café' composed (NFC: 'é' one code point, as typed on
Windows and Linux and as annotation tools store it) and decomposed (NFD: 'e' and a combining accent, as
macOS's HFS+ stores file names and as zip archives made there keep them). They print alike and mean one
thing, but compare unequal, and on Linux a file name is its bytes: 'café.jpg' named in a COCO file does
not open the 'café.jpg' unzipped beside it. Labels and class names are read composed (``nfc``); a file
name written in one form finds the one file stored in the other (``other_form_names``)."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Optional

__all__ = ["folded_name", "folder_listing", "nfc", "other_form_names"]


def nfc(text):
    """``text`` in the composed Unicode form (NFC); anything else than a string as it is."""
    return unicodedata.normalize("NFC", text) if isinstance(text, str) else text


def folded_name(name: str) -> str:
    """The key under which a folder's names that differ only in Unicode form or case come together."""
    return nfc(name).lower()


def folder_listing(folder: Path, listings: Optional[dict]) -> dict:
    """{``folded_name``: [names]} of ``folder``'s entries ({} when it cannot be read), read once per
    folder into ``listings`` ({folder: that dict}; None: not kept)."""
    listings = {} if listings is None else listings
    if folder not in listings:
        listing: dict = {}
        try:
            for entry in os.scandir(folder):
                listing.setdefault(folded_name(entry.name), []).append(entry.name)
        except OSError:  # no such folder, or not readable
            pass
        listings[folder] = listing
    return listings[folder]


def other_form_names(path: Path, listings: Optional[dict] = None) -> list:
    """The files beside ``path`` (itself no file) whose name is its last part in another Unicode form
    (equal once both are NFC), sorted; one is the file meant, several (the name written in both forms
    and a third, mixed one) cannot be told apart."""
    path = Path(path)
    folder, name = path.parent, path.name
    return sorted(folder / n for n in folder_listing(folder, listings).get(folded_name(name), ())
                  if n != name and nfc(n) == nfc(name) and (folder / n).is_file())
