"""Correlation matrices of many columns in one pass over the rows, in chunks.

Memory stays flat in the number of samples: only ``chunk_rows`` rows of the selected columns
are held at a time. The sums are taken around a shift (the first chunk's mean), which keeps
the one-pass formula accurate for data far from zero.
"""

from __future__ import annotations

import numpy as np

from .._validation import DataValidationError
from .base import CIData

DEFAULT_CHUNK_ROWS = 65_536


def correlation_matrix(
    data: CIData,
    columns: np.ndarray,
    rows: np.ndarray | None = None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[np.ndarray, int]:
    """Pearson correlation of ``columns`` over the samples selected by ``rows``.

    Parameters
    ----------
    data : CIData
    columns : int ndarray of shape (p,)
        Global column indices.
    rows : bool ndarray of shape (n_samples,), or None for all samples
    chunk_rows : int
        Rows read at a time.

    Returns
    -------
    corr : ndarray of shape (p, p)
    n : int
        Number of samples used.
    """
    p = len(columns)
    shift = None
    total = np.zeros(p)
    cross = np.zeros((p, p))
    low = np.full(p, np.inf)
    high = np.full(p, -np.inf)
    n = 0
    for start in range(0, data.n_samples, chunk_rows):
        block = data.gather(columns, slice(start, start + chunk_rows))
        if rows is not None:
            block = block[rows[start : start + chunk_rows]]
        if block.shape[0] == 0:
            continue
        if shift is None:
            shift = block.mean(axis=0)
        block = block - shift
        total += block.sum(axis=0)
        cross += block.T @ block
        np.minimum(low, block.min(axis=0), out=low)
        np.maximum(high, block.max(axis=0), out=high)
        n += block.shape[0]
    if n < 2:
        raise DataValidationError(f"at least 2 complete samples are needed, got {n}")
    constant = np.flatnonzero(high - low <= 0)
    if constant.size:
        labels = ", ".join(data.column_labels[c] for c in columns[constant][:5])
        raise DataValidationError(
            f"column {labels} is constant; a correlation with it is undefined"
        )
    mean = total / n
    cov = (cross - n * np.outer(mean, mean)) / (n - 1)
    scale = np.sqrt(np.clip(np.diag(cov), np.finfo(float).tiny, None))
    corr = cov / np.outer(scale, scale)
    np.fill_diagonal(corr, 1.0)
    return corr, n
