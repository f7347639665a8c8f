"""Tests of the kNN conditional-mutual-information test (specialize.ci.cmiknn.CMIKnn).

References: the Frenzel-Pompe estimator and Runge's restricted permutation written here one
sample at a time, and tigramite's ``CMIknn`` (the peer) on the shared nonlinear band cases.
Every test is seeded.
"""

from __future__ import annotations

import importlib.util
import pickle
import re
import sys
import types
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context

import numpy as np
import pytest
from scipy import special, stats

from nonlinear_cases import band_cases
from specialize.ci import CIData, TestPlan
from specialize.ci._knn import (
    PERMUTATION_CHUNK,
    cmi_knn_statistics,
    count_below,
    nearest_in,
    restricted_permutations,
    visit_draws,
)
from specialize.ci.cmiknn import CMIKnn
from specialize.datasets.sequences import make_task_sequences
from specialize.structure.discover import sequence_ci_data
from specialize.structure.plan import plan_tests

ALPHA = 0.05


# --------------------------------------------------------------------------------------------
# references, written one sample at a time
# --------------------------------------------------------------------------------------------


def _max_norm(a):
    if a.shape[1] == 0:
        return np.zeros((len(a), len(a)))
    a = a.astype(np.float64)
    return np.abs(a[:, None, :] - a[None, :, :]).max(axis=2)


def reference_cmi(x, y, z, k):
    """Frenzel-Pompe estimate from the definition: for each sample, sort its joint-space
    distances to the others, take the k-th, count strictly closer samples per subspace."""
    n = len(x)
    dx, dy, dz = _max_norm(x), _max_norm(y), _max_norm(z)
    joint = np.maximum(np.maximum(dx, dy), dz)
    total = 0.0
    for i in range(n):
        eps = np.sort(np.delete(joint[i], i))[k - 1]
        k_xz = np.sum(np.maximum(dx[i], dz[i]) < eps)  # i itself is at distance 0
        k_yz = np.sum(np.maximum(dy[i], dz[i]) < eps)
        k_z = np.sum(dz[i] < eps)
        total += special.digamma(k_xz) + special.digamma(k_yz) - special.digamma(k_z)
    return special.digamma(k) - total / n


def _retransform(values, transform):
    if transform == "ranks":
        return np.argsort(np.argsort(values, axis=0, kind="stable"), axis=0)
    return (values - values.mean(axis=0)) / values.std(axis=0)


def reference_restricted_permutations(neighbours, n_permutations, rng):
    """Runge's restricted permutation, one sample at a time, from the same random draws as
    the library: each visit orders the sample's neighbours by their keys and takes the first
    one not taken yet, or the first of them all if every one is taken."""
    n, m = neighbours.shape
    out = []
    for p0 in range(0, n_permutations, PERMUTATION_CHUNK):
        b = min(PERMUTATION_CHUNK, n_permutations - p0)
        orders, keys = visit_draws(rng, n, m, b)
        for copy in range(b):
            perm = np.empty(n, dtype=int)
            used = set()
            for t, i in enumerate(orders[copy]):
                choices = neighbours[i][np.argsort(keys[t, copy])]
                pick = next((c for c in choices if c not in used), choices[0])
                perm[i] = pick
                used.add(pick)
            out.append(perm)
    return np.array(out)


# --------------------------------------------------------------------------------------------
# the peer
# --------------------------------------------------------------------------------------------


@contextmanager
def _numba_stand_in():
    """tigramite's cmiknn imports numba only for ``@jit(forceobj=True)`` decorators, which
    do not change what the functions compute; where numba is absent, a pass-through stands
    in while the module is imported (and is removed again)."""
    if importlib.util.find_spec("numba") is not None:
        yield
        return
    shim = types.ModuleType("numba")
    shim.jit = lambda *args, **kwargs: lambda f: f
    sys.modules["numba"] = shim
    try:
        yield
    finally:
        if sys.modules.get("numba") is shim:
            del sys.modules["numba"]


def _peer_class():
    pytest.importorskip("tigramite")
    with _numba_stand_in():
        from tigramite.independence_tests.cmiknn import CMIknn
    return CMIknn


def _peer(**params):
    """tigramite's CMIknn with our defaults (tigramite permutes y by default; we permute x,
    as Runge 2018)."""
    defaults = dict(
        knn=0.2,
        shuffle_neighbors=5,
        significance="shuffle_test",
        transform="ranks",
        permute="X",
        workers=1,
        seed=0,
    )
    return _peer_class()(**{**defaults, **params})


def _peer_statistic(peer, x, y, z):
    array = np.vstack([x.T, y.T, z.T])
    xyz = np.array([0] * x.shape[1] + [1] * y.shape[1] + [2] * z.shape[1])
    return peer.get_dependence_measure(array, xyz)


# --------------------------------------------------------------------------------------------
# 1. the estimator and its parts equal the references exactly
# --------------------------------------------------------------------------------------------


def _tied_data(rng, n, dx, dy, dz, kind):
    """Heavily tied integer columns (x, z) and a y of distinct values, as ranks are; or
    continuous floats."""
    if kind == "int":
        x = rng.integers(0, 6, (n, dx)).astype(np.int16)
        y = np.column_stack([rng.permutation(n) for _ in range(dy)]).astype(np.int16)
        z = rng.integers(0, 4, (n, dz)).astype(np.int16)
    else:
        x, y, z = (rng.normal(size=(n, d)) for d in (dx, dy, dz))
    return x, y, z


@pytest.mark.parametrize("dx,dy,dz", [(1, 1, 0), (1, 1, 1), (2, 1, 2), (1, 2, 4), (3, 1, 1)])
@pytest.mark.parametrize("kind", ["int", "float"])
def test_estimator_equals_reference(dx, dy, dz, kind):
    rng = np.random.default_rng([dx, dy, dz, kind == "int"])
    n = 48
    x, y, z = _tied_data(rng, n, dx, dy, dz, kind)
    perms = np.vstack(
        [
            np.arange(n),
            rng.permutation(n),
            rng.integers(0, n, n),  # with repeats, as restricted permutations may have
            np.zeros(n, dtype=int),  # every sample gets the same x
        ]
    )
    for k in (1, 2, 9, n - 1):
        expected = [reference_cmi(x[p], y, z, k) for p in perms]
        # tiny blocks (many row blocks and permutation chunks) and one block; threads
        for work, workers in ((7, 1), (100, 1), (1 << 20, 1), (100, 3)):
            got = cmi_knn_statistics(x[perms], y, z, k, work_elements=work, workers=workers)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_count_below_is_row_wise_searchsorted():
    rng = np.random.default_rng(0)
    rows = np.sort(rng.integers(0, 9, (6, 40)), axis=1)
    values = rng.integers(-1, 11, (5, 6))
    expected = np.array([[np.searchsorted(rows[i], v[i]) for i in range(6)] for v in values])
    np.testing.assert_array_equal(count_below(rows, values), expected)


@pytest.mark.parametrize("m", [1, 3, 5, 30])
def test_nearest_in_is_stable_sort_of_distances(m):
    rng = np.random.default_rng(m)
    a = rng.integers(0, 4, (30, 2)).astype(np.int16)  # many ties at the m-th distance
    dist = _max_norm(a)
    expected = np.sort(np.argsort(dist, axis=1, kind="stable")[:, :m], axis=1)
    for work in (5, 1 << 20):
        np.testing.assert_array_equal(nearest_in(a, m, work_elements=work), expected)


@pytest.mark.parametrize("m", [1, 4, 10])
def test_restricted_permutations_equal_reference(m):
    rng = np.random.default_rng(1)
    n = 40
    neighbours = nearest_in(rng.normal(size=(n, 2)), m)
    count = PERMUTATION_CHUNK + 9  # two chunks
    got = restricted_permutations(neighbours, count, np.random.default_rng(7))
    expected = reference_restricted_permutations(neighbours, count, np.random.default_rng(7))
    np.testing.assert_array_equal(got, expected)
    # every sample takes one of its neighbours; with m > 1 most indices are used once
    assert all(got[p, i] in neighbours[i] for p in range(count) for i in range(n))
    if m == 1:
        np.testing.assert_array_equal(got, np.broadcast_to(np.arange(n), got.shape))
    else:
        distinct = np.mean([len(np.unique(p)) for p in got]) / n
        assert 0.75 < distinct < 1.0


def test_restricted_permutations_are_bijections_on_separated_clusters():
    """With z in tight clusters of exactly m samples, every sample's neighbours are its own
    cluster, so the restricted permutation permutes each cluster: no index repeats."""
    rng = np.random.default_rng(2)
    m, clusters = 5, 12
    centres = np.repeat(np.arange(clusters) * 100.0, m)
    z = (centres + rng.random(clusters * m))[:, None]
    perms = restricted_permutations(nearest_in(z, m), 50, np.random.default_rng(0))
    for p in perms:
        np.testing.assert_array_equal(np.sort(p), np.arange(clusters * m))
        np.testing.assert_array_equal(p // m, np.arange(clusters * m) // m)
    assert (perms != np.arange(clusters * m)).any(axis=1).all()


def test_restricted_permutations_reuse_as_often_as_tigramites():
    """The share of distinct indices in a permutation has the same distribution as with
    tigramite's own loop on the same neighbour lists."""
    rng = np.random.default_rng(3)
    n, m, count = 300, 5, 60
    neighbours = nearest_in(rng.normal(size=(n, 3)), m).astype(np.int32)
    ours = restricted_permutations(neighbours, count, np.random.default_rng(0))
    peer = _peer(seed=5)
    theirs = []
    for _ in range(count):
        lists = peer.random_state.permuted(neighbours, axis=1)
        order = peer.random_state.permutation(n).astype(np.int32)
        theirs.append(peer.get_restricted_permutation(n, m, lists, order))
    share = [np.array([len(np.unique(p)) / n for p in ps]) for ps in (ours, theirs)]
    assert abs(share[0].mean() - share[1].mean()) < 0.01, (share[0].mean(), share[1].mean())
    assert stats.ks_2samp(*share).pvalue > 0.001


# --------------------------------------------------------------------------------------------
# 2. the test: statistic, null distribution and p-value are what they claim
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("permute", ["x", "y"])
@pytest.mark.parametrize("transform", ["ranks", "standardize"])
def test_statistic_and_null_are_the_reference_on_the_transformed_data(permute, transform):
    rng = np.random.default_rng(4)
    n = 60
    z = rng.normal(size=(n, 2))
    x = np.column_stack([np.sin(z[:, 0]) + 0.5 * rng.normal(size=n), rng.normal(size=n)])
    y = z[:, 1:] + x[:, :1] * 0.3 + rng.normal(size=(n, 1))
    test = CMIKnn(knn=0.1, sig_samples=30, transform=transform, permute=permute, random_state=3)
    out = test.null_distribution(x, y, z)
    assert out.k == 6
    if transform == "ranks":
        for column in np.column_stack([out.x, out.y, out.z]).T:
            np.testing.assert_array_equal(np.sort(column), np.arange(n))
        np.testing.assert_array_equal(out.x, np.argsort(np.argsort(x, axis=0), axis=0))
    else:
        np.testing.assert_allclose(out.x.mean(axis=0), 0, atol=1e-12)
        np.testing.assert_allclose(out.x.std(axis=0), 1, rtol=1e-12)
    assert out.statistic == pytest.approx(reference_cmi(out.x, out.y, out.z, 6), abs=1e-12)
    for p in (0, 7, 29):
        perm = out.permutations[p]
        # the permuted copy is transformed again: ranks (repeats in sample order) or z-scores
        if permute == "x":
            args = (_retransform(out.x[perm], transform), out.y)
        else:
            args = (out.x, _retransform(out.y[perm], transform))
        assert out.null[p] == pytest.approx(reference_cmi(*args, out.z, 6), abs=1e-12)
    # permutations stay among the 5 nearest samples in z
    neighbours = nearest_in(out.z, 5)
    assert all(out.permutations[p, i] in neighbours[i] for p in range(30) for i in range(n))
    assert out.pvalue == (1 + np.sum(out.null >= out.statistic)) / 31
    single = test.test(x, y, z)
    assert (single.statistic, single.pvalue) == (out.statistic, out.pvalue)
    assert np.isnan(single.dof) and single.n_samples == n


def test_unconditional_test_uses_full_permutations():
    rng = np.random.default_rng(5)
    x = rng.normal(size=100)
    out = CMIKnn(sig_samples=40, shuffle_neighbors=500, random_state=0).null_distribution(
        x, x**2 + 0.1 * rng.normal(size=100)
    )
    for perm in out.permutations:
        np.testing.assert_array_equal(np.sort(perm), np.arange(100))
    assert out.statistic == pytest.approx(reference_cmi(out.x, out.y, out.z, 20), abs=1e-12)
    assert out.pvalue == 1 / 41  # a strong dependence beats every permutation


def test_rank_statistic_is_invariant_to_monotone_maps_and_symmetric():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(300, 2))
    x = z[:, :1] + rng.normal(size=(300, 1))
    y = np.tanh(x) + z[:, 1:] + rng.normal(size=(300, 1))
    test = CMIKnn(sig_samples=20, random_state=1)
    base = test.test(x, y, z)
    # increasing maps that stretch every gap (the tie-breaking noise, 1e-6 sd, stays below
    # the gaps between values, so the ranks are unchanged)
    mapped = test.test(x + 0.1 * x**3, 3 * y - 7, np.exp(z / 4) + z)
    assert (mapped.statistic, mapped.pvalue) == (base.statistic, base.pvalue)
    swapped = test.test(y, x, z)
    assert swapped.statistic == base.statistic


# --------------------------------------------------------------------------------------------
# 3. agreement with tigramite's CMIknn
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer_cases():
    return band_cases(300, n_null=20, n_alternative=20, random_state=100)


@pytest.mark.parametrize("transform", ["ranks", "standardize"])
def test_statistic_matches_tigramite(peer_cases, transform):
    """Same k, same transform, same tie-breaking noise level: the same estimate (up to the
    rare rank swap that two different draws of 1e-6-sd noise cause)."""
    peer = _peer(transform=transform)
    ours = np.array(
        [
            CMIKnn(transform=transform, sig_samples=1, random_state=0).test(c.x, c.y, c.z).statistic
            for c in peer_cases
        ]
    )
    theirs = np.array([_peer_statistic(peer, c.x, c.y, c.z) for c in peer_cases])
    diff = np.abs(ours - theirs)
    assert np.median(diff) < 1e-12, np.median(diff)
    assert diff.max() < 1e-3, diff.max()
    assert np.ptp(theirs) > 0.02  # the cases differ, so agreement is not vacuous


@pytest.mark.slow
def test_null_distribution_matches_tigramite_given_the_same_permutations():
    """tigramite's own shuffle test, fed our permutations, gives our null distribution and
    p-values: the copies, their estimates, the '>=' count and the '+1' convention agree.
    (tigramite re-ranks each permuted copy after fresh noise, which orders repeated values at
    random; we order them by sample, so null estimates differ slightly, and only where a
    restricted permutation repeats an index.)"""
    peer_class = _peer_class()

    class Replay(peer_class):
        def __init__(self, permutations, **params):
            super().__init__(**params)
            self._replay = iter(permutations)

        def get_restricted_permutation(self, T, shuffle_neighbors, neighbors, order):
            return next(self._replay)

    cases = band_cases(300, n_null=8, n_alternative=8, random_state=100)
    sig_samples = 40
    ours, theirs = [], []
    for j, c in enumerate(cases):
        out = CMIKnn(sig_samples=sig_samples, random_state=j).null_distribution(c.x, c.y, c.z)
        peer = Replay(
            out.permutations,
            knn=0.2,
            shuffle_neighbors=5,
            significance="shuffle_test",
            sig_samples=sig_samples,
            permute="X",
            workers=1,
            seed=j,
        )
        array = np.vstack([c.x.T, c.y.T, c.z.T])
        xyz = np.array([0] * c.x.shape[1] + [1] + [2] * c.z.shape[1])
        statistic = peer.get_dependence_measure(array, xyz)
        pvalue, null = peer.get_shuffle_significance(array, xyz, statistic, return_null_dist=True)
        assert out.statistic == pytest.approx(statistic, abs=1e-9)
        gap = np.sort(out.null) - null  # tigramite returns its null distribution sorted
        assert np.abs(gap).max() < 2e-3, np.abs(gap).max()
        assert abs(gap.mean()) < 2e-4, gap.mean()
        ours.append(out.pvalue)
        theirs.append(pvalue)
    ours, theirs = np.array(ours), np.array(theirs)
    assert np.mean((ours <= ALPHA) == (theirs <= ALPHA)) >= 0.95, (ours, theirs)
    assert np.abs(ours - theirs).max() <= 3 / (sig_samples + 1), (ours, theirs)
    assert (ours <= ALPHA).sum() >= 2 and (ours > 0.5).sum() >= 2  # decisions vary


# --------------------------------------------------------------------------------------------
# 4. calibration under the null, power
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_null_calibration():
    """One test per null band case (1- and 2-dim states): the rejections at 5 % are
    Binomial(R, 0.05) and the p-values are uniform. Permutation p-values live on the grid
    k / (B + 1); subtracting U(0, 1) / (B + 1) makes an exactly uniform p-value continuous,
    so that the KS test does not reject the grid itself."""
    R, sig_samples = 320, 99
    cases = band_cases(200, n_null=R, random_state=0)
    assert {c.x.shape[1] for c in cases} == {1, 2}
    pvalues = np.array(
        [
            CMIKnn(sig_samples=sig_samples, random_state=j).test(c.x, c.y, c.z).pvalue
            for j, c in enumerate(cases)
        ]
    )
    low, high = stats.binom.interval(0.999, R, ALPHA)
    rejections = int((pvalues <= ALPHA).sum())
    assert low <= rejections <= high, (rejections, (low, high))
    jitter = np.random.default_rng(0).random(R) / (sig_samples + 1)
    assert stats.kstest(pvalues - jitter, "uniform").pvalue > 0.001


@pytest.mark.slow
def test_power_rises_with_n():
    """Alternative band cases are dependent through a nonlinear collider path, many of them
    weakly: the share detected rises steadily with n (about 0.1, 0.25, 0.4 here)."""
    rates = []
    for n in (100, 300, 600):
        cases = band_cases(n, n_null=0, n_alternative=48, random_state=500)
        pvalues = np.array(
            [CMIKnn(sig_samples=99, random_state=0).test(c.x, c.y, c.z).pvalue for c in cases]
        )
        rates.append(float((pvalues <= ALPHA).mean()))
    assert rates[0] < rates[1] < rates[2], rates
    assert rates[0] <= 0.2 and rates[2] >= 0.3, rates


# --------------------------------------------------------------------------------------------
# 5. batching, processes and seeds
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seq():
    ds = make_task_sequences(150, 6, 2, state_dim=2, mechanism="nonlinear", random_state=9)
    data = sequence_ci_data(ds.states, ds.tasks[:, :, None])
    plans = [plan_tests(mode, 6, 2, 2, "band").plan for mode in ("step", "segment")]
    plan = TestPlan(*(tuple(t for p in plans for t in getattr(p, f)) for f in "xyz"))
    test = CMIKnn(sig_samples=19, random_state=11)
    return data, plan, test, test.run(data, plan)


def _assert_same(a, b):
    np.testing.assert_array_equal(a.statistic, b.statistic)
    np.testing.assert_array_equal(a.pvalue, b.pvalue)
    np.testing.assert_array_equal(a.n_samples, b.n_samples)
    np.testing.assert_array_equal(np.isnan(a.dof), np.isnan(b.dof))


def _answer_in_process(test, data, plan):
    return test.prepare(data)(plan)


def test_batching_does_not_change_any_pvalue(seq):
    data, plan, test, result = seq
    assert len(plan) > 20 and len({len(x) for x in plan.x}) == 2  # unary and block tests
    assert ((result.pvalue > 0) & (result.pvalue <= 1)).all()
    _assert_same(test.prepare(data)(plan), result)
    answer = test.prepare(data)
    for size in (1, 7):
        batched = type(result).empty(len(plan))
        for positions, sub in plan.batches(size):
            batched.fill(positions, answer(sub))
        _assert_same(batched, result)
    perm = np.random.default_rng(0).permutation(len(plan))
    shuffled = test.run(data, plan.subset(perm))
    np.testing.assert_array_equal(shuffled.pvalue, result.pvalue[perm])
    np.testing.assert_array_equal(shuffled.statistic, result.statistic[perm])


def test_pickled_instance_in_another_process_answers_identically(seq):
    data, plan, test, result = seq
    half = np.arange(len(plan)) % 2 == 1
    sub = plan.subset(np.flatnonzero(half))
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        remote = pool.submit(_answer_in_process, test, data, sub).result()
    np.testing.assert_array_equal(remote.pvalue, result.pvalue[half])
    np.testing.assert_array_equal(remote.statistic, result.statistic[half])
    # an unseeded instance draws its entropy once, at construction: copies agree
    fresh = CMIKnn(sig_samples=19)
    copy = pickle.loads(pickle.dumps(fresh))
    _assert_same(copy.run(data, sub), fresh.run(data, sub))


def test_seeds(seq):
    data, plan, test, result = seq
    _assert_same(CMIKnn(sig_samples=19, random_state=11).run(data, plan), result)
    _assert_same(CMIKnn(sig_samples=19, random_state=11, workers=-1).run(data, plan), result)
    other = CMIKnn(sig_samples=19, random_state=12).run(data, plan)
    assert (other.pvalue != result.pvalue).mean() > 0.5
    # the statistic depends on the seed only through the tie-breaking noise
    np.testing.assert_allclose(other.statistic, result.statistic, atol=1e-3)
    assert CMIKnn(random_state=3).get_params() == {
        "knn": 0.2,
        "shuffle_neighbors": 5,
        "sig_samples": 500,
        "transform": "ranks",
        "permute": "x",
        "random_state": 3,
        "workers": 1,
    }


def test_missing_values_testwise():
    ds = make_task_sequences(160, 6, 2, mechanism="nonlinear", random_state=3)
    states, tasks = ds.states.copy(), ds.tasks[:, :, None].copy()
    rng = np.random.default_rng(0)
    for t in range(6):
        states[rng.random(160) < 0.03 * (t + 1), t, 0] = np.nan
    data = sequence_ci_data(states, tasks)
    plan = plan_tests("step", 6, 2, 2, "band").plan
    test = CMIKnn(sig_samples=19, random_state=2)
    result = test.run(data, plan)
    _assert_same(test.prepare(data)(plan), result)
    missing = data.missing_by_node()
    for p in range(len(plan)):
        rows = ~missing[:, list(plan.x[p] + plan.y[p] + plan.z[p])].any(axis=1)
        assert result.n_samples[p] == rows.sum()
        complete = sequence_ci_data(states[rows], tasks[rows])
        alone = test.run(complete, plan.subset([p]))
        assert alone.pvalue[0] == result.pvalue[p]
        assert alone.statistic[0] == pytest.approx(result.statistic[p], abs=1e-12)
    assert len(np.unique(result.n_samples)) > 3


# --------------------------------------------------------------------------------------------
# 6. bad input
# --------------------------------------------------------------------------------------------


def _xyz(n=100, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), rng.normal(size=n), rng.normal(size=(n, 2))


@pytest.mark.parametrize(
    "params,message",
    [
        ({"knn": 0}, "knn must be >= 1, got 0"),
        ({"knn": 1.5}, "knn must be < 1.0, got 1.5"),
        ({"knn": 0.0}, "knn must be > 0.0, got 0.0"),
        ({"knn": True}, "knn must be a fraction in (0, 1) or an int >= 1; got True"),
        ({"knn": "5"}, "knn must be a fraction in (0, 1) or an int >= 1; got '5'"),
        ({"shuffle_neighbors": 0}, "shuffle_neighbors must be >= 1, got 0"),
        ({"sig_samples": 0}, "sig_samples must be >= 1, got 0"),
        ({"sig_samples": 10.0}, "sig_samples must be an integer; got 10.0"),
        ({"transform": "uniform"}, "transform must be one of 'ranks', 'standardize', None"),
        ({"permute": "z"}, "permute must be one of 'x', 'y'; got 'z'"),
        ({"workers": 0}, "workers must be >= 1, or -1 for one per CPU; got 0"),
        ({"workers": -2}, "workers must be >= -1, got -2"),
    ],
)
def test_bad_parameters(params, message):
    x, y, z = _xyz()
    with pytest.raises(ValueError, match=re.escape(message)):
        CMIKnn(**params).test(x, y, z)


def test_bad_random_state():
    with pytest.raises(ValueError, match="random_state must be None or a non-negative int"):
        CMIKnn(random_state=-1)


@pytest.mark.parametrize("n,knn", [(10, 10), (10, 25), (1, 0.2), (4, 4)])
def test_too_few_samples_for_k(n, knn):
    x, y, z = _xyz(n)
    k = knn if isinstance(knn, int) else max(1, int(knn * n))
    pattern = rf"knn={knn!r} asks for k={k} nearest neighbours, which needs n >= {k + 1} "
    pattern += rf"samples, got n={n}"
    with pytest.raises(ValueError, match=re.escape(pattern)):
        CMIKnn(knn=knn, shuffle_neighbors=1).test(x, y, z)


def test_k_equal_to_n_minus_one_works():
    x, y, z = _xyz(12)
    result = CMIKnn(knn=11, shuffle_neighbors=3, sig_samples=9, random_state=0).test(x, y, z)
    assert np.isfinite(result.statistic) and 0 < result.pvalue <= 1


def test_too_few_samples_for_shuffle_neighbors():
    x, y, z = _xyz(8)
    with pytest.raises(
        ValueError, match=re.escape("shuffle_neighbors=8 needs n >= 9 samples, got n=8")
    ):
        CMIKnn(knn=2, shuffle_neighbors=8).test(x, y, z)
    # without z the neighbours are not used
    result = CMIKnn(knn=2, shuffle_neighbors=8, sig_samples=9, random_state=0).test(x, y)
    assert 0 < result.pvalue <= 1


def test_too_few_samples_in_a_plan_names_the_test():
    ds = make_task_sequences(5, 6, 2, random_state=0)
    data = sequence_ci_data(ds.states, ds.tasks[:, :, None])
    plan = plan_tests("step", 6, 2, 2, "band").plan
    pattern = r"too few samples for the kNN CMI test of \{\('s', 0\)\} vs \{\('g', 0\)\} given"
    with pytest.raises(ValueError, match=pattern + r".*shuffle_neighbors=5 needs n >= 6.*got n=5"):
        CMIKnn().run(data, plan)


def test_constant_column_is_named():
    x, y, z = _xyz()
    z[:, 1] = 2.5
    with pytest.raises(ValueError, match=r"column z\[:, 1\] is constant \(every value is 2.5\)"):
        CMIKnn().test(x, y, z)
    ds = make_task_sequences(100, 6, 2, random_state=0)
    states = ds.states.copy()
    states[:, 3, 0] = 1.0
    data = sequence_ci_data(states, ds.tasks[:, :, None])
    plan = plan_tests("step", 6, 2, 2, "band").plan
    for answer in (CMIKnn().run, lambda d, p: CMIKnn().prepare(d)(p)):
        with pytest.raises(ValueError, match=re.escape("column X[:, 3, 0] is constant")):
            answer(data, plan)


def test_constant_on_the_complete_rows_is_named():
    x, y, z = _xyz(60)
    z[:30, 0] = 1.0
    z[30:, 1] = np.nan
    data = CIData(
        (np.column_stack([x, y, z]),),
        tuple(np.array([j]) for j in range(4)),
        ("x", "y", "z1", "z2"),
        ("x[:, 0]", "y[:, 0]", "z1[:, 0]", "z2[:, 0]"),
        60,
    )
    plan = TestPlan(((0,),), ((1,),), ((2, 3),))
    with pytest.raises(ValueError, match=r"column z1\[:, 0\] is constant .* on the 30 samples"):
        CMIKnn().run(data, plan)


def test_heavily_tied_column_warns_and_still_answers():
    rng = np.random.default_rng(0)
    n = 300
    z = rng.normal(size=(n, 1))
    y = (z[:, 0] + rng.normal(size=n) > 0).astype(float)  # binary
    x = np.round(z[:, 0] + rng.normal(size=n))  # a few integers
    test = CMIKnn(sig_samples=19, random_state=0)
    with pytest.warns(UserWarning, match=r"column y\[:, 0\] has 2 distinct values in 300") as w:
        result = test.test(x, y, z)
    assert any("column x[:, 0] has" in str(m.message) for m in w)
    assert not any("z[:, 0]" in str(m.message) for m in w)
    assert np.isfinite(result.statistic) and 0 < result.pvalue <= 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CMIKnn(sig_samples=9).test(rng.normal(size=n), rng.normal(size=n), z)


def test_empty_plan(seq):
    data, _, test, _ = seq
    assert len(test.run(data, TestPlan((), (), ()))) == 0
    assert len(test.prepare(data)(TestPlan((), (), ()))) == 0
