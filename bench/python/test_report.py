"""bench/report.py on a synthetic Google Benchmark JSON: the paired rows
(bench/step_paired.cpp) become the "timed in pairs" table with their counters,
the ordinary tables are unchanged by them, and the setup names the kernels'
instruction set. Never a judgement of speed."""

import json
import pathlib
import subprocess
import sys

REPORT = pathlib.Path(__file__).resolve().parent.parent / "report.py"


def row(name, ms, **counters):
    base = {"run_name": name + "/manual_time", "name": name + "/manual_time_median", "run_type": "aggregate",
            "aggregate_name": "median", "real_time": ms, "time_unit": "ms", "N": 16777216.0, "tensors": 1.0,
            "bytes_per_param": 28.0, "peak_rss": 1e9, "extra_mem": 1e8}
    base.update(counters)
    return base


def test_paired_table(tmp_path):
    benchmarks = [
        row("N=16Mi/triad", 3.0, bytes_per_param=12.0),
        row("N=16Mi/childtune/dense", 8.0),
        row("N=16Mi/childtune/ct_f", 9.0),
        row("N=16Mi/paired/ct_f_vs_dense", 17.5, bytes_per_param=56.0, a_ms=8.25, b_ms=9.125, ratio=1.104,
            ratio_of_sums=1.1062),
        row("N=16Mi/paired/8bit_vs_fp32_state", 24.0, bytes_per_param=56.0, a_ms=8.0, b_ms=16.0, ratio=1.9,
            ratio_of_sums=2.0),
    ]
    context = {"num_cpus": 2, "childtune_cpu_isa": "avx2"}
    (tmp_path / "step.json").write_text(json.dumps({"context": context, "benchmarks": benchmarks}))
    p = subprocess.run([sys.executable, str(REPORT), str(tmp_path), "--img", str(tmp_path / "img")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "- **Kernels**: childtune's avx2 kernels (`childtune::cpu_kernel_isa()`" in p.stdout
    assert "### Ratios timed in pairs" in p.stdout
    assert "| N = 16 Mi | Child-Tuning_F ÷ dense | 8.25 ms | 9.12 ms | 1.104 | 1.106 | – |" in p.stdout
    assert "| N = 16 Mi | 8-bit state ÷ fp32 state | 8.00 ms | 16.00 ms | 1.900 | 2.000 | – |" in p.stdout
    # The paired rows stay out of the per-method step table.
    step_rows = [line for line in p.stdout.splitlines() if line.startswith("| `")]
    assert not any("paired/" in line for line in step_rows)
    assert any(line.startswith("| `childtune/ct_f` |") for line in step_rows)
