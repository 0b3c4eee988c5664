"""Catching the warnings raised on this thread, safely while other threads do the same through
``caught_here``, or run ``catch_warnings`` blocks holding ``LOCK``. A ``catch_warnings`` block on another
thread that does not hold it can still put back a display hook of its own time (the stdlib's limit):
the user's own hook may then be replaced by the stdlib's until the process ends.

``warnings.catch_warnings`` swaps process-wide state (the filters, the display hook) and puts back what
it found on exit, so two blocks on two threads that overlap (serve decodes uploads on a thread pool) put
back each other's state: A enters, B enters (saving A's recorder), A exits, B exits and restores A's
recorder, and from then on every warning of the process went into A's dead list, never printed.

``caught_here`` changes no filter. While at least one block is open on any thread, the display hook
(``warnings.showwarning``, which the warnings module lets programs replace) is one that hands a warning
raised on a thread with an open block to that block's list, and any other warning to the hook found when
the first block opened; the last block to close puts that hook back, unless someone replaced ours
meanwhile (theirs is kept). One lock guards the count and the swap (``LOCK``: code that must run a
``catch_warnings`` block of its own on such threads holds it, so that its block is wholly inside or
outside the swap and puts back what it found).
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager

__all__ = ["LOCK", "caught_here", "ignoring"]

LOCK = threading.RLock()
_open: dict = {}  # thread id -> the lists of its open blocks, innermost last
_saved: list = []  # [the display hook found when the first block opened], while any block is open


def _dispatch(message, category, filename, lineno, file=None, line=None):
    lists = _open.get(threading.get_ident())
    if lists:
        lists[-1].append(warnings.WarningMessage(message, category, filename, lineno, file, line))
        return
    shown = _saved[0] if _saved else warnings._showwarning_orig  # noqa: SLF001 -- the stdlib's own hook
    shown(message, category, filename, lineno, file, line)


@contextmanager
def caught_here():
    """Yield a list that receives the warnings shown on this thread in the block (``WarningMessage``s,
    as ``catch_warnings(record=True)`` gives); those of other threads are shown as usual. The filters
    decide as ever (an ignored warning never arrives); each block shows a warning seen before again, as
    ``catch_warnings`` does."""
    caught: list = []
    ident = threading.get_ident()
    with LOCK:
        if not _saved:
            if warnings.showwarning is not _dispatch:
                _saved.append(warnings.showwarning)
            else:  # ours, left by a catch_warnings block that saved it: the stdlib's is behind it
                _saved.append(warnings._showwarning_orig)  # noqa: SLF001
            warnings.showwarning = _dispatch
        _open.setdefault(ident, []).append(caught)
        mutated = getattr(warnings, "_filters_mutated", None)
        if callable(mutated):  # as catch_warnings does: "once"/"default" warnings are shown again
            mutated()
    try:
        yield caught
    finally:
        with LOCK:
            lists = _open[ident]
            lists.pop()
            if not lists:
                del _open[ident]
            if not _open:
                if warnings.showwarning is _dispatch:
                    warnings.showwarning = _saved[0]
                _saved.clear()


@contextmanager
def ignoring(category: type):
    """``category`` warnings ignored in the block (a ``catch_warnings`` block with an "ignore" filter),
    holding ``LOCK``, as such a block on threads that use ``caught_here`` must: hold it only around short
    calls."""
    with LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", category)
        yield
