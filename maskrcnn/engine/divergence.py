"""Divergence guard: stop a run whose loss has exploded while staying finite.

A learning rate that is too high often makes the total loss jump to 1e4..1e8 and stay there (gradient
clipping keeps it finite): no NaN stops the run, which then spends hours writing checkpoints of garbage.
``DivergenceGuard`` watches the total loss of each iteration and reports divergence when it stays above
``factor`` times the median of the recent history for ``patience`` iterations in a row.

- The history is the last ``window`` losses that were not themselves flagged, so an explosion never
  raises its own reference (a median over exploded values would soon call them normal).
- Judging starts once the history holds ``min(window, 3)`` losses, warm-up included: warm-up is when a
  too-high learning rate explodes (the lr climbs to it), and a guard that waited for its end would take
  the exploded losses as its reference and never fire. The loss of early iterations falls fast, which
  only makes the reference higher (more lenient), never the other way round.
- A spike of fewer than ``patience`` iterations is noise: the streak resets at the first loss back
  under the threshold, and the spike is left out of the history.
- ``factor == 0`` turns the guard off.

``state_dict()`` / ``load_state_dict()`` hold the history and the streak: the trainer keeps them in its
checkpoints, so a resumed run stops (or not) at the same iteration as an uninterrupted one. Plain floats
and ints only (checkpoints load with ``weights_only=True``).
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Optional

__all__ = ["DivergenceGuard"]

# Fewest losses the median is taken over (the median of three is robust to one odd batch).
_MIN_HISTORY = 3


class DivergenceGuard:
    """Judge each iteration's total loss against ``factor`` x the median of the recent ones.

    Args:
        factor: a loss above ``factor * median`` is flagged; 0 disables the guard.
        window: how many recent (unflagged) losses the median is taken over.
        patience: flagged iterations in a row that mean divergence (fewer are a spike).
    """

    def __init__(self, *, factor: float, window: int, patience: int):
        if not factor >= 0:  # also refuses NaN
            raise ValueError(f"factor must be >= 0 (0: off), got {factor}")
        if window < 1 or patience < 1:
            raise ValueError(f"window and patience must be >= 1, got {window}, {patience}")
        self.factor = float(factor)
        self.window = int(window)
        self.patience = int(patience)
        self.history: deque = deque(maxlen=self.window)
        self.streak = 0  # flagged iterations in a row, up to the last one seen
        self.median = float("nan")  # the reference the last judged loss was compared with

    @property
    def enabled(self) -> bool:
        return self.factor > 0

    def update(self, loss: float) -> bool:
        """Record one iteration's total loss; True when the run has diverged."""
        if not self.enabled:
            return False
        if len(self.history) >= min(self.window, _MIN_HISTORY):
            self.median = statistics.median(self.history)
            # (a median of 0, a loss that cannot go lower, makes no ratio)
            if self.median > 0 and loss > self.factor * self.median:
                self.streak += 1
                return self.streak >= self.patience
        self.streak = 0
        self.history.append(float(loss))
        return False

    def state_dict(self) -> dict:
        return {"history": list(self.history), "streak": self.streak}

    def load_state_dict(self, state: Optional[dict]) -> None:
        """Restore ``state_dict()``'s values; None (a checkpoint written without a guard) starts afresh."""
        state = state or {}
        self.history = deque((float(v) for v in state.get("history", ())), maxlen=self.window)
        self.streak = int(state.get("streak", 0))
