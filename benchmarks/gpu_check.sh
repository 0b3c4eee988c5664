#!/usr/bin/env bash
# GPU readiness in one prepared run (under 8 minutes on one CUDA GPU):
#   1. the CUDA tests (pytest -m cuda);
#   2. torchvision, installed quietly into a throw-away venv beside this Python's packages when it is
#      not importable already (its torch stays as it is; offline or no matching wheel: skipped);
#   3. benchmarks/gpu_check.py: AMP training steps of R50-FPN at 800 px (batch 8, synthetic data),
#      inference images/s at batch 1 and 8, peak GPU memory, torchvision side by side; one table;
#   4. benchmarks/ops.py on the GPU: RoIAlign forward+backward, RoIPool, NMS and mask pasting against
#      torchvision's CUDA kernels (run by the Python that has torchvision; ours only without one).
#
#   benchmarks/gpu_check.sh            # on a CUDA machine
#   benchmarks/gpu_check.sh --dry-run  # the same steps at toy size on the CPU (seconds; run by the tests)
#
# PYTHON picks the interpreter (default: .venv/bin/python if present, else python3). Exits non-zero if
# any step failed; a torchvision that cannot be installed is reported and skipped, not a failure.
set -u
cd "$(dirname "$0")/.."

DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, installed or not
failed=()

echo "== environment"
# One Python start for the three checks (importing torch is most of its time): the versions (a failure
# there is reported and the run goes on), the package's own dependencies (pycocotools is the one a bare
# GPU image tends to lack) and, unless a dry run, a visible CUDA device (both missing: stop here).
GPU_CHECK_DRY=$DRY "$PYTHON" - <<'PY'
import os
import sys

env_ok = True
try:
    import torch

    cuda = torch.cuda.is_available()
    print(sys.version.split()[0], "torch", torch.__version__, "cuda", cuda,
          torch.cuda.get_device_name(0) if cuda else "")
except Exception as e:  # noqa: BLE001  (any failure is this step's)
    print(f"environment: {type(e).__name__}: {e}")
    env_ok, cuda = False, False
try:
    import numpy, PIL, yaml, pycocotools, pytest, maskrcnn.data.coco  # noqa: F401, E401
except Exception as e:  # noqa: BLE001
    print(f"{type(e).__name__}: {e}")
    sys.exit(4)
if os.environ["GPU_CHECK_DRY"] == "0" and not cuda:
    sys.exit(5)
sys.exit(0 if env_ok else 3)
PY
case $? in
  0) ;;
  3) failed+=("environment") ;;
  4) echo "missing dependencies: pip install -e '.[dev]' (or carry the wheels) first"; exit 1 ;;
  5) echo "no CUDA device visible to $PYTHON (use --dry-run on a CPU machine)"; exit 1 ;;
  *) failed+=("environment") ;;
esac

echo "== CUDA tests (pytest -m cuda)"
if [ "$DRY" = 1 ]; then
  # CPU: the CUDA tests are skipped; listing them checks that the selection still finds them
  selection=$("$PYTHON" -m pytest -q -p no:cacheprovider -m cuda --collect-only tests/ops tests/modeling 2>&1)
  status=$?
  echo "$selection" | tail -n 1
  [ $status = 0 ] || failed+=("cuda tests (collection)")
else
  "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda -ra tests || failed+=("cuda tests")
fi

echo "== torchvision"
TV_PYTHON="$PYTHON"
if ! "$PYTHON" -c "import torchvision" >/dev/null 2>&1; then
  if [ "$DRY" = 1 ]; then
    echo "not importable; a dry run installs nothing (the table says skipped)"
  else
    tv_env=$(mktemp -d)/venv
    torch_version=$("$PYTHON" -c "import torch; print(torch.__version__)")
    # a venv that sees this Python's packages; pinning torch keeps pip from replacing it
    if "$PYTHON" -m venv --system-site-packages "$tv_env" >/dev/null 2>&1 \
       && "$tv_env/bin/python" -m pip install -q --disable-pip-version-check --retries 0 --timeout 15 \
            torchvision "torch==$torch_version" >/dev/null 2>&1 \
       && "$tv_env/bin/python" -c "import torchvision" >/dev/null 2>&1; then
      TV_PYTHON="$tv_env/bin/python"
      echo "installed torchvision into $tv_env"
    else
      echo "could not install torchvision (offline, or no wheel for torch $torch_version): skipped"
    fi
  fi
fi

echo "== training and inference (benchmarks/gpu_check.py)"
args=(--tv-python "$TV_PYTHON")
[ "$DRY" = 1 ] && args+=(--dry-run)
PYTHONUNBUFFERED=1 "$PYTHON" benchmarks/gpu_check.py "${args[@]}" || failed+=("gpu_check.py")

echo "== ops on the device against torchvision (benchmarks/ops.py)"
if [ "$DRY" = 1 ]; then
  ops_args=(--device cpu --image-size 64x96 --repeats 1 --skip-50k --no-conv --threads 1)
else
  ops_args=(--device cuda --skip-50k --no-conv)
fi
PYTHONUNBUFFERED=1 "$TV_PYTHON" benchmarks/ops.py "${ops_args[@]}" || failed+=("ops.py")

if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu_check: FAILED: ${failed[*]}"
  exit 1
fi
echo "gpu_check: all steps passed"
