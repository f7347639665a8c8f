"""specialize: from generalist to specialist representations.

Layer 1 finds which time steps serve which task from conditional-independence tests in
which tasks are colliders (:func:`discover_structure`). Layer 2 separates each task's latent
coordinates from a generalist representation (:class:`SparseTaskVAE`). :class:`Specializer`
runs both on raw sequences: learned step latents, their task structure, a specialist per task.
"""

__version__ = "0.1.0"

from .datasets import make_agent_video, make_task_latents, make_task_sequences  # noqa: E402
from .structure import TaskStructure, discover_structure  # noqa: E402

__all__ = [
    "SparseTaskVAE",
    "Specializer",
    "TaskStructure",
    "__version__",
    "discover_structure",
    "make_agent_video",
    "make_task_latents",
    "make_task_sequences",
]


def __getattr__(name):
    # Layer 2 needs PyTorch; importing it only when asked keeps Layer 1 light.
    if name == "SparseTaskVAE":
        from .latent import SparseTaskVAE

        return SparseTaskVAE
    if name == "Specializer":
        from .pipeline import Specializer

        return Specializer
    raise AttributeError(f"module 'specialize' has no attribute {name!r}")
