"""childtune's Python optimizers against torch's and against the published
Child-Tuning class (published.py, transcribed op for op)."""
import io

import pytest
import torch

import childtune
import published


def make_params(dtype=torch.float32, seed=0, shapes=((37, 19), (19,), (5, 3, 4))):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype).requires_grad_() for s in shapes]


def clone(params):
    return [p.detach().clone().requires_grad_() for p in params]


def grads_for(params, step, seed=100):
    gen = torch.Generator().manual_seed(seed + step)
    return [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) for p in params]


def run(opt, params, steps, first=0, before_step=None):
    for s in range(first, first + steps):
        for p, g in zip(params, grads_for(params, s)):
            p.grad = g.clone()
        if before_step:
            before_step(s)
        opt.step()


def snapshot(opt, params):
    return ([p.detach().clone() for p in params], opt.step_count, opt.state_dict()["childtune"]["state"].clone(),
            [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])


def assert_unchanged(opt, params, snap):
    now = snapshot(opt, params)
    for a, b in zip(snap[0], now[0]):
        assert torch.equal(a, b)
    assert snap[1] == now[1]
    assert torch.equal(snap[2], now[2])
    assert snap[3] == now[3]


# ---- against torch.optim ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-13)])
def test_torch_flavour_matches_torch_adamw(dtype, tol):
    a, b = make_params(dtype), make_params(dtype)
    ours = childtune.ChildTuningAdamW(a, lr=1e-2, eps=1e-8, weight_decay=0.05, flavour="torch")
    ref = torch.optim.AdamW(b, lr=1e-2, eps=1e-8, weight_decay=0.05, foreach=False)
    run(ours, a, 5)
    run(ref, b, 5)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=tol, atol=tol)
    assert ours.step_count == 5


def test_adam_and_sgd_match_torch():
    a, b = make_params(), make_params()
    run(childtune.ChildTuningAdam(a, lr=1e-2, weight_decay=0.1), a, 4)
    run(torch.optim.Adam(b, lr=1e-2, weight_decay=0.1, foreach=False), b, 4)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6)
    a, b = make_params(), make_params()
    run(childtune.ChildTuningSGD(a, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), a, 4)
    run(torch.optim.SGD(b, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, foreach=False), b, 4)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6)


def test_lion_matches_its_published_rule():
    # Lion (Chen et al. 2023, Algorithm 2), written out here.
    a, b = make_params(), make_params()
    lr, b1, b2, wd = 1e-3, 0.9, 0.99, 0.1
    run(childtune.ChildTuningLion(a, lr=lr, betas=(b1, b2), weight_decay=wd), a, 4)
    m = [torch.zeros_like(p) for p in b]
    for s in range(4):
        with torch.no_grad():
            for p, g, mi in zip(b, grads_for(b, s), m):
                update = (b1 * mi + (1 - b1) * g).sign()
                p.mul_(1 - lr * wd).add_(update, alpha=-lr)
                mi.mul_(b2).add_(g, alpha=1 - b2)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6)


def test_lamb_steps_and_resumes():
    a = make_params()
    opt = childtune.ChildTuningLAMB(a, lr=1e-2, reserve_p=0.5, mode="ChildTuning-F", seed=3)
    before = [p.detach().clone() for p in a]
    run(opt, a, 2)
    assert all(not torch.equal(x, y) for x, y in zip(before, a))
    b = clone(a)
    other = childtune.ChildTuningLAMB(b, lr=1e-2)
    other.load_state_dict(opt.state_dict())
    run(opt, a, 2, first=2)
    run(other, b, 2, first=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# ---- against the published class ----------------------------------------------------------------

def test_legacy_dense_matches_published():
    a, b = make_params(), make_params()
    kw = dict(lr=1e-2, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    run(childtune.ChildTuningAdamW(a, **kw), a, 6)
    run(published.ChildTuningAdamW(b, **kw), b, 6)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=2e-6, atol=1e-7)


def test_legacy_without_bias_correction_matches_published():
    a, b = make_params(), make_params()
    kw = dict(lr=1e-2, weight_decay=0.1, correct_bias=False)
    run(childtune.ChildTuningAdamW(a, **kw), a, 3)
    run(published.ChildTuningAdamW(b, **kw), b, 3)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=2e-6, atol=1e-7)


def test_child_tuning_d_matches_published_with_a_given_mask():
    a, b = make_params(), make_params()
    gen = torch.Generator().manual_seed(5)
    masks_b = {b[0]: torch.rand(b[0].shape, generator=gen) < 0.3, b[2]: (torch.rand(b[2].shape, generator=gen) < 0.5).float()}
    masks_a = {a[0]: masks_b[b[0]].clone(), a[2]: masks_b[b[2]].clone()}   # b[1]/a[1] left out: dense
    kw = dict(lr=1e-2, weight_decay=0.01, mode="ChildTuning-D")
    ours, ref = childtune.ChildTuningAdamW(a, **kw), published.ChildTuningAdamW(b, **kw)
    ours.set_gradient_mask(masks_a)
    ref.set_gradient_mask(masks_b)
    start = a[0].detach().clone()
    run(ours, a, 5)
    run(ref, b, 5)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=2e-6, atol=1e-7)
    # masked entries moved by weight decay only: p * (1 - lr*wd)^5
    frozen = ~masks_b[b[0]]
    torch.testing.assert_close(a[0][frozen], (start * (1 - 1e-4) ** 5)[frozen], rtol=1e-6, atol=0)


def test_child_tuning_f_statistics_against_published():
    # betas (0, 0), eps 1, no bias correction, lr 1, gradient 1: a kept element
    # moves by -(1/p) / (1/p + 1) = -1/(1+p) (the 1/p scaling), a dropped one not at all.
    p_keep, n = 0.3, 200_000
    kw = dict(lr=1.0, betas=(0.0, 0.0), eps=1.0, correct_bias=False, reserve_p=p_keep, mode="ChildTuning-F")
    kept = {}
    for name, cls, extra in (("childtune", childtune.ChildTuningAdamW, {"seed": 11}), ("published", published.ChildTuningAdamW, {})):
        torch.manual_seed(0)
        w = torch.zeros(n, requires_grad=True)
        opt = cls([w], **kw, **extra)
        steps = []
        for _ in range(2):
            before = w.detach().clone()
            w.grad = torch.ones(n)
            opt.step()
            delta = w.detach() - before
            moved = delta != 0
            # childtune's Bernoulli definition 4 (the default) keeps with p itself (to
            # 2^-32) and scales by 1 / p, as the published class (mask/bernoulli.hpp).
            p_scale = p_keep
            torch.testing.assert_close(delta[moved], torch.full((int(moved.sum()),), -1 / (1 + p_scale)), rtol=1e-6, atol=0)
            frac = moved.double().mean().item()
            assert abs(frac - p_keep) < 5 * (p_keep * (1 - p_keep) / n) ** 0.5, (name, frac)
            steps.append(moved)
        # a fresh mask each step: the overlap of two steps is about p^2, not p
        overlap = (steps[0] & steps[1]).double().mean().item()
        assert abs(overlap - p_keep ** 2) < 0.01, (name, overlap)
        kept[name] = steps
    assert not torch.equal(kept["childtune"][0], kept["published"][0])


def test_masked_false_group_trains_densely_under_child_tuning_f():
    a, b = make_params(), make_params()
    ours = childtune.ChildTuningAdamW([{"params": a[:2]}, {"params": a[2:], "masked": False, "lr": 3e-2}],
                                      lr=1e-2, reserve_p=0.2, mode="ChildTuning-F")
    ref = published.ChildTuningAdamW([{"params": b[2:], "lr": 3e-2}], lr=1e-2)
    run(ours, a, 3)
    for s in range(3):
        b[2].grad = grads_for(a, s)[2].clone()
        ref.step()
    torch.testing.assert_close(a[2], b[2], rtol=2e-6, atol=1e-7)


# ---- torch's machinery: schedulers, clipping, param groups, checkpoints ------------------------

def test_scheduler_changes_reach_the_step():
    a, b = make_params(), make_params()
    ours = childtune.ChildTuningAdamW(a, lr=1e-2, weight_decay=0.01)
    ref = published.ChildTuningAdamW(b, lr=1e-2, weight_decay=0.01)
    s1 = torch.optim.lr_scheduler.StepLR(ours, step_size=1, gamma=0.5)
    s2 = torch.optim.lr_scheduler.StepLR(ref, step_size=1, gamma=0.5)
    for s in range(4):
        for x, y, g in zip(a, b, grads_for(a, s)):
            x.grad, y.grad = g.clone(), g.clone()
        torch.nn.utils.clip_grad_norm_(a, 1.0)
        torch.nn.utils.clip_grad_norm_(b, 1.0)
        ours.step()
        ref.step()
        s1.step()
        s2.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=2e-6, atol=1e-7)
    assert ours._core.values()[0][0] == 1e-2 * 0.5 ** 3   # what the last step used


def test_param_groups_and_add_param_group():
    a, b = make_params(), make_params()
    ours = childtune.ChildTuningAdamW([{"params": a[:1], "lr": 1e-1}, {"params": a[1:2]}], lr=1e-2)
    ref = published.ChildTuningAdamW([{"params": b[:1], "lr": 1e-1}, {"params": b[1:2]}], lr=1e-2)
    ours.add_param_group({"params": a[2:], "weight_decay": 0.5})
    ref.add_param_group({"params": b[2:], "weight_decay": 0.5})
    run(ours, a, 3)
    run(ref, b, 3)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("mode", [None, "ChildTuning-F", "ChildTuning-D"])
def test_resume_is_bit_identical(mode):
    a = make_params()
    opt = childtune.ChildTuningAdamW(a, lr=1e-2, weight_decay=0.01, reserve_p=0.4, mode=mode, seed=9)
    if mode == "ChildTuning-D":
        opt.set_gradient_mask({a[0]: a[0].detach() > 0})
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    run(opt, a, 3, before_step=lambda s: None)
    sched.step()
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    b = clone(a)
    other = childtune.ChildTuningAdamW(b, lr=5.0)          # different lr and mode: the checkpoint's win
    other_sched = torch.optim.lr_scheduler.LambdaLR(other, lambda s: 1.0 / (1 + s))
    buf.seek(0)
    saved = torch.load(buf)
    other.load_state_dict(saved["opt"])
    other_sched.load_state_dict(saved["sched"])
    assert other.mode == mode and other.step_count == 3
    for x, y in ((opt, a), (other, b)):
        sch = sched if x is opt else other_sched
        for s in range(3, 6):
            for p, g in zip(y, grads_for(y, s)):
                p.grad = g.clone()
            x.step()
            sch.step()
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# ---- devices and dtypes ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_dtypes_follow_the_float_reference(dtype):
    a = make_params(dtype)
    b = [p.detach().double().requires_grad_() for p in a]
    run(childtune.ChildTuningAdamW(a, lr=1e-2, weight_decay=0.01), a, 1)
    ref = published.ChildTuningAdamW(b, lr=1e-2, weight_decay=0.01)
    for p, g in zip(b, grads_for(a, 0)):
        p.grad = g.double()
    ref.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y.to(dtype), rtol=1e-5 if dtype in (torch.float32, torch.float64) else 1e-2, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_aten_executor_gives_the_fused_bits(dtype):
    a, b = make_params(dtype), make_params(dtype)
    fused = childtune.ChildTuningAdamW(a, lr=1e-2, weight_decay=0.01, reserve_p=0.3, mode="ChildTuning-F", seed=2)
    aten = childtune.ChildTuningAdamW(b, lr=1e-2, weight_decay=0.01, reserve_p=0.3, mode="ChildTuning-F", seed=2)
    aten.force_aten_path(True)
    run(fused, a, 3)
    run(aten, b, 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert fused.step_paths() == {f"param_group0.{i}": "cpu" for i in range(3)}
    assert aten.step_paths() == {f"param_group0.{i}": "aten" for i in range(3)}


def test_results_do_not_depend_on_threads():
    a, b = make_params(shapes=((300, 500),)), make_params(shapes=((300, 500),))
    one = childtune.ChildTuningAdamW(a, reserve_p=0.3, mode="ChildTuning-F")
    many = childtune.ChildTuningAdamW(b, reserve_p=0.3, mode="ChildTuning-F")
    one.set_threads(1)
    many.set_threads(4)
    run(one, a, 2)
    run(many, b, 2)
    assert torch.equal(a[0], b[0])


# ---- bad input: an error naming the problem, nothing changed --------------------------------------

@pytest.mark.parametrize("kwargs,error,words", [
    (dict(lr=-0.1), ValueError, ["lr", "-0.1"]),
    (dict(reserve_p=0.0), ValueError, ["reserve_p", "(0, 1]"]),
    (dict(reserve_p=1.5), ValueError, ["reserve_p", "1.5"]),
    (dict(betas=(1.0, 0.999)), ValueError, ["beta1", "1"]),
    (dict(betas=(0.9, -0.1)), ValueError, ["beta2", "-0.1"]),
    (dict(betas=0.9), TypeError, ["betas"]),
    (dict(eps=-1e-8), ValueError, ["eps"]),
    (dict(lr="fast"), TypeError, ["lr", "str"]),
    (dict(mode="ChildTuning-X"), ValueError, ["mode", "ChildTuning-X"]),
    (dict(flavour="hf"), ValueError, ["flavour", "hf"]),
])
def test_bad_constructor_arguments(kwargs, error, words):
    with pytest.raises(error) as e:
        childtune.ChildTuningAdamW(make_params(), **kwargs)
    for w in words:
        assert w in str(e.value)


def test_bad_values_set_between_steps_change_nothing():
    a = make_params()
    opt = childtune.ChildTuningAdamW([{"params": a[:1]}, {"params": a[1:]}], lr=1e-2, reserve_p=0.5, mode="ChildTuning-F")
    run(opt, a, 2)
    snap = snapshot(opt, a)
    opt.param_groups[0]["lr"] = 2e-2                # a good change in group 0 ...
    opt.param_groups[1]["betas"] = (0.9, 1.5)       # ... and a bad one in group 1
    for p, g in zip(a, grads_for(a, 7)):
        p.grad = g
    with pytest.raises(ValueError, match=r"param_group1.*beta2.*1\.5"):
        opt.step()
    opt.param_groups[0]["lr"] = 1e-2
    opt.param_groups[1]["betas"] = (0.9, 0.999)
    assert_unchanged(opt, a, snap)
    opt.param_groups[0]["masked"] = False
    with pytest.raises(ValueError, match="param_group0.*masked"):
        opt.step()
    opt.param_groups[0]["masked"] = True
    assert_unchanged(opt, a, snap)


def test_mode_and_reserve_p_changed_between_steps_take_effect():
    w = torch.zeros(100_000, requires_grad=True)
    opt = childtune.ChildTuningSGD([w], lr=1.0)
    w.grad = torch.ones_like(w)
    opt.step()
    assert bool((w == -1).all())
    opt.mode, opt.reserve_p = "ChildTuning-F", 0.25     # as users of the published class may do
    before = w.detach().clone()
    opt.step()
    moved = (w.detach() != before).double().mean().item()
    assert abs(moved - 0.25) < 0.01
    snap = snapshot(opt, [w])
    opt.reserve_p = 2.0
    with pytest.raises(ValueError, match=r"reserve_p = 2\.0 is outside"):
        opt.step()
    opt.reserve_p = 0.25
    assert_unchanged(opt, [w], snap)


def test_sparse_gradient_is_rejected_and_changes_nothing():
    a = make_params()
    opt = childtune.ChildTuningAdamW(a, lr=1e-2)
    run(opt, a, 1)
    snap = snapshot(opt, a)
    for p, g in zip(a, grads_for(a, 3)):
        p.grad = g
    a[1].grad = a[1].grad.to_sparse()
    with pytest.raises(ValueError, match="param_group0.1.*sparse"):
        opt.step()
    assert_unchanged(opt, a, snap)


def test_bad_masks_are_rejected_and_change_nothing():
    a = make_params()
    opt = childtune.ChildTuningAdamW(a, lr=1e-2, mode="ChildTuning-D")
    with pytest.raises(ValueError, match="set_gradient_mask"):
        run(opt, a, 1)                               # no mask yet
    opt.set_gradient_mask({a[0]: a[0].detach() > 0})
    run(opt, a, 1)
    snap = snapshot(opt, a)
    stranger = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"shape \(3,\).*does not hold"):
        opt.set_gradient_mask({stranger: torch.ones(3)})
    with pytest.raises(ValueError, match=r"param_group0.0.*shape \(19, 37\).*\(37, 19\)"):
        opt.set_gradient_mask({a[0]: torch.ones(19, 37)})
    with pytest.raises(ValueError, match=r"param_group0.2.*element 0 is 2"):
        opt.set_gradient_mask({a[1]: torch.ones(19), a[2]: torch.full((5, 3, 4), 2.0)})
    with pytest.raises(TypeError, match="param_group0.1.*list"):
        opt.set_gradient_mask({a[1]: [1] * 19})
    with pytest.raises(TypeError, match="dict"):
        opt.set_gradient_mask([a[0]])
    assert_unchanged(opt, a, snap)


def test_bad_parameters_and_state_dicts():
    with pytest.raises(TypeError, match="param_group0.0.*int64"):
        childtune.ChildTuningAdamW([torch.zeros(3, dtype=torch.int64)])
    with pytest.raises(ValueError, match="param_group0.0.*not contiguous"):
        childtune.ChildTuningAdamW([torch.zeros(4, 3).t().requires_grad_()])
    a = make_params()
    opt = childtune.ChildTuningAdamW(a)
    run(opt, a, 1)
    snap = snapshot(opt, a)
    with pytest.raises(ValueError, match="childtune"):
        opt.load_state_dict(torch.optim.AdamW(clone(a)).state_dict())
    other = childtune.ChildTuningAdamW(make_params(shapes=((2, 2),)))
    with pytest.raises(ValueError):
        opt.load_state_dict(other.state_dict())
    bad = opt.state_dict()
    bad["childtune"]["state"] = bad["childtune"]["state"][:-9].clone()
    with pytest.raises(ValueError, match="corrupt|archive"):
        opt.load_state_dict(bad)
    assert_unchanged(opt, a, snap)


def test_named_parameters_resume_and_mask_by_parameter():
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 2))
    opt = childtune.ChildTuningAdamW(model.named_parameters(), lr=1e-2, mode="ChildTuning-D")
    assert opt.param_groups[0]["param_names"] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    opt.set_gradient_mask({model[0].weight: model[0].weight.detach() > 0})
    model(torch.randn(3, 5)).sum().backward()
    opt.step()
    other_model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 2))
    other_model.load_state_dict(model.state_dict())
    other = childtune.ChildTuningAdamW(other_model.named_parameters(), lr=1.0)
    other.load_state_dict(opt.state_dict())
    for m, o in ((model, opt), (other_model, other)):
        torch.manual_seed(1)
        o.zero_grad()
        m(torch.randn(3, 5)).sum().backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other_model.parameters()))
    renamed = childtune.ChildTuningAdamW([(f"x{i}", p) for i, p in enumerate(torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.Linear(7, 2)).parameters())])
    with pytest.raises(ValueError):
        renamed.load_state_dict(opt.state_dict())
