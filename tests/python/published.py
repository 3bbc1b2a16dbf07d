"""The published Child-Tuning code, transcribed operation for operation.

This module is the independent reference the Python tests and the benchmark
compare childtune against. It is not part of the package and must stay a
literal transcription: no fusion, no "fix", no shortcut, so that a difference
from childtune is a difference from what users run today.

Sources (read, then re-typed; every tensor operation, its order and its dtype
are kept):

* ``ChildTuningAdamW``: ``ChildTuning/ChildTuningOptimizer.py`` of
  https://github.com/alibaba/AliceMind (commit c17b177e7e), the optimizer of
  Xu et al., "Raise a Child in Large Language Model: Towards Effective and
  Generalizable Fine-tuning", EMNLP 2021 (arXiv 2109.05687). ModelScope's
  ``modelscope/trainers/optimizer/child_tuning_adamw_optimizer.py`` carries
  the same class unchanged (Apache License 2.0, The Alibaba DAMO NLP Team).
* ``calculate_fisher``: the function of the same name in that ModelScope
  file (https://github.com/modelscope/modelscope).

What the published code does, and what this transcription therefore does too:

* Legacy AdamW: ``denom = sqrt(v) + eps``; with ``correct_bias``,
  ``step_size = lr * sqrt(1 - b2**t) / (1 - b1**t)``; ``p -= step_size * m / denom``;
  then decoupled weight decay on every parameter, masked or not, with the
  already updated value: ``p -= lr * wd * p``.
* The mask multiplies the gradient before the moment updates, in place: after
  ``step()`` each ``p.grad`` holds the masked (and, for Child-Tuning_F,
  rescaled) gradient.
* ``mode='ChildTuning-D'``: ``grad *= mask[p]`` for the parameters present in
  the dict given to ``set_gradient_mask`` (a bool or 0/1 tensor); others dense.
* Any other non-None ``mode`` is Child-Tuning_F: a float tensor of Bernoulli
  draws with probability ``reserve_p`` is materialised per parameter per step
  from torch's global RNG (``torch.distributions.Bernoulli(...).sample()``, so
  the random stream is the published one), and ``grad *= sample / reserve_p``.
* Hyperparameters ``reserve_p`` and ``mode`` belong to the optimizer, not to
  param groups, and are not saved by ``state_dict()``.
* ``calculate_fisher``: selects the parameters whose name contains ``layer``;
  for every batch: ``forward_step(model, inputs)``, ``backward()``, then for
  each selected tensor in turn an optional ``clip_grad_norm_(param,
  **grad_clip)`` on that tensor alone and ``score += grad**2 / len(loader)``,
  then ``model.zero_grad()``. Gradients present before the call are not
  cleared first, so they count in the first batch, as in the published code.
  The cut is one global ``numpy.percentile(all_scores, (1 - reserve_p) * 100)``
  over the concatenated float scores (float32 for float32 parameters), and the
  mask is ``score >= polar`` (a bool tensor per selected parameter).

Importing this module has no side effect (it defines names only), so pytest's
rootdir conftest may put this directory on ``sys.path``.
"""

import math

import numpy as np
import torch
from torch.distributions.bernoulli import Bernoulli
from torch.optim import Optimizer

__all__ = ["ChildTuningAdamW", "calculate_fisher", "fisher_scores", "percentile_mask"]


class ChildTuningAdamW(Optimizer):
    """The published Child-Tuning AdamW (legacy flavour), op for op."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6,
                 weight_decay=0.0, correct_bias=True, reserve_p=1.0, mode=None):
        # The published checks, with their messages; reserve_p and mode are not checked.
        if lr < 0.0:
            raise ValueError("Invalid learning rate: {} - should be >= 0.0".format(lr))
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError("Invalid beta parameter: {} - should be in [0.0, 1.0[".format(betas[0]))
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError("Invalid beta parameter: {} - should be in [0.0, 1.0[".format(betas[1]))
        if not 0.0 <= eps:
            raise ValueError("Invalid epsilon value: {} - should be >= 0.0".format(eps))
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        correct_bias=correct_bias)
        super().__init__(params, defaults)
        self.gradient_mask = None
        self.reserve_p = reserve_p
        self.mode = mode

    def set_gradient_mask(self, gradient_mask):
        """Stores the dict {parameter: mask} used by mode 'ChildTuning-D' (by reference)."""
        self.gradient_mask = gradient_mask

    def step(self, closure=None):
        loss = None
        if closure is not None:
            loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.data
                if grad.is_sparse:
                    raise RuntimeError(
                        "Adam does not support sparse gradients, please consider SparseAdam instead")

                if self.mode is not None:
                    if self.mode == "ChildTuning-D":
                        # Raises TypeError when no mask was set, as the published code does.
                        if p in self.gradient_mask:
                            grad *= self.gradient_mask[p]
                    else:
                        # Child-Tuning_F: one materialised float mask per tensor per step.
                        grad_mask = Bernoulli(grad.new_full(size=grad.size(), fill_value=self.reserve_p))
                        grad *= grad_mask.sample() / self.reserve_p

                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p.data)
                    state["exp_avg_sq"] = torch.zeros_like(p.data)

                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                beta1, beta2 = group["betas"]
                state["step"] += 1

                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])

                step_size = group["lr"]
                if group["correct_bias"]:
                    bias_correction1 = 1.0 - beta1 ** state["step"]
                    bias_correction2 = 1.0 - beta2 ** state["step"]
                    step_size = step_size * math.sqrt(bias_correction2) / bias_correction1

                p.data.addcdiv_(exp_avg, denom, value=-step_size)
                # Decoupled weight decay after the update, on every parameter, with the new p.
                p.data.add_(p.data, alpha=-group["lr"] * group["weight_decay"])
        return loss


def fisher_scores(model, data_loader, forward_step, grad_clip=None):
    """The accumulation half of ModelScope's calculate_fisher: {param: mean grad**2}.

    The dict's order is ``model.named_parameters()`` order restricted to names
    containing 'layer' (the order in which the published code concatenates).
    """
    scores = dict()
    model.train()
    for name, param in model.named_parameters():
        if "layer" in name:
            scores[param] = param.new_zeros(param.size())

    iters = len(data_loader)
    for inputs in data_loader:
        loss = forward_step(model, inputs)
        loss.backward()
        for name, param in model.named_parameters():
            if "layer" in name:
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(param, **grad_clip)
                scores[param] += (param.grad ** 2) / iters
        model.zero_grad()
    return scores


def percentile_mask(scores, reserve_p):
    """The threshold half of ModelScope's calculate_fisher.

    Returns ``(masks, polar)``: ``masks`` maps each key of ``scores`` to the bool
    tensor ``score >= polar``, ``polar`` is the numpy percentile the published
    code prints ("Polar => ..."). np.concatenate of the flattened arrays gives
    the same array as the published code's repeated np.append, in linear time.
    """
    flat = [v.view(-1).cpu().numpy() for v in scores.values()]
    r = np.concatenate(flat) if flat else None
    polar = np.percentile(r, (1 - reserve_p) * 100)
    masks = {k: v >= polar for k, v in scores.items()}
    return masks, polar


def calculate_fisher(model, data_loader, forward_step, reserve_p, grad_clip=None):
    """ModelScope's calculate_fisher: {param: bool mask} keeping the top Fisher scores.

    Same signature and result as the published function; it does not print the
    threshold (call fisher_scores and percentile_mask to get it). Like the
    published code it fails when no parameter name contains 'layer' (numpy
    is asked for the percentile of None).
    """
    scores = fisher_scores(model, data_loader, forward_step, grad_clip)
    masks, _ = percentile_mask(scores, reserve_p)
    return masks
