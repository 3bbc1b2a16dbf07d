#!/usr/bin/env bash
# Compile time of the probes of bench/compile_time/ (a translation unit that
# uses the optimizer with one rule; the same unit in a program that compiles the
# optimizer once elsewhere, childtune/instantiate.hpp; one that uses the LibTorch
# adapter), as a user's build compiles them: g++ -O2 -fopenmp -std=gnu++20.
# Prints the median of three wall-clock times per probe. A tree without
# childtune/instantiate.hpp (older versions) skips the second probe.
#
#   ./scripts/compile-time.sh [<source tree>]   default: this checkout
#
# Pass another tree (e.g. a worktree of an older commit) to compare versions on
# the same machine in the same run.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "${1:-$here}" && pwd)"
torch_flags=(-DUSE_C10D_GLOO -DUSE_DISTRIBUTED -DUSE_RPC -DUSE_TENSORPIPE -D_GLIBCXX_USE_CXX11_ABI=1
             -isystem /usr/include/torch/csrc/api/include)
median() { sort -n | sed -n 2p; }
for probe in one_rule one_rule_extern torch_adapter; do
  [ "$probe" = one_rule_extern ] && [ ! -f "$root/include/childtune/instantiate.hpp" ] && continue
  extra=()
  [ "$probe" = torch_adapter ] && extra=("${torch_flags[@]}" -I"$root/adapters/torch/include")
  for _ in 1 2 3; do
    /usr/bin/time -f %e g++ -std=gnu++20 -O2 -fopenmp -I"$root/include" "${extra[@]}" \
      -c "$here/bench/compile_time/$probe.cpp" -o /dev/null 2>&1 | tail -1
  done | median | sed "s/^/$probe: /;s/\$/ s/"
done
