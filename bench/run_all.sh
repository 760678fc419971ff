#!/usr/bin/env bash
# Checks and times everything on one machine; writes every table to OUT/benchmarks.md as it comes.
#
#   bash bench/run_all.sh [OUT]                   # OUT defaults to bench_out/
#   INSTALL=1 bash bench/run_all.sh OUT           # first pip-installs requirements.txt (needs PyPI)
#   WHEELS=.whl bash bench/run_all.sh OUT         # first installs the wheels bench/device_wheels.sh fetched
#                                                 # (an offline accelerator machine) into $SITE (/tmp/site)
#   BUDGET_S=480 bash bench/run_all.sh OUT        # start no row after 480 s; each row's timeout is cut to what
#                                                 # is left, so the whole run ends within the budget
#   QUICK=1 bash bench/run_all.sh OUT             # fewer repeats and smaller batches (a smoke run)
#   ROWS=accelerator ...                          # the accelerator's rows on any machine (a dry run on a CPU,
#                                                 # with SAGAN_SCALE=cpu IDE_BATCHES=2 SAGAN_BATCHES=2)
#
# On a CPU: the tests of the timed code, then every script (the CPU suite of BENCHMARKS.md). On an
# accelerator the rows come in the order of what the targets need, each as its own process with its
# own timeout, so a short GPU run (BUDGET_S) still measures what matters most first:
# Market-sized evaluation (<= 50 ms), the IDE step at batch 128 (bfloat16 MFU >= 45 %), the
# paper-scale SA-GAN iteration in bfloat16 at batch 64 and 8 (MFU >= 35 %); then the IDE step at
# batch 8, SA-GAN in float32, the warp and the input pipeline. The pytest check is left out there: the suite runs on 4 simulated CPU devices
# (tests/conftest.py), so on that machine it would test its host CPU, as CI already does; the
# evaluation script compares its two backends on the device instead. A row that fails or runs out of
# time is noted in the log and the next one starts; OUT/log.txt has every row's stderr (the IDE
# script's "measured:" lines survive a timeout there). The bfloat16 IDE and SA-GAN target rows each
# profile one step into OUT/trace_*.json.gz and bench/trace_summary.py tabulates it in the log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
log="$OUT/benchmarks.md"
errlog="$OUT/log.txt"
: >"$log"
: >"$errlog"
start=$SECONDS
budget=${BUDGET_S:-0}

if [[ "${INSTALL:-0}" == 1 ]]; then
  $PY -m pip install -q -r requirements.txt || exit 1
fi
if [[ -n "${WHEELS:-}" ]]; then
  SITE=${SITE:-/tmp/site}
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
    || { echo "could not install the wheels in $WHEELS (bench/device_wheels.sh fetches them)" >&2; exit 1; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

platform=$($PY -c 'import jax; print(jax.devices()[0].platform)') || exit 1
if command -v nvidia-smi >/dev/null 2>&1 && [[ "$platform" != gpu ]]; then
  echo "nvidia-smi sees a GPU but jax uses '$platform': this jax has no CUDA plugin" >&2
  exit 1
fi
rows=${ROWS:-$([[ "$platform" == cpu ]] && echo cpu || echo accelerator)}
quick=${QUICK:-0}

{
  echo "# bench/run_all.sh on $(hostname), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "platform: $platform; rows: $rows; git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  $PY -c 'import sys, jax, flax, optax; print(f"python {sys.version.split()[0]}; jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}")'
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  [[ "$platform" == cpu ]] && echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
  echo
} | tee -a "$log"

left() {  # seconds of the budget left (a large number when there is no budget)
  if ((budget > 0)); then echo $((budget - (SECONDS - start))); else echo 100000; fi
}

run() {  # run TITLE LIMIT_S COMMAND...: the command's table goes into the log, its stderr into log.txt
  local title=$1 limit=$2
  shift 2
  local remaining
  remaining=$(left)
  if ((remaining < 30)); then
    printf '\n## %s\n\nnot run: %d s of the budget left\n' "$title" "$remaining" | tee -a "$log"
    return
  fi
  ((limit > remaining)) && limit=$remaining
  printf '\n## %s\n\n`%s`\n\n' "$title" "$*" | tee -a "$log"
  printf '\n== %s (limit %d s, at %d s)\n' "$title" "$limit" "$((SECONDS - start))" >>"$errlog"
  local began=$SECONDS rc=0
  timeout --kill-after=10 "$limit" "$@" 2>>"$errlog" | tee -a "$log" || rc=$?
  if ((rc == 124 || rc == 137)); then
    printf 'timed out after %d s (partial figures: log.txt)\n' "$limit" | tee -a "$log"
  elif ((rc != 0)); then
    printf 'failed with status %d (log.txt has its stderr)\n' "$rc" | tee -a "$log"
    tail -n 20 "$errlog" >&2
  fi
  printf '(%d s)\n' "$((SECONDS - began))" | tee -a "$log"
}

repeats=50; steps=5; iterations=5; eval_repeats=3
((quick)) && { repeats=10; steps=2; iterations=2; eval_repeats=1; }

if [[ "$rows" == cpu ]]; then
  echo "== checks: tests of the timed code" | tee -a "$log"
  $PY -m pytest -q tests/test_geometry.py tests/test_reid_metrics.py tests/test_reid.py 2>&1 | tail -n 3 | tee -a "$log"
  run "Warp" 900 $PY -m bench.bench_warp --repeats "$repeats"
  run "Warp, bfloat16" 900 $PY -m bench.bench_warp --repeats "$repeats" --dtype bfloat16
  run "Evaluation, Market-1501 size" 900 $PY -m bench.bench_evaluation --repeats "$eval_repeats" --backend numpy,jax
  run "IDE ResNet-50 step" 1800 $PY -m bench.bench_ide_step --batches 8 --dtypes float32,bfloat16 --steps "$steps" \
    --layers flax,cpu,auto
  run "ResNet-50 convolutions one by one" 900 $PY -m bench.bench_convs --repeats "$steps"
  run "SA-GAN convolutions one by one, synthetic scale" 900 $PY -m bench.bench_convs --net sagan_synthetic \
    --repeats "$steps"
  run "SA-GAN iteration, CPU scale" 900 $PY -m bench.bench_sagan_step --scale cpu --iterations "$iterations" \
    --layers flax,cpu,auto
  run "Input pipeline" 900 $PY -m bench.bench_pipeline
  run "Scaling over simulated CPU devices" 1800 $PY -m bench.bench_scaling
  run "Checkpoint writes, synthetic scale, 4 simulated devices" 900 $PY -m bench.bench_checkpoint --scale synthetic
else
  read -r -a ide_batches <<<"${IDE_BATCHES:-$( ((quick)) && echo 8 || echo "128 8")}"
  read -r -a sagan_batches <<<"${SAGAN_BATCHES:-$( ((quick)) && echo 8 || echo "64 8")}"
  scale=${SAGAN_SCALE:-paper}
  ide() {  # ide BATCH [--trace FILE]
    local batch=$1
    shift
    run "IDE ResNet-50 step, batch $batch" 240 $PY -m bench.bench_ide_step --batches "$batch" \
      --dtypes bfloat16,float32 --steps "$steps" "$@"
  }
  sagan() {  # sagan DTYPE BATCH [--trace FILE]
    local dtype=$1 batch=$2
    shift 2
    run "SA-GAN iteration, $scale scale, $dtype, batch $batch" 240 $PY -m bench.bench_sagan_step --scale "$scale" \
      --dtype "$dtype" --batch "$batch" --iterations "$iterations" "$@"
  }
  # What the targets need first: evaluation, the IDE step at the paper's batch, SA-GAN in bfloat16.
  # The two bfloat16 target rows also profile one step each (OUT/trace_*.json.gz, summarised below),
  # so that where the GPU time goes can be read without another GPU run.
  ide_trace="$OUT/trace_ide_b${ide_batches[0]}.json.gz"
  sagan_trace="$OUT/trace_sagan_b${sagan_batches[0]}.json.gz"
  rm -f "$ide_trace" "$sagan_trace"  # a reused OUT: summarise only this run's traces
  run "Evaluation, Market-1501 size" 120 $PY -m bench.bench_evaluation --repeats "$eval_repeats" --backend jax,numpy
  ide "${ide_batches[0]}" --trace "$ide_trace"
  sagan bfloat16 "${sagan_batches[0]}" --trace "$sagan_trace"
  for trace in "$ide_trace" "$sagan_trace"; do
    [[ -f "$trace" ]] && run "Where the time goes: $(basename "$trace")" 60 $PY -m bench.trace_summary "$trace"
  done
  for batch in "${sagan_batches[@]:1}"; do sagan bfloat16 "$batch"; done
  for batch in "${ide_batches[@]:1}"; do ide "$batch"; done
  for batch in "${sagan_batches[@]}"; do sagan float32 "$batch"; done
  run "Warp" 120 $PY -m bench.bench_warp --repeats "$repeats"
  run "Input pipeline (host CPU)" 120 $PY -m bench.bench_pipeline
fi
printf '\ntotal: %d s\n' "$((SECONDS - start))" | tee -a "$log"
echo "wrote $log and $errlog"
