"""The paper's studies as seeded, resumable experiments.

``run_experiment(name, seeds=10, quick=False, out="results")`` runs every setting of a
registered experiment with every seed, keeping each finished run in ``out/name/runs.csv`` so
that an interrupted call resumes where it stopped, and writes a summary table, plots and a
manifest beside it. A new study is an :class:`Experiment` passed to :func:`register`.

Registered here: ``structure-vs-steps`` and ``structure-vs-tasks`` (Layer 1 against the CCA
and group-lasso baselines), ``latent-ablation`` (Layer 2 with and without the penalty) and
``observed-vs-latent`` (Algorithm 1 on raw high-dimensional observations and on learned latents),
``unknown-tasks`` (structure from tasks learned out of an observation of their outcomes) and
``agent-video`` (structure from rendered video: Algorithm 1 on pixels, on per-frame latents and on
latents with a temporal prior) and ``attribute-editing`` (edits of rendered faces through the
task masks of a MaskedImageVAE, with and without sparsity).
"""

from .ablation import LATENT_ABLATION
from .editing import ATTRIBUTE_EDITING
from .observed import OBSERVED_VS_LATENT
from .runner import (
    EXPERIMENTS,
    Experiment,
    ExperimentRun,
    available_experiments,
    get_experiment,
    read_runs,
    register,
    run_experiment,
)
from .structure import STRUCTURE_VS_STEPS, STRUCTURE_VS_TASKS
from .unknown import UNKNOWN_TASKS
from .video import AGENT_VIDEO

for _experiment in (
    STRUCTURE_VS_STEPS,
    STRUCTURE_VS_TASKS,
    LATENT_ABLATION,
    OBSERVED_VS_LATENT,
    UNKNOWN_TASKS,
    AGENT_VIDEO,
    ATTRIBUTE_EDITING,
):
    register(_experiment)

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "ExperimentRun",
    "available_experiments",
    "get_experiment",
    "read_runs",
    "register",
    "run_experiment",
]
