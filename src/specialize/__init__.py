"""specialize: from generalist to specialist representations.

Layer 1 finds which time steps serve which task from conditional-independence tests in
which tasks are colliders (:func:`discover_structure`).
"""

__version__ = "0.1.0"

from .datasets import make_task_sequences  # noqa: E402
from .structure import TaskStructure, discover_structure  # noqa: E402

__all__ = ["TaskStructure", "__version__", "discover_structure", "make_task_sequences"]
