"""Figures of recovered task structure (matplotlib, headless)."""

from __future__ import annotations

import numpy as np


def plot_structure(result, path=None, *, truth=None):
    """Heat-map of a TaskStructure's evidence per (segment, task), truth beside it if given.

    Parameters
    ----------
    result : TaskStructure
    path : str or Path, optional
        Where to save the PNG (or any format matplotlib infers from the suffix).
    truth : bool array of shape (K, M), optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    evidence = -np.log10(np.clip(result.segment_evidence, 1e-300, 1.0))
    recovered = result.segment_tasks
    K, M = recovered.shape
    panels = 1 if truth is None else 2
    fig, axes = plt.subplots(
        1, panels, figsize=(2.2 + 0.9 * M * panels, 1.2 + 0.35 * K), squeeze=False
    )
    ax = axes[0, 0]
    vmax = max(float(np.nanmax(evidence)), -np.log10(result.alpha) * 2)
    image = ax.imshow(evidence, cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
    for k, i in zip(*np.nonzero(recovered), strict=True):
        ax.add_patch(plt.Rectangle((i - 0.5, k - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
    ax.set_title(f"recovered ({result.mode}, {result.test})", fontsize=9)
    fig.colorbar(image, ax=ax, label="-log10 adjusted p")
    _label_axes(ax, K, M)
    if truth is not None:
        ax = axes[0, 1]
        ax.imshow(np.asarray(truth, dtype=float), cmap="Greys", vmin=0, vmax=1, aspect="auto")
        ax.set_title("truth", fontsize=9)
        _label_axes(ax, K, M)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def _label_axes(ax, K: int, M: int) -> None:
    ax.set_xticks(range(M), [f"g{i}" for i in range(M)])
    ax.set_yticks(range(K))
    ax.set_xlabel("task")
    ax.set_ylabel("segment")
