"""The CHILDTUNE_MAX_AES cap on mask definition 4's AES instructions, each in a
fresh interpreter: the cap is read once per process. Every path draws the same
masks, so the probe compares a Child-Tuning_F step's kept elements."""
from fresh_process import run_probe

PROBE = """
import torch, childtune
w = torch.nn.Parameter(torch.zeros(4096 + 77))
try:
    opt = childtune.ChildTuningAdamW([w], lr=0.1, reserve_p=0.3, mode="ChildTuning-F", seed=7, weight_decay=0.0)
except ValueError as e:
    print("error:", e)
else:
    w.grad = torch.ones_like(w)
    opt.step()
    print("".join("1" if x != 0 else "0" for x in w.detach().tolist()))
"""


def probe(cap):
    return run_probe(PROBE, "CHILDTUNE_MAX_AES", cap)


def test_every_aes_path_keeps_the_same_elements():
    uncapped = probe(None)
    assert set(uncapped) == {"0", "1"}  # some kept, some not
    for cap in ("software", "AESNI", "vaes", ""):
        assert probe(cap) == uncapped, cap


def test_bad_input_a_malformed_cap_fails_the_optimizer_with_the_value():
    assert probe("aes-ni") == ("error: childtune: CHILDTUNE_MAX_AES = 'aes-ni' is not an AES path: "
                               "use software, aesni or vaes")
