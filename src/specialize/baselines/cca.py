"""Structure baseline from marginal association: canonical correlation of each step with each task.

For a step t and a task i, the canonical correlation between the D columns of X[:, t] and the
one column G[:, i] is the multiple correlation R of the least-squares regression of g_i on
x_t (with an intercept). A step serves a task when R differs from zero, tested by the exact F
test of a multiple correlation or Bartlett's chi-square approximation to Wilks' Lambda.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.cross_decomposition import CCA

from .._params import ConstructorParams
from .._validation import (
    DataValidationError,
    InvalidParameterError,
    as_float_array,
    check_choice,
    check_finite,
    check_float,
    check_int,
)
from ..metrics.structure import structure_scores
from ..structure.aggregate import CORRECTIONS, adjust_pvalues

TESTS = ("f", "bartlett")
#: Singular values of a centred step below this times the largest count as zero (its rank).
RANK_TOLERANCE = 1e-10


class CCAStructure(ConstructorParams):
    """Which steps serve which task, from the marginal association of each step with each task.

    Each (step, task) pair is tested on its own, with no conditioning: a step is assigned to
    a task when x_t and g_i are correlated (canonical correlation R > 0) at level ``alpha``
    after the multiplicity correction over all T * M pairs. This is the CCA comparison of the
    paper.

    It finds every step *marginally* associated with a task, which is not the set of steps
    that serve it: when states form a Markov chain, a step correlates with a task through its
    neighbours (s_{t-1} -> s_t -> a_t -> g), so with enough samples the baseline assigns the
    neighbours of every task step to that task as well, and its precision falls as n grows.
    That is why Layer 1 (:func:`specialize.discover_structure`) tests steps given their
    neighbours, with tasks as colliders of the actions. Associations that are not linear in
    x_t are missed.

    Parameters
    ----------
    alpha : float in (0, 1), default=0.05
        Level at which a corrected p-value counts as association.
    correction : {"holm", None, "bonferroni", "fdr_bh"}, default="holm"
        Multiple-testing correction over the T * M p-values; the default is
        :func:`specialize.discover_structure`'s.
    test : {"f", "bartlett"}, default="f"
        ``"f"``: the exact F test of a multiple correlation,
        ``F = (R^2 / r) / ((1 - R^2) / (n - r - 1))`` with (r, n - r - 1) degrees of freedom,
        r the rank of x_t. ``"bartlett"``: Bartlett's chi-square for Wilks'
        ``Lambda = 1 - R^2``, ``-(n - 1 - (r + 2) / 2) log(Lambda)`` with r degrees of freedom.
        Both assume Gaussian data.

    Attributes
    ----------
    pvalues_ : ndarray of shape (n_steps, n_tasks)
        Raw p-values.
    adjusted_pvalues_ : ndarray of shape (n_steps, n_tasks)
        After ``correction``; ``step_tasks_`` is where they are at most ``alpha``.
    step_tasks_ : bool ndarray of shape (n_steps, n_tasks)
    correlations_ : ndarray of shape (n_steps, n_tasks)
        Canonical (multiple) correlations R in [0, 1].
    ranks_ : int ndarray of shape (n_steps,)
        Rank of each centred step, the numerator degrees of freedom.
    weights_ : ndarray of shape (n_steps, n_tasks, n_features)
    offsets_ : ndarray of shape (n_steps, n_tasks)
        The canonical variate of an assigned pair is ``X[:, t] @ weights_[t, i] - offsets_[t, i]``
        (from scikit-learn's CCA), scaled to unit variance on the training data and signed to
        correlate positively with the task; zero for unassigned pairs.
    n_samples_, n_steps_, n_tasks_, n_features_in_ : int
    """

    def __init__(self, alpha: float = 0.05, *, correction: str | None = "holm", test: str = "f"):
        self.alpha = alpha
        self.correction = correction
        self.test = test

    def fit(self, X, G) -> CCAStructure:
        """Test every step of X (n, T, D) against every task of G (n, M); returns self."""
        alpha = check_float(
            "alpha", self.alpha, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
        )
        check_choice("correction", self.correction, CORRECTIONS)
        check_choice("test", self.test, TESTS)
        X, G = _check_arrays(X, G)
        n, T, D = X.shape
        r2, ranks = multiple_r2(X, G)
        self.correlations_ = np.sqrt(r2)
        self.ranks_ = ranks
        self.pvalues_ = r2_pvalues(r2, ranks, n, self.test)
        self.adjusted_pvalues_ = adjust_pvalues(self.pvalues_.ravel(), self.correction).reshape(
            self.pvalues_.shape
        )
        self.step_tasks_ = self.adjusted_pvalues_ <= alpha
        self.weights_, self.offsets_ = canonical_weights(X, G, self.step_tasks_)
        self.n_samples_, self.n_steps_, self.n_features_in_ = n, T, D
        self.n_tasks_ = G.shape[1]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "step_tasks_"):
            raise InvalidParameterError("this CCAStructure is not fitted yet: call fit(X, G)")

    def scores(self, truth) -> dict:
        """:func:`specialize.metrics.structure_scores` of ``step_tasks_`` against a (T, M) truth."""
        self._check_fitted()
        return structure_scores(self.step_tasks_, truth)

    def transform(self, X, task: int) -> np.ndarray:
        """Canonical variates of the steps assigned to ``task``, in step order.

        X : ndarray of shape (n_samples, n_steps, n_features), the fitted T and D.
        Returns ndarray of shape (n_samples, T_k), T_k the number of steps assigned to it.
        """
        self._check_fitted()
        task = check_int("task", task, minimum=0, maximum=self.n_tasks_ - 1)
        X = _check_sequences(X)
        if X.shape[1:] != (self.n_steps_, self.n_features_in_):
            raise DataValidationError(
                f"X has {X.shape[1]} steps of {X.shape[2]} features; the model was fitted on "
                f"{self.n_steps_} steps of {self.n_features_in_}"
            )
        steps = np.flatnonzero(self.step_tasks_[:, task])
        variates = np.einsum("ntd,td->nt", X[:, steps], self.weights_[steps, task])
        return variates - self.offsets_[steps, task]


def multiple_r2(X: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R^2 of the regression of each task on each step, with an intercept.

    X : (n, T, D), G : (n, M). Returns R^2 of shape (T, M) and the rank of each centred step,
    shape (T,). R^2 is the squared length of the centred task's projection on the column
    space of the centred step, over the task's squared length.
    """
    n, T, _ = X.shape
    Gc = G - G.mean(axis=0)
    total = np.sum(Gc**2, axis=0)
    r2 = np.empty((T, G.shape[1]))
    ranks = np.empty(T, dtype=int)
    for t in range(T):
        basis = _column_basis(X[:, t] - X[:, t].mean(axis=0), t)
        ranks[t] = basis.shape[1]
        r2[t] = np.sum((basis.T @ Gc) ** 2, axis=0) / total
    return np.clip(r2, 0.0, 1.0), ranks


def _column_basis(step: np.ndarray, t: int) -> np.ndarray:
    """Orthonormal basis (n, r) of the columns of a centred step; raises if it is constant."""
    u, s, _ = np.linalg.svd(step, full_matrices=False)
    keep = s > RANK_TOLERANCE * s[0] if s[0] > 0 else np.zeros_like(s, dtype=bool)
    if not keep.any():
        raise DataValidationError(f"X[:, {t}] is constant: step {t} carries no information")
    return u[:, keep]


def r2_pvalues(r2: np.ndarray, ranks: np.ndarray, n: int, test: str) -> np.ndarray:
    """P-values of R^2 = 0 for each (step, task): (T, M) from R^2 (T, M) and ranks (T,)."""
    r = ranks[:, None].astype(float)
    with np.errstate(divide="ignore"):
        if test == "f":
            statistic = (r2 / r) / ((1.0 - r2) / (n - r - 1))
            return stats.f.sf(statistic, r, n - r - 1)
        statistic = -(n - 1 - (r + 2) / 2) * np.log1p(-r2)
        return stats.chi2.sf(statistic, r)


def canonical_weights(X: np.ndarray, G: np.ndarray, assigned: np.ndarray):
    """Affine maps to the unit-variance canonical variate of every assigned (step, task).

    Returns weights (T, M, D) and offsets (T, M): the variate of pair (t, i) is
    ``X[:, t] @ weights[t, i] - offsets[t, i]``; zero where ``assigned`` is False.
    """
    n, T, D = X.shape
    weights = np.zeros((T, G.shape[1], D))
    offsets = np.zeros((T, G.shape[1]))
    for t, i in zip(*np.nonzero(assigned), strict=True):
        cca = CCA(n_components=1).fit(X[:, t], G[:, i])
        # The fitted transform is affine: read its weights off the origin and the unit vectors.
        origin = cca.transform(np.zeros((1, D)))[0, 0]
        w = cca.transform(np.eye(D))[:, 0] - origin
        variate = X[:, t] @ w
        sign = 1.0 if np.dot(variate - variate.mean(), G[:, i] - G[:, i].mean()) >= 0 else -1.0
        w = sign * w / variate.std()
        weights[t, i] = w
        offsets[t, i] = (X[:, t] @ w).mean()
    return weights, offsets


def _check_sequences(X) -> np.ndarray:
    X = as_float_array("X", X, ndims=(3,), shape_hint="(n_samples, n_steps, n_features)")
    check_finite("X", X, hint="; drop or impute the incomplete sequences first")
    return X


def _check_arrays(X, G) -> tuple[np.ndarray, np.ndarray]:
    """X (n, T, D) and G (n, M) as finite float arrays, with n > D + 2 and no constant task."""
    X = _check_sequences(X)
    G = as_float_array("G", G, ndims=(1, 2), shape_hint="(n_samples, n_tasks)")
    if G.ndim == 1:
        G = G[:, None]
    if X.shape[0] != G.shape[0]:
        raise DataValidationError(
            f"X has {X.shape[0]} samples but G has {G.shape[0]}; they must match"
        )
    check_finite("G", G, hint="; drop or impute the unlabelled samples first")
    n, _, D = X.shape
    if n <= D + 2:
        raise DataValidationError(
            f"X has {n} samples for {D} features per step; the F test of a multiple "
            f"correlation needs n > D + 2 = {D + 2}"
        )
    constant = np.flatnonzero(np.ptp(G, axis=0) == 0)
    if constant.size:
        raise DataValidationError(f"task {constant[0]} of G is constant: there is nothing to test")
    return X, G
