"""Scores of recovered structures (and, in Layer 2, of learned representations)."""

from .structure import structure_scores

__all__ = ["structure_scores"]
