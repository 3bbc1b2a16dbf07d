#!/usr/bin/env bash
# Builds the benchmarks (Release; the step benchmarks themselves at -O2 without
# -march), runs them, keeps the JSON under build/bench/results and regenerates the
# generated part of docs/benchmarks.md (tables, setup) and the plots in docs/img.
# The hand-written analysis in docs/benchmarks.md is left alone.
#
#   ./scripts/bench.sh              full run (10-20 minutes on 2 cores; peak RSS ~7.5 GiB, the model-shaped
#                                   paired CT_F-vs-dense benchmark with two fp32 states)
#   ./scripts/bench.sh --no-docs    print the tables instead of rewriting the docs
#
# With LibTorch found, bench_step_torch runs (every method, LibTorch peers
# included, in one binary); without it bench_step (the torch-free methods).
# CHILDTUNE_BENCH_N, CHILDTUNE_BENCH_MODEL_LAYERS/_HIDDEN, CHILDTUNE_BENCH_SELECT_N,
# BENCH_MIN_TIME and BENCH_REPETITIONS shrink a run for a quick look (use
# --no-docs then: the docs describe the full configuration).
set -euo pipefail
cd "$(dirname "$0")/.."

docs=1
case "${1:-}" in
  "") ;;
  --no-docs) docs=0 ;;
  *) echo "usage: $0 [--no-docs]" >&2; exit 2 ;;
esac

./scripts/install-deps.sh cmake ninja-build g++ libbenchmark-dev python3 gnuplot-nox

build=build/bench
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCHILDTUNE_BUILD_TESTS=OFF \
      -DCHILDTUNE_BUILD_EXAMPLES=OFF -DCHILDTUNE_BUILD_BENCHMARKS=ON -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
step=bench_step
if cmake --build "$build" --target help | grep -q '^bench_step_torch:'; then step=bench_step_torch; fi
cmake --build "$build" --target "$step" bench_fisher_select

results="$build/results"
rm -rf "$results"
mkdir -p "$results"
min_time=${BENCH_MIN_TIME:-1}
repetitions=${BENCH_REPETITIONS:-3}
load() { cut -d' ' -f1-3 /proc/loadavg | sed 's/ /, /g'; }

step_cmd=("$build/bench/$step" "--benchmark_min_time=$min_time" "--benchmark_repetitions=$repetitions"
          --benchmark_report_aggregates_only=true "--benchmark_out=$results/step.json" --benchmark_out_format=json)
select_cmd=("$build/bench/bench_fisher_select" "--benchmark_out=$results/select.json" --benchmark_out_format=json)
env_note=$(env | grep -E '^(CHILDTUNE_BENCH_|OMP_NUM_THREADS=)' | sort | tr '\n' ' ' || true)
{
  echo "command: ./scripts/bench.sh $*"
  echo "ran: ${env_note}${step_cmd[*]}"
  echo "ran: ${select_cmd[*]}"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  changed=$(git status --porcelain -- include adapters 2>/dev/null | awk '{print $2}' | tr '\n' ' ')
  echo "library_changes: ${changed:-none}"
  echo "load: $(load) (before)"
} > "$results/run.txt"

echo "== $step (every step method; about 10 minutes)"
"${step_cmd[@]}"
echo "== bench_fisher_select"
"${select_cmd[@]}"
echo "load: $(load) (after)" >> "$results/run.txt"

if [ "$docs" = 1 ]; then
  ./bench/report.py "$results" --doc docs/benchmarks.md --img docs/img --build "$build"
else
  ./bench/report.py "$results" --img "$results/img" --build "$build"
fi
