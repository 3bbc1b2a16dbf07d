#!/usr/bin/env python3
"""Child-Tuning on real data, from Python: low-resource transfer on Fashion-MNIST.

The Python twin of examples/fashion_mnist_child_tuning.cpp (docs/demo.md), with
the same data, model, settings and random streams:

 1. Pretraining: a small CNN learns classes 0-4 of Fashion-MNIST from all their
    training images (torch.optim.AdamW, lr 1e-3, weight decay 0.01, batch 64).
    The weights are cached in --out, keyed by every setting that changes them.
 2. Fine-tuning: the pretrained body ("layer1".."layer3") with a new head learns
    classes 5-9 from K images per class, 30 epochs of batch 16, with
    childtune.ChildTuningAdamW in the legacy flavour of the published code:
    vanilla (mode=None), Child-Tuning_F (mode='ChildTuning-F', reserve_p=p_F,
    a fresh keyed Bernoulli mask each step) and Child-Tuning_D
    (mode='ChildTuning-D' with the mask of childtune.calculate_fisher: squared
    gradients of the start model over the K-shot set, each tensor's gradient
    clipped to norm 1, global numpy-percentile cut at p_D). As in the reference
    the body is the masked group and the head trains densely.
 3. Test accuracy on the test images of classes 5-9, over several seeds; a seed
    fixes the K-shot sample, the head's initialisation, the batch order and the
    Bernoulli masks, and every method sees the same ones, so the differences to
    vanilla are paired.

Samples and batch orders come from a transcription of the C++ demo's generator
(std::mt19937_64 through the same Fisher-Yates), so both demos fine-tune on the
same images in the same order; the head's initialisation uses the same
torch.manual_seed.

--implementation published runs the same protocol with the published classes
(tests/python/published.py: one published ChildTuningAdamW for the body, one
with mode=None for the head; its calculate_fisher): the comparison that says
whether childtune changes what a user of the published code gets.

Exit codes: 0 done, 1 error, 2 Fashion-MNIST not found (apt-get install
dataset-fashion-mnist), 64 bad flags.
"""

import argparse
import csv
import gzip
import importlib.util
import math
import os
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

PRETRAIN_SEED = 0
SAMPLE_SEED_BASE, HEAD_SEED_BASE, MASK_SEED_BASE, ORDER_SEED_BASE = 1000, 2000, 3000, 4000
CLASSES_PER_TASK = 5
SOURCE_FIRST_CLASS, TARGET_FIRST_CLASS = 0, 5
PIXEL_MEAN, PIXEL_STD = 0.2860, 0.3530  # Fashion-MNIST training set
PRETRAIN_BATCH, PRETRAIN_LR = 64, 1e-3
FINETUNE_BATCH, WEIGHT_DECAY, EPS = 16, 0.01, 1e-8  # eps: the C++ demo's (the library's default)
ARCHITECTURE = "cnn32-64-128"
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
REPO = pathlib.Path(__file__).resolve().parents[2]

SMOKE = dict(pretrain_examples=2000, pretrain_epochs=1, test_examples=1000, seeds=2, shots=5, epochs=3)
DEFAULTS = dict(shots=20, seeds=10, epochs=30, pF=0.3, pD=0.3, lr=1e-3, pretrain_epochs=3,
                pretrain_examples=0, test_examples=0, threads=2)


class MissingData(Exception):
    pass


# ---- command line -------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="fashion_mnist.py",
        description="Pretrains a CNN on Fashion-MNIST classes 0-4, fine-tunes it on classes 5-9 from K "
                    "images per class with vanilla AdamW, Child-Tuning_F and Child-Tuning_D, and prints "
                    "the test accuracy per method (mean +- std over seeds, paired differences).")
    # Defaults are None so that --smoke fills in only what the command line left unset.
    ap.add_argument("--K", "--shots", dest="shots", type=int, help="labelled training images per target class (20)")
    ap.add_argument("--seeds", type=int, help="fine-tuning seeds per method (10)")
    ap.add_argument("--pF", type=float, help="Child-Tuning_F keep probability, in (0, 1] (0.3)")
    ap.add_argument("--pD", type=float, help="Child-Tuning_D kept fraction, in (0, 1] (0.3)")
    ap.add_argument("--epochs", type=int, help="fine-tuning epochs (30)")
    ap.add_argument("--lr", type=float, help="fine-tuning learning rate (1e-3)")
    ap.add_argument("--pretrain-epochs", type=int, help="pretraining epochs (3; 0: a random body)")
    ap.add_argument("--pretrain-examples", type=int, help="pretraining images (0: all 30000)")
    ap.add_argument("--test-examples", type=int, help="test images of classes 5-9 (0: all 5000)")
    ap.add_argument("--threads", type=int, help="torch and childtune threads (2)")
    ap.add_argument("--implementation", choices=("childtune", "published"), default="childtune",
                    help="the optimizer and Fisher helper: the childtune package (default) or the "
                         "published code transcribed in tests/python/published.py")
    ap.add_argument("--out", default="fashion_mnist_python_output",
                    help="results (CSV) and the pretrained-weights cache (default ./fashion_mnist_python_output)")
    ap.add_argument("--data", default=DEFAULT_DATA,
                    help="the dataset (default %s, from the Debian package dataset-fashion-mnist)" % DEFAULT_DATA)
    ap.add_argument("--smoke", action="store_true",
                    help="a run of seconds for CI: 2000 pretraining images, 1 epoch, 2 seeds, 5 shots, "
                         "3 epochs, 1000 test images; explicit flags override these")
    a = ap.parse_args(argv)
    for key, value in (SMOKE if a.smoke else {}).items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    for key, value in DEFAULTS.items():
        if getattr(a, key) is None:
            setattr(a, key, value)

    def fail(message):
        ap.print_usage(sys.stderr)
        print("fashion_mnist.py: error: " + message, file=sys.stderr)
        sys.exit(64)

    if a.seeds < 1:
        fail("--seeds must be >= 1, not %d" % a.seeds)
    if a.shots < 1:
        fail("--K must be >= 1, not %d" % a.shots)
    if a.epochs < 1:
        fail("--epochs must be >= 1, not %d" % a.epochs)
    if not (0 < a.pF <= 1) or not (0 < a.pD <= 1):
        fail("--pF and --pD must be in (0, 1], not %g and %g" % (a.pF, a.pD))
    if not (a.lr > 0 and math.isfinite(a.lr)):
        fail("--lr must be > 0, not %g" % a.lr)
    if a.threads < 1:
        fail("--threads must be >= 1, not %d" % a.threads)
    if a.pretrain_epochs < 0 or a.pretrain_examples < 0 or a.test_examples < 0:
        fail("--pretrain-epochs, --pretrain-examples and --test-examples must be >= 0")
    if not a.out:
        fail("--out must not be empty")
    return a


# ---- randomness: the C++ demo's streams ----------------------------------------------

class MT19937_64:
    """std::mt19937_64 (its output is fixed by the C++ standard), seeded as std::mt19937_64(seed)."""

    _MASK = (1 << 64) - 1

    def __init__(self, seed):
        mt = [seed & self._MASK]
        for i in range(1, 312):
            prev = mt[-1]
            mt.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & self._MASK)
        self._mt = mt
        self._index = 312

    def _twist(self):
        mt = self._mt
        upper, lower = 0xFFFFFFFF80000000, 0x7FFFFFFF
        for i in range(312):
            x = (mt[i] & upper) | (mt[(i + 1) % 312] & lower)
            xa = x >> 1
            if x & 1:
                xa ^= 0xB5026F5AA96619E9
            mt[i] = mt[(i + 156) % 312] ^ xa
        self._index = 0

    def __call__(self):
        if self._index >= 312:
            self._twist()
        y = self._mt[self._index]
        self._index += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        return y & self._MASK


class Rng:
    """The C++ demo's rng: below(n) from the top 53 bits, a hand-written Fisher-Yates."""

    def __init__(self, seed):
        self._engine = MT19937_64(seed)

    def below(self, n):
        return int(float(self._engine() >> 11) * 2.0 ** -53 * float(n))

    def shuffle(self, v):
        for i in range(len(v), 1, -1):
            j = self.below(i)
            v[i - 1], v[j] = v[j], v[i - 1]


# ---- data ------------------------------------------------------------------------------

def read_idx(path, rank):
    """The unsigned-byte IDX array in the gzipped file `path`, checked against its header."""
    if not path.exists():
        raise MissingData("missing file %s" % path)
    data = gzip.open(path, "rb").read()
    header = 4 + 4 * rank
    if len(data) < header or int.from_bytes(data[0:4], "big") != (0x0800 | rank):
        raise ValueError("%s: not an IDX file of unsigned bytes with %d dimension(s)" % (path, rank))
    dims = [int.from_bytes(data[4 + 4 * d:8 + 4 * d], "big") for d in range(rank)]
    if len(data) - header != math.prod(dims):
        raise ValueError("%s: expected %d bytes of data, found %d" % (path, math.prod(dims), len(data) - header))
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_split(directory, name):
    images = read_idx(directory / ("%s-images-idx3-ubyte.gz" % name), 3)
    labels = read_idx(directory / ("%s-labels-idx1-ubyte.gz" % name), 1)
    if images.shape[0] != labels.shape[0]:
        raise ValueError("%s: %d images but %d labels" % (directory, images.shape[0], labels.shape[0]))
    if labels.size and labels.max() > 9:
        raise ValueError("%s: label %d is not 0..9" % (directory, labels.max()))
    return images, labels


def gather(split, indices, first_class):
    """The images `indices` of `split` as normalised float [n, 1, 28, 28], labels relabelled from first_class."""
    images, labels = split
    idx = np.asarray(indices, dtype=np.int64)
    x = torch.from_numpy(images[idx].copy()).unsqueeze(1).to(torch.float32)
    y = torch.from_numpy(labels[idx].astype(np.int64) - first_class)
    return (x / 255.0 - PIXEL_MEAN) / PIXEL_STD, y


def task_indices(split, first_class, limit):
    """Indices of the images of classes [first_class, first_class + 5) in file order, the first `limit` (0: all)."""
    labels = split[1]
    out = np.nonzero((labels >= first_class) & (labels < first_class + CLASSES_PER_TASK))[0]
    return out[:limit] if limit else out


def few_shot_indices(split, shots, seed):
    """K training images of every target class, the sample the C++ demo draws for this seed."""
    r = Rng(seed)
    out = []
    for c in range(TARGET_FIRST_CLASS, TARGET_FIRST_CLASS + CLASSES_PER_TASK):
        of_class = np.nonzero(split[1] == c)[0].tolist()
        if len(of_class) < shots:
            raise ValueError("class %d has only %d training images, fewer than --K %d" % (c, len(of_class), shots))
        r.shuffle(of_class)
        out.extend(of_class[:shots])
    return out


def epoch_batches(n, batch, r):
    order = list(range(n))
    r.shuffle(order)
    every = torch.tensor(order, dtype=torch.int64)
    return [every[b:b + batch] for b in range(0, n, batch)]


# ---- the model ---------------------------------------------------------------------------

class CNN(torch.nn.Module):
    """conv-pool-conv-pool-fc body ("layer*", the masked group) and a linear head."""

    def __init__(self, classes):
        super().__init__()
        self.layer1 = torch.nn.Conv2d(1, 32, 3, padding=1)
        self.layer2 = torch.nn.Conv2d(32, 64, 3, padding=1)
        self.layer3 = torch.nn.Linear(64 * 7 * 7, 128)
        self.head = torch.nn.Linear(128, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.layer1(x)), 2)
        x = F.max_pool2d(F.relu(self.layer2(x)), 2)
        x = F.relu(self.layer3(x.flatten(1)))
        return self.head(x)


def in_body(name):
    return "layer" in name


def accuracy(model, data):
    x, y = data
    right = 0
    with torch.no_grad():
        for b in range(0, len(y), 1000):
            right += int((model(x[b:b + 1000]).argmax(1) == y[b:b + 1000]).sum())
    return right / len(y)


def pretrain(model, source, epochs):
    opt = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR, weight_decay=0.01)
    order = Rng(PRETRAIN_SEED + 1)
    x, y = source
    t0 = time.monotonic()
    for e in range(epochs):
        batches = epoch_batches(len(y), PRETRAIN_BATCH, order)
        total, since = 0.0, 0
        for b, idx in enumerate(batches):
            loss = F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            since += 1
            if (b + 1) % 100 == 0 or b + 1 == len(batches):
                print("  pretraining epoch %d/%d, batch %d/%d: loss %.4f (%.0f s)"
                      % (e + 1, epochs, b + 1, len(batches), total / since, time.monotonic() - t0), flush=True)
                total, since = 0.0, 0


# ---- fine-tuning ---------------------------------------------------------------------------

def in_batches(data):
    """The training set in fixed, consecutive batches: what the Fisher pass walks."""
    x, y = data
    return [(x[b:b + FINETUNE_BATCH], y[b:b + FINETUNE_BATCH]) for b in range(0, len(y), FINETUNE_BATCH)]


def forward_step(model, batch):
    return F.cross_entropy(model(batch[0]), batch[1])


def fine_tuning_start(pretrained, head_seed):
    torch.manual_seed(head_seed)
    m = CNN(CLASSES_PER_TASK)
    source = dict(pretrained.named_parameters())
    with torch.no_grad():
        for name, p in m.named_parameters():
            if in_body(name):
                p.copy_(source[name])
    return m


class Stepper:
    """One fine-tuning optimizer: childtune's, or the published pair (masked body, dense head)."""

    def __init__(self, impl, model, mode, reserve_p, seed, lr, masks, threads):
        body = [p for n, p in model.named_parameters() if in_body(n)]
        head = [p for n, p in model.named_parameters() if not in_body(n)]
        common = dict(lr=lr, eps=EPS, weight_decay=WEIGHT_DECAY, reserve_p=reserve_p, mode=mode)
        if impl.__name__ == "childtune":
            # (name, tensor) pairs: the names key the Child-Tuning_F masks, as the
            # module's names do in the C++ demo.
            named = list(model.named_parameters())
            self._opts = [impl.ChildTuningAdamW([{"params": [(n, p) for n, p in named if in_body(n)], "masked": True},
                                                 {"params": [(n, p) for n, p in named if not in_body(n)],
                                                  "masked": False}],
                                                seed=seed, flavour="legacy", **common)]
            self._opts[0].set_threads(threads)
        else:
            self._opts = [impl.ChildTuningAdamW(body, **common),
                          impl.ChildTuningAdamW(head, **dict(common, mode=None))]
        if masks is not None:
            self._opts[0].set_gradient_mask(masks)

    def zero_grad(self):
        for o in self._opts:
            o.zero_grad()

    def step(self):
        for o in self._opts:
            o.step()


def fine_tune(model, stepper, train, epochs, order_seed):
    """Trains for `epochs` epochs; returns the mean batch loss of the last one."""
    order = Rng(order_seed)
    x, y = train
    last = 0.0
    for _ in range(epochs):
        batches = epoch_batches(len(y), FINETUNE_BATCH, order)
        total = 0.0
        for idx in batches:
            loss = F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx))
            stepper.zero_grad()
            loss.backward()
            stepper.step()
            total += loss.item()
        last = total / len(batches)
    return last


# ---- report ----------------------------------------------------------------------------------

def mean_std(v):
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s


def format_table(methods):
    """The C++ demo's table (examples/fashion_mnist/report.cpp), value for value."""
    base = methods[0]
    out = "%-15s %-5s %-19s %-21s %-7s %-10s %s\n" % ("method", "p", "test accuracy (%)", "vs vanilla (paired)",
                                                      "better", "train loss", "time/seed")
    for k, m in enumerate(methods):
        a_mean, a_std = mean_std(m["accuracy"])
        delta = better = ""
        if k > 0:
            d = [a - b for a, b in zip(m["accuracy"], base["accuracy"])]
            d_mean, d_std = mean_std(d)
            delta = "%+6.2f +- %.2f" % (100 * d_mean, 100 * d_std / math.sqrt(len(d)))
            better = "%d/%d" % (sum(1 for x in d if x > 0), len(d))
        out += "%-15s %-5s %6.2f +- %-9.2f %-21s %-7s %-10.4f %.1f s\n" % (
            m["name"], m["p"], 100 * a_mean, 100 * a_std, delta, better, mean_std(m["train_loss"])[0],
            mean_std(m["seconds"])[0])
    out += "+- after an accuracy: std over seeds; after a paired difference: its standard error.\n\n"
    out += "%-6s" % "seed" + "".join(" %14s" % m["tag"] for m in methods)
    out += "".join(" %14s" % (m["tag"] + "-" + base["tag"]) for m in methods[1:]) + "\n"
    for i, seed in enumerate(base["seeds"]):
        out += "%-6d" % seed + "".join(" %14.2f" % (100 * m["accuracy"][i]) for m in methods)
        out += "".join(" %+14.2f" % (100 * (m["accuracy"][i] - base["accuracy"][i])) for m in methods[1:]) + "\n"
    return out


def write_csv(path, methods):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["seed", "method", "p", "test_accuracy", "train_loss", "seconds"])
        for m in methods:
            for i, seed in enumerate(m["seeds"]):
                w.writerow([seed, m["name"], "" if m["p"] == "-" else m["p"], "%.6f" % m["accuracy"][i],
                            "%.6f" % m["train_loss"][i], "%.3f" % m["seconds"][i]])


def load_implementation(name):
    if name == "childtune":
        try:
            import childtune
        except ImportError as e:
            raise SystemExit("fashion_mnist.py: the childtune package is not importable (%s); run "
                             "./scripts/python-env.sh and use the interpreter it prints" % e)
        return childtune
    path = REPO / "tests" / "python" / "published.py"
    spec = importlib.util.spec_from_file_location("published", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- main ------------------------------------------------------------------------------------

def main(argv):
    s = parse_args(argv)
    t_start = time.monotonic()
    torch.set_num_threads(s.threads)

    data = pathlib.Path(s.data)
    try:
        train_split = load_split(data, "train")
        test_split = load_split(data, "t10k")
    except MissingData as e:
        print("fashion_mnist.py: Fashion-MNIST not found (%s).\nInstall it with: apt-get install "
              "dataset-fashion-mnist (or pass --data DIR)." % e, file=sys.stderr)
        return 2
    impl = load_implementation(s.implementation)
    out = pathlib.Path(s.out)
    out.mkdir(parents=True, exist_ok=True)

    source = gather(train_split, task_indices(train_split, SOURCE_FIRST_CLASS, s.pretrain_examples),
                    SOURCE_FIRST_CLASS)
    source_test = gather(test_split, task_indices(test_split, SOURCE_FIRST_CLASS, 0), SOURCE_FIRST_CLASS)
    target_test = gather(test_split, task_indices(test_split, TARGET_FIRST_CLASS, s.test_examples),
                         TARGET_FIRST_CLASS)

    # ---- 1. pretraining (or the cache) ----
    torch.manual_seed(PRETRAIN_SEED)
    pretrained = CNN(CLASSES_PER_TASK)
    body_n = sum(p.numel() for n, p in pretrained.named_parameters() if in_body(n))
    head_n = sum(p.numel() for n, p in pretrained.named_parameters() if not in_body(n))
    print("Child-Tuning on Fashion-MNIST from Python (%s, torch %s): a CNN (%d body + %d head parameters), "
          "%d thread%s" % (s.implementation, torch.__version__, body_n, head_n, s.threads,
                           "" if s.threads == 1 else "s"), flush=True)
    t_pretrain = time.monotonic()
    cache = out / ("pretrained-py-%s-classes0-4-n%d-e%d-b%d-lr%g-seed%d-t%d.pt"
                   % (ARCHITECTURE, len(source[1]), s.pretrain_epochs, PRETRAIN_BATCH, PRETRAIN_LR,
                      PRETRAIN_SEED, s.threads))
    cached = False
    if s.pretrain_epochs > 0 and cache.exists():
        try:
            pretrained.load_state_dict(torch.load(cache))
            cached = True
        except Exception as e:  # a damaged cache is not fatal: pretrain again
            print("cannot read the cached weights %s (%s): pretraining again" % (cache, e))
    if cached:
        print("1. pretrained weights loaded from the cache %s: pretraining skipped" % cache)
    elif s.pretrain_epochs > 0:
        print("1. pretraining on classes 0-4: %d images, %d epoch%s, batch %d, AdamW lr %g"
              % (len(source[1]), s.pretrain_epochs, "" if s.pretrain_epochs == 1 else "s", PRETRAIN_BATCH,
                 PRETRAIN_LR), flush=True)
        pretrain(pretrained, source, s.pretrain_epochs)
        partial = cache.with_name(cache.name + ".partial")
        torch.save(pretrained.state_dict(), partial)
        os.replace(partial, cache)
        print("   cached in %s" % cache)
    else:
        print("1. no pretraining (--pretrain-epochs 0): the body starts at random")
    pretrain_seconds = time.monotonic() - t_pretrain
    print("   source test accuracy (classes 0-4, %d images): %.2f%% (%s %.1f s)"
          % (len(source_test[1]), 100 * accuracy(pretrained, source_test),
             "loaded in" if cached else "pretrained in", pretrain_seconds), flush=True)

    # ---- 2. fine-tuning ----
    print("2. fine-tuning on classes 5-9: K = %d images per class, %d epochs, batch %d, lr %g, weight decay %g, "
          "%d seed%s; test: %d images" % (s.shots, s.epochs, FINETUNE_BATCH, s.lr, WEIGHT_DECAY, s.seeds,
                                          "" if s.seeds == 1 else "s", len(target_test[1])), flush=True)
    methods = [dict(name="vanilla AdamW", tag="vanilla", p="-"),
               dict(name="Child-Tuning_F", tag="CT_F", p="%.2f" % s.pF),
               dict(name="Child-Tuning_D", tag="CT_D", p="%.2f" % s.pD)]
    for m in methods:
        m.update(seeds=[], accuracy=[], train_loss=[], seconds=[])
    runs = s.seeds * len(methods)
    width = len(str(runs))
    run = 0
    t_finetune = time.monotonic()
    for seed in range(s.seeds):
        train = gather(train_split, few_shot_indices(train_split, s.shots, SAMPLE_SEED_BASE + seed),
                       TARGET_FIRST_CLASS)
        for k, m in enumerate(methods):
            t0 = time.monotonic()
            model = fine_tuning_start(pretrained, HEAD_SEED_BASE + seed)
            mode, reserve_p, masks = None, 1.0, None
            if k == 1:
                mode, reserve_p = "ChildTuning-F", s.pF
            elif k == 2:
                mode = "ChildTuning-D"
                print("   [%*d/%d] seed %d  Child-Tuning_D: Fisher information over %d training images"
                      % (width, run + 1, runs, seed, len(train[1])), flush=True)
                masks = impl.calculate_fisher(model, in_batches(train), forward_step, s.pD,
                                              grad_clip={"max_norm": 1.0})
                if seed == 0:
                    named = [(n, p) for n, p in model.named_parameters() if p in masks]
                    kept = sum(int(masks[p].sum()) for _, p in named)
                    total = sum(p.numel() for _, p in named)
                    print("   Child-Tuning_D mask of seed %d, kept per tensor (%d of %d):" % (seed, kept, total))
                    for n, p in named:
                        kept_t = int(masks[p].sum())
                        print("     %-14s %8d of %8d  %5.1f%%" % (n, kept_t, p.numel(), 100 * kept_t / p.numel()))
            stepper = Stepper(impl, model, mode, reserve_p, MASK_SEED_BASE + seed, s.lr, masks, s.threads)
            loss = fine_tune(model, stepper, train, s.epochs, ORDER_SEED_BASE + seed)
            acc = accuracy(model, target_test)
            m["seeds"].append(seed)
            m["accuracy"].append(acc)
            m["train_loss"].append(loss)
            m["seconds"].append(time.monotonic() - t0)
            print("   [%*d/%d] seed %d  %-15s test accuracy %6.2f%%  train loss %.4f  (%.1f s)"
                  % (width, run + 1, runs, seed, m["name"], 100 * acc, loss, m["seconds"][-1]), flush=True)
            run += 1
    finetune_seconds = time.monotonic() - t_finetune

    # ---- 3. results ----
    print("\n" + format_table(methods), end="")
    path = out / "fashion_mnist_results.csv"
    write_csv(path, methods)
    print("\nper-seed results: %s" % path)
    print("time: pretraining %.1f s%s, fine-tuning %.1f s (%.1f s per seed), total %.1f s"
          % (pretrain_seconds, " (cache)" if cached else "", finetune_seconds, finetune_seconds / s.seeds,
             time.monotonic() - t_start))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
