"""The Layer-2 ablation: block R^2 of each task's selected latents, with and without the penalty.

Data of a seed: ``make_task_latents(n, group_sizes=(2, 2), n_irrelevant=2, obs_dim=12,
mixing_layers=3, random_state=seed)``: two tasks of two latent coordinates each, two
irrelevant coordinates, a 3-layer leaky-ReLU mixing to 12 dimensions; n = 10,000 with the
estimator's default epochs (quick: n = 2,000 and 10 epochs). One setting.

Methods, each with one row per task:

- ``vae``: ``SparseTaskVAE(6, sparsity=0)``, no penalty (Proposition 2's superset).
- ``sparse-vae``: ``SparseTaskVAE(6)`` with its defaults (``sparsity="auto"``: supports from
  the heads' gradient moments, then a task-weighted refit with them fixed).
- ``l1-path``: ``SparseTaskVAE(6, selection="path", task_weight=1)``, the paper's recipe as the
  automatic default had it before: the l1 penalty along its path, each weight's supports
  refitted (unweighted) and scored by held-out task loss.
- ``group-lasso``: :class:`specialize.baselines.GroupLassoLatents` fitted on the ``vae``
  model's posterior means, selecting coordinates of that latent; its ``seconds`` are its own
  fit, without the VAE's.

Row metrics: ``r2_relevant`` and ``r2_irrelevant`` (block R^2 of the selected coordinates
against the task's group and against the irrelevant coordinates, as
:func:`specialize.metrics.block_r2_scores` computes them with ``random_state=seed``),
``n_selected``, ``true_size``, ``target_met`` (``n_selected == true_size`` and
``r2_relevant >= 0.9`` and ``r2_irrelevant <= 0.2``), ``sparsity_selected`` (the penalty
weight the VAE chose, 0 for the gradient-moment rule, which trains none; empty for the group
lasso), ``seconds``, and ``dims`` (the selected coordinates, as text).
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import numpy as np

from ..datasets import make_task_latents
from ..metrics.latents import block_r2
from .runner import Experiment, aggregate

N_SAMPLES = 10_000
QUICK_N_SAMPLES = 2_000
QUICK_EPOCHS = 10
LATENT_DIM = 6
#: The SparseTaskVAE fits compared, by their options besides the shared ones.
METHODS = {
    "vae": {"sparsity": 0.0},
    "sparse-vae": {},
    "l1-path": {"selection": "path", "task_weight": 1.0},
}
#: The target of the ablation (docs/latents.md): supports of the true size that carry the
#: task's group (block R^2 >= 0.9) and little of the irrelevant coordinates (<= 0.2).
R2_RELEVANT_TARGET = 0.9
R2_IRRELEVANT_TARGET = 0.2
ABLATION_METRICS = (
    "r2_relevant",
    "r2_irrelevant",
    "n_selected",
    "true_size",
    "target_met",
    "sparsity_selected",
    "seconds",
)


def ablation_settings(quick: bool) -> list[dict]:
    """The one setting: n = 10,000 and the estimator's default epochs (quick: 2,000 and 10)."""
    if quick:
        return [{"n_samples": QUICK_N_SAMPLES, "epochs": QUICK_EPOCHS}]
    from ..latent import SparseTaskVAE

    default_epochs = inspect.signature(SparseTaskVAE).parameters["epochs"].default
    return [{"n_samples": N_SAMPLES, "epochs": default_epochs}]


def task_rows(
    method: str, z, relevant_dims, data, seed: int, seconds: float, sparsity, cache: dict
) -> list:
    """One row per task of a method's selection ``relevant_dims`` among the columns of z (n, d).

    The block R^2 values are those of :func:`specialize.metrics.block_r2_scores` with
    ``random_state=seed``, which passes that seed to every :func:`block_r2` call; ``cache``
    (keyed by the identity of z, the selected columns and the target block) lets selections
    that recur (every task of the unpenalised VAE keeps all coordinates) be scored once.
    """
    rows = []
    for k, dims in enumerate(relevant_dims):
        dims = [int(d) for d in dims]
        relevant = _cached_block_r2(cache, z, dims, data.latents, data.groups[k], seed)
        irrelevant = _cached_block_r2(cache, z, dims, data.latents, data.irrelevant, seed)
        n_selected, true_size = len(dims), len(data.groups[k])
        rows.append(
            {
                "method": method,
                "task": k,
                "r2_relevant": relevant,
                "r2_irrelevant": irrelevant,
                "n_selected": n_selected,
                "true_size": true_size,
                "target_met": bool(
                    n_selected == true_size
                    and relevant >= R2_RELEVANT_TARGET
                    and irrelevant <= R2_IRRELEVANT_TARGET
                ),
                "sparsity_selected": sparsity,
                "seconds": seconds,
                "dims": str(dims),
            }
        )
    return rows


def _cached_block_r2(cache: dict, z, dims: list, latents, columns, seed: int) -> float:
    """block_r2(z[:, dims], latents[:, columns], random_state=seed), computed once per key."""
    key = (id(z), tuple(dims), tuple(int(c) for c in columns))
    if key not in cache:
        cache[key] = float(block_r2(z[:, dims], latents[:, columns], random_state=seed))
    return cache[key]


def run_ablation(setting: dict, seed: int, quick: bool) -> list[dict]:
    """One seed of the ablation: rows for (vae, sparse-vae, l1-path, group-lasso) x tasks."""
    from ..baselines import GroupLassoLatents
    from ..latent import SparseTaskVAE

    data = make_task_latents(
        setting["n_samples"],
        group_sizes=(2, 2),
        n_irrelevant=2,
        obs_dim=12,
        mixing_layers=3,
        random_state=seed,
    )
    rows = []
    cache = {}
    z_plain = None
    for method, options in METHODS.items():
        model = SparseTaskVAE(
            LATENT_DIM, epochs=setting["epochs"], random_state=seed, progress=False, **options
        )
        started = time.perf_counter()
        model.fit(data.obs, data.tasks)
        seconds = time.perf_counter() - started
        z = model.transform(data.obs)
        if method == "vae":
            z_plain = z
        rows += task_rows(
            method, z, model.relevant_dims_, data, seed, seconds, float(model.sparsity_), cache
        )
    started = time.perf_counter()
    lasso = GroupLassoLatents(random_state=seed).fit(z_plain, data.tasks)
    seconds = time.perf_counter() - started
    rows += task_rows(
        "group-lasso", z_plain, lasso.relevant_dims_, data, seed, seconds, None, cache
    )
    return rows


def plot_r2_bars(rows: list[dict], out_dir: Path) -> list[Path]:
    """Grouped bars of r2_relevant and r2_irrelevant per (method, task), std over seeds.

    Writes ``r2.png`` in ``out_dir``; the dashed lines are the targets 0.9 and 0.2.
    """
    from matplotlib.figure import Figure

    lines = aggregate(rows, ["method", "task"], ["r2_relevant", "r2_irrelevant"])
    positions = np.arange(len(lines))
    width = 0.38
    fig = Figure(figsize=(1.2 + 1.1 * len(lines), 3.9))
    ax = fig.subplots()
    for offset, metric, label in (
        (-width / 2, "r2_relevant", "R² to the task's group"),
        (width / 2, "r2_irrelevant", "R² to the irrelevant latents"),
    ):
        means = np.array([line[metric][0] for line in lines])
        stds = np.nan_to_num(np.array([line[metric][1] for line in lines]))
        ax.bar(positions + offset, means, width, yerr=stds, capsize=3, label=label)
    ax.axhline(R2_RELEVANT_TARGET, color="grey", ls="--", lw=0.8)
    ax.axhline(R2_IRRELEVANT_TARGET, color="grey", ls="--", lw=0.8)
    ax.set_xticks(positions, [f"{line['method']}\ntask {line['task']}" for line in lines])
    ax.set_ylabel("block R² (held out)")
    ax.set_ylim(min(0.0, *(line["r2_irrelevant"][0] for line in lines)) - 0.02, 1.05)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    path = Path(out_dir) / "r2.png"
    fig.savefig(path, dpi=120)
    return [path]


LATENT_ABLATION = Experiment(
    name="latent-ablation",
    description=(
        "Layer-2 ablation: block R² of each task's selected latent coordinates against its "
        "group and against the irrelevant latents, for SparseTaskVAE without penalty, with "
        "its default selection, with the paper's l1 penalty path, and a group lasso on the "
        "unpenalised VAE's latent."
    ),
    settings=ablation_settings,
    run=run_ablation,
    metrics=ABLATION_METRICS,
    plot=plot_r2_bars,
    group_by=("method", "task"),
)
