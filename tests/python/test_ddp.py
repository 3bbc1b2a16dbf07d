"""Data-parallel Child-Tuning_F: DistributedDataParallel on Gloo, 2 processes on
this host, a different torch seed (and different data) per rank. childtune's
replicas stay identical (the Bernoulli masks are keyed by seed, step, tensor
and element, not drawn from torch's RNG); the published class's diverge, and
agree only while every rank's RNG is in lockstep."""
import json
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import childtune
import published

STEPS = 3


def _replicas_agree(model):
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def _train(rank, kind):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    ddp = torch.nn.parallel.DistributedDataParallel(model)   # broadcasts rank 0's parameters
    kw = dict(lr=1e-2, weight_decay=0.01, reserve_p=0.3, mode="ChildTuning-F")
    if kind == "childtune":
        opt = childtune.ChildTuningAdamW(ddp.parameters(), seed=2021, **kw)
    else:
        opt = published.ChildTuningAdamW(ddp.parameters(), **kw)
    # every rank: its own torch seed (unless in lockstep) and its own data
    torch.manual_seed(0 if kind == "published-lockstep" else 1000 + rank)
    gen = torch.Generator().manual_seed(rank)
    for _ in range(STEPS):
        opt.zero_grad()
        x, y = torch.randn(16, 12, generator=gen), torch.randint(0, 4, (16,), generator=gen)
        torch.nn.functional.cross_entropy(ddp(x), y).backward()   # gradients all-reduced
        opt.step()
    return _replicas_agree(model)


def _worker(rank, world, store, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        result = {kind: _train(rank, kind) for kind in ("childtune", "published", "published-lockstep")}
        if rank == 0:
            with open(out, "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_replicas_stay_identical_under_ddp(tmp_path):
    out = tmp_path / "result.json"
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    result = json.loads(out.read_text())
    assert result["childtune"] is True
    assert result["published"] is False               # different RNG per rank: the replicas diverge
    assert result["published-lockstep"] is True       # the published class agrees only in lockstep
