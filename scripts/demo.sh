#!/usr/bin/env bash
# The project's main job: the end-to-end Child-Tuning demo. Installs what is
# missing, builds in Release and runs it; arguments go to the demo (--help).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh cmake ninja-build g++ libomp-dev libeigen3-dev

build=build/demo
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCHILDTUNE_BUILD_TESTS=OFF -DCHILDTUNE_BUILD_BENCHMARKS=OFF -DCHILDTUNE_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" --target eigen_child_tuning
exec "$build/examples/eigen_child_tuning" "$@"
