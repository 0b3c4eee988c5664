"""The floating dtype weights were stored in, said in one note when it is not float32.

    dtype_note(state, became) -> "the weights are float16, not float32: BECAME; the precision ..." | None
    to_model_dtypes(ours, model_sd) -> (ours cast to the model's dtypes, the note or None)
    size_as_float32(state) -> "twice the bytes of float16" | None

The note fits every caller (a converter's result goes to ``convert``, which writes a file, and to
``train --init``, which writes none): what a file of float32 costs is said apart (``size_as_float32``), by
``convert`` alone.

The model's parameters are float32. Weights saved as float16 or bfloat16 (``model.half()`` before
``torch.save``, a half-precision export) load without an error, cast up on the way in; but what the cast
down rounded off is gone: a probe's float16 copy of a checkpoint scored up to 1e-3 apart from the
original, its bfloat16 copy found one detection more. Such a file is read, never refused; the note says
what it holds and what became of it, so that a small difference from the original is not a mystery.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional

import torch

# what ``to_model_dtypes`` does to another library's weights, in the note's words
CONVERTED = "converted to float32, the model's dtype"
# what predict / eval / export do to them
LOADED = "loaded into the model's float32 parameters"


def _float_counts(state: dict) -> Counter:
    """Floating tensors of ``state`` per dtype ("float16": 140); integer ones (batch counters) are none."""
    return Counter(str(v.dtype).replace("torch.", "") for v in state.values()
                   if isinstance(v, torch.Tensor) and v.is_floating_point())


def size_as_float32(state: dict) -> Optional[str]:
    """How the floating tensors' bytes change as float32 ("twice the bytes of float16"), for a caller that
    writes them so; None when they are float32 already."""
    counts = _float_counts(state)
    if set(counts) <= {"float32"}:
        return None
    floats = [v for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    held = sum(v.numel() * v.element_size() for v in floats)
    ratio = sum(v.numel() * 4 for v in floats) / held if held else 1.0
    words = {2.0: "twice the bytes", 4.0: "four times the bytes", 0.5: "half the bytes"}.get(
        ratio, f"{ratio:.3g} times the bytes")
    return f"{words} of {', '.join(sorted(counts))}" if len(counts) == 1 else f"{words} of the file's mix"


def dtype_note(state: dict, became: str) -> Optional[str]:
    """One line when a floating tensor of ``state`` is not float32: which dtypes (with their counts when
    mixed), what ``became`` of them, and that what a narrower dtype rounded off is not regained (a wider
    one is rounded now). None for float32 weights. No bytes: a caller that writes says them
    (``size_as_float32``)."""
    counts = _float_counts(state)
    others = {d: n for d, n in counts.items() if d != "float32"}
    if not others:
        return None
    total = sum(counts.values())
    if len(counts) == 1:
        held = next(iter(others))
    else:
        held = ", ".join(f"{d} ({n} of {total} floating tensors)" for d, n in sorted(others.items()))
    narrow = [d for d in others if torch.finfo(getattr(torch, d)).bits < 32]
    if narrow:
        lost = (f"what {' / '.join(sorted(narrow))} rounded off when saved is not regained: results may "
                "differ slightly from the float32 original's")
    else:
        lost = "each value rounded to float32"
    return f"the weights are {held}, not float32: {became}; {lost}"


def to_model_dtypes(ours: dict, model_sd: dict) -> tuple:
    """``(ours with each floating tensor in the dtype of the model's own, the note or None)``: a
    converter's last step (keys already checked against ``model_sd``)."""
    note = dtype_note(ours, CONVERTED)
    cast = {k: v.to(model_sd[k].dtype) if v.is_floating_point() else v for k, v in ours.items()}
    return cast, note
