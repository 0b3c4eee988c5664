"""``FileReads``: the objects of the weights files one call has read, so that a file is read once in it.

``train --init FILE`` without ``--config`` reads FILE to choose the preset (``init_kind``) and then for
its weights (``read_weights``): a 2 GB checkpoint was unpickled twice (our own format three times: the
checkpoint was read again to check it). One ``FileReads`` is made per call and dropped with it: no
process-wide cache, so a later call (a notebook's second ``maskrcnn.train``) reads the file as it is then.
An entry is keyed by the file's real path, size and modification time (a file replaced in between is read
anew) and by the reader (the numpy-only unpickler or ``torch.load``), and ``take`` forgets what it
hands over, so the weights are not held once they are loaded.
"""

from __future__ import annotations

import os
from typing import Callable


class FileReads:
    def __init__(self) -> None:
        self._objects: dict = {}

    @staticmethod
    def _key(path, reader: str):
        try:
            st = os.stat(path)
        except OSError:
            return None  # the reader names the missing file
        # a file rewritten at the same size within the filesystem's timestamp step (seconds on some) keeps
        # its key: fine within one call, the reason a FileReads must never outlive it
        return os.path.realpath(path), st.st_size, st.st_mtime_ns, reader

    def __len__(self) -> int:
        return len(self._objects)

    def clear(self) -> None:
        """Forget every object kept (the caller is done with the file reads)."""
        self._objects.clear()

    def read(self, path, reader: str, read: Callable[[], object], *, take: bool) -> object:
        """The object ``read()`` gives for ``path``, read at most once: kept for a later call, or
        (``take``) handed over and forgotten."""
        key = self._key(path, reader)
        if key is not None and key in self._objects:
            return self._objects.pop(key) if take else self._objects[key]
        obj = read()
        if key is not None and not take:
            self._objects[key] = obj
        return obj
