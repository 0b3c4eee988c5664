"""Shared pytest setup.

- Tests marked ``cuda`` are skipped when no CUDA device is available.
- ``single_thread``: runs a test with one intra-op thread. Tests of small ops run many tiny tensor
  operations; extra threads only add synchronisation, which costs a great deal on a loaded machine.
- ``thread_pool``: runs a test with at least two intra-op threads (``thread_count.recorded_threads``,
  which the golden tests use as a block), for bit-exact comparisons with references recorded that way:
  torch's CPU kernels may round differently on a single thread (its bilinear interpolation does, by one
  ulp), and pytest-xdist workers may have one thread each.
"""

import os

# Threads waiting for work sleep instead of spinning. Set before torch loads its OpenMP runtime, which
# reads it once: pytest-xdist workers, the golden comparisons' extra thread and the command-line tests'
# subprocesses share the cores, and spinning threads there took the CPU from the ones with work (a
# 2-thread golden run beside a 1-thread training test on 2 cores: 266 s spinning, 146 s sleeping).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Winograd or oneDNN linear layers (ops.gemm_rates) are chosen by measuring this CPU's matrix-product
# rates; the suite pins the choice (blas: as on most CPUs), also for its subprocesses, so that no test
# depends on a timing. The oneDNN path has tests of its own that pin it the other way.
os.environ.setdefault("MASKRCNN_MATMUL", "blas")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# thread_count lives beside this file: put its folder on the path rather than rely on pytest's
# "prepend" import mode doing it (it does not under --import-mode=append or importlib).
sys.path.insert(0, str(Path(__file__).parent))
from thread_count import recorded_threads  # noqa: E402


def pytest_configure(config):
    # Under pytest-xdist (``-n N``) each worker gets its share of the cores: N workers of all the
    # cores' threads each would oversubscribe the machine, and torch's thread pools then spin.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(share)
        os.environ["OMP_NUM_THREADS"] = str(share)  # the command-line tests' subprocesses too


# The longest single files, handed to pytest-xdist's workers first. Its --dist loadfile queue starts
# with the files holding the most tests, so these few-test files came last, and the run ended with one
# worker training (test_overfit_two_images, ~100 s) while the others had nothing left to do. Only the
# order changes; a file not named here keeps its place.
LONG_FILES_FIRST = (
    "tests/training/test_train_overfit.py",
    "tests/interop/test_detectron2_golden.py",
    "tests/interop/test_golden_parity.py",
    "tests/training/test_train_keypoints.py",
    "tests/test_gpu_check.py",
    "tests/engine/test_roofline.py",
)


def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LongFilesFirst(LoadFileScheduling):
        _ordered = False

        def _assign_work_unit(self, node):
            if not self._ordered:  # the queue is complete by the first assignment
                self._ordered = True
                for scope in reversed(LONG_FILES_FIRST):
                    if scope in self.workqueue:
                        self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

    return LongFilesFirst(config, log)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def thread_pool():
    with recorded_threads(2):
        yield
