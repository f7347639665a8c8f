"""Tasks that are not observed: learned from an observation of their outcomes, then matched."""

import json

import numpy as np
import pytest
from scipy.stats import ortho_group
from sklearn.linear_model import LinearRegression
from typer.testing import CliRunner

from specialize import make_task_sequences
from specialize._threads import one_thread
from specialize._validation import DataValidationError, InvalidParameterError
from specialize.cli import app
from specialize.experiments import run_experiment
from specialize.metrics import matched_structure_scores, mcc, structure_scores
from specialize.pipeline import Specializer
from specialize.structure.unknown import learn_task_readout, outcome_latents


@pytest.fixture(scope="module", autouse=True)
def small_models_on_one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def data():
    """Three interleaved tasks over 12 steps, shown only through a 10-dim linear outcome."""
    return make_task_sequences(
        6000, 12, 3, state_dim=2, outcome_dim=10, outcome_mixing="linear", random_state=0
    )


def test_outcomes_are_drawn_last_and_show_every_task():
    plain = make_task_sequences(500, 8, 2, state_dim=2, random_state=3)
    shown = make_task_sequences(500, 8, 2, state_dim=2, outcome_dim=5, random_state=3)
    for name in ("obs", "states", "actions", "tasks", "step_assignment"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(shown, name))
    assert plain.outcomes is None and shown.outcomes.shape == (500, 5)
    # a linear outcome is an injective linear map of the tasks: they are read back exactly
    back = LinearRegression().fit(shown.outcomes, shown.tasks).score(shown.outcomes, shown.tasks)
    assert back > 1 - 1e-9


def test_outcomes_round_trip_through_npz(tmp_path):
    from specialize.datasets import load_sequences

    shown = make_task_sequences(200, 8, 2, outcome_dim=4, random_state=1)
    shown.save(tmp_path / "d.npz")
    f = load_sequences(tmp_path / "d.npz", with_tasks=False)
    np.testing.assert_array_equal(f.outcomes, shown.outcomes)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(outcome_dim=1), "outcome_dim must be >= 2"),
        (dict(outcome_dim=4, outcome_mixing="identity"), "outcome_mixing"),
    ],
)
def test_bad_outcome_arguments(kwargs, message):
    with pytest.raises(InvalidParameterError, match=message):
        make_task_sequences(100, 8, 2, random_state=0, **kwargs)


def test_readout_recovers_each_tasks_segments_and_latent(data):
    readout = learn_task_readout(data.obs, data.outcomes, 3, random_state=0)
    assert readout.n_resolved == 3
    # supports equal the true segment sets, up to the order of the learned tasks
    truth = {tuple(column) for column in data.segment_assignment.T.astype(int)}
    assert {tuple(row) for row in readout.supports.astype(int)} == truth
    assert mcc(readout.transform(data.outcomes), data.tasks).score > 0.98


def test_readout_undoes_a_rotation_that_principal_components_cannot(data):
    """Outcomes that rotate the tasks: PCA keeps the rotation, the sparse read-out undoes it."""
    rotation = ortho_group.rvs(3, random_state=7)
    outcomes = (data.tasks - data.tasks.mean(0)) / data.tasks.std(0) @ rotation
    components, _, _ = outcome_latents(outcomes, 3)
    readout = learn_task_readout(data.obs, outcomes, 3, random_state=0)
    assert mcc(components, data.tasks).score < 0.9
    assert mcc(readout.transform(outcomes), data.tasks).score > 0.98


def test_readout_bad_input(data):
    with pytest.raises(InvalidParameterError, match="fewer than n_tasks"):
        learn_task_readout(data.obs, data.outcomes[:, :2], 3)
    with pytest.raises(DataValidationError, match="rank below"):
        learn_task_readout(data.obs, np.repeat(data.outcomes[:, :1], 4, axis=1), 3)
    readout = learn_task_readout(data.obs, data.outcomes, 3, random_state=0)
    with pytest.raises(DataValidationError, match="10"):
        readout.transform(data.outcomes[:, :5])
    bad = data.outcomes.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataValidationError, match="NaN"):
        readout.transform(bad)


def test_matched_scores_undo_a_permutation_of_tasks():
    rng = np.random.default_rng(0)
    truth = rng.random((10, 4)) < 0.4
    truth[0] = True  # no empty column
    order = [2, 0, 3, 1]
    scores = matched_structure_scores(truth[:, order], truth)
    assert scores["exact"] and scores["permutation"] == order
    wrong = truth[:, order].copy()
    wrong[5, 0] = not wrong[5, 0]
    matched = matched_structure_scores(wrong, truth)
    assert matched["fp"] + matched["fn"] == 1
    assert structure_scores(wrong, truth)["f1"] < matched["f1"]
    with pytest.raises(DataValidationError, match="shape"):
        matched_structure_scores(truth[:, :3], truth)


def test_specializer_learns_tasks_from_outcomes(data, tmp_path):
    model = Specializer(
        step_encoder="identity", n_tasks=3, specialists=False, random_state=0, progress=False
    ).fit(data.obs, outcomes=data.outcomes)
    report = model.report(truth=data.step_assignment)
    assert report["learned_tasks"] and report["tasks_resolved"] == 3
    assert report["scores"]["exact"], report["scores"]
    assert sorted(report["scores"]["permutation"]) == [0, 1, 2]
    model.save(tmp_path / "m")
    loaded = Specializer.load(tmp_path / "m")
    np.testing.assert_array_equal(
        loaded.task_latents(data.outcomes), model.task_latents(data.outcomes)
    )
    assert loaded.scores(data.step_assignment) == model.scores(data.step_assignment)


def test_specializer_unknown_tasks_bad_input(data):
    with pytest.raises(InvalidParameterError, match="either the task variables"):
        Specializer(step_encoder="identity", n_tasks=3).fit(data.obs)
    with pytest.raises(InvalidParameterError, match="either the task variables"):
        Specializer(step_encoder="identity", n_tasks=3).fit(
            data.obs, data.tasks, outcomes=data.outcomes
        )
    with pytest.raises(InvalidParameterError, match="n_tasks is None"):
        Specializer(step_encoder="identity").fit(data.obs, outcomes=data.outcomes)
    with pytest.raises(DataValidationError, match="outcomes has 5 rows"):
        Specializer(step_encoder="identity", n_tasks=3).fit(data.obs, outcomes=data.outcomes[:5])
    observed = Specializer(step_encoder="identity", specialists=False, progress=False).fit(
        data.obs[:500], data.tasks[:500]
    )
    with pytest.raises(InvalidParameterError, match="no learned task latents"):
        observed.task_latents(data.outcomes)


def test_cli_fit_learns_tasks_from_outcomes(data, tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, obs=data.obs, outcomes=data.outcomes, step_assignment=data.step_assignment)
    runner = CliRunner()
    args = ["fit", str(path), "--out", str(tmp_path / "m"), "--step-encoder", "identity"]
    missing = runner.invoke(app, [*args, "--no-specialists"])
    assert missing.exit_code != 0 and "--n-tasks" in missing.output
    done = runner.invoke(app, [*args, "--no-specialists", "--n-tasks", "3", "--no-progress"])
    assert done.exit_code == 0, done.output
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert report["scores"]["exact"] and report["learned_tasks"]


def test_quick_study_ranks_the_readout_above_raw_components(tmp_path):
    rows = run_experiment("unknown-tasks", seeds=2, quick=True, out=tmp_path).rows
    by_method = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row)
    assert set(by_method) == {"learned-tasks", "outcome-components", "observed-tasks"}
    learned = np.mean([r["f1"] for r in by_method["learned-tasks"]])
    raw = np.mean([r["f1"] for r in by_method["outcome-components"]])
    assert learned > raw and learned > 0.95
    assert all(r["resolved"] == 2 for r in by_method["learned-tasks"])
    assert all(r["resolved"] is None for r in by_method["observed-tasks"])
