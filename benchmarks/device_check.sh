#!/usr/bin/env bash
# Every GPU figure jaxdiff claims, in one command (< 8 minutes on one H100 / H200):
#
#   benchmarks/device_check.sh OUT_DIR            # the full check, on the accelerator
#   benchmarks/device_check.sh OUT_DIR --smoke    # same code paths at tiny sizes (CPU;
#                                                 # tests/device_check_test.py runs it)
#
# Writes OUT_DIR/device_check.json and OUT_DIR/device_check.md (tables), plus the logs of
# each part (pytest.txt, conv_models_axis.txt, device_check.log). Parts, in order:
#   1. the tests marked `gpu` (pytest -m gpu; skipped on a CPU);
#   2. benchmarks/device_check.py: training throughput (W = 32, 32x32, batch 512 and 128,
#      M = 1, 2, 4, 8, 9, models axis vmap and unroll, float32 and bfloat16, compile times
#      apart, achieved FLOP/s against the card's bf16 peak and the roofline bound), the
#      celeba config's measured peak memory against jaxdiff.plan's estimate at
#      models_group 2, 4, 9 (and 9 with remat), f_mem of 10,000 samples against 32,768
#      images and Inception features/s;
#   3. benchmarks/conv_models_axis.py at W = 32 (32x32, batch 128, K = 8).
#
# Expected runtime on one H100/H200: ~7 minutes. Estimate: device_check.py's time budgets
# (throughput 270 s, memory 150 s, metrics 50 s: every section stops starting new
# measurements when its budget is spent, and says what it skipped), + ~30 s for the gpu
# tests, + conv_models_axis under a 60 s timeout, + ~15 s of Python/JAX start-up per
# process. The step times themselves are small (a W = 32, batch 512 model-step is 1.74
# TFLOP: ~2 ms at the bf16 roofline, ~10 ms at 20% of it); compiles dominate (XLA:GPU
# ~10-40 s per program, from the CPU's 60-80 s for the same step and jaxdiff's GPU-less
# history: unmeasured, hence the budgets). What the budgets leave out shows as "skipped"
# rows; raise DEVICE_CHECK_BUDGET_SCALE (default 1) to give all sections more time.
#
# Dependencies: the device machine may lack ml-collections (configs/*.py import it) and
# tensorflow-datasets (not needed here). Carry the wheels in a git-ignored .whl/ folder at
# the repository root (on a machine with network access:
#   pip download --no-deps -d .whl ml-collections
# ); this script then installs them privately, never into the system:
#   pip install --no-index --no-deps --target "$SITE" .whl/*.whl; PYTHONPATH=$SITE:...
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: benchmarks/device_check.sh OUT_DIR [--smoke]" >&2
  exit 2
fi
OUT=$1
shift
SMOKE=()
if [[ "${1:-}" == "--smoke" ]]; then
  SMOKE=(--smoke)
elif [[ $# -gt 0 ]]; then
  echo "device_check.sh: unknown argument '$1' (expected --smoke or nothing)" >&2
  exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT"

if compgen -G "$ROOT/.whl/*.whl" > /dev/null; then
  SITE=$(mktemp -d)
  python -m pip install --quiet --no-index --no-deps --target "$SITE" "$ROOT"/.whl/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# The memory section measures peaks of up to ~0.9 of the card: let JAX's allocator use it.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}
python -c "import ml_collections" 2>/dev/null || {
  echo "device_check.sh: ml_collections is not importable: put its wheel in .whl/ (see the header)" >&2
  exit 2
}

START=$(date +%s)
# 1. Tests marked gpu (skipped, and listed as such, on a CPU). The smoke run collects only
#    the files that hold them, to stay fast inside the test suite.
if [[ ${#SMOKE[@]} -gt 0 ]]; then
  TESTS=$(grep -l "mark.gpu" tests/*_test.py | grep -v device_check_test || true)
else
  TESTS=tests
fi
set +e
# shellcheck disable=SC2086
python -m pytest -q -m gpu -p no:cacheprovider $TESTS > "$OUT/pytest.txt" 2>&1
PYTEST_RC=$?
set -e
SUMMARY=$(tail -n 1 "$OUT/pytest.txt")
echo "gpu tests (exit $PYTEST_RC): $SUMMARY"

# 3 before 2 in time, reported together: conv_models_axis under a timeout.
if [[ ${#SMOKE[@]} -gt 0 ]]; then
  CONV_ARGS=(--k 2 --widths 8 --image_size 8 --batch 2 --reps 1 --modes vmap:unroll
             --channel_mult 1,1 --attention 0,1 --num_res_blocks 1)
  CONV_TIMEOUT=300
else
  CONV_ARGS=(--k 8 --widths 32 --image_size 32 --batch 128 --reps 3)
  CONV_TIMEOUT=60
fi
set +e
timeout "$CONV_TIMEOUT" python benchmarks/conv_models_axis.py "${CONV_ARGS[@]}" \
  > "$OUT/conv_models_axis.txt" 2>&1
CONV_RC=$?
set -e
[[ $CONV_RC -eq 124 ]] && echo "(stopped after ${CONV_TIMEOUT} s)" >> "$OUT/conv_models_axis.txt"
echo "conv_models_axis.py (exit $CONV_RC): $(tail -n 1 "$OUT/conv_models_axis.txt")"

# 2. Everything else, in one process (its sections keep to their time budgets).
python benchmarks/device_check.py --out "$OUT" "${SMOKE[@]}" \
  --pytest "exit $PYTEST_RC: $SUMMARY" --conv_log "$OUT/conv_models_axis.txt" \
  2>&1 | tee "$OUT/device_check.log"
echo "device_check: $(($(date +%s) - START)) s; results in $OUT/device_check.md"
if [[ $PYTEST_RC -ne 0 && $PYTEST_RC -ne 5 ]]; then
  echo "device_check: the gpu tests failed (exit $PYTEST_RC): see $OUT/pytest.txt" >&2
  exit 1
fi
