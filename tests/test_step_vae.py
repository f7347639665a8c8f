"""StepVAE: the generalist latent shared by every step of a sequence."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression

from specialize import make_task_sequences
from specialize._threads import one_thread
from specialize._validation import DataValidationError, InvalidParameterError
from specialize.latent import sequence
from specialize.latent.sequence import StepVAE

FAST = dict(epochs=12, batch_size=64, progress=False)


@pytest.fixture(scope="module", autouse=True)
def small_models_on_one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def data():
    return make_task_sequences(1500, 6, 2, state_dim=2, obs_dim=12, mixing="mlp", random_state=3)


@pytest.fixture(scope="module")
def fitted(data):
    return StepVAE(4, random_state=0, **FAST).fit(data.obs)


def test_latents_have_one_row_per_step_and_carry_the_states(fitted, data):
    z = fitted.transform(data.obs)
    assert z.shape == (1500, 6, 4)
    active = z[:, :, fitted.active_dims_].reshape(-1, fitted.active_dims_.size)
    states = data.states.reshape(-1, 2)
    # the mixing is injective: the active coordinates must determine the 2-D state
    r2 = LinearRegression().fit(active, states).score(active, states)
    assert r2 > 0.9
    assert 2 <= fitted.active_dims_.size <= 4
    assert np.all(fitted.latent_variance_[fitted.active_dims_] > fitted.active_threshold)


def test_a_seed_gives_the_same_model(fitted, data):
    again = StepVAE(4, random_state=0, **FAST).fit(data.obs)
    np.testing.assert_array_equal(again.transform(data.obs[:50]), fitted.transform(data.obs[:50]))
    other = StepVAE(4, random_state=1, **FAST).fit(data.obs)
    assert not np.allclose(other.transform(data.obs[:50]), fitted.transform(data.obs[:50]))


def test_save_and_load_give_the_same_latents(fitted, data, tmp_path):
    fitted.save(tmp_path / "vae")
    loaded = StepVAE.load(tmp_path / "vae", device="cpu")
    np.testing.assert_array_equal(loaded.transform(data.obs), fitted.transform(data.obs))
    np.testing.assert_array_equal(loaded.active_dims_, fitted.active_dims_)
    assert loaded.score(data.obs) == pytest.approx(fitted.score(data.obs))


def test_temporal_kl_matches_torch_distributions():
    Module = sequence._module_class()
    torch.manual_seed(0)
    module = Module(5, 3, [8], temporal=True)
    with torch.no_grad():
        module.transition.weight.normal_()
        module.transition.bias.normal_()
        module.prior_logvar.normal_()
    x = torch.randn(4, 3, 5)
    with torch.no_grad():
        _, kl = module.losses(x, sample=False)
    with torch.no_grad():
        mu, logvar = module.encode(x)
        prior_shift = module.transition(mu[:, :-1])
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    prior_mean = torch.cat([torch.zeros_like(mu[:, :1]), prior_shift], 1)
    prior_std = torch.cat(
        [torch.ones_like(mu[:, :1]), (0.5 * module.prior_logvar.detach()).exp().expand(4, 2, 3)], 1
    )
    expected = torch.distributions.kl_divergence(
        q, torch.distributions.Normal(prior_mean, prior_std)
    )
    assert float(kl) == pytest.approx(float(expected.sum(-1).mean()), rel=1e-5)


def test_temporal_prior_learns_the_chain(data):
    model = StepVAE(4, temporal_prior=True, random_state=0, **FAST).fit(data.obs)
    weight = model.module_.transition.weight.detach().numpy()
    # the states form a Markov chain, so the learned transition cannot stay at its zero start
    assert np.abs(weight).max() > 0.1
    assert model.transform(data.obs[:10]).shape == (10, 6, 4)


def test_an_interrupted_fit_resumes_to_the_same_model(data, tmp_path, monkeypatch):
    X = data.obs[:600]
    params = dict(random_state=0, epochs=6, patience=50, progress=False)
    whole = StepVAE(3, **params).fit(X)
    file = tmp_path / "ckpt.pt"
    save = sequence.TrainingCheckpoint.save_progress
    calls = []

    def interrupt_after_three(self, stage, **progress):
        save(self, stage, **progress)
        calls.append(stage)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(sequence.TrainingCheckpoint, "save_progress", interrupt_after_three)
    with pytest.raises(KeyboardInterrupt):
        StepVAE(3, checkpoint=file, **params).fit(X)
    monkeypatch.setattr(sequence.TrainingCheckpoint, "save_progress", save)
    resumed = StepVAE(3, checkpoint=file, **params).fit(X)
    assert len(resumed.history_) == len(whole.history_) == 6
    np.testing.assert_allclose(resumed.transform(X), whole.transform(X), atol=1e-6)
    # a finished fit is read back, not retrained
    again = StepVAE(3, checkpoint=file, **params).fit(X)
    np.testing.assert_array_equal(again.transform(X), resumed.transform(X))


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.zeros((10, 3)), r"X has shape \(10, 3\)"),
        (np.r_[np.full((1, 3, 2), np.nan), np.ones((9, 3, 2))], "non-finite value"),
        (np.ones((10, 3, 2)), "constant"),
        (np.random.default_rng(0).normal(size=(2, 3, 2)), "too few"),
    ],
)
def test_bad_sequences_are_named(X, message):
    with pytest.raises((DataValidationError, InvalidParameterError), match=message):
        StepVAE(2, **FAST).fit(X)


def test_transform_checks_width_and_fitting(fitted, data):
    with pytest.raises(DataValidationError, match="12"):
        fitted.transform(data.obs[:, :, :5])
    with pytest.raises(InvalidParameterError, match="not fitted"):
        StepVAE().transform(data.obs)
    with pytest.raises(InvalidParameterError, match="temporal_prior"):
        StepVAE(temporal_prior="yes").fit(data.obs)
