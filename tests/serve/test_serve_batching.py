"""BatchQueue: requests waiting while the model runs go into the next batch (up to batch_size), each
caller gets its own result, a failing batch fails its callers only, and the queue refuses a flood.

The worker is held inside ``run_batch`` by an event while the test submits, so which items share a
batch is decided by the test, not by timing."""

import threading

import pytest

from maskrcnn.serve.batching import BatchQueue, QueueFullError


class GatedRunner:
    """run_batch that records its batches; the first call waits for ``release`` after ``entered``."""

    def __init__(self, fail_on=None):
        self.batches = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items):
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(timeout=60)
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError(f"bad item {self.fail_on}")
        return [x * 10 for x in items]


def _started(runner, **kw):
    q = BatchQueue(runner, **kw)
    q.start()
    return q


def test_waiting_requests_share_batches_and_get_their_own_results():
    runner = GatedRunner()
    q = _started(runner, batch_size=4, max_wait_s=0.0)
    try:
        first = q.submit(0)
        assert runner.entered.wait(timeout=60)  # the worker holds [0]; the rest wait in the queue
        rest = [q.submit(i) for i in range(1, 10)]
        assert q.pending == 9
        runner.release.set()
        assert [f.result(timeout=60) for f in [first, *rest]] == [i * 10 for i in range(10)]
    finally:
        q.stop(timeout=60)
    assert runner.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]
    assert (q.batches_run, q.items_run, q.pending) == (4, 10, 0)


def test_a_bad_item_fails_only_its_own_caller_and_the_worker_goes_on():
    runner = GatedRunner(fail_on=3)
    q = _started(runner, batch_size=2, max_wait_s=0.0)
    try:
        futures = [q.submit(0)]
        assert runner.entered.wait(timeout=60)
        futures += [q.submit(i) for i in range(1, 6)]  # batches [1, 2], [3, 4], [5]
        runner.release.set()
        with pytest.raises(RuntimeError, match="bad item 3"):
            futures[3].result(timeout=60)
        # its batch-mate is run again alone and gets its own result, as do the other batches
        assert [futures[i].result(timeout=60) for i in (0, 1, 2, 4, 5)] == [0, 10, 20, 40, 50]
    finally:
        q.stop(timeout=60)
    assert runner.batches == [[0], [1, 2], [3, 4], [3], [4], [5]]


def test_even_a_base_exception_from_the_model_leaves_the_worker_alive():
    def run_batch(items):
        if items == [1]:
            raise SystemExit("model code called sys.exit")  # ends a thread, unlike an Exception
        return [x * 10 for x in items]

    q = _started(run_batch, batch_size=1, max_wait_s=0.0)
    try:
        failed = q.submit(1)
        assert isinstance(failed.exception(timeout=60), SystemExit)
        assert q.submit(2).result(timeout=10) == 20  # without the worker: never answered
    finally:
        q.stop(timeout=60)


def test_flood_is_refused_and_cancelled_requests_cost_nothing():
    runner = GatedRunner()
    q = _started(runner, batch_size=8, max_wait_s=0.0, max_pending=2)
    try:
        q.submit(0)
        assert runner.entered.wait(timeout=60)
        a, b = q.submit(1), q.submit(2)
        with pytest.raises(QueueFullError, match="2 requests are already waiting"):
            q.submit(3)
        assert a.cancel()  # the caller gave up (e.g. the client disconnected)
        runner.release.set()
        assert b.result(timeout=60) == 20
    finally:
        q.stop(timeout=60)
    assert runner.batches == [[0], [2]]


def test_stop_finishes_what_is_queued_and_bad_settings_are_refused():
    runner = GatedRunner()
    q = _started(runner, batch_size=3, max_wait_s=0.0)
    first = q.submit(0)
    assert runner.entered.wait(timeout=60)
    later = [q.submit(i) for i in (1, 2)]
    runner.release.set()
    q.stop(timeout=60)
    assert [f.result(timeout=0) for f in [first, *later]] == [0, 10, 20]
    with pytest.raises(RuntimeError, match="not running"):
        q.submit(5)
    for bad in ({"batch_size": 0}, {"max_wait_s": -1}, {"max_pending": 0}):
        with pytest.raises(ValueError):
            BatchQueue(runner, **bad)


def test_a_size_group_is_answered_without_waiting_for_the_others_and_fails_alone():
    """group_key: one run_batch per group, each group's futures resolved when it finishes, and a failed
    group retried item by item without rerunning the groups that succeeded."""
    calls, b_started, b_release = [], threading.Event(), threading.Event()

    def run(items):
        calls.append(list(items))
        if items[0][0] == "hold":  # the first batch: wait until all four are queued
            assert first_release.wait(timeout=60)
            return [None]
        if items[0][0] == "b":
            b_started.set()
            assert b_release.wait(timeout=60)
            if len(items) > 1:
                raise RuntimeError("group b fails together")
        return [x[1] * 10 for x in items]

    first_release = threading.Event()
    q = BatchQueue(run, batch_size=4, max_wait_s=0.0, group_key=lambda item: item[0])
    q.start()
    try:
        hold = q.submit(("hold", 0))
        while not calls:
            threading.Event().wait(0.005)
        futs = [q.submit(item) for item in (("a", 1), ("b", 2), ("a", 3), ("b", 4))]
        first_release.set()
        assert hold.result(timeout=60) is None
        assert b_started.wait(timeout=60)
        # group a is answered while group b is still in the model
        assert [futs[0].result(timeout=5), futs[2].result(timeout=5)] == [10, 30]
        assert not futs[1].done()
        b_release.set()
        assert [futs[1].result(timeout=60), futs[3].result(timeout=60)] == [20, 40]
    finally:
        b_release.set()
        q.stop(timeout=60)
    assert calls[1:] == [[("a", 1), ("a", 3)], [("b", 2), ("b", 4)], [("b", 2)], [("b", 4)]]
