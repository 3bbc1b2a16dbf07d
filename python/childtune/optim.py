"""Child-Tuning optimizers as ``torch.optim.Optimizer`` subclasses.

The Python classes keep torch's face (``param_groups``, ``state_dict()``,
``zero_grad()``, LR schedulers, ``clip_grad_norm_`` on the gradients); every
step runs in the C++ library (``childtune._C``): the keyed Bernoulli masks
(Child-Tuning_F), the fixed masks (Child-Tuning_D), the update rule on the
fused CPU executor (CPU tensors), the Thrust executor (CUDA tensors, when the
extension was built with CUDA) or the ATen executor (any other tensor).

``param_groups`` is the source of truth for hyperparameters: before every
step, every group's values are validated and copied into the C++ optimizer,
so a scheduler's (or the user's) change between steps takes effect, and a bad
value raises ``ValueError`` before anything changes.
"""

import numbers

import torch

from . import _C
from . import masks as _masks

__all__ = ["ChildTuningAdamW", "ChildTuningAdam", "ChildTuningSGD", "ChildTuningLion", "ChildTuningLAMB"]

_MODES = (None, "ChildTuning-F", "ChildTuning-D")
_FLOATS = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _number(group, g, key):
    value = group[key]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"param_group{g}: {key} must be a real number, not {type(value).__name__} ({value!r})")
    return float(value)


def _flag(group, g, key):
    value = group[key]
    if not isinstance(value, (bool, int)) or value not in (0, 1):
        raise TypeError(f"param_group{g}: {key} must be True or False, not {value!r}")
    return bool(value)


def _betas(group, g):
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"param_group{g}: betas must be a pair (beta1, beta2), not {betas!r}")
    out = []
    for i, b in enumerate(betas):
        if isinstance(b, bool) or not isinstance(b, numbers.Real):
            raise TypeError(f"param_group{g}: betas[{i}] must be a real number, not {b!r}")
        out.append(float(b))
    return out


def _check_masking(mode, reserve_p, seed):
    if mode not in _MODES:
        raise ValueError(f"mode must be None, 'ChildTuning-F' or 'ChildTuning-D', not {mode!r}")
    if isinstance(reserve_p, bool) or not isinstance(reserve_p, numbers.Real):
        raise TypeError(f"reserve_p must be a real number, not {reserve_p!r}")
    if not (0.0 < float(reserve_p) <= 1.0):
        raise ValueError(f"reserve_p = {reserve_p!r} is outside (0, 1]")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
        raise TypeError(f"seed must be an integer in [0, 2**64), not {seed!r}")


def _check_policy(mask, mode):
    if mask is None:
        return
    if not isinstance(mask, _masks._Policy):
        raise TypeError(f"mask must be None, childtune.Magnitude or childtune.RefreshedFisher, not {type(mask).__name__}")
    if mode is not None:
        raise ValueError(f"mask={mask!r} and mode={mode!r} are alternatives: set mode=None to use the mask policy")


def _check_state(state):
    if not isinstance(state, str):
        raise TypeError(f"state must be 'fp32' or '8bit', not {state!r}")
    if state not in ("fp32", "8bit"):
        raise ValueError(f"state must be 'fp32' or '8bit', not {state!r}")


class _ChildTuningOptimizer(torch.optim.Optimizer):
    """What every rule shares: groups, masks, steps, state_dict. A subclass names
    its C++ core and turns a group's dict into the rule's option values."""

    _core_type = None

    def __init__(self, params, defaults, reserve_p, mode, seed, mask=None, state="fp32"):
        _check_masking(mode, reserve_p, seed)
        _check_policy(mask, mode)
        _check_state(state)
        defaults = dict(defaults, masked=True)
        self._core = None
        super().__init__(params, defaults)
        self.reserve_p = float(reserve_p)
        self.mode = mode
        self.seed = int(seed)
        self.gradient_mask = None
        self.mask = mask
        self._pending_fixed = None
        self._applied = None
        self._applied_mask = None
        groups = self.param_groups
        self._named_groups = len(groups)
        self._core = self._core_type(
            [[self._param_name(g, i) for i in range(len(group["params"]))] for g, group in enumerate(groups)],
            [list(group["params"]) for group in groups],
            [self._values(group, g) for g, group in enumerate(groups)],
            [group["masked"] for group in groups],
            state)
        if mode != "ChildTuning-D":
            self._apply_mode()

    # ---- what subclasses define --------------------------------------------------------------

    def _values(self, group, g):
        """The group's options as the rule's doubles (C++ Rule::to_values order)."""
        raise NotImplementedError

    # ---- groups --------------------------------------------------------------------------------

    def _param_name(self, g, i):
        """The name that keys parameter i of group g (its Bernoulli masks, its
        entry in the state file): the given name for groups built from
        ``named_parameters()`` at construction, else ``param_group<g>.<i>``
        (as the C++ optimizer names parameters given without names)."""
        group = self.param_groups[g]
        if g < getattr(self, "_named_groups", len(self.param_groups)) and "param_names" in group:
            return group["param_names"][i]
        return f"param_group{g}.{i}"

    def add_param_group(self, param_group):
        """torch's add_param_group, with the checks the fused step needs: float,
        double, bfloat16 or half, contiguous, dense tensors on one device. The
        parameters may be ``(name, tensor)`` pairs (``model.named_parameters()``):
        the names key the Child-Tuning_F masks (so they do not depend on the
        order of the parameters) for the groups given at construction; groups
        added later are keyed by generated names. On any error the optimizer is
        unchanged."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a param group must be a dict, not {type(param_group).__name__}")
        params = param_group.get("params")
        if isinstance(params, torch.Tensor):
            params = [params]
        elif params is not None and not isinstance(params, (set, frozenset)):
            params = list(params)
        if params and any(isinstance(x, tuple) for x in params):
            if not all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in params):
                raise TypeError("a param group's params must be all tensors or all (name, tensor) pairs")
            names = [x[0] for x in params]
            if len(set(names)) != len(names):
                raise ValueError(f"a param group names a parameter twice: {sorted(n for n in set(names) if names.count(n) > 1)}")
            param_group = dict(param_group, params=[x[1] for x in params], param_names=names)
        elif params is not None:
            param_group = dict(param_group, params=params)
        super().add_param_group(param_group)
        g = len(self.param_groups) - 1
        group = self.param_groups[g]
        try:
            if not isinstance(group["masked"], bool):
                raise TypeError(f"param_group{g}: masked must be True or False, not {group['masked']!r}")
            first = self.param_groups[0]["params"][0] if self.param_groups[0]["params"] else None
            for i, p in enumerate(group["params"]):
                where = f"param_group{g}, tensor '{self._param_name(g, i)}'"
                if p.layout != torch.strided:
                    raise ValueError(f"{where}: sparse or non-strided parameters are not supported")
                if p.dtype not in _FLOATS:
                    raise TypeError(f"{where}: dtype {p.dtype} is not supported (float32, float64, bfloat16, float16)")
                if not p.is_contiguous():
                    raise ValueError(f"{where}: the parameter is not contiguous (shape {tuple(p.shape)}, "
                                     f"stride {p.stride()}); the fused step works on its memory in place")
                if first is not None and p.device != first.device:
                    raise ValueError(f"{where}: on {p.device}, but the optimizer's parameters are on {first.device}")
            values = self._values(group, g)
            self._core_type.validate(values, g)
            if self._core is not None:
                self._core.add_group(list(group["params"]), values, group["masked"])
        except Exception:
            self.param_groups.pop()
            raise

    # ---- masks ---------------------------------------------------------------------------------

    def _apply_mode(self):
        """Gives the C++ optimizer the mask that mode, reserve_p and seed (plain
        attributes, as in the published class, which users may change between
        steps) and the last set_gradient_mask call say; checked first."""
        _check_masking(self.mode, self.reserve_p, self.seed)
        _check_policy(self.mask, self.mode)
        wanted = (self.mode, float(self.reserve_p), int(self.seed), id(self._pending_fixed))
        if wanted == self._applied and self.mask is self._applied_mask:   # a policy object is applied once
            return
        if self.mask is not None:
            self.mask._apply(self._core, len(self.param_groups))
        elif self.mode == "ChildTuning-F":
            self._core.set_bernoulli(float(self.reserve_p), int(self.seed))
        elif self.mode == "ChildTuning-D":
            if self._pending_fixed is None:
                raise ValueError("mode 'ChildTuning-D' needs set_gradient_mask(...) before the first step")
            self._core.set_fixed(self._pending_fixed)
        else:
            self._core.set_dense()
        self._applied = wanted
        self._applied_mask = self.mask

    def _name_of(self):
        names = {}
        for g, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                names[id(p)] = (self._param_name(g, i), p, group["masked"])
        return names

    def set_gradient_mask(self, gradient_mask):
        """The Child-Tuning_D mask: ``{parameter: 0/1 tensor of its shape, or a
        bool}`` (what :func:`childtune.calculate_fisher` returns). Parameters of
        masked groups that the dict leaves out train densely, as in the published
        class. Checked completely before anything changes; used by
        ``mode='ChildTuning-D'`` (other modes keep it for later, as the published
        class does)."""
        if not isinstance(gradient_mask, dict):
            raise TypeError(f"set_gradient_mask takes a dict {{parameter: mask}}, not {type(gradient_mask).__name__}")
        names = self._name_of()
        given = {}
        for p, m in gradient_mask.items():
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"set_gradient_mask: a key is a {type(p).__name__}, not a parameter tensor")
            if id(p) not in names:
                raise ValueError(f"set_gradient_mask: a mask is given for a parameter of shape {tuple(p.shape)} "
                                 "that this optimizer does not hold")
            name, param, masked = names[id(p)]
            if not masked:
                raise ValueError(f"set_gradient_mask: '{name}' is in a group with masked=False (trained densely)")
            if isinstance(m, bool):
                m = torch.full(param.shape, m, dtype=torch.bool)
            elif not isinstance(m, torch.Tensor):
                raise TypeError(f"set_gradient_mask: the mask of '{name}' is a {type(m).__name__}, "
                                "not a tensor or a bool")
            if tuple(m.shape) != tuple(param.shape):
                raise ValueError(f"set_gradient_mask: the mask of '{name}' has shape {tuple(m.shape)}, "
                                 f"the parameter {tuple(param.shape)}")
            given[name] = m
        full = []
        for name, param, masked in names.values():
            if masked:
                full.append((name, given[name] if name in given else torch.ones(param.shape, dtype=torch.bool)))
        if self.mode == "ChildTuning-D":
            self._core.set_fixed(full)          # checked by the library before it replaces the mask
            self._applied = (self.mode, float(self.reserve_p), int(self.seed), id(full))
        self._pending_fixed = full
        self.gradient_mask = gradient_mask

    def set_mask(self, mask):
        """A mask policy of :mod:`childtune.masks` (:class:`~childtune.Magnitude`,
        :class:`~childtune.RefreshedFisher`), or None for ``mode``'s mask again.
        Checked before anything changes; the policy starts from scratch (its
        window sums and masks are empty) and covers the groups with
        ``masked=True``."""
        _check_policy(mask, self.mode)
        previous = self.mask
        self.mask = mask
        try:
            self._apply_mode()
        except Exception:
            self.mask = previous                     # refused (p against the groups, or by the library): nothing changed
            raise

    def summary(self, count_kept=True):
        """One line per group, then one per tensor: masked or not, the policy,
        tensors, elements and, after a step, the elements the last step kept
        (``count_kept=False``: the shape alone, at no cost per element)."""
        self._apply_mode()
        return self._core.summary(bool(count_kept))[0]

    def kept_fraction(self):
        """{group index: fraction of its elements the last step kept} (None
        before the first step); a group with ``masked=False`` keeps 1.0."""
        self._apply_mode()
        groups = self._core.summary(True)[2]
        return {g: (None if kept is None else (kept / elements if elements else 0.0))
                for g, (_, _, _, _, elements, kept) in enumerate(groups)}

    def mask_overlap(self):
        """For a :class:`~childtune.RefreshedFisher` mask: {tensor name: fraction
        of the newest mask's kept elements that the mask before it kept too}, at
        the last reselection (empty before the second); None for other masks."""
        got = self._core.refresh_overlap()
        if got is None:
            return None
        _, tensors = got
        return {name: (both / now if now else 1.0) for name, _, now, both in tensors}

    # ---- steps ---------------------------------------------------------------------------------

    def _sync(self):
        values, masked = [], []
        for g, group in enumerate(self.param_groups):
            values.append(self._values(group, g))
            masked.append(group["masked"])
        self._core.set_values(values, masked)

    def step(self, closure=None):
        """One Child-Tuning step of every parameter with a gradient; ``closure``
        (optional) recomputes the loss, which is returned."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._apply_mode()
        self._sync()
        applied, bad = self._core.step()
        self.last_step_applied = applied
        self.last_nonfinite_tensor = bad
        return loss

    @property
    def step_count(self):
        """Steps applied so far (the counter that keys the Bernoulli masks)."""
        return self._core.step_count()

    def set_threads(self, threads):
        """Threads of the fused CPU step (0: OpenMP's default). Results do not depend on it."""
        self._core.set_threads(int(threads))

    def state_bytes(self):
        """Bytes of optimizer state held now: 8 per AdamW parameter with
        ``state='fp32'``, about 2.03 with ``state='8bit'``."""
        return self._core.state_bytes()

    def force_aten_path(self, on=True):
        """Steps CPU tensors through the ATen executor too (testing that path
        without a GPU); choose before the first step."""
        self._core.force_aten_path(bool(on))

    def step_paths(self):
        """{parameter name: where its step runs}: ``'cpu'`` (the fused CPU
        kernels), ``'cuda'`` (the fused CUDA kernels, when the extension was built
        with them) or ``'aten'`` (the rule as ATen operations: other devices, a
        CUDA tensor without the kernels, or :meth:`force_aten_path`)."""
        return dict(zip(self._core.names(), self._core.paths()))

    # ---- checkpoints ---------------------------------------------------------------------------

    def state_dict(self):
        """torch's state dict plus ``'childtune'``: the library's state file (step
        counters, Bernoulli seed, fixed masks, moments) as a uint8 tensor, and the
        mode. ``load_state_dict`` of it resumes bit-identically."""
        self._sync()
        if self.mode != "ChildTuning-D" or self._pending_fixed is not None:
            self._apply_mode()                  # mode, reserve_p or seed changed since the last step
        sd = super().state_dict()
        blob = self._core.save()
        sd["childtune"] = {
            "format": 1,
            "state": torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob else torch.empty(0, dtype=torch.uint8),
            "mode": self.mode,
            "reserve_p": self.reserve_p,
            "seed": self.seed,
            "mask": None if self.mask is None else self.mask.to_dict(),
        }
        return sd

    def load_state_dict(self, state_dict):
        """Restores what state_dict() returned, for the same parameters; raises
        ValueError and changes nothing when it does not fit."""
        if not isinstance(state_dict, dict) or "childtune" not in state_dict:
            raise ValueError("load_state_dict: not a childtune optimizer state dict (no 'childtune' entry)")
        extra = state_dict["childtune"]
        if not isinstance(extra, dict) or extra.get("format") != 1:
            raise ValueError(f"load_state_dict: unknown childtune state format {extra.get('format') if isinstance(extra, dict) else extra!r}")
        if extra.get("mode") not in _MODES:
            raise ValueError(f"load_state_dict: unknown mode {extra.get('mode')!r}")
        mask = _masks.from_dict(extra.get("mask"))     # absent in state dicts of childtune 0.2.0
        blob = extra.get("state")
        if not isinstance(blob, torch.Tensor) or blob.dtype != torch.uint8 or blob.dim() != 1:
            raise ValueError("load_state_dict: the childtune state is not a 1-d uint8 tensor")
        before = [dict(group) for group in self.param_groups]
        rest = {k: v for k, v in state_dict.items() if k != "childtune"}
        super().load_state_dict(rest)
        # A policy's carried state loads into a policy of its type: install it
        # first, keeping the current state to put back if the load fails.
        backup = self._core.save() if mask is not None else None
        try:
            self._sync()
            if mask is not None:
                mask._apply(self._core, len(self.param_groups))
            self._core.load(blob.detach().cpu().contiguous().numpy().tobytes())
        except Exception:
            self.param_groups = before
            self._sync()
            if backup is not None:
                if self.mask is not None:
                    self.mask._apply(self._core, len(self.param_groups))
                else:
                    self._core.set_dense()           # the file's own mode mask replaces it
                self._core.load(backup)
            raise
        self.state.clear()
        self.mode, self.reserve_p, self.seed = extra["mode"], float(extra["reserve_p"]), int(extra["seed"])
        self.mask = mask
        # the C++ optimizer now holds the checkpoint's mask (a fixed one included,
        # a policy with what it carried): applying it again would start it afresh
        self._pending_fixed = None
        self._applied = (self.mode, self.reserve_p, self.seed, id(None))
        self._applied_mask = self.mask


class ChildTuningAdamW(_ChildTuningOptimizer):
    """Drop-in replacement for the published ``ChildTuningAdamW`` (Xu et al.
    2021): the same arguments and defaults, the legacy AdamW (weight decay on
    every parameter after the update; ``flavour='torch'`` gives
    ``torch.optim.AdamW``'s), ``mode`` None (plain AdamW), ``'ChildTuning-F'``
    (a fresh Bernoulli(reserve_p) gradient mask each step, kept entries × 1/p)
    or ``'ChildTuning-D'`` (the fixed mask of :meth:`set_gradient_mask`).

    Extra keyword arguments: ``seed`` keys the Bernoulli masks (the same on every
    rank, device and thread count; independent of torch's RNG), ``flavour``,
    ``mask`` (a policy of :mod:`childtune.masks` instead of ``mode``: SIFT's
    :class:`~childtune.Magnitude`, DPS's :class:`~childtune.RefreshedFisher`),
    ``state`` (``'fp32'``, or ``'8bit'``: every moment as blockwise 8-bit codes,
    about 2 bytes per parameter instead of 8, for CPU parameters; every optimizer
    of this module takes it) and per group ``masked`` (False: the group trains
    densely).
    """

    _core_type = _C.AdamWCore

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, correct_bias=True,
                 reserve_p=1.0, mode=None, *, seed=0, flavour="legacy", mask=None, state="fp32"):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, correct_bias=correct_bias,
                        flavour=flavour)
        super().__init__(params, defaults, reserve_p, mode, seed, mask, state)

    def _values(self, group, g):
        flavour = group["flavour"]
        if flavour not in ("legacy", "torch"):
            raise ValueError(f"param_group{g}: flavour must be 'legacy' or 'torch', not {flavour!r}")
        b1, b2 = _betas(group, g)
        return [_number(group, g, "lr"), b1, b2, _number(group, g, "eps"), _number(group, g, "weight_decay"),
                1.0 if flavour == "legacy" else 0.0, 1.0 if _flag(group, g, "correct_bias") else 0.0]


class ChildTuningAdam(_ChildTuningOptimizer):
    """Adam (``torch.optim.Adam``'s rule: L2 weight decay added to the masked
    gradient) with Child-Tuning masks; ``reserve_p``, ``mode``, ``seed`` and
    ``masked`` as :class:`ChildTuningAdamW`."""

    _core_type = _C.AdamCore

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, reserve_p=1.0, mode=None,
                 *, seed=0, mask=None, state="fp32"):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay), reserve_p, mode, seed,
                         mask, state)

    def _values(self, group, g):
        b1, b2 = _betas(group, g)
        return [_number(group, g, "lr"), b1, b2, _number(group, g, "eps"), _number(group, g, "weight_decay")]


class ChildTuningSGD(_ChildTuningOptimizer):
    """SGD (``torch.optim.SGD``'s rule: momentum, dampening, Nesterov, L2 weight
    decay) with Child-Tuning masks; ``reserve_p``, ``mode``, ``seed`` and
    ``masked`` as :class:`ChildTuningAdamW`."""

    _core_type = _C.SGDCore

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, reserve_p=1.0,
                 mode=None, *, seed=0, mask=None, state="fp32"):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov), reserve_p, mode, seed, mask, state)

    def _values(self, group, g):
        return [_number(group, g, "lr"), _number(group, g, "momentum"), _number(group, g, "dampening"),
                _number(group, g, "weight_decay"), 1.0 if _flag(group, g, "nesterov") else 0.0]


class ChildTuningLion(_ChildTuningOptimizer):
    """Lion (Chen et al. 2023: sign of the interpolated momentum, decoupled
    weight decay) with Child-Tuning masks; ``reserve_p``, ``mode``, ``seed`` and
    ``masked`` as :class:`ChildTuningAdamW`."""

    _core_type = _C.LionCore

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, reserve_p=1.0, mode=None, *, seed=0,
                 mask=None, state="fp32"):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay), reserve_p, mode, seed, mask,
                         state)

    def _values(self, group, g):
        b1, b2 = _betas(group, g)
        return [_number(group, g, "lr"), b1, b2, _number(group, g, "weight_decay")]


class ChildTuningLAMB(_ChildTuningOptimizer):
    """LAMB (You et al. 2020: Adam direction scaled per tensor by the trust
    ratio) with Child-Tuning masks; ``reserve_p``, ``mode``, ``seed`` and
    ``masked`` as :class:`ChildTuningAdamW`; ``trust_clip`` 0 means no bound."""

    _core_type = _C.LAMBCore

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, correct_bias=True,
                 trust_clip=0.0, reserve_p=1.0, mode=None, *, seed=0, mask=None, state="fp32"):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      correct_bias=correct_bias, trust_clip=trust_clip), reserve_p, mode, seed, mask,
                         state)

    def _values(self, group, g):
        b1, b2 = _betas(group, g)
        return [_number(group, g, "lr"), b1, b2, _number(group, g, "eps"), _number(group, g, "weight_decay"),
                1.0 if _flag(group, g, "correct_bias") else 0.0, _number(group, g, "trust_clip")]
