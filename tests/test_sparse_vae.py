"""SparseTaskVAE: the estimator's contract, its losses, persistence, resumption and bad input."""

import math

import numpy as np
import pytest
import torch

from specialize._validation import DataValidationError, InvalidParameterError
from specialize.datasets import make_task_latents
from specialize.latent import SparseTaskVAE, threshold_support
from specialize.latent import training as training_module
from specialize.latent.model import GATE_LIMITS, GATE_TEMPERATURE, SparseTaskVAEModule
from specialize.latent.training import TaskData, loss_terms

SMALL = dict(hidden_sizes=(16,), head_sizes=(8,), batch_size=64, progress=False)


@pytest.fixture(scope="module")
def data():
    return make_task_latents(400, obs_dim=8, random_state=0)


@pytest.fixture(scope="module")
def fitted(data):
    model = SparseTaskVAE(6, sparsity=0.1, epochs=4, random_state=0, **SMALL)
    return model.fit(data.obs, data.tasks)


def test_fitted_attributes_and_shapes(fitted, data):
    n, m = data.tasks.shape
    assert fitted.transform(data.obs).shape == (n, 6)
    assert fitted.task_mask_.shape == (m, 6)
    assert len(fitted.relevant_dims_) == m
    for k, dims in enumerate(fitted.relevant_dims_):
        assert fitted.transform_task(data.obs, k).shape == (n, len(dims))
        # off the support the mask is exactly zero
        off = np.setdiff1d(np.arange(6), dims)
        assert np.all(fitted.task_mask_[k, off] == 0)
    assert fitted.predict(data.obs).shape == (n, m)
    assert np.isfinite(fitted.score(data.obs, data.tasks))
    assert fitted.random_state_ == 0 and fitted.sparsity_ == 0.1
    assert [r["stage"] for r in fitted.history_][0] == "warm-up"


def test_constructor_stores_arguments_as_given():
    model = SparseTaskVAE(5, sparsity="auto", hidden_sizes=(7, 3), random_state=2)
    params = model.get_params()
    assert params["latent_dim"] == 5 and params["hidden_sizes"] == (7, 3)
    assert SparseTaskVAE(**params).get_params() == params
    with pytest.raises(InvalidParameterError, match="no parameter"):
        model.set_params(lambda_=1)


def test_same_seed_same_model(data):
    a = SparseTaskVAE(6, sparsity=0.0, epochs=2, random_state=4, **SMALL).fit(data.obs, data.tasks)
    b = SparseTaskVAE(6, sparsity=0.0, epochs=2, random_state=4, **SMALL).fit(data.obs, data.tasks)
    c = SparseTaskVAE(6, sparsity=0.0, epochs=2, random_state=5, **SMALL).fit(data.obs, data.tasks)
    np.testing.assert_array_equal(a.transform(data.obs), b.transform(data.obs))
    assert not np.allclose(a.transform(data.obs), c.transform(data.obs))


def test_save_load_round_trip(fitted, data, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = SparseTaskVAE.load(tmp_path / "model", device="cpu")
    np.testing.assert_array_equal(loaded.transform(data.obs), fitted.transform(data.obs))
    np.testing.assert_array_equal(loaded.predict(data.obs), fitted.predict(data.obs))
    np.testing.assert_array_equal(loaded.task_mask_, fitted.task_mask_)
    for a, b in zip(loaded.relevant_dims_, fitted.relevant_dims_, strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.get_params()["hidden_sizes"] == fitted.get_params()["hidden_sizes"]
    with pytest.raises(DataValidationError, match="8"):
        loaded.transform(data.obs[:, :5])
    with pytest.raises(DataValidationError, match="no saved"):
        SparseTaskVAE.load(tmp_path / "nothing")


def test_missing_labels_drop_only_their_term():
    torch.manual_seed(0)
    module = SparseTaskVAEModule(4, 3, [8], [8], [1, 3])
    x = torch.randn(10, 4)
    y = torch.stack([torch.randn(10), torch.randint(0, 3, (10,)).float()], dim=1)
    y[[1, 4, 7], 0] = float("nan")
    y[[2], 1] = float("nan")
    torch.manual_seed(1)
    recon, kl, tasks = loss_terms(module, TaskData(x, y), [False, True], sample=False)
    mu, _ = module.encode(x)
    out = module.predict_tasks(mu)
    keep0 = ~torch.isnan(y[:, 0])
    expected0 = 0.5 * ((out[0][keep0, 0] - y[keep0, 0]) ** 2).mean()
    keep1 = ~torch.isnan(y[:, 1])
    expected1 = torch.nn.functional.cross_entropy(out[1][keep1], y[keep1, 1].long())
    torch.testing.assert_close(tasks, torch.stack([expected0, expected1]))
    (recon + kl + tasks.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def test_partially_labelled_data_train(data):
    tasks = data.tasks.copy()
    tasks[::2, 1] = np.nan
    model = SparseTaskVAE(6, sparsity=0.0, epochs=2, random_state=0, **SMALL)
    model.fit(data.obs, tasks)
    scores = model.task_scores(data.obs, tasks)
    assert np.all(np.isfinite(scores))


def test_classification_is_learned_and_labels_come_back():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    labels = np.where(X[:, 0] + X[:, 1] > 0, 5.0, 2.0)
    target = X[:, 2] * 2.0 + 1.0
    G = np.column_stack([labels, target])
    model = SparseTaskVAE(4, sparsity=0.0, epochs=40, random_state=0, **SMALL).fit(X, G)
    assert model.task_types_ == ["classification", "regression"]
    assert set(np.unique(model.predict(X)[:, 0])) <= {2.0, 5.0}
    accuracy, r2 = model.task_scores(X, G)
    assert accuracy > 0.85 and r2 > 0.7


def test_penalty_shrinks_the_mask(data):
    fast = dict(SMALL, batch_size=32, learning_rate=1e-2)
    free = SparseTaskVAE(6, sparsity=0.0, epochs=8, random_state=0, **fast)
    free.fit(data.obs, data.tasks)
    with torch.no_grad():
        free_mass = float(free.module_.mask.abs().sum())
    strong = SparseTaskVAE(6, sparsity=1.0, epochs=8, random_state=0, **fast)
    strong.fit(data.obs, data.tasks)
    penalised = [r["penalty"] for r in strong.history_ if r["stage"].startswith("penalty")]
    assert penalised[-1] < 0.5 * free_mass


def test_auto_records_its_path(data):
    model = SparseTaskVAE(
        6,
        selection="path",
        epochs=2,
        random_state=0,
        sparsity_path=(0.1, 1.0),
        patience=1,
        **SMALL,
    ).fit(data.obs, data.tasks)
    assert [e["sparsity"] for e in model.path_] == [0.0, 0.1, 1.0]
    assert sum(e["selected"] for e in model.path_) == 1
    chosen = next(e for e in model.path_ if e["selected"])
    assert chosen["sparsity"] == model.sparsity_
    losses = np.array([e["valid_task_losses"] for e in model.path_])
    limit = losses.min(axis=0) * (1 + model.tolerance)
    assert np.all(np.array(chosen["valid_task_losses"]) <= limit)
    # no feasible weight is larger than the chosen one
    assert all(
        e["sparsity"] <= chosen["sparsity"]
        for e, row in zip(model.path_, losses, strict=True)
        if np.all(row <= limit)
    )


def test_choice_of_weight_when_the_tasks_disagree():
    from specialize.latent.selection import _choose

    def entry(weight, losses):
        return {"sparsity": weight, "valid_task_losses": losses}

    path = [entry(0.0, [1.0, 1.0]), entry(0.1, [1.04, 1.03]), entry(0.3, [1.2, 1.0])]
    assert _choose(path, 0.05)["sparsity"] == 0.1
    # each task is best at a different weight and no weight keeps both within 5 %:
    # the weight with the smallest worst ratio (1.5) is chosen, never an error
    path = [entry(0.0, [1.0, 3.0]), entry(0.1, [1.5, 1.5]), entry(0.3, [3.0, 1.0])]
    assert _choose(path, 0.05)["sparsity"] == 0.1
    # ties in the widened tolerance go to the larger weight
    path = [entry(0.0, [1.0, 2.0]), entry(0.1, [2.0, 1.0])]
    assert _choose(path, 0.05)["sparsity"] == 0.1


def test_threshold_support_rule():
    mask = np.array([[1.0, 0.09, 0.1, -0.5], [0.0, 0.0, 0.0, 0.0]])
    support = threshold_support(mask, 0.1)
    np.testing.assert_array_equal(support[0], [True, False, True, True])
    assert support[1].sum() == 1  # a task never ends without a coordinate


def test_l1_heads_are_lipschitz():
    torch.manual_seed(0)
    module = SparseTaskVAEModule(4, 5, [8], [16, 16], [1])
    for _ in range(5):  # spectral norms settle after a few power iterations in training mode
        module.predict_tasks(torch.randn(32, 5))
    module.eval()
    a, b = torch.randn(200, 5), torch.randn(200, 5)
    with torch.no_grad():
        head = module.heads[0]
        ratio = (head(a) - head(b)).norm(dim=1) / (a - b).norm(dim=1)
    assert ratio.max() <= 1.1 * 1.05


def test_hard_concrete_penalty_is_the_expected_number_of_open_gates():
    module = SparseTaskVAEModule(4, 3, [8], [8], [1, 1], gate="hard-concrete")
    with torch.no_grad():
        module.mask.copy_(torch.tensor([[0.0, 2.0, -2.0], [1.0, 1.0, 1.0]]))
    low, high = GATE_LIMITS
    # P(gate > 0) = sigmoid(log_alpha - temperature * log(-low / high))
    expected = torch.sigmoid(module.mask - GATE_TEMPERATURE * math.log(-low / high)).sum()
    torch.testing.assert_close(module.penalty(), expected)
    torch.manual_seed(0)
    with torch.no_grad():
        samples = torch.stack([module.effective_mask(sample=True) for _ in range(4000)])
    open_share = (samples > 0).float().mean(0).sum()
    assert abs(float(open_share) - float(expected.detach())) < 0.1


def test_hard_concrete_gate_fits(data):
    model = SparseTaskVAE(6, gate="hard-concrete", sparsity=0.05, epochs=2, random_state=0, **SMALL)
    model.fit(data.obs, data.tasks)
    assert np.all((model.task_mask_ >= 0) & (model.task_mask_ <= 1))


def test_interrupted_fit_resumes_to_the_same_model(data, tmp_path, monkeypatch):
    kwargs = dict(sparsity=0.1, epochs=3, random_state=0, **SMALL)
    reference = SparseTaskVAE(6, **kwargs).fit(data.obs, data.tasks)

    calls = {"n": 0}
    original = training_module.evaluate

    def failing_evaluate(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 5:  # in the middle of the penalised stage
            raise KeyboardInterrupt
        return original(*args, **kw)

    path = tmp_path / "fit.ckpt"
    monkeypatch.setattr(training_module, "evaluate", failing_evaluate)
    with pytest.raises(KeyboardInterrupt):
        SparseTaskVAE(6, checkpoint=path, **kwargs).fit(data.obs, data.tasks)
    monkeypatch.setattr(training_module, "evaluate", original)
    assert path.exists()
    resumed = SparseTaskVAE(6, checkpoint=path, **kwargs).fit(data.obs, data.tasks)
    np.testing.assert_array_equal(resumed.transform(data.obs), reference.transform(data.obs))
    assert len(resumed.history_) == len(reference.history_)
    with pytest.raises(DataValidationError, match="other data"):
        SparseTaskVAE(6, checkpoint=path, **kwargs).fit(data.obs[:300], data.tasks[:300])


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda X, G: (X, G[:-1]), "samples"),
        (lambda X, G: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), G), "row 0"),
        (lambda X, G: (X, np.column_stack([G[:, 0], np.ones(len(G))])), "constant"),
        (lambda X, G: (np.column_stack([X, np.ones(len(X))]), G), "constant"),
        (lambda X, G: (X, np.where(np.arange(G.size).reshape(G.shape) == 3, np.inf, G)), "inf"),
        (lambda X, G: (X[:, 0], G), "shape"),
    ],
)
def test_bad_input(data, change, match):
    X, G = change(data.obs, data.tasks)
    with pytest.raises(DataValidationError, match=match):
        SparseTaskVAE(6, epochs=1, **SMALL).fit(X, G)


def test_bad_parameters(data):
    with pytest.raises(InvalidParameterError, match="latent_dim=1"):
        SparseTaskVAE(1, **SMALL).fit(data.obs, data.tasks)
    with pytest.raises(InvalidParameterError, match="sparsity"):
        SparseTaskVAE(6, sparsity="always", **SMALL).fit(data.obs, data.tasks)
    with pytest.raises(InvalidParameterError, match="sparsity_path"):
        SparseTaskVAE(6, sparsity_path=(0.3, 0.1), **SMALL).fit(data.obs, data.tasks)
    with pytest.raises(InvalidParameterError, match="not fitted"):
        SparseTaskVAE(6).transform(data.obs)
