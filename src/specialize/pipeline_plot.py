"""The figure of a fitted Specializer: its step-task structure and its specialists' masks."""

from __future__ import annotations

import numpy as np


def plot_specializer(model, path=None, *, truth=None):
    """Step-task structure (truth beside it if given) and each task's specialist mask.

    Parameters
    ----------
    model : fitted Specializer
    path : str or Path, optional
        Where to save the PNG.
    truth : bool array of shape (n_steps, n_tasks), optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    recovered = np.asarray(model.step_tasks_, dtype=bool)
    T, M = recovered.shape
    masks = [s.task_mask_[0] if s is not None else np.zeros(0) for s in model.specialists_]
    width = max([len(m) for m in masks] + [1])
    panels = 2 + (truth is not None)
    fig, axes = plt.subplots(
        1, panels, figsize=(3.0 * panels + 0.25 * width, 1.6 + 0.3 * max(T, M)), squeeze=False
    )
    axes = list(axes[0])
    ax = axes.pop(0)
    ax.imshow(recovered.astype(float), cmap="Greys", vmin=0, vmax=1, aspect="auto")
    if truth is not None:
        truth = np.asarray(truth, dtype=bool)
        for t, i in zip(*np.nonzero(recovered != truth), strict=True):
            ax.add_patch(plt.Rectangle((i - 0.5, t - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_title("recovered (errors in red)" if truth is not None else "recovered", fontsize=9)
    _label(ax, M, "step", T)
    if truth is not None:
        ax = axes.pop(0)
        ax.imshow(truth.astype(float), cmap="Greys", vmin=0, vmax=1, aspect="auto")
        ax.set_title("truth", fontsize=9)
        _label(ax, M, "step", T)
    ax = axes.pop(0)
    values = np.full((M, width), np.nan)
    for k, mask in enumerate(masks):
        top = np.abs(mask).max() if mask.size else 0.0
        values[k, : mask.size] = np.abs(mask) / top if top > 0 else 0.0
    ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for k, dims in enumerate(model.relevant_dims_):
        for j in dims:
            ax.add_patch(plt.Rectangle((j - 0.5, k - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_yticks(range(M), [f"g{k}" for k in range(M)])
    ax.set_xlabel("specialist latent dimension")
    ax.set_title("specialist masks, |m| / max (kept in red)", fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def _label(ax, M: int, row_name: str, rows: int) -> None:
    ax.set_xticks(range(M), [f"g{i}" for i in range(M)])
    ax.set_yticks(range(rows))
    ax.set_xlabel("task")
    ax.set_ylabel(row_name)
