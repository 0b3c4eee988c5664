"""Type checks of values read from annotation files, one definition for every validator (``coco.py``,
``validated.py``, ``mask_codec.py``).

JSON's ``true`` / ``false`` parse as Python ints but are never an id, a size or a run length, so they are
refused; numpy integers (counts built in memory rather than parsed) are integers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["is_int", "is_whole"]


def is_int(value) -> bool:
    """An integer (numpy's too), booleans aside."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_whole(value) -> bool:
    """An integer, or a float holding one (exporters that divide write sizes as 480.0)."""
    return is_int(value) or (isinstance(value, float) and value.is_integer())
