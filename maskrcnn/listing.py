"""One-line listings for messages: the first few items and how many more, so that a summary of a
dataset of 1000+ classes (LVIS: 1203) stays a readable line instead of tens of kilobytes."""

from __future__ import annotations

from typing import Iterable

__all__ = ["short_listing"]

LISTED = 20  # items shown before "... (N more)"


def short_listing(items: Iterable, *, limit: int = LISTED, what: str = "more") -> str:
    """``items`` (already formatted as they should read, in the order to show) joined with ", ", cut after
    ``limit`` with ", ... (N more)"; "none" when empty."""
    items = [str(item) for item in items]
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} {what})" if len(items) > limit else "")
