"""Layer 1: task structure over time (Algorithm 1 and its variants)."""

from .aggregate import adjust_pvalues
from .discover import discover_structure
from .plan import StructurePlan, band, plan_tests, representatives
from .result import TaskStructure

__all__ = [
    "StructurePlan",
    "TaskStructure",
    "adjust_pvalues",
    "band",
    "discover_structure",
    "plan_tests",
    "representatives",
]
