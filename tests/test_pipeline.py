"""Specializer: observations -> generalist latents -> task structure -> specialists."""

import json

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from typer.testing import CliRunner

from specialize import discover_structure, make_task_sequences
from specialize._threads import one_thread
from specialize._validation import DataValidationError, InvalidParameterError
from specialize.cli import app
from specialize.pipeline import Specializer

FAST = dict(
    vae_params=dict(epochs=15, progress=False),
    specialist_params=dict(epochs=6, sparsity=0.1),
    progress=False,
)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def small_models_on_one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def mixed():
    """Two-dimensional states rendered to 20-dim observations by a random injective MLP."""
    return make_task_sequences(2000, 8, 2, state_dim=2, obs_dim=20, mixing="mlp", random_state=1)


@pytest.fixture(scope="module")
def fitted(mixed):
    return Specializer(4, random_state=0, **FAST).fit(mixed.obs, mixed.tasks)


def test_structure_on_learned_latents_is_the_truth(fitted, mixed):
    scores = fitted.report(truth=mixed.step_assignment)["scores"]
    assert scores["exact"], scores
    for k, steps in enumerate(fitted.task_steps_):
        np.testing.assert_array_equal(steps, np.flatnonzero(mixed.step_assignment[:, k]))


def test_a_specialist_reads_only_its_tasks_steps(fitted, mixed):
    z = fitted.transform(mixed.obs, 0)
    assert z.shape == (2000, fitted.relevant_dims_[0].size)
    # changing the observations of a step outside task 0 leaves task 0's specialist unchanged
    outside = np.setdiff1d(np.arange(8), fitted.task_steps_[0])[0]
    moved = mixed.obs.copy()
    moved[:, outside] = moved[::-1, outside]
    np.testing.assert_array_equal(fitted.transform(moved, 0), z)
    inside = fitted.task_steps_[0][0]
    moved = mixed.obs.copy()
    moved[:, inside] = moved[::-1, inside]
    assert not np.allclose(fitted.transform(moved, 0), z)


def test_the_specialist_predicts_its_task(fitted, mixed):
    specialist = fitted.specialists_[1]
    inputs = fitted.encode(mixed.obs)[:, fitted.task_steps_[1]].reshape(2000, -1)
    states = mixed.states[:, mixed.step_assignment[:, 1]].reshape(2000, -1)
    # the task is linear in its steps' actions, which add noise to the states: the linear
    # fit from the true states is the ceiling the specialist can approach
    ceiling = LinearRegression().fit(states, mixed.tasks[:, 1]).score(states, mixed.tasks[:, 1])
    assert specialist.task_scores(inputs, mixed.tasks[:, [1]])[0] > 0.6 * ceiling


def test_identity_encoder_runs_algorithm_1_on_the_given_arrays():
    data = make_task_sequences(3000, 10, 3, state_dim=2, random_state=4)
    model = Specializer(step_encoder="identity", specialists=False, random_state=0).fit(
        data.states, data.tasks
    )
    direct = discover_structure(data.states, data.tasks, random_state=0)
    np.testing.assert_array_equal(model.step_tasks_, direct.step_tasks)
    assert model.encoder_ is None
    np.testing.assert_array_equal(model.encode(data.states), data.states)
    with pytest.raises(InvalidParameterError, match="specialists=False"):
        model.transform(data.states, 0)


def test_a_model_with_a_test_instance_cannot_be_saved_but_says_why(tmp_path):
    from specialize.ci import FisherZ

    data = make_task_sequences(500, 6, 2, state_dim=2, random_state=4)
    model = Specializer(
        step_encoder="identity", specialists=False, structure_params={"test": FisherZ()}
    ).fit(data.states, data.tasks)
    with pytest.raises(InvalidParameterError, match="registered test name"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_structure_params_reach_algorithm_1(mixed):
    model = Specializer(
        step_encoder="identity",
        specialists=False,
        structure_params=dict(mode="pairwise", correction=None, aggregation="any"),
        random_state=0,
    ).fit(mixed.states, mixed.tasks)
    assert model.structure_.mode == "pairwise"
    assert model.structure_.aggregation == "any"


def test_save_and_load_round_trip(fitted, mixed, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = Specializer.load(tmp_path / "model", device="cpu")
    for k in range(2):
        np.testing.assert_array_equal(
            loaded.transform(mixed.obs[:200], k), fitted.transform(mixed.obs[:200], k)
        )
    np.testing.assert_array_equal(loaded.step_tasks_, fitted.step_tasks_)
    assert loaded.get_params()["specialist_params"] == FAST["specialist_params"]
    assert json.dumps(loaded.report())  # JSON-friendly
    with pytest.raises(DataValidationError, match="no saved Specializer"):
        Specializer.load(tmp_path)


def test_report_and_plot(fitted, mixed, tmp_path):
    report = fitted.report(truth=mixed.step_assignment)
    assert report["random_state"] == 0
    assert [t["steps"] for t in report["tasks"]] == [s.tolist() for s in fitted.task_steps_]
    assert set(report["timings"]) == {"encoder", "structure", "specialists"}
    fitted.plot(tmp_path / "r.png", truth=mixed.step_assignment)
    assert (tmp_path / "r.png").read_bytes()[:8] == PNG


def test_bad_input(fitted, mixed):
    with pytest.raises(DataValidationError, match="NaN"):
        G = mixed.tasks.copy()
        G[3, 1] = np.nan
        Specializer(**FAST).fit(mixed.obs, G)
    with pytest.raises(DataValidationError):
        Specializer(**FAST).fit(mixed.obs, mixed.tasks[:100])
    with pytest.raises(DataValidationError, match="20"):
        fitted.transform(mixed.obs[:, :, :10], 0)
    with pytest.raises(DataValidationError, match="8"):
        fitted.encode(mixed.obs[:, :5])
    with pytest.raises(InvalidParameterError, match="task"):
        fitted.transform(mixed.obs, 2)
    with pytest.raises(InvalidParameterError, match="step_encoder"):
        Specializer(step_encoder="pca").fit(mixed.obs, mixed.tasks)
    with pytest.raises(InvalidParameterError, match="vae_params"):
        Specializer(vae_params=3).fit(mixed.obs, mixed.tasks)
    with pytest.raises(InvalidParameterError, match="not fitted"):
        Specializer().transform(mixed.obs, 0)


def test_cli_fit_then_transform(mixed, tmp_path):
    data = tmp_path / "d.npz"
    mixed.save(data)
    runner = CliRunner()
    args = ["fit", str(data), "--out", str(tmp_path / "m"), "--latent-dim", "4"]
    args += ["--epochs", "15", "--specialist-epochs", "6", "--sparsity", "0.1", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "exact yes" in result.output
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert report["scores"]["exact"]
    assert (tmp_path / "m" / "report.png").read_bytes()[:8] == PNG
    out = tmp_path / "z.npy"
    result = runner.invoke(
        app,
        [
            "transform",
            str(tmp_path / "m"),
            str(data),
            "--task",
            "1",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    model = Specializer.load(tmp_path / "m", device="cpu")
    np.testing.assert_allclose(np.load(out), model.transform(mixed.obs, 1))
    result = runner.invoke(app, ["transform", str(tmp_path / "m"), str(data), "--out", str(out)])
    assert result.exit_code == 0
    assert np.load(out).shape == (2000, 8, model.active_dims_.size)
    result = runner.invoke(
        app, ["transform", str(tmp_path / "m"), str(data), "--task", "7", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "out of range" in result.output
