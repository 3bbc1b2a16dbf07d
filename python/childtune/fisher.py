"""Child-Tuning_D masks from Fisher information, drop-in for ModelScope's
``calculate_fisher`` (Xu et al. 2021, §2.2).

The scores and the selection are the library's (``mask/fisher.hpp``,
``select/top_p.hpp``): per batch, ``score += grad**2 / len(data_loader)`` in
float32 in the reference's order (optionally after clipping each tensor's
gradient norm on its own), then one global cut: ``score >= numpy.percentile(
all_scores, (1 - reserve_p) * 100)`` bit for bit, or exactly
``round(reserve_p * N)`` elements (ties by index) with ``rule='exact_count'``.
"""

import sys

import torch

from . import _C

__all__ = ["calculate_fisher"]

_CLIP_KEYS = {"max_norm", "norm_type", "error_if_nonfinite", "foreach"}


def _selector(include):
    if include is None:
        return lambda name: "layer" in name
    if isinstance(include, str):
        return lambda name: include in name
    if callable(include):
        return include
    try:
        names = set(include)
    except TypeError:
        raise TypeError(f"include must be None, a str, a callable or a collection of names, not {type(include).__name__}")
    return lambda name: name in names


def _max_norm(grad_clip):
    if grad_clip is None:
        return 0.0
    if not isinstance(grad_clip, dict):
        raise TypeError(f"grad_clip must be None or a dict of clip_grad_norm_ arguments, not {type(grad_clip).__name__}")
    unknown = set(grad_clip) - _CLIP_KEYS
    if unknown:
        raise TypeError(f"grad_clip: unknown clip_grad_norm_ argument(s) {sorted(unknown)}")
    if "max_norm" not in grad_clip:
        raise TypeError("grad_clip: 'max_norm' is required (as for torch.nn.utils.clip_grad_norm_)")
    if float(grad_clip.get("norm_type", 2.0)) != 2.0:
        raise ValueError(f"grad_clip: norm_type = {grad_clip['norm_type']!r}; only the 2-norm is supported")
    max_norm = float(grad_clip["max_norm"])
    if not max_norm > 0.0:
        raise ValueError(f"grad_clip: max_norm = {max_norm!r} must be > 0")
    return max_norm


def calculate_fisher(model, data_loader, forward_step, reserve_p, grad_clip=None, *, include=None,
                     rule="percentile", progress=None):
    """Fisher scores of ``model``'s selected parameters over ``data_loader`` and
    the Child-Tuning_D mask keeping the ``reserve_p`` fraction with the highest.

    ``forward_step(model, batch)`` returns the batch's scalar loss. ``grad_clip``
    is a dict of ``torch.nn.utils.clip_grad_norm_`` arguments applied to each
    tensor on its own (2-norm). ``include`` selects parameters by name: None
    (names containing ``'layer'``, as the reference), a substring, a callable
    ``name -> bool`` or a collection of names; a selection of nothing is a
    ValueError. ``progress``: a progress line on stderr (default: only when
    stderr is a terminal).

    Returns ``{parameter: bool tensor of its shape, on its device}``, what
    :meth:`ChildTuningAdamW.set_gradient_mask` takes. The model is left in the
    training mode it had, with zeroed gradients.
    """
    if isinstance(reserve_p, bool) or not isinstance(reserve_p, (int, float)):
        raise TypeError(f"reserve_p must be a real number, not {reserve_p!r}")
    if not 0.0 < float(reserve_p) <= 1.0:
        raise ValueError(f"reserve_p = {reserve_p!r} is outside (0, 1]")
    if rule not in ("percentile", "exact_count"):
        raise ValueError(f"rule must be 'percentile' or 'exact_count', not {rule!r}")
    max_norm = _max_norm(grad_clip)
    chosen = _selector(include)
    named = list(model.named_parameters())
    selected = [(n, p) for n, p in named if chosen(n) and p.requires_grad]
    if not selected:
        shown = ", ".join(repr(n) for n, _ in named[:4]) + (f" and {len(named) - 4} more" if len(named) > 4 else "")
        raise ValueError(f"calculate_fisher: the filter selects none of the model's {len(named)} parameters "
                         f"({shown}); only parameters that require grad count")
    try:
        batches = len(data_loader)
    except TypeError:
        batches = 0
    fisher = _C.Fisher(max_norm, batches)
    for n, p in selected:
        fisher.add_tensor(n, p.numel())
    show = sys.stderr.isatty() if progress is None else bool(progress)
    was_training = model.training
    model.train()
    model.zero_grad()
    seen = 0
    try:
        for batch in data_loader:
            with torch.enable_grad():
                loss = forward_step(model, batch)
                loss.backward()
            for n, p in selected:
                if p.grad is not None:
                    fisher.accumulate(n, p.grad)
            fisher.end_batch()
            model.zero_grad()
            seen += 1
            if show:
                total = f"/{batches}" if batches else ""
                print(f"\rFisher information: batch {seen}{total}", end="", file=sys.stderr, flush=True)
    finally:
        if show and seen:
            print(file=sys.stderr)
        model.zero_grad()
        model.train(was_training)
    masks, _threshold, _kept = fisher.select(float(reserve_p), rule)
    return {p: masks[n].view(p.shape).to(p.device) for n, p in selected}
