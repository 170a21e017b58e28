#!/usr/bin/env bash
# One prepared run on a machine with an NVIDIA GPU: versions, the gpu-marked tests, then the
# main job eager and graphed (--cuda-graph), then the benchmark suites (gpunn on CuPy and NumPy,
# torch on CUDA and the CPU) with their report. The default limits (150 + 2 x 40 + 330 s) fit one
# 600-second device call.
#   OUT=/some/dir bash bench/device_run.sh        # logs and bench results land in $OUT
# Each stage has its own time limit (TEST_S, JOB_S, BENCH_S seconds), so a hang in one still leaves the
# others' output. Uses the interpreter's own packages (PY, default python3); installs nothing.
set -u
OUT=${OUT:-/tmp/gpunn-device}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
  nvidia-smi -L
  "$PY" -c "import sys, numpy, cupy, torch; print(sys.version); print('numpy', numpy.__version__, 'cupy',
cupy.__version__, 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  "$PY" -m gpunn info
} 2>&1 | tee "$OUT/info.log"

echo "== gpu tests (limit ${TEST_S:-150} s)"
timeout "${TEST_S:-150}" "$PY" -m pytest -q -m gpu -p no:cacheprovider -n "${TEST_WORKERS:-8}" \
  --durations=10 2>&1 | tee "$OUT/gpu_tests.log" | tail -n 60

echo "== the main job on the GPU, eager and with --cuda-graph (limit ${JOB_S:-40} s each)"
for flag in "" "--cuda-graph"; do
  timeout "${JOB_S:-40}" "$PY" -m gpunn train --backend cupy --model lenet5 --epochs 3 --quiet $flag 2>&1 \
    | tee -a "$OUT/train_job.log" | tail -n 3
done

echo "== benchmarks (limit ${BENCH_S:-330} s)"
timeout "${BENCH_S:-330}" "$PY" -m gpunn bench --rounds "${BENCH_ROUNDS:-1}" --timeout "${SUITE_S:-200}" \
  --out "$OUT" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" | tail -n 80
