"""childtune.Magnitude (SIFT) and childtune.RefreshedFisher (DPS) from Python:
step by step against a naive transcription of each schedule (masks chosen here
by sorting, then the published AdamW step on the masked gradients), resumed
mid-window through state_dict, the summary and kept fractions, and bad input."""
import math

import pytest
import torch

import childtune
import published

SHAPES = ((13, 11), (29,), (4, 5, 3))


def make_params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]


def clone(params):
    return [p.detach().clone().requires_grad_() for p in params]


def grads_for(params, step, ties=False):
    gen = torch.Generator().manual_seed(1000 + step)
    out = []
    for p in params:
        g = torch.randn(p.shape, generator=gen)
        out.append(torch.round(g * 4) / 4 if ties else g)   # few magnitudes: many ties
    return out


def top_exact(score, p):
    """The top round(p·n) of `score` (a float tensor), ties by index: a stable sort."""
    flat = score.reshape(-1)
    keep = math.floor(p * flat.numel() + 0.5)         # std::round: halves away from zero
    order = torch.sort(flat, descending=True, stable=True).indices[:keep]
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order] = True
    return mask.reshape(score.shape)


def reference_run(params, steps, masks_for, lr=1e-2, ties=False):
    """The published AdamW (legacy), each step's gradient multiplied by
    masks_for(step, grads) (None: dense)."""
    ref = published.ChildTuningAdamW(params, lr=lr, eps=1e-6, weight_decay=0.01, mode="ChildTuning-D")
    for s in range(steps):
        grads = grads_for(params, s, ties)
        for p, g in zip(params, grads):
            p.grad = g.clone()
        masks = masks_for(s, grads)
        ref.set_gradient_mask({} if masks is None else {p: m.to(p.dtype) for p, m in zip(params, masks)})
        ref.step()


def run(opt, params, steps, first=0, ties=False):
    for s in range(first, first + steps):
        for p, g in zip(params, grads_for(params, s, ties)):
            p.grad = g.clone()
        opt.step()


def assert_close(ours, ref):
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("ties", [False, True])
def test_magnitude_fresh_every_step_matches_a_sort(ties):
    a = make_params()
    b = clone(a)
    opt = childtune.ChildTuningAdamW(a, lr=1e-2, weight_decay=0.01, mask=childtune.Magnitude(0.3))
    run(opt, a, 5, ties=ties)
    reference_run(b, 5, lambda s, grads: [top_exact(g.abs(), 0.3) for g in grads], ties=ties)
    assert_close(a, b)


def test_magnitude_window_fixes_the_mask_of_the_summed_magnitudes():
    window, p = 3, 0.25
    a = make_params(1)
    b = clone(a)
    opt = childtune.ChildTuningAdamW(a, lr=1e-2, weight_decay=0.01, mask=childtune.Magnitude(p, window=window))
    run(opt, a, 7)
    sums, fixed = None, None

    def masks_for(s, grads):
        nonlocal sums, fixed
        if fixed is not None:
            return fixed
        sums = [g.abs() for g in grads] if sums is None else [x + g.abs() for x, g in zip(sums, grads)]
        if s == window - 1:
            fixed = [top_exact(x, p) for x in sums]
            return fixed
        return None                     # dense while the window fills

    reference_run(b, 7, masks_for)
    assert_close(a, b)


def refreshed_reference(p, warmup, period, dense_steps):
    """The DPS schedule of childtune.RefreshedFisher, transcribed."""
    state = {"scores": None, "mask": None}

    def masks_for(c, grads):
        sq = [g * g for g in grads]
        state["scores"] = sq if state["scores"] is None else [x + y for x, y in zip(state["scores"], sq)]
        if c < warmup:
            return None
        phase = (c - warmup) % period
        if phase == 0:
            state["mask"] = [top_exact(x, p) for x in state["scores"]]
            state["scores"] = [torch.zeros_like(x) for x in state["scores"]]
        return state["mask"] if phase < period - dense_steps else None

    return masks_for


def test_refreshed_fisher_follows_the_schedule_step_by_step():
    policy = childtune.RefreshedFisher(0.4, period=3, warmup=2, dense_steps=1)
    a = make_params(2)
    b = clone(a)
    opt = childtune.ChildTuningAdamW(a, lr=1e-2, weight_decay=0.01, mask=policy)
    run(opt, a, 10)
    reference_run(b, 10, refreshed_reference(0.4, 2, 3, 1))
    assert_close(a, b)


@pytest.mark.parametrize("policy", [childtune.Magnitude(0.3, window=4),
                                    childtune.RefreshedFisher(0.3, period=4, warmup=1, dense_steps=1)])
def test_a_policy_resumes_mid_window_bit_identically(policy):
    a = make_params(3)
    opt = childtune.ChildTuningAdamW(a, lr=1e-2, mask=policy)
    run(opt, a, 3)                                   # inside the window / period
    checkpoint = opt.state_dict()
    b = clone(a)
    run(opt, a, 6, first=3)

    resumed = childtune.ChildTuningAdamW(b, lr=1e-2)
    resumed.load_state_dict(checkpoint)
    assert resumed.mask == policy
    run(resumed, b, 6, first=3)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_summary_and_kept_fraction_report_the_last_step():
    a = make_params(4)
    opt = childtune.ChildTuningAdamW([{"params": a[:2]}, {"params": a[2:], "masked": False}], lr=1e-2,
                                     mask=childtune.Magnitude(0.25))
    assert opt.kept_fraction() == {0: None, 1: None}
    run(opt, a, 1)
    elements = a[0].numel() + a[1].numel()
    kept = round(0.25 * a[0].numel()) + round(0.25 * a[1].numel())
    assert opt.kept_fraction() == {0: pytest.approx(kept / elements), 1: 1.0}
    text = opt.summary()
    assert "param_group0" in text and "masked" in text and f"kept {kept}" in text
    assert opt.mask_overlap() is None                 # not a refreshed mask


def test_mask_overlap_of_consecutive_refreshed_masks():
    a = make_params(5)
    opt = childtune.ChildTuningAdamW(a, lr=1e-2, mask=childtune.RefreshedFisher(0.5, period=2))
    reference = refreshed_reference(0.5, 0, 2, 0)
    masks = []
    for s in range(3):                                # reselections at steps 0 and 2
        grads = grads_for(a, s)
        for p, g in zip(a, grads):
            p.grad = g.clone()
        opt.step()
        got = reference(s, grads)
        if s % 2 == 0:
            masks.append(got)
    overlap = opt.mask_overlap()
    assert list(overlap) == [f"param_group0.{i}" for i in range(len(a))]
    expected = [float((x & y).sum()) / float(y.sum()) for x, y in zip(masks[0], masks[1])]
    assert list(overlap.values()) == pytest.approx(expected)


def test_per_group_ratios():
    a = make_params(6)
    b = clone(a)
    opt = childtune.ChildTuningAdamW([{"params": a[:1]}, {"params": a[1:]}], lr=1e-2, weight_decay=0.01,
                                     mask=childtune.Magnitude([0.2, 0.6]))
    run(opt, a, 3)
    ps = [0.2, 0.6, 0.6]
    reference_run(b, 3, lambda s, grads: [top_exact(g.abs(), p) for g, p in zip(grads, ps)])
    assert_close(a, b)


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make,error,text", [
    (lambda: childtune.Magnitude(0.0), ValueError, "p = 0.0 is outside (0, 1]"),
    (lambda: childtune.Magnitude(1.5), ValueError, "p = 1.5 is outside (0, 1]"),
    (lambda: childtune.Magnitude([0.5, float("nan")]), ValueError, "p[1] = nan is outside (0, 1]"),
    (lambda: childtune.Magnitude("0.3"), TypeError, "p must be a real number"),
    (lambda: childtune.Magnitude(0.3, window=-1), ValueError, "window = -1"),
    (lambda: childtune.Magnitude(0.3, scope="layer"), ValueError, "scope must be one of"),
    (lambda: childtune.Magnitude(0.3, rule="median"), ValueError, "rule must be one of"),
    (lambda: childtune.RefreshedFisher(0.3, period=0), ValueError, "period = 0"),
    (lambda: childtune.RefreshedFisher(0.3, period=4, dense_steps=4), ValueError, "dense_steps = 4 is not below period = 4"),
])
def test_bad_policies_are_refused_by_name(make, error, text):
    with pytest.raises(error, match=None) as info:
        make()
    assert text in str(info.value)


def test_a_rejected_mask_changes_nothing():
    a = make_params(7)
    opt = childtune.ChildTuningAdamW(a, lr=1e-2, mask=childtune.Magnitude(0.3, window=3))
    run(opt, a, 2)
    before = opt.state_dict()["childtune"]["state"].clone()
    with pytest.raises(ValueError, match="p has 2 values for 1 parameter groups"):
        opt.set_mask(childtune.Magnitude([0.3, 0.4]))
    with pytest.raises(ValueError, match="are alternatives"):
        childtune.ChildTuningAdamW(clone(a), reserve_p=0.3, mode="ChildTuning-F", mask=childtune.Magnitude(0.3))
    with pytest.raises(TypeError, match="mask must be None"):
        opt.set_mask("sift")
    assert opt.mask == childtune.Magnitude(0.3, window=3)
    assert torch.equal(opt.state_dict()["childtune"]["state"], before)


def test_a_checkpoint_that_does_not_fit_changes_nothing():
    a = make_params(8)
    twin = clone(a)
    opt = childtune.ChildTuningAdamW(a, lr=1e-2, mask=childtune.Magnitude(0.3, window=3))
    ref = childtune.ChildTuningAdamW(twin, lr=1e-2, mask=childtune.Magnitude(0.3, window=3))
    run(opt, a, 2)
    run(ref, twin, 2)
    # another model's checkpoint: as many tensors (torch's own check passes), other sizes
    other = [torch.zeros(n, requires_grad=True) for n in (7, 8, 9)]
    foreign = childtune.ChildTuningAdamW(other, lr=1e-2, mask=childtune.RefreshedFisher(0.5, period=2))
    run(foreign, other, 1)
    before = opt.state_dict()["childtune"]["state"].clone()
    with pytest.raises(ValueError, match="param_group0"):
        opt.load_state_dict(foreign.state_dict())
    assert opt.mask == childtune.Magnitude(0.3, window=3)
    assert torch.equal(opt.state_dict()["childtune"]["state"], before)
    run(opt, a, 3, first=2)                                 # the window completes as if nothing happened
    run(ref, twin, 3, first=2)
    for x, y in zip(a, twin):
        assert torch.equal(x, y)
