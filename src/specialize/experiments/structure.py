"""Structure recovery as the number of steps or of tasks grows (the paper's synthetic study).

Data of a (setting, seed) run: ``make_task_sequences(n, T, M, state_dim=2, segment_length=2,
random_state=seed)``, linear Gaussian with the states observed (X = ``data.obs``); n = 10,000
(quick: 2,000).

- ``structure-vs-steps``: T in {8, 12, 16, 20} with M = max(1, round(T / 5)) (quick: T in
  {8, 12}).
- ``structure-vs-tasks``: T = 20 with M in {2, 4, 6, 8, 10} (quick: T = 12, M in {2, 4}).

Methods, each scored at the step level against ``data.step_assignment`` by
:func:`specialize.metrics.structure_scores` (precision, recall, F1, accuracy, exact), with the
wall time of its fit in seconds:

- ``algorithm-1``: :func:`specialize.discover_structure` with the package defaults.
- ``algorithm-1-pairwise``: Algorithm 1 as the paper states it: the band test of every pair of
  segments given the task (``mode="pairwise"``, ``conditioning="band"``), each pair at level
  0.05 with no multiple-testing correction, and a dependent pair marks both of its segments
  (``aggregation="any"``).
- ``cca``: :class:`specialize.baselines.CCAStructure` with its defaults.
- ``group-lasso``: :class:`specialize.baselines.GroupLassoLatents` on the steps' states
  flattened to (n, T * d) against the tasks; step t serves task k when any of its d
  coordinates is selected for task k. It keeps all its defaults (5-fold cross-validation
  over 30 penalty weights) and is the slowest method by far: at n = 10,000 with one BLAS
  thread one fit took 1.3 s at T = 8, M = 2 and 10 s at T = 20, M = 10, and one seed of both
  studies 48 s in all, so ten seeds take about 8 minutes.

Both studies share :func:`run_structure`, which runs a list of :class:`StructureMethod`; a
study that adds methods (or metrics beyond the structure scores) passes its own list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..datasets import TaskSequences, make_task_sequences
from ..metrics.structure import structure_scores
from ..structure import discover_structure
from .runner import Experiment, aggregate

N_SAMPLES = 10_000
QUICK_N_SAMPLES = 2_000
STATE_DIM = 2
SEGMENT_LENGTH = 2
STRUCTURE_METRICS = ("precision", "recall", "f1", "accuracy", "exact", "seconds")


@dataclass(frozen=True)
class StructureMethod:
    """A method of a structure study.

    Attributes
    ----------
    name : str
        The ``method`` value of its rows.
    evaluate : callable (data: TaskSequences, seed: int) -> dict
        Fits the method on ``data`` with every random choice seeded from ``seed`` and returns
        its metrics (:func:`step_scores` of its step-task matrix, plus any others). The
        runner adds ``seconds``, the wall time of the call, unless the dict has it already.
    """

    name: str
    evaluate: Callable[[TaskSequences, int], dict]


def step_scores(step_tasks, data: TaskSequences) -> dict:
    """Precision, recall, F1, accuracy and exact recovery of a (T, M) step-task matrix."""
    scores = structure_scores(step_tasks, data.step_assignment)
    return {k: scores[k] for k in ("precision", "recall", "f1", "accuracy", "exact")}


def algorithm_1(data: TaskSequences, seed: int) -> dict:
    """Step scores of ``discover_structure`` with the package defaults on ``data.obs``."""
    result = discover_structure(
        data.obs, data.tasks, segment_length=SEGMENT_LENGTH, random_state=seed
    )
    return step_scores(result.step_tasks, data)


def _algorithm_1_pairwise(data: TaskSequences, seed: int) -> dict:
    result = discover_structure(
        data.obs,
        data.tasks,
        segment_length=SEGMENT_LENGTH,
        mode="pairwise",
        conditioning="band",
        correction=None,
        aggregation="any",
        random_state=seed,
    )
    return step_scores(result.step_tasks, data)


def cca(data: TaskSequences, seed: int) -> dict:
    """Step scores of the CCA baseline on ``data.obs``."""
    from ..baselines import CCAStructure

    return step_scores(CCAStructure().fit(data.obs, data.tasks).step_tasks_, data)


def _group_lasso(data: TaskSequences, seed: int) -> dict:
    from ..baselines import GroupLassoLatents

    n, T, d = data.obs.shape
    model = GroupLassoLatents(random_state=seed)
    model.fit(data.obs.reshape(n, T * d), data.tasks)
    return step_scores(flat_dims_to_steps(model.relevant_dims_, T, d), data)


def flat_dims_to_steps(relevant_dims: Sequence, n_steps: int, state_dim: int) -> np.ndarray:
    """(T, M) bool: step t serves task k when a column t*d + j (j < d) is in relevant_dims[k].

    relevant_dims : per task, indices into the columns of states flattened to (n, T * d).
    """
    step_tasks = np.zeros((n_steps, len(relevant_dims)), dtype=bool)
    for k, dims in enumerate(relevant_dims):
        step_tasks[np.unique(np.asarray(dims, dtype=int) // state_dim), k] = True
    return step_tasks


STRUCTURE_METHODS = (
    StructureMethod("algorithm-1", algorithm_1),
    StructureMethod("algorithm-1-pairwise", _algorithm_1_pairwise),
    StructureMethod("cca", cca),
    StructureMethod("group-lasso", _group_lasso),
)


def run_structure(
    setting: dict, seed: int, quick: bool, *, methods: Sequence[StructureMethod] = STRUCTURE_METHODS
) -> list[dict]:
    """One run of a structure study: the data of ``setting`` and ``seed``, one row per method.

    setting : dict with ``n_samples``, ``n_steps`` and ``n_tasks``.
    Returns a list of dicts: ``method``, the method's metrics and ``seconds``.
    """
    data = make_task_sequences(
        setting["n_samples"],
        setting["n_steps"],
        setting["n_tasks"],
        state_dim=STATE_DIM,
        segment_length=SEGMENT_LENGTH,
        random_state=seed,
    )
    return evaluate_methods(data, seed, methods)


def evaluate_methods(
    data: TaskSequences, seed: int, methods: Sequence[StructureMethod]
) -> list[dict]:
    """One row per method on ``data``: ``method``, its metrics and its ``seconds``."""
    rows = []
    for method in methods:
        started = time.perf_counter()
        metrics = method.evaluate(data, seed)
        rows.append({"method": method.name, **metrics})
        rows[-1].setdefault("seconds", time.perf_counter() - started)
    return rows


def steps_settings(quick: bool) -> list[dict]:
    """T in {8, 12, 16, 20} (quick: {8, 12}) with M = max(1, round(T / 5))."""
    n = QUICK_N_SAMPLES if quick else N_SAMPLES
    steps = (8, 12) if quick else (8, 12, 16, 20)
    return [{"n_samples": n, "n_steps": T, "n_tasks": max(1, round(T / 5))} for T in steps]


def tasks_settings(quick: bool) -> list[dict]:
    """T = 20 with M in {2, 4, 6, 8, 10} (quick: T = 12 with M in {2, 4})."""
    if quick:
        return [{"n_samples": QUICK_N_SAMPLES, "n_steps": 12, "n_tasks": M} for M in (2, 4)]
    return [{"n_samples": N_SAMPLES, "n_steps": 20, "n_tasks": M} for M in (2, 4, 6, 8, 10)]


def plot_scores_against(
    rows: list[dict],
    out_dir: Path,
    *,
    x: str,
    x_label: str,
    metrics: Sequence[str] = ("f1", "accuracy"),
    filename: str = "f1_accuracy.png",
) -> list[Path]:
    """One panel per metric against ``x``: a line per method, error bars of one std over seeds.

    Returns the path of the PNG written in ``out_dir``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(metrics), 3.4))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    lines = aggregate(rows, ["method", x], metrics)
    methods = list(dict.fromkeys(line["method"] for line in lines))
    for ax, metric in zip(axes, metrics, strict=True):
        for method in methods:
            points = sorted(
                (line[x], *line[metric][:2]) for line in lines if line["method"] == method
            )
            xs, means, stds = (np.array(v, dtype=float) for v in zip(*points, strict=True))
            ax.errorbar(xs, means, yerr=np.nan_to_num(stds), marker="o", capsize=3, label=method)
        ax.set_xlabel(x_label)
        ax.set_ylabel(metric)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xticks(sorted({line[x] for line in lines}))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(out_dir) / filename
    fig.savefig(path, dpi=120)
    return [path]


STRUCTURE_VS_STEPS = Experiment(
    name="structure-vs-steps",
    description=(
        "Step-level structure recovery against the number of steps T (M = T / 5 tasks), "
        "linear Gaussian sequences with observed states, by Algorithm 1 (segment tests, the "
        "paper's pairwise tests) and the CCA and group-lasso baselines."
    ),
    settings=steps_settings,
    run=run_structure,
    metrics=STRUCTURE_METRICS,
    plot=partial(plot_scores_against, x="n_steps", x_label="steps T"),
)

STRUCTURE_VS_TASKS = Experiment(
    name="structure-vs-tasks",
    description=(
        "Step-level structure recovery against the number of tasks M at T = 20 steps, linear "
        "Gaussian sequences with observed states, by Algorithm 1 (segment tests, the paper's "
        "pairwise tests) and the CCA and group-lasso baselines."
    ),
    settings=tasks_settings,
    run=run_structure,
    metrics=STRUCTURE_METRICS,
    plot=partial(plot_scores_against, x="n_tasks", x_label="tasks M"),
)
