"""childtune.calculate_fisher against ModelScope's (published.py)."""
import numpy as np
import pytest
import torch

import childtune
import published


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(8, 16)
        self.layer1 = torch.nn.Linear(16, 16)
        self.layer2 = torch.nn.Linear(16, 16)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x):
        x = torch.tanh(self.embed(x))
        x = torch.tanh(self.layer1(x))
        return self.head(torch.tanh(self.layer2(x)))


def make_model(seed=0, batches=6):
    torch.manual_seed(seed)
    model = Net()
    gen = torch.Generator().manual_seed(seed + 1)
    data = [(torch.randn(10, 8, generator=gen), torch.randint(0, 3, (10,), generator=gen)) for _ in range(batches)]
    return model, data


def forward_step(model, batch):
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


@pytest.mark.parametrize("p", [0.3, 0.05, 0.5, 1.0])
def test_percentile_masks_are_bit_identical_to_modelscope(p):
    model, data = make_model()
    ours = childtune.calculate_fisher(model, data, forward_step, p)
    ref = published.calculate_fisher(model, data, forward_step, p)
    assert [id(k) for k in ours] == [id(k) for k in ref]
    for k in ref:
        assert ours[k].dtype == torch.bool and ours[k].shape == k.shape
        assert torch.equal(ours[k], ref[k])
    assert sum(int(m.sum()) for m in ours.values()) >= round(p * sum(k.numel() for k in ref))


def test_clipped_scores_select_the_modelscope_mask():
    model, data = make_model(3)
    ours = childtune.calculate_fisher(model, data, forward_step, 0.2, grad_clip={"max_norm": 0.05})
    ref = published.calculate_fisher(model, data, forward_step, 0.2, grad_clip={"max_norm": 0.05})
    unclipped = childtune.calculate_fisher(model, data, forward_step, 0.2)
    for k in ref:
        assert torch.equal(ours[k], ref[k])
    assert any(not torch.equal(ours[k], unclipped[k]) for k in ref)   # clipping changed something


def test_exact_count_keeps_exactly_round_p_n():
    model, data = make_model()
    masks = childtune.calculate_fisher(model, data, forward_step, 0.3, rule="exact_count")
    n = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.3 * n)
    # the kept elements are the top scores: every kept score >= every dropped one
    scores = published.fisher_scores(model, data, forward_step)
    kept = np.concatenate([scores[k][masks[k]].numpy() for k in masks])
    dropped = np.concatenate([scores[k][~masks[k]].numpy() for k in masks])
    assert kept.min() >= dropped.max()


def test_include_filter_and_mask_feed_the_optimizer():
    model, data = make_model()
    masks = childtune.calculate_fisher(model, data, forward_step, 0.3, include=lambda n: n.startswith("layer1"))
    assert set(id(k) for k in masks) == {id(model.layer1.weight), id(model.layer1.bias)}
    assert set(id(k) for k in childtune.calculate_fisher(model, data, forward_step, 0.3, include="head")) == \
        {id(model.head.weight), id(model.head.bias)}
    opt = childtune.ChildTuningAdamW(model.parameters(), lr=1e-2, mode="ChildTuning-D")
    opt.set_gradient_mask(masks)
    before = model.layer1.weight.detach().clone()
    forward_step(model, data[0]).backward()
    opt.step()
    moved = model.layer1.weight.detach() != before
    assert torch.equal(moved, masks[model.layer1.weight])


def test_errors_and_quiet_off_terminal(capsys):
    model, data = make_model()
    with pytest.raises(ValueError, match=r"selects none of the model's 8 parameters \('embed.weight'"):
        childtune.calculate_fisher(model, data, forward_step, 0.3, include="layr")
    with pytest.raises(ValueError, match="reserve_p"):
        childtune.calculate_fisher(model, data, forward_step, 0.0)
    with pytest.raises(ValueError, match="rule"):
        childtune.calculate_fisher(model, data, forward_step, 0.3, rule="top")
    with pytest.raises(ValueError, match="norm_type"):
        childtune.calculate_fisher(model, data, forward_step, 0.3, grad_clip={"max_norm": 1.0, "norm_type": 1})
    model.eval()
    childtune.calculate_fisher(model, data, forward_step, 0.3)
    assert not model.training
    assert capsys.readouterr().err == ""
    childtune.calculate_fisher(model, data, forward_step, 0.3, progress=True)
    assert "Fisher information: batch 6/6" in capsys.readouterr().err
