#!/usr/bin/env bash
# The evidence sweep of the Fashion-MNIST demo: every method of
# fashion_mnist_child_tuning against vanilla AdamW over a grid of
# K (images per class) x lr x p, several seeds per cell, then a report of each
# method's paired difference to vanilla (same seed) with a 95 % t-interval:
# a markdown table and a heatmap (docs/demo.md explains how to read them).
#
# Every finished run is appended to <out>/runs.csv at once; a run already there
# is read back, not trained again, so an interrupted sweep continues where it
# stopped when started again with the same flags (more seeds or grid values
# later: only the new runs are trained). The pretrained weights are cached
# (shared with scripts/demo.sh), so the sweep pretrains at most once.
#
#   ./scripts/sweep.sh                     the full grid: K 5,20,100 x lr 1e-3,1e-2 x p 0.1,0.3,0.5, 5 seeds
#   ./scripts/sweep.sh --seeds 10          ... 10 seeds per cell (trains only seeds 5-9 if 0-4 are done)
#   ./scripts/sweep.sh --K 20 --p 0.3      one row of the grid
#   ./scripts/sweep.sh --report-only       the report of what <out>/runs.csv holds now (for the
#                                          grid and seeds of the flags: --K 5 --report-only, ...)
#   ./scripts/sweep.sh --smoke             a tiny grid on a tiny setup, in under a minute (CI)
#
# Options (a value follows the flag):
#   --K LIST, --lr LIST, --p LIST   comma-separated grid values
#   --seeds N         seeds 0..N-1 in every cell (default 5)
#   --methods LIST    the demo's --methods (default: all it knows; vanilla always runs: the baseline)
#   --epochs N        fine-tuning epochs (default: the demo's, 30)
#   --threads N       LibTorch threads per run (default 1: on a busy machine, 2 threads that wait for
#                     each other cost more than they give; the thread count is part of the setup,
#                     so one runs log holds one thread count)
#   --out DIR         runs log, per-cell logs and report (default build/sweep, build/sweep-smoke)
#   --cache DIR       the pretrained-weights cache (default build/demo/output, demo.sh's)
#   --build DIR       build directory (default build/demo)
#   --no-build        use the programs already in --build: install and build nothing (ctest)
#   --report-only     no training: the report of the runs log as it is
#   --publish         also copy the heatmap to docs/img/fashion_mnist_sweep.png and the runs log
#                     to docs/data/fashion_mnist_sweep.csv (what docs/demo.md shows)
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "sweep.sh: $*" >&2; exit 2; }

smoke=0
for a in "$@"; do [[ "$a" == --smoke ]] && smoke=1; done
if ((smoke)); then
  K=5 lrs=1e-2 ps=0.3,0.5 seeds=2 out=build/sweep-smoke
else
  K=5,20,100 lrs=1e-3,1e-2 ps=0.1,0.3,0.5 seeds=5 out=build/sweep
fi
methods="" epochs="" threads=1 cache="" build=build/demo build_it=1 report_only=0 publish=0
while (($#)); do
  case "$1" in
    --smoke) shift ;;
    --K) K="${2:?--K needs a list}"; shift 2 ;;
    --lr) lrs="${2:?--lr needs a list}"; shift 2 ;;
    --p) ps="${2:?--p needs a list}"; shift 2 ;;
    --seeds) seeds="${2:?--seeds needs a number}"; shift 2 ;;
    --methods) methods="${2:?--methods needs a list}"; shift 2 ;;
    --epochs) epochs="${2:?--epochs needs a number}"; shift 2 ;;
    --threads) threads="${2:?--threads needs a number}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --cache) cache="${2:?--cache needs a directory}"; shift 2 ;;
    --build) build="${2:?--build needs a directory}"; shift 2 ;;
    --no-build) build_it=0; shift ;;
    --report-only) report_only=1; shift ;;
    --publish) publish=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (--help lists them)" ;;
  esac
done
[[ "$seeds" =~ ^[1-9][0-9]*$ ]] || die "--seeds needs a number >= 1, not '$seeds'"
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || die "--threads needs a number >= 1, not '$threads'"
[[ -z "$epochs" || "$epochs" =~ ^[1-9][0-9]*$ ]] || die "--epochs needs a number >= 1, not '$epochs'"
IFS=, read -r -a K_list <<<"$K"
IFS=, read -r -a lr_list <<<"$lrs"
IFS=, read -r -a p_list <<<"$ps"
((${#K_list[@]} && ${#lr_list[@]} && ${#p_list[@]})) || die "--K, --lr and --p need at least one value each"
if [[ -z "$cache" ]]; then
  if ((smoke)); then cache="$out/cache"; else cache="$build/output"; fi
fi

if ((build_it)); then
  ./scripts/install-deps.sh cmake ninja-build g++ libomp-dev libtorch-dev dataset-fashion-mnist gnuplot-nox \
                            zlib1g-dev libeigen3-dev libopenmpi-dev openmpi-bin
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCHILDTUNE_BUILD_TESTS=OFF -DCHILDTUNE_BUILD_BENCHMARKS=OFF -DCHILDTUNE_BUILD_EXAMPLES=ON >/dev/null
  cmake --build "$build" --target fashion_mnist_child_tuning fashion_mnist_sweep_report
fi
program="$build/examples/fashion_mnist_child_tuning"
report="$build/examples/fashion_mnist_sweep_report"
[[ -x "$program" && -x "$report" ]] || die "no $program or $report (build them, or drop --no-build)"

mkdir -p "$out/logs"
runs="$out/runs.csv"
if ((!report_only)); then
  demo=()
  ((smoke)) && demo+=(--smoke --test-examples 500)
  [[ -n "$epochs" ]] && demo+=(--epochs "$epochs")
  if [[ -z "$methods" ]]; then
    demo+=(--methods all)
  else
    chosen=vanilla
    IFS=, read -r -a method_list <<<"$methods"
    for m in "${method_list[@]}"; do [[ "$m" == vanilla ]] || chosen+=",$m"; done
    demo+=(--methods "$chosen")
  fi
  cells=$((${#K_list[@]} * ${#lr_list[@]} * ${#p_list[@]}))
  cell=0 trained=0 start=$SECONDS
  echo "sweep: K {$K} x lr {$lrs} x p {$ps}, $seeds seeds, $cells cells; runs log $runs"
  for k in "${K_list[@]}"; do
    for lr in "${lr_list[@]}"; do
      for p in "${p_list[@]}"; do
        cell=$((cell + 1))
        log="$out/logs/K${k}-lr${lr}-p${p}.log"
        t0=$SECONDS
        if ! "$program" "${demo[@]}" --K "$k" --lr "$lr" --p "$p" --seeds "$seeds" --threads "$threads" \
             --runs-csv "$runs" --out "$out/last" --cache "$cache" >"$log" 2>&1; then
          tail -n 20 "$log" >&2
          die "cell K $k, lr $lr, p $p failed (log: $log)"
        fi
        now=$(sed -n 's/^runs log: .* (\([0-9]*\) of \([0-9]*\) runs trained now.*/\1/p' "$log")
        trained=$((trained + ${now:-0}))
        printf 'sweep: cell %d/%d  K %s  lr %s  p %s: %s runs trained in %d s (%d s so far)\n' \
               "$cell" "$cells" "$k" "$lr" "$p" "${now:-?}" $((SECONDS - t0)) $((SECONDS - start))
      done
    done
  done
  echo "sweep: $trained runs trained now, in $((SECONDS - start)) s"
fi
[[ -f "$runs" ]] || die "no runs log at $runs yet"
# The report covers the grid and seeds of the flags (the runs log may hold more).
"$report" --csv "$runs" --out "$out/report" --K "$K" --lr "$lrs" --p "$ps" --seeds "$seeds"
if ((publish)); then
  mkdir -p docs/img docs/data
  cp "$out/report/sweep_heatmap.png" docs/img/fashion_mnist_sweep.png
  cp "$runs" docs/data/fashion_mnist_sweep.csv
  echo "published: docs/img/fashion_mnist_sweep.png, docs/data/fashion_mnist_sweep.csv (the table: $out/report/sweep_report.md)"
fi
