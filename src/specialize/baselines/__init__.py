"""Baselines for the paper's comparisons.

:class:`CCAStructure` recovers step-task structure from marginal association (Layer 1's
comparison); :class:`GroupLassoLatents` selects each task's latent coordinates with a
group-lasso additive model (Layer 2's comparison). See ``docs/baselines.md``.
"""

from .cca import CCAStructure

__all__ = ["CCAStructure", "GroupLassoLatents"]


def __getattr__(name):
    # The group lasso shares SparseTaskVAE's target encoding, whose module imports PyTorch;
    # importing it only when asked keeps the structure baseline light.
    if name == "GroupLassoLatents":
        from .group_lasso import GroupLassoLatents

        return GroupLassoLatents
    raise AttributeError(f"module 'specialize.baselines' has no attribute {name!r}")
