"""Smoke test of bench_step.py: a --smoke run (tiny shapes) exits 0, checks that
childtune's steps equal the published step and torch's AdamW, and prints a row
per method and the speedup table. Never a judgement of speed."""

import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parent / "bench_step.py"
METHODS = ("childtune/dense", "childtune/ct_f", "childtune/ct_d", "published/dense", "published/ct_f",
           "published/ct_d", "torch/adamw_foreach", "torch/adamw_for_loop")


def test_smoke():
    p = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("verified on ") == 4  # 2 shapes x (CT_D vs published, dense vs torch)
    for method in METHODS:
        assert p.stdout.count("| `%s` |" % method) == 2, method
    assert "## Speedup of childtune" in p.stdout
    assert p.stdout.count("×") == 2 * 2 * 7  # 2 shapes x (wall, CPU) x 7 ratios


def test_unknown_method_is_an_error():
    p = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--methods", "childtune/ct_x"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    assert "unknown method(s) childtune/ct_x" in p.stderr
