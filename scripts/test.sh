#!/usr/bin/env bash
# Builds everything (library tests, examples, benchmarks, packaging consumers)
# with g++ and with clang++, warnings as errors, and runs the whole test suite
# with both; the clang++ build runs it under AddressSanitizer + LeakSanitizer +
# UndefinedBehaviorSanitizer. Installs what is missing first.
#
#   ./scripts/test.sh            both compilers
#   COMPILERS=g++ ./scripts/test.sh
#   SANITIZE=0 ./scripts/test.sh  clang++ without sanitizers
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh cmake ninja-build g++ clang libomp-dev catch2 libeigen3-dev libbenchmark-dev libtorch-dev dataset-fashion-mnist gnuplot-nox zlib1g-dev

jobs=$(nproc)
for cxx in ${COMPILERS:-g++ clang++}; do
  build="build/test-${cxx%++}"
  config=(-DCMAKE_BUILD_TYPE=Release -DCHILDTUNE_SANITIZE= -DCHILDTUNE_BUILD_EXAMPLES=ON -DCHILDTUNE_BUILD_BENCHMARKS=ON)
  if [[ "$cxx" == clang++ && "${SANITIZE:-1}" != 0 ]]; then
    # The clang++ build runs the test suite under AddressSanitizer (with
    # LeakSanitizer) and UndefinedBehaviorSanitizer; any finding fails its test.
    # Examples and benchmark smoke runs are left to the g++ build (CI time).
    config=(-DCMAKE_BUILD_TYPE=Release -DCHILDTUNE_SANITIZE=address,undefined
            -DCHILDTUNE_BUILD_EXAMPLES=OFF -DCHILDTUNE_BUILD_BENCHMARKS=OFF)
    export ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:check_initialization_order=1
    export LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  fi
  echo "=== ${cxx}: configure, build, test (${build}) ==="
  cmake -S . -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DCHILDTUNE_WARNINGS_AS_ERRORS=ON "${config[@]}"
  cmake --build "$build" -j "$jobs"
  ctest --test-dir "$build" -j "$jobs" --output-on-failure --timeout 900
done
echo "=== all tests passed ==="
