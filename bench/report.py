#!/usr/bin/env python3
"""Turns Google Benchmark JSON from bench_step and bench_fisher_select into the
markdown tables of docs/benchmarks.md. Ratios are taken between benchmarks of the
same run (same binary, same load), never across runs.

    bench/report.py step.json select.json
"""
import json
import re
import sys


def load(path):
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = re.sub(r"/(real_time|iterations:\d+)", "", b.get("run_name", b["name"]))
        rows[name] = b
    return data["context"], rows


def ms(b):
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
    return b["real_time"] * scale


def step_table(rows):
    triad = rows["triad"]["bytes/s"]
    dense = ms(rows["step/dense"])
    out = ["| benchmark | time per step | parameters/s | GB/s | × triad GB/s | vs dense step |",
           "|---|---|---|---|---|---|"]
    for name, b in rows.items():
        out.append("| `{}` | {:.1f} ms | {:.3g} G | {:.1f} | {:.2f} | {:+.0f} % |".format(
            name, ms(b), b["params/s"] / 1e9, b["bytes/s"] / 1e9, b["bytes/s"] / triad,
            100 * (ms(b) / dense - 1)))
    return "\n".join(out)


def select_table(rows):
    ours = ms(rows["BM_top_p_percentile"])
    out = ["| benchmark | time | × our percentile selection |", "|---|---|---|"]
    for name, b in rows.items():
        out.append("| `{}` | {:.0f} ms | {:.2f} |".format(name, ms(b), ms(b) / ours))
    return "\n".join(out)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    context, step = load(sys.argv[1])
    _, select = load(sys.argv[2])
    print("Machine: {} CPUs at {:.0f} MHz (Google Benchmark context), load average {}.\n".format(
        context["num_cpus"], context["mhz_per_cpu"], ", ".join("{:.2f}".format(x) for x in context.get("load_avg", []))))
    print("### Fused step (N = 64 Mi fp32 parameters, AdamW, 28 B/param; triad 12 B/element)\n")
    print(step_table(step))
    print("\n### Child-Tuning_D selection (N = 256 Mi float scores, p = 0.3)\n")
    print(select_table(select))


if __name__ == "__main__":
    main()
