"""A request queue that runs the model on batches: one worker thread, many submitting threads.

``BatchQueue(run_batch, batch_size=N, max_wait_s=T)``: ``submit(item)`` returns a
``concurrent.futures.Future`` at once; the worker takes the oldest waiting item, then collects more
until it holds ``N`` or ``T`` seconds have passed since it took the first (items already waiting are
always taken, however long the previous batch ran), and calls ``run_batch(items) -> results`` (one
result per item, in order). Each future gets its own result or exception: when a batch of several
fails, each of its items is run again alone, so that one bad item fails no other.

``group_key(item)`` (optional) splits a batch into groups of items with equal keys (a server's: image
sizes): each group is its own ``run_batch`` call, its futures are resolved as soon as it finishes (an
item never waits for another group's forward), and a failed group's items are run again alone, not
the groups that succeeded.

Only the worker thread calls ``run_batch``, so the model never runs on two threads at once. The queue
holds at most ``max_pending`` items: past that ``submit`` raises ``QueueFullError`` (a server answers
503) instead of letting memory grow with a flood of requests.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, List, Optional, Sequence

__all__ = ["BatchQueue", "QueueFullError"]

_STOP = object()


class QueueFullError(RuntimeError):
    """More requests are waiting than the queue holds."""


class BatchQueue:
    """Collect submitted items into batches for ``run_batch`` on one worker thread.

    Args:
        run_batch: items -> one result per item (called on the worker thread only).
        batch_size: most items per call.
        max_wait_s: how long the worker waits for batch-mates after taking the first item of a batch.
        max_pending: most items waiting (not yet taken by the worker).
        group_key: item -> a hashable key; items with different keys never share a ``run_batch`` call
            (None: all items of a batch share one).
        name: the worker thread's name.
    """

    def __init__(
        self,
        run_batch: Callable[[List[Any]], Sequence[Any]],
        *,
        batch_size: int = 1,
        max_wait_s: float = 0.01,
        max_pending: int = 64,
        group_key: Optional[Callable[[Any], Any]] = None,
        name: str = "maskrcnn-batch-worker",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.run_batch = run_batch
        self.batch_size = int(batch_size)
        self.max_wait_s = float(max_wait_s)
        self.max_pending = int(max_pending)
        self.group_key = group_key
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()  # guards _pending (Queue.qsize is only approximate)
        self._pending = 0
        self._thread: Optional[threading.Thread] = None
        self._name = name
        self.batches_run = 0  # for /health and tests: how many calls of run_batch so far
        self.items_run = 0

    @property
    def pending(self) -> int:
        return self._pending

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("BatchQueue already started")
        self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Finish what is queued, then end the worker."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def submit(self, item: Any) -> Future:
        if self._thread is None:
            raise RuntimeError("BatchQueue is not running (call start() first)")
        with self._lock:
            if self._pending >= self.max_pending:
                raise QueueFullError(
                    f"{self._pending} requests are already waiting (the limit is {self.max_pending}); "
                    "try again shortly"
                )
            self._pending += 1
        future: Future = Future()
        self._queue.put((item, future))
        return future

    # ------------------------------------------------------------------------------------------
    def _take(self, block: bool, timeout: Optional[float] = None):
        entry = self._queue.get(block=block, timeout=timeout)
        if entry is not _STOP:
            with self._lock:
                self._pending -= 1
        return entry

    def _collect(self) -> tuple:
        """Block for one item, then gather batch-mates: -> (entries, stop requested)."""
        first = self._take(block=True)
        if first is _STOP:
            return [], True
        entries, stop = [first], False
        deadline = time.monotonic() + self.max_wait_s
        while len(entries) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                # Past the deadline, still take what is already waiting (no blocking).
                entry = self._take(block=remaining > 0, timeout=remaining if remaining > 0 else None)
            except queue.Empty:
                break
            if entry is _STOP:
                stop = True
                break
            entries.append(entry)
        return entries, stop

    def _work(self) -> None:
        stop = False
        while not stop:
            entries, stop = self._collect()
            # A future whose caller gave up (cancelled) is dropped before it costs a forward.
            entries = [(item, fut) for item, fut in entries if fut.set_running_or_notify_cancel()]
            for group in self._groups(entries):
                self._run_group(group)

    def _groups(self, entries: list) -> list:
        """``entries`` split by ``group_key``, each group in submission order (groups by their first)."""
        if self.group_key is None:
            return [entries] if entries else []
        groups: dict = {}
        for entry in entries:
            try:
                key = self.group_key(entry[0])
            except Exception:  # no key: run alone, where run_batch says what is wrong with it
                key = object()
            groups.setdefault(key, []).append(entry)
        return list(groups.values())

    def _run_group(self, entries: list) -> None:
        """Run ``entries`` as one batch and resolve their futures at once."""
        # BaseException too (a SystemExit or GeneratorExit from inside a model's code): were this
        # thread to end, every request after it would wait for ever on a server that looks alive.
        try:
            results = self._run(entries)
        except BaseException as e:
            if len(entries) == 1:  # handed to its caller; the worker lives on
                entries[0][1].set_exception(e)
                return
            # One bad item must not fail its batch-mates (nor must a batch too large for the
            # memory left): each is run alone, and only those that fail alone get their error.
            for entry in entries:
                try:
                    (result,) = self._run([entry])
                except BaseException as e_alone:
                    entry[1].set_exception(e_alone)
                else:
                    entry[1].set_result(result)
            return
        for (_, fut), result in zip(entries, results):
            fut.set_result(result)

    def _run(self, entries: list) -> list:
        try:
            results = list(self.run_batch([item for item, _ in entries]))
        finally:
            self.batches_run += 1
            self.items_run += len(entries)
        if len(results) != len(entries):
            raise RuntimeError(f"run_batch returned {len(results)} results for {len(entries)} items")
        return results
