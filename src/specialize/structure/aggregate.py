"""From p-values to a segment-task matrix: multiple-testing corrections and aggregation rules.

Everything here works on stored p-values, so a finished run can be re-decided at another
alpha, correction or rule without running a test again.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_choice

CORRECTIONS = (None, "bonferroni", "holm", "fdr_bh")
AGGREGATIONS = ("any", "clique")


def adjust_pvalues(pvalues: np.ndarray, correction: str | None) -> np.ndarray:
    """Multiple-testing adjusted p-values over the whole family ``pvalues``.

    Parameters
    ----------
    pvalues : ndarray of shape (n_tests,)
    correction : None, "bonferroni", "holm" or "fdr_bh"
        None leaves the p-values as they are. Bonferroni and Holm control the family-wise
        error rate; "fdr_bh" (Benjamini-Hochberg) the false discovery rate.

    Returns
    -------
    ndarray of shape (n_tests,)
        Rejecting where the adjusted p-value is <= alpha applies the correction at level alpha.
    """
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if correction is None or m == 0:
        return p.copy()
    if correction == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if correction == "holm":
        adjusted = np.maximum.accumulate(ranked * (m - np.arange(m)))
    elif correction == "fdr_bh":
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    else:
        check_choice("correction", correction, CORRECTIONS)
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def unit_decisions(
    rejected: np.ndarray, task: np.ndarray, unit: np.ndarray, n_units: int, n_tasks: int
) -> np.ndarray:
    """(n_units, n_tasks) bool matrix of the rejected one-unit tests (unary and step modes)."""
    out = np.zeros((n_units, n_tasks), dtype=bool)
    out[unit[rejected], task[rejected]] = True
    return out


def pair_decisions(
    rejected: np.ndarray,
    task: np.ndarray,
    unit: np.ndarray,
    partner: np.ndarray,
    n_segments: int,
    n_tasks: int,
    aggregation: str,
) -> np.ndarray:
    """(K, M) bool matrix from pairwise decisions.

    ``"any"`` (the paper): a dependent pair marks both of its segments.
    ``"clique"``: the segments of a task are pairwise dependent (a clique), while false
    positives scatter. Within each connected component of a task's dependence graph, the
    segment with the fewest dependent partners is dropped while it has fewer than half of the
    remaining others; a component of two segments (one edge) is kept as it is.
    """
    check_choice("aggregation", aggregation, AGGREGATIONS)
    out = np.zeros((n_segments, n_tasks), dtype=bool)
    for i in range(n_tasks):
        hit = rejected & (task == i)
        adjacency = np.zeros((n_segments, n_segments), dtype=bool)
        adjacency[unit[hit], partner[hit]] = True
        adjacency |= adjacency.T
        if aggregation == "any":
            out[:, i] = adjacency.any(axis=1)
            continue
        for component in _components(adjacency):
            out[_peel(adjacency, component), i] = True
    return out


def _components(adjacency: np.ndarray) -> list[list[int]]:
    """Connected components with at least one edge."""
    seen = np.zeros(len(adjacency), dtype=bool)
    components = []
    for start in np.flatnonzero(adjacency.any(axis=1)):
        if seen[start]:
            continue
        stack, members = [int(start)], []
        seen[start] = True
        while stack:
            node = stack.pop()
            members.append(node)
            for nb in np.flatnonzero(adjacency[node] & ~seen):
                seen[nb] = True
                stack.append(int(nb))
        components.append(sorted(members))
    return components


def _peel(adjacency: np.ndarray, members: list[int]) -> list[int]:
    """Drop weakly tied segments until each has dependent partners in >= half of the others."""
    members = list(members)
    while len(members) > 2:
        sub = adjacency[np.ix_(members, members)]
        degree = sub.sum(axis=1)
        weakest = int(np.argmin(degree))
        if degree[weakest] >= (len(members) - 1) / 2:
            break
        members.pop(weakest)
    return members
