# The two commands a new user runs:  `make demo`  and  `make test`.
# Both create a virtual environment in .venv, install PyTorch first (the CPU build pin on machines
# without an NVIDIA driver, so that pip does not pull several GB of CUDA packages), then this package.
#
#   TORCH_INDEX=https://download.pytorch.org/whl/cpu make demo   # CPU wheels from PyTorch's own index
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_CPU_PIN ?= torch==2.13.0
TORCH_INDEX ?=
DEMO_DIR ?= runs/demo

.PHONY: setup demo demo-keypoints test test-fast lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then \
	    echo "NVIDIA driver found: installing the default (CUDA) torch"; $(PY) -m pip install torch; \
	  else \
	    echo "no NVIDIA driver: installing the CPU torch pin $(TORCH_CPU_PIN)"; \
	    $(PY) -m pip install "$(TORCH_CPU_PIN)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	  fi; \
	fi
	$(PY) -m pip install -e ".[dev,viz]"
	@touch $@

demo: setup
	$(VENV)/bin/maskrcnn demo --output $(DEMO_DIR)

demo-keypoints: setup
	$(VENV)/bin/maskrcnn demo --task keypoints --output $(DEMO_DIR)_keypoints

lint: setup
	$(VENV)/bin/ruff check maskrcnn tests benchmarks

# pytest-xdist: one worker per core (at most 4), each with its share of the threads (tests/conftest.py);
# --dist loadfile keeps a file's tests, and so its module fixtures (the golden R50 runs), in one worker.
# `make test PYTEST_WORKERS=0` runs the suite in this process, one test after another.
PYTEST_WORKERS ?= auto
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) $(if $(filter 0,$(PYTEST_WORKERS)),,--maxprocesses 4 --dist loadfile)

test: setup lint
	$(PY) -m pytest -q -ra $(PYTEST_PARALLEL) tests

# The inner loop: everything but the tests marked slow (golden R50 parity, training runs, subprocess
# round trips); `make test` stays the full suite.
test-fast: setup lint
	$(PY) -m pytest -q -ra $(PYTEST_PARALLEL) -m "not slow" tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
