# Harness of README.md's Python fragment: the model, train_loader and
# forward_step it assumes (a two-layer encoder whose parameter names contain
# "layer", an embedding and a head); checks what the fragment did.
import os

import torch

torch.manual_seed(0)


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Linear(6, 16)
        self.layers = torch.nn.ModuleList([torch.nn.Linear(16, 16) for _ in range(2)])
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x):
        x = torch.tanh(self.embedding(x))
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return self.head(x)


model = Model()
train_loader = [(torch.randn(8, 6), torch.randint(0, 3, (8,))) for _ in range(4)]


def forward_step(model, batch):
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


before = model.layers[0].weight.detach().clone()
# FRAGMENT
assert optimizer.step_count == len(train_loader)
assert os.path.getsize("optimizer.pt") > 0
after, kept = model.layers[0].weight.detach(), mask[model.layers[0].weight]
assert 0 < int(kept.sum()) < kept.numel()
assert torch.allclose(after[~kept], before[~kept], rtol=1e-5, atol=0), "dropped entries move by weight decay only"
assert ((after - before)[kept].abs() > 1e-6).float().mean() > 0.9, "kept entries train"
