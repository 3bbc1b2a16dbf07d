#!/usr/bin/env bash
# Builds the benchmarks (Release; bench_step itself at -O2 without -march), runs
# them, keeps the JSON under build/bench/results and prints the markdown tables of
# docs/benchmarks.md. Takes a few minutes: the selection baselines sort 1 GiB.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh cmake ninja-build g++ libbenchmark-dev python3

build=build/bench
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCHILDTUNE_BUILD_TESTS=OFF \
      -DCHILDTUNE_BUILD_EXAMPLES=OFF -DCHILDTUNE_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" --target bench_step bench_fisher_select
results="$build/results"
mkdir -p "$results"
"$build/bench/bench_step" --benchmark_min_time=1 --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_out="$results/step.json" --benchmark_out_format=json
"$build/bench/bench_fisher_select" --benchmark_out="$results/select.json" --benchmark_out_format=json
echo
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%d); $(c++ --version | head -1)"
./bench/report.py "$results/step.json" "$results/select.json"
