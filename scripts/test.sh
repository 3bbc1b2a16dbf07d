#!/usr/bin/env bash
# Builds everything (library tests, examples, benchmarks, fuzz targets, packaging
# consumers) and runs the whole test suite, warnings as errors, in three stages.
# Each test program is built in one stage only (CI: 2 cores, 40 minutes):
#
#   g++      Release (-O2, the flags of a user's build): the LibTorch adapter, the
#            Thrust adapter (OMP system), the demo and benchmark smoke runs,
#            nvcc-compiled GPU programs, compile-fail checks, packaging consumers,
#            the LibTorch loader's fuzz target (ASan + UBSan, time-boxed run),
#            the API reference (Doxygen, warnings as errors: the docs target),
#            and the Python package (built into build/python-venv by
#            scripts/python-env.sh; it runs the docs' python blocks, then pytest
#            over tests/python).
#   clang++  the core's and the Eigen adapter's tests under AddressSanitizer +
#            LeakSanitizer + UndefinedBehaviorSanitizer (-O1), and the libFuzzer
#            targets for the state and mask files (time-boxed runs from the
#            committed corpus).
#   tsan     clang++ ThreadSanitizer over the tests labelled "threads" (the
#            OpenMP-parallel paths), with LLVM's Archer tool so OpenMP's own
#            synchronisation is understood.
#
# Installs what is missing first.
#
#   ./scripts/test.sh                  all three stages
#   STAGES="g++ clang++" ./scripts/test.sh
#   FUZZ_SECONDS=300 ./scripts/test.sh  longer fuzz runs
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh cmake ninja-build g++ clang libomp-dev catch2 libeigen3-dev libbenchmark-dev libtorch-dev dataset-fashion-mnist gnuplot-nox zlib1g-dev libopenmpi-dev openmpi-bin libgloo-dev pkgconf git doxygen \
  python3-venv python3-torch python3-numpy python3-pytest pybind11-dev python3-setuptools python3-wheel

jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-15}
# CHILDTUNE_UNITY_TESTS: each multi-file test program compiles as one unit (CI time).
common=(-G Ninja -DCHILDTUNE_WARNINGS_AS_ERRORS=ON -DCMAKE_BUILD_TYPE=Release -DCHILDTUNE_UNITY_TESTS=ON)

stage_gxx() {
  local build=build/test-g++ python
  python=$(MAX_JOBS="$jobs" ./scripts/python-env.sh)   # the Python package, before configure: the docs' python blocks need it
  cmake -S . -B "$build" "${common[@]}" -DCMAKE_CXX_COMPILER=g++ -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
        -DCHILDTUNE_SANITIZE= -DCHILDTUNE_BUILD_CORE_TESTS=OFF -DCHILDTUNE_BUILD_EXAMPLES=ON -DCHILDTUNE_BUILD_BENCHMARKS=ON \
        -DCHILDTUNE_BUILD_FUZZERS=ON -DCHILDTUNE_FUZZ_SECONDS="$fuzz_seconds" -DCHILDTUNE_PYTHON="$python"
  cmake --build "$build" -j "$jobs"
  cmake --build "$build" --target docs   # the API reference (Doxygen): any warning fails
  # The docs' C++ blocks, compiled in parallel now: their tests take a lock on the
  # build tree and would compile them one at a time. A block that fails here
  # fails its own test below, with its message, so the build goes on (-k 0).
  cmake --build "$build" -j "$jobs" --target childtune_docs_blocks -- -k 0 || true
  ctest --test-dir "$build" -j "$jobs" --output-on-failure --timeout 900
  "$python" -m pytest -q -p no:cacheprovider tests/python examples/python bench/python
}

stage_clang() {
  local build=build/test-clang++
  # Examples and benchmark smoke runs are left to the g++ stage (CI time).
  cmake -S . -B "$build" "${common[@]}" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
        -DCHILDTUNE_SANITIZE=address,undefined -DCHILDTUNE_BUILD_EXAMPLES=OFF -DCHILDTUNE_BUILD_BENCHMARKS=OFF \
        -DCHILDTUNE_BUILD_FUZZERS=ON -DCHILDTUNE_FUZZ_SECONDS="$fuzz_seconds"
  cmake --build "$build" -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:check_initialization_order=1 \
  LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$build" -j "$jobs" --output-on-failure --timeout 900
}

stage_tsan() {
  local build=build/test-tsan
  cmake -S . -B "$build" "${common[@]}" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
        -DCHILDTUNE_SANITIZE=thread -DCHILDTUNE_BUILD_EXAMPLES=OFF -DCHILDTUNE_BUILD_BENCHMARKS=OFF
  cmake --build "$build" -j "$jobs" --target childtune_threaded_tests
  # Archer (LLVM's OpenMP tool for TSan) ships beside libomp, two levels above
  # clang's resource directory.
  local archer
  archer="$(clang++ -print-resource-dir)/../../libarcher.so"
  [[ -f "$archer" ]] || { echo "error: libarcher.so not found (libomp-dev)" >&2; exit 1; }
  OMP_TOOL_LIBRARIES="$archer" \
  TSAN_OPTIONS="ignore_noninstrumented_modules=1:halt_on_error=1:second_deadlock_stack=1" \
    ctest --test-dir "$build" -j "$jobs" -L threads --output-on-failure --timeout 900
}

for stage in ${STAGES:-g++ clang++ tsan}; do
  echo "=== stage ${stage}: configure, build, test ==="
  started=$SECONDS
  case "$stage" in
    g++) stage_gxx ;;
    clang++) stage_clang ;;
    tsan) stage_tsan ;;
    *) echo "unknown stage '$stage' (g++, clang++, tsan)" >&2; exit 2 ;;
  esac
  # CI's budget is 40 minutes on 2 cores: each stage says what it took.
  echo "=== stage ${stage} passed in $((SECONDS - started)) s ==="
done
echo "=== all tests passed in ${SECONDS} s ==="
