"""Type checks of values read from annotation files, one definition for every validator (``coco.py``,
``validated.py``, ``mask_codec.py``), and ``read_json_file``, the one reader of their JSON files.

JSON's ``true`` / ``false`` parse as Python ints but are never an id, a size or a run length, so they are
refused; numpy integers (counts built in memory rather than parsed) are integers.
``is_finite_number`` takes plain ``int`` / ``float`` only: it checks values parsed from JSON (a box, a
keypoint, a score, an area), which are never numpy's.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
from typing import Union

import numpy as np

__all__ = ["is_finite_number", "is_int", "is_whole", "read_json_file"]

# Byte order marks -> the codec that drops them. UTF-32 first: its little-endian mark starts with UTF-16's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _unique_keys(pairs: list) -> dict:
    """``json``'s object_pairs_hook: the object, or ValueError naming a key given twice with different
    values. Python's own reader keeps the last value silently: a hand-concatenated export with
    "annotations" twice lost every annotation of the first list without a word. A key repeated with the
    same value loses nothing and is accepted."""
    obj = dict(pairs)
    if len(obj) != len(pairs):  # the common case costs one len(): the pairs are only scanned on a repeat
        for key, value in pairs:
            kept = obj[key]  # the last value: every value of the key equals it when nothing is lost
            # the type too: true and 1 (or 1 and 1.0) compare equal but are not one value
            if value is not kept and not (type(value) is type(kept) and value == kept):
                raise ValueError(f"duplicate key {key!r} in one object with different values; a JSON "
                                 f"reader keeps only one of them")
    return obj


def _digits_problem(path, encoding: str, error: ValueError) -> ValueError:
    """Python's refusal of a 4300+-digit integer ("... use sys.set_int_max_str_digits() ...": advice for
    Python code, not for a command's user) as where and what: the line of the first such number."""
    line = None
    with open(path, encoding=encoding) as f:
        for number, text in enumerate(f, 1):
            if re.search(r"\d{4301}", text):
                line = number
                break
    where = f" at line {line}" if line is not None else ""
    return ValueError(f"a number of more than 4300 digits{where}; no annotation value is that long")


_HEAD_BYTES = 65536  # read first to find the encoding and the first character: any JSON starts within
_WHITESPACE = " \t\n\r"  # JSON's (and Python's json module's) blanks
# what a JSON value can start with (NaN and Infinity: Python's json module reads them); top-level scalars
# too, so that every caller's own message for a value of the wrong type is unchanged
_JSON_STARTS = frozenset('{["-0123456789tfnNI')


def _refuse_what_cannot_start_json(head: bytes, encoding: str) -> None:
    """The error ``json.load`` gives for a file whose first non-blank character cannot start a JSON value
    (a binary file, a sparse file of NUL bytes), in its own words, from the file's first bytes ``head``:
    it read the whole file first (a 1 GB file: seconds, and 2.3 GB of memory, to say "Expecting value:
    line 1 column 1"). A head that is all blank, or that ends in a character cut in two, is left to
    ``json.load``; a byte that is no text where the first character should be is its UnicodeDecodeError,
    as decoding the whole file would give it."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        text = decoder.decode(head, final=False)
    except UnicodeDecodeError as e:
        before = codecs.getincrementaldecoder(encoding)().decode(head[: e.start], final=False)
        if not before.strip(_WHITESPACE):
            raise  # the same error, at the same position, as decoding the whole file
        text = before
    start = len(text) - len(text.lstrip(_WHITESPACE))
    if start < len(text) and text[start] not in _JSON_STARTS:
        raise json.JSONDecodeError("Expecting value", text, start)


def read_json_file(path: Union[str, os.PathLike]):
    """A JSON file's value. UTF-8, or UTF-16 / UTF-32 with a byte order mark (what Windows PowerShell 5.1's
    ``Out-File`` and ``>`` write, and Notepad's "Unicode"); a UTF-8 BOM is dropped too. OSError when it
    cannot be read; ValueError (UnicodeDecodeError, JSONDecodeError, a key given twice in one object with
    two values, a number of more than 4300 digits) or RecursionError when it is not JSON: the callers name
    the file."""
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    encoding = next((name for bom, name in _BOMS if head.startswith(bom)), "utf-8")
    _refuse_what_cannot_start_json(head, encoding)
    # json.load reads the whole text at once (f.read()): the file's bytes and its decoded text both live
    # while it is decoded, then the text and the parsed values while it is parsed (2-3x the file's size
    # at the peak), which the standard library's parser cannot avoid; hence the check of its first bytes
    # above, so that a file that cannot be JSON costs nothing however large
    with open(path, encoding=encoding) as f:
        try:
            return json.load(f, object_pairs_hook=_unique_keys)
        except ValueError as e:
            if "int_max_str_digits" not in str(e):
                raise
            error = e
    raise _digits_problem(path, encoding, error) from None


def is_int(value) -> bool:
    """An integer (numpy's too), booleans aside."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_whole(value) -> bool:
    """An integer, or a float holding one (exporters that divide write sizes as 480.0)."""
    return is_int(value) or (isinstance(value, float) and value.is_integer())


def is_finite_number(value) -> bool:
    """A plain int or float that is finite as a float (booleans, NaN, infinities aside). An integer too
    large for a float (JSON allows 400 digits) is refused too: math.isfinite raised OverflowError on it,
    and every user of the value converts it to a float."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
