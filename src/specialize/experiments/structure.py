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

In ``structure-vs-tasks`` our method is the whole pipeline: ``algorithm-1`` there is a
:class:`specialize.Specializer` with ``step_encoder="identity"`` (the states are its step
latents) whose structure stage is the ``discover_structure`` call above (same data, same seed,
so the same step-task matrix and structure scores), followed by one cheap
:class:`specialize.latent.SparseTaskVAE` specialist per task (:data:`SPECIALIST_PARAMS`: a
fixed penalty, few epochs, unweighted refits, the configuration measured in
docs/reproduction.md). Its
``seconds`` is the structure stage alone (``Specializer.timings_``), comparable with the other
methods; ``specialist_seconds`` is the time of fitting all the specialists. Its row adds the
mean over tasks of three scores of the specialists' selected latents
(``Specializer.transform(X, k)``), :func:`latent_scores`:

- ``latent_r2``: :func:`specialize.metrics.block_r2` (RBF kernel ridge, 30 % of the rows held
  out, at most :data:`LATENT_R2_MAX_TRAIN` training rows) from the selected latents to the
  task's signal, clipped at 0;
- ``latent_mcc``: Pearson :func:`specialize.metrics.mcc` between the selected latents and the
  signal, that is the largest absolute correlation of a selected coordinate with it;
- ``latent_dims``: the number of selected coordinates.

A task with no discovered step (no specialist) or an empty support scores ``latent_r2 = 0``,
``latent_mcc = 0`` and ``latent_dims = 0``. The specialists are fitted on all n sequences and
scored on the same sequences (``block_r2`` holds out its own rows for its regression; the
specialists never see the signal). The baselines learn no latents; their rows have no latent
scores (empty cells in ``runs.csv``, "n/a" in ``summary.md``, no line in ``latents.png``).

*The truth of task k* is its signal, :func:`task_signals`: the least-squares fit (with an
intercept, on all n sequences) of ``data.tasks[:, k]`` on the flattened states of the true
steps of k (``data.step_assignment[:, k]``), an estimate of E[G_k | states of its steps]. In
this linear Gaussian model a task depends on its steps' states only through this one
projection (the actions are linear in the states plus independent noise, the task is linear in
the actions plus noise), so the "relevant latent" of a task is that 1-dimensional signal, not
every coordinate of its steps: what the states tell about the task is the signal, the rest of
the task is noise independent of them. A support of one coordinate is therefore the target,
and ``SparseTaskVAE`` with the defaults of that time (the l1 penalty path) reached it on some:
on six tasks of seed 0 (T = 20, M in {2, 6, 10}) it kept 1 coordinate on two and 6 to 15 on
the others. The states explain only part of each task (the signal held 10 to 26 % of the
task's variance on those six), which makes the specialists' task heads slow to learn.

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

from .._validation import DataValidationError
from ..datasets import TaskSequences, make_task_sequences
from ..metrics.latents import block_r2, mcc
from ..metrics.structure import structure_scores
from ..structure import discover_structure
from .runner import Experiment, aggregate

N_SAMPLES = 10_000
QUICK_N_SAMPLES = 2_000
STATE_DIM = 2
SEGMENT_LENGTH = 2
STRUCTURE_METRICS = ("precision", "recall", "f1", "accuracy", "exact", "seconds")
LATENT_METRICS = ("latent_r2", "latent_mcc", "latent_dims", "specialist_seconds")
#: SparseTaskVAE arguments of the specialists in ``structure-vs-tasks``. Cheap because the
#: study fits 30 of them per seed (300 in ten seeds): with the defaults of that time (the l1
#: penalty path, 200 epochs) one fit at n = 10,000 took 55 to 134 s on one thread. These (15
#: epochs per stage, large batches with a larger step size, one fixed penalty weight)
#: took 3.3 s per specialist with its scoring on one idle core (4.8 s on a busy one), over the
#: 30 tasks of seed 0: 2.8 coordinates kept on average, latent_r2 0.78, latent_mcc 0.74. With
#: 12 epochs, 3.0 s but 4.4 coordinates; with 10, the penalty barely sparsifies.
SPECIALIST_PARAMS = {
    "sparsity": 0.03,
    "epochs": 15,
    "batch_size": 1024,
    "learning_rate": 0.01,
    "task_weight": 1.0,
}
#: Training rows of the kernel ridge in ``latent_r2``: a few latents and a smooth target need
#: few rows, and 500 rows take 0.25 s where the default 2,000 take 3 s.
LATENT_R2_MAX_TRAIN = 500


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


def tasks_specializer(seed: int, specialist_params: dict | None = None):
    """The unfitted pipeline of ``structure-vs-tasks``: states as step latents, Algorithm 1 as
    in :func:`algorithm_1`, specialists with ``specialist_params`` (default
    :data:`SPECIALIST_PARAMS`)."""
    from ..pipeline import Specializer

    return Specializer(
        step_encoder="identity",
        structure_params={"segment_length": SEGMENT_LENGTH},
        specialist_params=dict(
            SPECIALIST_PARAMS if specialist_params is None else specialist_params
        ),
        random_state=seed,
        progress=False,
    )


def algorithm_1_specialists(
    data: TaskSequences, seed: int, specialist_params: dict | None = None
) -> dict:
    """Step scores and mean latent scores over tasks of :func:`tasks_specializer` on ``data``.

    Returns the :func:`step_scores`, ``seconds`` (the structure stage), ``specialist_seconds``
    (all specialists) and the means over tasks of :func:`latent_scores` against
    :func:`task_signals`.
    """
    model = tasks_specializer(seed, specialist_params).fit(data.obs, data.tasks)
    signals = task_signals(data)
    per_task = []
    for k, specialist in enumerate(model.specialists_):
        latents = (
            model.transform(data.obs, k) if specialist is not None else np.empty((len(signals), 0))
        )
        per_task.append(latent_scores(latents, signals[:, k], random_state=seed))
    means = {key: float(np.mean([s[key] for s in per_task])) for key in per_task[0]}
    return {
        **step_scores(model.step_tasks_, data),
        "seconds": model.timings_["structure"],
        "specialist_seconds": model.timings_["specialists"],
        **means,
    }


def task_signals(data: TaskSequences) -> np.ndarray:
    """Each task's signal: its least-squares fit on the states of its true steps, (n, M).

    Column k is the fitted value of the regression, with an intercept and over all n
    sequences, of ``data.tasks[:, k]`` on ``data.states[:, steps]`` flattened to
    (n, n_steps_k * d), with ``steps`` the true steps of task k
    (``data.step_assignment[:, k]``).
    """
    tasks = np.asarray(data.tasks, dtype=float)
    if tasks.ndim != 2:
        raise DataValidationError(
            f"data.tasks has shape {tasks.shape}; task signals need one scalar per task, "
            "(n_samples, n_tasks) (task_dim = 1)"
        )
    n = tasks.shape[0]
    signals = np.empty_like(tasks)
    for k in range(tasks.shape[1]):
        steps = np.flatnonzero(data.step_assignment[:, k])
        design = np.column_stack([np.ones(n), data.states[:, steps].reshape(n, -1)])
        coef, *_ = np.linalg.lstsq(design, tasks[:, k], rcond=None)
        signals[:, k] = design @ coef
    return signals


def latent_scores(latents, signal, *, random_state) -> dict:
    """How well a task's selected latents carry its signal.

    Parameters
    ----------
    latents : ndarray of shape (n_samples, n_selected)
        The selected coordinates of the task's specialist; ``n_selected = 0`` (no support,
        or no specialist) scores 0 on both scores.
    signal : ndarray of shape (n_samples,)
        The task's signal (a column of :func:`task_signals`); not constant.
    random_state : int
        Seeds the held-out split and the cross-validation of :func:`block_r2`.

    Returns
    -------
    dict
        ``latent_r2``: held-out :func:`block_r2` from the latents to the signal (at most
        :data:`LATENT_R2_MAX_TRAIN` training rows), clipped at 0 so that latents that carry
        nothing score as no latents; ``latent_mcc``: Pearson :func:`mcc` of the latents and
        the signal, in [0, 1]; ``latent_dims``: ``n_selected``.
    """
    latents = np.asarray(latents, dtype=float)
    signal = np.asarray(signal, dtype=float)
    if latents.ndim != 2:
        raise DataValidationError(
            f"latents has shape {latents.shape}; expected (n_samples, n_selected)"
        )
    if signal.shape != (latents.shape[0],):
        raise DataValidationError(
            f"signal has shape {signal.shape}; expected ({latents.shape[0]},), one value per "
            "row of latents"
        )
    if latents.shape[1] == 0:
        return {"latent_r2": 0.0, "latent_mcc": 0.0, "latent_dims": 0}
    r2 = block_r2(latents, signal, max_train=LATENT_R2_MAX_TRAIN, random_state=random_state)
    return {
        "latent_r2": max(0.0, r2),
        "latent_mcc": float(mcc(latents, signal[:, None]).score),
        "latent_dims": int(latents.shape[1]),
    }


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
#: ``structure-vs-tasks``: ``algorithm-1`` is the whole pipeline, with its specialists scored.
TASKS_METHODS = (
    StructureMethod("algorithm-1", algorithm_1_specialists),
    *STRUCTURE_METHODS[1:],
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

    A method with no value of a metric (a baseline without latents) has no line in its panel.
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
                (line[x], *line[metric][:2])
                for line in lines
                if line["method"] == method and line[metric][2] > 0
            )
            if not points:
                continue
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


def plot_tasks_study(rows: list[dict], out_dir: Path) -> list[Path]:
    """``structure-vs-tasks``: F1 and accuracy (f1_accuracy.png), and the latent scores of our
    specialists (latents.png), against M."""
    plot = partial(plot_scores_against, rows, out_dir, x="n_tasks", x_label="tasks M")
    return [
        *plot(),
        *plot(metrics=("latent_r2", "latent_mcc"), filename="latents.png"),
    ]


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
        "pairwise tests) and the CCA and group-lasso baselines; for Algorithm 1, the whole "
        "pipeline with one specialist per task, whose selected latents are scored against "
        "each task's signal (block R^2, MCC, number of coordinates)."
    ),
    settings=tasks_settings,
    run=partial(run_structure, methods=TASKS_METHODS),
    metrics=(*STRUCTURE_METRICS, *LATENT_METRICS),
    plot=plot_tasks_study,
)
