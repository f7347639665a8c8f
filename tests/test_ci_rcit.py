"""Tests of the randomized conditional independence test (specialize.ci.rcit.RCIT) and of the
null approximations of weighted sums of chi-squares (specialize.ci._null).

Peers: causal-learn's ``RCIT`` and ``RIT`` (fed the same random features, and with their own),
``momentchi2`` (the null approximations) and Monte Carlo. Every test is seeded. Torch and BLAS
run single-threaded here (the suite shares its machine); one test checks two threads.
"""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pytest
from scipy import stats

from nonlinear_cases import band_cases
from specialize._validation import DataValidationError, InvalidParameterError
from specialize.ci import CIData, CIResult, TestPlan, _null
from specialize.ci.rcit import RCIT, _median_distance
from specialize.datasets.sequences import make_task_sequences
from specialize.structure.discover import discover_structure, sequence_ci_data
from specialize.structure.plan import plan_tests

torch = pytest.importorskip("torch")

ALPHA = 0.05


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Single-threaded torch and BLAS: stable timings on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
    else:
        with threadpool_limits(1):
            yield
    torch.set_num_threads(threads)


@pytest.fixture
def numpy_math(monkeypatch):
    """momentchi2's ``lpb4`` calls ``numpy.math.factorial``, which NumPy 2 removed."""
    monkeypatch.setattr(np, "math", math, raising=False)


# --------------------------------------------------------------------------------------------
# 1. null approximations
# --------------------------------------------------------------------------------------------


def _weight_cases(seed: int, count: int):
    """Random positive weight vectors (4 to 25 of them, spread and scale varied) and points
    around their bulk and tail; weights zero-padded to 25."""
    rng = np.random.default_rng(seed)
    weights, points = [], []
    for _ in range(count):
        q = int(rng.integers(4, 26))
        w = np.sort(rng.gamma(rng.uniform(0.3, 3.0), size=q))[::-1] * 10 ** rng.uniform(-3, 2)
        mean, sd = w.sum(), np.sqrt(2 * (w**2).sum())
        for x in mean + sd * np.array([-1.0, 0.0, 1.0, 2.0, 4.0, 6.0]):
            if x > 0:
                weights.append(np.pad(w, (0, 25 - q)))
                points.append(x)
    return np.array(weights), np.array(points)


@pytest.mark.parametrize("method,peer", [("lpd4", "lpb4"), ("hbe", "hbe"), ("gamma", "sw")])
def test_null_matches_momentchi2(method, peer, numpy_math):
    import momentchi2

    weights, points = _weight_cases(0, 80)
    pvalue, fell_back = _null.weighted_chi2_sf(weights, points, method)
    reference = np.array(
        [
            1.0 - getattr(momentchi2, peer)(w[w > 0], float(x))
            for w, x in zip(weights, points, strict=True)
        ]
    )
    assert not fell_back.any()
    np.testing.assert_allclose(pvalue, reference, rtol=0, atol=1e-8)
    # the points reach from the bulk far into the tail
    assert pvalue.max() > 0.5 and pvalue.min() < 1e-4


@pytest.mark.parametrize(
    "weights",
    [
        np.full(25, 0.04),  # flat: close to a scaled chi2(25)
        0.6 ** np.arange(25),  # geometric decay, as the eigenvalues of RCIT's covariance
        np.r_[5.0, np.full(10, 0.05)],  # one dominant weight
    ],
    ids=["flat", "decaying", "dominant"],
)
def test_null_matches_monte_carlo(weights):
    rng = np.random.default_rng(1)
    draws = rng.chisquare(1, size=(400_000, len(weights))) @ weights
    points = np.quantile(draws, [0.5, 0.9, 0.95, 0.99, 0.999])
    empirical = (draws[:, None] > points[None]).mean(axis=0)
    se = np.sqrt(empirical * (1 - empirical) / len(draws))
    stack = np.tile(weights, (len(points), 1))
    lpd4, _ = _null.weighted_chi2_sf(stack, points, "lpd4")
    np.testing.assert_allclose(lpd4, empirical, rtol=0, atol=5 * se.max() + 2e-4)
    # the two- and three-moment approximations are cruder in the far tail of the skewed case
    for method in ("hbe", "gamma"):
        p, _ = _null.weighted_chi2_sf(stack, points, method)
        np.testing.assert_allclose(p, empirical, rtol=0.35, atol=5 * se.max() + 2e-3)


def test_null_falls_back_to_hbe_and_handles_edges():
    weights = np.array([[2.0, 1.0, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0] * 4, [1.0, 1.0, 1, 1]])
    x = np.array([4.0, 3.0, 1.0, -1.0])
    p, fell_back = _null.weighted_chi2_sf(weights, x, "lpd4")
    hbe, _ = _null.weighted_chi2_sf(weights, x, "hbe")
    # fewer than 4 positive weights: Hall-Buckley-Eagleson instead, and said so
    assert fell_back[:2].all()
    np.testing.assert_array_equal(p[:2], hbe[:2])
    # one chi2(1): HBE matches its three cumulants exactly, so it is exact
    assert p[1] == pytest.approx(stats.chi2.sf(3.0, 1), rel=1e-12)
    # no positive weight, or a statistic <= 0: nothing to reject
    assert p[2] == 1.0 and p[3] == 1.0 and not fell_back[2:].any()
    with pytest.raises(ValueError, match="method must be"):
        _null.weighted_chi2_sf(weights, x, "perm")


def test_null_is_scale_free_and_rows_are_independent():
    weights, points = _weight_cases(2, 40)
    for method in ("lpd4", "hbe", "gamma"):
        p, _ = _null.weighted_chi2_sf(weights, points, method)
        scaled, _ = _null.weighted_chi2_sf(weights * 1e-7, points * 1e-7, method)
        np.testing.assert_allclose(scaled, p, rtol=1e-9, atol=1e-13)
        # a row's answer does not depend on the rows stacked with it (bit for bit)
        alone = np.concatenate(
            [
                _null.weighted_chi2_sf(weights[k : k + 1], points[k : k + 1], method)[0]
                for k in range(0, len(points), 7)
            ]
        )
        np.testing.assert_array_equal(alone, p[::7])


def test_median_distance_excludes_zeros_like_numpy():
    rng = np.random.default_rng(3)
    for size in (10, 11, 1000, 1001):
        d2 = rng.exponential(size=size)
        d2[rng.random(size) < 0.3] = 0.0  # ties: zero distances are left out
        expected = np.median(np.sqrt(d2[d2 > 0]))
        assert _median_distance(d2) == pytest.approx(expected, rel=1e-14)
    assert _median_distance(np.zeros(5)) == 1.0


# --------------------------------------------------------------------------------------------
# 2. the same random features as causal-learn: the same statistic and p-value
# --------------------------------------------------------------------------------------------


def _feed_our_features(reference, ours: RCIT, calls):
    """Make causal-learn's ``random_fourier_features`` use our weights and offsets.

    ``calls`` lists, in causal-learn's order of calls, the role ("x", "y", "z") and the
    columns of our data matrix that each call's argument holds. causal-learn computes the
    bandwidth itself, so the p-values agree only if our bandwidths do too.
    """
    original = reference.random_fourier_features
    offsets = ours._offsets()
    pending = iter(calls)

    def features(x, w=None, b=None, num_f=None, sigma=None):
        role, columns = next(pending)
        sigma = 1.0 if (sigma == 0 or sigma is None) else sigma
        weights = np.stack([ours._column_weights(c)[role] for c in columns], axis=1)
        shift = np.tile(offsets[role][:, None], (1, x.shape[0]))
        return original(x, w=weights / sigma, b=shift, num_f=num_f, sigma=sigma)

    reference.random_fourier_features = features


@pytest.fixture(scope="module")
def peer_cases():
    """Null and alternative band cases at n = 1000: x of 1 or 2 columns, z of 1 to 4, and a
    binary task (many tied distances in its bandwidth)."""
    cases = band_cases(1000, n_null=8, n_alternative=8, random_state=40)
    cases += band_cases(1000, n_null=4, n_alternative=4, state_dims=(2,), random_state=50)
    rng = np.random.default_rng(5)
    c = cases[-1]
    binary = (c.y + 0.3 * rng.normal(size=c.y.shape) > np.median(c.y)).astype(float)
    return [*cases, type(c)(c.x, binary, c.z, False, c.label + " binary")]


def _compare_with_causallearn(ours: RCIT, case, augment: bool = True):
    """(our result, causal-learn's p-value and statistic) with the same random features."""
    from causallearn.utils.RCIT.RCIT import RCIT as PeerRCIT

    dx, dz = case.x.shape[1], case.z.shape[1]
    xc, yc, zc = list(range(dx)), [dx], list(range(dx + 1, dx + 1 + dz))
    peer = PeerRCIT(approx=ours.approx, rcit=augment)
    _feed_our_features(peer, ours, [("z", zc), ("x", xc), ("y", yc + zc if augment else yc)])
    p_peer, stat_peer = peer.compute_pvalue(case.x, case.y, case.z)
    return ours.test(case.x, case.y, case.z), p_peer, stat_peer


@pytest.mark.parametrize("approx", ["lpd4", "hbe", "gamma"])
def test_same_features_as_causallearn_rcit(approx, peer_cases, numpy_math):
    """Given the same random features, our statistic and p-value are causal-learn's.

    The statistic is a difference, C_xy - C_xz C_zz^-1 C_zy, and the 100 features of a z of
    one or two columns are nearly collinear (C_zz has eigenvalues far below its 1e-10 ridge):
    there the two implementations' rounding (a Cholesky solve here, an explicit inverse
    there) moves the statistic by up to 1e-3 of itself. With a z of 4 columns they agree to
    rounding.
    """
    ours = RCIT(approx=approx, random_state=11)
    agree, conditioned = [], 0
    for case in peer_cases:
        result, p_peer, stat_peer = _compare_with_causallearn(ours, case)
        if case.z.shape[1] == 4:
            conditioned += 1
            assert result.statistic == pytest.approx(stat_peer, rel=1e-6)
            assert abs(result.pvalue - p_peer) <= 1e-7, case.label
        assert result.statistic == pytest.approx(stat_peer, rel=3e-3)
        assert abs(result.pvalue - p_peer) <= 1e-3, case.label
        assert result.n_samples == len(case.x) and np.isnan(result.dof)
        agree.append((result.pvalue < ALPHA) == (p_peer < ALPHA))
    assert conditioned >= 4
    assert np.mean(agree) >= 0.95
    # both decisions occur, so the agreement is not vacuous
    decisions = [ours.test(c.x, c.y, c.z).pvalue < ALPHA for c in peer_cases]
    assert 3 <= sum(decisions) <= len(decisions) - 3


def test_same_features_as_causallearn_chi2_and_rcot(peer_cases):
    """``approx="chi2"`` inverts the covariance of the residual products, which is nearly
    singular when z has few columns (then neither implementation's value is stable), so it
    is compared where z has 4 columns; so is RCoT (y not augmented with z)."""
    cases = [c for c in peer_cases if c.z.shape[1] == 4]
    for params in (dict(approx="chi2"), dict(approx="hbe", variant="rcot")):
        ours = RCIT(random_state=12, **params)
        for case in cases:
            result, p_peer, stat_peer = _compare_with_causallearn(
                ours, case, augment=ours.variant == "rcit"
            )
            assert result.statistic == pytest.approx(stat_peer, rel=1e-5)
            assert abs(result.pvalue - p_peer) <= 1e-7
            if ours.approx == "chi2":
                assert result.dof == 25


@pytest.mark.parametrize("approx", ["lpd4", "hbe", "chi2"])
def test_unconditional_is_causallearns_rit(approx, peer_cases, numpy_math):
    """An empty z gives the unconditional RIT, as in causal-learn. With ``approx="chi2"`` and
    the binary task, the covariance of the products has rank 5: ours refers the statistic
    to a chi-square with 5 degrees of freedom (its rank), causal-learn to one with 25."""
    from causallearn.utils.RCIT.RCIT import RIT

    ours = RCIT(approx=approx, random_state=13)
    for case in peer_cases:
        dx = case.x.shape[1]
        peer = RIT(approx=approx)
        _feed_our_features(peer, ours, [("x", list(range(dx))), ("y", [dx])])
        p_peer, stat_peer = peer.compute_pvalue(case.x, case.y)
        result = ours.test(case.x, case.y)
        assert result.statistic == pytest.approx(stat_peer, rel=1e-7 if approx == "chi2" else 1e-9)
        if approx == "chi2" and "binary" in case.label:
            assert result.dof == 5
            assert result.pvalue == pytest.approx(stats.chi2.sf(result.statistic, 5), rel=1e-9)
            continue
        assert abs(result.pvalue - p_peer) <= 1e-9


# --------------------------------------------------------------------------------------------
# 3. with their own random features: statistically the same test as causal-learn's
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_decisions_like_causallearn_with_own_features():
    """Random features make RCIT's decision itself random near the threshold: two runs of
    causal-learn with different seeds agree on about 80 % of these cases at n = 1000. Ours
    (a new seed per case) agrees with causal-learn as often as causal-learn with itself, and
    rejects as often under the null and the alternative."""
    from causallearn.utils.RCIT.RCIT import RCIT as PeerRCIT

    cases = band_cases(1000, n_null=40, n_alternative=40, random_state=60)
    null = np.array([c.null for c in cases])
    ours = np.array(
        [RCIT(random_state=100 + k).test(c.x, c.y, c.z).pvalue for k, c in enumerate(cases)]
    )
    peers = []
    for seed in (1, 2):
        np.random.seed(seed)  # noqa: NPY002 - causal-learn draws from numpy's global generator
        peers.append(np.array([PeerRCIT().compute_pvalue(c.x, c.y, c.z)[0] for c in cases]))
    reject = [p < ALPHA for p in (ours, *peers)]
    peer_agreement = np.mean(reject[1] == reject[2])
    for peer in reject[1:]:
        assert np.mean(reject[0] == peer) >= peer_agreement - 0.1
    for r in reject:
        assert r[null].mean() <= 0.15  # 40 null cases: at most 6 rejections
    power = [r[~null].mean() for r in reject]
    assert 0.2 < power[0] < 0.95  # a mix of easy and hard alternatives
    assert abs(power[0] - np.mean(power[1:])) <= 0.2, power


# --------------------------------------------------------------------------------------------
# 4. calibration and power
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_null_calibration():
    """300 null band cases at n = 1000, half of them with 2-dimensional states.

    RCIT's null distribution is asymptotic and its regression on 100 random features of z is
    approximate: the bulk of the null p-values sits a little low (mean about 0.45 here, as
    for causal-learn), while the level at alpha = 0.05 holds. At n = 2000 2-dimensional
    states reject about 9 % of nulls, with causal-learn's RCIT as with ours (RCIT Notes).
    """
    cases = band_cases(1000, n_null=300)
    assert 100 <= sum(c.x.shape[1] == 2 for c in cases) <= 200
    test = RCIT(random_state=0)
    pvalues = np.array([test.test(c.x, c.y, c.z).pvalue for c in cases])
    low, high = stats.binom.interval(0.999, len(pvalues), ALPHA)
    rejections = int((pvalues < ALPHA).sum())
    assert low <= rejections <= high, (rejections, (low, high))
    assert stats.kstest(pvalues, "uniform").pvalue > 0.001
    assert 0.4 < pvalues.mean() < 0.55


@pytest.mark.slow
def test_power_rises_with_n():
    rates = []
    for n in (300, 1000, 3000):
        cases = band_cases(n, n_null=0, n_alternative=50, random_state=80)
        p = [RCIT(random_state=k).test(c.x, c.y, c.z).pvalue for k, c in enumerate(cases)]
        rates.append(float(np.mean(np.array(p) < ALPHA)))
    assert rates[0] < rates[1] < rates[2], rates
    assert rates[0] < 0.4 and rates[2] >= 0.7, rates


# --------------------------------------------------------------------------------------------
# 5. batches, seeds, processes
# --------------------------------------------------------------------------------------------


def _sequence(n=600, n_steps=8, n_tasks=2, state_dim=2, seed=3, **kwargs):
    ds = make_task_sequences(
        n,
        n_steps,
        n_tasks,
        state_dim=state_dim,
        mechanism="nonlinear",
        random_state=seed,
        **kwargs,
    )
    return ds, sequence_ci_data(ds.states, ds.tasks[:, :, None])


def _mixed_plan(n_steps=8, n_tasks=2) -> TestPlan:
    """Segment, unary-all and pairwise tests (z of 2 to 14 columns) and two unconditional."""
    plans = [
        plan_tests("segment", n_steps, 2, n_tasks, "band").plan,
        plan_tests("unary", n_steps, 2, n_tasks, "all").plan,
        plan_tests("pairwise", n_steps, 2, n_tasks, "band").plan,
    ]
    T = n_steps
    return TestPlan(
        tuple(t for p in plans for t in p.x) + ((1,), (3, 4)),
        tuple(t for p in plans for t in p.y) + ((T,), (T + 1,)),
        tuple(t for p in plans for t in p.z) + ((), ()),
    )


@pytest.fixture(scope="module")
def mixed():
    ds, data = _sequence()
    plan = _mixed_plan()
    return ds, data, plan, RCIT(random_state=5).run(data, plan)


def _same(a: CIResult, b: CIResult) -> None:
    """The same answers up to rounding: the same seed draws the same features, while BLAS may
    round products of differently shaped batches differently (about 1e-11 here); another
    seed or a wrong feature would move p-values by far more."""
    np.testing.assert_allclose(a.pvalue, b.pvalue, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.statistic, b.statistic, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(a.n_samples, b.n_samples)


def test_batches_and_seeds(mixed):
    _, data, plan, result = mixed
    assert len({len(z) for z in plan.z}) >= 4  # several conditioning-set sizes
    assert 0 < (result.pvalue < ALPHA).sum() < len(plan)
    test = RCIT(random_state=5)
    answer = test.prepare(data)
    _same(answer(plan), result)
    # batches of one, and random uneven batches
    single = CIResult.empty(len(plan))
    for positions, sub in plan.batches(1):
        single.fill(positions, answer(sub))
    _same(single, result)
    order = np.random.default_rng(0).permutation(len(plan))
    pieces = CIResult.empty(len(plan))
    for part in np.array_split(order, 6):
        pieces.fill(part, test.run(data, plan.subset(part)))
    _same(pieces, result)
    # a small memory cap answers in many chunks, alike
    _same(RCIT(random_state=5, max_memory_mib=0.05).run(data, plan), result)
    # a pickled instance answers alike
    _same(pickle.loads(pickle.dumps(test)).run(data, plan), result)
    # another seed gives other features, hence other p-values
    other = RCIT(random_state=6).run(data, plan)
    assert np.mean(other.pvalue != result.pvalue) > 0.9
    # no seed: fresh entropy per instance, each one consistent with itself
    fresh = RCIT()
    assert RCIT()._entropy != fresh._entropy
    _same(fresh.run(data, plan.subset(np.arange(5))), fresh.run(data, plan.subset(np.arange(5))))


def test_concurrent_calls_of_one_prepared_test(mixed):
    """A Dask worker may answer batches from several threads with one prepared test."""
    from concurrent.futures import ThreadPoolExecutor

    _, data, plan, result = mixed
    answer = RCIT(random_state=5).prepare(data)
    parts = np.array_split(np.arange(len(plan)), 4)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda part: answer(plan.subset(part)), parts))
    for part, answered in zip(parts, answers, strict=True):
        np.testing.assert_allclose(answered.pvalue, result.pvalue[part], rtol=1e-9, atol=1e-12)


def test_batches_with_two_threads(mixed):
    """A BLAS may split long products between threads depending on the batch: two threads
    change rounding only."""
    _, data, plan, result = mixed
    part = np.arange(0, len(plan), 3)  # every conditioning-set size, fewer tests
    plan, result = plan.subset(part), CIResult(*(a[part] for a in vars(result).values()))
    torch.set_num_threads(2)
    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(2):
            answer = RCIT(random_state=5).prepare(data)
            whole = answer(plan)
            single = CIResult.empty(len(plan))
            for positions, sub in plan.batches(1):
                single.fill(positions, answer(sub))
    finally:
        torch.set_num_threads(1)
    _same(whole, single)
    np.testing.assert_allclose(whole.pvalue, result.pvalue, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_worker_processes_answer_alike():
    ds, _ = _sequence(n=500, n_steps=6, seed=8)
    kwargs = dict(test=RCIT(random_state=3), correction=None, batch_size=5)
    one = discover_structure(ds.obs, ds.tasks, **kwargs)
    two = discover_structure(ds.obs, ds.tasks, n_jobs=2, **kwargs)
    np.testing.assert_allclose(one.tests["pvalue"], two.tests["pvalue"], rtol=1e-9, atol=1e-12)
    assert one.conditioning == "band"


def test_standardisation_makes_units_irrelevant(mixed):
    ds, data, plan, result = mixed
    rng = np.random.default_rng(2)
    scale = rng.uniform(0.01, 100, size=ds.states.shape[1:])
    states = ds.states * scale + rng.normal(scale=50, size=ds.states.shape[1:])
    tasks = ds.tasks * 1e3 - 7.0
    moved = RCIT(random_state=5).run(sequence_ci_data(states, tasks[:, :, None]), plan)
    np.testing.assert_allclose(moved.pvalue, result.pvalue, rtol=1e-6, atol=1e-9)


def test_variants_and_approximations_differ_where_they_should(mixed):
    _, data, plan, result = mixed
    rcot = RCIT(random_state=5, variant="rcot").run(data, plan)
    conditional = np.array([len(z) > 0 for z in plan.z])
    assert np.all(rcot.pvalue[conditional] != result.pvalue[conditional])
    np.testing.assert_array_equal(rcot.pvalue[~conditional], result.pvalue[~conditional])
    chi2 = RCIT(random_state=5, approx="chi2").run(data, plan)
    np.testing.assert_array_equal(chi2.dof, 25.0)
    hbe = RCIT(random_state=5, approx="hbe").run(data, plan)
    np.testing.assert_array_equal(hbe.statistic, result.statistic)  # same statistic, other null
    tail = result.pvalue < 0.1
    assert tail.sum() >= 5 and np.abs(hbe.pvalue - result.pvalue)[tail].max() < 0.01
    assert np.abs(hbe.pvalue - result.pvalue).max() < 0.1


# --------------------------------------------------------------------------------------------
# 6. missing values
# --------------------------------------------------------------------------------------------


def test_missing_values_testwise():
    ds, _ = _sequence(n=700, seed=21)
    rng = np.random.default_rng(3)
    states, tasks = ds.states.copy(), ds.tasks[:, :, None].copy()
    for t in range(states.shape[1]):
        states[rng.random(len(states)) < 0.01 * (t + 1), t, rng.integers(2)] = np.nan
    tasks[rng.random(len(tasks)) < 0.03, 1, 0] = np.nan
    data = sequence_ci_data(states, tasks)
    plan = _mixed_plan()
    result = RCIT(random_state=4).run(data, plan)
    _same(RCIT(random_state=4).prepare(data)(plan), result)
    missing = np.isnan(np.concatenate(data.blocks, axis=1))
    for k in range(0, len(plan), 3):
        rows = ~missing[:, data.columns(plan.x[k] + plan.y[k] + plan.z[k])].any(axis=1)
        # the same test on the complete rows alone, with the same columns (the same features)
        complete = CIData(
            tuple(b[rows] for b in data.blocks),
            data.node_columns,
            data.node_names,
            data.column_labels,
            int(rows.sum()),
        )
        alone = RCIT(random_state=4).run(complete, plan.subset([k]))
        assert result.n_samples[k] == rows.sum() == alone.n_samples[0]
        assert result.pvalue[k] == pytest.approx(alone.pvalue[0], rel=1e-9, abs=1e-12)
        assert result.statistic[k] == pytest.approx(alone.statistic[0], rel=1e-9)
    assert len(np.unique(result.n_samples)) > 5


# --------------------------------------------------------------------------------------------
# 7. parameters and bad input
# --------------------------------------------------------------------------------------------


def _xyz(n=200, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    return rng.normal(size=(n, 1)) + z[:, :1], rng.normal(size=n) + z[:, 1], z


def test_parameters_are_recorded_and_checked():
    test = RCIT(random_state=3)
    assert test.get_params() == {
        "approx": "lpd4",
        "num_f": 100,
        "num_f2": 5,
        "variant": "rcit",
        "device": "cpu",
        "max_memory_mib": None,
        "random_state": 3,
    }
    assert test.name == "rcit" and not test.handles_large_conditioning_sets
    x, y, z = _xyz()
    bad = [
        (dict(approx="perm"), "approx must be one of 'lpd4', 'hbe', 'gamma', 'chi2'; got 'perm'"),
        (dict(num_f=0), "num_f must be >= 1, got 0"),
        (dict(num_f2=2.5), "num_f2 must be an integer; got 2.5"),
        (dict(variant="kci"), "variant must be one of 'rcit', 'rcot'; got 'kci'"),
        (dict(max_memory_mib=0), "max_memory_mib must be > 0.0, got 0.0"),
        (dict(device="tpu"), "device must be 'cpu' or 'cuda[:k]'; got 'tpu'"),
    ]
    for params, message in bad:
        with pytest.raises(InvalidParameterError, match=re.escape(message)):
            RCIT(**params).test(x, y, z)
    with pytest.raises(InvalidParameterError, match="random_state must be None or a non-neg"):
        RCIT(random_state=-1)


def test_device():
    x, y, z = _xyz()
    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="asks for CUDA"):
            RCIT(device="cuda").test(x, y, z)
        return
    cpu = RCIT(random_state=1).test(x, y, z)
    gpu = RCIT(random_state=1, device="cuda").test(x, y, z)
    assert gpu.pvalue == pytest.approx(cpu.pvalue, rel=1e-9, abs=1e-12)


def test_small_features_counts_work():
    x, y, z = _xyz(n=300)
    for num_f, num_f2 in ((1, 1), (3, 2), (150, 6)):
        result = RCIT(num_f=num_f, num_f2=num_f2, random_state=2).test(x, y, z)
        assert 0.0 <= result.pvalue <= 1.0 and np.isfinite(result.statistic)


def test_strong_dependence_and_independence():
    rng = np.random.default_rng(7)
    n = 800
    z = rng.normal(size=(n, 2))
    x = np.sin(2 * z[:, :1]) + 0.5 * rng.normal(size=(n, 1))
    y_dep = x**2 + 0.3 * rng.normal(size=(n, 1))  # nonlinear, uncorrelated with x
    y_ind = np.cos(z[:, 1:]) + rng.normal(size=(n, 1))
    test = RCIT(random_state=1)
    assert test.test(x, y_dep, z).pvalue < 1e-6
    assert test.test(x, y_dep).pvalue < 1e-6
    assert abs(np.corrcoef(x[:, 0], y_dep[:, 0])[0, 1]) < 0.1
    assert test.test(x, y_ind, z).pvalue > 1e-3


def test_constant_column_is_named():
    x, y, z = _xyz()
    z[:, 1] = 3.0
    with pytest.raises(DataValidationError, match=re.escape("column z[:, 1] is constant")):
        RCIT().test(x, y, z)
    ds, _ = _sequence(n=200, seed=1)
    states = ds.states.copy()
    states[:, 3, 0] = 1.5
    data = sequence_ci_data(states, ds.tasks[:, :, None])
    plan = plan_tests("segment", 8, 2, 2, "band").plan
    for answer in (lambda p: RCIT().prepare(data)(p), lambda p: RCIT().run(data, p)):
        with pytest.raises(DataValidationError, match=re.escape("X[:, 3, 0] is constant")):
            answer(plan)


def test_too_few_samples():
    for n in (2, 9):
        x, y, z = _xyz(n=n)
        with pytest.raises(DataValidationError, match=rf"at least 10 complete samples, got {n}"):
            RCIT().test(x, y, z)
    x, y, z = _xyz(n=10)
    assert 0.0 <= RCIT(random_state=0).test(x, y, z).pvalue <= 1.0


def test_plan_errors_and_empty_plan(mixed):
    _, data, _, _ = mixed
    assert len(RCIT().run(data, TestPlan((), (), ()))) == 0
    overlapping = TestPlan(((1,),), ((8,),), ((0, 1),))
    with pytest.raises(DataValidationError, match=r"x and z of the test .* share the node"):
        RCIT().run(data, overlapping)
    with pytest.raises(DataValidationError, match="empty y"):
        RCIT().run(data, TestPlan(((1,),), ((),), ((0,),)))
