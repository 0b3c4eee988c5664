"""Type checks of values read from annotation files, one definition for every validator (``coco.py``,
``validated.py``, ``mask_codec.py``).

JSON's ``true`` / ``false`` parse as Python ints but are never an id, a size or a run length, so they are
refused; numpy integers (counts built in memory rather than parsed) are integers.
``is_finite_number`` takes plain ``int`` / ``float`` only: it checks values parsed from JSON (a box, a
keypoint, a score, an area), which are never numpy's.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["is_finite_number", "is_int", "is_whole"]


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
