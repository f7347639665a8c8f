"""Reading sequence data sets from ``.npz`` files, with errors that name the key at fault."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._validation import DataValidationError

SEQUENCE_KEYS = ("obs", "states")


@dataclass(frozen=True)
class SequenceFile:
    """Arrays read from a sequence ``.npz`` file.

    Attributes
    ----------
    X : ndarray of shape (n, T, D)
        The array under ``key`` ("obs" or "states").
    G : ndarray of shape (n, M) or (n, M, q), or None when read without tasks
    key : str
    segment_assignment, step_assignment : bool ndarray or None
        The truth, when the file holds it.
    segment_length : int or None
    outcomes : ndarray of shape (n, outcome_dim) or None
        An observation of the tasks' outcomes, for learning tasks that are not observed.
    """

    X: np.ndarray
    G: np.ndarray | None
    key: str
    segment_assignment: np.ndarray | None
    step_assignment: np.ndarray | None
    segment_length: int | None
    outcomes: np.ndarray | None = None


def load_sequences(path, key: str | None = None, *, with_tasks: bool = True) -> SequenceFile:
    """Read ``obs`` (or ``states``) and ``tasks`` from an ``.npz`` file.

    Parameters
    ----------
    path : str or Path
    key : {"obs", "states"} or None
        Which array to read as X; None takes ``obs`` if present, else ``states``.
    with_tasks : bool
        Whether ``tasks`` is required; when it is not and the file has none, G is None.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DataValidationError(f"{path} is not a readable .npz file: {exc}") from None
    if key is None:
        key = next((k for k in SEQUENCE_KEYS if k in arrays), None)
        if key is None:
            raise DataValidationError(
                f"{path} holds no 'obs' or 'states' array (keys: {sorted(arrays)})"
            )
    elif key not in arrays:
        raise DataValidationError(f"{path} has no key {key!r} (keys: {sorted(arrays)})")
    if with_tasks and "tasks" not in arrays:
        raise DataValidationError(f"{path} has no key 'tasks' (keys: {sorted(arrays)})")
    X, G = arrays[key], arrays.get("tasks")
    if X.ndim != 3:
        raise DataValidationError(f"'{key}' in {path} has shape {X.shape}, expected (n, T, D)")
    if G is not None and G.ndim not in (2, 3):
        raise DataValidationError(
            f"'tasks' in {path} has shape {G.shape}, expected (n, M) or (n, M, q)"
        )
    truth = {}
    for name in ("segment_assignment", "step_assignment"):
        if name in arrays:
            a = arrays[name]
            if a.ndim != 2:
                raise DataValidationError(f"'{name}' in {path} has shape {a.shape}, expected 2-D")
            truth[name] = a.astype(bool)
    length = int(arrays["segment_length"]) if "segment_length" in arrays else None
    outcomes = arrays.get("outcomes")
    if outcomes is not None and (outcomes.ndim != 2 or outcomes.shape[0] != X.shape[0]):
        raise DataValidationError(
            f"'outcomes' in {path} has shape {outcomes.shape}, expected ({X.shape[0]}, "
            "outcome_dim): one outcome observation per sequence"
        )
    return SequenceFile(
        X, G, key, truth.get("segment_assignment"), truth.get("step_assignment"), length, outcomes
    )
