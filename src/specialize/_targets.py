"""Task targets shared by the estimators that predict tasks: their types and encoding."""

from __future__ import annotations

import numpy as np

from ._validation import (
    DataValidationError,
    InvalidParameterError,
    as_float_array,
    check_choice,
    check_finite,
)

TASK_TYPES = ("regression", "classification")
#: Integer-valued columns with at most this many distinct labels are read as classes.
MAX_INFERRED_CLASSES = 10


def resolve_task_types(task_types, G: np.ndarray) -> list[str]:
    """One type per column of G (n, n_tasks): as given (one string for all), or inferred.

    Inferred: "classification" for an integer-valued column with 2 to
    ``MAX_INFERRED_CLASSES`` distinct labels (NaN ignored), "regression" otherwise.
    """
    n_tasks = G.shape[1]
    if task_types is None:
        return [infer_task_type(G[:, k]) for k in range(n_tasks)]
    return per_task_types("task_types", task_types, n_tasks, "task columns in G")


def per_task_types(name: str, value, n_tasks: int, of: str) -> list[str]:
    """``value`` (one type, or one per task) as a list of ``n_tasks`` checked task types."""
    types = [value] * n_tasks if isinstance(value, str) else list(value)
    if len(types) != n_tasks:
        raise InvalidParameterError(f"{name} has {len(types)} entries for {n_tasks} {of}")
    for t in types:
        check_choice(name, t, TASK_TYPES)
    return types


def infer_task_type(column: np.ndarray) -> str:
    """The type of one task column (NaN = missing): "classification" or "regression"."""
    values = column[~np.isnan(column)]
    distinct = np.unique(values)
    if np.all(distinct == np.round(distinct)) and 2 <= len(distinct) <= MAX_INFERRED_CLASSES:
        return "classification"
    return "regression"


def encode_targets(G: np.ndarray, types: list[str]):
    """Standardised regression targets and class indices; NaN stays NaN."""
    encoded = np.full(G.shape, np.nan)
    classes, mean, scale = [], np.zeros(G.shape[1]), np.ones(G.shape[1])
    for k, kind in enumerate(types):
        column = G[:, k]
        labelled = ~np.isnan(column)
        values = column[labelled]
        if values.size < 2:
            raise DataValidationError(
                f"task {k} of G has {values.size} labelled samples; it needs at least 2"
            )
        distinct = np.unique(values)
        if distinct.size < 2:
            raise DataValidationError(
                f"task {k} of G is constant ({distinct[0]}) over its labelled samples: "
                "there is nothing to predict"
            )
        if kind == "classification":
            classes.append(distinct)
            encoded[labelled, k] = np.searchsorted(distinct, values)
        else:
            classes.append(None)
            mean[k], scale[k] = values.mean(), values.std()
            encoded[labelled, k] = (values - mean[k]) / scale[k]
    return encoded, classes, mean, scale


def check_task_targets(G, n: int, inputs: str = "X") -> np.ndarray:
    """G as a float (n, n_tasks) array with n rows, like the ``inputs`` array; NaN = missing."""
    G = as_float_array("G", G, ndims=(1, 2), shape_hint="(n_samples, n_tasks)")
    if G.ndim == 1:
        G = G[:, None]
    if G.shape[0] != n:
        raise DataValidationError(f"{inputs} has {n} samples but G has {G.shape[0]}")
    check_finite("G", G, allow_nan=True)  # NaN marks a missing label
    return G
