"""Scores of a learned latent representation z against the true latents s (Layer 2).

The data-generating process is that of :func:`specialize.datasets.latents.make_task_latents`:
independent true latents s of shape (n, d), split into task groups s_{I_1}, ..., s_{I_M}
(which may overlap) and irrelevant coordinates; observations x = f(s) with f injective; task k
depends on s_{I_k} only. An encoder gives z of shape (n, d_hat), and a sparse model selects,
for each task, the learned coordinates z_{J_k} that its head reads.

Which metric to trust for what
------------------------------
- **Group-wise identifiability** (Theorem 2 of the design: up to a permutation, the selected
  coordinates z_{J_k} are an invertible function of exactly s_{I_k}) is measured by
  :func:`block_r2_scores`. ``r2_relevant`` (a nonlinear regression from z_{J_k} to s_{I_k})
  near 1 says the selected coordinates carry the whole group; ``r2_irrelevant`` (from
  z_{J_k} to the irrelevant coordinates) near 0 says they carry nothing else. Both are
  needed: a superset support (no sparsity penalty) scores high on both.
- **Coordinate-wise identifiability** (each learned coordinate is a function of one true
  coordinate) is measured by :func:`mcc`. MCC is *not* a test of group-wise
  identifiability: a representation that is an invertible function of each group, but mixes
  the coordinates inside a group (for example a rotation), has a low MCC (about 0.71 with
  Pearson, 0.69 with Spearman, for a 45-degree rotation of a pair) although it is as good as
  the model can guarantee.
- **Support size and placement** is measured by :func:`support_recovery`, which needs a
  matching from true to learned coordinates (from :func:`mcc`). Within a group the matching
  may be arbitrary (rotations), but as long as every learned coordinate of a group is matched
  to some coordinate of that group, precision and recall are still right.

In short: report block R^2 for the claim of the design; report MCC only to say whether the
representation happens to be disentangled coordinate by coordinate.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

from .._validation import (
    DataValidationError,
    InvalidParameterError,
    as_float_array,
    check_choice,
    check_finite,
    check_float,
    check_int,
    check_random_state,
)

__all__ = ["MCCResult", "block_r2", "block_r2_scores", "mcc", "support_recovery"]

REGRESSORS = ("kernel_ridge", "mlp")
MCC_METHODS = ("pearson", "spearman")
#: Fewest rows :func:`block_r2` accepts.
MIN_ROWS = 20
#: Fewest training and held-out rows a split of :func:`block_r2` may leave.
MIN_TRAIN, MIN_TEST = 10, 5
#: Kernel bandwidths, as multiples of 1 / n_inputs (inputs are standardised).
GAMMA_GRID = (0.1, 0.3, 1.0, 3.0)
#: Ridge penalties (targets are standardised).
ALPHA_GRID = (1e-3, 1e-2, 1e-1)
#: Held-out rows predicted at once (bounds the kernel matrix to CHUNK x max_train).
CHUNK = 4096


# ----------------------------------------------------------------------------------------
# block R^2
# ----------------------------------------------------------------------------------------


def block_r2(
    inputs,
    target,
    *,
    regressor: str = "kernel_ridge",
    test_size: float = 0.3,
    max_train: int = 2000,
    random_state=None,
) -> float:
    """Held-out R^2 of a nonlinear regression from a block of inputs to a block of targets.

    Parameters
    ----------
    inputs : ndarray of shape (n_samples, k) or (n_samples,)
        Learned coordinates (for example the ones a task selects). ``k = 0`` is allowed and
        gives 0.0: nothing can be predicted from no inputs.
    target : ndarray of shape (n_samples, m) or (n_samples,), m >= 1
        True coordinates (for example a task's group of latents).
    regressor : {"kernel_ridge", "mlp"}
        ``"kernel_ridge"``: RBF kernel ridge regression, with ``gamma`` in
        ``{0.1, 0.3, 1, 3} / k`` and ``alpha`` in ``{1e-3, 1e-2, 1e-1}`` chosen by 3-fold
        cross-validation (mean squared error) on the training rows. ``"mlp"``: a
        multilayer perceptron with two hidden layers of 64 units and early stopping.
    test_size : float in (0, 1)
        Fraction of the rows held out for the score.
    max_train : int
        Most training rows kernel ridge is fitted on (a random subset of the training split;
        its cost grows as max_train^3). Every held-out row is scored, in chunks. The MLP
        uses the whole training split and ignores ``max_train``.
    random_state : None, int or numpy Generator
        Draws the split, the subset, the cross-validation folds and the MLP's weights. The
        split is drawn first, so two calls with the same seed and the same ``n_samples``
        hold out the same rows.

    Returns
    -------
    float
        ``1 - SSE / SST`` on the held-out rows, with SSE and SST summed over the target
        columns (variance-weighted R^2). Not clipped: it is negative when the regression
        predicts worse than the held-out mean.

    Raises
    ------
    DataValidationError
        Mismatched rows, NaN or inf (naming the array and the index), fewer than 20 rows, a
        constant target column.
    InvalidParameterError
        An unknown ``regressor``, ``test_size`` outside (0, 1) or leaving fewer than 10
        training or 5 held-out rows, ``max_train < 10``.

    Notes
    -----
    Inputs and targets are standardised with the mean and standard deviation of the rows
    the regressor is trained on (a constant input column is left unscaled), and the score is
    computed in these standardised target units. Each target column therefore weighs in by
    its held-out variance relative to its training variance, that is about equally, whatever
    its scale in the original units.

    *What it assumes.* R^2 near 1 means the target is (close to) a smooth function of the
    inputs: the inputs carry all of the target. It makes no assumption about how the inputs
    mix the target's coordinates, so it measures group-wise identifiability: any invertible
    function of a group (a rotation, a nonlinear mixing inside the group) scores near 1. It
    says nothing about what else the inputs carry; regress them on the other coordinates
    for that (see :func:`block_r2_scores`).

    *False negatives.* An encoder that loses information the target needs gives a low R^2
    even when the inputs are a deterministic function of the target: for inputs ``s**2``
    and target ``s`` the sign is lost and R^2 is about 0, although the inputs carry the
    whole magnitude of ``s``. Heavy-tailed inputs (such as ``s**2``) leave sparse regions
    where kernel ridge interpolates noise, and the score can then be well below 0. With few
    training rows, many inputs, a high-dimensional target or a rough inverse function, the
    regression underfits and R^2 underestimates what the inputs carry (raise
    ``max_train``, or use ``regressor="mlp"`` on large data).

    *False positives.* If the true latents are dependent (not the case in
    ``make_task_latents``), inputs that carry one coordinate partly predict the others, so
    R^2 is above 0 without the inputs encoding them. With very few rows, a lucky split can
    give a slightly positive R^2 for an independent target; the score's spread is of order
    ``1 / sqrt(test rows)``.
    """
    check_choice("regressor", regressor, REGRESSORS)
    test_size = check_float(
        "test_size", test_size, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
    )
    max_train = check_int("max_train", max_train, minimum=MIN_TRAIN)
    rng = check_random_state(random_state)
    y = _as_2d("target", target, "(n_samples, n_targets)")
    x = _as_2d("inputs", inputs, "(n_samples, n_inputs)", allow_no_columns=True)
    n = y.shape[0]
    if x.shape[0] != n:
        raise DataValidationError(
            f"inputs has {x.shape[0]} rows but target has {n}; they must hold the same samples"
        )
    if n < MIN_ROWS:
        raise DataValidationError(
            f"inputs and target have {n} rows; block_r2 needs at least {MIN_ROWS}"
        )
    check_finite("inputs", x)
    check_finite("target", y)
    constant = np.flatnonzero(y.std(axis=0) == 0)
    if constant.size:
        raise DataValidationError(
            f"column {int(constant[0])} of target is constant; R^2 is undefined for it"
        )
    n_test = int(round(test_size * n))
    n_train = n - n_test
    if n_train < MIN_TRAIN or n_test < MIN_TEST:
        raise InvalidParameterError(
            f"test_size={test_size} leaves {n_train} training and {n_test} held-out rows of "
            f"{n}; block_r2 needs at least {MIN_TRAIN} and {MIN_TEST}"
        )
    if x.shape[1] == 0:
        return 0.0

    order = rng.permutation(n)
    test, train = order[:n_test], order[n_test:]
    if regressor == "kernel_ridge" and train.size > max_train:
        train = rng.choice(train, size=max_train, replace=False)
    seed = int(rng.integers(2**31 - 1))

    x_mean, x_scale = _moments(x[train])
    y_mean, y_scale = _moments(y[train])
    x_train = (x[train] - x_mean) / x_scale
    y_train = (y[train] - y_mean) / y_scale
    x_test = (x[test] - x_mean) / x_scale
    y_test = (y[test] - y_mean) / y_scale

    if regressor == "kernel_ridge":
        model = _fit_kernel_ridge(x_train, y_train, seed)
    else:
        model = _fit_mlp(x_train, y_train, seed)
    pred = np.empty_like(y_test)
    for start in range(0, n_test, CHUNK):
        stop = min(start + CHUNK, n_test)
        pred[start:stop] = np.asarray(model.predict(x_test[start:stop])).reshape(stop - start, -1)
    return _weighted_r2(y_test, pred)


def _weighted_r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """1 - SSE / SST with both summed over columns; (n, m) arrays."""
    sse = float(((y_true - y_pred) ** 2).sum())
    sst = float(((y_true - y_true.mean(axis=0)) ** 2).sum())
    if sst == 0.0:
        raise DataValidationError(
            "target is constant on the held-out rows; R^2 is undefined (use more rows)"
        )
    return 1.0 - sse / sst


def _moments(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = a.mean(axis=0)
    scale = a.std(axis=0)
    return mean, np.where(scale > 0, scale, 1.0)


def _fit_kernel_ridge(x: np.ndarray, y: np.ndarray, seed: int):
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.model_selection import GridSearchCV, KFold

    k = x.shape[1]
    grid = {"gamma": [g / k for g in GAMMA_GRID], "alpha": list(ALPHA_GRID)}
    search = GridSearchCV(
        KernelRidge(kernel="rbf"),
        grid,
        scoring="neg_mean_squared_error",
        cv=KFold(n_splits=3, shuffle=True, random_state=seed),
    )
    search.fit(x, y)
    return search.best_estimator_


def _fit_mlp(x: np.ndarray, y: np.ndarray, seed: int):
    from sklearn.neural_network import MLPRegressor

    model = MLPRegressor(
        hidden_layer_sizes=(64, 64), early_stopping=True, max_iter=1000, random_state=seed
    )
    model.fit(x, y[:, 0] if y.shape[1] == 1 else y)
    return model


def block_r2_scores(z, relevant_dims, latents, groups, irrelevant, **block_r2_kwargs) -> list:
    """Block R^2 of each task's selected coordinates against its group and the irrelevant ones.

    Parameters
    ----------
    z : ndarray of shape (n_samples, d_hat)
        The learned representation.
    relevant_dims : sequence of length n_tasks
        For each task, the learned coordinates its head reads: an int array of indices into
        the columns of ``z``, or a bool mask of length ``d_hat`` (so a fitted (n_tasks,
        d_hat) mask can be passed as it is). May be empty.
    latents : ndarray of shape (n_samples, d)
        The true latents.
    groups : sequence of length n_tasks of int arrays
        The true coordinates of each task (``TaskLatents.groups``); none empty.
    irrelevant : int array of shape (n_irrelevant,)
        The true coordinates no task depends on (``TaskLatents.irrelevant``); may be empty.
    **block_r2_kwargs
        Passed to :func:`block_r2` (``regressor``, ``test_size``, ``max_train``,
        ``random_state``). An int ``random_state`` is passed unchanged to every call; None
        or a Generator is first turned into one int seed. Every call thus holds out the same
        rows and the results are reproducible.

    Returns
    -------
    list of dict, one per task
        ``task`` (int), ``dims`` (list of int, the selected columns of ``z``),
        ``r2_relevant`` (``block_r2(z[:, dims], latents[:, groups[k]])``) and
        ``r2_irrelevant`` (``block_r2(z[:, dims], latents[:, irrelevant])``, NaN when there
        are no irrelevant coordinates). With no dims selected both are 0.0.

    Notes
    -----
    Group-wise identifiability of task k (DESIGN.md, section 4, Theorem 2) predicts
    ``r2_relevant`` near 1 and ``r2_irrelevant`` near 0. A superset support (Proposition 2:
    no sparsity penalty) shows as both near 1; a subset support as ``r2_relevant`` well
    below 1. The metric does not look at the other tasks' groups: selected coordinates that
    also carry another task's private coordinates are not penalised here (call
    :func:`block_r2` on those coordinates to check). False positives and negatives are
    those of :func:`block_r2`.
    """
    z = _as_2d("z", z, "(n_samples, d_hat)")
    s = _as_2d("latents", latents, "(n_samples, d)")
    if z.shape[0] != s.shape[0]:
        raise DataValidationError(
            f"z has {z.shape[0]} rows but latents has {s.shape[0]}; they must hold the same samples"
        )
    d_hat, d = z.shape[1], s.shape[1]
    dims_list, group_list = _per_task_pair("relevant_dims", relevant_dims, groups)
    dims_list = [
        _indices(f"relevant_dims[{k}] (task {k})", dims, size=d_hat, of="z")
        for k, dims in enumerate(dims_list)
    ]
    group_list = [
        _indices(f"groups[{k}] (task {k})", g, size=d, of="latents", nonempty=True)
        for k, g in enumerate(group_list)
    ]
    irrelevant = _indices("irrelevant", irrelevant, size=d, of="latents")
    for k, g in enumerate(group_list):
        shared = np.intersect1d(g, irrelevant)
        if shared.size:
            raise DataValidationError(
                f"latent coordinate {int(shared[0])} is in groups[{k}] and in irrelevant; "
                "a coordinate is either relevant to some task or irrelevant"
            )

    kwargs = dict(block_r2_kwargs)
    random_state = kwargs.pop("random_state", None)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        seed = int(random_state)
    else:
        seed = int(check_random_state(random_state).integers(2**63 - 1))

    scores = []
    for k, (dims, group) in enumerate(zip(dims_list, group_list, strict=True)):
        inputs = z[:, dims]
        relevant = block_r2(inputs, s[:, group], random_state=seed, **kwargs)
        if irrelevant.size:
            other = block_r2(inputs, s[:, irrelevant], random_state=seed, **kwargs)
        else:
            other = float("nan")
        scores.append(
            {
                "task": k,
                "dims": [int(i) for i in dims],
                "r2_relevant": relevant,
                "r2_irrelevant": other,
            }
        )
    return scores


# ----------------------------------------------------------------------------------------
# MCC
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MCCResult:
    """Mean correlation coefficient after matching learned to true coordinates.

    Attributes
    ----------
    score : float in [0, 1]
        Mean absolute correlation of the matched pairs (``min(d_hat, d)`` of them).
    matching : int ndarray of shape (d,)
        ``matching[j]`` is the learned coordinate matched to true coordinate ``j``, or -1
        when it is left unmatched (only when ``d_hat < d``).
    correlations : ndarray of shape (d_hat, d)
        Absolute correlation of every learned coordinate with every true one.
    method : {"pearson", "spearman"}
    n_samples : int or None
        Rows the correlations were computed on.
    """

    score: float
    matching: np.ndarray
    correlations: np.ndarray
    method: str
    n_samples: int | None = None

    def __post_init__(self):
        matching = np.array(self.matching, dtype=np.intp)
        correlations = np.array(self.correlations, dtype=np.float64)
        matching.setflags(write=False)
        correlations.setflags(write=False)
        object.__setattr__(self, "matching", matching)
        object.__setattr__(self, "correlations", correlations)
        object.__setattr__(self, "score", float(self.score))

    def to_dict(self) -> dict:
        """Plain-Python form (lists for arrays), as written by :meth:`to_json`."""
        return {
            "score": self.score,
            "matching": self.matching.tolist(),
            "correlations": self.correlations.tolist(),
            "method": self.method,
            "n_samples": self.n_samples,
        }

    @classmethod
    def from_dict(cls, d: dict) -> MCCResult:
        """Inverse of :meth:`to_dict`."""
        d_true = len(d["matching"])
        correlations = np.asarray(d["correlations"], dtype=np.float64).reshape(-1, d_true)
        n = d.get("n_samples")
        return cls(
            score=float(d["score"]),
            matching=np.asarray(d["matching"], dtype=np.intp),
            correlations=correlations,
            method=d["method"],
            n_samples=None if n is None else int(n),
        )

    def to_json(self, path=None) -> str:
        """Serialise to JSON; also write to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source) -> MCCResult:
        """Read a result from a JSON string or a path to a JSON file."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            text = Path(source).read_text()
        return cls.from_dict(json.loads(text))

    def __repr__(self) -> str:
        d_hat, d = self.correlations.shape
        return (
            f"MCCResult(score={self.score:.4f}, method={self.method!r}, d_hat={d_hat}, d={d}, "
            f"matching={self.matching.tolist()})"
        )


def mcc(z, latents, *, method: str = "pearson") -> MCCResult:
    """Mean correlation coefficient between matched learned and true coordinates.

    Parameters
    ----------
    z : ndarray of shape (n_samples, d_hat) or (n_samples,)
        The learned representation.
    latents : ndarray of shape (n_samples, d) or (n_samples,)
        The true latents; no column may be constant.
    method : {"pearson", "spearman"}
        ``"pearson"`` correlates the values; ``"spearman"`` correlates their ranks (ties
        get their average rank), so any strictly monotone function of a coordinate counts
        as a perfect match.

    Returns
    -------
    MCCResult
        ``score`` in [0, 1], ``matching`` of shape (d,), ``correlations`` of shape
        (d_hat, d), ``method``, ``n_samples``.

    Raises
    ------
    DataValidationError
        Mismatched rows, fewer than 3 rows, NaN or inf, a constant column of ``latents``.
    InvalidParameterError
        An unknown ``method``.

    Notes
    -----
    The learned and true coordinates are paired one to one by the Hungarian algorithm
    (``scipy.optimize.linear_sum_assignment``), maximising the sum of absolute correlations;
    the score is the mean absolute correlation of the ``min(d_hat, d)`` pairs. Extra learned
    coordinates (``d_hat > d``) are left out; a constant learned coordinate has correlation
    0 with every true one.

    *What it assumes.* Coordinate-wise identifiability: each true coordinate is recovered,
    up to permutation, by one learned coordinate through an affine map (Pearson) or a
    strictly monotone map (Spearman), and latents are independent.

    *False negatives.* It is the wrong metric for group-wise identifiability (DESIGN.md,
    section 4): a rotation by 45 degrees inside a pair of coordinates gives an MCC of
    about 0.71 although the pair is perfectly recovered as a block (block R^2 near 1).
    Pearson also penalises nonlinear monotone maps (use Spearman), and both miss
    non-monotone ones (``z = s**2`` has correlation about 0 with ``s``).

    *False positives.* With ``d_hat < d`` the score averages only the matched pairs, so a
    representation that recovers a few coordinates well and misses the rest still scores
    high: check ``matching == -1``. With few rows and many coordinates, chance correlations
    (of order ``1 / sqrt(n_samples)``) are maximised by the matching and inflate the score.
    If the true latents are correlated, one learned coordinate correlates with several true
    ones.
    """
    check_choice("method", method, MCC_METHODS)
    zz = _as_2d("z", z, "(n_samples, d_hat)")
    s = _as_2d("latents", latents, "(n_samples, d)")
    n = s.shape[0]
    if zz.shape[0] != n:
        raise DataValidationError(
            f"z has {zz.shape[0]} rows but latents has {n}; they must hold the same samples"
        )
    if n < 3:
        raise DataValidationError(f"z and latents have {n} rows; mcc needs at least 3")
    check_finite("z", zz)
    check_finite("latents", s)
    constant = np.flatnonzero(np.ptp(s, axis=0) == 0)
    if constant.size:
        raise DataValidationError(
            f"column {int(constant[0])} of latents is constant; its correlation is undefined"
        )
    if method == "spearman":
        zz = rankdata(zz, axis=0)
        s = rankdata(s, axis=0)
    correlations = _abs_correlation(zz, s)
    rows, cols = linear_sum_assignment(correlations, maximize=True)
    matching = np.full(s.shape[1], -1, dtype=np.intp)
    matching[cols] = rows
    score = float(correlations[rows, cols].mean())
    return MCCResult(score, matching, correlations, method, n)


def _abs_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|corr| of every column of ``a`` (n, p) with every column of ``b`` (n, q): (p, q)."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    norm_a = np.sqrt((a**2).sum(axis=0))
    norm_b = np.sqrt((b**2).sum(axis=0))
    # A constant column of ``a`` (norm 0) correlates with nothing.
    norm_a = np.where(norm_a > 0, norm_a, np.inf)
    return np.clip(np.abs((a / norm_a).T @ (b / norm_b)), 0.0, 1.0)


# ----------------------------------------------------------------------------------------
# support recovery
# ----------------------------------------------------------------------------------------


def support_recovery(selected, groups, matching) -> list:
    """Size, precision and recall of each task's selected learned coordinates.

    Parameters
    ----------
    selected : sequence of length n_tasks
        For each task, the learned coordinates it selects: an int array of non-negative
        indices, or a bool mask over the learned coordinates. May be empty.
    groups : sequence of length n_tasks of int arrays
        The true coordinates of each task; none empty.
    matching : int array of shape (d,)
        ``matching[j]`` is the learned coordinate matched to true coordinate ``j``, or -1
        (``MCCResult.matching``). No learned coordinate may appear twice.

    Returns
    -------
    list of dict, one per task
        ``task``, ``size`` (selected coordinates), ``true_size`` (group size),
        ``size_error`` (``size - true_size``: positive for a superset, negative for a
        subset), ``precision`` (fraction of the selected learned coordinates matched to a
        true coordinate of the group), ``recall`` (fraction of the group's true coordinates
        whose matched learned coordinate is selected). With nothing selected, ``precision``
        is 0.0 (the convention of ``structure_scores``: an empty denominator gives 1.0 only
        when there was nothing to find).

    Raises
    ------
    DataValidationError
        Mismatched numbers of tasks; a negative, non-integer or repeated index, naming the
        task and the index; a group coordinate outside ``range(d)``; a learned coordinate
        matched twice.

    Notes
    -----
    *What it assumes.* That the matching pairs each true coordinate with the learned
    coordinate that carries it. Under group-wise identifiability this holds only up to a
    permutation *inside* each group: a rotation within a group makes the matching of its
    coordinates arbitrary (any pairing of the group's true and learned coordinates is as
    good), but since every learned coordinate of the group is then matched to *some*
    coordinate of the group, precision and recall are unaffected. They are wrong when a
    learned coordinate mixes coordinates of different groups (it is matched to one of
    them only), and a selected learned coordinate left unmatched (``d_hat > d``, for
    example a duplicate of a group coordinate) always counts against precision, even if it
    carries the group (false negative). For a matching-free check, use
    :func:`block_r2_scores`.
    """
    match = np.asarray(matching)
    if match.ndim != 1 or match.size == 0:
        raise DataValidationError(f"matching has shape {match.shape}, expected (d,)")
    if match.dtype == bool or not np.issubdtype(match.dtype, np.integer):
        raise DataValidationError(
            f"matching must hold integer learned coordinates (or -1); got dtype {match.dtype}"
        )
    if (match < -1).any():
        j = int(np.flatnonzero(match < -1)[0])
        raise DataValidationError(
            f"matching[{j}] is {int(match[j])}; expected a learned coordinate >= 0 or -1"
        )
    matched = match[match >= 0]
    values, counts = np.unique(matched, return_counts=True)
    if (counts > 1).any():
        v = int(values[counts > 1][0])
        raise DataValidationError(
            f"learned coordinate {v} is matched to several true coordinates "
            f"{np.flatnonzero(match == v).tolist()}; a matching is one to one"
        )
    sel_list, group_list = _per_task_pair("selected", selected, groups)
    d = match.size
    results = []
    for k, (sel, group) in enumerate(zip(sel_list, group_list, strict=True)):
        sel = _indices(f"selected[{k}] (task {k})", sel)
        group = _indices(f"groups[{k}] (task {k})", group, size=d, of="matching", nonempty=True)
        targets = match[group]
        group_learned = targets[targets >= 0]
        hits = np.isin(sel, group_learned)
        precision = float(hits.mean()) if sel.size else 0.0
        recall = float(np.isin(targets, sel).mean())
        results.append(
            {
                "task": k,
                "size": int(sel.size),
                "true_size": int(group.size),
                "size_error": int(sel.size) - int(group.size),
                "precision": precision,
                "recall": recall,
            }
        )
    return results


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------


def _as_2d(name: str, array, shape_hint: str, *, allow_no_columns: bool = False) -> np.ndarray:
    """A float (n, p) array; a 1-D array becomes one column."""
    if allow_no_columns:
        raw = np.asarray(array)
        if raw.ndim == 2 and raw.shape[1] == 0 and raw.shape[0] > 0:
            return np.zeros(raw.shape, dtype=np.float64)
    out = as_float_array(name, array, ndims=(1, 2), shape_hint=shape_hint)
    return out[:, None] if out.ndim == 1 else out


def _per_task_pair(name: str, value, groups) -> tuple[list, list]:
    """``value`` and ``groups`` split per task, with one entry each per task."""
    values, group_list = _per_task(name, value), _per_task("groups", groups)
    if len(values) != len(group_list):
        raise DataValidationError(
            f"{name} has {len(values)} entries but groups has {len(group_list)}; give one per task"
        )
    return values, group_list


def _per_task(name: str, value) -> list:
    """Split a per-task argument (a sequence, or a 2-D mask array) into a list."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise DataValidationError(
            f"{name} must be a sequence with one index array per task; got {value!r}"
        )
    return list(value)


def _indices(
    name: str, value, *, size: int | None = None, of: str = "", nonempty: bool = False
) -> np.ndarray:
    """Validate an index array (or a bool mask of length ``size``) into an intp array."""
    arr = np.asarray(value)
    if arr.dtype == bool:
        if arr.ndim != 1 or (size is not None and arr.shape[0] != size):
            expected = f"({size},)" if size is not None else "1-D"
            raise DataValidationError(
                f"{name} is a boolean mask of shape {arr.shape}, expected {expected}"
            )
        out = np.flatnonzero(arr).astype(np.intp)
    else:
        if arr.ndim != 1:
            raise DataValidationError(
                f"{name} has shape {arr.shape}, expected a 1-D array of indices"
            )
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise DataValidationError(
                f"{name} must hold integer indices; got {arr.tolist()!r} (dtype {arr.dtype})"
            )
        out = arr.astype(np.intp)
        if (out < 0).any():
            raise DataValidationError(f"{name} contains the negative index {int(out[out < 0][0])}")
        if size is not None and (out >= size).any():
            raise DataValidationError(
                f"{name} contains the index {int(out[out >= size][0])}, but {of} has only "
                f"{size} {'entries' if of == 'matching' else 'columns'}"
            )
        values, counts = np.unique(out, return_counts=True)
        if (counts > 1).any():
            raise DataValidationError(
                f"{name} contains the index {int(values[counts > 1][0])} more than once"
            )
    if nonempty and out.size == 0:
        raise DataValidationError(f"{name} is empty; every task needs at least one coordinate")
    return out
