"""Scores of recovered structures and of learned representations."""

from .latents import MCCResult, block_r2, block_r2_scores, mcc, support_recovery
from .structure import matched_structure_scores, structure_scores

__all__ = [
    "MCCResult",
    "block_r2",
    "block_r2_scores",
    "matched_structure_scores",
    "mcc",
    "structure_scores",
    "support_recovery",
]
