"""benchmarks/gpu_check.sh --dry-run: the GPU readiness check's every step at toy size on the CPU, so
that the script a GPU machine runs is known to work before one is at hand."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")  # one thread: quickest when busy
    env.pop("PYTHONPATH", None)
    return env


@pytest.mark.slow
def test_dry_run_runs_every_step():
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    for step in ("== environment", "== CUDA tests", "== torchvision", "== training and inference",
                 "== ops on the device"):
        assert step in out
    assert "tests collected" in out  # the CUDA tests were found (and are skipped on the CPU)
    table = out[out.index("gpu_check --dry-run:"):]
    rows = [line for line in table.splitlines()[2:] if line.startswith(("train", "infer", "torchvision"))]
    assert [r.split()[0:2] for r in rows[:4]] == [["train", "(AMP)"], ["infer", "float32"],
                                                  ["infer", "float32"], ["infer", "bfloat16"]]
    assert "s/iter, loss" in rows[0] and all("images/s" in r for r in rows[1:4])
    ops = out[out.index("== ops on the device"):]
    for case in ("RoIAlign box head fwd+bwd", "RoIPool fwd+bwd", "NMS 10000", "paste 100 masks"):
        line = next(row for row in ops.splitlines() if row.startswith(case))
        assert float(line[44:54]) > 0  # our time in ms
    assert "FAILED" not in out and out.rstrip().endswith("gpu_check: all steps passed")


def test_bad_arguments_are_refused():
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--bogus"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "usage" in r.stderr


@pytest.mark.slow
def test_refuses_cuda_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is there")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cuda"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "sees no CUDA device" in r.stdout
