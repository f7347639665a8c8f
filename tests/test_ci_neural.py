"""Tests of the neural conditional-mutual-information test (specialize.ci.neural.NeuralCMI).

The held-out statistic and p-value equal a reference computed here from the critic's scores;
the critic never depends on the held-out samples; calibration under a nonlinear null, power,
a 50-column x with two informative columns; seeds, missing values, bad input and the lazy
import of PyTorch. Every test is seeded; torch runs single-threaded.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from nonlinear_cases import conditional_case
from specialize._validation import DataValidationError, InvalidParameterError
from specialize.ci import CIData, NeuralCMI, TestPlan, available_ci_tests, make_ci_test
from specialize.ci.neural import _held_out_test

torch = pytest.importorskip("torch")

ALPHA = 0.05
#: Small settings that keep a test of a few hundred samples well under a second.
FAST = dict(n_permutations=99, epochs=60)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# 1. statistic and p-value from the critic's scores
# --------------------------------------------------------------------------------------------


class ProductCritic(torch.nn.Module):
    """T(x, y, z) = x_0 y_0 + z_0 / 4: a fixed critic on 1-column x, y and z."""

    def forward(self, v):
        return (v[..., 0] * v[..., 1] + 0.25 * v[..., 2])[..., None]


def reference_test(x, y, z, x_shuffles, y_shuffles):
    """The statistic and p-value of the held-out test, one copy at a time in float64."""

    def T(xs, ys):
        return xs[:, 0] * ys[:, 0] + 0.25 * z[:, 0]

    copies = [np.arange(len(x)), *x_shuffles]
    independent = np.concatenate([T(x[p], y) for p in x_shuffles])
    statistic = T(x, y).mean() - np.log(np.mean(np.exp(independent)))
    contrast = [
        T(x[p], y).mean() - np.mean([T(x[p], y[s]).mean() for s in y_shuffles] or [0.0])
        for p in copies
    ]
    pvalue = (1 + sum(c >= contrast[0] for c in contrast[1:])) / len(copies)
    return statistic, pvalue


@pytest.mark.parametrize("n_y_permutations", [0, 1, 3])
def test_held_out_statistic_and_pvalue_equal_reference(n_y_permutations):
    rng = np.random.default_rng(0)
    m, B = 40, 30
    z = rng.normal(size=(m, 1))
    x = z + rng.normal(size=(m, 1))
    y = 0.5 * x + rng.normal(size=(m, 1))
    x_shuffles = np.array([rng.permutation(m) for _ in range(B)])
    y_shuffles = np.array([rng.permutation(m) for _ in range(n_y_permutations)], dtype=int).reshape(
        -1, m
    )
    # multiples of 1/8: the critic's float32 values equal the float64 reference exactly
    x, y, z = (np.round(a * 8) / 8 for a in (x, y, z))
    got = _held_out_test(ProductCritic(), x, y, z, x_shuffles, y_shuffles, torch.device("cpu"))
    expected = reference_test(x, y, z, x_shuffles, y_shuffles)
    assert got[0] == pytest.approx(expected[0], abs=1e-9)
    assert got[1] == expected[1]


def test_critic_never_sees_the_held_out_samples():
    """Changing the held-out samples changes neither the split nor a single weight of the
    trained critic, but it changes the statistic."""
    trained = []

    class Recording(NeuralCMI):
        def _train(self, x, y, z, train, rng, device):
            critic = super()._train(x, y, z, train, rng, device)
            trained.append((train.copy(), [p.detach().clone() for p in critic.parameters()]))
            return critic

    x, y, z = conditional_case(1, 200)
    test = Recording(random_state=3, **FAST)
    first = test.test(x, y, z)
    train = trained[0][0]
    assert len(train) == 100 and len(np.unique(train)) == 100
    held = np.setdiff1d(np.arange(200), train)
    x2, y2 = x.copy(), y.copy()
    x2[held] = 10 * np.random.default_rng(0).normal(size=(100, 5))
    y2[held] *= -3
    second = test.test(x2, y2, z)
    np.testing.assert_array_equal(trained[1][0], train)
    for before, after in zip(trained[0][1], trained[1][1], strict=True):
        assert torch.equal(before, after)
    assert second.statistic != first.statistic


def test_pvalue_grid_and_strong_dependence():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(300, 2))
    x = np.sin(z) + rng.normal(size=(300, 2))
    y = x[:, :1] + 0.1 * rng.normal(size=(300, 1))
    test = NeuralCMI(random_state=0, **FAST)
    assert test.smallest_pvalue() == 1 / 100
    result = test.test(x, y, z)
    assert result.pvalue == 1 / 100  # the data beat every permuted copy
    # a lower bound on I(x; y | z) = 2.3 nats, far from tight after 60 steps on 150 samples
    assert 0.1 < result.statistic < 2.3
    assert np.isnan(result.dof) and result.n_samples == 300
    null = test.test(x, rng.normal(size=(300, 1)), z)
    assert null.pvalue * 100 == pytest.approx(round(null.pvalue * 100), abs=1e-9)
    assert null.pvalue > ALPHA


# --------------------------------------------------------------------------------------------
# 2. calibration and power
# --------------------------------------------------------------------------------------------


def test_null_calibration():
    """50 null cases (x and y both nonlinear in a 3-column z, independent given z): few
    rejections at 5 %, and p-values that a KS test does not tell from uniform (permutation
    p-values live on the grid k / 100; subtracting U(0, 1) / 100 makes an exactly uniform
    p-value continuous)."""
    R = 50
    pvalues = np.array(
        [
            NeuralCMI(random_state=j, n_permutations=99).test(*conditional_case(j, 500)).pvalue
            for j in range(R)
        ]
    )
    rate = float(np.mean(pvalues <= ALPHA))
    jitter = np.random.default_rng(0).random(R) / 100
    ks = stats.kstest(pvalues - jitter, "uniform").pvalue
    assert rate <= 0.15, (rate, np.sort(pvalues))
    assert ks > 0.001, (ks, np.sort(pvalues))


def test_plain_mean_score_is_not_calibrated():
    """Without the y-permuted term (y_permutations=0), the critic, trained to tell x from a
    permuted x, also learns how closely x fits z, which the permuted copies lose: it rejects
    true nulls far too often where the contrast does not (docs/ci.md: 39 % against 12 % at 5 %
    on 100 such cases). Null p-values have mean 0.5, with a standard error of 0.08 over 12 cases."""
    pvalues = {
        k: np.array(
            [
                NeuralCMI(random_state=j, y_permutations=k, n_permutations=99)
                .test(*conditional_case(100 + j, 500, noise=0.5))
                .pvalue
                for j in range(12)
            ]
        )
        for k in (0, 4)
    }
    assert np.mean(pvalues[0] <= ALPHA) >= 1 / 3 and pvalues[0].mean() < 0.25, pvalues[0]
    assert pvalues[4].mean() > 0.35, pvalues[4]


def test_power_on_moderate_dependence():
    """y[:, 0] = tanh(...) + 0.5 x[:, 0] + noise: I(x; y | z) is about 0.11 nats."""
    pvalues = np.array(
        [
            NeuralCMI(random_state=j, n_permutations=99)
            .test(*conditional_case(200 + j, 600, effect=0.5))
            .pvalue
            for j in range(5)
        ]
    )
    assert np.sum(pvalues <= ALPHA) >= 4, pvalues


def test_detects_two_informative_columns_among_fifty():
    pvalues = np.array(
        [
            NeuralCMI(random_state=j, n_permutations=99)
            .test(*conditional_case(300 + j, 1000, effect=1.0, dx=50, informative=2))
            .pvalue
            for j in range(2)
        ]
    )
    assert (pvalues <= ALPHA).all(), pvalues


def test_unconditional_dependence_and_independence():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 3))
    noise = rng.normal(size=(300, 1))
    dependent = NeuralCMI(random_state=0, **FAST).test(x, x[:, :1] ** 2 + noise)
    independent = NeuralCMI(random_state=0, **FAST).test(x, noise)
    assert dependent.pvalue == 1 / 100
    assert independent.pvalue > ALPHA


# --------------------------------------------------------------------------------------------
# 3. seeds, batching, missing values
# --------------------------------------------------------------------------------------------


def test_same_seed_same_answer_any_batching():
    x, y, z = conditional_case(5, 200, effect=0.3)
    w = np.random.default_rng(6).normal(size=(200, 2))
    data = CIData.from_arrays({"x": x, "y": y, "z": z, "w": w})
    plan = TestPlan(((0,), (3,), (0,)), ((1,), (1,), (3,)), ((2,), (2,), (1, 2)))
    test = NeuralCMI(random_state=11, **FAST)
    together = test.run(data, plan)
    again = NeuralCMI(random_state=11, **FAST).run(data, plan)
    np.testing.assert_array_equal(together.pvalue, again.pvalue)
    np.testing.assert_array_equal(together.statistic, again.statistic)
    for k in range(3):
        alone = test.run(data, plan.subset([k]))
        assert (alone.statistic[0], alone.pvalue[0]) == (together.statistic[k], together.pvalue[k])
    # the single-test entry point is the plan (x, y, z) = (0, 1, 2)
    single = test.test(x, y, z)
    assert (single.statistic, single.pvalue) == (together.statistic[0], together.pvalue[0])
    other = NeuralCMI(random_state=12, **FAST).run(data, plan)
    assert (other.statistic != together.statistic).all()


def test_missing_values_use_each_tests_complete_samples():
    x, y, z = conditional_case(7, 240)
    x_missing = x.copy()
    x_missing[[3, 50, 51], 1] = np.nan
    data = CIData(
        (x_missing, y, z),
        (np.arange(5), np.arange(5, 10), np.arange(10, 13)),
        ("x", "y", "z"),
        tuple(f"c{j}" for j in range(13)),
        240,
    )
    plan = TestPlan(((0,), (1,)), ((1,), (2,)), ((2,), ()))
    test = NeuralCMI(random_state=2, **FAST)
    result = test.run(data, plan)
    np.testing.assert_array_equal(result.n_samples, [237, 240])
    complete = np.isfinite(x_missing).all(axis=1)
    expected = test.test(x[complete], y[complete], z[complete])
    assert (result.statistic[0], result.pvalue[0]) == (expected.statistic, expected.pvalue)
    assert np.isfinite(result.pvalue).all()


# --------------------------------------------------------------------------------------------
# 4. bad input, parameters, registry, lazy import
# --------------------------------------------------------------------------------------------


def test_too_few_samples_names_the_test_and_n():
    x, y, z = conditional_case(8, 39)
    message = (
        "too few samples for the neural CMI test of {x} vs {y} given {z}: n=39 with "
        "train_fraction=0.5 leaves 19 held-out samples, fewer than the 20 it needs"
    )
    with pytest.raises(DataValidationError, match=re.escape(message)):
        NeuralCMI(**FAST).test(x, y, z)
    NeuralCMI(**FAST).test(*conditional_case(8, 40))  # 20 held out is enough
    with pytest.raises(DataValidationError, match="leaves 5 training samples, fewer than the 6"):
        NeuralCMI(train_fraction=0.1, **FAST).test(*conditional_case(8, 50))


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(train_fraction=1.0), "train_fraction must be < 1.0, got 1.0"),
        (dict(hidden=0), "hidden must be >= 1, got 0"),
        (dict(learning_rate=0.0), "learning_rate must be > 0.0, got 0.0"),
        (dict(batch_size=1), "batch_size must be >= 2, got 1"),
        (dict(y_permutations=-1), "y_permutations must be >= 0, got -1"),
        (dict(n_permutations=2.5), "n_permutations must be an integer; got 2.5"),
        (dict(device="tpu"), "device must be 'cpu' or 'cuda[:k]'; got 'tpu'"),
    ],
)
def test_bad_parameters_are_named(params, message):
    x, y, z = conditional_case(9, 60)
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        NeuralCMI(**params).test(x, y, z)


def test_registered_and_built_by_name():
    assert "neural-cmi" in available_ci_tests(data_driven_only=True)
    test = make_ci_test("neural-cmi", epochs=5, random_state=1)
    assert isinstance(test, NeuralCMI)
    assert test.get_params()["epochs"] == 5 and test.get_params()["hidden"] == 64
    result = NeuralCMI(device="auto", random_state=0, **FAST).test(*conditional_case(10, 60))
    assert 0 < result.pvalue <= 1


def test_importing_the_ci_package_does_not_import_torch():
    code = (
        "import sys, specialize.ci, specialize.ci.neural; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
