"""Conditional mutual information from k nearest neighbours, with a local permutation test.

The statistic is the Frenzel-Pompe (2007) estimate of I(x; y | z) in the maximum norm; its
null distribution comes from copies of the data in which x is permuted among neighbours in
z (Runge 2018), which keeps the dependence of x on z and breaks any dependence of x on y
given z. The defaults follow tigramite's ``CMIknn``.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from functools import partial

import numpy as np

from .._validation import (
    DataValidationError,
    InvalidParameterError,
    check_choice,
    check_float,
    check_int,
    warn,
)
from ._knn import (
    cmi_knn_statistics,
    nearest_in,
    rank_dtype,
    restricted_permutations,
)
from ._random import generator_for, resolve_entropy, test_key
from .base import CIData, CIResult, CITest, TestPlan, single_test

#: Purpose codes of the seed convention (``_random.generator_for``).
NOISE_PURPOSE = 0x636D6901  # per column: the tie-breaking noise
SHUFFLE_PURPOSE = 0x636D6902  # per test: the permutations
#: Tie-breaking noise, in standard deviations of the column (as tigramite).
NOISE_SCALE = 1e-6
#: Warn when a column has fewer distinct values than this fraction of its samples.
DISTINCT_FRACTION_WARNING = 0.9

TRANSFORMS = ("ranks", "standardize", None)
PERMUTED = ("x", "y")


class CMIKnn(CITest):
    """kNN conditional mutual information with a local permutation test (Runge 2018).

    Parameters
    ----------
    knn : float in (0, 1) or int >= 1, default=0.2
        Neighbours k that set each sample's radius in the joint space: a fraction of the
        test's samples (``k = max(1, int(knn * n))``) or a count. Large k smooths more: more
        bias in the estimate, less variance, which is what a test needs (Runge 2018 advises
        0.1 to 0.2 of n). Needs ``k <= n - 1``.
    shuffle_neighbors : int >= 1, default=5
        Size of the neighbourhood in z (the sample itself included) among which x is
        permuted. Needs ``shuffle_neighbors <= n - 1`` when z is not empty.
    sig_samples : int >= 1, default=500
        Permuted copies drawn for the p-value; the p-value is a multiple of
        ``1 / (sig_samples + 1)``.
    transform : {"ranks", "standardize", None}, default="ranks"
        Applied to each column (on the samples of the test) before distances are taken:
        ranks 0 .. n - 1 (the estimate is then invariant to monotone maps of each column),
        zero mean and unit variance, or nothing.
    permute : {"x", "y"}, default="x"
        The variable permuted within z-neighbourhoods: x as in Runge (2018), or y. The
        statistic is symmetric in x and y; only the null distribution changes. Permute the
        variable whose dependence on z is the better captured by near neighbours in z.
    random_state : None or int >= 0, default=None
        Seed of the tie-breaking noise and of the permutations (see Notes).
    workers : int >= 1 or -1, default=1
        Threads that share the distance computations of one test (-1: one per CPU). Results
        do not depend on it. The default leaves parallelism to the executor, which answers
        tests in parallel processes.

    Notes
    -----
    Statistic, with eps_i the maximum-norm distance from sample i to its k-th nearest other
    sample in the joint (x, y, z) space, and k_s,i the number of samples (i included) at
    distance < eps_i in subspace s::

        I = digamma(k) - mean_i [digamma(k_xz,i) + digamma(k_yz,i) - digamma(k_z,i)]

    in nats (Frenzel and Pompe 2007); k_z,i = n when z is empty. It can be slightly negative.

    P-value: x is replaced by x[pi] for ``sig_samples`` local permutations pi, drawn by
    Runge's restricted scheme: the samples are visited in a random order, and each takes a
    uniformly chosen one of its ``shuffle_neighbors`` nearest samples in z (itself included,
    ties at the last distance to the lower index) that no earlier visit took, or, if all are
    taken, a uniformly chosen one of them, so an index may repeat. (Runge takes the first
    free entry of a shuffled list, else its last entry: the same probabilities.) With an
    empty z the permutations are plain ones. Each permuted copy is transformed again, as the
    data were; for ranks, repeated values are ranked in sample order (tigramite adds fresh
    noise, a random order). ``pvalue = (1 + #{null >= I}) / (1 + sig_samples)``; ``dof`` is
    NaN.

    Ties: the estimator assumes continuous data. As tigramite does, noise uniform on
    [0, 1e-6) standard deviations of the column is added before the transform, so that tied
    values are put in a random order; a column with fewer distinct values than 90 % of its
    samples triggers a warning, since the statistic then depends on that random order. A
    constant column is an error.

    Randomness follows the library's seed convention: the noise of a column is drawn from the
    column's index, and the permutations of a test from its (x, y, z) node triple, so a
    p-value does not depend on how a plan is batched or which process answers it. The noise
    and the transform are applied once per column (and per set of complete samples with
    missing values) and shared by every test; tigramite draws them anew for every test and
    every copy, which moves the statistic only where the noise reorders values closer than
    1e-6 standard deviations.

    Cost per test: O(sig_samples * n^2 * d_x) time for the copies, exact brute force in
    blocks that stay in cache (see ``_knn``): with k a fifth of n, a tree search visits a
    fifth of the samples per query anyway. Memory O(sig_samples * n * d_x).

    References
    ----------
    S. Frenzel and B. Pompe (2007), Partial mutual information for coupling analysis of
    multivariate time series, Phys. Rev. Lett. 99, 204101.
    J. Runge (2018), Conditional independence testing based on a nearest-neighbor estimator
    of conditional mutual information, AISTATS, PMLR 84:938-947.
    """

    name = "cmiknn"

    def __init__(
        self,
        knn: float | int = 0.2,
        shuffle_neighbors: int = 5,
        sig_samples: int = 500,
        transform: str | None = "ranks",
        permute: str = "x",
        random_state: int | None = None,
        workers: int = 1,
    ):
        self.knn = knn
        self.shuffle_neighbors = shuffle_neighbors
        self.sig_samples = sig_samples
        self.transform = transform
        self.permute = permute
        self.random_state = random_state
        self.workers = workers
        self._entropy = resolve_entropy(random_state)

    # ------------------------------------------------------------------------- parameters

    def _check_params(self) -> None:
        knn = self.knn
        if isinstance(knn, numbers.Integral) and not isinstance(knn, bool):
            check_int("knn", knn, minimum=1)
        elif isinstance(knn, numbers.Real) and not isinstance(knn, bool):
            check_float("knn", knn, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        else:
            raise InvalidParameterError(
                f"knn must be a fraction in (0, 1) or an int >= 1; got {knn!r}"
            )
        check_int("shuffle_neighbors", self.shuffle_neighbors, minimum=1)
        check_int("sig_samples", self.sig_samples, minimum=1)
        check_choice("transform", self.transform, TRANSFORMS)
        check_choice("permute", self.permute, PERMUTED)
        if check_int("workers", self.workers, minimum=-1) == 0:
            raise InvalidParameterError("workers must be >= 1, or -1 for one per CPU; got 0")

    def _threads(self) -> int:
        return (os.cpu_count() or 1) if self.workers == -1 else self.workers

    def neighbours_for(self, n: int) -> int:
        """The k used on a test of ``n`` samples (before checking it against n)."""
        if isinstance(self.knn, numbers.Integral):
            return int(self.knn)
        return max(1, int(self.knn * n))

    # ------------------------------------------------------------------------- entry points

    def smallest_pvalue(self) -> float:
        return 1.0 / (self.sig_samples + 1)

    def prepare(self, data: CIData):
        """Check every column and add its tie-breaking noise once; without missing values,
        also transform every column once (ranks are shared by all tests)."""
        self._check_params()
        columns = np.arange(data.n_columns)
        noised = self._noised(data, columns)
        transformed = None
        if not data.has_missing:
            _check_columns(data, columns, data.gather(columns))
            transformed = _transform(noised, self.transform)
        return partial(self._answer, data, noised=noised, transformed=transformed, local=columns)

    def run(self, data: CIData, plan: TestPlan) -> CIResult:
        self._check_params()
        if len(plan) == 0:
            return CIResult.empty(0)
        self._check_plan_sizes(data, plan)
        nodes = sorted(set().union(*plan.x, *plan.y, *plan.z))
        columns = data.columns(nodes)
        noised = self._noised(data, columns)
        transformed = None
        if not data.has_missing:
            _check_columns(data, columns, data.gather(columns))
            transformed = _transform(noised, self.transform)
        local = np.full(data.n_columns, -1)
        local[columns] = np.arange(len(columns))
        return self._answer(data, plan, noised=noised, transformed=transformed, local=local)

    # ------------------------------------------------------------------------- work

    def _noised(self, data: CIData, columns: np.ndarray) -> np.ndarray:
        """Columns plus noise uniform on [0, NOISE_SCALE) of their standard deviation, shape
        (n_samples, len(columns)); the noise of column c comes from c alone."""
        values = data.gather(columns)
        scale = NOISE_SCALE * np.nanstd(values, axis=0) if len(values) else 0.0
        for j, c in enumerate(columns):
            noise = generator_for(self._entropy, NOISE_PURPOSE, int(c)).random(data.n_samples)
            values[:, j] += scale[j] * noise
        return values

    def _answer(
        self,
        data: CIData,
        plan: TestPlan,
        *,
        noised: np.ndarray,
        transformed: np.ndarray | None,
        local: np.ndarray,
    ) -> CIResult:
        result = CIResult.empty(len(plan))
        groups = self._check_plan_sizes(data, plan)
        for positions, rows, n in groups:
            values = transformed
            if rows is not None:
                used = np.unique(data.columns(sorted(_nodes_of(plan, positions))))
                _check_columns(data, used, data.gather(used, rows), rows)
                dtype = rank_dtype(n) if self.transform == "ranks" else np.float64
                values = np.zeros((n, noised.shape[1]), dtype=dtype)
                values[:, local[used]] = _transform(noised[rows][:, local[used]], self.transform)
            for p in positions:
                x, y, z = (
                    values[:, local[data.columns(v)]] for v in (plan.x[p], plan.y[p], plan.z[p])
                )
                answer = self._one_test(x, y, z, key=test_key(plan.x[p], plan.y[p], plan.z[p]))
                result.statistic[p], result.pvalue[p] = answer.statistic, answer.pvalue
                result.n_samples[p] = n
        return result

    def _check_plan_sizes(self, data: CIData, plan: TestPlan) -> list:
        """(positions, rows, n) of each group of tests sharing their samples; raise if a test
        has too few samples for k or shuffle_neighbors."""
        groups = []
        for positions, rows in plan.row_groups(data):
            n = data.n_samples if rows is None else int(rows.sum())
            for p in positions:
                self._check_sizes(data, plan, p, n)
            groups.append((positions, rows, n))
        return groups

    def _check_sizes(self, data: CIData, plan: TestPlan, p: int, n: int) -> None:
        k = self.neighbours_for(n)
        if k > n - 1:
            raise DataValidationError(
                f"too few samples for the kNN CMI test of {_describe(data, plan, p)}: "
                f"knn={self.knn!r} asks for k={k} nearest neighbours, which needs n >= {k + 1} "
                f"samples, got n={n}"
            )
        if plan.z[p] and self.shuffle_neighbors > n - 1:
            raise DataValidationError(
                f"too few samples for the kNN CMI test of {_describe(data, plan, p)}: "
                f"shuffle_neighbors={self.shuffle_neighbors} needs n >= "
                f"{self.shuffle_neighbors + 1} samples, got n={n}"
            )

    def _one_test(self, x, y, z, *, key) -> KnnNullDistribution:
        """Statistic, null distribution and p-value of one test on transformed columns."""
        n = x.shape[0]
        k = self.neighbours_for(n)
        rng = generator_for(self._entropy, SHUFFLE_PURPOSE, *key)
        if z.shape[1]:
            neighbours = nearest_in(z, self.shuffle_neighbors)
            shuffles = restricted_permutations(neighbours, self.sig_samples, rng)
        else:
            shuffles = rng.permuted(np.broadcast_to(np.arange(n), (self.sig_samples, n)), axis=1)
        # each permuted copy is transformed again, as the data were (a restricted
        # permutation may repeat a value; ranks then put the repeats in sample order)
        permuted, fixed = (x, y) if self.permute == "x" else (y, x)
        copies = np.concatenate([permuted[None], _transform(permuted[shuffles], self.transform)])
        values = cmi_knn_statistics(copies, fixed, z, k, workers=self._threads())
        statistic, null = float(values[0]), values[1:]
        pvalue = (1.0 + np.count_nonzero(null >= statistic)) / (1.0 + self.sig_samples)
        return KnnNullDistribution(statistic, float(pvalue), null, shuffles, k, x, y, z)

    def null_distribution(self, x, y, z=None) -> KnnNullDistribution:
        """One test on plain arrays, with its null distribution and permutations.

        Parameters
        ----------
        x : ndarray of shape (n_samples, d_x) or (n_samples,)
        y : ndarray of shape (n_samples, d_y) or (n_samples,)
        z : ndarray of shape (n_samples, d_z), or None for an unconditional test

        Returns
        -------
        KnnNullDistribution
            The same statistic and p-value as :meth:`test`, and what they were computed
            from.
        """
        data, plan = single_test(x, y, z)
        self._check_params()
        columns = np.arange(data.n_columns)
        _check_columns(data, columns, data.gather(columns))
        transformed = _transform(self._noised(data, columns), self.transform)
        self._check_sizes(data, plan, 0, data.n_samples)
        parts = (transformed[:, data.columns(v)] for v in (plan.x[0], plan.y[0], plan.z[0]))
        return self._one_test(*parts, key=test_key(plan.x[0], plan.y[0], plan.z[0]))


@dataclass(frozen=True)
class KnnNullDistribution:
    """Everything one kNN CMI test computed.

    statistic : float, the CMI estimate in nats
    pvalue : float, ``(1 + #{null >= statistic}) / (1 + sig_samples)``
    null : ndarray of shape (sig_samples,), the estimates on the permuted copies
    permutations : int ndarray of shape (sig_samples, n); copy p replaces the permuted
        variable (x, or y with ``permute="y"``) of sample i by that of sample
        ``permutations[p, i]``
    k : int, the neighbours used
    x, y, z : the columns as the estimator saw them (after noise and transform), shapes
        (n, d_x), (n, d_y), (n, d_z)
    """

    statistic: float
    pvalue: float
    null: np.ndarray
    permutations: np.ndarray
    k: int
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray


# ----------------------------------------------------------------------------- helpers


def _transform(values: np.ndarray, transform: str | None) -> np.ndarray:
    """Each column of ``values`` (..., m, c) as ranks 0 .. m - 1 (ties in sample order),
    standardised, or unchanged, along the samples axis (-2)."""
    m = values.shape[-2]
    if transform == "ranks":
        order = np.argsort(values, axis=-2, kind="stable")
        ranks = np.empty(values.shape, dtype=rank_dtype(m))
        positions = np.arange(m, dtype=ranks.dtype)[:, None]
        np.put_along_axis(ranks, order, np.broadcast_to(positions, values.shape), axis=-2)
        return ranks
    if transform == "standardize":
        mean = values.mean(axis=-2, keepdims=True)
        return (values - mean) / values.std(axis=-2, keepdims=True)
    return np.array(values, dtype=np.float64)


def _check_columns(data: CIData, columns: np.ndarray, values: np.ndarray, rows=None) -> None:
    """Raise on a constant column; warn on heavily tied ones (over the samples in ``rows``)."""
    where = "" if rows is None else f" on the {values.shape[0]} samples complete for a test"
    if values.shape[0] < 2:
        raise DataValidationError(
            f"the kNN CMI test needs at least 2 samples{where}, got {values.shape[0]}"
        )
    span = np.ptp(values, axis=0) if len(values) else np.zeros(values.shape[1])
    constant = np.flatnonzero(span == 0)
    if constant.size:
        c = constant[0]
        raise DataValidationError(
            f"column {data.column_labels[columns[c]]} is constant (every value is "
            f"{values[0, c]:g}){where}; the kNN CMI test needs continuous values. Remove the "
            "column"
        )
    m = values.shape[0]
    sorted_values = np.sort(values, axis=0)
    distinct = 1 + np.count_nonzero(np.diff(sorted_values, axis=0), axis=0)
    for c in np.flatnonzero(distinct < DISTINCT_FRACTION_WARNING * m):
        warn(
            f"column {data.column_labels[columns[c]]} has {distinct[c]} distinct values in "
            f"{m} samples{where}; the kNN CMI estimator assumes continuous values, and ties "
            f"are put in a random order by noise of {NOISE_SCALE:g} standard deviations, "
            "on which the statistic then depends. Use a test for discrete data if the "
            "column is discrete"
        )


def _nodes_of(plan: TestPlan, positions) -> set[int]:
    return set().union(*(set(plan.x[p] + plan.y[p] + plan.z[p]) for p in positions))


def _describe(data: CIData, plan: TestPlan, p: int) -> str:
    def names(nodes):
        return "{" + ", ".join(str(data.node_names[j]) for j in nodes) + "}"

    return f"{names(plan.x[p])} vs {names(plan.y[p])} given {names(plan.z[p])}"
