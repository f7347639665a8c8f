"""Baselines: the CCA structure baseline and the group-lasso latent baseline."""

import numpy as np
import pytest
from scipy import stats
from sklearn.cross_decomposition import CCA

from specialize import make_task_sequences
from specialize._validation import DataValidationError, InvalidParameterError
from specialize.baselines import CCAStructure, GroupLassoLatents
from specialize.baselines.group_lasso import (
    AdditiveBasis,
    fit_group_lasso,
    group_lasso_path,
    max_lambda,
    one_standard_error,
)
from specialize.structure import adjust_pvalues

# ------------------------------------------------------------------------------ CCAStructure


def random_sequences(seed, n=200, T=3, D=3, M=2):
    """Steps with a linear effect on the first task and none on the others."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, T, D))
    G = rng.normal(size=(n, M))
    G[:, 0] += 0.3 * X[:, 0] @ rng.normal(size=D)
    return X, G


@pytest.mark.parametrize("D", [1, 3])
def test_cca_pvalues_match_the_f_test_of_the_regression(D):
    X, G = random_sequences(0, D=D)
    model = CCAStructure(correction=None).fit(X, G)
    n, T, _ = X.shape
    for t in range(T):
        design = np.column_stack([np.ones(n), X[:, t]])
        for i in range(G.shape[1]):
            residual = G[:, i] - design @ np.linalg.lstsq(design, G[:, i], rcond=None)[0]
            r2 = 1 - residual @ residual / np.sum((G[:, i] - G[:, i].mean()) ** 2)
            f = (r2 / D) / ((1 - r2) / (n - D - 1))
            assert model.correlations_[t, i] == pytest.approx(np.sqrt(r2), rel=1e-10)
            assert model.pvalues_[t, i] == pytest.approx(stats.f.sf(f, D, n - D - 1), rel=1e-8)
            if D == 1:
                fit = stats.linregress(X[:, t, 0], G[:, i])
                assert model.pvalues_[t, i] == pytest.approx(fit.pvalue, rel=1e-8)
                assert model.correlations_[t, i] == pytest.approx(abs(fit.rvalue), rel=1e-10)


def test_cca_bartlett_pvalues_follow_wilks_lambda():
    X, G = random_sequences(1)
    model = CCAStructure(correction=None, test="bartlett").fit(X, G)
    n, D = X.shape[0], X.shape[2]
    statistic = -(n - 1 - (D + 2) / 2) * np.log(1 - model.correlations_**2)
    np.testing.assert_allclose(model.pvalues_, stats.chi2.sf(statistic, D), rtol=1e-10)


def test_cca_correlations_and_variates_match_sklearn_cca():
    X, G = random_sequences(2, n=400)
    model = CCAStructure(alpha=0.5, correction=None).fit(X, G)
    assert model.step_tasks_.any()
    for t, i in zip(*np.nonzero(model.step_tasks_), strict=True):
        x_scores, y_scores = CCA(n_components=1).fit(X[:, t], G[:, i]).transform(X[:, t], G[:, i])
        reference = abs(np.corrcoef(x_scores[:, 0], y_scores[:, 0])[0, 1])
        assert model.correlations_[t, i] == pytest.approx(reference, rel=1e-8)
    for i in range(G.shape[1]):
        variates = model.transform(X, i)
        steps = np.flatnonzero(model.step_tasks_[:, i])
        assert variates.shape == (X.shape[0], steps.size)
        np.testing.assert_allclose(variates.mean(axis=0), 0, atol=1e-10)
        np.testing.assert_allclose(variates.std(axis=0), 1, rtol=1e-10)
        for column, t in zip(variates.T, steps, strict=True):
            r = np.corrcoef(column, G[:, i])[0, 1]
            assert r == pytest.approx(model.correlations_[t, i], rel=1e-8)


def test_cca_rank_deficient_step_is_tested_on_its_rank():
    X, G = random_sequences(3, D=2)
    doubled = np.concatenate([X, X[:, :, :1] - 2 * X[:, :, 1:]], axis=2)  # rank 2 of 3
    a = CCAStructure(correction=None).fit(X, G)
    b = CCAStructure(correction=None).fit(doubled, G)
    np.testing.assert_array_equal(b.ranks_, 2)
    np.testing.assert_allclose(b.pvalues_, a.pvalues_, rtol=1e-8)


@pytest.mark.parametrize("test", ["f", "bartlett"])
def test_cca_pvalues_are_calibrated_under_independence(test):
    rng = np.random.default_rng(4)
    draws = 200
    rejected = sum(
        CCAStructure(correction=None, test=test)
        .fit(rng.normal(size=(60, 1, 3)), rng.normal(size=(60, 1)))
        .step_tasks_[0, 0]
        for _ in range(draws)
    )
    assert 0.02 <= rejected / draws <= 0.09


def test_cca_correction_is_the_structure_search_default():
    X, G = random_sequences(5, T=6, M=3)
    model = CCAStructure().fit(X, G)
    assert model.get_params()["correction"] == "holm"
    expected = adjust_pvalues(model.pvalues_.ravel(), "holm").reshape(model.pvalues_.shape)
    np.testing.assert_array_equal(model.adjusted_pvalues_, expected)
    np.testing.assert_array_equal(model.step_tasks_, expected <= 0.05)
    raw = CCAStructure(correction=None).fit(X, G)
    assert not (model.step_tasks_ & ~raw.step_tasks_).any()


def test_cca_finds_every_task_step_and_its_chain_neighbours():
    """One step per task: marginal association reaches the task through the chain."""
    assignment = np.zeros((12, 3), dtype=bool)
    assignment[[2, 6, 10], [0, 1, 2]] = True
    for seed in range(3):
        data = make_task_sequences(2000, 12, 3, assignment=assignment, random_state=seed)
        model = CCAStructure().fit(data.states, data.tasks)
        scores = model.scores(data.step_assignment)
        assert scores["recall"] == 1.0, seed
        assert scores["precision"] < 0.5, seed
        for t, i in zip(*np.nonzero(assignment), strict=True):
            assert model.step_tasks_[[t - 1, t + 1], i].all(), (seed, t, i)


def test_cca_get_params_round_trip():
    model = CCAStructure(0.01, correction="fdr_bh", test="bartlett")
    assert CCAStructure(**model.get_params()).get_params() == model.get_params()
    assert model.set_params(alpha=0.2).alpha == 0.2
    with pytest.raises(InvalidParameterError, match="no parameter 'beta'"):
        model.set_params(beta=1)


@pytest.mark.parametrize(
    ("X", "G", "match"),
    [
        (np.zeros((50, 3)), np.zeros((50, 1)), r"X has shape \(50, 3\), expected"),
        (np.ones((50, 2, 2)), np.ones((40, 1)), "X has 50 samples but G has 40"),
        (np.full((5, 2, 3), 1.0), np.ones((5, 1)), r"needs n > D \+ 2 = 5"),
    ],
)
def test_cca_rejects_bad_shapes(X, G, match):
    with pytest.raises(DataValidationError, match=match):
        CCAStructure().fit(X, G)


def test_cca_rejects_nan_constant_steps_and_tasks():
    X, G = random_sequences(6)
    bad = X.copy()
    bad[4, 1, 2] = np.nan
    with pytest.raises(DataValidationError, match=r"X contains NaN at index \(4, 1, 2\)"):
        CCAStructure().fit(bad, G)
    bad = G.copy()
    bad[7, 1] = np.nan
    with pytest.raises(DataValidationError, match=r"G contains NaN at index \(7, 1\)"):
        CCAStructure().fit(X, bad)
    bad = X.copy()
    bad[:, 2] = 3.0
    with pytest.raises(DataValidationError, match=r"X\[:, 2\] is constant"):
        CCAStructure().fit(bad, G)
    bad = G.copy()
    bad[:, 1] = 1.0
    with pytest.raises(DataValidationError, match="task 1 of G is constant"):
        CCAStructure().fit(X, bad)


def test_cca_rejects_bad_parameters_and_use_before_fit():
    X, G = random_sequences(7)
    with pytest.raises(InvalidParameterError, match="alpha must be < 1.0"):
        CCAStructure(alpha=1.0).fit(X, G)
    with pytest.raises(InvalidParameterError, match="test must be one of"):
        CCAStructure(test="wilks").fit(X, G)
    with pytest.raises(InvalidParameterError, match="correction must be one of"):
        CCAStructure(correction="sidak").fit(X, G)
    with pytest.raises(InvalidParameterError, match="not fitted yet"):
        CCAStructure().transform(X, 0)
    model = CCAStructure().fit(X, G)
    with pytest.raises(DataValidationError, match="fitted on 3 steps of 3"):
        model.transform(X[:, :2], 0)
    with pytest.raises(InvalidParameterError, match="task must be <= 1"):
        model.transform(X, 2)
    with pytest.raises(DataValidationError, match="predicted has shape"):
        model.scores(np.zeros((2, 2), dtype=bool))


# ------------------------------------------------------------------------ group-lasso solver


def orthonormal_design(rng, n, p):
    """Centred columns with X^T X / n = I."""
    q, _ = np.linalg.qr(rng.normal(size=(n, p)) - rng.normal(size=(n, p)).mean(axis=0))
    q -= q.mean(axis=0)
    q, _ = np.linalg.qr(q)
    return q * np.sqrt(n)


def test_orthonormal_groups_are_group_soft_thresholding():
    rng = np.random.default_rng(10)
    n = 200
    X = orthonormal_design(rng, n, 7)
    groups = np.array([0, 1, 2, 3, 3, 3, 4])  # single columns and one group of three
    y = X @ np.array([1.0, -0.05, 0.4, 0.3, -0.2, 0.1, 0.0]) + 2.0 + rng.normal(size=n)
    lam = 0.15
    solution = fit_group_lasso(X, y, groups, lam, tol=1e-12)
    z = X.T @ (y - y.mean()) / n  # the least-squares coefficients
    norms = np.sqrt(np.bincount(groups, weights=z**2))
    expected = z * np.maximum(0.0, 1 - lam / norms)[groups]
    assert solution.converged
    np.testing.assert_allclose(solution.coef[:, 0], expected, atol=1e-10)
    single = groups != 3
    soft = np.sign(z) * np.maximum(np.abs(z) - lam, 0.0)
    np.testing.assert_allclose(solution.coef[single, 0], soft[single], atol=1e-10)
    assert (solution.coef[single, 0] == 0).any() and (solution.coef[single, 0] != 0).any()
    assert solution.intercept[0] == pytest.approx(y.mean() - X.mean(axis=0) @ expected)


def test_zero_penalty_is_least_squares():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6))
    y = X @ rng.normal(size=6) + 1.5 + rng.normal(size=150)
    solution = fit_group_lasso(X, y, np.array([0, 0, 1, 1, 2, 2]), 0.0, tol=1e-11)
    design = np.column_stack([X, np.ones(150)])
    reference = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(solution.coef[:, 0], reference[:6], rtol=1e-7, atol=1e-8)
    assert solution.intercept[0] == pytest.approx(reference[6], rel=1e-7)


def kkt_residual(gradient, coef, groups, lam):
    """Largest violation of the group-lasso KKT conditions, per group."""
    worst = 0.0
    for j in np.unique(groups):
        g, b = gradient[groups == j], coef[groups == j]
        norm = np.linalg.norm(b)
        if norm == 0:
            worst = max(worst, np.linalg.norm(g) - lam)
        else:
            worst = max(worst, np.abs(g + lam * b / norm).max())
    return worst


@pytest.mark.parametrize("seed", [12, 13])
def test_kkt_conditions_hold_for_the_squared_loss(seed):
    rng = np.random.default_rng(seed)
    n = 300
    X = rng.normal(size=(n, 9)) @ (np.eye(9) + 0.3 * rng.normal(size=(9, 9)))
    groups = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3])
    y = X[:, :3] @ [1.0, -1.0, 0.5] + 0.2 * X[:, 5] + rng.normal(size=n)
    lam = 0.3 * max_lambda(X, y, groups)
    solution = fit_group_lasso(X, y, groups, lam, tol=1e-10)
    norms = solution.group_norms(groups)
    assert (norms == 0).any() and (norms > 0).any()
    residual = y - solution.decision_function(X)[:, 0]
    assert residual.mean() == pytest.approx(0.0, abs=1e-10)
    assert kkt_residual(-X.T @ residual / n, solution.coef[:, 0], groups, lam) <= 1e-8


def test_kkt_conditions_hold_for_the_multinomial_loss():
    rng = np.random.default_rng(14)
    n = 300
    X = rng.normal(size=(n, 8))
    groups = np.repeat(np.arange(4), 2)
    logits = np.column_stack([X[:, 0] - X[:, 1], X[:, 2], np.zeros(n)]) * 1.5
    y = np.array(
        [rng.choice(3, p=p) for p in np.exp(logits) / np.exp(logits).sum(1, keepdims=True)]
    )
    lam = 0.4 * max_lambda(X, y, groups, loss="multinomial")
    solution = fit_group_lasso(X, y, groups, lam, loss="multinomial", tol=1e-10)
    norms = solution.group_norms(groups)
    assert (norms == 0).any() and (norms > 0).any()
    scores = solution.decision_function(X)
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    residual = (p - np.eye(3)[y]) / n
    np.testing.assert_allclose(residual.sum(axis=0), 0.0, atol=1e-9)  # unpenalised intercept
    assert kkt_residual(X.T @ residual, solution.coef, groups, lam) <= 1e-8


def test_max_lambda_is_where_the_first_group_enters():
    rng = np.random.default_rng(15)
    X = rng.normal(size=(100, 6))
    y = X[:, 0] + rng.normal(size=100)
    groups = np.array([0, 0, 1, 1, 2, 2])
    top = max_lambda(X, y, groups)
    above, below = group_lasso_path(X, y, groups, [top * 1.0001, top * 0.98], tol=1e-10)
    assert (above.coef == 0).all()
    assert (below.group_norms(groups) > 0).sum() == 1


def test_one_standard_error_rule_picks_the_largest_lambda_within_one_se():
    mean = np.array([1.0, 0.6, 0.45, 0.40, 0.42])
    se = np.array([0.1, 0.1, 0.1, 0.06, 0.1])
    assert one_standard_error(mean, se) == 2  # 0.45 <= 0.40 + 0.06
    assert one_standard_error(mean, np.zeros(5)) == 3


def test_additive_basis_is_orthonormal_within_each_coordinate():
    rng = np.random.default_rng(16)
    Z = rng.normal(size=(500, 3))
    basis = AdditiveBasis(n_knots=5).fit(Z)
    features = basis.transform(Z)
    assert features.shape == (500, basis.groups_.size)
    np.testing.assert_array_equal(np.bincount(basis.groups_), [6, 6, 6])
    np.testing.assert_allclose(features.mean(axis=0), 0, atol=1e-10)
    for j in range(3):
        block = features[:, basis.groups_ == j]
        np.testing.assert_allclose(block.T @ block / 500, np.eye(6), atol=1e-8)


def test_solver_rejects_malformed_groups():
    X, y = np.ones((10, 3)), np.arange(10.0)
    with pytest.raises(DataValidationError, match=r"groups must be an int array of shape \(3,\)"):
        fit_group_lasso(X, y, [0, 1], 0.1)
    with pytest.raises(DataValidationError, match="none empty"):
        fit_group_lasso(X, y, np.array([0, 2, 2]), 0.1)
    with pytest.raises(DataValidationError, match="X has 10 samples but y has 9"):
        fit_group_lasso(X, y[:9], np.array([0, 1, 1]), 0.1)
    with pytest.raises(InvalidParameterError, match="lambdas"):
        fit_group_lasso(X, y, np.array([0, 1, 1]), -1.0)
    with pytest.raises(DataValidationError, match=r"y\[1\] is 0.5; the multinomial loss takes"):
        fit_group_lasso(X, np.r_[0, 0.5, np.ones(8)], np.array([0, 1, 1]), 0.1, loss="multinomial")
    with pytest.raises(InvalidParameterError, match="loss must be one of"):
        fit_group_lasso(X, y, np.array([0, 1, 1]), 0.1, loss="hinge")


# --------------------------------------------------------------------- GroupLassoLatents


def additive_tasks(seed, n):
    """Six independent coordinates; a regression task on {0, 2}, a binary task on {1, 4}."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 6))
    y = np.sin(2 * Z[:, 0]) + Z[:, 2] ** 2 - 1 + 0.3 * rng.normal(size=n)
    c = (Z[:, 1] ** 2 + np.tanh(2 * Z[:, 4]) + 0.5 * rng.normal(size=n) > 1).astype(float)
    return Z, y, c


def test_group_lasso_selects_the_coordinates_of_a_nonlinear_regression():
    Z, y, _ = additive_tasks(0, 800)
    model = GroupLassoLatents(random_state=0).fit(Z, y)
    np.testing.assert_array_equal(model.relevant_dims_[0], [0, 2])
    assert model.task_types_ == ["regression"]
    mask = model.task_mask_
    assert mask.shape == (1, 6) and (mask[0, [0, 2]] > 0).all()
    np.testing.assert_array_equal(mask[0, [1, 3, 4, 5]], 0)
    path = model.path_[0]
    assert model.lambdas_[0] == path["lambdas"][path["chosen"]]
    assert path["n_selected"][-1] == 2
    r2 = 1 - np.mean((model.predict(Z)[:, 0] - y) ** 2) / y.var()
    assert r2 > 0.8  # a linear model of Z explains almost nothing of y
    np.testing.assert_allclose(model.transform_task(Z, 0), model.transform(Z)[:, [0, 2]])
    np.testing.assert_allclose(model.transform(Z), (Z - Z.mean(0)) / Z.std(0))


def test_group_lasso_ranks_the_coordinates_of_a_classification_task_first():
    """Noisy labels: irrelevant coordinates may enter, but with far smaller group norms."""
    Z, _, c = additive_tasks(1, 600)
    model = GroupLassoLatents(random_state=1, n_lambdas=15).fit(Z, c)
    assert model.task_types_ == ["classification"]
    mask = model.task_mask_[0]
    assert set(model.relevant_dims_[0]) >= {1, 4}
    assert mask[[1, 4]].min() > 4 * mask[[0, 2, 3, 5]].max()
    prediction = model.predict(Z)[:, 0]
    assert set(np.unique(prediction)) <= {0.0, 1.0}
    assert np.mean(prediction == c) > 0.8


def test_group_lasso_missing_labels_touch_only_their_task():
    Z, y, _ = additive_tasks(2, 500)
    other = np.abs(Z[:, 5]) + 0.3 * np.random.default_rng(0).normal(size=500)
    y_missing = y.copy()
    y_missing[::3] = np.nan
    both = GroupLassoLatents(random_state=0).fit(Z, np.column_stack([other, y_missing]))
    alone = GroupLassoLatents(random_state=0).fit(Z, other)
    np.testing.assert_array_equal(both.solutions_[0].coef, alone.solutions_[0].coef)
    assert both.path_[1]["n_labelled"] == 500 - len(y[::3])
    assert set(np.argsort(both.task_mask_[1])[-2:]) == {0, 2}
    assert np.isfinite(both.predict(Z)).all()


def test_group_lasso_cv_folds_follow_random_state():
    Z, y, _ = additive_tasks(3, 300)
    a = GroupLassoLatents(random_state=5, n_lambdas=10).fit(Z, y)
    b = GroupLassoLatents(random_state=5, n_lambdas=10).fit(Z, y)
    c = GroupLassoLatents(random_state=6, n_lambdas=10).fit(Z, y)
    assert a.path_[0]["cv_loss"] == b.path_[0]["cv_loss"]
    assert a.path_[0]["cv_loss"] != c.path_[0]["cv_loss"]


def test_group_lasso_get_params_round_trip():
    model = GroupLassoLatents(n_knots=4, cv=3, task_types=("regression",), random_state=2)
    assert GroupLassoLatents(**model.get_params()).get_params() == model.get_params()
    with pytest.raises(InvalidParameterError, match="no parameter 'alpha'"):
        model.set_params(alpha=1)


def test_group_lasso_rejects_bad_input():
    Z, y, c = additive_tasks(4, 100)
    model = GroupLassoLatents(n_lambdas=5)
    with pytest.raises(DataValidationError, match=r"Z has shape \(100, 2, 3\)"):
        model.fit(Z.reshape(100, 2, 3), y)
    bad = Z.copy()
    bad[3, 5] = np.nan
    with pytest.raises(DataValidationError, match=r"Z contains NaN at index \(3, 5\)"):
        model.fit(bad, y)
    bad = Z.copy()
    bad[:, 4] = 2.0
    with pytest.raises(DataValidationError, match="Z column 4 is constant"):
        model.fit(bad, y)
    with pytest.raises(DataValidationError, match="Z has 100 samples but G has 99"):
        model.fit(Z, y[:99])
    with pytest.raises(DataValidationError, match="G contains inf"):
        model.fit(Z, np.where(np.arange(100) == 7, np.inf, y))
    few = np.full(100, np.nan)
    few[:8] = y[:8]
    with pytest.raises(DataValidationError, match="task 0 of G has 8 labelled samples"):
        model.fit(Z, few)
    rare = c.copy()
    rare[np.flatnonzero(c == 1)[3:]] = 0
    with pytest.raises(DataValidationError, match="class 1 of task 0 has 3 labelled samples"):
        model.fit(Z, rare)
    with pytest.raises(InvalidParameterError, match="task_types has 2 entries"):
        GroupLassoLatents(task_types=["regression"] * 2).fit(Z, y)
    with pytest.raises(InvalidParameterError, match="cv must be >= 2"):
        GroupLassoLatents(cv=1).fit(Z, y)
    with pytest.raises(InvalidParameterError, match="not fitted yet"):
        model.transform(Z)
    model.fit(Z, y)
    with pytest.raises(DataValidationError, match="Z has 5 columns but the model was fitted on 6"):
        model.predict(Z[:, :5])
    with pytest.raises(InvalidParameterError, match="task must be <= 0"):
        model.transform_task(Z, 1)
