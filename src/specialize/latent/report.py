"""Reports of a fitted SparseTaskVAE: Layer-2 data files, the JSON report, the mask figure.

:func:`load_latent_file` reads an ``.npz`` file as written by ``TaskLatents.save``;
:func:`latent_report` gathers what a fit selected, its validation losses and, when the data
hold the true latents and groups, block R^2, support recovery and MCC;
:func:`plot_task_mask` draws the task-latent mask with the selected entries outlined.
"""

from __future__ import annotations

import json
import math
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from .._validation import DataValidationError, check_finite
from ..metrics.latents import block_r2_scores, mcc, support_recovery

__all__ = [
    "LatentFile",
    "format_summary",
    "latent_metrics",
    "latent_report",
    "load_latent_file",
    "plot_task_mask",
    "selected_losses",
    "write_report",
]

TRUTH_KEYS = ("latents", "groups")
#: Widest mask whose cells are labelled with their values.
MAX_ANNOTATED_DIMS = 16
#: The keys of an .npz file that Layer 2 reads.
KEYS = ("obs", "tasks", *TRUTH_KEYS, "irrelevant", "task_types")


@dataclass(frozen=True)
class LatentFile:
    """The arrays of a Layer-2 ``.npz`` file.

    Attributes
    ----------
    obs : ndarray of shape (n_samples, obs_dim)
    tasks : ndarray of shape (n_samples, n_tasks) or None
        NaN marks a missing label. None when the file was read for its observations only.
    latents : ndarray of shape (n_samples, d) or None
        The true latents, when the file holds them.
    groups : list of int ndarrays or None
        Each task's true latent coordinates (from the file's (n_tasks, d) bool mask).
    irrelevant : int ndarray or None
        The true coordinates no task uses: the file's ``irrelevant``, else those in no group.
    task_types : list of str or None
    path : Path
    """

    obs: np.ndarray
    tasks: np.ndarray | None
    latents: np.ndarray | None
    groups: list | None
    irrelevant: np.ndarray | None
    task_types: list | None
    path: Path


def load_latent_file(path, *, with_tasks: bool = True) -> LatentFile:
    """Read ``obs`` (n, D), and with ``with_tasks`` also ``tasks`` (n, M) and any truth.

    Raises FileNotFoundError for a missing file and DataValidationError, naming the file and
    the key, for a missing key, a wrong shape or non-finite observations.
    """
    f = _NpzArrays.read(Path(path))
    obs = _observations(f)
    if not with_tasks:
        return LatentFile(obs, None, None, None, None, None, f.path)
    tasks = _tasks(f, obs.shape[0])
    latents, groups, irrelevant = _truth(f, obs.shape[0], tasks.shape[1])
    return LatentFile(obs, tasks, latents, groups, irrelevant, _file_task_types(f), f.path)


@dataclass(frozen=True)
class _NpzArrays:
    """The arrays of an ``.npz`` file that Layer 2 reads, and the names of all of its keys."""

    path: Path
    keys: tuple
    arrays: dict

    @classmethod
    def read(cls, path: Path) -> _NpzArrays:
        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")
        try:
            loaded = np.load(path, allow_pickle=False)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise DataValidationError(f"{path} is not a readable .npz file: {exc}") from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataValidationError(f"{path} holds one array, not an .npz file of named arrays")
        with loaded as f:
            arrays = {k: cls._load(f, k, path) for k in KEYS if k in f.files}
            return cls(path, tuple(sorted(f.files)), arrays)

    @staticmethod
    def _load(f, key: str, path: Path) -> np.ndarray:
        try:
            return f[key]
        except ValueError as exc:  # an object array, which would need pickle
            raise DataValidationError(f"{key!r} in {path} cannot be read: {exc}") from None

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    def get(self, key: str) -> np.ndarray:
        if key not in self.arrays:
            raise DataValidationError(f"{self.path} has no key {key!r} (keys: {list(self.keys)})")
        return self.arrays[key]

    def floats(self, key: str) -> np.ndarray:
        try:
            return np.asarray(self.get(key), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, DataValidationError):
                raise
            raise DataValidationError(f"{key!r} in {self.path} is not numeric: {exc}") from None


def _observations(f: _NpzArrays) -> np.ndarray:
    obs = f.floats("obs")
    if obs.ndim != 2 or obs.size == 0:
        raise DataValidationError(
            f"'obs' in {f.path} has shape {obs.shape}, expected (n_samples, obs_dim)"
        )
    check_finite(
        f"'obs' in {f.path}",
        obs,
        hint="; observations must be finite (only task labels may be missing)",
    )
    return obs


def _tasks(f: _NpzArrays, n: int) -> np.ndarray:
    tasks = f.floats("tasks")
    tasks = tasks[:, None] if tasks.ndim == 1 else tasks
    if tasks.ndim != 2:
        raise DataValidationError(
            f"'tasks' in {f.path} has shape {tasks.shape}, expected (n_samples, n_tasks)"
        )
    if tasks.shape[0] != n:
        raise DataValidationError(
            f"'tasks' in {f.path} has {tasks.shape[0]} rows but 'obs' has {n}"
        )
    check_finite(f"'tasks' in {f.path}", tasks, allow_nan=True)  # NaN: a missing label
    return tasks


def _truth(f: _NpzArrays, n: int, n_tasks: int):
    """(latents, groups, irrelevant); three Nones unless the file holds latents and groups."""
    present = [k for k in TRUTH_KEYS if k in f]
    if len(present) < len(TRUTH_KEYS):
        if present:
            missing = [k for k in TRUTH_KEYS if k not in f]
            warnings.warn(
                f"{f.path} holds {present[0]!r} but no {missing[0]!r}: no recovery metrics",
                stacklevel=3,
            )
        return None, None, None
    latents = f.floats("latents")
    if latents.ndim != 2 or latents.shape[0] != n:
        raise DataValidationError(
            f"'latents' in {f.path} has shape {latents.shape}, expected ({n}, d): "
            "one row per observation"
        )
    d = latents.shape[1]
    mask = np.asarray(f.get("groups"))
    if mask.shape != (n_tasks, d) or not (mask.dtype == bool or np.isin(mask, (0, 1)).all()):
        raise DataValidationError(
            f"'groups' in {f.path} must be a ({n_tasks}, {d}) bool mask (tasks x latents); "
            f"got shape {mask.shape}, dtype {mask.dtype}"
        )
    mask = mask.astype(bool)
    groups = [np.flatnonzero(row) for row in mask]
    if "irrelevant" in f:
        irrelevant = np.asarray(f.get("irrelevant")).astype(np.intp).ravel()
    else:
        irrelevant = np.flatnonzero(~mask.any(axis=0))
    return latents, groups, irrelevant


def _file_task_types(f: _NpzArrays) -> list | None:
    if "task_types" not in f:
        return None
    types = np.asarray(f.get("task_types"))
    if types.dtype.kind != "U":
        raise DataValidationError(
            f"'task_types' in {f.path} must hold strings (regression or classification); "
            f"got dtype {types.dtype}"
        )
    return [str(t) for t in types.ravel()]


# ----------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------


def latent_report(model, data, seconds: float, *, source: str = "") -> dict:
    """A JSON-ready dict describing a fitted SparseTaskVAE and, given the truth, its recovery.

    Parameters
    ----------
    model : fitted SparseTaskVAE
    data : LatentFile or TaskLatents
        ``obs`` (n, D) and ``tasks`` (n, M) it was fitted on; ``latents``, ``groups`` and
        ``irrelevant`` add the ``"metrics"`` entry when present.
    seconds : float
        Wall time of the fit.
    source : str
        Name of the data (a file name, a generator call).
    """
    tasks = np.asarray(data.tasks, dtype=float).reshape(len(data.obs), -1)
    report = {
        "data": source,
        "n_samples": int(data.obs.shape[0]),
        "obs_dim": int(data.obs.shape[1]),
        "n_tasks": int(tasks.shape[1]),
        "n_labelled": [int(v) for v in (~np.isnan(tasks)).sum(axis=0)],
        "task_types": list(model.task_types_),
        "latent_dim": int(model.task_mask_.shape[1]),
        "settings": model.get_params(),
        "random_state": model.random_state_,
        "device": model.device_,
        "sparsity": model.sparsity_,
        "task_mask": model.task_mask_,
        "relevant_dims": model.relevant_dims_,
        "sparsity_path": model.path_,
        "validation": {
            "selected": selected_losses(model),
            "last_epoch": model.history_[-1] if model.history_ else None,
            "n_epochs": len(model.history_),
        },
        "seconds": float(seconds),
        "version": __version__,
    }
    if all(getattr(data, k, None) is not None for k in (*TRUTH_KEYS, "irrelevant")):
        report["metrics"] = latent_metrics(model, data)
    return _plain(report)


def selected_losses(model) -> dict | None:
    """Validation losses (recon, kl, per-task) of the model the fit returned.

    With a sparsity path, those of its selected entry; otherwise those of the best epoch of
    the last stage, whose weights the stage keeps.
    """
    chosen = [entry for entry in model.path_ if entry.get("selected")]
    if chosen:
        entry = chosen[0]
        return {
            "sparsity": entry["sparsity"],
            "recon": entry["valid_recon"],
            "kl": entry["valid_kl"],
            "tasks": entry["valid_task_losses"],
        }
    if not model.history_:
        return None
    last_stage = model.history_[-1]["stage"]
    best = min(
        (r for r in model.history_ if r["stage"] == last_stage), key=lambda r: r["objective"]
    )
    return {k: best[k] for k in ("stage", "epoch", "recon", "kl", "tasks")}


def latent_metrics(model, data) -> dict:
    """Block R^2, support recovery and MCC of the posterior means of every sample of ``data``.

    The block R^2 regressions hold out their own rows (seeded with the model's
    ``random_state_``); the other metrics use all rows.
    """
    z = model.transform(data.obs)
    groups = [np.asarray(g, dtype=np.intp) for g in data.groups]
    irrelevant = np.asarray(data.irrelevant, dtype=np.intp)
    r2 = block_r2_scores(
        z, model.relevant_dims_, data.latents, groups, irrelevant, random_state=model.random_state_
    )
    matched = mcc(z, data.latents)
    return {
        "groups": groups,
        "irrelevant": irrelevant,
        "block_r2": r2,
        "support_recovery": support_recovery(model.relevant_dims_, groups, matched.matching),
        "mcc": {"score": matched.score, "matching": matched.matching, "method": matched.method},
    }


def write_report(report: dict, path) -> None:
    """Write a report as strict JSON (NaN written as null)."""
    Path(path).write_text(json.dumps(_plain(report), indent=1, allow_nan=False))


def format_summary(report: dict) -> str:
    """A few lines for the terminal: each task's selected dims and, given the truth, scores."""
    setting = report["settings"]["sparsity"]
    if setting != "auto":
        how = "fixed"
    elif report["settings"].get("selection", "path") == "moments":
        how = "supports from the gradient-moment shares"
    else:
        how = "chosen along the path"
    lines = [
        f"SparseTaskVAE: latent_dim {report['latent_dim']}, sparsity {report['sparsity']:g} "
        f"({how}), {report['validation']['n_epochs']} epochs in {report['seconds']:.1f} s "
        f"on {report['n_samples']} samples"
    ]
    metrics = report.get("metrics")
    header = f"{'task':>4}  {'type':<14} {'selected dims of z':<20}"
    if metrics:
        header += f" {'true group':<12} {'R2 relevant':>11} {'R2 irrelevant':>13}"
    lines.append(header)
    for k, dims in enumerate(report["relevant_dims"]):
        line = f"{k:>4}  {report['task_types'][k]:<14} {_dims(dims):<20}"
        if metrics:
            r2 = metrics["block_r2"][k]
            line += (
                f" {_dims(metrics['groups'][k]):<12} {_number(r2['r2_relevant']):>11} "
                f"{_number(r2['r2_irrelevant']):>13}"
            )
        lines.append(line)
    if metrics:
        lines.append(
            f"MCC {metrics['mcc']['score']:.3f}; true groups index the simulated latents, "
            "selected dims the learned z"
        )
    return "\n".join(lines)


def _dims(dims) -> str:
    return "[" + " ".join(str(int(d)) for d in dims) + "]"


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _plain(value):
    """Plain JSON types: arrays and tuples as lists, numpy scalars as Python, NaN/inf as None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


# ----------------------------------------------------------------------------------------
# the figure
# ----------------------------------------------------------------------------------------


def plot_task_mask(mask, supports, path=None):
    """Heat map of |mask| (tasks x latent dims) with each task's selected dims outlined.

    Parameters
    ----------
    mask : array of shape (n_tasks, latent_dim)
        ``SparseTaskVAE.task_mask_``.
    supports : sequence of length n_tasks of int arrays
        ``SparseTaskVAE.relevant_dims_``.
    path : str or Path, optional
        Where to save the PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    values, selected = _mask_and_support(mask, supports)
    n_tasks, width = values.shape
    fig, ax = plt.subplots(figsize=(min(2.2 + 0.6 * width, 16), min(1.3 + 0.45 * n_tasks, 12)))
    top = float(values.max()) if values.max() > 0 else 1.0
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=top, aspect="auto")
    for k, j in zip(*np.nonzero(selected), strict=True):
        ax.add_patch(plt.Rectangle((j - 0.5, k - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
    if width <= MAX_ANNOTATED_DIMS:
        _annotate(ax, values, top)
    ax.set_xticks(range(width), [f"z{j}" for j in range(width)])
    ax.set_yticks(range(n_tasks), [f"g{k}" for k in range(n_tasks)])
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("task")
    ax.set_title("task-latent mask (selected outlined)", fontsize=9)
    fig.colorbar(image, ax=ax, label="|mask|")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def _annotate(ax, values: np.ndarray, top: float) -> None:
    """Write each cell's value, dark on the bright end of the colour map."""
    for (k, j), v in np.ndenumerate(values):
        color = "black" if v > 0.6 * top else "white"
        ax.text(j, k, f"{v:.2f}", ha="center", va="center", fontsize=7, color=color)


def _mask_and_support(mask, supports) -> tuple[np.ndarray, np.ndarray]:
    """|mask| (n_tasks, latent_dim) and the bool support of the same shape, checked."""
    values = np.abs(np.asarray(mask, dtype=float))
    if values.ndim != 2 or values.size == 0:
        raise DataValidationError(f"mask has shape {values.shape}, expected (n_tasks, latent_dim)")
    check_finite("mask", values)
    if len(supports) != values.shape[0]:
        raise DataValidationError(
            f"supports has {len(supports)} entries but mask has {values.shape[0]} tasks"
        )
    selected = np.zeros(values.shape, dtype=bool)
    for k, dims in enumerate(supports):
        dims = np.asarray(dims, dtype=np.intp).ravel()
        outside = dims[(dims < 0) | (dims >= values.shape[1])]
        if outside.size:
            raise DataValidationError(
                f"supports[{k}] holds dim {int(outside[0])}, outside the mask's "
                f"{values.shape[1]} latent dims"
            )
        selected[k, dims] = True
    return values, selected
