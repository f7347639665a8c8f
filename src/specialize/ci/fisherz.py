"""Partial-correlation CI test for linear Gaussian data, batched over a whole plan.

Every test of a run is answered from one correlation matrix of the columns the plan uses:
a test is then a small solve on a sub-block, and tests of the same shape are solved stacked.
Tests that share all their variables (x, y and z together), as the full-conditioning tests
of Algorithm 1 do, are answered from one precision matrix of those variables.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial

import numpy as np
from scipy import special

from .._validation import CollinearityError, DataValidationError, check_int
from ._moments import DEFAULT_CHUNK_ROWS, correlation_matrix
from .base import CIData, CIResult, CITest, TestPlan

#: A column whose variance left after regressing it on the test's other columns (in units of
#: its own variance) falls below this counts as a linear combination of them.
COLLINEARITY_TOLERANCE = 1e-10
#: Tests sharing all their variables go through one precision matrix from this many on.
MIN_SHARED_UNION = 4


class FisherZ(CITest):
    """Fisher-z test of partial correlation; Bartlett's chi-square for vector x or y.

    Parameters
    ----------
    chunk_rows : int, default=65536
        Samples read at a time when forming the correlation matrix (memory is flat in n).

    Notes
    -----
    Scalar x and y: with r the partial correlation of x and y given the d_z columns of z,
    ``statistic = atanh(r) * sqrt(n - d_z - 3)`` is standard normal under the null and the
    p-value is two-sided; ``dof = n - d_z - 3``.

    Vector x or y: with rho_i the canonical correlations of the residuals of x and y on z,
    Wilks' ``Lambda = prod(1 - rho_i^2) = det(S) / (det(S_xx) det(S_yy))`` of the partial
    covariance S of (x, y) given z, and Bartlett's statistic
    ``-(n - d_z - 1 - (d_x + d_y + 1) / 2) * log(Lambda)`` is chi-square with
    ``dof = d_x * d_y`` under the null (Bartlett 1938; Anderson 2003, section 12.4).

    Both assume linear relations and Gaussian noise; on other data the test is a test of
    partial (linear) correlation, not of conditional independence.
    """

    name = "fisherz"
    handles_large_conditioning_sets = True

    def __init__(self, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        self.chunk_rows = chunk_rows

    def prepare(self, data: CIData):
        """One correlation matrix of every column, shared by all batches (no missing values)."""
        check_int("chunk_rows", self.chunk_rows, minimum=1)
        if data.has_missing:
            return super().prepare(data)
        columns = np.arange(data.n_columns)
        corr, n = correlation_matrix(data, columns, chunk_rows=self.chunk_rows)
        return partial(_answer, data, corr=corr, local=columns, n=n)

    def run(self, data: CIData, plan: TestPlan) -> CIResult:
        check_int("chunk_rows", self.chunk_rows, minimum=1)
        result = CIResult.empty(len(plan))
        if len(plan) == 0:
            return result
        for positions, rows in plan.row_groups(data):
            sub = plan.subset(positions)
            nodes = sorted(set().union(*sub.x, *sub.y, *sub.z))
            columns = data.columns(nodes)
            corr, n = correlation_matrix(data, columns, rows, chunk_rows=self.chunk_rows)
            local = np.full(data.n_columns, -1)
            local[columns] = np.arange(len(columns))
            result.fill(positions, _answer(data, sub, corr=corr, local=local, n=n))
        return result


def _answer(
    data: CIData, plan: TestPlan, *, corr: np.ndarray, local: np.ndarray, n: int
) -> CIResult:
    """Answer ``plan`` from the correlation matrix ``corr`` of the columns mapped by ``local``."""
    result = CIResult.empty(len(plan))
    by_union: dict[frozenset, list[int]] = defaultdict(list)
    for k, (x, y, z) in enumerate(zip(plan.x, plan.y, plan.z, strict=True)):
        by_union[frozenset(x + y + z)].append(k)
    single: list[int] = []
    for union, positions in by_union.items():
        if len(positions) < MIN_SHARED_UNION:
            single.extend(positions)
            continue
        sub = plan.subset(positions)
        result.fill(
            np.asarray(positions), _answer_shared_union(data, sub, sorted(union), corr, local, n)
        )
    if single:
        sub = plan.subset(single)
        result.fill(np.asarray(single), _answer_by_shape(data, sub, corr, local, n))
    return result


def _answer_by_shape(data, plan, corr, local, n) -> CIResult:
    """Stacked solves: the tests of one shape (d_x, d_y, d_z) share one batched computation.

    With the columns ordered (z, x, y), the lower-right block L_ab of the Cholesky factor of a
    test's correlation block gives the partial covariance of (x, y) given z as L_ab L_ab^T.
    """
    result = CIResult.empty(len(plan))
    for (dx, dy, dz), positions in plan.group_by_shape(data).items():
        _check_samples(n, dx, dy, dz, data, plan, positions)
        index = np.stack(
            [local[data.columns(plan.z[k] + plan.x[k] + plan.y[k])] for k in positions]
        )
        blocks = corr[index[:, :, None], index[:, None, :]]
        factor = _checked_cholesky(data, blocks, index, local)[:, dz:, dz:]
        partial = factor @ np.swapaxes(factor, 1, 2)
        result.fill(positions, _statistics(partial, dx, dy, dz, n, positions))
    return result


def _answer_shared_union(data, plan, union_nodes, corr, local, n) -> CIResult:
    """Tests whose x, y and z together are the same variables: one precision matrix for all.

    The partial covariance of (x, y) given the rest of the union is the inverse of the
    (x, y) block of the union's precision matrix.
    """
    groups = plan.group_by_shape(data)
    for (dx, dy, dz), positions in groups.items():
        _check_samples(n, dx, dy, dz, data, plan, positions)
    columns = local[data.columns(union_nodes)]
    block = corr[np.ix_(columns, columns)]
    factor = _checked_cholesky(data, block[None], columns[None], local)[0]
    inverse_factor = np.linalg.inv(factor)
    precision = inverse_factor.T @ inverse_factor
    where = np.full(len(local), -1)
    where[columns] = np.arange(len(columns))
    result = CIResult.empty(len(plan))
    for (dx, dy, dz), positions in groups.items():
        index = np.stack([where[local[data.columns(plan.x[k] + plan.y[k])]] for k in positions])
        partial = np.linalg.inv(precision[index[:, :, None], index[:, None, :]])
        result.fill(positions, _statistics(partial, dx, dy, dz, n, positions))
    return result


def _statistics(partial, dx, dy, dz, n, positions) -> CIResult:
    """Fisher-z (scalar) or Bartlett (vector) from partial covariances of shape (K, a, a)."""
    k = len(positions)
    if dx == 1 and dy == 1:
        dof = n - dz - 3
        r = partial[:, 0, 1] / np.sqrt(partial[:, 0, 0] * partial[:, 1, 1])
        r = np.clip(r, -1 + 1e-15, 1 - 1e-15)
        statistic = np.arctanh(r) * np.sqrt(dof)
        pvalue = 2 * special.ndtr(-np.abs(statistic))
        return CIResult(statistic, pvalue, np.full(k, float(dof)), np.full(k, n))
    factor = n - dz - 1 - (dx + dy + 1) / 2
    _, logdet = np.linalg.slogdet(partial)
    _, logdet_x = np.linalg.slogdet(partial[:, :dx, :dx])
    _, logdet_y = np.linalg.slogdet(partial[:, dx:, dx:])
    log_wilks = np.minimum(logdet - logdet_x - logdet_y, 0.0)
    statistic = -factor * log_wilks
    dof = float(dx * dy)
    pvalue = special.chdtrc(dof, statistic)
    return CIResult(statistic, pvalue, np.full(k, dof), np.full(k, n))


def _check_samples(n, dx, dy, dz, data, plan, positions) -> None:
    """Raise unless n leaves at least one degree of freedom for the test's statistic."""
    margin = n - dz - 3 if dx == dy == 1 else n - dz - 1 - (dx + dy + 1) / 2
    if margin >= 1 and n > dz + dx + dy:
        return
    k = positions[0]
    a = dx + dy
    needed = dz + 4 if dx == dy == 1 else max(int(np.ceil(dz + 2 + (a + 1) / 2)), dz + a + 1)
    raise DataValidationError(
        f"too few samples for the partial-correlation test of {_describe(data, plan, k)}: "
        f"conditioning on {dz} columns needs n >= {needed}, got {n}"
    )


def _checked_cholesky(data, blocks, index, local) -> np.ndarray:
    """Cholesky factors of correlation blocks (K, m, m); raise, naming columns, if collinear.

    The squared diagonal of the factor is each column's variance left after regressing it on
    the columns before it, so a pivot below ``COLLINEARITY_TOLERANCE`` marks a column that is
    (numerically) a linear combination of others.
    """
    try:
        factor = np.linalg.cholesky(blocks)
        bad = np.flatnonzero(
            (np.diagonal(factor, axis1=1, axis2=2) ** 2 < COLLINEARITY_TOLERANCE).any(axis=1)
        )
    except np.linalg.LinAlgError:
        eigvals = np.linalg.eigvalsh(blocks)
        bad = np.flatnonzero(eigvals[:, 0] < COLLINEARITY_TOLERANCE)
        factor = None
    if bad.size == 0 and factor is not None:
        return factor
    _raise_collinear(data, blocks[bad[0]], index[bad[0]], local)


def _raise_collinear(data, block, index, local) -> None:
    """Name the columns that carry the near-null direction of a singular correlation block."""
    _, eigvecs = np.linalg.eigh(block)
    weights = np.abs(eigvecs[:, 0])
    involved = np.sort(index[weights > 0.1 * weights.max()])
    column_of = np.full(local.max() + 1, -1)
    column_of[local[local >= 0]] = np.flatnonzero(local >= 0)
    labels = [data.column_labels[c] for c in column_of[involved]]
    raise CollinearityError(
        f"columns {', '.join(labels)} are collinear (one is a linear combination of the "
        "others); partial correlation is undefined. Remove duplicated columns or reduce "
        "the dimension of the data first"
    )


def _describe(data: CIData, plan: TestPlan, k: int) -> str:
    def names(nodes):
        return "{" + ", ".join(str(data.node_names[j]) for j in nodes) + "}"

    return f"{names(plan.x[k])} vs {names(plan.y[k])} given {names(plan.z[k])}"
