"""Scores of a recovered step-task or segment-task matrix against the truth."""

from __future__ import annotations

import numpy as np

from .._validation import DataValidationError


def structure_scores(predicted, truth) -> dict:
    """Precision, recall, F1, accuracy and exact recovery over the entries of a task matrix.

    Parameters
    ----------
    predicted, truth : bool array-like of the same shape, (K, M) or (T, M)
        Entry (k, i) says whether segment (or step) k serves task i. Tasks are observed, so
        columns are compared as they are (no matching of task labels).

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1``, ``accuracy`` (floats), ``exact`` (bool: every entry
        right), and the counts ``tp``, ``fp``, ``fn``, ``tn``. Where a ratio has an empty
        denominator (no predicted or no true positives) it is 1.0 if the other count is zero
        too, else 0.0.
    """
    p = np.asarray(predicted, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise DataValidationError(f"predicted has shape {p.shape} but truth has shape {t.shape}")
    tp = int((p & t).sum())
    fp = int((p & ~t).sum())
    fn = int((~p & t).sum())
    tn = int((~p & ~t).sum())
    precision = tp / (tp + fp) if tp + fp else float(fn == 0)
    recall = tp / (tp + fn) if tp + fn else float(fp == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / p.size,
        "exact": bool(fp == 0 and fn == 0),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def matched_structure_scores(predicted, truth) -> dict:
    """:func:`structure_scores` after matching learned tasks to true tasks (unknown tasks).

    Learned tasks carry no labels, so the columns of ``predicted`` are matched one to one to
    those of ``truth`` by the Hungarian algorithm on the F1 of every (learned, true) pair, and
    the matched matrix is scored.

    Parameters
    ----------
    predicted, truth : bool array-like of the same shape, (K, M) or (T, M)

    Returns
    -------
    dict
        The keys of :func:`structure_scores`, plus ``permutation``: a list whose entry i is
        the true task matched to learned task i.
    """
    from scipy.optimize import linear_sum_assignment

    p = np.asarray(predicted, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise DataValidationError(f"predicted has shape {p.shape} but truth has shape {t.shape}")
    M = p.shape[1]
    pair_f1 = np.array(
        [[structure_scores(p[:, [i]], t[:, [j]])["f1"] for j in range(M)] for i in range(M)]
    )
    rows, cols = linear_sum_assignment(-pair_f1)
    matched = np.zeros_like(p)
    matched[:, cols] = p[:, rows]
    permutation = np.empty(M, dtype=int)
    permutation[rows] = cols
    return {**structure_scores(matched, t), "permutation": permutation.tolist()}
