"""Fixtures for the engine tests: the benchmark scripts, loaded as modules from benchmarks/; the Cityscapes
scorer taken as installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def benchmark_script():
    """``benchmark_script("roofline")``: benchmarks/roofline.py as a fresh module."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def scorer_installed(monkeypatch):
    """cityscapesscripts found, installed or not: the checks of the root and of its ground truth come after
    that of the package, and are tested without it."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: (object() if name == "cityscapesscripts"
                                               else real(name, *a, **k)))
