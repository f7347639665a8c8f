"""Layer 2: specialist latents from a generalist VAE through a sparse task-latent mask."""

from .estimator import SparseTaskVAE
from .selection import threshold_support

__all__ = ["SparseTaskVAE", "threshold_support"]
