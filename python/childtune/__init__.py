"""childtune: Child-Tuning (Xu et al., EMNLP 2021) for PyTorch, on the childtune
C++ library.

- :class:`ChildTuningAdamW` — drop-in for the published class (legacy AdamW,
  ``mode`` None / ``'ChildTuning-F'`` / ``'ChildTuning-D'``,
  ``set_gradient_mask``), fused, with keyed Bernoulli masks that are the same
  on every rank; :class:`ChildTuningAdam`, :class:`ChildTuningSGD`,
  :class:`ChildTuningLion`, :class:`ChildTuningLAMB` under the same conventions.
- :func:`calculate_fisher` — drop-in for ModelScope's helper: the
  Child-Tuning_D mask from Fisher scores.
- :class:`Magnitude` (SIFT) and :class:`RefreshedFisher` (DPS) — mask policies
  chosen from the training gradients inside the step (``mask=`` / ``set_mask``).
- :func:`cpu_kernel_isa` — the instruction set of the CPU kernels (the
  environment variable ``CHILDTUNE_MAX_ISA`` caps it).

Errors of the C++ library are :class:`childtune.Error`, a ValueError.
"""

from . import _C
from ._C import Error
from .fisher import calculate_fisher
from .masks import Magnitude, RefreshedFisher
from .optim import ChildTuningAdam, ChildTuningAdamW, ChildTuningLAMB, ChildTuningLion, ChildTuningSGD


def cpu_kernel_isa():
    """The instruction set childtune's CPU kernels run with in this process:
    ``'avx512'``, ``'avx2'``, ``'sse2'`` or ``'scalar'``: the widest the CPU
    runs, capped by the environment variable ``CHILDTUNE_MAX_ISA`` (``sse2``,
    ``avx2`` or ``avx512``), which is read once, when the first optimizer is
    built; a malformed value is an :class:`Error` there. Every set gives the
    same bits; only the speed differs."""
    return _C.cpu_kernel_isa()


__version__ = "0.2.0"
__all__ = ["ChildTuningAdamW", "ChildTuningAdam", "ChildTuningSGD", "ChildTuningLion", "ChildTuningLAMB",
           "calculate_fisher", "Magnitude", "RefreshedFisher", "Error", "cpu_kernel_isa"]
