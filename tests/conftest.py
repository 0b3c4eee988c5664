"""Shared pytest setup.

- Tests marked ``cuda`` are skipped when no CUDA device is available.
- ``single_thread``: runs a test with one intra-op thread. Tests of small ops run many tiny tensor
  operations; extra threads only add synchronisation, which costs a great deal on a loaded machine.
"""

import pytest
import torch


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
