"""A reader that stops reading stdout (``maskrcnn eval ... | head -1``) stops the printing, not the command.

Python ignores SIGPIPE, so a print to a pipe whose reader has gone raises ``BrokenPipeError``; raised from
a command's first table, it ended ``eval`` after the whole inference and before ``metrics.json`` was
written ("error: broken pipe", exit 1). ``reader_gone_guard`` puts a stand-in for ``sys.stdout`` in place
while a command runs: at the first broken pipe it stops writing (the rest of the output has no reader), the
command finishes its work and writes its files, and its exit status is its own (0 after a finished run),
with nothing said on stderr. The descriptor of the dead pipe is pointed at the null device, so that the
text still buffered there (flushed later by this stand-in or at interpreter exit) goes nowhere instead of
raising again. The entry point owns the process's streams, so ``cli.main`` uses it; the previous
``sys.stdout`` is restored on return.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys


def _is_reader_gone(error: OSError) -> bool:
    # EPIPE; Windows reports a pipe closed by its reader as EINVAL on write
    return (isinstance(error, BrokenPipeError) or error.errno == errno.EPIPE
            or (os.name == "nt" and error.errno == errno.EINVAL))


class ReaderGoneStream:
    """``stream`` as it is, except that a write or flush that finds the reader gone is dropped, and every
    later one too (``gone`` tells which happened)."""

    def __init__(self, stream):
        self._stream = stream
        self.gone = False

    def write(self, text):
        if self.gone:
            return len(text)
        try:
            return self._stream.write(text)
        except OSError as e:
            if not _is_reader_gone(e):
                raise
            self._reader_gone()
            return len(text)

    def flush(self):
        if self.gone:
            return
        try:
            self._stream.flush()
        except OSError as e:
            if not _is_reader_gone(e):
                raise
            self._reader_gone()

    def _reader_gone(self) -> None:
        self.gone = True
        try:  # what is still buffered in the stream goes to the null device when it is flushed later
            fd = self._stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except (OSError, ValueError, AttributeError):  # no descriptor (a StringIO): nothing to point away
            pass

    def __getattr__(self, name):  # encoding, isatty, fileno, buffer...: the stream's own
        return getattr(self._stream, name)


@contextlib.contextmanager
def reader_gone_guard():
    """``sys.stdout`` as a ``ReaderGoneStream`` inside the block (yielded), flushed on the way out so that a
    reader gone by then is caught too; the earlier ``sys.stdout`` restored."""
    previous = sys.stdout
    if previous is None:  # pythonw: no console at all
        yield None
        return
    guarded = ReaderGoneStream(previous)
    sys.stdout = guarded
    try:
        yield guarded
    finally:
        try:
            guarded.flush()
        finally:
            sys.stdout = previous
