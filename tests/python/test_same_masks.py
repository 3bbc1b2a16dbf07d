"""The Python optimizer's Child-Tuning_F masks are the C++ optimizer's: for the
same seed, steps and parameter names, a C++ program (reference_mask.cpp, built
here from the library's headers with the C++ compiler, no torch) and the Python
package move exactly the same elements."""
import os
import shutil
import subprocess

import pytest
import torch

import childtune
from conftest import HERE, ROOT

SIZES = (1000, 77, 64, 3)


@pytest.fixture(scope="module")
def reference_program(tmp_path_factory):
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.fail("no C++ compiler (set CXX) to build the C++ reference program")
    out = tmp_path_factory.mktemp("reference") / "reference_mask"
    subprocess.run([cxx, "-std=c++20", "-O1", "-fopenmp", "-I", os.path.join(ROOT, "include"),
                    os.path.join(HERE, "reference_mask.cpp"), "-o", str(out)], check=True)
    return str(out)


def cpp_masks(program, p, seed, steps):
    lines = subprocess.run([program, repr(p), str(seed), str(steps)] + [str(n) for n in SIZES],
                           check=True, capture_output=True, text=True).stdout.split()
    assert len(lines) == steps * len(SIZES)
    return [[torch.tensor([c == "1" for c in lines[s * len(SIZES) + t]]) for t in range(len(SIZES))]
            for s in range(steps)]


def python_masks(p, seed, steps, optimizer=childtune.ChildTuningSGD, **kw):
    params = [torch.zeros(n, requires_grad=True) for n in SIZES]
    opt = optimizer(params, lr=1.0, reserve_p=p, mode="ChildTuning-F", seed=seed, **kw)
    out = []
    for _ in range(steps):
        before = [w.detach().clone() for w in params]
        for w in params:
            w.grad = torch.ones_like(w)
        opt.step()
        out.append([w.detach() != b for w, b in zip(params, before)])
    return out


@pytest.mark.parametrize("p,seed", [(0.3, 1234), (0.5, 0), (0.1, 2**63 + 5)])
def test_child_tuning_f_masks_equal_the_cpp_optimizers(reference_program, p, seed):
    expected = cpp_masks(reference_program, p, seed, 3)
    got = python_masks(p, seed, 3)
    for s in range(3):
        for t in range(len(SIZES)):
            assert torch.equal(got[s][t], expected[s][t]), f"step {s + 1}, tensor {t}"
    # and the check can fail: another seed gives other masks
    other = python_masks(p, seed + 1, 1)
    assert not torch.equal(other[0][0], expected[0][0])


def test_adamw_uses_the_same_masks(reference_program):
    # betas (0, 0): no momentum, so an element moves exactly when its gradient is kept
    expected = cpp_masks(reference_program, 0.3, 77, 2)
    got = python_masks(0.3, 77, 2, optimizer=childtune.ChildTuningAdamW, betas=(0.0, 0.0))
    for s in range(2):
        for t in range(len(SIZES)):
            assert torch.equal(got[s][t], expected[s][t])


def test_named_parameters_key_the_masks_as_in_cpp(reference_program):
    # parameters given as model.named_parameters() pairs are keyed by their names,
    # as a C++ optimizer built from named parameters keys them
    names = ["encoder.layer.0.weight", "encoder.layer.0.bias", "classifier.weight", "x"]
    lines = subprocess.run([reference_program, "0.3", "5", "2"] + [f"{n}:{s}" for n, s in zip(names, SIZES)],
                           check=True, capture_output=True, text=True).stdout.split()
    expected = [[torch.tensor([c == "1" for c in lines[s * len(SIZES) + t]]) for t in range(len(SIZES))] for s in range(2)]
    params = [torch.zeros(n, requires_grad=True) for n in SIZES]
    # reversed order: the masks follow the names, not the positions
    opt = childtune.ChildTuningSGD(list(reversed(list(zip(names, params)))), lr=1.0, reserve_p=0.3,
                                   mode="ChildTuning-F", seed=5)
    assert opt.param_groups[0]["param_names"] == list(reversed(names))
    for s in range(2):
        before = [w.detach().clone() for w in params]
        for w in params:
            w.grad = torch.ones_like(w)
        opt.step()
        for t, (w, b) in enumerate(zip(params, before)):
            assert torch.equal(w.detach() != b, expected[s][t]), f"step {s + 1}, {names[t]}"
    with pytest.raises(ValueError, match="twice"):
        childtune.ChildTuningSGD([("a", params[0]), ("a", params[1])], lr=1.0)
