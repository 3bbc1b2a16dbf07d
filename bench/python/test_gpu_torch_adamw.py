"""Smoke test of gpu_torch_adamw.py on the CPU (CI has no GPU): a tiny run exits 0,
writes the probe and every case it can run on this torch, with finite results and
x_copy computed against the probe; bad arguments are refused. Never a judgement of speed."""

import json
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parent / "gpu_torch_adamw.py"


def test_cpu_smoke_run(tmp_path):
    out = tmp_path / "torch_adamw.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--n", "4096", "--repeats", "2", "--json",
                        str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.loads(out.read_text())
    assert data["device"] == "cpu" and data["n"] == 4096 and data["repeats"] == 2
    rows = {r["name"]: r for r in data["results"]}
    assert rows["copy/device_to_device"]["x_copy"] == 1.0
    assert "torch/adamw_foreach/fp32" in rows
    skipped = [name for name in ("torch/adamw_fused/fp32", "published/ct_f/fp32", "torch/adamw_fused/bf16")
               if name not in rows]
    for name in skipped:  # only where this torch has no fused CPU AdamW, and then said so
        assert f"{name}: skipped" in p.stdout
    try:  # the package's rows, wherever the package is importable (it is in the README's test run)
        import childtune  # noqa: F401
        assert {"package/adamw/fp32/dense", "package/adamw/fp32/ct_f"} <= rows.keys()
    except ImportError:
        assert "package/*: skipped" in p.stdout
    copy = rows["copy/device_to_device"]["GB/s"]
    for r in data["results"]:
        assert r["finite"] and r["ms"] > 0
        assert abs(r["x_copy"] - r["GB/s"] / copy) < 1e-9
        assert abs(r["GB/s"] - r["bytes_per_element"] * 4096 / (r["ms"] / 1e3) / 1e9) < 1e-6 * r["GB/s"]


def test_bad_arguments_are_refused():
    p = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--n", "0"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode != 0
    assert "--n and --repeats must be positive (got 0, 20)" in p.stderr
