#!/usr/bin/env bash
# The GPU check (issue 14), prepared to the last command. On a CUDA machine with this repository:
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]          # default OUT_DIR: gpu_check/<date-time>
#
# 1. installs: a venv (.venv-gpu) that also sees the system's packages, so a preinstalled CUDA torch
#    and triton are used; else pip installs torch (its CUDA wheel); then the project with the dev and
#    gpu extras (when that fails, e.g. offline, the project alone with --no-deps, and the steps that
#    need the missing packages fail and say so);
# 2. runs the Triton kernel's tests on the device (tests/test_srwm_triton.py, no interpreter) and the
#    gpu-marked end-to-end tests (tests/test_gpu_paths.py: IMPALA learner, PPO, evaluation, few-shot);
# 3. times SRWM (triton, lean, pure) against nn.LSTM (cuDNN): benchmarks/srwm_gpu.py, B = 64/256/1024,
#    D = 128 as 8x16 and 4x32, T = 50/256, forward and forward + backward;
# 4. runs IMPALA-SRWM on Procgen bigfish (the paper's network) for IMPALA_SECONDS with one actor per
#    CPU core (benchmarks/impala_throughput.py), printing env steps/s.
#
# After the install the steps take at most 8 minutes 10 s: their hard timeouts (90 + 90 + 160 +
# IMPALA_SECONDS + 105 s) sum to that; a failed step is recorded in OUT_DIR/status.txt and the next
# one runs. Everything is written into OUT_DIR:
# log.txt (all output), status.txt, env.txt, kernel_tests.xml, gpu_tests.xml, srwm_gpu.jsonl,
# srwm_gpu.md (the table), impala.jsonl.
#
# Variables: PYTHON (default python3), VENV (default .venv-gpu), PIP_FLAGS (e.g. "--no-index
# --find-links wheels/" on a machine without internet), IMPALA_SECONDS (default 45), IMPALA_FLAGS
# (more IMPALA flags), SKIP (steps to skip, e.g. "gpu-tests impala"), DEVICE (default cuda; cpu
# checks this script itself: interpreter, tiny sizes).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-gpu}
PIP_FLAGS=${PIP_FLAGS:-}
IMPALA_SECONDS=${IMPALA_SECONDS:-45}
IMPALA_FLAGS=${IMPALA_FLAGS:-}
SKIP=${SKIP:-}
DEVICE=${DEVICE:-cuda}
START=$(date +%s)

step() {  # step NAME TIMEOUT_S COMMAND...: run it, time it, record its exit status
    local name=$1 limit=$2
    shift 2
    case " $SKIP " in *" $name "*) echo "=== $name: skipped (SKIP)"; echo "$name skipped" >> "$OUT/status.txt"; return;; esac
    echo "=== $name: $*"
    local t0
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    echo "=== $name: exit $rc after $(( $(date +%s) - t0 )) s"
    echo "$name $rc $(( $(date +%s) - t0 ))s" >> "$OUT/status.txt"
}

# ---- 1. install ---------------------------------------------------------------------------------
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv --system-site-packages "$VENV"
PY=$VENV/bin/python
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    # shellcheck disable=SC2086
    step install-torch 900 "$PY" -m pip install $PIP_FLAGS torch
fi
# shellcheck disable=SC2086
step install 900 "$PY" -m pip install $PIP_FLAGS -e ".[dev,gpu]"
if [ ! -x "$VENV/bin/srwm-rl" ]; then
    # shellcheck disable=SC2086
    step install-nodeps 300 "$PY" -m pip install $PIP_FLAGS --no-deps --no-build-isolation -e .
fi
INSTALLED=$(date +%s)
{
    echo "date: $(date -u)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || echo "no nvidia-smi"
    echo "cpu cores: $(nproc)"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    "$PY" -c "import triton; print('triton', triton.__version__)" 2>&1 | tail -1
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [ "$DEVICE" = cpu ]; then
    export TRITON_INTERPRET=1
    BENCH_ARGS=(--device cpu --tiny --heads 2x4)
    IMPALA_DEV=cpu
else
    BENCH_ARGS=(--budget 130 --warps-sweep)
    IMPALA_DEV=cuda
fi

# ---- 2. tests on the device ---------------------------------------------------------------------
step kernel-tests 90 "$PY" -m pytest -q -p no:cacheprovider -m triton tests/test_srwm_triton.py \
    --junitxml="$OUT/kernel_tests.xml"
step gpu-tests 90 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu_paths.py --junitxml="$OUT/gpu_tests.xml"

# ---- 3. SRWM paths vs cuDNN LSTM ----------------------------------------------------------------
step srwm-bench 160 bash -c "set -o pipefail; PYTHONUNBUFFERED=1 '$PY' benchmarks/srwm_gpu.py ${BENCH_ARGS[*]} \
    --out '$OUT/srwm_gpu.jsonl' | tee '$OUT/srwm_gpu.md'"

# ---- 4. IMPALA-SRWM on Procgen bigfish, one actor per core --------------------------------------
# procgen2 ships cp311 wheels only: where it cannot be imported (e.g. a Python 3.12 image), say so.
if ! "$PY" -c "import procgen" 2>/dev/null; then
    echo "=== impala: procgen cannot be imported here ($("$PY" --version)); procgen2 0.10.7 has cp311 wheels only"
    echo "impala unavailable-procgen" >> "$OUT/status.txt"
    SKIP="$SKIP impala"
fi
# --time_limit: the training run stops by itself (with a checkpoint) should the measurement not end it.
step impala $(( IMPALA_SECONDS + 105 )) "$PY" benchmarks/impala_throughput.py --only impala \
    --seconds "$IMPALA_SECONDS" --json "$OUT/impala.jsonl" \
    --impala "--impala.num_actors $(nproc) --impala.envs_per_actor 16 --impala.batch_size 32 --device $IMPALA_DEV --time_limit $(( IMPALA_SECONDS + 75 )) $IMPALA_FLAGS"

END=$(date +%s)
echo "install $(( INSTALLED - START )) s, checks $(( END - INSTALLED )) s; results in $OUT"
cat "$OUT/status.txt"
