"""8-bit optimizer state from Python (``state='8bit'``): the bytes it holds, the
first step equal to fp32 state's, a bounded divergence after it, a bit-identical
resume through state_dict, and clear errors for what it cannot do. The codec and
the step are checked bit for bit in C++ (tests/exec/quantised_state.cpp,
tests/adapters/torch.cpp); these tests check what the Python package adds."""
import pytest
import torch

import childtune

SHAPES = ((300, 7), (19,), (5, 3, 40))  # 2100, 19 and 600 elements: full and ragged blocks of 256


def make_params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]


def run(opt, params, steps, first=0):
    for s in range(first, first + steps):
        gen = torch.Generator().manual_seed(500 + s)
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()


def blockwise8_bytes(n):
    """Codes padded to 4 bytes, then a float scale per 256 elements (numeric/blockwise8.hpp)."""
    return (n + 3) // 4 * 4 + 4 * ((n + 255) // 256)


def test_8bit_state_holds_two_bytes_per_parameter_and_fp32_holds_eight():
    a, b = make_params(), make_params()
    eight, fp32 = childtune.ChildTuningAdamW(a, lr=1e-2, state="8bit"), childtune.ChildTuningAdamW(b, lr=1e-2)
    run(eight, a, 1)
    run(fp32, b, 1)
    sizes = [p.numel() for p in a]
    assert eight.state_bytes() == sum(2 * blockwise8_bytes(n) for n in sizes)
    assert fp32.state_bytes() == 8 * sum(sizes)
    assert eight.state_bytes() / sum(sizes) < 2.1


@pytest.mark.parametrize("mode", [None, "ChildTuning-F"])
def test_first_step_equals_fp32_state_and_later_steps_stay_close(mode):
    a, b = make_params(), make_params()
    kw = dict(lr=1e-2, weight_decay=0.01, reserve_p=0.4, mode=mode, seed=5)
    eight, fp32 = childtune.ChildTuningAdamW(a, state="8bit", **kw), childtune.ChildTuningAdamW(b, **kw)
    # From zero state the first step uses the moments before they are encoded.
    run(eight, a, 1)
    run(fp32, b, 1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    run(eight, a, 29, first=1)
    run(fp32, b, 29, first=1)
    # Then the moments are quantised and the parameters move apart, by a small
    # fraction of how far fp32 state moved them: |p8 - p32| / |p32 - p0| within
    # the C++ trajectory tests' AdamW bound of 0.05 (tests/exec/quantised_state.cpp
    # derives it from the dynamic map's step).
    assert not all(torch.equal(x, y) for x, y in zip(a, b))
    start = make_params()
    apart = torch.sqrt(sum(((x - y).double() ** 2).sum() for x, y in zip(a, b))).item()
    travelled = torch.sqrt(sum(((y - x0).double() ** 2).sum() for y, x0 in zip(b, start))).item()
    assert travelled > 0.5, travelled
    assert apart <= 0.05 * travelled, (apart, travelled)


def test_state_dict_resumes_bit_identically_into_an_optimizer_built_for_fp32():
    straight, resumed = make_params(), make_params()
    kw = dict(lr=1e-2, reserve_p=0.3, mode="ChildTuning-F", seed=9)
    a = childtune.ChildTuningAdamW(straight, state="8bit", **kw)
    run(a, straight, 6)
    first = childtune.ChildTuningAdamW(resumed, state="8bit", **kw)
    run(first, resumed, 3)
    saved = first.state_dict()
    second = childtune.ChildTuningAdamW(resumed, **kw)  # a new process's optimizer: fp32 by default
    second.load_state_dict(saved)
    assert second.state_bytes() == first.state_bytes()  # the file's 8-bit state is kept
    run(second, resumed, 3, first=3)
    assert all(torch.equal(x, y) for x, y in zip(straight, resumed))


@pytest.mark.parametrize("cls, kw, buffers", [
    (childtune.ChildTuningAdam, {}, 2),
    (childtune.ChildTuningSGD, {"lr": 1e-2, "momentum": 0.9}, 1),
    (childtune.ChildTuningLion, {}, 1),
    (childtune.ChildTuningLAMB, {}, 2),
])
def test_every_optimizer_takes_8bit_state(cls, kw, buffers):
    params = make_params()
    opt = cls(params, state="8bit", **kw)
    run(opt, params, 2)
    assert opt.state_bytes() == sum(buffers * blockwise8_bytes(p.numel()) for p in params)
    assert all(torch.isfinite(p).all() for p in params)


def test_bad_state_values_are_errors_naming_the_value():
    with pytest.raises(ValueError, match=r"state must be 'fp32' or '8bit', not '4bit'"):
        childtune.ChildTuningAdamW(make_params(), state="4bit")
    with pytest.raises(TypeError, match=r"state must be 'fp32' or '8bit', not 8"):
        childtune.ChildTuningAdamW(make_params(), state=8)


def test_the_aten_path_refuses_8bit_state_and_the_optimizer_still_steps():
    params = make_params()
    opt = childtune.ChildTuningAdamW(params, lr=1e-2, state="8bit")
    with pytest.raises(ValueError, match=r"8-bit blockwise state \(state_storage::blockwise8\) is kept for CPU "
                                         r"tensors on the fused path only"):
        opt.force_aten_path(True)
    assert opt.step_paths() and set(opt.step_paths().values()) == {"cpu"}
    run(opt, params, 1)
    assert opt.state_bytes() == sum(2 * blockwise8_bytes(p.numel()) for p in params)
