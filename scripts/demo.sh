#!/usr/bin/env bash
# The project's main job: the end-to-end Child-Tuning demo on Fashion-MNIST with
# LibTorch. Installs what is missing, builds in Release and runs it; arguments go
# to the demo (--help). Results (table, CSV, PNG) and the pretrained-weights cache
# go to build/demo/output, so a second run skips pretraining.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh cmake ninja-build g++ libomp-dev libtorch-dev dataset-fashion-mnist gnuplot-nox \
                          zlib1g-dev libeigen3-dev

build=build/demo
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCHILDTUNE_BUILD_TESTS=OFF -DCHILDTUNE_BUILD_BENCHMARKS=OFF -DCHILDTUNE_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" --target fashion_mnist_child_tuning
exec "$build/examples/fashion_mnist_child_tuning" --out "$build/output" "$@"
