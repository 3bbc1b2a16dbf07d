#!/usr/bin/env bash
# The project's main job: the end-to-end Child-Tuning demo on Fashion-MNIST with
# LibTorch. Installs what is missing, builds in Release and runs it; arguments go
# to the demo (--help). Results (table, CSV, PNG) and the pretrained-weights cache
# go to build/demo/output, so a second run skips pretraining.
#
# --ranks N (this script's own flag): run it data-parallel on N MPI ranks on this host
# (mpirun -np N ... --data-parallel), one LibTorch thread per rank unless
# --threads says otherwise.
#
# --python (this script's own flag): run the Python twin of the demo instead,
# examples/python/fashion_mnist.py, with the childtune package in the venv that
# scripts/python-env.sh creates (build/python-venv); results and its cache go to
# build/demo/python-output.
set -euo pipefail
cd "$(dirname "$0")/.."

ranks=0
python=0
args=()
while (($#)); do
  case "$1" in
    --python) python=1; shift ;;
    --ranks) ranks="${2:?--ranks needs a number}"; shift 2 ;;
    --ranks=*) ranks="${1#*=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ "$ranks" =~ ^[0-9]+$ ]] || { echo "demo.sh: --ranks needs a number, not '$ranks'" >&2; exit 2; }

if ((python)); then
  ((ranks == 0)) || { echo "demo.sh: --ranks is for the C++ demo; the Python demo runs in one process" >&2; exit 2; }
  ./scripts/install-deps.sh g++ python3-dev python3-venv python3-torch libtorch-dev python3-numpy \
                            python3-setuptools python3-wheel pybind11-dev dataset-fashion-mnist
  py=$(./scripts/python-env.sh)
  exec "$py" examples/python/fashion_mnist.py --out build/demo/python-output "${args[@]}"
fi

./scripts/install-deps.sh cmake ninja-build g++ libomp-dev libtorch-dev dataset-fashion-mnist gnuplot-nox \
                          zlib1g-dev libeigen3-dev libopenmpi-dev openmpi-bin

build=build/demo
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCHILDTUNE_BUILD_TESTS=OFF -DCHILDTUNE_BUILD_BENCHMARKS=OFF -DCHILDTUNE_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" --target fashion_mnist_child_tuning
program="$build/examples/fashion_mnist_child_tuning"
if ((ranks > 0)); then
  root=()
  [[ $EUID -eq 0 ]] && root=(--allow-run-as-root)
  exec mpirun -np "$ranks" --oversubscribe --mca plm isolated "${root[@]}" "$program" --data-parallel --threads 1 \
       --out "$build/output" "${args[@]}"
fi
exec "$program" --out "$build/output" "${args[@]}"
