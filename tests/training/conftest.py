"""Shared by the trainer tests: ``toy_train.py`` (also run as a script by the resume and DDP tests)."""

import os
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


@pytest.fixture
def seen(monkeypatch):
    """Each ``build_training`` call's keyword arguments (the run folder made, nothing trained); the stub
    trainer's ``train`` runs ``seen.trainer.during`` when set (the run- and resume-argument tests)."""
    import maskrcnn.engine.training as training

    class _Calls(list):
        trainer = None

    calls = _Calls()

    class _Trainer:
        during = None

        def train(self):
            if _Trainer.during:
                _Trainer.during()
            return {"interrupted": False, "iteration": 0}

    def build_training(cfg, **kwargs):
        calls.append(kwargs)
        os.makedirs(kwargs["output"], exist_ok=True)
        return _Trainer(), cfg

    monkeypatch.setattr(training, "build_training", build_training)
    calls.trainer = _Trainer
    return calls
