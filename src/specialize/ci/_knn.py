"""Exact nearest-neighbour counts in the maximum norm for the kNN CMI test, by brute force.

The Frenzel-Pompe estimator needs, for every sample i, the distance eps_i to its k-th nearest
neighbour in the joint (x, y, z) space and the numbers of samples strictly closer than eps_i
in the xz, yz and z subspaces, all in the maximum norm. The local permutation test needs the
same for many copies of the data that differ only in x. What does not change across copies
is computed once per block of rows: the y and z distance rows, and the yz and z rows sorted,
so that the yz and z counts are binary searches. What changes (the x distances, the joint
k-th neighbour distance and the xz counts) is computed for a block of rows and a chunk of
copies at a time, in arrays small enough to stay in cache.

With k a sizeable fraction of n (the default is 0.2 n), every sample's neighbourhood holds a
fifth of the data, so a tree search visits O(n) points per sample anyway; brute force does the
same O(n^2) work per copy in a few vectorised passes, without the tree's overheads.

Every function here is exact: a value equals the textbook definition computed one sample at
a time (the tests check this), whatever the block sizes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import special

#: Elements (rows x columns x permutations) of the distance arrays formed at once.
WORK_ELEMENTS = 1 << 17
#: Permutations drawn at once by :func:`restricted_permutations` (fixed, so that the draws
#: of a test do not depend on anything but its generator).
PERMUTATION_CHUNK = 256


def rank_dtype(n: int):
    """The smallest signed integer type holding ranks 0 .. n - 1 and their differences."""
    return np.int16 if n <= np.iinfo(np.int16).max else np.int32


def digamma_table(n: int) -> np.ndarray:
    """``table[m] = digamma(m)`` for m = 1 .. n (``table[0]`` is unused, -inf)."""
    table = np.empty(n + 1)
    table[0] = -np.inf
    table[1:] = special.digamma(np.arange(1, n + 1, dtype=np.float64))
    return table


def max_norm_rows(a: np.ndarray, rows: slice) -> np.ndarray:
    """Maximum-norm distances of samples ``a[rows]`` to all samples of ``a``.

    Parameters
    ----------
    a : ndarray of shape (n, d), or (n, 0) for an empty subspace

    Returns
    -------
    ndarray of shape (r, n), dtype of ``a``
        Zeros when d = 0 (every sample is at distance 0 in an empty space).
    """
    n, d = a.shape
    block = a[rows]
    out = np.zeros((block.shape[0], n), dtype=a.dtype)
    buffer = np.empty_like(out)
    for c in range(d):
        np.subtract(block[:, c, None], a[None, :, c], out=buffer)
        np.abs(buffer, out=buffer)
        np.maximum(out, buffer, out=out)
    return out


def _permuted_max_norm(xp: np.ndarray, rows: slice, out: np.ndarray, buffer: np.ndarray):
    """Maximum-norm distances within each permuted copy: ``out[b, i, j] = |xp[:, b, i] -
    xp[:, b, j]|`` for i in ``rows`` (``xp`` of shape (d_x, B, n), ``out`` of shape (B, r, n))."""
    for c, column in enumerate(xp):
        target = out if c == 0 else buffer
        np.subtract(column[:, rows, None], column[:, None, :], out=target)
        np.abs(target, out=target)
        if c:
            np.maximum(out, buffer, out=out)


def count_below(sorted_rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Row-wise ``searchsorted(side="left")``: entries of each row strictly below a value.

    Parameters
    ----------
    sorted_rows : ndarray of shape (r, n), each row sorted ascending
    values : ndarray of shape (B, r)

    Returns
    -------
    ndarray of shape (B, r), int
        ``out[b, i] = #{j : sorted_rows[i, j] < values[b, i]}``.
    """
    out = np.empty(values.shape, dtype=np.intp)
    for i, row in enumerate(sorted_rows):
        out[:, i] = np.searchsorted(row, values[:, i], side="left")
    return out


def cmi_knn_statistics(
    copies: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    k: int,
    *,
    workers: int = 1,
    work_elements: int = WORK_ELEMENTS,
) -> np.ndarray:
    """Frenzel-Pompe CMI estimates of (x, y, z) for every copy x of ``copies``.

    Parameters
    ----------
    copies : ndarray of shape (P, n, d_x)
        Versions of x (the observed one, permuted ones) that share y and z.
    y : ndarray of shape (n, d_y)
    z : ndarray of shape (n, d_z); d_z may be 0
        All three of one dtype: integer (ranks) or float64.
    k : int, 1 <= k <= n - 1
        Neighbours defining each sample's joint-space radius.
    workers : int >= 1
        Threads, each taking blocks of rows; the result does not depend on it.
    work_elements : int
        Size of the blocks (rows x samples x copies) formed at once; the result does not
        depend on it.

    Returns
    -------
    ndarray of shape (P,), nats
        ``digamma(k) - mean_i [digamma(k_xz,i) + digamma(k_yz,i) - digamma(k_z,i)]``, where
        eps_i is the distance from sample i to its k-th nearest other sample in the joint space
        and k_s,i counts the samples (i itself included) at distance < eps_i in subspace s.
    """
    n_perm, n, _ = copies.shape
    dtype = copies.dtype
    psi = digamma_table(n)
    xp = np.ascontiguousarray(np.moveaxis(copies, 2, 0))  # (d_x, P, n)
    terms = np.empty((n_perm, n))
    rows_per_block = max(1, min(n, work_elements // n, -(-n // (4 * workers))))
    perms_per_chunk = max(1, min(n_perm, work_elements // (rows_per_block * n)))
    count_type = np.uint16 if n <= np.iinfo(np.uint16).max else np.int64

    def block(start: int) -> None:
        rows = slice(start, min(n, start + rows_per_block))
        r = rows.stop - rows.start
        dist_y = max_norm_rows(y, rows)
        dist_z = max_norm_rows(z, rows)
        shape = (perms_per_chunk, r, n)
        dist_xz = np.empty(shape, dtype=dtype)
        joint = np.empty(shape, dtype=dtype)
        buffer = np.empty(shape, dtype=dtype)
        closer = np.empty(shape, dtype=bool)
        eps = np.empty((n_perm, r), dtype=dtype)
        k_xz = np.empty((n_perm, r), dtype=np.intp)
        for p0 in range(0, n_perm, perms_per_chunk):
            p1 = min(n_perm, p0 + perms_per_chunk)
            b = p1 - p0
            a, j = dist_xz[:b], joint[:b]
            _permuted_max_norm(xp[:, p0:p1], rows, a, buffer[:b])
            np.maximum(a, dist_z, out=a)
            np.maximum(a, dist_y, out=j)
            # the sample itself is at distance 0, so position k is its k-th other neighbour
            j.partition(k, axis=2)
            eps[p0:p1] = j[:, :, k]
            np.less(a, eps[p0:p1, :, None], out=closer[:b])
            # a widening sum of bytes is several times faster than count_nonzero on an axis
            k_xz[p0:p1] = closer[:b].view(np.uint8).sum(axis=2, dtype=count_type)
        k_yz = count_below(np.sort(np.maximum(dist_y, dist_z), axis=1), eps)
        k_z = count_below(np.sort(dist_z, axis=1), eps) if z.shape[1] else n
        terms[:, rows] = psi[k_xz] + psi[k_yz] - psi[k_z]

    starts = range(0, n, rows_per_block)
    if workers == 1 or len(starts) == 1:
        for start in starts:
            block(start)
    else:  # numpy releases the GIL in these passes; blocks write disjoint columns of terms
        with ThreadPoolExecutor(min(workers, len(starts))) as pool:
            list(pool.map(block, starts))
    return psi[k] - terms.mean(axis=1)


def nearest_in(a: np.ndarray, m: int, *, work_elements: int = WORK_ELEMENTS) -> np.ndarray:
    """Indices of each sample's ``m`` nearest samples in the maximum norm, itself included.

    Ties at the m-th distance go to the lower sample index, so the result is deterministic.

    Parameters
    ----------
    a : ndarray of shape (n, d), d >= 1
    m : int, 1 <= m <= n

    Returns
    -------
    int ndarray of shape (n, m)
        Row i lists the neighbours of sample i in increasing index order.
    """
    n = a.shape[0]
    out = np.empty((n, m), dtype=np.intp)
    rows_per_block = int(max(1, min(n, work_elements // n)))
    for start in range(0, n, rows_per_block):
        rows = slice(start, min(n, start + rows_per_block))
        dist = max_norm_rows(a, rows)
        cut = np.partition(dist, m - 1, axis=1)[:, m - 1, None]
        closer = dist < cut
        tied = dist == cut
        room = m - closer.sum(axis=1, keepdims=True)
        chosen = closer | (tied & (np.cumsum(tied, axis=1) <= room))
        out[rows] = np.nonzero(chosen)[1].reshape(-1, m)
    return out


def restricted_permutations(
    neighbours: np.ndarray, n_permutations: int, rng: np.random.Generator
) -> np.ndarray:
    """Local permutations that map each sample to one of its neighbours, reusing few of them.

    For each permutation, the samples are visited in a random order, and each takes a
    uniformly chosen one of its neighbours that no earlier visit took; if all of them are
    taken, a uniformly chosen one of them (so an index may repeat). This is Runge's (2018)
    restricted permutation: he shuffles each neighbour list and takes the first free entry,
    or the last entry when none is free, which chooses with the same probabilities. Here a
    visit draws a uniform key per neighbour and takes the free neighbour of smallest key
    (all keys of taken ones raised by 1). The loop runs over the n visits, each one
    vectorised over the permutations.

    Parameters
    ----------
    neighbours : int ndarray of shape (n, m)
    n_permutations : int
    rng : numpy Generator, consumed in a fixed order (see :func:`visit_draws`)

    Returns
    -------
    int ndarray of shape (n_permutations, n)
        ``out[p, i]`` is a member of ``neighbours[i]``.
    """
    n, m = neighbours.shape
    out = np.empty((n_permutations, n), dtype=np.intp)
    for p0 in range(0, n_permutations, PERMUTATION_CHUNK):
        b = min(PERMUTATION_CHUNK, n_permutations - p0)
        order, keys = visit_draws(rng, n, m, b)
        copies = np.arange(b)
        offset = copies * n
        # at visit t, copy c considers the neighbours of sample order[c, t], as flat indices
        # into the taken flags of all copies, of shape (b * n,)
        lists = neighbours[order.T] + offset[None, :, None]  # (n, b, m)
        flat_lists = lists.reshape(n, b * m)
        row_start = copies * m
        taken = np.zeros(b * n, dtype=bool)
        picks = np.empty((n, b), dtype=np.intp)
        for t in range(n):
            first = (keys[t] + taken[lists[t]]).argmin(axis=1)
            pick = flat_lists[t].take(row_start + first)
            taken[pick] = True
            picks[t] = pick
        out[p0 + copies[:, None], order] = picks.T - offset[:, None]
    return out


def visit_draws(rng: np.random.Generator, n: int, m: int, b: int):
    """The random draws of ``b`` restricted permutations, in this order: the visiting orders,
    shape (b, n), one permutation of the samples per copy; then the keys, shape (n, b, m),
    uniform on [0, 1), of the neighbours at visit t of copy c."""
    order = rng.permuted(np.broadcast_to(np.arange(n), (b, n)), axis=1)
    keys = rng.random((n, b, m))
    return order, keys
