"""Shared by the trainer tests: ``toy_train.py`` (also run as a script by the resume and DDP tests)."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture
def toy():
    """The ``toy_train`` module: a tiny model, dataset and trainer builder."""
    sys.path.insert(0, str(HERE))
    try:
        import toy_train
    finally:
        sys.path.remove(str(HERE))
    return toy_train
