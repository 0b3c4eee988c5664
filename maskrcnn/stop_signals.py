"""Stop signals for long commands (``train``, ``predict``): SIGTERM (``timeout``, ``docker stop``, a job
scheduler, ``kill PID``) handled as Ctrl-C is, so that the work done so far is written, the stop is said
in a line, and the exit status is 128 + the signal's number (130 Ctrl-C, 143 SIGTERM), as a shell reports
a process the signal ended: ``cmd && next-step`` and schedulers do not take a stopped run for a finished
one.

``handling(signals, handler)`` installs ``handler`` for the run of a ``with`` block and restores the
handlers found on exit (a program calling ``maskrcnn.cli.main`` keeps its own), in the main thread only:
elsewhere Python cannot install one, and the block runs with the signals as they were.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterable, Iterator

__all__ = ["StoppedBySignal", "exit_status", "handling", "signal_name"]


class StoppedBySignal(KeyboardInterrupt):
    """A run stopped by the signal ``signum`` (a SIGTERM handled as Ctrl-C): a KeyboardInterrupt, so that
    the code that writes a Ctrl-C'd run's results writes this one's; the command exits with
    ``exit_status(signum)``."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = int(signum)


def signal_name(signum: int) -> str:
    """"SIGTERM" of 15; "signal N" of a number without a name here."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(signum: int) -> int:
    """128 + ``signum``: what a shell reports for a process the signal ended."""
    return 128 + int(signum)


@contextlib.contextmanager
def handling(signals: Iterable[int], handler: Callable) -> Iterator[bool]:
    """Install ``handler`` (``signal.signal``'s kind: ``handler(signum, frame)``) for ``signals`` in the
    block, the earlier handlers restored after it; yields whether it was installed (not outside the main
    thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield True
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
