"""childtune.cpu_kernel_isa and the CHILDTUNE_MAX_ISA cap, each in a fresh
interpreter: the cap is read once per process."""
import pytest

import childtune
from fresh_process import run_probe

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
    return run_probe(PROBE, "CHILDTUNE_MAX_ISA", cap)


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
