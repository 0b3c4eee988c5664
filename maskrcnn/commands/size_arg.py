"""The ``--size HxW`` option of ``export`` and ``benchmark``: parsed and bounded in one place.

``MAX_SIDE`` (4096) is the longest side accepted: both commands allocate an image (or a batch) of that
size whole before anything runs, so a typo like ``100000x100000`` is one line, not the allocator's raw
error about 120 GB.
"""

from __future__ import annotations

# 4096 is twice the longest side any preset resizes to (input.max_size_test: 1333, 2048 at most), while
# 100000x100000 would ask the allocator for 120 GB and die in its raw error. A model run on larger
# images still exports (onnx takes any H and W) and still predicts (the predictor resizes).
MAX_SIDE = 4096


def parse_size(text: str, *, multiple: int = 1, allocated: str = "the image") -> tuple:
    """``"HxW"`` -> (H, W), each side positive (a multiple of ``multiple``) and at most ``MAX_SIDE``;
    ValueError naming ``--size`` otherwise. ``allocated``: what the command allocates at this size, for
    the message."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size expects HxW (e.g. 800x1067), got {text!r}") from None
    if h <= 0 or w <= 0 or h % multiple or w % multiple:
        what = f"positive multiples of {multiple}" if multiple > 1 else "positive"
        raise ValueError(f"--size {text}: height and width must be {what}")
    if max(h, w) > MAX_SIDE:
        raise ValueError(f"--size {text}: each side must be at most {MAX_SIDE} ({allocated} is allocated "
                         "whole; the presets resize to at most 2048)")
    return h, w
