"""Kernel conditional-independence test (KCI) with the gamma approximation of its null.

Zhang, Peters, Janzing and Schoelkopf (2011), "Kernel-based conditional independence test
and application in causal discovery", UAI. The defaults reproduce causal-learn's KCI
(``causallearn.utils.cit.CIT(data, "kci")``): Gaussian kernels on standardised data with the
reference code's empirical widths, ridge regularisation ``epsilon = 1e-3`` and the gamma
approximation of the null from the eigenvalue products; an empty z gives the HSIC test with
its gamma approximation (Gretton et al. 2008).

Two computational paths give the same test:

- ``"exact"``: dense n x n kernel matrices, O(n^3) time, about 8 n^2 floats of memory.
- ``"low-rank"``: each Gaussian kernel is replaced by a pivoted (incomplete) Cholesky factor
  (n, r), the regression on z goes through the Woodbury identity, and the statistic and the
  null moments come from r x r matrices; no n x n matrix is formed. O(n r^2) time.

Tests that share their conditioning set (and their complete rows) share the regression on z;
tests that also share x share x's residualised kernel.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy import special

from .._validation import (
    DataValidationError,
    check_choice,
    check_float,
    check_int,
)
from ._backend import as_tensor, resolve_device, torch_module
from ._kernels import (
    centre_gram_,
    gaussian_gram,
    hsic_theta,
    kci_theta,
    pivoted_cholesky,
)
from .base import CIData, CIResult, CITest, TestPlan

#: ``approximation="auto"`` uses the exact path up to this many samples and low-rank above
#: (see the ``approximation`` parameter of :class:`KCI`).
AUTO_EXACT_MAX_N = 1000
#: Fewest complete samples a test may use.
MIN_SAMPLES = 20
#: Eigenvalues of a residualised kernel below this fraction of its largest one are dropped
#: from the null's eigenvalue products (causal-learn's ``thresh``).
EIGEN_THRESHOLD = 1e-5
#: Peak number of dense n x n float64 matrices the exact path holds for one test: the
#: regression operator, both residualised kernels and an eigendecomposition (eigenvectors
#: and LAPACK workspace) for a conditional test; two kernels and a product for HSIC.
EXACT_MATRICES = {True: 8, False: 3}
#: Peak number of (n, max_rank) float64 factors the low-rank path holds for one test.
LOW_RANK_FACTORS = 8
#: Bytes of one row-block of the eigenvalue-product variance (three such blocks are live).
VARIANCE_BLOCK_BYTES = 32 * 2**20
MIB = 2**20


class KCI(CITest):
    """Kernel conditional-independence test with a gamma approximation of the null.

    Parameters
    ----------
    approximation : {"auto", "exact", "low-rank"}, default="auto"
        ``"exact"`` forms dense n x n kernels (the reference computation, equal to
        causal-learn's), ``"low-rank"`` pivoted Cholesky factors (see Notes). ``"auto"`` is
        exact up to ``AUTO_EXACT_MAX_N = 1000`` samples (there one exact test takes under a
        second on one CPU thread and about 60 MiB) and low-rank above, where the exact
        path's O(n^3) time grows fast and the low-rank one is 5-10 times faster with the same
        decisions on nearly all band cases; also low-rank whenever the exact path would
        exceed ``max_memory_mib``.
    null : {"dof-corrected", "standard"}, default="dof-corrected"
        Moments of the gamma approximation. ``"standard"`` is Zhang et al.'s (from the
        eigenvalue products of the residualised kernels; for an empty z, HSIC's) and
        reproduces causal-learn. ``"dof-corrected"`` accounts for the degrees of freedom the
        kernel regression on z uses (see Notes). The standard null rejects far too often
        when z has several columns (on the null band cases with 2-dimensional states, 21 %
        at n = 200 and 68 % at n = 1,300 for alpha = 5 %); the dof-corrected one holds the
        level there, which is why it is the default. Pass ``null="standard"`` to reproduce
        the paper's test and causal-learn's p-values.
    epsilon : float, default=1e-3
        Ridge regularisation of the kernel regression on z, ``R = eps (Kz + eps I)^-1``
        (causal-learn's and the reference code's value).
    rank_tolerance : float, default=1e-4
        Low-rank path: a kernel's factor stops growing when the trace of what it leaves out is
        at most ``rank_tolerance * n`` (the kernel's trace is n). At 1e-4, p-values of band
        cases at n = 1,000-2,000 differ from the exact path's by a median 0.002-0.006.
    max_rank : int, default=1000
        Low-rank path: largest rank of a factor (reached for 2-dimensional states with
        4-column z above n ~ 3,000). Memory is about ``8 * n * max_rank * 8`` bytes, 320 MB
        at n = 5,000.
    max_memory_mib : float, default=4096
        Largest memory (MiB) a test may plan to use. The estimate (8 n^2 floats for the exact
        path, 8 n max_rank for low-rank) is checked before anything is allocated, and a test
        that would exceed it raises ``MemoryError`` naming n, the memory needed and the
        alternatives (``approximation="low-rank"``, ``test="rcit"``). 4 GiB lets the exact
        path run up to n ~ 8,000 and fits a machine with 8 GB; raise it on larger machines.
    device : str, default="cpu"
        ``"cpu"`` or ``"cuda[:k]"``: where the kernels are computed (float64).

    Notes
    -----
    Data: each column is standardised (mean 0, standard deviation 1 with ddof = 1) over the
    samples the test uses. Gaussian kernels ``k(a, b) = exp(-||a - b||^2 / (2 w^2))``.

    Conditional test (z non-empty), with ``H = I - 11^T / n``: ``Kx`` is the kernel of
    ``(x, z / 2)`` (so the test is not symmetric in x and y; causal-learn's ``CIT`` puts the
    variable with the lower column indices there), ``Ky`` of y and ``Kz`` of z, all with
    ``w^2 = w0^2 d_z``, ``w0 = 1.2, 0.7, 0.4`` for n < 200, n < 1200, n >= 1200.
    ``R = eps (H Kz H + eps I)^-1`` (from a Cholesky factor), ``Kx~ = R H Kx H R``,
    ``Ky~ = R H Ky H R``, and the statistic is ``T = trace(Kx~ Ky~)``. Standard null: with
    ``Kx~ = Vx Vx^T`` and ``Ky~ = Vy Vy^T`` restricted to eigenvalues above ``1e-5`` of the
    largest and ``u_t = vec(Vx[t]^T Vy[t])``, ``mean = sum_t |u_t|^2`` and
    ``var = 2 ||sum_t u_t u_t^T||_F^2``. They are computed without the (n, kx ky) matrix of
    the u_t: ``mean = sum_t |Vx[t]|^2 |Vy[t]|^2`` and
    ``var = 2 sum_{t,s} (Vx[t].Vx[s])^2 (Vy[t].Vy[s])^2``.

    Unconditional test: ``Kx`` and ``Ky`` use ``w^2 = w0^2 / d`` with ``w0 = 0.8, 0.5,
    0.3``; ``T = trace(Kxc Kyc)`` with ``Kxc = H Kx H``, ``mean = trace(Kxc) trace(Kyc) /
    n``, ``var = 2 ||Kxc||_F^2 ||Kyc||_F^2 / n^2``.

    p-value: ``P(Gamma(k, theta) > T)`` with ``k = mean^2 / var`` and ``theta = var / mean``.

    dof-corrected null: with ``P = H R^2 H`` (``P = H`` for an empty z), if the residualised
    features were ``R e`` with independent rows of e, x's independent of y's, then
    ``E T = trace(P^2) trace(Kx~) trace(Ky~) / trace(P)^2``; the variance is taken as
    ``2 trace(P^2)^2 ||Kx~||_F^2 ||Ky~||_F^2 / trace(P)^4``. For ``P = H`` these are HSIC's
    moments with n - 1 for n. The standard moments treat the n residual rows as independent,
    while the regression leaves about trace(P) degrees of freedom: with a flexible
    regression (several z columns, the narrow widths of large n) far fewer than n, and the
    standard mean is too small by about that ratio.

    Low-rank path: each kernel is replaced by ``L L^T`` from :func:`pivoted_cholesky` (a
    Nystroem approximation on greedily chosen pivots), centred as ``H L``. The regression is
    ``R = I - B B^T`` with ``B = Lz W diag(g + eps)^-1/2`` for ``Lz^T Lz = W diag(g) W^T``
    (Woodbury), ``Ax = R H Lx``, ``T = ||Ax^T Ay||_F^2``, and the moments come from
    ``Ax^T Ax`` (whose eigenvectors give ``Vx = Ax W_kept``) and ``Ay^T Ay``. It is the same
    test with Nystroem kernels, and it agrees with the exact path as closely as the factors
    approximate the kernels: the exact regression removes kernel directions down to
    eigenvalue ``epsilon``, far below a factor's residual, so expect the same decisions
    rather than the same digits.

    ``dof`` in the result is NaN; ``statistic`` is T.
    """

    name = "kci"

    def __init__(
        self,
        approximation: str = "auto",
        null: str = "dof-corrected",
        epsilon: float = 1e-3,
        rank_tolerance: float = 1e-4,
        max_rank: int = 1000,
        max_memory_mib: float = 4096,
        device="cpu",
    ):
        self.approximation = approximation
        self.null = null
        self.epsilon = epsilon
        self.rank_tolerance = rank_tolerance
        self.max_rank = max_rank
        self.max_memory_mib = max_memory_mib
        self.device = device

    def _settings(self) -> _Settings:
        check_choice("approximation", self.approximation, ("auto", "exact", "low-rank"))
        check_choice("null", self.null, ("standard", "dof-corrected"))
        return _Settings(
            approximation=self.approximation,
            null=self.null,
            epsilon=check_float("epsilon", self.epsilon, low=0.0, low_inclusive=False),
            rank_tolerance=check_float(
                "rank_tolerance", self.rank_tolerance, low=0.0, high=1.0, low_inclusive=False
            ),
            max_rank=check_int("max_rank", self.max_rank, minimum=1),
            max_memory=check_float(
                "max_memory_mib", self.max_memory_mib, low=0.0, low_inclusive=False
            )
            * MIB,
            device=resolve_device(self.device),
        )

    def prepare(self, data: CIData):
        """Validate the parameters and the data once; the answers share nothing else.

        Every test standardises its own columns over its own complete rows, and the kernel
        matrices are too large to keep between batches.
        """
        settings = self._settings()
        _check_no_inf(data, np.arange(data.n_columns))
        return partial(_answer, settings, data, checked=True)

    def run(self, data: CIData, plan: TestPlan) -> CIResult:
        return _answer(self._settings(), data, plan)


@dataclass(frozen=True)
class _Settings:
    approximation: str
    null: str
    epsilon: float
    rank_tolerance: float
    max_rank: int
    max_memory: float
    device: object


# --------------------------------------------------------------------------- plan handling


def _answer(settings: _Settings, data: CIData, plan: TestPlan, *, checked=False) -> CIResult:
    result = CIResult.empty(len(plan))
    if len(plan) == 0:
        return result
    if not checked:
        nodes = sorted(set().union(*plan.x, *plan.y, *plan.z))
        _check_no_inf(data, data.columns(nodes))
    for positions, rows in plan.row_groups(data):
        result.fill(positions, _answer_rows(settings, data, plan.subset(positions), rows))
    return result


def _check_no_inf(data: CIData, columns: np.ndarray) -> None:
    for c in columns:
        values = data.gather(np.array([c]))[:, 0]
        bad = np.isinf(values)
        if bad.any():
            raise DataValidationError(
                f"column {data.column_labels[c]} contains inf at sample "
                f"{int(np.flatnonzero(bad)[0])}; KCI needs finite values (NaN marks a "
                "missing value)"
            )


def _describe(data: CIData, plan: TestPlan, k: int) -> str:
    def names(nodes):
        return "{" + ", ".join(str(data.node_names[j]) for j in nodes) + "}"

    return f"{names(plan.x[k])} vs {names(plan.y[k])} given {names(plan.z[k])}"


def _standardise(data: CIData, columns: np.ndarray, rows) -> np.ndarray:
    """Columns standardised over ``rows`` (ddof = 1); raise, naming a constant column."""
    values = data.gather(columns, slice(None) if rows is None else rows)
    mean = values.mean(axis=0)
    values = values - mean
    std = np.sqrt((values * values).sum(axis=0) / (len(values) - 1))
    scale = np.maximum(np.abs(mean), np.abs(values).max(axis=0))
    flat = np.flatnonzero(std <= 1e-12 * scale)
    if flat.size:
        c = int(flat[0])
        label = data.column_labels[columns[c]]
        spread = float(np.ptp(values[:, c]))
        what = "is constant" if spread == 0 else "varies only at rounding level"
        raise DataValidationError(
            f"column {label} {what} over the {len(values)} samples the test uses "
            f"(value {mean[c]:.6g}); a kernel of it carries no information. Remove it or "
            "rescale it before testing"
        )
    return values / std


# --------------------------------------------------------------------------- one row group


def _answer_rows(settings: _Settings, data: CIData, plan: TestPlan, rows) -> CIResult:
    torch = torch_module()
    n = data.n_samples if rows is None else int(rows.sum())
    if n < MIN_SAMPLES:
        raise DataValidationError(
            f"too few samples for KCI of {_describe(data, plan, 0)}: needs at least "
            f"{MIN_SAMPLES} complete samples, got {n}"
        )
    conditional = any(len(z) for z in plan.z)
    path = _choose_path(settings, n, conditional)
    nodes = sorted(set().union(*plan.x, *plan.y, *plan.z))
    columns = data.columns(nodes)
    where = np.full(data.n_columns, -1)
    where[columns] = np.arange(len(columns))
    values = as_tensor(_standardise(data, columns, rows), settings.device)

    def block(nodes_):
        index = torch.as_tensor(where[data.columns(nodes_)], device=values.device)
        return values[:, index]

    engine = _Exact(settings, n) if path == "exact" else _LowRank(settings, n)
    statistic = np.zeros(len(plan))
    mean = np.zeros(len(plan))
    var = np.zeros(len(plan))
    by_z: dict[tuple, list[int]] = defaultdict(list)
    for k, z in enumerate(plan.z):
        by_z[tuple(z)].append(k)
    with torch.no_grad():
        for z, positions in by_z.items():
            if z:
                zs = block(z)
                theta = kci_theta(n, zs.shape[1])
                regression = engine.regression(zs, theta)
            else:
                regression = engine.centring()
            by_x: dict[tuple, list[int]] = defaultdict(list)
            for k in positions:
                by_x[tuple(plan.x[k])].append(k)
            for x, tests in by_x.items():
                xs = block(x)
                if z:  # x is augmented with z / 2; every kernel has z's width
                    side_x = engine.side(torch.cat([xs, 0.5 * zs], 1), theta, regression)
                else:
                    side_x = engine.side(xs, hsic_theta(n, xs.shape[1]), regression)
                for k in tests:
                    ys = block(plan.y[k])
                    y_theta = theta if z else hsic_theta(n, ys.shape[1])
                    side_y = engine.side(ys, y_theta, regression)
                    statistic[k] = engine.statistic(side_x, side_y)
                    mean[k], var[k] = _moments(settings.null, side_x, side_y, regression, n)
                    del side_y
                del side_x
            del regression
    pvalue = _gamma_sf(statistic, mean, var)
    return CIResult(statistic, pvalue, np.full(len(plan), np.nan), np.full(len(plan), n))


def _choose_path(settings: _Settings, n: int, conditional: bool) -> str:
    """The path for n samples; raise before any allocation if it would exceed max_memory."""
    exact_bytes = EXACT_MATRICES[conditional] * n * n * 8
    low_rank_bytes = LOW_RANK_FACTORS * n * min(settings.max_rank, n) * 8 + 3 * min(
        VARIANCE_BLOCK_BYTES, 8 * n * n
    )
    limit = settings.max_memory
    if settings.approximation == "exact" or (
        settings.approximation == "auto" and n <= AUTO_EXACT_MAX_N and exact_bytes <= limit
    ):
        if exact_bytes > limit:
            raise MemoryError(
                f"KCI with approximation='exact' at n = {n:,} samples needs about "
                f"{exact_bytes / 2**30:.2f} GiB ({EXACT_MATRICES[conditional]} dense "
                f"{n:,} x {n:,} float64 matrices), more than max_memory_mib = "
                f"{settings.max_memory / MIB:g} MiB. Use approximation='low-rank' (pivoted "
                "Cholesky factors, memory linear in n), test='rcit' (random Fourier "
                "features, near-linear time), or raise max_memory_mib"
            )
        return "exact"
    if low_rank_bytes > limit:
        raise MemoryError(
            f"KCI with approximation='low-rank' at n = {n:,} samples and max_rank = "
            f"{settings.max_rank} needs about {low_rank_bytes / 2**30:.2f} GiB, more than "
            f"max_memory_mib = {settings.max_memory / MIB:g} MiB. Use test='rcit' (random "
            "Fourier features, near-linear time), a smaller max_rank, or raise max_memory_mib"
        )
    return "low-rank"


# --------------------------------------------------------------------------- null moments


@dataclass
class _Regression:
    """The regression on z (or the centring alone): the operator and trace(P), trace(P^2)."""

    operator: object  # exact: R (n, n); low-rank: B (n, r) with R = I - B B^T; or None
    trace_p: float
    trace_p2: float
    conditional: bool


@dataclass
class _Side:
    """One residualised kernel: what the statistic and the null moments need of it."""

    operand: object  # exact: the residualised kernel (n, n); low-rank: the factor A (n, r)
    trace: float  # trace of the residualised kernel
    frobenius2: float  # its squared Frobenius norm
    factor: object  # V with V V^T the kernel restricted to its leading eigenvalues, or None


def _moments(null: str, x: _Side, y: _Side, regression: _Regression, n: int):
    """Mean and variance of the gamma approximation of the null."""
    if null == "dof-corrected":
        tp, tp2 = regression.trace_p, regression.trace_p2
        mean = tp2 * x.trace * y.trace / tp**2
        var = 2.0 * tp2**2 * x.frobenius2 * y.frobenius2 / tp**4
        return mean, var
    if not regression.conditional:
        return x.trace * y.trace / n, 2.0 * x.frobenius2 * y.frobenius2 / n**2
    vx, vy = x.factor, y.factor
    mean = float(((vx * vx).sum(1) * (vy * vy).sum(1)).sum())
    return mean, 2.0 * _product_variance(vx, vy)


def _product_variance(vx, vy) -> float:
    """``sum_{t,s} (vx[t].vx[s])^2 (vy[t].vy[s])^2``, the cheaper of two exact ways.

    Row blocks of the two n x n Gram matrices cost n^2 (kx + ky); the products of the
    coordinate pairs, ``||Px^T Py||_F^2`` with ``Px[t] = (vx[t, i] vx[t, j])_{i <= j}`` (off-
    diagonal pairs weighted by sqrt 2), cost n kx^2 ky^2 / 4 and are chosen when cheaper.
    """
    torch = torch_module()
    n, kx = vx.shape
    ky = vy.shape[1]
    px, py = kx * (kx + 1) // 2, ky * (ky + 1) // 2
    if n * px * py < n * n * (kx + ky) and px * py * 8 <= VARIANCE_BLOCK_BYTES:
        rows = max(1, VARIANCE_BLOCK_BYTES // (8 * (px + py)))
        ix, jx = torch.triu_indices(kx, kx, device=vx.device)
        iy, jy = torch.triu_indices(ky, ky, device=vy.device)
        wx = torch.full(ix.shape, math.sqrt(2.0), dtype=vx.dtype, device=vx.device)
        wx[ix == jx] = 1.0
        wy = torch.full(iy.shape, math.sqrt(2.0), dtype=vy.dtype, device=vy.device)
        wy[iy == jy] = 1.0
        total = vx.new_zeros((px, py))
        for start in range(0, n, rows):
            a, b = vx[start : start + rows], vy[start : start + rows]
            total.addmm_((a[:, ix] * a[:, jx] * wx).T, b[:, iy] * b[:, jy] * wy)
        return float((total * total).sum())
    rows = max(1, VARIANCE_BLOCK_BYTES // (8 * n))
    total = 0.0
    for start in range(0, n, rows):
        gx = vx[start : start + rows] @ vx.T
        gy = vy[start : start + rows] @ vy.T
        gx.mul_(gy)
        total += float(torch.dot(gx.reshape(-1), gx.reshape(-1)))
    return total


def _gamma_sf(statistic, mean, var) -> np.ndarray:
    """P(Gamma > statistic) for the gamma law with the given mean and variance."""
    pvalue = np.ones(len(statistic))
    ok = (mean > 0) & (var > 0)
    shape = mean[ok] ** 2 / var[ok]
    scale = var[ok] / mean[ok]
    pvalue[ok] = special.gammaincc(shape, np.maximum(statistic[ok], 0.0) / scale)
    return np.clip(pvalue, 0.0, 1.0)


def _leading_factor(eigenvalues, vectors):
    """``V`` with ``V V^T`` the eigen-expansion restricted to eigenvalues above threshold."""
    keep = eigenvalues > eigenvalues.max() * EIGEN_THRESHOLD
    return vectors[:, keep] * eigenvalues[keep].sqrt()


# --------------------------------------------------------------------------- exact path


class _Exact:
    """Dense kernels: the reference computation of the test."""

    def __init__(self, settings: _Settings, n: int):
        self.settings = settings
        self.n = n

    def centring(self) -> _Regression:
        return _Regression(None, self.n - 1.0, self.n - 1.0, False)

    def regression(self, z, theta: float) -> _Regression:
        """``R = eps (H Kz H + eps I)^-1`` from a Cholesky factor (the matrix is >= eps I)."""
        torch = torch_module()
        eps = self.settings.epsilon
        gram = centre_gram_(gaussian_gram(z, theta))
        gram.diagonal().add_(eps)
        chol = torch.linalg.cholesky(gram)
        del gram
        # cholesky_inverse fills both triangles (exactly symmetric) in column-major order
        operator = torch.cholesky_inverse(chol).mT.mul_(eps)
        del chol
        # H R^2 H = R^2 - 11^T / n: the constant vector is an eigenvector of R with value 1
        flat = operator.reshape(-1)
        trace_p = float(torch.dot(flat, flat)) - 1.0
        trace_p2 = math.nan
        if self.settings.null == "dof-corrected":
            square = (operator @ operator).reshape(-1)
            trace_p2 = float(torch.dot(square, square)) - 1.0
        return _Regression(operator, trace_p, trace_p2, True)

    def side(self, values, theta: float, regression: _Regression) -> _Side:
        torch = torch_module()
        gram = centre_gram_(gaussian_gram(values, theta))
        if regression.operator is not None:
            temp = regression.operator @ gram
            torch.matmul(temp, regression.operator, out=gram)
            del temp
        flat = gram.reshape(-1)
        trace = float(gram.diagonal().sum())
        frobenius2 = float(torch.dot(flat, flat))
        factor = None
        if self.settings.null == "standard" and regression.conditional:
            eigenvalues, vectors = torch.linalg.eigh(gram)
            factor = _leading_factor(eigenvalues, vectors)
            del vectors
        return _Side(gram, trace, frobenius2, factor)

    @staticmethod
    def statistic(x: _Side, y: _Side) -> float:
        torch = torch_module()
        return float(torch.dot(x.operand.reshape(-1), y.operand.reshape(-1)))


# --------------------------------------------------------------------------- low-rank path


class _LowRank:
    """Pivoted Cholesky factors; nothing of size n x n is formed."""

    def __init__(self, settings: _Settings, n: int):
        self.settings = settings
        self.n = n

    def _factor(self, values, theta: float):
        factor, _ = pivoted_cholesky(
            values, theta, self.settings.rank_tolerance, self.settings.max_rank
        )
        return factor.sub_(factor.mean(0))  # H L: the factor of the centred kernel

    def centring(self) -> _Regression:
        return _Regression(None, self.n - 1.0, self.n - 1.0, False)

    def regression(self, z, theta: float) -> _Regression:
        """Woodbury: ``R = I - L (L^T L + eps I)^-1 L^T = I - B B^T`` for ``H Kz H ~ L L^T``.

        With ``L^T L = W diag(g) W^T``, ``B = L W diag(g + eps)^-1/2`` and R has eigenvalues
        ``eps / (g + eps)`` on the range of L and 1 elsewhere.
        """
        torch = torch_module()
        eps = self.settings.epsilon
        factor = self._factor(z, theta)
        g, w = torch.linalg.eigh(factor.T @ factor)
        g = g.clamp(min=0.0)
        basis = factor @ (w / (g + eps).sqrt())
        del factor
        keep = eps / (g + eps)
        outside = self.n - len(g)  # eigenvalue 1 of R, the constant vector among them
        trace_p = float((keep**2).sum()) + outside - 1.0
        trace_p2 = float((keep**4).sum()) + outside - 1.0
        return _Regression(basis, trace_p, trace_p2, True)

    def side(self, values, theta: float, regression: _Regression) -> _Side:
        torch = torch_module()
        factor = self._factor(values, theta)
        if regression.operator is not None:
            basis = regression.operator
            factor = factor - basis @ (basis.T @ factor)
        gram = factor.T @ factor  # shares the nonzero spectrum of factor @ factor.T
        trace = float(gram.diagonal().sum())
        frobenius2 = float((gram * gram).sum())
        vectors = None
        if self.settings.null == "standard" and regression.conditional:
            eigenvalues, small = torch.linalg.eigh(gram)
            keep = eigenvalues > eigenvalues.max() * EIGEN_THRESHOLD
            vectors = factor @ small[:, keep]  # V V^T = A A^T on the kept eigenvalues
        return _Side(factor, trace, frobenius2, vectors)

    @staticmethod
    def statistic(x: _Side, y: _Side) -> float:
        cross = x.operand.T @ y.operand
        return float((cross * cross).sum())
