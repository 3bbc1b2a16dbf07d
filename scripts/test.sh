#!/usr/bin/env bash
# Builds everything (library tests, examples, benchmarks, packaging consumers)
# with g++ and with clang++, warnings as errors, and runs the whole test suite
# with both. Installs what is missing first.
#
#   ./scripts/test.sh            both compilers
#   COMPILERS=g++ ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh cmake ninja-build g++ clang libomp-dev catch2 libeigen3-dev libbenchmark-dev libtorch-dev dataset-fashion-mnist gnuplot-nox zlib1g-dev

jobs=$(nproc)
for cxx in ${COMPILERS:-g++ clang++}; do
  build="build/test-${cxx%++}"
  echo "=== ${cxx}: configure, build, test (${build}) ==="
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
        -DCHILDTUNE_WARNINGS_AS_ERRORS=ON
  cmake --build "$build" -j "$jobs"
  ctest --test-dir "$build" -j "$jobs" --output-on-failure --timeout 600
done
echo "=== all tests passed ==="
