"""The floating dtype weights were stored in, said in one note when it is not float32.

    dtype_note(state, became) -> "the weights are float16, not float32: BECAME; the precision ..." | None
    to_model_dtypes(ours, model_sd) -> (ours cast to the model's dtypes, the note or None)

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


def _size_words(state: dict) -> str:
    """How the floating tensors' bytes change as float32 ("twice the bytes"); "" when not a plain ratio."""
    floats = [v for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    held = sum(v.numel() * v.element_size() for v in floats)
    ratio = sum(v.numel() * 4 for v in floats) / held if held else 1.0
    return {2.0: " (twice the bytes)", 4.0: " (four times the bytes)", 0.5: " (half the bytes)"}.get(
        ratio, "")


def dtype_note(state: dict, became: str, *, sized: bool = False) -> Optional[str]:
    """One line when a floating tensor of ``state`` is not float32: which dtypes (with their counts when
    mixed), what ``became`` of them, and that what a narrower dtype rounded off is not regained (a wider
    one is rounded now); ``sized``: how the bytes change as float32. None for float32 weights."""
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
    return f"the weights are {held}, not float32: {became}{_size_words(state) if sized else ''}; {lost}"


def to_model_dtypes(ours: dict, model_sd: dict) -> tuple:
    """``(ours with each floating tensor in the dtype of the model's own, the note or None)``: a
    converter's last step (keys already checked against ``model_sd``)."""
    note = dtype_note(ours, CONVERTED, sized=True)
    cast = {k: v.to(model_sd[k].dtype) if v.is_floating_point() else v for k, v in ours.items()}
    return cast, note
