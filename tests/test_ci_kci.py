"""Tests of the kernel conditional-independence test (specialize.ci.kci.KCI).

Peer: causal-learn's KCI (``CIT(data, "kci")``, i.e. ``KCI_CInd`` / ``KCI_UInd`` with their
defaults), which the exact path reproduces. Calibration and power use the shared nonlinear
band cases (``tests/nonlinear_cases.py``). Every test is seeded; KCI itself is deterministic.
"""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
from scipy import stats

import specialize.ci.kci as kci_module
from nonlinear_cases import band_cases
from specialize.ci import CIData, TestPlan
from specialize.ci._kernels import gaussian_gram, hsic_theta, kci_theta, pivoted_cholesky
from specialize.ci.kci import AUTO_EXACT_MAX_N, KCI, MIN_SAMPLES
from specialize.datasets import make_task_sequences
from specialize.structure.discover import sequence_ci_data
from specialize.structure.plan import plan_tests

ALPHA = 0.05


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One PyTorch thread for this file: results do not depend on it, but an OpenMP pool on
    a machine whose cores are busy slows the dense linear algebra down many times over."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _causallearn_pvalue(x, y, z=None) -> float:
    """causal-learn's KCI through its CIT front end, x in the lower columns (so it stays x)."""
    from causallearn.utils.cit import CIT

    x, y = np.atleast_2d(x.T).T, np.atleast_2d(y.T).T
    parts = [x, y] + ([z] if z is not None else [])
    data = np.column_stack(parts)
    dx, dy = x.shape[1], y.shape[1]
    xs, ys = list(range(dx)), list(range(dx, dx + dy))
    cond = list(range(dx + dy, data.shape[1]))
    return float(CIT(data, "kci")(xs, ys, cond))


def _binomial_bound(R: int) -> tuple[float, float]:
    return stats.binom.interval(0.999, R, ALPHA)


def _null_pvalues(test: KCI, n: int, R: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    cases = band_cases(n, n_null=R, random_state=seed)
    pvalues = np.array([test.test(c.x, c.y, c.z).pvalue for c in cases])
    dims = np.array([c.x.shape[1] for c in cases])
    return pvalues, dims


# --------------------------------------------------------------------------------------------
# 1. peer agreement: the exact path is causal-learn's KCI
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [150, 260])  # the two width rules below 1200 samples
def test_exact_matches_causallearn_on_band_cases(n):
    cases = band_cases(n, n_null=7, n_alternative=7, random_state=n)
    ours = np.array(
        [KCI(approximation="exact", null="standard").test(c.x, c.y, c.z).pvalue for c in cases]
    )
    theirs = np.array([_causallearn_pvalue(c.x, c.y, c.z) for c in cases])
    np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9)
    assert np.mean((ours < ALPHA) == (theirs < ALPHA)) == 1.0
    # both 1- and 2-dimensional states, and p-values on both sides of alpha
    assert {c.x.shape[1] for c in cases} == {1, 2}
    assert (theirs < ALPHA).sum() >= 1 and (theirs > ALPHA).sum() >= 2


@pytest.mark.slow
def test_exact_matches_causallearn_above_1200_samples():
    """The narrowest width rule (n >= 1200), on a 2-dimensional state with a 4-column z."""
    cases = band_cases(1250, n_null=0, n_alternative=4, state_dims=(2,), random_state=3)
    c = next(c for c in cases if c.z.shape[1] == 4)
    ours = KCI(approximation="exact", null="standard").test(c.x, c.y, c.z)
    assert abs(ours.pvalue - _causallearn_pvalue(c.x, c.y, c.z)) <= 1e-8


def _independent_and_dependent(n, seed):
    """Vector x and y with dependence of several strengths, including none."""
    rng = np.random.default_rng(seed)
    out = []
    for strength in (0.0, 0.0, 0.15, 0.3, 1.0):
        x = rng.normal(size=(n, 2))
        y = rng.normal(size=(n, 2))
        y[:, 0] += strength * np.sin(2 * x[:, 0]) + strength * x[:, 1] ** 2
        out.append((x, y))
    return out


@pytest.mark.parametrize("n", [120, 300])
def test_unconditional_matches_causallearn_hsic(n):
    pairs = _independent_and_dependent(n, seed=n)
    ours = np.array(
        [KCI(approximation="exact", null="standard").test(x, y).pvalue for x, y in pairs]
    )
    theirs = np.array([_causallearn_pvalue(x, y) for x, y in pairs])
    np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9)
    assert theirs[-1] < 1e-3 and theirs[:2].min() > 1e-3


def test_statistic_matches_causallearn():
    from causallearn.utils.KCI.KCI import KCI_CInd, KCI_UInd

    c = band_cases(220, n_null=0, n_alternative=1, state_dims=(2,), random_state=9)[0]
    _, expected = KCI_CInd().compute_pvalue(c.x, c.y, c.z)
    result = KCI(approximation="exact", null="standard").test(c.x, c.y, c.z)
    np.testing.assert_allclose(result.statistic, expected, rtol=1e-9)
    assert np.isnan(result.dof) and result.n_samples == 220
    _, expected = KCI_UInd().compute_pvalue(c.x, c.y)
    np.testing.assert_allclose(
        KCI(approximation="exact", null="standard").test(c.x, c.y).statistic, expected, rtol=1e-9
    )


def test_default_widths_follow_the_reference_rule():
    assert kci_theta(199, 2) == pytest.approx(1 / (1.2**2 * 2))
    assert kci_theta(200, 3) == pytest.approx(1 / (0.7**2 * 3))
    assert kci_theta(1200, 1) == pytest.approx(1 / 0.4**2)
    assert hsic_theta(199, 2) == pytest.approx(2 / 0.8**2)
    assert hsic_theta(1199, 1) == pytest.approx(1 / 0.5**2)
    assert hsic_theta(1200, 3) == pytest.approx(3 / 0.3**2)


# --------------------------------------------------------------------------------------------
# 2. calibration under the null
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("approximation", ["exact", "low-rank"])
def test_dof_corrected_null_is_calibrated(approximation):
    """300 null band cases (1- and 2-dimensional states), one per test: rejections at 5 %
    are Binomial(300, 0.05) and the p-values are uniform. The low-rank path runs with coarse
    factors (rank <= 40 of n = 200), so it is really an approximation here."""
    R = 300
    kwargs = {"rank_tolerance": 1e-2, "max_rank": 40} if approximation == "low-rank" else {}
    test = KCI(approximation=approximation, null="dof-corrected", **kwargs)
    pvalues, dims = _null_pvalues(test, 200, R, seed=0)
    assert set(dims) == {1, 2}
    low, high = _binomial_bound(R)
    rejections = int((pvalues < ALPHA).sum())
    assert low <= rejections <= high, (rejections, (low, high))
    assert stats.kstest(pvalues, "uniform").pvalue > 0.001
    for d in (1, 2):
        low_d, high_d = _binomial_bound(int((dims == d).sum()))
        assert low_d <= (pvalues[dims == d] < ALPHA).sum() <= high_d, d


@pytest.mark.slow
def test_standard_null_overrejects_on_two_dim_states():
    """A known property of the standard (causal-learn) null, recorded so that a change is
    noticed: with 2-dimensional states (z of up to 4 columns) the kernel regression on z uses
    most of the degrees of freedom, and the standard moments, which ignore that, reject far
    more often than alpha; the dof-corrected moments, on the same cases, do not."""
    R = 150
    cases = band_cases(200, n_null=R, state_dims=(2,), random_state=1)
    standard = np.array([KCI(null="standard").test(c.x, c.y, c.z).pvalue for c in cases])
    corrected = np.array([KCI(null="dof-corrected").test(c.x, c.y, c.z).pvalue for c in cases])
    low, high = _binomial_bound(R)
    assert (standard < ALPHA).sum() > high
    assert low <= (corrected < ALPHA).sum() <= high


def test_small_sample_calibration_dof_corrected():
    """Near the smallest admissible n, the corrected null still holds its level."""
    R = 120
    pvalues, _ = _null_pvalues(KCI(null="dof-corrected"), 40, R, seed=11)
    low, high = _binomial_bound(R)
    assert low <= (pvalues < ALPHA).sum() <= high
    assert stats.kstest(pvalues, "uniform").pvalue > 0.001


# --------------------------------------------------------------------------------------------
# 3. power
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_power_rises_with_n():
    """Alternative band cases (1-dimensional states) at n = 150, 600 (exact) and 2,400
    (low-rank, the "auto" choice): the rejection rate of both nulls rises with n and is high
    at 2,400."""
    R = 24
    rates = {"standard": [], "dof-corrected": []}
    for n in (150, 600, 2400):
        cases = band_cases(n, n_null=0, n_alternative=R, state_dims=(1,), random_state=500)
        for null, found in rates.items():
            test = KCI(null=null)
            pvalues = np.array([test.test(c.x, c.y, c.z).pvalue for c in cases])
            found.append(float((pvalues < ALPHA).mean()))
    for found in rates.values():
        assert found[0] < found[1] < found[2], rates
        assert found[0] < 0.4 and found[2] >= 0.7, rates


# --------------------------------------------------------------------------------------------
# 4. low-rank path: agreement with the exact path, factors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("null", ["standard", "dof-corrected"])
def test_low_rank_converges_to_exact(null):
    """With factors of (numerically) full accuracy, low-rank and exact are the same test."""
    cases = band_cases(160, n_null=2, n_alternative=2, random_state=5)
    for c in cases:
        exact = KCI(approximation="exact", null=null).test(c.x, c.y, c.z)
        low = KCI(approximation="low-rank", null=null, rank_tolerance=1e-12).test(c.x, c.y, c.z)
        np.testing.assert_allclose(low.pvalue, exact.pvalue, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(low.statistic, exact.statistic, rtol=1e-5)
        low_u = KCI(approximation="low-rank", null=null, rank_tolerance=1e-12).test(c.x, c.y)
        exact_u = KCI(approximation="exact", null=null).test(c.x, c.y)
        np.testing.assert_allclose(low_u.pvalue, exact_u.pvalue, rtol=1e-5, atol=1e-12)


@pytest.mark.slow
def test_low_rank_agrees_with_exact_at_default_accuracy():
    """Default factors at n = 500: the same decision on >= 90 % of band cases and p-values
    close where the exact one is not tiny."""
    cases = band_cases(500, n_null=10, n_alternative=10, random_state=21)
    exact, low = [], []
    for c in cases:
        exact.append(KCI(approximation="exact", null="dof-corrected").test(c.x, c.y, c.z).pvalue)
        low.append(KCI(approximation="low-rank", null="dof-corrected").test(c.x, c.y, c.z).pvalue)
    exact, low = np.array(exact), np.array(low)
    assert np.mean((exact < ALPHA) == (low < ALPHA)) >= 0.9
    assert np.median(np.abs(exact - low)) < 0.02
    assert stats.spearmanr(exact, low).statistic > 0.95


def test_pivoted_cholesky_meets_its_tolerance():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(400, 3)))
    theta = 1.0
    gram = gaussian_gram(x, theta)
    for tolerance in (1e-2, 1e-4, 1e-7):
        factor, residual = pivoted_cholesky(x, theta, tolerance, max_rank=400)
        left = gram - factor @ factor.T
        assert float(torch.trace(left)) / 400 <= tolerance
        assert residual == pytest.approx(float(torch.trace(left)) / 400, abs=1e-10)
        assert float(torch.linalg.eigvalsh(left).min()) > -1e-10  # Nystroem: K - LL^T >= 0
    # rank cap, and determinism
    capped, residual = pivoted_cholesky(x, theta, 1e-12, max_rank=25)
    assert capped.shape == (400, 25) and residual > 1e-12
    again, _ = pivoted_cholesky(x, theta, 1e-12, max_rank=25)
    assert torch.equal(capped, again)


def test_pivoted_cholesky_rank_grows_as_tolerance_shrinks():
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(600, 2)))
    ranks = [pivoted_cholesky(x, 2.0, tol, 600)[0].shape[1] for tol in (1e-1, 1e-3, 1e-6)]
    assert ranks[0] < ranks[1] < ranks[2] < 600


@pytest.mark.parametrize("n, kx, ky", [(500, 3, 2), (120, 30, 25)])
def test_product_variance_matches_the_dense_formula(n, kx, ky):
    """Both evaluations (coordinate pairs when kx, ky are small, Gram row blocks otherwise)
    equal sum_{t,s} (Kx[t,s] Ky[t,s])^2 with K = V V^T, and equal the u_t u_t^T form."""
    rng = np.random.default_rng([n, kx, ky])
    vx, vy = rng.normal(size=(n, kx)), rng.normal(size=(n, ky))
    expected = float((((vx @ vx.T) * (vy @ vy.T)) ** 2).sum())
    u = (vx[:, :, None] * vy[:, None, :]).reshape(n, -1)
    assert np.isclose(expected, float(((u.T @ u) ** 2).sum()), rtol=1e-12)
    found = kci_module._product_variance(torch.as_tensor(vx), torch.as_tensor(vy))
    assert found == pytest.approx(expected, rel=1e-12)


def test_low_rank_never_forms_an_n_by_n_matrix(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("an n x n kernel matrix was formed")

    monkeypatch.setattr(kci_module, "gaussian_gram", forbidden)
    c = band_cases(300, n_null=1, state_dims=(2,), random_state=2)[0]
    result = KCI(approximation="low-rank").test(c.x, c.y, c.z)
    assert 0 <= result.pvalue <= 1
    with pytest.raises(AssertionError, match="n x n"):
        KCI(approximation="exact", null="standard").test(c.x, c.y, c.z)


def test_auto_chooses_by_sample_size(monkeypatch):
    paths = []
    original = kci_module._choose_path

    def spy(settings, n, conditional):
        paths.append(original(settings, n, conditional))
        return paths[-1]

    monkeypatch.setattr(kci_module, "_choose_path", spy)
    rng = np.random.default_rng(0)
    for n in (AUTO_EXACT_MAX_N, AUTO_EXACT_MAX_N + 1):
        x, y, z = rng.normal(size=(3, n, 1))
        KCI(max_rank=20).test(x, y, z)
    assert paths == ["exact", "low-rank"]


# --------------------------------------------------------------------------------------------
# 5. memory guard
# --------------------------------------------------------------------------------------------


def _forbid_allocation(monkeypatch):
    """Fail if the test standardises data or forms a kernel or factor."""

    def forbidden(*args, **kwargs):
        raise AssertionError("allocated before the memory check")

    for name in ("_standardise", "gaussian_gram", "pivoted_cholesky"):
        monkeypatch.setattr(kci_module, name, forbidden)


def test_memory_guard_exact_raises_before_allocating(monkeypatch):
    _forbid_allocation(monkeypatch)
    rng = np.random.default_rng(0)
    n = 3000
    x, y, z = rng.normal(size=(3, n, 1))
    with pytest.raises(MemoryError) as info:
        KCI(approximation="exact", max_memory_mib=100).test(x, y, z)
    message = str(info.value)
    assert "n = 3,000" in message
    needed = kci_module.EXACT_MATRICES[True] * n * n * 8 / 2**30
    assert f"{needed:.2f} GiB" in message
    assert "test='rcit'" in message and "approximation='low-rank'" in message
    assert "max_memory_mib = 100 MiB" in message


def test_memory_guard_at_a_size_that_would_exhaust_memory(monkeypatch):
    """n = 200,000: the exact path would need terabytes, the default low-rank factors 12 GiB;
    both raise at once with the default max_memory_mib."""
    _forbid_allocation(monkeypatch)
    rng = np.random.default_rng(0)
    x, y, z = rng.normal(size=(3, 200_000, 1))
    with pytest.raises(MemoryError, match=r"n = 200,000 samples needs about 2384\.19 GiB"):
        KCI(approximation="exact", null="standard").test(x, y, z)
    with pytest.raises(MemoryError, match=r"low-rank.*n = 200,000.*test='rcit'"):
        KCI().test(x, y, z)


def test_auto_falls_back_to_low_rank_when_exact_does_not_fit():
    """n = 300: exact needs 8 * 300^2 * 8 bytes (5.5 MiB), low-rank with max_rank = 20 about
    2.4 MiB; with 3 MiB allowed, "auto" takes the low-rank path instead of failing."""
    c = band_cases(300, n_null=1, random_state=4)[0]
    fallback = KCI(max_memory_mib=3, max_rank=20).test(c.x, c.y, c.z)
    low = KCI(approximation="low-rank", max_rank=20).test(c.x, c.y, c.z)
    exact = KCI(approximation="exact").test(c.x, c.y, c.z)
    assert fallback.pvalue == low.pvalue
    assert KCI(max_rank=20).test(c.x, c.y, c.z).pvalue == exact.pvalue != low.pvalue
    with pytest.raises(MemoryError, match="approximation='exact'"):
        KCI(approximation="exact", max_memory_mib=3).test(c.x, c.y, c.z)


# --------------------------------------------------------------------------------------------
# 6. batching, plans, missing values
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seq():
    ds = make_task_sequences(
        180, 6, 2, state_dim=2, mechanism="nonlinear", segment_length=2, random_state=3
    )
    data = sequence_ci_data(ds.states, ds.tasks[:, :, None])
    plan = plan_tests("unary", 6, 2, 2, "band").plan
    steps = plan_tests("step", 6, 2, 2, "band").plan
    plan = TestPlan(plan.x + steps.x, plan.y + steps.y, plan.z + steps.z)
    return ds, data, plan


@pytest.mark.parametrize("approximation", ["exact", "low-rank"])
def test_batches_give_identical_answers(seq, approximation):
    _, data, plan = seq
    test = KCI(approximation=approximation)
    whole = test.run(data, plan)
    prepared = test.prepare(data)
    clone = pickle.loads(pickle.dumps(test))
    for size in (1, 3):
        pieces = whole.empty(len(plan))
        for positions, sub in plan.batches(size):
            pieces.fill(positions, clone.prepare(data)(sub) if size == 3 else prepared(sub))
        np.testing.assert_array_equal(pieces.pvalue, whole.pvalue)
        np.testing.assert_array_equal(pieces.statistic, whole.statistic)
    assert np.all((whole.pvalue >= 0) & (whole.pvalue <= 1))
    assert (whole.n_samples == 180).all()


def test_plan_answers_equal_single_tests(seq):
    ds, data, plan = seq
    result = KCI().run(data, plan)
    for k in range(0, len(plan), 3):
        x, y, z = (data.gather(data.columns(v)) for v in (plan.x[k], plan.y[k], plan.z[k]))
        single = KCI().test(x, y, z if z.shape[1] else None)
        assert single.pvalue == pytest.approx(result.pvalue[k], rel=1e-10, abs=1e-14)


def test_invariant_to_affine_rescaling_of_columns():
    c = band_cases(200, n_null=0, n_alternative=1, state_dims=(2,), random_state=1)[0]
    rng = np.random.default_rng(0)
    scale = rng.uniform(1e-3, 1e3, size=3)
    shifted = (c.x * scale[:2] + 1e4, c.y * -scale[2] - 5.0, c.z * 1e6 + 3.0)
    for null in ("standard", "dof-corrected"):
        a = KCI(null=null).test(c.x, c.y, c.z)
        b = KCI(null=null).test(*shifted)
        np.testing.assert_allclose(b.pvalue, a.pvalue, rtol=1e-6, atol=1e-12)


def test_unconditional_test_is_symmetric():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, 150, 1))
    y += 0.3 * np.cos(2 * x)
    assert KCI().test(x, y).pvalue == pytest.approx(KCI().test(y, x).pvalue, rel=1e-10)


def test_missing_values_testwise():
    ds = make_task_sequences(260, 6, 2, state_dim=1, mechanism="nonlinear", random_state=8)
    rng = np.random.default_rng(2)
    states, tasks = ds.states.copy(), ds.tasks[:, :, None].copy()
    for t in range(6):
        states[rng.random(len(states)) < 0.02 * (t + 1), t, 0] = np.nan
    tasks[rng.random(len(tasks)) < 0.05, 1, 0] = np.nan
    data = sequence_ci_data(states, tasks)
    plan = plan_tests("unary", 6, 2, 2, "band").plan
    result = KCI().run(data, plan)
    np.testing.assert_array_equal(KCI().prepare(data)(plan).pvalue, result.pvalue)
    missing = np.isnan(np.concatenate(data.blocks, axis=1))
    for k in range(len(plan)):
        rows = ~missing[:, data.columns(plan.x[k] + plan.y[k] + plan.z[k])].any(axis=1)
        x, y, z = (data.gather(data.columns(v), rows) for v in (plan.x[k], plan.y[k], plan.z[k]))
        expected = KCI().test(x, y, z)
        assert result.n_samples[k] == rows.sum() == expected.n_samples
        assert result.pvalue[k] == pytest.approx(expected.pvalue, rel=1e-10, abs=1e-14)
    assert len(np.unique(result.n_samples)) > 3 and result.n_samples.max() < 260


# --------------------------------------------------------------------------------------------
# 7. bad input and parameters
# --------------------------------------------------------------------------------------------


def _xyz(n=100, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 1)), rng.normal(size=(n, 1)), rng.normal(size=(n, 2))


def test_constant_column_is_named():
    x, y, z = _xyz()
    z[:, 1] = 2.5
    with pytest.raises(ValueError, match=r"column z\[:, 1\] is constant over the 100 samples"):
        KCI().test(x, y, z)
    with pytest.raises(ValueError, match=r"column y\[:, 0\] is constant"):
        KCI().test(x, np.full_like(y, 1e6), z)


def test_constant_column_among_complete_rows_is_named():
    """A column constant only on the rows a test keeps (testwise deletion) is named."""
    x, y, z = _xyz(n=120)
    y[:60] = np.nan
    x[60:] = 4.0
    states = np.stack([x[:, 0], z[:, 0], z[:, 1]], axis=1)[:, :, None]
    data = sequence_ci_data(states, y[:, :, None])
    plan = TestPlan(((0,),), ((3,),), ((1, 2),))
    with pytest.raises(ValueError, match=r"X\[:, 0, 0\] is constant over the 60 samples"):
        KCI().run(data, plan)


def test_too_few_samples():
    x, y, z = _xyz(n=MIN_SAMPLES - 1)
    with pytest.raises(
        ValueError,
        match=rf"too few samples for KCI.*at least {MIN_SAMPLES}.*"
        rf"got {MIN_SAMPLES - 1}",
    ):
        KCI().test(x, y, z)
    x, y, z = _xyz(n=MIN_SAMPLES)
    assert 0 <= KCI().test(x, y, z).pvalue <= 1


def test_inf_is_named():
    x, y, z = _xyz()
    z[17, 0] = np.inf
    with pytest.raises(ValueError, match=re.escape("z contains inf at index (17, 0)")):
        KCI().test(x, y, z)
    # data built without the front end's check: the test's own check names the column
    states = np.stack([x[:, 0], z[:, 0], z[:, 1]], axis=1)[:, :, None]
    data = sequence_ci_data(np.nan_to_num(states, posinf=0.0), y[:, :, None])
    blocks = list(data.blocks)
    blocks[0] = blocks[0].copy()
    blocks[0][5, 1] = -np.inf
    bad = CIData(tuple(blocks), data.node_columns, data.node_names, data.column_labels, 100)
    plan = TestPlan(((0,),), ((3,),), ((1, 2),))
    for answer in (lambda p: KCI().run(bad, p), lambda p: KCI().prepare(bad)(p)):
        with pytest.raises(ValueError, match=r"column X\[:, 1, 0\] contains inf at sample 5"):
            answer(plan)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"approximation": "nystrom"}, "approximation must be one of"),
        ({"null": "permutation"}, "null must be one of"),
        ({"epsilon": 0.0}, "epsilon must be > 0"),
        ({"rank_tolerance": 0}, "rank_tolerance must be > 0"),
        ({"max_rank": 0}, "max_rank must be >= 1, got 0"),
        ({"max_memory_mib": -1}, "max_memory_mib must be > 0"),
        ({"device": "tpu"}, "device must be"),
    ],
)
def test_bad_parameters(params, message):
    x, y, z = _xyz()
    with pytest.raises(ValueError, match=message):
        KCI(**params).test(x, y, z)


def test_get_params_and_repr():
    test = KCI(null="dof-corrected", max_rank=300)
    params = test.get_params()
    assert params["null"] == "dof-corrected" and params["max_rank"] == 300
    assert params["approximation"] == "auto" and params["epsilon"] == 1e-3
    assert "KCI(approximation='auto'" in repr(test)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("approximation", ["exact", "low-rank"])
def test_cuda_matches_cpu(approximation):
    cases = band_cases(300, n_null=2, n_alternative=2, random_state=6)
    for c in cases:
        cpu = KCI(approximation=approximation).test(c.x, c.y, c.z)
        gpu = KCI(approximation=approximation, device="cuda").test(c.x, c.y, c.z)
        np.testing.assert_allclose(gpu.pvalue, cpu.pvalue, rtol=1e-6, atol=1e-10)
