"""Text shared by the reports of the dataset commands (``split-data``, ``merge-data``, ``show-data``), so
that they print skipped records and class names alike. Not a command: no ``HELP``, no ``run``.
"""

from __future__ import annotations

__all__ = ["shown_name", "skipped_line"]


def skipped_line(skipped: dict) -> str:
    """{reason: count} -> 'skipped: 1 bad_bbox, 2 missing_image_file' (reasons sorted), or 'skipped: none'."""
    return "skipped: " + (", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())) or "none")


def shown_name(name: str) -> str:
    """A class name for a table row: as written, or its repr when empty or holding a newline or tab (a
    blank row, or one that breaks the table)."""
    return name if name and name.isprintable() else repr(name)
