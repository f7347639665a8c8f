"""Tests of the batched Fisher-z / Bartlett engine (specialize.ci.FisherZ).

Peers: causal-learn's ``fisherz`` (scalar tests) and tigramite's ``ParCorrMult`` with
``correlation_type="PCCA_WilksLambda"`` (vector tests), plus references written here in plain
numpy/scipy. Every test is seeded.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats

from specialize.ci import CIData, FisherZ, TestPlan
from specialize.datasets.sequences import make_task_sequences
from specialize.structure.discover import sequence_ci_data
from specialize.structure.plan import band, plan_tests

ALPHA = 0.05


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _seq_data(ds, states=None, tasks=None) -> CIData:
    """CIData of a TaskSequences: node t is step t, node T + i is task i."""
    states = ds.states if states is None else states
    tasks = ds.tasks if tasks is None else tasks
    return sequence_ci_data(states, tasks[:, :, None] if tasks.ndim == 2 else tasks)


def _concat(*plans: TestPlan) -> TestPlan:
    return TestPlan(
        tuple(t for p in plans for t in p.x),
        tuple(t for p in plans for t in p.y),
        tuple(t for p in plans for t in p.z),
    )


def _mixed_plan(n_steps: int, n_tasks: int, segment_length: int = 2) -> TestPlan:
    """Unary, block (vector x) and pairwise tests, band and all-other-steps conditioning.

    The ``all`` tests of one task share their variable union, so this plan exercises both the
    shared-union (precision matrix) path and the stacked by-shape path, with several shapes.
    """
    plans = [
        plan_tests(mode, n_steps, segment_length, n_tasks, conditioning).plan
        for mode in ("segment", "pairwise")
        for conditioning in ("band", "all")
    ]
    return _concat(*plans)


def _assert_same(a, b, *, rtol=1e-10, atol=1e-13):
    np.testing.assert_allclose(a.pvalue, b.pvalue, rtol=rtol, atol=atol)
    np.testing.assert_allclose(a.statistic, b.statistic, rtol=rtol, atol=atol)
    np.testing.assert_array_equal(a.dof, b.dof)
    np.testing.assert_array_equal(a.n_samples, b.n_samples)


def _scalar_data(rng, n, dz, coupling):
    """x and y driven by a common z; y additionally depends on x with weight ``coupling``."""
    z = rng.normal(size=(n, dz)) @ rng.normal(size=(dz, dz)) if dz else np.zeros((n, 0))
    x = z @ rng.normal(size=dz) + rng.normal(size=n)
    y = z @ rng.normal(size=dz) + coupling * x + rng.normal(size=n)
    return x, y, z


def _residualise(v, z):
    """Residuals of v on [1, z] by least squares."""
    design = (
        np.column_stack([np.ones(len(v)), z])
        if z is not None and z.shape[1]
        else np.ones((len(v), 1))
    )
    return v - design @ np.linalg.lstsq(design, v, rcond=None)[0]


def _bartlett_reference(x, y, z):
    """Wilks' lambda, Bartlett's statistic and p-value from scratch (numpy/scipy only)."""
    n, dx = x.shape
    dy = y.shape[1]
    dz = 0 if z is None else z.shape[1]
    rx, ry = _residualise(x, z), _residualise(y, z)
    s = np.cov(np.column_stack([rx, ry]), rowvar=False)
    sxx, syy, sxy = s[:dx, :dx], s[dx:, dx:], s[:dx, dx:]
    # squared canonical correlations: eigenvalues of Sxx^-1 Sxy Syy^-1 Syx
    m = np.linalg.solve(sxx, sxy) @ np.linalg.solve(syy, sxy.T)
    rho2 = np.sort(np.linalg.eigvals(m).real)[::-1][: min(dx, dy)]
    wilks = float(np.prod(1.0 - rho2))
    factor = n - dz - 1 - (dx + dy + 1) / 2
    statistic = -factor * np.log(wilks)
    return wilks, statistic, stats.chi2.sf(statistic, dx * dy), factor


# --------------------------------------------------------------------------------------------
# 1. peer agreement, scalar tests (causal-learn)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [200, 1000, 5000])
@pytest.mark.parametrize("dz", [0, 1, 3, 6])
@pytest.mark.parametrize("coupling", [0.0, 0.08, 0.3])
def test_scalar_matches_causallearn(n, dz, coupling):
    from causallearn.utils.cit import CIT

    rng = np.random.default_rng([n, dz, int(coupling * 100)])
    x, y, z = _scalar_data(rng, n, dz, coupling)
    result = FisherZ().test(x, y, z if dz else None)

    expected_p = CIT(np.column_stack([x, y, z]), "fisherz")(0, 1, list(range(2, 2 + dz)))
    assert abs(result.pvalue - expected_p) <= 1e-8

    # the signed statistic, the dof and n against a residual-based partial correlation
    rx, ry = _residualise(x, z), _residualise(y, z)
    r = np.corrcoef(rx, ry)[0, 1]
    np.testing.assert_allclose(result.statistic, np.arctanh(r) * np.sqrt(n - dz - 3), rtol=1e-8)
    assert result.dof == n - dz - 3
    assert result.n_samples == n
    if coupling == 0.3:  # a strong dependence must be detected at every n here
        assert result.pvalue < 1e-4


def test_scalar_batched_plan_matches_causallearn():
    """A plan of many scalar tests (band and all-step conditioning, unary and pairwise) run
    through FisherZ.run and FisherZ.prepare equals causal-learn asked one test at a time."""
    from causallearn.utils.cit import CIT

    ds = make_task_sequences(3000, 10, 3, random_state=11)
    n, T, _ = ds.states.shape
    M = ds.tasks.shape[1]
    data = _seq_data(ds)
    plan = _concat(
        *[
            plan_tests(mode, T, 2, M, conditioning).plan
            for mode in ("step", "pairwise")
            for conditioning in ("band", "all")
        ]
    )
    matrix = np.column_stack([ds.states[:, :, 0], ds.tasks])  # column j is node j
    cit = CIT(matrix, "fisherz")
    expected = np.array(
        [cit(x[0], y[0], list(z)) for x, y, z in zip(plan.x, plan.y, plan.z, strict=True)]
    )

    for result in (FisherZ().run(data, plan), FisherZ().prepare(data)(plan)):
        np.testing.assert_allclose(result.pvalue, expected, rtol=0, atol=1e-8)
    dz = np.array([len(z) for z in plan.z])
    np.testing.assert_array_equal(result.dof, n - dz - 3)
    # both decisions occur, so the agreement is not vacuous
    assert (expected < ALPHA).sum() > 10 and (expected > ALPHA).sum() > 10


# --------------------------------------------------------------------------------------------
# 2. peer agreement, vector tests (tigramite and a numpy reference)
# --------------------------------------------------------------------------------------------


def _vector_data(rng, n, dx, dy, dz, coupling):
    """Correlated x columns and y columns, both driven by z; y depends on x's own part."""
    z = rng.normal(size=(n, dz)) if dz else None
    own_x = rng.normal(size=(n, dx)) @ (np.eye(dx) + 0.5 * rng.normal(size=(dx, dx)))
    own_x /= own_x.std(axis=0)
    x = own_x.copy()
    y = rng.normal(size=(n, dy)) @ (np.eye(dy) + 0.5 * rng.normal(size=(dy, dy)))
    y += coupling * own_x @ rng.choice([-1.0, 1.0], size=(dx, dy))
    if dz:
        x += z @ rng.normal(size=(dz, dx))
        y += z @ rng.normal(size=(dz, dy))
    return x, y, z


def _whiten_residual(x, z):
    """Replace x's residual on [1, z] by a version with identity sample covariance.

    tigramite's ``compute_wilks_lambda_cca`` takes ``np.linalg.eigvalsh`` of the
    non-symmetric matrix Cxx^-1 Cxy Cyy^-1 Cyx, which is exact only when that matrix is
    symmetric, i.e. when the residuals of x are uncorrelated. Whitening them keeps the test a
    general one (y, z and the dependence are untouched) and makes tigramite's value exact.
    """
    r = _residualise(x, z)
    chol = np.linalg.cholesky(np.cov(r, rowvar=False))
    return (x - r) + np.linalg.solve(chol, r.T).T


@pytest.mark.parametrize("dx,dy", [(2, 1), (2, 2), (3, 2)])
@pytest.mark.parametrize("dz", [0, 2, 4])
@pytest.mark.parametrize("coupling", [0.0, 0.3])
def test_vector_wilks_matches_tigramite(dx, dy, dz, coupling):
    from tigramite.independence_tests.parcorr_mult import ParCorrMult

    rng = np.random.default_rng([dx, dy, dz, int(coupling * 100), 1])
    n = 800
    x, y, z = _vector_data(rng, n, dx, dy, dz, coupling)
    x = _whiten_residual(x, z)

    result = FisherZ().test(x, y, z)
    factor = n - dz - 1 - (dx + dy + 1) / 2
    ours = np.exp(-result.statistic / factor)

    parts = [x.T, y.T] + ([z.T] if dz else [])
    array = np.vstack(parts).copy()  # tigramite standardises its argument in place
    xyz = np.array([0] * dx + [1] * dy + [2] * dz)
    theirs = ParCorrMult(correlation_type="PCCA_WilksLambda").get_dependence_measure(array, xyz)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert result.dof == dx * dy
    assert result.n_samples == n


@pytest.mark.parametrize("dx,dy", [(2, 1), (1, 2), (2, 2), (3, 2)])
@pytest.mark.parametrize("dz", [0, 2, 4])
@pytest.mark.parametrize("coupling", [0.0, 0.05, 0.3])
def test_vector_pvalue_matches_numpy_reference(dx, dy, dz, coupling):
    rng = np.random.default_rng([dx, dy, dz, int(coupling * 100), 2])
    n = 600
    x, y, z = _vector_data(rng, n, dx, dy, dz, coupling)
    result = FisherZ().test(x, y, z)
    wilks, statistic, pvalue, factor = _bartlett_reference(x, y, z)
    np.testing.assert_allclose(np.exp(-result.statistic / factor), wilks, rtol=1e-9)
    np.testing.assert_allclose(result.statistic, statistic, rtol=1e-8, atol=1e-10)
    assert abs(result.pvalue - pvalue) <= 1e-8
    assert result.dof == dx * dy
    if coupling == 0.3:
        assert result.pvalue < 1e-4


# --------------------------------------------------------------------------------------------
# 3. calibration under the null, 4. power
# --------------------------------------------------------------------------------------------


def _one_band_test(n, n_steps, state_dim, seed, *, null, conditioning="band"):
    """p-value of one unary test s_{r_k} vs g_i, on a fresh data set.

    The whole unary plan is answered (so ``all`` conditioning goes through the shared-union
    path), and one test is kept, chosen before the data are looked at: a pair (k, i) outside
    the true assignment when ``null``, else inside it.
    """
    ds = make_task_sequences(n, n_steps, 2, state_dim=state_dim, random_state=seed)
    structure = plan_tests("unary", n_steps, 2, 2, conditioning)
    assigned = ds.segment_assignment[structure.unit, structure.task]
    candidates = np.flatnonzero(~assigned if null else assigned)
    pick = np.random.default_rng([seed, 99]).choice(candidates)
    return FisherZ().run(_seq_data(ds), structure.plan).pvalue[pick]


@pytest.mark.slow
@pytest.mark.parametrize("state_dim", [1, 2])
@pytest.mark.parametrize("conditioning", ["band", "all"])
def test_null_calibration(state_dim, conditioning):
    """One null test per independent data set: rejections at 5 % are Binomial(R, 0.05) and
    the p-values are uniform."""
    R = 400
    pvalues = np.array(
        [
            _one_band_test(
                600, 10, state_dim, 10_000 * state_dim + seed, null=True, conditioning=conditioning
            )
            for seed in range(R)
        ]
    )
    low, high = stats.binom.interval(0.999, R, ALPHA)
    rejections = int((pvalues < ALPHA).sum())
    assert low <= rejections <= high, (rejections, (low, high))
    assert stats.kstest(pvalues, "uniform").pvalue > 0.001


@pytest.mark.slow
@pytest.mark.parametrize("state_dim", [1, 2])
def test_power_rises_with_n(state_dim):
    R = 150
    rates = []
    for n in (250, 1000, 4000):
        pvalues = np.array(
            [_one_band_test(n, 8, state_dim, 50_000 + seed, null=False) for seed in range(R)]
        )
        rates.append(float((pvalues < ALPHA).mean()))
    assert rates[0] < rates[1] < rates[2] or rates[1] == rates[2] == 1.0, rates
    assert rates[0] < 0.9, rates  # the smallest n is not already saturated
    assert rates[2] >= 0.9, rates


# --------------------------------------------------------------------------------------------
# 5. internal consistency
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seq():
    """2-dimensional states, 3 tasks, 10 steps: data, a mixed plan, and its answer."""
    ds = make_task_sequences(1500, 10, 3, state_dim=2, random_state=5)
    data = _seq_data(ds)
    plan = _mixed_plan(10, 3)
    return ds, data, plan, FisherZ().run(data, plan)


def test_mixed_plan_has_several_shapes_and_shared_unions(seq):
    _, data, plan, result = seq
    shapes = plan.group_by_shape(data)
    assert len(shapes) >= 4
    unions = {}
    for x, y, z in zip(plan.x, plan.y, plan.z, strict=True):
        key = frozenset(x + y + z)
        unions[key] = unions.get(key, 0) + 1
    assert max(unions.values()) > 1 and min(unions.values()) == 1
    assert np.isfinite(result.pvalue).all()
    assert ((result.pvalue >= 0) & (result.pvalue <= 1)).all()


def test_prepare_equals_run(seq):
    _, data, plan, result = seq
    answer = FisherZ().prepare(data)
    _assert_same(answer(plan), result)
    # and batch by batch, as discover_structure calls it
    batched = type(result).empty(len(plan))
    for positions, sub in plan.batches(13):
        batched.fill(positions, answer(sub))
    _assert_same(batched, result, rtol=1e-9, atol=1e-12)


def test_shared_union_equals_one_at_a_time(seq):
    """Tests sharing their union are answered from one precision matrix; asked alone, each
    goes through the stacked by-shape solve. Both must agree."""
    _, data, plan, result = seq
    test = FisherZ()
    for k in range(len(plan)):
        alone = test.run(data, plan.subset([k]))
        np.testing.assert_allclose(alone.pvalue[0], result.pvalue[k], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(alone.statistic[0], result.statistic[k], rtol=1e-9, atol=1e-12)
        assert alone.dof[0] == result.dof[k]


def test_all_other_nodes_conditioning_shared_union(seq):
    """x vs y given every other node, for every pair of nodes: one union for all tests."""
    _, data, _, _ = seq
    nodes = range(data.n_nodes)
    pairs = [(a, b) for a in nodes for b in nodes if a < b]
    plan = TestPlan(
        tuple((a,) for a, _ in pairs),
        tuple((b,) for _, b in pairs),
        tuple(tuple(j for j in nodes if j not in (a, b)) for a, b in pairs),
    )
    test = FisherZ()
    together = test.run(data, plan)
    for k in range(len(plan)):
        alone = test.run(data, plan.subset([k]))
        np.testing.assert_allclose(alone.pvalue[0], together.pvalue[k], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(alone.statistic[0], together.statistic[k], rtol=1e-9)
    # the numpy reference on vector tests (2-dim states): step vs step, step vs task
    T = 10
    vector = [k for k in range(len(plan)) if plan.x[k][0] < T]
    for k in vector[:: max(1, len(vector) // 8)]:
        cols = [data.gather(data.columns(v)) for v in (plan.x[k], plan.y[k], plan.z[k])]
        _, statistic, pvalue, _ = _bartlett_reference(*cols)
        np.testing.assert_allclose(together.statistic[k], statistic, rtol=1e-8)
        assert abs(together.pvalue[k] - pvalue) <= 1e-8


def test_order_and_splitting_do_not_matter(seq):
    _, data, plan, result = seq
    test = FisherZ()
    perm = np.random.default_rng(0).permutation(len(plan))
    shuffled = test.run(data, plan.subset(perm))
    np.testing.assert_allclose(shuffled.pvalue, result.pvalue[perm], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(shuffled.statistic, result.statistic[perm], rtol=1e-10)
    np.testing.assert_array_equal(shuffled.dof, result.dof[perm])
    # the sub-plan keeps the run-wide index
    np.testing.assert_array_equal(plan.subset(perm).index, perm)

    pieces = type(result).empty(len(plan))
    for part in np.array_split(perm, 5):  # random, unequal subsets
        pieces.fill(part, test.run(data, plan.subset(part)))
    _assert_same(pieces, result, rtol=1e-9, atol=1e-12)


def test_chunked_covariance(seq):
    _, data, plan, result = seq
    for chunk_rows in (7, 1000):
        _assert_same(FisherZ(chunk_rows=chunk_rows).run(data, plan), result, rtol=1e-9, atol=1e-12)
        _assert_same(
            FisherZ(chunk_rows=chunk_rows).prepare(data)(plan), result, rtol=1e-9, atol=1e-12
        )


def test_affine_invariance(seq):
    ds, data, plan, result = seq
    rng = np.random.default_rng(1)
    scale_s = rng.uniform(0.01, 100, size=ds.states.shape[1:]) * rng.choice(
        [-1, 1], size=ds.states.shape[1:]
    )
    scale_g = rng.uniform(0.01, 100, size=ds.tasks.shape[1]) * rng.choice(
        [-1, 1], size=ds.tasks.shape[1]
    )
    states = ds.states * scale_s + rng.normal(scale=50, size=ds.states.shape[1:])
    tasks = ds.tasks * scale_g + rng.normal(scale=50, size=ds.tasks.shape[1])
    rescaled = FisherZ().run(_seq_data(ds, states, tasks), plan)
    np.testing.assert_allclose(rescaled.pvalue, result.pvalue, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(np.abs(rescaled.statistic), np.abs(result.statistic), rtol=1e-7)


@pytest.mark.parametrize(
    "scale",
    [
        1e-13,
        1e-9,
        1e9,
        1e15,
    ],
)
def test_extreme_column_scales(scale):
    """Partial correlation is scale-free: values of any magnitude give the same p-value."""
    rng = np.random.default_rng(4)
    x, y, z = _vector_data(rng, 500, 1, 1, 2, 0.2)
    expected = FisherZ().test(x, y, z)
    result = FisherZ().test(x * scale, y, z * scale)
    np.testing.assert_allclose(result.pvalue, expected.pvalue, rtol=1e-8)
    np.testing.assert_allclose(result.statistic, expected.statistic, rtol=1e-8)


def test_constant_column_far_from_zero_is_named():
    x, y, z = _xyz()
    z[:, 0] = 1e6
    with pytest.raises(ValueError, match=r"column z\[:, 0\] is constant"):
        FisherZ().test(x + 1e6, y, z)


@pytest.mark.parametrize("chunk_rows", [7, 65_536])
def test_data_far_from_zero(seq, chunk_rows):
    """A one-pass covariance without a shift would lose ~12 digits at an offset of 1e6."""
    ds, data, plan, result = seq
    far = _seq_data(ds, ds.states + 1e6, ds.tasks - 1e6)
    test = FisherZ(chunk_rows=chunk_rows)
    for shifted in (test.run(far, plan), test.prepare(far)(plan)):
        np.testing.assert_allclose(shifted.pvalue, result.pvalue, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(shifted.statistic, result.statistic, rtol=1e-6, atol=1e-7)


def test_empty_plan(seq):
    _, data, _, _ = seq
    result = FisherZ().run(data, TestPlan((), (), ()))
    assert len(result) == 0


# --------------------------------------------------------------------------------------------
# 6. missing values (testwise)
# --------------------------------------------------------------------------------------------


def test_missing_values_testwise():
    ds = make_task_sequences(1200, 8, 2, state_dim=2, random_state=21)
    rng = np.random.default_rng(3)
    states, tasks = ds.states.copy(), ds.tasks[:, :, None].copy()
    # NaN in single cells, at different rates per step, so tests see different row sets
    for t in range(states.shape[1]):
        states[rng.random(len(states)) < 0.01 * (t + 1), t, rng.integers(2)] = np.nan
    tasks[rng.random(len(tasks)) < 0.03, 1, 0] = np.nan
    data = sequence_ci_data(states, tasks)
    assert data.has_missing
    plan = _mixed_plan(8, 2)

    result = FisherZ().run(data, plan)
    _assert_same(FisherZ().prepare(data)(plan), result)
    _assert_same(FisherZ(chunk_rows=50).run(data, plan), result, rtol=1e-9, atol=1e-12)

    missing = np.isnan(np.concatenate([b for b in data.blocks], axis=1))
    for k in range(len(plan)):
        columns = data.columns(plan.x[k] + plan.y[k] + plan.z[k])
        rows = ~missing[:, columns].any(axis=1)
        x, y, z = (data.gather(data.columns(v), rows) for v in (plan.x[k], plan.y[k], plan.z[k]))
        expected = FisherZ().test(x, y, z)
        assert result.n_samples[k] == rows.sum()
        assert expected.n_samples == rows.sum()
        np.testing.assert_allclose(result.pvalue[k], expected.pvalue, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result.statistic[k], expected.statistic, rtol=1e-9, atol=1e-12)
        assert result.dof[k] == expected.dof
    # the NaN pattern really differs between tests
    assert len(np.unique(result.n_samples)) > 5
    assert result.n_samples.max() < data.n_samples


def test_missing_values_scalar_against_causallearn():
    """Testwise deletion on scalar tests equals causal-learn on each test's complete rows."""
    from causallearn.utils.cit import CIT

    ds = make_task_sequences(800, 8, 2, random_state=4)
    rng = np.random.default_rng(8)
    matrix = np.column_stack([ds.states[:, :, 0], ds.tasks])
    matrix[rng.random(matrix.shape) < 0.02] = np.nan
    data = sequence_ci_data(matrix[:, :8, None], matrix[:, 8:, None])
    plan = plan_tests("step", 8, 2, 2, "band").plan
    result = FisherZ().run(data, plan)
    for k, (x, y, z) in enumerate(zip(plan.x, plan.y, plan.z, strict=True)):
        cols = list(x + y + z)
        rows = ~np.isnan(matrix[:, cols]).any(axis=1)
        expected = CIT(matrix[rows][:, cols], "fisherz")(0, 1, list(range(2, len(cols))))
        assert abs(result.pvalue[k] - expected) <= 1e-8
        assert result.n_samples[k] == rows.sum()


# --------------------------------------------------------------------------------------------
# 7. bad input
# --------------------------------------------------------------------------------------------


def _xyz(n=100, dz=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), rng.normal(size=n), rng.normal(size=(n, dz))


def test_constant_column_is_named():
    x, y, z = _xyz()
    z[:, 1] = 3.0
    with pytest.raises(ValueError, match=r"column z\[:, 1\] is constant"):
        FisherZ().test(x, y, z)
    with pytest.raises(ValueError, match=r"x\[:, 0\].*constant"):
        FisherZ().test(np.ones_like(x), y, z)


def test_constant_column_in_sequence_data_is_named():
    ds = make_task_sequences(300, 6, 2, random_state=0)
    states = ds.states.copy()
    states[:, 3, 0] = 1.5
    data = _seq_data(ds, states)
    plan = plan_tests("step", 6, 2, 2, "band").plan
    for answer in (lambda p: FisherZ().prepare(data)(p), lambda p: FisherZ().run(data, p)):
        with pytest.raises(ValueError, match=re.escape("X[:, 3, 0]") + ".*constant"):
            answer(plan)


@pytest.mark.parametrize("where", ["z", "x"])
def test_duplicated_columns_are_named(where):
    x, y, z = _xyz(dz=3)
    if where == "z":
        z[:, 2] = z[:, 0]
        names = ("z[:, 0]", "z[:, 2]")
    else:
        x = z[:, 1].copy()
        names = ("x[:, 0]", "z[:, 1]")
    with pytest.raises(ValueError, match="collinear") as info:
        FisherZ().test(x, y, z)
    message = str(info.value)
    for name in names:
        assert name in message
    others = {"z": ("x[:, 0]", "z[:, 1]"), "x": ("z[:, 0]", "z[:, 2]")}[where]
    for name in others:
        assert name not in message


def test_collinear_columns_are_named():
    x, y, z = _xyz(dz=4)
    z[:, 3] = 2.0 * z[:, 0] - 0.5 * z[:, 2]
    with pytest.raises(ValueError, match="collinear") as info:
        FisherZ().test(x, y, z)
    message = str(info.value)
    for name in ("z[:, 0]", "z[:, 2]", "z[:, 3]"):
        assert name in message
    assert "z[:, 1]" not in message and "x[:, 0]" not in message


@pytest.mark.parametrize("conditioning", ["band", "all"])
def test_duplicated_steps_in_sequence_data_are_named(conditioning):
    """Both paths (by-shape for band, shared-union for all) name the two duplicated steps."""
    ds = make_task_sequences(300, 8, 2, random_state=1)
    states = ds.states.copy()
    states[:, 4] = states[:, 3]
    data = _seq_data(ds, states)
    plan = plan_tests("step", 8, 2, 2, conditioning).plan
    for answer in (lambda p: FisherZ().prepare(data)(p), lambda p: FisherZ().run(data, p)):
        with pytest.raises(ValueError, match="collinear") as info:
            answer(plan)
        assert "X[:, 3, 0]" in str(info.value) and "X[:, 4, 0]" in str(info.value)


@pytest.mark.parametrize("dz,n", [(0, 2), (0, 3), (3, 4), (3, 5), (3, 6), (6, 9)])
def test_too_few_samples_scalar(dz, n):
    """Fisher-z needs n - dz - 3 >= 1: n = dz + 3 or fewer must say so (not 'collinear')."""
    rng = np.random.default_rng(n)
    z = rng.normal(size=(n, dz)) if dz else None
    with pytest.raises(ValueError, match=rf"too few samples.*needs n >= {dz + 4}, got {n}"):
        FisherZ().test(rng.normal(size=n), rng.normal(size=n), z)
    # the smallest admissible n works and reports one degree of freedom
    n = dz + 4
    rng = np.random.default_rng(n)
    z = rng.normal(size=(n, dz)) if dz else None
    result = FisherZ().test(rng.normal(size=n), rng.normal(size=n), z)
    assert result.dof == 1 and 0 <= result.pvalue <= 1


def test_too_few_samples_vector():
    rng = np.random.default_rng(0)
    dx, dy, dz = 2, 2, 3
    n_ok = int(np.ceil(dz + 2 + (dx + dy + 1) / 2))  # factor n - dz - 1 - (dx+dy+1)/2 >= 1
    n_ok = max(n_ok, dz + dx + dy + 1)
    for n in (n_ok - 1, dz + 2):
        with pytest.raises(ValueError, match=rf"too few samples.*got {n}"):
            FisherZ().test(
                rng.normal(size=(n, dx)), rng.normal(size=(n, dy)), rng.normal(size=(n, dz))
            )
    result = FisherZ().test(
        rng.normal(size=(n_ok, dx)), rng.normal(size=(n_ok, dy)), rng.normal(size=(n_ok, dz))
    )
    assert np.isfinite(result.statistic) and result.dof == dx * dy


def test_too_few_samples_in_a_plan_names_the_test():
    ds = make_task_sequences(6, 8, 2, random_state=0)
    data = _seq_data(ds)
    plan = plan_tests("step", 8, 2, 2, "all").plan
    pattern = (
        r"too few samples for the partial-correlation test of "
        r"\{\('s', \d\)\} vs \{\('g', \d\)\} given \{.*\}.*got 6"
    )
    with pytest.raises(ValueError, match=pattern):
        FisherZ().run(data, plan)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_nonfinite_index_refers_to_the_callers_1d_array(bad):
    x, y, z = _xyz(dz=2)
    x[7] = bad
    kind = "NaN" if np.isnan(bad) else "inf"
    with pytest.raises(ValueError, match=re.escape(f"x contains {kind} at index (7,)")):
        FisherZ().test(x, y, z)


def test_x_with_zero_columns():
    _, y, z = _xyz()
    with pytest.raises(ValueError, match=r"\bx\b.*(empty|at least one column)"):
        FisherZ().test(np.zeros((100, 0)), y, z)
    with pytest.raises(ValueError, match=r"\by\b.*(empty|at least one column)"):
        FisherZ().test(y, np.zeros((100, 0)), z)


def test_mismatched_number_of_samples():
    x, y, z = _xyz()
    with pytest.raises(ValueError, match=r"z has 99 samples but the first array has 100"):
        FisherZ().test(x, y, z[:99])
    with pytest.raises(ValueError, match=r"y has 101 samples but the first array has 100"):
        FisherZ().test(x, np.r_[y, 0.0], z)


def test_band_helper_matches_plan():
    """The band the plan conditions on is the two neighbours inside the sequence."""
    assert band((3,), 8) == (2, 4)
    assert band((0,), 8) == (1,)
    assert band((7,), 8) == (6,)
    assert band((2, 3), 8) == (1, 4)


def test_chunk_rows_must_be_a_positive_integer():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 50))
    with pytest.raises(ValueError, match="chunk_rows must be >= 1, got 0"):
        FisherZ(chunk_rows=0).test(x, y)
