#!/usr/bin/env bash
# Installs, checks and times everything on one machine; writes every table to OUT/benchmarks.md.
#
#   bash bench/run_all.sh [OUT]                  # OUT defaults to bench_out/
#   INSTALL=1 bash bench/run_all.sh OUT          # first pip-installs requirements.txt (and, on an
#                                                # NVIDIA machine, the matching jax CUDA plugin)
#   QUICK=1 bash bench/run_all.sh OUT            # fewer repeats and no batch-128 rows (a smoke run)
#
# Checks before timing: the GPU (if any) is what jax uses, and the test files of the code being
# timed pass (on CPU, as CI runs them). On an accelerator the IDE and SA-GAN rows include bfloat16
# and the paper scale; on a CPU the rows that take minutes per step are left to be run by hand
# (see BENCHMARKS.md for the commands).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench_out}
mkdir -p "$OUT"
PY=${PYTHON:-python}
export PYTHONUNBUFFERED=1

if [[ "${INSTALL:-0}" == 1 ]]; then
  $PY -m pip install -q -r requirements.txt pytest
  if command -v nvidia-smi >/dev/null 2>&1; then
    version=$($PY -c 'import jax; print(jax.__version__)')
    $PY -m pip install -q "jax[cuda12]==${version}"
  fi
fi

platform=$($PY -c 'import jax; print(jax.devices()[0].platform)')
if command -v nvidia-smi >/dev/null 2>&1 && [[ "$platform" != gpu ]]; then
  echo "nvidia-smi sees a GPU but jax uses '$platform': install the CUDA plugin (INSTALL=1)" >&2
  exit 1
fi

log="$OUT/benchmarks.md"
{
  echo "# bench/run_all.sh on $(hostname), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "platform: $platform; git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo
} | tee "$log"

echo "== checks: tests of the timed code" | tee -a "$log"
$PY -m pytest -q tests/test_geometry.py tests/test_reid_metrics.py tests/test_reid.py 2>&1 | tail -n 3 | tee -a "$log"

run() {  # run TITLE COMMAND...: prints the command and its table into the log
  echo | tee -a "$log"
  echo "## $1" | tee -a "$log"
  shift
  echo "\`$*\`" | tee -a "$log"
  echo | tee -a "$log"
  "$@" 2>"$OUT/stderr.txt" | tee -a "$log" || { cat "$OUT/stderr.txt" >&2; exit 1; }
}

repeats=50; steps=5; iterations=5; eval_repeats=3
[[ "${QUICK:-0}" == 1 ]] && { repeats=10; steps=2; iterations=2; eval_repeats=1; }

run "Warp" $PY bench/bench_warp.py --repeats "$repeats"
if [[ "$platform" == cpu ]]; then
  run "Warp, bfloat16" $PY bench/bench_warp.py --repeats "$repeats" --dtype bfloat16
fi
run "Evaluation, Market-1501 size" $PY bench/bench_evaluation.py --repeats "$eval_repeats" --backend numpy,jax
if [[ "$platform" == cpu ]]; then
  run "IDE ResNet-50 step" $PY bench/bench_ide_step.py --batches 8 --dtypes float32 --steps "$steps" \
    --gradient_impl xla,matmul
  run "ResNet-50 convolutions one by one" $PY bench/bench_convs.py --repeats "$steps"
  run "SA-GAN convolutions one by one, synthetic scale" $PY bench/bench_convs.py --net sagan_synthetic --repeats "$steps"
  run "SA-GAN iteration, CPU scale" $PY bench/bench_sagan_step.py --scale cpu --iterations "$iterations" \
    --gradient_impl xla,matmul
else
  batches=8,128; [[ "${QUICK:-0}" == 1 ]] && batches=8
  run "IDE ResNet-50 step" $PY bench/bench_ide_step.py --batches "$batches" --dtypes float32,bfloat16 --steps "$steps"
  for dtype in float32 bfloat16; do
    run "SA-GAN iteration, paper scale, $dtype" $PY bench/bench_sagan_step.py --scale paper --dtype "$dtype" \
      --iterations "$iterations"
    run "SA-GAN iteration, paper scale, $dtype, batch 64" $PY bench/bench_sagan_step.py --scale paper \
      --dtype "$dtype" --batch 64 --iterations "$iterations"
  done
fi
run "Input pipeline" $PY bench/bench_pipeline.py
run "Scaling over simulated CPU devices" $PY bench/bench_scaling.py
rm -f "$OUT/stderr.txt"
echo "wrote $log"
