"""Scores of recovered structures, of learned representations and of attribute edits."""

from .editing import edit_effects, pixel_change
from .latents import MCCResult, block_r2, block_r2_scores, mcc, support_recovery
from .structure import matched_structure_scores, structure_scores

__all__ = [
    "MCCResult",
    "block_r2",
    "block_r2_scores",
    "edit_effects",
    "matched_structure_scores",
    "mcc",
    "pixel_change",
    "structure_scores",
    "support_recovery",
]
