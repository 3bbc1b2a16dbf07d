"""Tests of the Python Fashion-MNIST demo (fashion_mnist.py): its random streams
against the C++ demo's, and the shape of a --smoke run (exit codes, table, CSV),
never its accuracy. Run with the interpreter of scripts/python-env.sh."""

import csv
import importlib.util
import pathlib
import re
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
SCRIPT = HERE / "fashion_mnist.py"
METHODS = ("vanilla AdamW", "Child-Tuning_F", "Child-Tuning_D")


def load_demo():
    spec = importlib.util.spec_from_file_location("fashion_mnist_demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def test_mt19937_64_known_answer():
    # The C++ standard fixes it: the 10000th output of a default-constructed
    # std::mt19937_64 (seed 5489) is 9981545732273789042.
    g = load_demo().MT19937_64(5489)
    for _ in range(9999):
        g()
    assert g() == 9981545732273789042


def test_shuffle_is_the_cpp_demos():
    # Printed by the C++ demo's rng (std::mt19937_64(1000), its below() and
    # Fisher-Yates) shuffling 0..19: the first class's draw of K-shot seed 0.
    r = load_demo().Rng(1000)
    v = list(range(20))
    r.shuffle(v)
    assert v == [11, 5, 15, 4, 13, 0, 12, 19, 8, 16, 17, 10, 3, 9, 1, 6, 7, 14, 18, 2]


def test_smoke_run(tmp_path):
    out = tmp_path / "out"
    p = run("--smoke", "--out", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"test accuracy \(%\) +vs vanilla \(paired\)", p.stdout)
    assert re.search(r"time: pretraining [0-9.]+ s", p.stdout)
    for method in METHODS:
        assert re.search("\n%s +[-0-9.]+ +[0-9.]+ \\+- [0-9.]+" % re.escape(method), p.stdout), method
    rows = list(csv.reader(open(out / "fashion_mnist_results.csv")))
    assert rows[0] == ["seed", "method", "p", "test_accuracy", "train_loss", "seconds"]
    assert sorted((r[1], r[0]) for r in rows[1:]) == sorted((m, s) for m in METHODS for s in ("0", "1"))
    for r in rows[1:]:
        assert 0 <= float(r[3]) <= 1 and float(r[4]) >= 0 and float(r[5]) > 0, r
    # The second run reads the pretrained weights from the cache.
    p = run("--smoke", "--out", str(out), "--seeds", "1", "--epochs", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "pretraining skipped" in p.stdout


def test_missing_data_exits_2_and_names_the_package(tmp_path):
    p = run("--smoke", "--data", str(tmp_path / "no-such-dir"), "--out", str(tmp_path / "out"))
    assert p.returncode == 2
    assert "apt-get install dataset-fashion-mnist" in p.stderr


def test_bad_flag_exits_64_with_the_value(tmp_path):
    p = run("--pF", "0", "--out", str(tmp_path))
    assert p.returncode == 64
    assert "--pF and --pD must be in (0, 1], not 0 and 0.3" in p.stderr
