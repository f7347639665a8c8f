"""Layer-2 metrics: block R^2, MCC and support recovery, with their documented failure cases."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

import specialize.metrics.latents as latents_module
from specialize._validation import DataValidationError, InvalidParameterError
from specialize.datasets.latents import make_task_latents
from specialize.metrics.latents import (
    MCCResult,
    _weighted_r2,
    block_r2,
    block_r2_scores,
    mcc,
    support_recovery,
)

FAST = dict(max_train=300)


def leaky(a):
    return np.where(a > 0, a, 0.2 * a)


def rotation(theta):
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


def gaussian(n, d, seed):
    return np.random.default_rng(seed).standard_normal((n, d))


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """Small kernel matrices: threads only add overhead, and contention on a busy machine."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def task_latents():
    return make_task_latents(2000, random_state=0)


# ----------------------------------------------------------------------------------------
# block_r2
# ----------------------------------------------------------------------------------------


def test_block_r2_is_high_for_an_invertible_nonlinear_mix():
    s = gaussian(1000, 2, 0)
    a = np.array([[1.0, 0.5], [-0.3, 1.2]])
    b = np.array([[0.8, -0.6], [0.4, 1.1]])
    x = leaky(leaky(s @ a.T) @ b.T)
    assert block_r2(x, s, random_state=0, **FAST) > 0.95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_block_r2_is_near_zero_for_an_independent_target(seed):
    x = gaussian(1000, 2, seed)
    target = gaussian(1000, 2, 100 + seed)
    r2 = block_r2(x, target, random_state=seed, **FAST)
    assert -0.1 < r2 < 0.05


def test_block_r2_false_negative_for_a_non_injective_encoder():
    """inputs = s**2 carry the magnitude of s, yet cannot predict s: R^2 about 0."""
    s = gaussian(1000, 1, 3)
    assert block_r2(s**2, s, random_state=0, **FAST) < 0.1
    assert block_r2(s**2, np.abs(s), random_state=0, **FAST) > 0.95


def test_block_r2_weights_target_columns_in_standardised_units():
    """One predictable column and one independent column of a huge scale: R^2 about 1/2.

    Weighting by the variances in the original units would give about 0.
    """
    s = gaussian(1000, 2, 4)
    target = np.column_stack([s[:, 0], 1000.0 * s[:, 1]])
    r2 = block_r2(s[:, :1], target, random_state=0, **FAST)
    assert 0.4 < r2 < 0.55


def test_weighted_r2_exact_values_and_no_clipping():
    y = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    # SST = (4 + 0 + 4) + (1 + 1 + 4) = 14; SSE = 1 + 1 = 2.
    pred = y.copy()
    pred[0, 0] += 1.0
    pred[2, 1] -= 1.0
    assert _weighted_r2(y, pred) == pytest.approx(1 - 2 / 14, abs=1e-15)
    far = np.full_like(y, 10.0)  # SSE = 100 + 64 + 36 + 81 + 81 + 36 = 398
    assert _weighted_r2(y, far) == pytest.approx(1 - 398 / 14, abs=1e-12)
    assert _weighted_r2(y, np.tile(y.mean(axis=0), (3, 1))) == pytest.approx(0.0, abs=1e-15)


def test_block_r2_is_reproducible_with_a_seed():
    s = gaussian(400, 2, 5)
    x = np.tanh(s) + 0.3 * gaussian(400, 2, 6)
    first = block_r2(x, s, random_state=7, **FAST)
    assert block_r2(x, s, random_state=7, **FAST) == first
    assert block_r2(x, s, random_state=np.random.default_rng(7), **FAST) == first
    assert block_r2(x, s, random_state=8, **FAST) != first


def test_block_r2_accepts_one_dimensional_arrays():
    s = gaussian(300, 1, 9)
    x = s**3 + s
    assert block_r2(x[:, 0], s[:, 0], random_state=0) == block_r2(x, s, random_state=0)


def test_block_r2_predicts_held_out_rows_in_chunks(monkeypatch):
    s = gaussian(200, 2, 15)
    x = np.tanh(s)
    whole = block_r2(x, s, random_state=0)
    monkeypatch.setattr(latents_module, "CHUNK", 7)
    assert block_r2(x, s, random_state=0) == pytest.approx(whole, abs=1e-12)


def test_block_r2_with_no_inputs_is_zero():
    target = gaussian(100, 2, 10)
    assert block_r2(np.empty((100, 0)), target, random_state=0) == 0.0


def test_block_r2_mlp_recovers_an_invertible_mix_and_is_reproducible():
    s = gaussian(600, 2, 11)
    x = leaky(s @ np.array([[1.0, 0.5], [-0.3, 1.2]]).T)
    r2 = block_r2(x, s, regressor="mlp", random_state=0)
    assert r2 > 0.9
    assert block_r2(x, s, regressor="mlp", random_state=0) == r2


def _bad(inputs=None, target=None, **kwargs):
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((50, 2)) if inputs is None else inputs
    target = rng.standard_normal((50, 2)) if target is None else target
    return block_r2(inputs, target, **kwargs)


def _with(value, index, shape=(50, 2)):
    a = np.random.default_rng(1).standard_normal(shape)
    a[index] = value
    return a


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            dict(inputs=np.ones((49, 2))),
            DataValidationError,
            "inputs has 49 rows but target has 50",
        ),
        (
            dict(inputs=_with(np.nan, (3, 1))),
            DataValidationError,
            r"inputs contains NaN at index \(3, 1\)",
        ),
        (
            dict(target=_with(np.inf, (7, 0))),
            DataValidationError,
            r"target contains inf at index \(7, 0\)",
        ),
        (
            dict(inputs=np.ones((19, 1)), target=np.arange(19.0)),
            DataValidationError,
            "19 rows; block_r2 needs at least 20",
        ),
        (
            dict(target=_with(2.0, (slice(None), 1))),
            DataValidationError,
            "column 1 of target is constant",
        ),
        (dict(target=np.empty((50, 0))), DataValidationError, "target is empty"),
        (dict(inputs=np.ones((50, 2, 2))), DataValidationError, r"inputs has shape \(50, 2, 2\)"),
        (dict(regressor="svm"), InvalidParameterError, "regressor must be one of"),
        (dict(test_size=0.0), InvalidParameterError, "test_size must be > 0.0"),
        (dict(test_size=1.0), InvalidParameterError, "test_size must be < 1.0"),
        (dict(test_size=0.05), InvalidParameterError, "leaves 48 training and 2 held-out rows"),
        (dict(max_train=5), InvalidParameterError, "max_train must be >= 10"),
        (dict(random_state="seed"), InvalidParameterError, "random_state must be"),
    ],
)
def test_block_r2_rejects_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        _bad(**kwargs)


# ----------------------------------------------------------------------------------------
# block_r2_scores
# ----------------------------------------------------------------------------------------


def test_true_latents_score_high_on_their_group_and_low_on_the_irrelevant(task_latents):
    ds = task_latents
    scores = block_r2_scores(
        ds.latents, ds.groups, ds.latents, ds.groups, ds.irrelevant, random_state=0, **FAST
    )
    assert [row["task"] for row in scores] == [0, 1]
    for row, group in zip(scores, ds.groups, strict=True):
        assert row["dims"] == group.tolist()
        assert row["r2_relevant"] > 0.95
        assert row["r2_irrelevant"] < 0.05


def test_superset_and_subset_supports_show_in_the_scores(task_latents):
    """No sparsity penalty: a superset carries the irrelevant coordinates too."""
    ds = task_latents
    group = ds.groups[0]
    superset = np.concatenate([group, ds.irrelevant])
    subset = group[:1]
    scores = block_r2_scores(
        ds.latents,
        [superset, subset],
        ds.latents,
        [group, group],
        ds.irrelevant,
        random_state=0,
        **FAST,
    )
    assert scores[0]["r2_relevant"] > 0.95 and scores[0]["r2_irrelevant"] > 0.95
    # One of two independent unit-variance coordinates: R^2 about 1/2.
    assert 0.35 < scores[1]["r2_relevant"] < 0.65 and scores[1]["r2_irrelevant"] < 0.05


def test_block_r2_scores_match_block_r2_with_the_same_seed():
    s = gaussian(300, 4, 12)
    z = np.column_stack([np.tanh(s[:, 0] + s[:, 1]), s[:, 1] ** 3, s[:, 2], s[:, 3]])
    groups = [np.array([0, 1])]
    dims = [np.array([0, 1])]
    scores = block_r2_scores(z, dims, s, groups, np.array([3]), random_state=3)
    assert scores[0]["r2_relevant"] == block_r2(z[:, :2], s[:, :2], random_state=3)
    assert scores[0]["r2_irrelevant"] == block_r2(z[:, :2], s[:, 3], random_state=3)
    mask = np.array([[True, True, False, False]])
    again = block_r2_scores(z, mask, s, groups, [3], random_state=np.random.default_rng(3))
    assert again == block_r2_scores(z, dims, s, groups, [3], random_state=np.random.default_rng(3))


def test_block_r2_scores_without_irrelevant_or_dims():
    s = gaussian(200, 3, 13)
    scores = block_r2_scores(s, [[], [2]], s, [[0, 1], [2]], [], random_state=0)
    assert scores[0]["dims"] == [] and scores[0]["r2_relevant"] == 0.0
    assert np.isnan(scores[0]["r2_irrelevant"]) and np.isnan(scores[1]["r2_irrelevant"])
    assert scores[1]["r2_relevant"] > 0.95


@pytest.mark.parametrize(
    ("dims", "groups", "irrelevant", "match"),
    [
        ([[0]], [[0], [1]], [2], "relevant_dims has 1 entries but groups has 2"),
        (
            [[0], [1, 4]],
            [[0], [1]],
            [2],
            r"relevant_dims\[1\] \(task 1\) contains the index 4, but z",
        ),
        (
            [[0], [-1]],
            [[0], [1]],
            [2],
            r"relevant_dims\[1\] \(task 1\) contains the negative index -1",
        ),
        (
            [[0], [1, 1]],
            [[0], [1]],
            [2],
            r"relevant_dims\[1\] \(task 1\) contains the index 1 more",
        ),
        ([[0], [1]], [[0], []], [2], r"groups\[1\] \(task 1\) is empty"),
        ([[0], [1]], [[0], [1]], [1], r"coordinate 1 is in groups\[1\] and in irrelevant"),
        ([[0.5], [1]], [[0], [1]], [2], r"relevant_dims\[0\] \(task 0\) must hold integer"),
        ([[True, False], [1]], [[0], [1]], [2], r"boolean mask of shape \(2,\), expected \(4,\)"),
    ],
)
def test_block_r2_scores_rejects_bad_indices(dims, groups, irrelevant, match):
    s = gaussian(60, 4, 14)
    with pytest.raises(DataValidationError, match=match):
        block_r2_scores(s, dims, s[:, :3], groups, irrelevant, random_state=0)


# ----------------------------------------------------------------------------------------
# mcc
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_mcc_is_one_for_a_signed_scaled_permutation(method):
    s = gaussian(500, 4, 20)
    perm = np.array([2, 0, 3, 1])  # z[:, i] = scale_i * s[:, perm[i]]
    z = s[:, perm] * np.array([-3.0, 0.5, 2.0, -0.1]) + 7.0
    result = mcc(z, s, method=method)
    assert result.score == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(result.matching, np.argsort(perm))
    assert result.correlations.shape == (4, 4)
    assert result.method == method and result.n_samples == 500


def test_mcc_pearson_misses_a_monotone_transform_that_spearman_sees():
    s = gaussian(1000, 3, 21)
    z = np.exp(s)
    pearson = mcc(z, s)
    spearman = mcc(z, s, method="spearman")
    assert pearson.score < 0.9
    assert spearman.score == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(spearman.matching, [0, 1, 2])


def test_rotation_within_a_group_fails_mcc_but_not_block_r2():
    """Group-wise identified but rotated by 45 degrees: MCC about 0.71, block R^2 about 1."""
    s = gaussian(1000, 2, 22)
    z = s @ rotation(np.pi / 4).T
    assert mcc(z, s).score == pytest.approx(np.sqrt(0.5), abs=0.03)
    # Spearman correlation of a bivariate normal with correlation r: 6 / pi * arcsin(r / 2).
    expected = 6 / np.pi * np.arcsin(np.sqrt(0.5) / 2)
    assert mcc(z, s, method="spearman").score == pytest.approx(expected, abs=0.03)
    assert block_r2(z, s, random_state=0, **FAST) > 0.95


def test_mcc_correlations_match_numpy_and_scipy():
    rng = np.random.default_rng(23)
    s = rng.standard_normal((200, 3))
    z = s @ rng.standard_normal((3, 5)) + rng.standard_normal((200, 5))
    pearson = mcc(z, s)
    expected = np.abs(np.corrcoef(z, s, rowvar=False)[:5, 5:])
    np.testing.assert_allclose(pearson.correlations, expected, atol=1e-12)
    spearman = mcc(z, s, method="spearman")
    expected = np.abs(spearmanr(z, s).statistic[:5, 5:])
    np.testing.assert_allclose(spearman.correlations, expected, atol=1e-12)
    # The matching maximises the total correlation: check against every assignment.
    from itertools import permutations

    best = max(
        sum(pearson.correlations[rows[j], j] for j in range(3))
        for rows in permutations(range(5), 3)
    )
    chosen = pearson.correlations[pearson.matching, np.arange(3)]
    assert chosen.sum() == pytest.approx(best, abs=1e-12)
    assert pearson.score == pytest.approx(chosen.mean(), abs=1e-15)


def test_mcc_with_more_learned_than_true_coordinates():
    s = gaussian(500, 3, 24)
    noise = gaussian(500, 2, 25)
    z = np.column_stack(
        [noise[:, 0], -s[:, 2], np.full(500, 4.0), 2 * s[:, 0], noise[:, 1], s[:, 1]]
    )
    result = mcc(z, s)
    assert result.score == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(result.matching, [3, 5, 1])
    assert result.correlations.shape == (6, 3)
    np.testing.assert_array_equal(result.correlations[2], 0.0)  # constant learned coordinate


def test_mcc_with_fewer_learned_than_true_coordinates_averages_the_matched_pairs():
    """Documented false positive: recovering one of three coordinates still scores 1."""
    s = gaussian(500, 3, 26)
    result = mcc(3 * s[:, 2], s)
    np.testing.assert_array_equal(result.matching, [-1, -1, 0])
    assert result.score == pytest.approx(1.0, abs=1e-12)


def test_mcc_result_round_trips_through_json_and_is_read_only(tmp_path):
    s = gaussian(100, 2, 27)
    result = mcc(np.column_stack([s, s[:, 0] + s[:, 1]]), s, method="spearman")
    again = MCCResult.from_json(result.to_json())
    assert again.score == result.score and again.method == "spearman" and again.n_samples == 100
    np.testing.assert_array_equal(again.matching, result.matching)
    np.testing.assert_array_equal(again.correlations, result.correlations)
    path = tmp_path / "mcc.json"
    result.to_json(path)
    assert json.loads(path.read_text())["matching"] == result.matching.tolist()
    np.testing.assert_array_equal(MCCResult.from_json(path).correlations, result.correlations)
    with pytest.raises(ValueError, match="read-only"):
        result.matching[0] = 5


@pytest.mark.parametrize(
    ("z", "latents", "kwargs", "error", "match"),
    [
        (
            np.ones((10, 2)),
            np.ones((11, 2)),
            {},
            DataValidationError,
            "z has 10 rows but latents has 11",
        ),
        (
            _with(np.nan, (4, 0), (10, 2)),
            _with(0.0, (0, 0), (10, 2)),
            {},
            DataValidationError,
            r"z contains NaN at index \(4, 0\)",
        ),
        (
            _with(0.0, (0, 0), (10, 2)),
            _with(2.0, (slice(None), 1), (10, 2)),
            {},
            DataValidationError,
            "column 1 of latents is constant",
        ),
        (np.ones((2, 1)), np.arange(2.0), {}, DataValidationError, "mcc needs at least 3"),
        (
            np.ones((10, 1)),
            np.arange(10.0),
            dict(method="kendall"),
            InvalidParameterError,
            "method must be one of",
        ),
    ],
)
def test_mcc_rejects_bad_input(z, latents, kwargs, error, match):
    with pytest.raises(error, match=match):
        mcc(z, latents, **kwargs)


# ----------------------------------------------------------------------------------------
# support_recovery
# ----------------------------------------------------------------------------------------


def test_support_recovery_exact_on_a_hand_built_case():
    groups = [[0, 1], [2, 3]]
    matching = np.array([3, 0, 1, -1])  # true 0 -> learned 3, 1 -> 0, 2 -> 1, 3 unmatched
    selected = [[3, 0], [1, 5, 0], []]
    rows = support_recovery(selected[:2], groups, matching)
    assert rows[0] == dict(task=0, size=2, true_size=2, size_error=0, precision=1.0, recall=1.0)
    # Task 1: learned 1 is matched to true 2 (in the group); 5 is unmatched; 0 belongs to task 0.
    assert rows[1] == dict(
        task=1, size=3, true_size=2, size_error=1, precision=pytest.approx(1 / 3), recall=0.5
    )
    empty = support_recovery([[]], [[0, 1]], matching)[0]
    assert empty["size"] == 0 and empty["size_error"] == -2
    assert empty["precision"] == 0.0 and empty["recall"] == 0.0
    mask = support_recovery([np.array([True, False, False, True])], [[0, 1]], matching)[0]
    assert mask == rows[0]


def test_support_recovery_survives_an_arbitrary_matching_inside_a_rotated_group():
    """Documented case: a rotation inside a group makes the pairing within it arbitrary.

    Rotating the pair (s0, s1) by 45 degrees minus or plus 5 degrees flips which learned
    coordinate is matched to which true one, yet both are matched inside the group, so the
    support scores stay exact; MCC falls to about cos(40 degrees).
    """
    s = gaussian(2000, 4, 30)
    groups = [[0, 1], [2, 3]]
    selected = [[0, 1], [2, 3]]
    matchings = []
    for theta in np.deg2rad([40.0, 50.0]):
        z = np.column_stack([s[:, :2] @ rotation(theta).T, s[:, 2:]])
        result = mcc(z, s)
        matchings.append(result.matching[:2].tolist())
        assert result.score == pytest.approx((2 * np.cos(np.deg2rad(40.0)) + 2) / 4, abs=0.03)
        for row in support_recovery(selected, groups, result.matching):
            assert row["precision"] == 1.0 and row["recall"] == 1.0 and row["size_error"] == 0
    assert matchings == [[0, 1], [1, 0]]


@pytest.mark.parametrize(
    ("selected", "groups", "matching", "match"),
    [
        (
            [[0], [-2]],
            [[0], [1]],
            [0, 1, 2],
            r"selected\[1\] \(task 1\) contains the negative index -2",
        ),
        (
            [[0], [1, 1]],
            [[0], [1]],
            [0, 1, 2],
            r"selected\[1\] \(task 1\) contains the index 1 more",
        ),
        ([[0], [1.5]], [[0], [1]], [0, 1, 2], r"selected\[1\] \(task 1\) must hold integer"),
        ([[0]], [[0], [1]], [0, 1, 2], "selected has 1 entries but groups has 2"),
        (
            [[0], [1]],
            [[0], [3]],
            [0, 1, 2],
            r"groups\[1\] \(task 1\) contains the index 3, but matching has only 3",
        ),
        ([[0], [1]], [[0], []], [0, 1, 2], r"groups\[1\] \(task 1\) is empty"),
        (
            [[0], [1]],
            [[0], [1]],
            [0, 1, 1],
            "learned coordinate 1 is matched to several true coordinates",
        ),
        ([[0], [1]], [[0], [1]], [0, -3, 1], r"matching\[1\] is -3"),
        ([[0], [1]], [[0], [1]], [0.0, 1.0], "matching must hold integer"),
        (7, [[0], [1]], [0, 1], "selected must be a sequence"),
    ],
)
def test_support_recovery_rejects_bad_indices(selected, groups, matching, match):
    with pytest.raises(DataValidationError, match=match):
        support_recovery(selected, groups, np.asarray(matching))
