"""Layer 2 baseline: each task's latent coordinates from a group-lasso additive model.

Every task is fitted on its own: each latent coordinate z_j is expanded into a few spline
features (one group per coordinate) and the task is regressed on all of them with the penalty
lambda * sum_j ||beta_j||_2, solved by accelerated proximal gradient (FISTA). A coordinate is
relevant to a task when its group's coefficients are not all zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import SplineTransformer

from .._params import ConstructorParams
from .._targets import check_task_targets, encode_targets, resolve_task_types
from .._validation import (
    DataValidationError,
    InvalidParameterError,
    as_float_array,
    check_choice,
    check_finite,
    check_float,
    check_int,
    check_random_state,
    warn,
)

LOSSES = ("squared", "multinomial")
#: Singular values of a coordinate's centred spline block below this times the largest are
#: dropped when the block is orthonormalised (knots where the data leave a basis function flat).
BASIS_TOLERANCE = 1e-8


# ----------------------------------------------------------------------------------------
# the solver
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupLassoSolution:
    """One solution of the group lasso.

    Attributes
    ----------
    coef : ndarray of shape (n_features, n_outputs)
        One output for the squared loss, one per class for the multinomial loss.
    intercept : ndarray of shape (n_outputs,)
    n_iter : int
    converged : bool
        Whether the proximal gradient mapping fell to ``tol`` before ``max_iter``.
    """

    coef: np.ndarray
    intercept: np.ndarray
    n_iter: int
    converged: bool

    def group_norms(self, groups) -> np.ndarray:
        """||beta_j||_2 of each group (Frobenius norm over its columns and outputs), (n_groups,)."""
        groups = np.asarray(groups)
        return np.sqrt(np.bincount(groups, weights=np.sum(self.coef**2, axis=1)))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """X @ coef + intercept, shape (n_samples, n_outputs)."""
        return X @ self.coef + self.intercept


class _SquaredLoss:
    """(1 / 2n) ||y - X beta - b||^2, solved on centred data through the Gram matrix."""

    def __init__(self, X: np.ndarray, y: np.ndarray):
        n = len(y)
        self.x_mean, self.y_mean = X.mean(axis=0), y.mean()
        Xc = X - self.x_mean
        self.gram = Xc.T @ Xc / n
        self.xty = (Xc.T @ (y - self.y_mean) / n)[:, None]
        self.lipschitz = max(float(np.linalg.eigvalsh(self.gram)[-1]), 1e-12)
        self.n_outputs = 1

    def start_intercept(self) -> np.ndarray:
        return np.zeros(1)

    def gradient(self, coef: np.ndarray, intercept: np.ndarray):
        return self.gram @ coef - self.xty, np.zeros(1)

    def final_intercept(self, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
        return self.y_mean - self.x_mean @ coef


class _MultinomialLoss:
    """Mean cross-entropy of softmax(X beta + b) against integer labels 0..C-1."""

    def __init__(self, X: np.ndarray, y: np.ndarray, n_classes: int):
        n = len(y)
        self.X = X
        self.onehot = np.eye(n_classes)[y]
        self.frequencies = self.onehot.mean(axis=0)
        augmented = np.column_stack([X, np.ones(n)])
        # The softmax Hessian in the logits has norm at most 1/2.
        top = float(np.linalg.eigvalsh(augmented.T @ augmented / n)[-1])
        self.lipschitz = max(0.5 * top, 1e-12)
        self.n_outputs = n_classes

    def start_intercept(self) -> np.ndarray:
        return np.log(np.clip(self.frequencies, 1e-12, None))

    def gradient(self, coef: np.ndarray, intercept: np.ndarray):
        logits = self.X @ coef + intercept
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        residual = (probabilities - self.onehot) / len(self.X)
        return self.X.T @ residual, residual.sum(axis=0)

    def final_intercept(self, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
        return intercept


def _make_loss(X: np.ndarray, y: np.ndarray, loss: str, n_classes: int | None):
    check_choice("loss", loss, LOSSES)
    if loss == "squared":
        return _SquaredLoss(X, y)
    if n_classes is None:
        n_classes = int(y.max()) + 1
    n_classes = check_int("n_classes", n_classes, minimum=2)
    bad = (y != np.round(y)) | (y < 0) | (y >= n_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"y[{i}] is {y[i]}; the multinomial loss takes class indices 0, ..., {n_classes - 1}"
        )
    return _MultinomialLoss(X, y.astype(int), n_classes)


def group_prox(v: np.ndarray, groups: np.ndarray, threshold: float) -> np.ndarray:
    """Proximal map of threshold * sum_j ||v_j||: each group shrunk towards 0 by ``threshold``.

    v : (n_features, n_outputs); groups : (n_features,) group index of each row.
    """
    norms = np.sqrt(np.bincount(groups, weights=np.sum(v**2, axis=1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(norms > threshold, 1.0 - threshold / norms, 0.0)
    return v * scale[groups][:, None]


def _fista(loss, groups, lam, coef, intercept, tol, max_iter) -> GroupLassoSolution:
    """FISTA with adaptive restart (O'Donoghue and Candes, 2015) from a warm start.

    Stops when the proximal gradient mapping L * (y - x_next), in max norm, is at most
    ``tol``: the KKT conditions then hold to about ``tol`` (in units of lambda).
    """
    step = 1.0 / loss.lipschitz
    x_c, x_b = coef, intercept
    y_c, y_b = coef, intercept
    t = 1.0
    for it in range(1, max_iter + 1):
        g_c, g_b = loss.gradient(y_c, y_b)
        new_c = group_prox(y_c - step * g_c, groups, step * lam)
        new_b = y_b - step * g_b
        change = max(np.abs(y_c - new_c).max(), np.abs(y_b - new_b).max(initial=0.0))
        if change * loss.lipschitz <= tol:
            return GroupLassoSolution(new_c, loss.final_intercept(new_c, new_b), it, True)
        if np.sum((y_c - new_c) * (new_c - x_c)) + np.sum((y_b - new_b) * (new_b - x_b)) > 0:
            t = 1.0  # the momentum points uphill: restart it
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        momentum = (t - 1.0) / t_next
        y_c = new_c + momentum * (new_c - x_c)
        y_b = new_b + momentum * (new_b - x_b)
        x_c, x_b, t = new_c, new_b, t_next
    return GroupLassoSolution(x_c, loss.final_intercept(x_c, x_b), max_iter, False)


def _check_problem(X, y, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = as_float_array("X", X, ndims=(2,), shape_hint="(n_samples, n_features)")
    check_finite("X", X)
    y = as_float_array("y", y, ndims=(1,), shape_hint="(n_samples,)")
    check_finite("y", y)
    if len(y) != len(X):
        raise DataValidationError(f"X has {len(X)} samples but y has {len(y)}")
    groups = np.asarray(groups)
    if groups.shape != (X.shape[1],) or not np.issubdtype(groups.dtype, np.integer):
        raise DataValidationError(
            f"groups must be an int array of shape ({X.shape[1]},), one group index per column "
            f"of X; got shape {groups.shape} and dtype {groups.dtype}"
        )
    if groups.min() < 0 or np.setdiff1d(np.arange(groups.max() + 1), groups).size:
        raise DataValidationError(
            f"groups must number the groups 0, 1, ... with none empty; got {groups}"
        )
    return X, y, groups


def group_lasso_path(
    X, y, groups, lambdas, *, loss: str = "squared", n_classes=None, tol=1e-6, max_iter=10_000
) -> list[GroupLassoSolution]:
    """Solutions of the group lasso along ``lambdas``, each warm-started from the previous one.

    Minimises ``loss(X beta + b, y) + lambda * sum_j ||beta_j||_2`` with an unpenalised
    intercept b, where beta_j holds the rows of group j.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Targets (squared loss) or class indices 0..C-1 (multinomial loss).
    groups : int ndarray of shape (n_features,)
        Group 0, 1, ... of each column.
    lambdas : sequence of float >= 0
        Best given in decreasing order, so that each warm start is close.
    loss : {"squared", "multinomial"}
        ``(1 / 2n) ||y - X beta - b||^2`` or the mean cross-entropy of softmax(X beta + b).
    n_classes : int or None
        Classes C of the multinomial loss; None takes ``max(y) + 1``.
    tol : float
        Largest entry of the proximal gradient mapping at which the solver stops.
    max_iter : int

    Returns
    -------
    list of GroupLassoSolution, one per lambda
    """
    X, y, groups = _check_problem(X, y, groups)
    lambdas = [check_float("lambdas[]", lam, low=0.0) for lam in np.atleast_1d(lambdas)]
    tol = check_float("tol", tol, low=0.0, low_inclusive=False)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    objective = _make_loss(X, y, loss, n_classes)
    coef = np.zeros((X.shape[1], objective.n_outputs))
    intercept = objective.start_intercept()
    path = []
    for lam in lambdas:
        solution = _fista(objective, groups, lam, coef, intercept, tol, max_iter)
        path.append(solution)
        coef = solution.coef
        intercept = solution.intercept  # the squared loss keeps it fixed and ignores it
    return path


def fit_group_lasso(X, y, groups, lam: float, **kwargs) -> GroupLassoSolution:
    """The group lasso at one ``lam``; keyword arguments as :func:`group_lasso_path`."""
    return group_lasso_path(X, y, groups, [lam], **kwargs)[0]


def max_lambda(X, y, groups, *, loss: str = "squared", n_classes=None) -> float:
    """The smallest lambda at which every group is zero: max_j ||gradient_j|| at beta = 0."""
    X, y, groups = _check_problem(X, y, groups)
    objective = _make_loss(X, y, loss, n_classes)
    start = np.zeros((X.shape[1], objective.n_outputs))
    gradient, _ = objective.gradient(start, objective.start_intercept())
    return float(np.sqrt(np.bincount(groups, weights=np.sum(gradient**2, axis=1))).max())


def heldout_loss(solution: GroupLassoSolution, X: np.ndarray, y: np.ndarray, loss: str) -> float:
    """Mean squared error, or mean cross-entropy, of a solution on (X, y)."""
    scores = solution.decision_function(X)
    if loss == "squared":
        return float(np.mean((y - scores[:, 0]) ** 2))
    return float(-np.mean(log_softmax(scores, axis=1)[np.arange(len(y)), y.astype(int)]))


# ----------------------------------------------------------------------------------------
# features: one group of orthonormal spline columns per latent coordinate
# ----------------------------------------------------------------------------------------


class AdditiveBasis:
    """B-spline features of each coordinate, centred and orthonormalised within it.

    Each coordinate's block Phi_j (n, B) is rotated so that Phi_j^T Phi_j / n = I on the data
    it was fitted on; the penalty then treats every coordinate alike, and ||beta_j|| is the
    standard deviation of coordinate j's fitted contribution.
    """

    def __init__(self, n_knots: int = 5, degree: int = 3):
        self.n_knots = n_knots
        self.degree = degree

    def fit(self, Z: np.ndarray) -> AdditiveBasis:
        """Z : (n, d) standardised coordinates."""
        self.spline_ = SplineTransformer(
            n_knots=self.n_knots,
            degree=self.degree,
            knots="quantile",
            include_bias=False,
            extrapolation="linear",
        ).fit(Z)
        raw = self.spline_.transform(Z)
        self.mean_ = raw.mean(axis=0)
        self.width_ = raw.shape[1] // Z.shape[1]
        self.rotations_ = [
            _whitening(block, len(Z)) for block in self._blocks(raw - self.mean_, Z.shape[1])
        ]
        self.groups_ = np.repeat(np.arange(Z.shape[1]), [r.shape[1] for r in self.rotations_])
        return self

    def _blocks(self, raw: np.ndarray, d: int) -> list[np.ndarray]:
        return [raw[:, j * self.width_ : (j + 1) * self.width_] for j in range(d)]

    def transform(self, Z: np.ndarray) -> np.ndarray:
        """(n, p) features, p = len(groups_)."""
        blocks = self._blocks(self.spline_.transform(Z) - self.mean_, Z.shape[1])
        return np.hstack([b @ r for b, r in zip(blocks, self.rotations_, strict=True)])


def _whitening(block: np.ndarray, n: int) -> np.ndarray:
    """(B, r) matrix W with (block @ W)^T (block @ W) / n = I_r, r the block's rank."""
    _, s, vt = np.linalg.svd(block, full_matrices=False)
    keep = s > BASIS_TOLERANCE * s[0]
    return vt[keep].T / s[keep] * np.sqrt(n)


# ----------------------------------------------------------------------------------------
# the estimator
# ----------------------------------------------------------------------------------------


class GroupLassoLatents(ConstructorParams):
    """Per-task selection of latent coordinates by a group-lasso additive model.

    For each task separately: every coordinate of the standardised Z is expanded into cubic
    B-spline features (``n_knots`` quantile knots, linear beyond them), centred and
    orthonormalised within the coordinate, and the task is fitted with one group per
    coordinate and the penalty lambda * sum_j ||beta_j||_2: squared loss on the standardised
    target for regression, softmax cross-entropy for classification. lambda runs along a
    decreasing path from the smallest value that zeroes every group; ``cv``-fold
    cross-validation (stratified for classification) scores each lambda by held-out mean
    squared error or cross-entropy, and the *one-standard-error rule* picks the largest lambda
    whose mean held-out loss is within one standard error (across folds) of the best, the
    sparsest model the data cannot tell apart from the best one. The model is refitted on all
    labelled samples at that lambda.

    It assumes the task is additive in the coordinates (no interactions) and that the
    coordinates are the right ones: if a task's information is spread over rotated
    coordinates, the group lasso keeps all of them.

    Parameters
    ----------
    n_knots : int, default=5
        Knots of each coordinate's spline (``n_knots + degree - 2`` features per coordinate).
    degree : int, default=3
    cv : int, default=5
        Folds of the cross-validation.
    n_lambdas : int, default=30
        Length of the lambda path, log-spaced.
    lambda_min_ratio : float in (0, 1), default=1e-3
        Smallest lambda of the path over the largest.
    task_types : sequence of {"regression", "classification"} or None
        One per task; None infers it as :class:`specialize.SparseTaskVAE` does
        (classification for integer columns with at most 10 distinct values).
    tol : float, default=1e-6
        Solver tolerance on the proximal gradient mapping (units of lambda).
    max_iter : int, default=10000
        Most solver iterations per lambda.
    random_state : int, numpy Generator or None
        Seeds the assignment of samples to folds.

    Attributes
    ----------
    task_mask_ : ndarray of shape (n_tasks, n_features_in)
        Group norms ||beta_j|| of each task's final model, zero off its support.
    relevant_dims_ : list of int ndarrays
        Each task's coordinates with a non-zero group.
    lambdas_ : ndarray of shape (n_tasks,)
        The chosen lambda of each task.
    path_ : list of dict
        Per task: ``lambdas``, ``cv_loss`` (mean held-out loss), ``cv_se`` (its standard
        error), ``n_selected`` (groups kept by the full-data fit at each lambda up to the
        chosen one), ``chosen`` (index of the chosen lambda), ``n_labelled``.
    solutions_ : list of GroupLassoSolution
        Each task's final model on the features of ``basis_``.
    basis_ : AdditiveBasis
    task_types_ : list of str
    classes_ : list of ndarray or None
    target_mean_, target_scale_ : ndarray of shape (n_tasks,)
        Standardisation of regression targets.
    mean_, scale_ : ndarray of shape (n_features_in,)
        Standardisation of Z.
    n_features_in_, n_tasks_ : int
    """

    def __init__(
        self,
        *,
        n_knots: int = 5,
        degree: int = 3,
        cv: int = 5,
        n_lambdas: int = 30,
        lambda_min_ratio: float = 1e-3,
        task_types=None,
        tol: float = 1e-6,
        max_iter: int = 10_000,
        random_state=None,
    ):
        self.n_knots = n_knots
        self.degree = degree
        self.cv = cv
        self.n_lambdas = n_lambdas
        self.lambda_min_ratio = lambda_min_ratio
        self.task_types = task_types
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

    def _validated(self) -> dict:
        return {
            "n_knots": check_int("n_knots", self.n_knots, minimum=2),
            "degree": check_int("degree", self.degree, minimum=1),
            "cv": check_int("cv", self.cv, minimum=2),
            "n_lambdas": check_int("n_lambdas", self.n_lambdas, minimum=1),
            "lambda_min_ratio": check_float(
                "lambda_min_ratio",
                self.lambda_min_ratio,
                low=0.0,
                high=1.0,
                low_inclusive=False,
                high_inclusive=False,
            ),
            "tol": check_float("tol", self.tol, low=0.0, low_inclusive=False),
            "max_iter": check_int("max_iter", self.max_iter, minimum=1),
        }

    def fit(self, Z, G) -> GroupLassoLatents:
        """Select each task's coordinates of Z (n, d) from task targets G (n, M); returns self.

        NaN in G marks a missing label: that sample is left out of that task only.
        """
        p = self._validated()
        Z = _check_latents(Z)
        G = check_task_targets(G, len(Z), inputs="Z")
        rng = check_random_state(self.random_state)
        self.task_types_ = resolve_task_types(self.task_types, G)
        encoded, self.classes_, self.target_mean_, self.target_scale_ = encode_targets(
            G, self.task_types_
        )
        self.mean_, self.scale_ = Z.mean(axis=0), Z.std(axis=0)
        self.n_features_in_, self.n_tasks_ = Z.shape[1], G.shape[1]
        standardised = (Z - self.mean_) / self.scale_
        self.basis_ = AdditiveBasis(p["n_knots"], p["degree"]).fit(standardised)
        features = self.basis_.transform(standardised)
        fits = [
            self._fit_task(features, encoded[:, k], k, p, int(rng.integers(2**32)))
            for k in range(self.n_tasks_)
        ]
        self.solutions_ = [solution for solution, _ in fits]
        self.path_ = [path for _, path in fits]
        self.lambdas_ = np.array([path["lambdas"][path["chosen"]] for path in self.path_])
        self.task_mask_ = np.stack([s.group_norms(self.basis_.groups_) for s in self.solutions_])
        self.relevant_dims_ = [np.flatnonzero(row > 0) for row in self.task_mask_]
        return self

    def _fit_task(self, features, target, task: int, p: dict, seed: int):
        """The chosen solution and the path record of one task's labelled samples."""
        labelled = ~np.isnan(target)
        X, y = features[labelled], target[labelled]
        classes = None if self.classes_[task] is None else len(self.classes_[task])
        loss = "squared" if classes is None else "multinomial"
        _check_enough_labels(y, classes, p["cv"], task)
        groups = self.basis_.groups_
        solver = dict(loss=loss, n_classes=classes, tol=p["tol"], max_iter=p["max_iter"])
        top = max_lambda(X, y, groups, loss=loss, n_classes=classes)
        lambdas = top * np.logspace(0.0, np.log10(p["lambda_min_ratio"]), p["n_lambdas"])
        losses = np.array(
            [
                [
                    heldout_loss(s, X[test], y[test], loss)
                    for s in group_lasso_path(X[train], y[train], groups, lambdas, **solver)
                ]
                for train, test in _folds(y, classes, p["cv"], seed)
            ]
        )
        mean = losses.mean(axis=0)
        se = losses.std(axis=0, ddof=1) / np.sqrt(p["cv"])
        chosen = one_standard_error(mean, se)
        path = group_lasso_path(X, y, groups, lambdas[: chosen + 1], **solver)
        if not all(s.converged for s in path):
            warn(
                f"the group lasso of task {task} did not converge in max_iter={p['max_iter']} "
                "iterations at some lambda; raise max_iter or tol",
                ConvergenceWarning,
            )
        record = {
            "lambdas": lambdas.tolist(),
            "cv_loss": mean.tolist(),
            "cv_se": se.tolist(),
            "n_selected": [int((s.group_norms(groups) > 0).sum()) for s in path],
            "chosen": chosen,
            "n_labelled": int(labelled.sum()),
        }
        return path[-1], record

    # ------------------------------------------------------------------ using a fitted model
    def _check_fitted(self) -> None:
        if not hasattr(self, "solutions_"):
            raise InvalidParameterError("this GroupLassoLatents is not fitted yet: call fit(Z, G)")

    def transform(self, Z) -> np.ndarray:
        """Z standardised with the training mean and standard deviation: (n_samples, d)."""
        self._check_fitted()
        Z = _check_latents(Z, width=self.n_features_in_)
        return (Z - self.mean_) / self.scale_

    def transform_task(self, Z, task: int) -> np.ndarray:
        """Task ``task``'s relevant coordinates, standardised.

        Returns ndarray of shape (n_samples, len(relevant_dims_[task])).
        """
        self._check_fitted()
        task = check_int("task", task, minimum=0, maximum=self.n_tasks_ - 1)
        return self.transform(Z)[:, self.relevant_dims_[task]]

    def predict(self, Z) -> np.ndarray:
        """Task predictions (n_samples, n_tasks): regression values in the targets' units,
        class labels for classification tasks."""
        self._check_fitted()
        features = self.basis_.transform(self.transform(Z))
        out = np.empty((len(features), self.n_tasks_))
        for k, solution in enumerate(self.solutions_):
            scores = solution.decision_function(features)
            if self.classes_[k] is None:
                out[:, k] = scores[:, 0] * self.target_scale_[k] + self.target_mean_[k]
            else:
                out[:, k] = self.classes_[k][scores.argmax(axis=1)]
        return out


def one_standard_error(mean: np.ndarray, se: np.ndarray) -> int:
    """Index of the first (largest) lambda whose mean loss is within one SE of the smallest.

    mean, se : (n_lambdas,) along a decreasing lambda path.
    """
    best = int(np.argmin(mean))
    return int(np.flatnonzero(mean <= mean[best] + se[best])[0])


def _folds(y: np.ndarray, n_classes: int | None, cv: int, seed: int):
    """(train, test) index pairs; stratified by class for classification."""
    if n_classes is None:
        return KFold(cv, shuffle=True, random_state=seed).split(y)
    return StratifiedKFold(cv, shuffle=True, random_state=seed).split(y, y)


def _check_enough_labels(y: np.ndarray, n_classes: int | None, cv: int, task: int) -> None:
    if n_classes is None:
        if len(y) < 2 * cv:
            raise DataValidationError(
                f"task {task} of G has {len(y)} labelled samples; {cv}-fold cross-validation "
                f"needs at least {2 * cv}"
            )
        return
    counts = np.bincount(y.astype(int), minlength=n_classes)
    if counts.min() < cv:
        c = int(np.argmin(counts))
        raise DataValidationError(
            f"class {c} of task {task} has {counts[c]} labelled samples; stratified "
            f"{cv}-fold cross-validation needs at least {cv} per class"
        )


def _check_latents(Z, width: int | None = None) -> np.ndarray:
    Z = as_float_array("Z", Z, ndims=(2,), shape_hint="(n_samples, latent_dim)")
    check_finite("Z", Z, hint="; latent coordinates must be finite (only labels may be missing)")
    if width is not None and Z.shape[1] != width:
        raise DataValidationError(f"Z has {Z.shape[1]} columns but the model was fitted on {width}")
    if width is None:
        constant = np.flatnonzero(np.ptp(Z, axis=0) == 0)
        if constant.size:
            raise DataValidationError(f"Z column {constant[0]} is constant: drop it before fitting")
    return Z
