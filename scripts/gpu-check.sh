#!/usr/bin/env bash
# The GPU check of the Thrust adapter, for a machine with an NVIDIA GPU: builds
# the CUDA tests and GPU benchmarks for the GPU that is there, runs the tests (the
# CPU path's results, bit for bit, on the device), then the benchmarks (fused
# dense / Child-Tuning_F / Child-Tuning_D AdamW steps at N = 1e9 in fp32 and in
# bf16 with fp32 state against a device-to-device copy; the Fisher accumulation
# and top-p selection at N = 1e9 against a read pass and a sort), and prints a
# summary. Where python3 has a CUDA PyTorch, the Python package is built with its
# CUDA kernels (in the background while the CUDA tests run; into $BUILD_DIR/python)
# and its tests run on the GPU (tests/python, test_cuda.py's cases included); then
# bench/python/gpu_torch_adamw.py times PyTorch's fused and foreach AdamW, the
# published Child-Tuning_F step and the package's optimizer at the same N on the
# same card, and the summary gives childtune's time over each. Last, on the
# host's CPU cores, the paired benchmarks (bench/step_paired.cpp: Child-Tuning_F
# and the 8-bit state against the dense step, 64 Mi) run on every core and on
# two, with the host's widest kernels and with the AVX2 ones (CHILDTUNE_MAX_ISA):
# the 2-core machines these targets are otherwise measured on are bound by
# arithmetic, a many-core host by memory (docs/benchmarks.md).
# JSON and logs go to $OUT_DIR (default build/gpu/results).
#
#   ./scripts/gpu-check.sh               full run (a few minutes; ~17 GB of GPU memory)
#   SMOKE=1 ./scripts/gpu-check.sh       small N: checks that everything runs
#
# Needs nvcc (CUDA 12 or later) with g++ as its host compiler, CMake >= 3.24,
# Catch2 2.x and Google Benchmark (point CMAKE_PREFIX_PATH at them when they are
# not installed system-wide). Installs nothing: GPU machines are often offline.
# NO_PACKAGE=1 skips the Python package. PREBUILT=<dir> runs
# test_adapters_thrust_cuda_{step,fisher,optimizer}, bench_gpu_{step,fisher_select}
# and, when <dir> has it, bench_step from <dir> instead of building them (built
# elsewhere for this GPU: CUDA_ARCHITECTURES, and LD_LIBRARY_PATH for their
# libraries). TEST_TIMEOUT (seconds, default 600) bounds each test program.
set -uo pipefail
cd "$(dirname "$0")/.."

build=${BUILD_DIR:-build/gpu}
out=${OUT_DIR:-$build/results}
mkdir -p "$out"
status=0

# Whether python3 has a PyTorch that sees a CUDA device (the package and the
# PyTorch peer below need one); asked once, importing torch takes seconds.
cuda_torch=
python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null && cuda_torch=1

# The Python package against this machine's CUDA torch, for this GPU only, built
# while the C++ programs build and run (it is CPU work; they are mostly GPU work).
package=$build/python
package_build=
if [[ -z "${NO_PACKAGE:-}" && -n "$cuda_torch" ]]; then
  arch=$(python3 -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
  rm -rf "$package"
  (TORCH_CUDA_ARCH_LIST=$arch MAX_JOBS=$(nproc) python3 -m pip install --no-build-isolation --no-deps --no-index \
     --disable-pip-version-check -q --target "$package" . >"$out/package_build.log" 2>&1) &
  package_build=$!
fi

if [[ -n "${PREBUILT:-}" ]]; then
  bin=$PREBUILT
else
  # Thrust's CMake package ships with the CUDA toolkit next to nvcc.
  nvcc=$(command -v nvcc || true)
  [[ -z "$nvcc" && -x /usr/local/cuda/bin/nvcc ]] && nvcc=/usr/local/cuda/bin/nvcc
  if [[ -z "$nvcc" ]]; then echo "gpu-check: nvcc not found" >&2; exit 1; fi
  cuda_root=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
  thrust_config=$(find "$cuda_root" -name thrust-config.cmake -path '*cmake/thrust/*' 2>/dev/null | head -1)
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  echo "=== configure (${build}; nvcc ${nvcc}) ==="
  cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ \
        -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES:-native}" \
        ${thrust_config:+-DThrust_DIR="$(dirname "$thrust_config")"} \
        -DCHILDTUNE_WITH_TORCH=OFF -DCHILDTUNE_BUILD_EXAMPLES=OFF -DCHILDTUNE_RUN_CUDA_TESTS=ON \
        -DCHILDTUNE_WARNINGS_AS_ERRORS=ON >"$out/configure.log" 2>&1 \
    || { tail -30 "$out/configure.log"; exit 1; }
  grep 'childtune:' "$out/configure.log"
  echo "=== build ==="
  cmake --build "$build" -j "$(nproc)" --target test_adapters_thrust_cuda_step test_adapters_thrust_cuda_fisher test_adapters_thrust_cuda_optimizer \
        bench_gpu_step bench_gpu_fisher_select bench_step >"$out/build.log" 2>&1 \
    || { grep -E 'error|Error' "$out/build.log" | head -40; exit 1; }
  bin=$out/../bin
  mkdir -p "$bin"
  cp "$build"/tests/test_adapters_thrust_cuda_{step,fisher,optimizer} "$build"/bench/bench_{gpu_step,gpu_fisher_select,step} "$bin"/
fi

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader \
  | tee "$out/gpu.txt"

echo "=== CUDA tests ==="
for t in step fisher optimizer; do
  if timeout "${TEST_TIMEOUT:-600}" "$bin/test_adapters_thrust_cuda_$t" >"$out/test_$t.log" 2>&1; then
    echo "test_adapters_thrust_cuda_$t: $(tail -2 "$out/test_$t.log" | head -1)"
  else
    status=1
    echo "test_adapters_thrust_cuda_$t FAILED:"; tail -40 "$out/test_$t.log"
  fi
done

echo "=== GPU benchmarks ==="
if [[ -n "${SMOKE:-}" ]]; then
  export CHILDTUNE_BENCH_GPU_N=1048576 CHILDTUNE_BENCH_GPU_MODEL_LAYERS=2 CHILDTUNE_BENCH_GPU_SELECT_N=1048576
  min_time=0.01
else
  min_time=${BENCH_MIN_TIME:-0.5}
fi
for b in gpu_step gpu_fisher_select; do
  "$bin/bench_$b" --benchmark_min_time="$min_time" --benchmark_out="$out/$b.json" \
      --benchmark_out_format=json >"$out/$b.log" 2>&1 || { status=1; echo "bench_$b FAILED"; tail -20 "$out/$b.log"; }
done

if [[ -n "$package_build" ]]; then
  echo "=== the Python package on CUDA (torch $(python3 -c 'import torch; print(torch.__version__)')) ==="
  if wait "$package_build"; then
    export PYTHONPATH=$PWD/$package${PYTHONPATH:+:$PYTHONPATH}
    python3 -c 'import torch, childtune; print("extension built with CUDA kernels:", childtune._C.cuda_kernels)'
    # -v: each test's name is written before it runs, so a crash names its test
    if timeout "${TEST_TIMEOUT:-600}" python3 -m pytest -v -p no:cacheprovider tests/python >"$out/pytest.log" 2>&1; then
      tail -1 "$out/pytest.log"
    else
      status=1
      echo "tests/python FAILED:"; grep -E '^(FAILED|ERROR)' "$out/pytest.log" | head -20; tail -25 "$out/pytest.log"
    fi
  else
    status=1
    echo "the package did not build:"; grep -E 'error|Error' "$out/package_build.log" | head -30
  fi
fi

echo "=== PyTorch's AdamW on the same card ==="
if [[ -n "$cuda_torch" ]]; then
  python3 bench/python/gpu_torch_adamw.py ${SMOKE:+--n 1048576} --json "$out/torch_adamw.json" 2>&1 \
    | tee "$out/torch_adamw.log" || status=1
else
  echo "skipped: python3 has no PyTorch that sees a CUDA device"
fi

echo "=== host CPU: the targets' ratios, timed in pairs ==="
if [[ -x "$bin/bench_step" ]]; then
  host_n=67108864
  [[ -n "${SMOKE:-}" ]] && host_n=1048576
  # The widest kernels the host has, then the AVX2 ones (CHILDTUNE_MAX_ISA at run
  # time): these hosts' Intel cores are where the AVX2 figures are missing.
  for isa in widest avx2; do
    cap=; [[ $isa == avx2 ]] && cap=avx2
    for threads in $(printf '%s\n' "$(nproc)" 2 | sort -nu); do
      run=host_pairs_${threads}_$isa
      CHILDTUNE_MAX_ISA=$cap OMP_NUM_THREADS=$threads CHILDTUNE_BENCH_N=$host_n "$bin/bench_step" \
          --benchmark_filter='^N=[^/]+/paired/' --benchmark_min_time="$min_time" --benchmark_repetitions=3 \
          --benchmark_report_aggregates_only=true --benchmark_out="$out/$run.json" --benchmark_out_format=json \
          >"$out/$run.log" 2>&1 \
        || { status=1; echo "bench_step ($threads threads, $isa kernels) FAILED"; tail -20 "$out/$run.log"; }
    done
  done
else
  echo "skipped: no bench_step in $bin"
fi

echo "=== summary ==="
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
for name in ("gpu_step", "gpu_fisher_select"):
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        continue
    data = json.load(open(path))
    ctx = data.get("context", {})
    print(f"{name}: {ctx.get('gpu', ctx.get('gpu_name', '?'))}, {ctx.get('date', '')}")
    for b in data["benchmarks"]:
        if b.get("error_occurred"):
            print(f"  {b['name']:<42} ERROR {b.get('error_message', '')}")
            continue
        extra = "  ".join(f"{k}={b[k]:.4g}" for k in ("GB/s", "x_copy", "x_read", "held_GB", "kept_frac") if k in b)
        print(f"  {b['name']:<42} {b['real_time']:10.3f} {b['time_unit']}  {extra}")
# The step's times by name (ms), read once for the ratios below.
step, torch_path = os.path.join(out, "gpu_step.json"), os.path.join(out, "torch_adamw.json")
ours = {}
if os.path.exists(step):
    ours = {b["name"].removesuffix("/manual_time"): b["real_time"] for b in json.load(open(step))["benchmarks"]
            if not b.get("error_occurred") and b.get("time_unit") == "ms"}
# The default mask definition (4) against the previous one (3) on the card, and
# each over the dense step: definition 4 draws its ARS blocks from tables.
for prefix in ("adamw/fp32", "model/adamw/fp32"):
    dense, v4, v3 = (ours.get(f"{prefix}/{k}") for k in ("dense", "ct_f", "ct_f+mask_v3"))
    if dense and v4 and v3:
        print(f"  {prefix}: CT_F / dense {v4 / dense:.3f} (definition 4), {v3 / dense:.3f} (definition 3)")
# childtune's step time over PyTorch's on the same tensors' shape (one tensor of N
# elements; both programs at the same N).
if os.path.exists(step) and os.path.exists(torch_path):
    peer = json.load(open(torch_path))
    theirs = {r["name"]: r["ms"] for r in peer["results"]}
    print(f"childtune time / PyTorch time (torch {peer['torch']}, N = {peer['n']}; below 1: childtune is faster)")
    for mine, other in (("adamw/fp32/dense", "torch/adamw_fused/fp32"), ("adamw/fp32/dense", "torch/adamw_foreach/fp32"),
                        ("adamw/fp32/ct_f", "published/ct_f/fp32"), ("adamw/fp32/ct_f", "torch/adamw_fused/fp32"),
                        ("adamw/bf16/dense", "torch/adamw_fused/bf16")):
        if mine in ours and other in theirs:
            print(f"  {mine:<20} / {other:<26} {ours[mine] / theirs[other]:.3f}")
    # the package's optimizer, stepped from Python, over the same rows
    for mine, other in (("package/adamw/fp32/dense", "torch/adamw_fused/fp32"),
                        ("package/adamw/fp32/ct_f", "published/ct_f/fp32")):
        if mine in theirs and other in theirs:
            print(f"  {mine:<20} / {other:<26} {theirs[mine] / theirs[other]:.3f}")
    # and over the C++ program's own step (the cost of stepping from Python)
    for mine, other in (("package/adamw/fp32/dense", "adamw/fp32/dense"), ("package/adamw/fp32/ct_f", "adamw/fp32/ct_f")):
        if mine in theirs and other in ours:
            print(f"  {mine:<20} / {other:<26} {theirs[mine] / ours[other]:.3f}")
# The host's pairs: b's time over a's, the median over the pairs (bench/step_paired.cpp).
for path in sorted(p for p in os.listdir(out) if p.startswith("host_pairs_") and p.endswith(".json")):
    data = json.load(open(os.path.join(out, path)))
    ctx = data.get("context", {})
    print(f"host, {ctx.get('childtune_cpu_isa', '?')} kernels, {ctx.get('openmp_threads', '?')} threads of "
          f"{ctx.get('num_cpus', '?')} CPUs (b / a, median of the pairs):")
    for b in data["benchmarks"]:
        if b.get("aggregate_name") == "median" and "ratio" in b:
            name = b["run_name"].removesuffix("/manual_time")
            print(f"  {name:<42} a {b['a_ms']:8.2f} ms  b {b['b_ms']:8.2f} ms  b / a {b['ratio']:.3f}")
PY
exit $status
