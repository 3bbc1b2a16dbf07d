#!/usr/bin/env python3
"""Times one optimizer step from Python: childtune against the published class and torch's AdamW.

Methods (all fp32, the same parameters and gradients, the same threads):

* ``childtune/dense``  childtune.ChildTuningAdamW, mode=None, flavour='torch'
  (the rule of torch.optim.AdamW, so the two compare like for like)
* ``childtune/ct_f``   mode='ChildTuning-F', reserve_p=0.3, flavour='legacy'
* ``childtune/ct_d``   mode='ChildTuning-D' with a fixed mask keeping 30 % of
  the tensors whose name contains 'layer', flavour='legacy'
* ``published/dense``, ``published/ct_f``, ``published/ct_d``: the published
  ChildTuningAdamW transcribed op for op (tests/python/published.py), same
  modes and masks (its CT_D mask is the same bool tensors)
* ``torch/adamw_foreach``, ``torch/adamw_for_loop``: torch.optim.AdamW with
  foreach=True and foreach=False

Child-Tuning_F masks every tensor (as the published class does), Child-Tuning_D
the encoder layers only. Shapes: one tensor of 16 Mi parameters, and BERT-base's
parameter list (bert-base-uncased with a 2-class head: 201 tensors, 109.5 M
parameters).

Every method uses lr 1e-3, eps 1e-8, weight decay 0.01. Each method gets its own optimizer; an untimed first step creates its state.
Then, ``--repeats`` times: the gradients are restored (untimed: the published
Child-Tuning step rescales them in place) and one ``step()`` is timed with
time.perf_counter (wall) and time.process_time (CPU time of all the process's
threads: steadier than wall time on a machine other jobs load, but it counts
threads that spin while waiting). The table gives the medians, the spread of
wall times (interquartile range over the median) and speedups (peer time /
childtune time) by both clocks.

``--smoke``: tiny shapes and three repeats, plus a check that childtune's
Child-Tuning_D step equals the published one and its dense step torch's AdamW
after the same steps from the same start (so the table compares equal work):
seconds, for CI.
"""

import argparse
import datetime
import importlib.util
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench_step.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch and childtune threads (default 2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per method (default 11; --smoke 3)")
    ap.add_argument("--p", type=float, default=0.3, help="reserve_p of both Child-Tuning modes (default 0.3)")
    ap.add_argument("--shapes", default="flat,bert-base",
                    help="comma-separated: flat (one tensor of --n parameters), bert-base (default both)")
    ap.add_argument("--n", type=int, default=16 << 20, help="parameters of the flat shape (default 16 Mi)")
    ap.add_argument("--methods", default=None, help="comma-separated method names (default: all)")
    ap.add_argument("--smoke", action="store_true",
                    help="a run of seconds for CI: 64 Ki flat, a 2-layer hidden-32 BERT, 3 repeats, "
                         "results checked against the published step and torch's AdamW")
    a = ap.parse_args(argv)
    if a.smoke:
        a.n = min(a.n, 64 << 10)
        a.repeats = a.repeats or 3
    a.repeats = a.repeats or 11
    if a.threads < 1 or a.repeats < 1 or a.n < 1 or not 0 < a.p <= 1:
        ap.error("--threads, --repeats and --n must be >= 1 and --p in (0, 1]")
    return a


def bert_shapes(hidden=768, layers=12, vocab=30522, positions=512, classes=2):
    """bert-base-uncased's parameters (BertForSequenceClassification), in named_parameters() order."""
    h, ffn = hidden, 4 * hidden
    s = [("bert.embeddings.word_embeddings.weight", (vocab, h)),
         ("bert.embeddings.position_embeddings.weight", (positions, h)),
         ("bert.embeddings.token_type_embeddings.weight", (2, h)),
         ("bert.embeddings.LayerNorm.weight", (h,)),
         ("bert.embeddings.LayerNorm.bias", (h,))]
    for i in range(layers):
        p = "bert.encoder.layer.%d." % i
        for w in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            s += [(p + w + ".weight", (h, h)), (p + w + ".bias", (h,))]
        s += [(p + "attention.output.LayerNorm.weight", (h,)), (p + "attention.output.LayerNorm.bias", (h,)),
              (p + "intermediate.dense.weight", (ffn, h)), (p + "intermediate.dense.bias", (ffn,)),
              (p + "output.dense.weight", (h, ffn)), (p + "output.dense.bias", (h,)),
              (p + "output.LayerNorm.weight", (h,)), (p + "output.LayerNorm.bias", (h,))]
    s += [("bert.pooler.dense.weight", (h, h)), ("bert.pooler.dense.bias", (h,)),
          ("classifier.weight", (classes, h)), ("classifier.bias", (classes,))]
    return s


def load_published():
    spec = importlib.util.spec_from_file_location("published", REPO / "tests" / "python" / "published.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Problem:
    """Parameters, their gradients (and a copy to restore them), the Child-Tuning_D masks of one shape."""

    def __init__(self, torch, label, shapes, p):
        gen = torch.Generator().manual_seed(1)
        self.label = label
        self.names = [n for n, _ in shapes]
        self.params = [torch.nn.Parameter(torch.randn(shape, generator=gen) * 0.02) for _, shape in shapes]
        self.start = [q.detach().clone() for q in self.params]
        self.grads = [torch.randn(shape, generator=gen) * 1e-3 for _, shape in shapes]
        self.masks = {q: torch.rand(q.shape, generator=gen) < p
                      for n, q in zip(self.names, self.params) if "layer" in n}
        self.size = sum(q.numel() for q in self.params)

    def reset(self):
        """Parameters back to the start, every gradient restored."""
        for q, s in zip(self.params, self.start):
            q.data.copy_(s)
        self.restore_grads()

    def restore_grads(self):
        for q, g in zip(self.params, self.grads):
            if q.grad is None:
                q.grad = g.clone()
            else:
                q.grad.copy_(g)


def make_optimizer(method, problem, args, torch, childtune, published):
    kind, what = method.split("/")
    params = problem.params
    if kind == "torch":
        return torch.optim.AdamW(params, lr=1e-3, eps=1e-8, weight_decay=0.01, foreach=(what == "adamw_foreach"))
    mode = {"dense": None, "ct_f": "ChildTuning-F", "ct_d": "ChildTuning-D"}[what]
    reserve_p = args.p if what == "ct_f" else 1.0
    if kind == "published":
        opt = published.ChildTuningAdamW(params, lr=1e-3, eps=1e-8, weight_decay=0.01, reserve_p=reserve_p,
                                         mode=mode)
    else:
        opt = childtune.ChildTuningAdamW(params, lr=1e-3, eps=1e-8, weight_decay=0.01, reserve_p=reserve_p, mode=mode,
                                         seed=7, flavour="torch" if what == "dense" else "legacy")
        opt.set_threads(args.threads)
    if what == "ct_d":
        opt.set_gradient_mask(problem.masks)
    return opt


def time_method(method, problem, args, torch, childtune, published):
    problem.reset()
    opt = make_optimizer(method, problem, args, torch, childtune, published)
    opt.step()  # allocates the state, untimed
    wall, cpu = [], []
    for _ in range(args.repeats):
        problem.restore_grads()
        c0, t0 = time.process_time(), time.perf_counter()
        opt.step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    del opt
    return wall, cpu


def verify(problem, args, torch, childtune, published):
    """childtune CT_D (legacy) against the published class, dense (torch flavour) against torch's AdamW."""
    pairs = (("childtune/ct_d", "published/ct_d"), ("childtune/dense", "torch/adamw_for_loop"))
    for ours, peer in pairs:
        after = {}
        for method in (ours, peer):
            problem.reset()
            opt = make_optimizer(method, problem, args, torch, childtune, published)
            for _ in range(3):
                problem.restore_grads()
                opt.step()
            after[method] = [q.detach().clone() for q in problem.params]
        for name, a, b in zip(problem.names, after[ours], after[peer]):
            if not torch.allclose(a, b, rtol=1e-5, atol=1e-7):
                raise SystemExit("bench_step.py: %s: %s differs from %s after 3 steps (max |diff| %g)"
                                 % (problem.label, ours, peer, float((a - b).abs().max())))
        print("verified on %s: %s equals %s after 3 steps (rtol 1e-5)" % (problem.label, ours, peer))


def fmt_time(t):
    return "%.3g s" % t if t >= 1 else "%.3g ms" % (t * 1e3) if t >= 1e-3 else "%.3g µs" % (t * 1e6)


def fmt_count(x):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return "%.3g %s" % (x / scale, unit)
    return "%.3g" % x


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def main(argv):
    args = parse_args(argv)
    # OpenMP reads its thread count at start-up: set it before torch loads.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    torch.set_num_threads(args.threads)
    published = load_published()

    all_methods = ["childtune/dense", "childtune/ct_f", "childtune/ct_d", "published/dense", "published/ct_f",
                   "published/ct_d", "torch/adamw_foreach", "torch/adamw_for_loop"]
    methods = args.methods.split(",") if args.methods else all_methods
    unknown = [m for m in methods if m not in all_methods]
    if unknown:
        raise SystemExit("bench_step.py: unknown method(s) %s; known: %s" % (", ".join(unknown), ", ".join(all_methods)))
    childtune = None
    if any(m.startswith("childtune/") for m in methods) or args.smoke:
        try:
            import childtune
        except ImportError as e:
            raise SystemExit("bench_step.py: the childtune package is not importable (%s); run "
                             "./scripts/python-env.sh and use the interpreter it prints, or time the peers "
                             "alone with --methods" % e)

    shapes = []
    for s in args.shapes.split(","):
        if s == "flat":
            n = args.n
            label = "N = %d Mi" % (n >> 20) if n % (1 << 20) == 0 else "N = %d Ki" % (n >> 10) if n % 1024 == 0 \
                else "N = %d" % n
            shapes.append((label, [("encoder.layer.0.weight", (n,))]))
        elif s == "bert-base":
            shape = bert_shapes(hidden=32, layers=2) if args.smoke else bert_shapes()
            shapes.append(("BERT-base" + (" (smoke: hidden 32, 2 layers)" if args.smoke else ""), shape))
        else:
            raise SystemExit("bench_step.py: unknown shape '%s' (flat, bert-base)" % s)

    load_before = os.getloadavg()
    print("# Python optimizer step: childtune %s, torch %s"
          % (childtune.__version__ if childtune else "(not loaded)", torch.__version__))
    print("- command: `%s`" % " ".join(["bench/python/bench_step.py"] + list(argv)))
    print("- date: %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    print("- CPU: %s, %d logical CPUs; torch threads %d, childtune threads %d"
          % (cpu_model(), os.cpu_count() or 0, torch.get_num_threads(), args.threads))
    print("- load average before: %.2f %.2f %.2f" % load_before)
    print("- %d timed steps per method after one untimed step; gradients restored (untimed) before each"
          % args.repeats)

    results = {}
    for label, shape in shapes:
        problem = Problem(torch, label, shape, args.p)
        if args.smoke:
            verify(problem, args, torch, childtune, published)
        print("\n## %s (%s parameters in %d tensor%s)\n" % (label, fmt_count(problem.size), len(shape),
                                                             "" if len(shape) == 1 else "s"))
        print("| method | time/step (median) | IQR/median | params/s | CPU time/step (median) |")
        print("|---|---|---|---|---|")
        for method in methods:
            wall, cpu = time_method(method, problem, args, torch, childtune, published)
            med = statistics.median(wall)
            q = statistics.quantiles(wall, n=4) if len(wall) >= 2 else [med, med, med]
            results[(label, method)] = med
            results[(label, method, "cpu")] = statistics.median(cpu)
            print("| `%s` | %s | %.0f %% | %s | %s |" % (method, fmt_time(med), 100 * (q[2] - q[0]) / med,
                                                        fmt_count(problem.size / med),
                                                        fmt_time(statistics.median(cpu))), flush=True)
        del problem

    pairs = [("childtune/dense", "torch/adamw_foreach"), ("childtune/dense", "torch/adamw_for_loop"),
             ("childtune/dense", "published/dense"), ("childtune/ct_f", "published/ct_f"),
             ("childtune/ct_d", "published/ct_d"), ("childtune/ct_f", "torch/adamw_foreach"),
             ("childtune/ct_d", "torch/adamw_foreach")]
    pairs = [(a, b) for a, b in pairs if a in methods and b in methods]
    if pairs:
        print("\n## Speedup of childtune (peer time / childtune time; wall, then CPU time)\n")
        print("| shape | time | " + " | ".join("%s vs `%s`" % (a.split("/")[1], b) for a, b in pairs) + " |")
        print("|---|---|" + "---|" * len(pairs))
        for label, _ in shapes:
            for kind, key in (("wall", ()), ("CPU", ("cpu",))):
                print("| %s | %s | " % (label, kind) + " | ".join(
                    "%.2f×" % (results[(label, b) + key] / results[(label, a) + key]) for a, b in pairs) + " |")
    print("\n- load average after: %.2f %.2f %.2f" % os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
