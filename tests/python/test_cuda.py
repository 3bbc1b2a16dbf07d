"""childtune's optimizers on CUDA parameters. With an extension built with CUDA
(setup.py's CUDAExtension, nvcc with --fmad=false) CUDA tensors run the Thrust
executor's fused kernels; otherwise the rule's ATen operations. Either way a
CUDA run gives the CPU's bits, for every rule, mask and dtype, its checkpoint
resumes on the CPU, and a non-finite gradient on the GPU is refused as on the CPU.

The CUDA cases are skipped where torch sees no GPU (the machines that run CI
have none); scripts/gpu-check.sh runs them on a GPU machine."""
import io

import pytest
import torch

import childtune
from childtune import _C

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")

RULES = {
    "adamw": lambda ps, **kw: childtune.ChildTuningAdamW(ps, lr=1e-2, weight_decay=0.01, **kw),
    "adam": lambda ps, **kw: childtune.ChildTuningAdam(ps, lr=1e-2, weight_decay=0.01, **kw),
    "sgd": lambda ps, **kw: childtune.ChildTuningSGD(ps, lr=1e-2, momentum=0.9, nesterov=True, **kw),
    "lion": lambda ps, **kw: childtune.ChildTuningLion(ps, lr=1e-3, weight_decay=0.1, **kw),
    "lamb": lambda ps, **kw: childtune.ChildTuningLAMB(ps, lr=1e-2, weight_decay=0.01, **kw),
}
MODES = {
    "dense": dict(),
    "ct_f": dict(reserve_p=0.3, mode="ChildTuning-F", seed=5),
    "ct_d": dict(reserve_p=0.3, mode="ChildTuning-D"),
}
# Where CUDA parameters are stepped: the fused kernels, when the extension has them.
FUSED_OR_ATEN = "cuda" if _C.cuda_kernels else "aten"
# Sizes off every multiple the kernels work in (128-element groups, 8 per thread).
SHAPES = ((4099,), (63,), (37, 19), (2, 3, 300))


def make_params(device, dtype=torch.float32):
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype).to(device).requires_grad_() for s in SHAPES]


def set_grads(params, step):
    gen = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = (0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64)).to(p.dtype).to(p.device)


def make(rule, mode, params):
    opt = RULES[rule](params, **MODES[mode])
    if mode == "ct_d":  # the same fixed mask on either device: every third element left out
        opt.set_gradient_mask({p: (torch.arange(p.numel()) % 3 != 1).reshape(p.shape).to(p.device)
                               for p in params[:3]})
    return opt


def run(opt, params, steps, first=0):
    for s in range(first, first + steps):
        set_grads(params, s)
        opt.step()


def assert_same_bits(cpu_params, gpu_params):
    for i, (a, b) in enumerate(zip(cpu_params, gpu_params)):
        assert b.is_cuda
        assert torch.equal(a.detach(), b.detach().cpu()), f"parameter {i} differs from the CPU's"


@needs_cuda
def test_the_extension_says_whether_it_has_the_cuda_kernels():
    assert isinstance(_C.cuda_kernels, bool)


@needs_cuda
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rule", RULES)
def test_cuda_parameters_get_the_cpu_bits(rule, mode):
    cpu, gpu = make_params("cpu"), make_params("cuda")
    a, b = make(rule, mode, cpu), make(rule, mode, gpu)
    run(a, cpu, 4)
    run(b, gpu, 4)
    assert set(a.step_paths().values()) == {"cpu"}
    assert set(b.step_paths().values()) == {FUSED_OR_ATEN}
    assert_same_bits(cpu, gpu)
    assert torch.equal(a.state_dict()["childtune"]["state"], b.state_dict()["childtune"]["state"])


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_every_parameter_type_on_cuda(dtype):
    cpu, gpu = make_params("cpu", dtype), make_params("cuda", dtype)
    a, b = make("adamw", "ct_f", cpu), make("adamw", "ct_f", gpu)
    run(a, cpu, 3)
    run(b, gpu, 3)
    assert_same_bits(cpu, gpu)


@needs_cuda
def test_fused_kernels_and_aten_operations_agree_on_cuda():
    fused_params, aten_params = make_params("cuda"), make_params("cuda")
    fused, aten = make("adamw", "ct_f", fused_params), make("adamw", "ct_f", aten_params)
    aten.force_aten_path(True)
    run(fused, fused_params, 3)
    run(aten, aten_params, 3)
    assert set(fused.step_paths().values()) == {FUSED_OR_ATEN}
    assert set(aten.step_paths().values()) == {"aten"}
    for a, b in zip(fused_params, aten_params):
        assert torch.equal(a, b)


@needs_cuda
def test_a_checkpoint_written_on_cuda_resumes_on_the_cpu():
    gpu, cpu, reference = make_params("cuda"), make_params("cpu"), make_params("cpu")
    on_gpu, whole = make("adamw", "ct_f", gpu), make("adamw", "ct_f", reference)
    run(on_gpu, gpu, 2)
    buffer = io.BytesIO()
    torch.save(on_gpu.state_dict(), buffer)
    buffer.seek(0)
    with torch.no_grad():
        for c, g in zip(cpu, gpu):
            c.copy_(g.cpu())
    resumed = make("adamw", "ct_f", cpu)
    resumed.load_state_dict(torch.load(buffer))
    run(resumed, cpu, 2, first=2)
    run(whole, reference, 4)
    for a, b in zip(cpu, reference):
        assert torch.equal(a, b)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_a_non_finite_gradient_is_refused_and_nothing_changes(device):
    """The check runs where the gradient lives; on either device the same error,
    and the parameters, the state and the step count stay as they were."""
    params = make_params(device)
    opt = make("adamw", "ct_f", params)
    run(opt, params, 1)
    before = [p.detach().clone() for p in params]
    state = opt.state_dict()["childtune"]["state"].clone()
    set_grads(params, 1)
    with torch.no_grad():
        params[2].grad[4, 7] = float("nan")
    with pytest.raises(ValueError, match="tensor 'param_group0.2': gradient holds NaN or Inf"):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, params))
    assert torch.equal(state, opt.state_dict()["childtune"]["state"])
    assert opt.step_count == 1
