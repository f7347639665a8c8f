"""Structure recovery when the tasks are not observed, only an observation of their outcomes.

Data of a (setting, seed) run: ``make_task_sequences(n, T, M, state_dim=2, segment_length=2,
outcome_dim=20, outcome_mixing="mlp", random_state=seed)``: the states of a linear Gaussian
chain are observed, the task variables are not; what is observed instead is a 20-dimensional
rendering of them by a random injective leaky-ReLU MLP (the frame that shows the outcomes).
T = 20 with M in {2, 4, 6}, n = 10,000 (quick: T = 12, M = 2, n = 3,000).

Methods, each scored at the step level after matching its learned tasks to the true ones
(:func:`specialize.metrics.matched_structure_scores`), with ``task_mcc``, the mean absolute
correlation of each learned task latent with its matched true task
(:func:`specialize.metrics.mcc`):

- ``learned-tasks`` (ours): :func:`specialize.structure.unknown.learn_task_readout` on the
  states and outcomes, then :func:`specialize.discover_structure` (package defaults) on the
  learned task latents; ``resolved`` counts the tasks its read-out found (the others, if
  any, complete the basis and may mix tasks).
- ``outcome-components`` (baseline): Algorithm 1 on the M whitened principal components of
  the outcomes, without the sparse read-out that aligns them with the tasks: each component
  mixes every task, which is what the read-out is for.
- ``observed-tasks`` (reference): Algorithm 1 on the true task variables, which the other
  methods do not see.
"""

from __future__ import annotations

from functools import partial

from ..datasets import TaskSequences, make_task_sequences
from ..metrics import matched_structure_scores, mcc
from ..structure import discover_structure
from ..structure.unknown import learn_task_readout, outcome_latents
from .runner import Experiment
from .structure import (
    SEGMENT_LENGTH,
    STRUCTURE_METRICS,
    StructureMethod,
    algorithm_1,
    evaluate_methods,
    plot_scores_against,
)

STATE_DIM = 2
OUTCOME_DIM = 20
SCORES = ("precision", "recall", "f1", "accuracy", "exact")


def unknown_settings(quick: bool) -> list[dict]:
    """T = 20 with M in {2, 4, 6}, n = 10,000 (quick: T = 12, M = 2, n = 3,000)."""
    if quick:
        return [{"n_samples": 3_000, "n_steps": 12, "n_tasks": 2}]
    return [{"n_samples": 10_000, "n_steps": 20, "n_tasks": M} for M in (2, 4, 6)]


def run_unknown(setting: dict, seed: int, quick: bool) -> list[dict]:
    """One run: the data of ``setting`` and ``seed``, one row per method."""
    data = make_task_sequences(
        setting["n_samples"],
        setting["n_steps"],
        setting["n_tasks"],
        state_dim=STATE_DIM,
        segment_length=SEGMENT_LENGTH,
        outcome_dim=OUTCOME_DIM,
        outcome_mixing="mlp",
        random_state=seed,
    )
    methods = (
        StructureMethod("learned-tasks", _learned_tasks),
        StructureMethod("outcome-components", _outcome_components),
        StructureMethod("observed-tasks", _observed_tasks),
    )
    return evaluate_methods(data, seed, methods)


def score_learned_tasks(task_latents, data: TaskSequences, seed: int) -> dict:
    """Matched step scores of Algorithm 1 on ``task_latents`` (n, M), and their task MCC."""
    result = discover_structure(
        data.obs, task_latents, segment_length=SEGMENT_LENGTH, random_state=seed
    )
    scores = matched_structure_scores(result.step_tasks, data.step_assignment)
    return {
        **{k: scores[k] for k in SCORES},
        "task_mcc": mcc(task_latents, data.tasks).score,
    }


def _learned_tasks(data: TaskSequences, seed: int) -> dict:
    readout = learn_task_readout(
        data.obs,
        data.outcomes,
        data.tasks.shape[1],
        segment_length=SEGMENT_LENGTH,
        random_state=seed,
    )
    scores = score_learned_tasks(readout.transform(data.outcomes), data, seed)
    return {**scores, "resolved": readout.n_resolved}


def _outcome_components(data: TaskSequences, seed: int) -> dict:
    components, _, _ = outcome_latents(data.outcomes, data.tasks.shape[1])
    return score_learned_tasks(components, data, seed)


def _observed_tasks(data: TaskSequences, seed: int) -> dict:
    return {**algorithm_1(data, seed), "task_mcc": 1.0}


UNKNOWN_TASKS = Experiment(
    name="unknown-tasks",
    description=(
        "Step-level structure recovery when the tasks are not observed, only a 20-dimensional "
        "MLP rendering of their outcomes: tasks learned by the sparse read-out against the "
        "outcomes' principal components, scored after matching learned to true tasks, with "
        "Algorithm 1 on the true tasks as the reference."
    ),
    settings=unknown_settings,
    run=run_unknown,
    metrics=(*STRUCTURE_METRICS, "task_mcc", "resolved"),
    plot=partial(plot_scores_against, x="n_tasks", x_label="tasks M", metrics=("f1", "task_mcc")),
)
