"""Mask policies beyond Child-Tuning_F and _D, for ``set_mask`` / ``mask=``.

Each is a frozen value (its hyperparameters); the optimizer hands it to the
C++ library, which runs it inside the step: the scores come from the training
gradients themselves (no extra forward or backward pass), the selection is the
library's O(N) top-p cut, and what the policy carries between steps (window
sums, the current masks) is saved in ``state_dict()`` and resumes bit for bit.

- :class:`Magnitude` — SIFT (Song et al. 2023): keep the top ``p`` of
  gradient components by magnitude, fresh every step or fixed after a window.
- :class:`RefreshedFisher` — DPS (Zhang et al. 2022): the top ``p`` by summed
  squared gradients, reselected every ``period`` steps, with optional warm-up
  and dense phases.

``p`` is a number in (0, 1] or a sequence with one number per parameter group.
``scope`` is ``'per_tensor'`` (one cut per tensor) or ``'global'`` (one cut over
every masked tensor); ``rule`` is ``'exact_count'`` (exactly round(p·N), ties
by index) or ``'percentile'`` (numpy.percentile's cut, ties kept).
"""

import dataclasses
import numbers

__all__ = ["Magnitude", "RefreshedFisher"]

_SCOPES = ("per_tensor", "global")
_RULES = ("exact_count", "percentile")


def _check_p(who, p):
    ps = list(p) if isinstance(p, (list, tuple)) else [p]
    if not ps:
        raise ValueError(f"{who}: p is an empty sequence; give a number or one per parameter group")
    for i, x in enumerate(ps):
        where = "p" if len(ps) == 1 and not isinstance(p, (list, tuple)) else f"p[{i}]"
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            raise TypeError(f"{who}: {where} must be a real number, not {x!r}")
        if not 0.0 < float(x) <= 1.0:
            raise ValueError(f"{who}: {where} = {x!r} is outside (0, 1]; p is the fraction of elements kept")


def _check_count(who, name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{who}: {name} must be an integer, not {value!r}")
    if not minimum <= value < 2**64:
        raise ValueError(f"{who}: {name} = {value!r} is outside [{minimum}, 2**64)")


def _check_choice(who, name, value, choices):
    if value not in choices:
        raise ValueError(f"{who}: {name} must be one of {', '.join(map(repr, choices))}, not {value!r}")


class _Policy:
    """What both policies share: their p as the library wants it, and a dict
    form for ``state_dict()``."""

    def _ratio(self, groups):
        """(number, {group name: p}) for an optimizer with ``groups`` groups."""
        if isinstance(self.p, (list, tuple)):
            if len(self.p) != groups:
                raise ValueError(f"{self._who}: p has {len(self.p)} values for {groups} parameter groups")
            return 1.0, {f"param_group{g}": float(x) for g, x in enumerate(self.p)}
        return float(self.p), {}

    def _check_selection(self):
        """p, scope and rule, which both policies share (p kept as a tuple: frozen all the way down)."""
        _check_p(self._who, self.p)
        if isinstance(self.p, list):
            object.__setattr__(self, "p", tuple(self.p))
        _check_choice(self._who, "scope", self.scope, _SCOPES)
        _check_choice(self._who, "rule", self.rule, _RULES)

    def to_dict(self):
        """The hyperparameters and the policy's name (what ``from_dict`` reads)."""
        d = dataclasses.asdict(self)
        if isinstance(self.p, tuple):
            d["p"] = list(self.p)
        return dict(d, policy=type(self).__name__)


@dataclasses.dataclass(frozen=True)
class Magnitude(_Policy):
    """SIFT's magnitude mask: step c keeps the top ``p`` of |g| (``window=0``:
    a fresh mask every step), or, with ``window=W``, steps 0..W-2 train densely
    while |g| is summed and step W-1 fixes the mask to the top ``p`` of the sum."""

    p: object = 0.1
    window: int = 0
    scope: str = "per_tensor"
    rule: str = "exact_count"
    _who = "Magnitude"

    def __post_init__(self):
        self._check_selection()
        _check_count(self._who, "window", self.window)

    def _apply(self, core, groups):
        p, per_group = self._ratio(groups)
        core.set_magnitude(p, per_group, self.scope, self.rule, int(self.window))


@dataclasses.dataclass(frozen=True)
class RefreshedFisher(_Policy):
    """DPS's refreshed Fisher mask: every step adds g² to the scores; steps
    before ``warmup`` train densely; at ``warmup + k·period`` the mask becomes
    the top ``p`` of the scores since the last reselection (then reset); the
    last ``dense_steps`` steps of each period train densely."""

    p: object = 0.3
    period: int = 100
    warmup: int = 0
    dense_steps: int = 0
    scope: str = "per_tensor"
    rule: str = "exact_count"
    _who = "RefreshedFisher"

    def __post_init__(self):
        self._check_selection()
        _check_count(self._who, "period", self.period, minimum=1)
        _check_count(self._who, "warmup", self.warmup)
        _check_count(self._who, "dense_steps", self.dense_steps)
        if self.dense_steps >= self.period:
            raise ValueError(f"{self._who}: dense_steps = {self.dense_steps} is not below period = {self.period} "
                             "(no step would be masked)")

    def _apply(self, core, groups):
        p, per_group = self._ratio(groups)
        core.set_refreshed_fisher(p, per_group, self.scope, self.rule, int(self.warmup), int(self.period),
                                  int(self.dense_steps))


_POLICIES = {"Magnitude": Magnitude, "RefreshedFisher": RefreshedFisher}


def from_dict(d):
    """The policy ``to_dict`` described (None for None)."""
    if d is None:
        return None
    if not isinstance(d, dict) or d.get("policy") not in _POLICIES:
        raise ValueError(f"load_state_dict: unknown mask policy {d!r}")
    fields = {k: v for k, v in d.items() if k != "policy"}
    return _POLICIES[d["policy"]](**fields)
