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
    n = 0
    for start in range(0, data.n_samples, chunk_rows):
        block = data.gather(columns, slice(start, start + chunk_rows))  # a fresh copy
        if rows is not None:
            block = block[rows[start : start + chunk_rows]]
        if block.shape[0] == 0:
            continue
        if shift is None:
            shift = block.mean(axis=0)
        block -= shift
        total += block.sum(axis=0)
        cross += block.T @ block
        n += block.shape[0]
    if n < 2:
        raise DataValidationError(f"at least 2 complete samples are needed, got {n}")
    mean = total / n
    cov = (cross - n * np.outer(mean, mean)) / (n - 1)
    _check_not_constant(data, columns, rows, np.diag(cov), shift)
    scale = np.sqrt(np.diag(cov))
    corr = cov / np.outer(scale, scale)
    np.fill_diagonal(corr, 1.0)
    return corr, n


def _check_not_constant(data, columns, rows, variance, shift) -> None:
    """Raise, naming the column, if a column takes a single value.

    Columns whose variance is at rounding level relative to their mean are re-read to tell a
    constant column (max == min) from a legitimately tiny-variance one.
    """
    suspects = np.flatnonzero(variance <= 1e-24 * shift**2)
    if suspects.size == 0:
        return
    values = data.gather(columns[suspects])
    if rows is not None:
        values = values[rows]
    constant = suspects[np.ptp(values, axis=0) == 0]
    if constant.size:
        labels = ", ".join(data.column_labels[c] for c in columns[constant][:5])
        raise DataValidationError(
            f"column {labels} is constant; a correlation with it is undefined"
        )
    raise DataValidationError(
        "columns "
        + ", ".join(data.column_labels[c] for c in columns[suspects][:5])
        + " vary only at rounding level; rescale them before testing"
    )
