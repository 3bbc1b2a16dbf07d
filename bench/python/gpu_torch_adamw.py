#!/usr/bin/env python3
"""PyTorch's own AdamW steps on one tensor, the peer of bench_gpu_step (bench/gpu_step.cu).

scripts/gpu-check.sh runs it beside bench_gpu_step on the same card, at the same N,
so that the Thrust adapter's fused step can be set against what a PyTorch user runs:

* ``copy/device_to_device``     ``dst.copy_(src)`` of N floats: the bandwidth probe
  (8 B per element), median of 5, as bench_gpu_step's probe
* ``torch/adamw_fused/fp32``    torch.optim.AdamW(fused=True), fp32 parameters
  and state: 28 B per element, as childtune's fp32 step
* ``torch/adamw_foreach/fp32``  the same with foreach=True (PyTorch's default on CUDA)
* ``published/ct_f/fp32``       the published Child-Tuning_F step as the paper's
  code runs it: a Bernoulli(p) mask drawn as a tensor, the gradient multiplied
  by mask / p, then the fused AdamW step (the bytes counted are AdamW's 28: the
  extra passes are its cost)
* ``torch/adamw_fused/bf16``    fused AdamW on bf16 parameters; PyTorch keeps its
  state in the parameters' type, so this counts 14 B per element (childtune's bf16
  step keeps fp32 state: 22 B)
* ``package/adamw/fp32/dense``, ``package/adamw/fp32/ct_f``  childtune's Python
  optimizer (``childtune.ChildTuningAdamW``, torch flavour; CT_F at p = 0.3) on
  the same tensor, where the package is importable: on CUDA its fused Thrust
  kernels when the extension was built with CUDA, else its ATen operations

Every step: lr 1e-3, eps 1e-8, weight decay 0.01; one untimed warm-up step creates
the state, then ``--repeats`` steps are timed one by one (CUDA events on a GPU,
perf_counter on the CPU) and the median is reported, as GB/s of counted bytes and
as x_copy (that over the probe's GB/s).

    python3 bench/python/gpu_torch_adamw.py [--n N] [--repeats R] [--device cuda] [--json FILE]
"""
import argparse
import json
import os
import statistics
import time

import torch

KEEP_PROBABILITY = 0.3


def timed(device, fn, repeats):
    """Median seconds of `repeats` calls of fn, one by one, after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fused_supported(device):
    """PyTorch 1.13's fused AdamW runs on CUDA only (later versions also on the CPU)."""
    if device.type == "cuda":
        return True
    try:
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)], fused=True)
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


def adamw_case(device, n, dtype, repeats, seed, **options):
    gen = torch.Generator(device=device).manual_seed(seed)
    param = torch.randn(n, device=device, dtype=torch.float32, generator=gen).to(dtype).requires_grad_()
    param.grad = (torch.randn(n, device=device, dtype=torch.float32, generator=gen) * 1e-2).to(dtype)
    opt = torch.optim.AdamW([param], lr=1e-3, eps=1e-8, weight_decay=0.01, **options)
    seconds = timed(device, opt.step, repeats)
    finite = bool(torch.isfinite(param).all())
    return seconds, finite


def published_ct_f_case(device, n, repeats, seed):
    """The published step: grad *= Bernoulli(p) / p, then AdamW (fused here: the fastest PyTorch has)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    param = torch.randn(n, device=device, generator=gen).requires_grad_()
    grad = torch.randn(n, device=device, generator=gen) * 1e-2
    param.grad = grad.clone()
    opt = torch.optim.AdamW([param], lr=1e-3, eps=1e-8, weight_decay=0.01, fused=True)

    def step():
        mask = torch.distributions.Bernoulli(param.grad.new_full(param.grad.size(), KEEP_PROBABILITY)).sample()
        param.grad.mul_(mask / KEEP_PROBABILITY)
        opt.step()

    seconds = timed(device, step, repeats)
    return seconds, bool(torch.isfinite(param).all())


def package_case(device, n, repeats, seed, **masking):
    """childtune's Python optimizer, as a PyTorch user would step it."""
    import childtune
    gen = torch.Generator(device=device).manual_seed(seed)
    param = torch.randn(n, device=device, generator=gen).requires_grad_()
    param.grad = torch.randn(n, device=device, generator=gen) * 1e-2
    opt = childtune.ChildTuningAdamW([param], lr=1e-3, eps=1e-8, weight_decay=0.01, flavour="torch", **masking)
    seconds = timed(device, opt.step, repeats)
    return seconds, bool(torch.isfinite(param).all())


def package_importable():
    try:
        import childtune  # noqa: F401
        return True
    except ImportError:
        return False


def copy_probe(device, n):
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    seconds = timed(device, lambda: dst.copy_(src), 5)
    return 8 * n / seconds / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=int(float(os.environ.get("CHILDTUNE_BENCH_GPU_N", "1e9"))))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", help="write the results here as well")
    args = parser.parse_args()
    if args.n < 1 or args.repeats < 1:
        raise SystemExit(f"--n and --repeats must be positive (got {args.n}, {args.repeats})")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu for a smoke run")

    copy_gbps = copy_probe(device, args.n)
    rows = [("copy/device_to_device", 8 * args.n / copy_gbps / 1e9, 8, True)]
    cases = [
        ("torch/adamw_fused/fp32", 28, lambda: adamw_case(device, args.n, torch.float32, args.repeats, 1, fused=True)),
        ("torch/adamw_foreach/fp32", 28, lambda: adamw_case(device, args.n, torch.float32, args.repeats, 2, foreach=True)),
        ("published/ct_f/fp32", 28, lambda: published_ct_f_case(device, args.n, args.repeats, 3)),
        ("torch/adamw_fused/bf16", 14, lambda: adamw_case(device, args.n, torch.bfloat16, args.repeats, 4, fused=True)),
    ]
    if package_importable():
        cases += [
            ("package/adamw/fp32/dense", 28, lambda: package_case(device, args.n, args.repeats, 5)),
            ("package/adamw/fp32/ct_f", 28, lambda: package_case(device, args.n, args.repeats, 6,
                                                                 reserve_p=KEEP_PROBABILITY, mode="ChildTuning-F")),
        ]
    else:
        print("  package/*: skipped (the childtune package is not importable)")
    fused = fused_supported(device)
    for name, bytes_per_element, run in cases:
        if ("fused" in name or "published" in name) and not fused:
            print(f"  {name}: skipped (fused AdamW does not run on {device.type} in torch {torch.__version__})")
            continue
        seconds, finite = run()
        rows.append((name, seconds, bytes_per_element, finite))
        if device.type == "cuda":
            torch.cuda.empty_cache()

    what = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {what}, N = {args.n}, median of {args.repeats} steps")
    results = []
    # Every row's GB/s from its time by the one formula, the copy row's too, so
    # that the copy's x_copy is exactly 1 (the probe's GB/s turned into a time
    # and back can differ in its last bit).
    def gb_per_s(seconds, bytes_per_element):
        return bytes_per_element * args.n / seconds / 1e9
    copy_gbps = gb_per_s(rows[0][1], rows[0][2])
    for name, seconds, bytes_per_element, finite in rows:
        gbps = gb_per_s(seconds, bytes_per_element)
        results.append({"name": name, "ms": seconds * 1e3, "bytes_per_element": bytes_per_element, "GB/s": gbps,
                        "x_copy": gbps / copy_gbps, "finite": finite})
        print(f"  {name:<28} {seconds * 1e3:10.3f} ms  GB/s={gbps:.4g}  x_copy={gbps / copy_gbps:.4g}"
              + ("" if finite else "  NON-FINITE PARAMETERS"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "device": what, "n": args.n, "repeats": args.repeats,
                       "results": results}, f, indent=1)
    if not all(finite for *_, finite in rows):
        raise SystemExit("a step left non-finite parameters")


if __name__ == "__main__":
    main()
