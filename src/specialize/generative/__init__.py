"""Generative models whose latent is split by task masks: edit one task, keep the rest.

:class:`MaskedImageVAE` is the Layer-2 model (a VAE with task heads behind a sparse
task-latent mask) on images, with ``edit(images or latents, task, value)``.
:class:`FactorProbe` reads the generating factors back from images, to score edits. The study
that scores them is ``specialize reproduce attribute-editing`` (docs/generative.md).
"""

from .model import MaskedImageVAE
from .probes import FactorProbe

__all__ = ["FactorProbe", "MaskedImageVAE"]
