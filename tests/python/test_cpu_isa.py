"""childtune.cpu_kernel_isa and the CHILDTUNE_MAX_ISA cap, each in a fresh
interpreter: the cap is read once per process."""
import os
import subprocess
import sys

import pytest

import childtune

PROBE = """
import torch, childtune
try:
    opt = childtune.ChildTuningAdamW([torch.nn.Parameter(torch.ones(3))], lr=0.1)
except ValueError as e:
    print("error:", e)
else:
    print(childtune.cpu_kernel_isa())
"""


def probe(cap):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop("CHILDTUNE_MAX_ISA", None)
    if cap is not None:
        env["CHILDTUNE_MAX_ISA"] = cap
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_names_the_kernels_of_this_process():
    assert childtune.cpu_kernel_isa() in ("scalar", "sse2", "avx2", "avx512")


def test_the_environment_caps_the_kernels():
    widest = probe(None)
    order = ["scalar", "sse2", "avx2", "avx512"]
    assert widest in order
    if order.index(widest) < order.index("sse2"):
        pytest.skip("no SSE2 kernels on this machine")
    assert probe("sse2") == "sse2"
    assert probe("AVX2") == min("avx2", widest, key=order.index)
    assert probe("avx512") == widest  # a cap above the CPU: its widest
    assert probe("") == widest  # empty: unset


def test_bad_input_a_malformed_cap_fails_the_optimizer_with_the_value():
    assert probe("avx3") == ("error: childtune: CHILDTUNE_MAX_ISA = 'avx3' is not an instruction set: "
                             "use scalar, sse2, avx2 or avx512 (or 0-3)")
