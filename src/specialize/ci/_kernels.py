"""Gaussian kernel matrices, their default widths and low-rank factors, in PyTorch.

Everything here works on float64 tensors of one device. A Gaussian kernel is written with the
inverse squared width ``theta``: ``k(a, b) = exp(-theta * ||a - b||^2 / 2)``.
"""

from __future__ import annotations

import numpy as np

from ._backend import torch_module

#: Candidate pivots evaluated at once by :func:`pivoted_cholesky`.
PIVOT_BLOCK = 64
#: A candidate of a block is accepted while its residual diagonal is at least this fraction of
#: the largest residual diagonal outside the block (an upper bound on what any other pivot
#: could remove), so that each accepted pivot removes nearly as much as the greedy choice.
PIVOT_ACCEPT = 0.5
#: Residual diagonals (the kernel's diagonal is 1) below this are numerically zero.
PIVOT_FLOOR = 1e-12


def kci_theta(n_samples: int, d_z: int) -> float:
    """Inverse squared width of every kernel of a conditional KCI test.

    The rule of Zhang et al.'s reference code (and causal-learn's ``est_width="empirical"``):
    width ``w = 1.2`` for n < 200, ``0.7`` for n < 1200, else ``0.4``, and
    ``theta = 1 / (w^2 d_z)``, the same for the kernels of (x, z / 2), y and z.
    """
    width = 1.2 if n_samples < 200 else (0.7 if n_samples < 1200 else 0.4)
    return 1.0 / (width**2 * d_z)


def hsic_theta(n_samples: int, d: int) -> float:
    """Inverse squared width of the kernel of a d-column variable in an unconditional test.

    Width ``w = 0.8`` for n < 200, ``0.5`` for n < 1200, else ``0.3``, and ``theta = d / w^2``
    (as causal-learn's unconditional KCI, ``est_width="empirical"``).
    """
    width = 0.8 if n_samples < 200 else (0.5 if n_samples < 1200 else 0.3)
    return d / width**2


def squared_distances(a, b):
    """Squared Euclidean distances between the rows of ``a`` (n, d) and ``b`` (m, d), >= 0."""
    torch = torch_module()
    out = torch.addmm((a * a).sum(1, keepdim=True), a, b.T, beta=1.0, alpha=-2.0).add_(
        (b * b).sum(1)[None, :]
    )
    return out.clamp_(min=0.0)


def gaussian_gram(x, theta: float):
    """The n x n Gaussian kernel matrix of the rows of ``x`` (n, d), with a unit diagonal."""
    gram = squared_distances(x, x)
    gram.diagonal().zero_()
    return gram.mul_(-0.5 * theta).exp_()


def centre_gram_(gram):
    """Double-centre a symmetric ``gram`` in place: ``H K H`` with ``H = I - 11^T / n``."""
    means = gram.mean(0)
    gram.sub_(means[None, :]).sub_(means[:, None]).add_(means.mean())
    return gram


def pivoted_cholesky(x, theta: float, tolerance: float, max_rank: int, block: int = PIVOT_BLOCK):
    """Low-rank factor ``L`` (n, r) with ``L L^T`` close to the Gaussian kernel matrix of ``x``.

    Greedy pivoted (incomplete) Cholesky: pivots are the samples with the largest residual
    diagonal, and the factor grows until the residual trace ``trace(K - L L^T)`` is at most
    ``tolerance * n`` (the kernel's trace is n) or the rank reaches ``max_rank``. ``L L^T`` is
    the Nystroem approximation of K on the pivots, so it is positive semi-definite and never
    exceeds K. Candidates are taken ``block`` at a time: their kernel columns are one matrix
    product, and an exact pivoted Cholesky of the candidates' residual block decides which are
    accepted (see ``PIVOT_ACCEPT``). Deterministic: ties go to the lowest sample index.

    Parameters
    ----------
    x : tensor of shape (n, d)
    theta : float
        Inverse squared kernel width.
    tolerance : float
        Largest residual trace, per sample.
    max_rank : int

    Returns
    -------
    factor : tensor of shape (n, r), r <= max_rank
    residual : float
        The residual trace per sample, ``trace(K - L L^T) / n``.
    """
    torch = torch_module()
    n = x.shape[0]
    limit = min(max_rank, n)
    sq = (x * x).sum(1)
    residual = torch.ones(n, dtype=x.dtype, device=x.device)
    buffer = x.new_empty((n, min(limit, 4 * block)))
    rank = 0
    target = tolerance * n
    while rank < limit:
        if float(residual.sum()) <= target:
            break
        # candidates: the largest residual diagonals, ties to the lowest index (stable sort)
        order = torch.argsort(residual, descending=True, stable=True)
        size = min(block, limit - rank)
        candidates = order[:size]
        outside = float(residual[order[size]]) if size < n else 0.0
        top = residual[candidates].cpu().numpy()
        if top[0] <= PIVOT_FLOOR:
            break
        cols = torch.addmm(sq[:, None], x, x[candidates].T, beta=1.0, alpha=-2.0)
        cols.add_(sq[candidates][None, :]).clamp_(min=0.0).mul_(-0.5 * theta).exp_()
        if rank:
            factor = buffer[:, :rank]
            cols.sub_(factor @ factor[candidates].T)
        accepted, chol = _block_pivots(cols[candidates].cpu().numpy(), top, outside)
        accepted = torch.as_tensor(accepted, device=x.device)
        chol_t = torch.as_tensor(chol, dtype=x.dtype, device=x.device)
        # the Cholesky columns of the accepted pivots: G[:, P] C^{-T}
        new = torch.linalg.solve_triangular(chol_t, cols[:, accepted].T, upper=False).T
        del cols
        if rank + new.shape[1] > buffer.shape[1]:
            grown = x.new_empty((n, min(limit, max(2 * buffer.shape[1], rank + new.shape[1]))))
            grown[:, :rank] = buffer[:, :rank]
            buffer = grown
        buffer[:, rank : rank + new.shape[1]] = new
        rank += new.shape[1]
        residual.sub_((new * new).sum(1)).clamp_(min=0.0)
        residual[candidates[accepted]] = 0.0
    factor = buffer[:, :rank]
    return factor, float(residual.sum()) / n


def _block_pivots(block: np.ndarray, diag: np.ndarray, outside: float):
    """Greedy pivoted Cholesky of one candidate block (numpy, small).

    ``block`` (b, b) is the residual kernel on the candidates, ``diag`` its diagonal sorted in
    decreasing order (the first candidate is always accepted). Returns the accepted positions
    in pivot order and the lower Cholesky factor C of the block restricted to them.
    """
    b = len(diag)
    d = diag.astype(np.float64).copy()
    rows = np.zeros((b, b))
    pivots: list[int] = []
    free = np.ones(b, dtype=bool)
    threshold = max(PIVOT_ACCEPT * outside, PIVOT_FLOOR)
    for j in range(b):
        masked = np.where(free, d, -np.inf)
        p = int(np.argmax(masked))
        if j and masked[p] < threshold:
            break
        column = (block[:, p] - rows[:, :j] @ rows[p, :j]) / np.sqrt(d[p])
        rows[:, j] = column
        d = np.maximum(d - column**2, 0.0)
        pivots.append(p)
        free[p] = False
    k = len(pivots)
    chol = np.tril(rows[pivots, :k])
    return np.asarray(pivots), chol
