"""Tail probabilities of a positively weighted sum of independent chi-square(1) variables.

Under the null, the statistics of the random-feature kernel tests (RCIT, RIT) are
asymptotically distributed as ``Q = sum_i w_i * chi2_1``, with ``w_i`` the eigenvalues of a
covariance matrix. The exact distribution of Q has no closed form; four moment-based
approximations are offered, all vectorised over a batch of tests:

- ``"lpd4"``: Lindsay, Pilla and Basak (2000). Q is approximated by a finite mixture of
  gamma distributions with a common shape, whose first 2p = 8 moments equal those of Q
  (p = 4 support points of the mixing distribution). The most accurate of the four in the tail.
- ``"hbe"``: Hall (1983), Buckley and Eagleson (1988). A shifted and scaled chi-square whose
  first three cumulants equal those of Q.
- ``"gamma"``: Satterthwaite (1946), Welch (1938). A gamma distribution with the mean and
  variance of Q.
- ``"chi2"`` is not an approximation of Q but a different statistic (a Mahalanobis form with
  a chi-square reference); it is computed by the caller from the same covariance, see
  :func:`chi2_sf`.

Bodenham and Adams (2016) compare these methods; the R package ``momentchi2`` and its Python
port implement them one test at a time.

All functions take ``weights`` of shape (K, q): the weights of K tests, padded with zeros
(a zero weight contributes nothing to any moment), and ``x`` of shape (K,), and return upper
tail probabilities P(Q > x) of shape (K,). Each test's answer is computed alone, in the same
operations whatever the other tests of the batch (powers are products, since a vectorised
``pow`` may round an element by its position in the array).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .._validation import check_choice

#: Support points of the Lindsay-Pilla-Basak mixture (moments matched: 2 * LPB_SUPPORT).
LPB_SUPPORT = 4
#: Bisection steps for each shape parameter lambda_N; each halves the bracket (0, lambda_{N-1}],
#: so 44 steps locate it to 6e-14 of lambda_{N-1} (brentq, which momentchi2 uses, stops at an
#: absolute 2e-12).
_BISECTION_STEPS = 44
#: Largest relative imaginary part accepted in a support point (real in exact arithmetic).
_ROOT_IMAG_TOLERANCE = 1e-6
#: Tolerance on a mixture tail probability outside [0, 1] before it counts as a failure.
_PROBABILITY_SLACK = 1e-8


def weighted_chi2_sf(weights, x, method: str = "lpd4") -> tuple[np.ndarray, np.ndarray]:
    """P(sum_i w_i chi2_1 > x) for a batch of tests.

    Parameters
    ----------
    weights : array of shape (K, q)
        Non-negative weights of each test, zero-padded; weights <= 0 are ignored.
    x : array of shape (K,)
        Observed statistics.
    method : {"lpd4", "hbe", "gamma"}
        See the module docstring. ``"lpd4"`` falls back to ``"hbe"`` for a test with fewer
        than 4 positive weights, or where the moment problem has no valid 4-point solution
        in floating point (no sign change of the Hankel determinant, complex or non-positive
        support points, or a non-finite result).

    Returns
    -------
    pvalue : ndarray of shape (K,), in [0, 1]
        1 where ``x <= 0`` or no weight is positive.
    fell_back : bool ndarray of shape (K,)
        Tests that ``"lpd4"`` answered with ``"hbe"`` (always False for other methods).
    """
    check_choice("method", method, ("lpd4", "hbe", "gamma"))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    weights = np.where(weights > 0, weights, 0.0)
    pvalue = np.ones(len(x))
    fell_back = np.zeros(len(x), dtype=bool)
    total = row_sums(weights)
    active = (total > 0) & (x > 0)
    if not active.any():
        return pvalue, fell_back
    # Q is scale-equivariant: divide by its mean so that the moments stay of order one.
    w = weights[active] / total[active, None]
    t = x[active] / total[active]
    if method == "hbe":
        p = hbe_sf(w, t)
    elif method == "gamma":
        p = satterthwaite_sf(w, t)
    else:
        p, ok = lpb_sf(w, t, LPB_SUPPORT)
        if not ok.all():
            p[~ok] = hbe_sf(w[~ok], t[~ok])
        fell_back[np.flatnonzero(active)[~ok]] = True
    pvalue[active] = np.clip(p, 0.0, 1.0)
    return pvalue, fell_back


def row_sums(a: np.ndarray) -> np.ndarray:
    """Sums of the rows of ``a`` (K, q), added column by column in order.

    numpy's reductions choose their order of addition by the array's shape, so that a row's
    sum could depend on how many rows are stacked with it; this one does not.
    """
    a = np.asarray(a)
    total = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        total += a[:, j]
    return total


def _power_sums(weights: np.ndarray, order: int) -> np.ndarray:
    """sum_i w_i^r for r = 1..order, shape (K, order)."""
    out = np.empty((weights.shape[0], order))
    power = np.ones_like(weights)
    for r in range(order):
        power = power * weights
        out[:, r] = row_sums(power)
    return out


def hbe_sf(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Hall-Buckley-Eagleson: a chi-square matching the first three cumulants of Q.

    With cumulants k1 = sum w, k2 = 2 sum w^2, k3 = 8 sum w^3 and nu = 8 k2^3 / k3^2,
    ``(Q - k1) * sqrt(2 nu / k2) + nu`` is approximately chi-square with nu degrees of freedom.
    """
    s = _power_sums(weights, 3)
    k1, k2, k3 = s[:, 0], 2.0 * s[:, 1], 8.0 * s[:, 2]
    nu = 8.0 * (k2 * k2 * k2) / (k3 * k3)
    standardised = np.sqrt(2.0 * nu / k2) * (x - k1) + nu
    return special.gammaincc(nu / 2.0, np.maximum(standardised, 0.0) / 2.0)


def satterthwaite_sf(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Satterthwaite-Welch: a gamma distribution with the mean and variance of Q."""
    s = _power_sums(weights, 2)
    mean, variance = s[:, 0], 2.0 * s[:, 1]
    shape = mean * mean / variance
    scale = variance / mean
    return special.gammaincc(shape, np.maximum(x, 0.0) / scale)


def chi2_sf(statistic, dof) -> np.ndarray:
    """Upper tail of a chi-square with ``dof`` degrees of freedom."""
    return special.chdtrc(np.asarray(dof, dtype=np.float64), np.asarray(statistic, np.float64))


# --------------------------------------------------------------------------------------------
# Lindsay, Pilla and Basak (2000)
# --------------------------------------------------------------------------------------------


def weighted_chi2_moments(weights: np.ndarray, order: int) -> np.ndarray:
    """Raw moments E[Q^r], r = 0..order, of Q = sum_i w_i chi2_1; shape (K, order + 1).

    The cumulants are k_r = 2^(r-1) (r-1)! sum_i w_i^r, and moments follow from the
    recursion m_r = sum_{j=1}^{r} C(r-1, j-1) k_j m_{r-j}, m_0 = 1.
    """
    r = np.arange(1, order + 1)
    kappa = _power_sums(weights, order) * (2.0 ** (r - 1) * special.factorial(r - 1))
    moments = np.zeros((weights.shape[0], order + 1))
    moments[:, 0] = 1.0
    for m in range(1, order + 1):
        for j in range(1, m + 1):
            moments[:, m] += special.comb(m - 1, j - 1) * kappa[:, j - 1] * moments[:, m - j]
    return moments


def _mixing_hankel(moments: np.ndarray, lam: np.ndarray, size: int) -> np.ndarray:
    """Hankel matrices of the mixing moments delta_r(lambda), shape (K, size, size).

    A gamma variable with shape 1/lambda and mean mu has E[X^r] = mu^r prod_{k<r}(1 + k lambda),
    so for a mixture over mu, delta_r = m_r / prod_{k=0}^{r-1} (1 + k lambda) are the moments of
    the mixing distribution of mu, and a distribution on ``size - 1`` points exists exactly when
    the Hankel matrix [delta_{i+j}] is positive semi-definite and singular.
    """
    top = 2 * size - 1
    factors = 1.0 + np.arange(top - 1)[None, :] * lam[:, None]  # (K, top - 1): k = 0..top-2
    divisor = np.concatenate([np.ones((len(lam), 1)), np.cumprod(factors, axis=1)], axis=1)
    delta = moments[:, :top] / divisor
    index = np.arange(size)[:, None] + np.arange(size)[None, :]
    return delta[:, index]


def lpb_sf(weights: np.ndarray, x: np.ndarray, support: int = LPB_SUPPORT):
    """Lindsay-Pilla-Basak mixture-of-gammas tail probability, and which tests succeeded.

    Steps (Lindsay, Pilla and Basak 2000, section 4; Bodenham and Adams 2016):

    1. Moments m_1..m_2p of Q.
    2. lambda_1 = m_2 / m_1^2 - 1; for N = 2..p, lambda_N is the root in (0, lambda_{N-1}) of
       det Delta_N(lambda), the (N+1)-square Hankel matrix of mixing moments (found by
       bisection, vectorised over tests).
    3. The p support points mu_j are the roots of the polynomial whose coefficients are the
       cofactors of the last column of Delta_p(lambda_p); the mixing weights pi_j solve the
       Vandermonde system sum_j pi_j mu_j^i = delta_i, i = 0..p-1.
    4. P(Q > x) = sum_j pi_j P(Gamma(shape 1/lambda_p, scale mu_j lambda_p) > x).

    Returns
    -------
    pvalue : ndarray of shape (K,) (NaN where not ok)
    ok : bool ndarray of shape (K,)
        False for tests with fewer than ``support`` positive weights, or where a step has no
        valid solution.
    """
    weights = np.asarray(weights, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    n_tests = len(x)
    pvalue = np.full(n_tests, np.nan)
    ok = (weights > 0).sum(axis=1) >= support
    if not ok.any():
        return pvalue, ok
    idx = np.flatnonzero(ok)
    moments = weighted_chi2_moments(weights[idx], 2 * support)
    lam = moments[:, 2] / (moments[:, 1] * moments[:, 1]) - 1.0
    good = np.isfinite(lam) & (lam > 0)
    for size in range(3, support + 2):  # Delta_N has size N + 1, N = 2..p
        lam, found = _hankel_root(moments, lam, size)
        good &= found
    with np.errstate(all="ignore"):
        hankel = _mixing_hankel(moments, lam, support + 1)
        # coefficient of mu^i: determinant with the last column replaced by the unit vector e_i
        replaced = np.repeat(hankel[:, None], support + 1, axis=1)
        replaced[:, :, :, support] = np.eye(support + 1)[None]
        coefficients = np.linalg.det(replaced)  # (K, p + 1)
        leading = coefficients[:, support]
        good &= np.isfinite(coefficients).all(axis=1) & (leading != 0)
        safe_leading = np.where(leading != 0, leading, 1.0)
        companion = np.zeros((len(idx), support, support))
        companion[:, 1:, :-1] = np.eye(support - 1)
        companion[:, :, -1] = -np.nan_to_num(coefficients[:, :support]) / safe_leading[:, None]
        roots = np.linalg.eigvals(companion)
        scale = np.maximum(np.abs(roots.real), np.abs(roots.imag)).max(axis=1, keepdims=True)
        good &= (np.abs(roots.imag) <= _ROOT_IMAG_TOLERANCE * scale).all(axis=1)
        mu = roots.real
        good &= (mu > 0).all(axis=1)
        vandermonde = np.ones((len(idx), support, support))
        for i in range(1, support):
            vandermonde[:, i] = vandermonde[:, i - 1] * mu
        rhs = hankel[:, :support, 0]
        vandermonde[~good] = np.eye(support)
        pi = np.linalg.solve(vandermonde, rhs[..., None])[..., 0]
        shape = 1.0 / lam
        scale_j = mu * lam[:, None]
        tails = special.gammaincc(shape[:, None], x[idx, None] / scale_j)
        p = row_sums(pi * tails)
    good &= np.isfinite(p) & (p >= -_PROBABILITY_SLACK) & (p <= 1 + _PROBABILITY_SLACK)
    pvalue[idx[good]] = np.clip(p[good], 0.0, 1.0)
    ok[idx[~good]] = False
    return pvalue, ok


def _hankel_root(moments: np.ndarray, upper: np.ndarray, size: int):
    """Root of det Delta(lambda) (Hankel of ``size``) in (0, upper], by bisection.

    det Delta(0) > 0 (the moments of a continuous Q); at ``upper`` = lambda_{N-1} the leading
    block is singular and the determinant is <= 0. A test without that sign change fails.
    Bisection is vectorised over tests and needs no tuning; regula falsi variants save few
    evaluations here, as the determinant is flat near the root.
    """
    with np.errstate(all="ignore"):
        low = np.zeros_like(upper)
        high = np.where(np.isfinite(upper) & (upper > 0), upper, 0.0)
        f_low = np.linalg.det(_mixing_hankel(moments, low, size))
        f_high = np.linalg.det(_mixing_hankel(moments, high, size))
        found = (f_low > 0) & (f_high <= 0) & (high > 0)
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (low + high)
            positive = np.linalg.det(_mixing_hankel(moments, mid, size)) > 0
            low = np.where(positive, mid, low)
            high = np.where(positive, high, mid)
    return np.where(found, 0.5 * (low + high), upper), found
