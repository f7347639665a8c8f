"""The agent-video study: its evidence ranking and average precision, its helpers, and the
quick study end to end."""

import numpy as np
import pytest

from specialize._threads import one_thread as one_thread_limits
from specialize._validation import DataValidationError, InvalidParameterError
from specialize.datasets import make_task_sequences
from specialize.experiments import run_experiment
from specialize.experiments.video import (
    PIXEL_GRID,
    average_precision_by_task,
    deciding_tests,
    format_step_tasks,
    make_study_video,
    mean_average_precision,
    parse_step_tasks,
    plot_video_study,
    pool_frames,
    step_evidence,
    video_settings,
)
from specialize.metrics.structure import structure_scores
from specialize.structure import TaskStructure, discover_structure
from specialize.structure.plan import KIND_UNIT
from specialize.structure.result import unit_pvalues

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METHODS = ("algorithm-1-pixels", "algorithm-1-latent", "algorithm-1-temporal", "algorithm-1-states")


@pytest.fixture
def one_thread():
    with one_thread_limits():
        yield


def unary_structure(pvalues, statistics, *, test="fisherz", n_steps=6, correction=None):
    """A hand-made unary result of one task: one representative test per segment."""
    K = len(pvalues)
    tests = {
        "kind": np.full(K, KIND_UNIT),
        "task": np.zeros(K, dtype=int),
        "unit": np.arange(K),
        "partner": np.full(K, -1),
        "pvalue": np.asarray(pvalues, dtype=float),
        "statistic": np.asarray(statistics, dtype=float),
        "dof": np.full(K, np.nan),
        "n_samples": np.full(K, 100),
    }
    return TaskStructure(
        tests=tests,
        mode="unary",
        test=test,
        conditioning="band",
        alpha=0.05,
        correction=correction,
        aggregation=None,
        segment_length=2,
        n_samples=100,
        n_steps=n_steps,
        n_tasks=1,
    )


# ------------------------------------------------------------------------ average precision


def test_average_precision_matches_a_hand_computed_example_with_ties():
    evidence = np.array([[3.0, 0.0], [2.0, 1.0], [2.0, 2.0], [1.0, 3.0]])
    truth = np.array([[1, 0], [0, 0], [1, 1], [0, 1]], dtype=bool)
    # task 0: the top step is true (precision 1 at recall 1/2); the two tied steps enter
    # together and add the other true step (precision 2/3 at recall 1): 1/2 + 1/2 * 2/3
    # task 1: both true steps ranked first
    per_task = average_precision_by_task(evidence, truth)
    np.testing.assert_allclose(per_task, [5 / 6, 1.0])
    assert mean_average_precision(evidence, truth) == pytest.approx((5 / 6 + 1) / 2)


def test_average_precision_leaves_out_a_task_no_step_serves():
    evidence = np.array([[2.0, 1.0], [1.0, 2.0]])
    truth = np.array([[0, 1], [0, 0]], dtype=bool)
    per_task = average_precision_by_task(evidence, truth)
    assert np.isnan(per_task[0]) and per_task[1] == 0.5
    assert mean_average_precision(evidence, truth) == 0.5
    assert np.isnan(mean_average_precision(evidence, np.zeros_like(truth)))


@pytest.mark.parametrize(
    "evidence, truth, message",
    [
        (np.zeros(3), np.zeros(3, dtype=bool), "evidence has shape"),
        (np.zeros((3, 2)), np.zeros((3, 1), dtype=bool), "truth has shape"),
        (np.array([[np.nan], [0.0]]), np.ones((2, 1), dtype=bool), "NaN or inf"),
    ],
)
def test_average_precision_bad_input(evidence, truth, message):
    with pytest.raises(DataValidationError, match=message):
        average_precision_by_task(evidence, truth)


# ------------------------------------------------------------------------------- evidence


def test_evidence_ranks_by_pvalue_then_by_the_size_of_a_two_sided_statistic():
    result = unary_structure([0.01, 0.01, 0.5], [2.0, -3.0, 1.0], n_steps=7)
    evidence = step_evidence(result)
    assert evidence.shape == (7, 1)
    # a segment's steps share its evidence; |-3| beats 2 at equal p-values
    assert evidence[0, 0] == evidence[1, 0] and evidence[2, 0] == evidence[3, 0]
    assert evidence[2, 0] > evidence[0, 0] > evidence[4, 0]
    # step 6 lies outside every segment
    assert evidence[6, 0] < evidence[4, 0]


def test_evidence_keeps_the_sign_of_a_one_sided_statistic():
    evidence = step_evidence(
        unary_structure([0.01, 0.01], [2.0, -3.0], test="neural-cmi", n_steps=4)
    )
    assert evidence[0, 0] > evidence[2, 0]


def test_evidence_breaks_ties_of_adjusted_pvalues_by_the_raw_ones():
    # Holm over two tests adjusts both 0.01 and 0.02 to 0.02; the raw p-values still differ
    result = unary_structure([0.02, 0.01], [5.0, 1.0], correction="holm", n_steps=4)
    np.testing.assert_allclose(result.unit_evidence[:, 0], [0.02, 0.02])
    evidence = step_evidence(result)
    assert evidence[2, 0] > evidence[0, 0]


def test_segment_mode_evidence_follows_the_tests_that_decide_each_segment():
    data = make_task_sequences(400, 12, 2, state_dim=2, random_state=3)
    result = discover_structure(data.obs, data.tasks, random_state=3)
    raw, statistic = deciding_tests(result)
    expected = unit_pvalues(
        result.tests,
        mode="segment",
        alpha=result.alpha,
        n_steps=12,
        segment_length=2,
        n_tasks=2,
    )
    np.testing.assert_array_equal(raw, expected)
    assert np.isfinite(statistic).all()
    evidence = step_evidence(result)
    adjusted = np.repeat(result.unit_evidence, 2, axis=0)
    # strictly smaller adjusted p-values always mean strictly more evidence
    for k in range(2):
        smaller = adjusted[:, k][:, None] < adjusted[:, k][None, :]
        assert (evidence[:, k][:, None] > evidence[:, k][None, :])[smaller].all()
    # the recovered steps are the top of the ranking: their AP against the result is 1
    if result.step_tasks.any(axis=0).all():
        assert mean_average_precision(evidence, result.step_tasks) == 1.0


def test_evidence_refuses_pairwise_results():
    data = make_task_sequences(200, 8, 1, state_dim=2, random_state=0)
    result = discover_structure(data.obs, data.tasks, mode="pairwise", random_state=0)
    with pytest.raises(InvalidParameterError, match="pairwise"):
        step_evidence(result)


# -------------------------------------------------------------------------------- helpers


def test_pool_frames_averages_blocks_row_by_row():
    frame = np.arange(16.0).reshape(4, 4)
    obs = np.stack([frame.ravel(), 2 * frame.ravel()])[None]  # (1, 2, 16)
    pooled = pool_frames(obs, image_size=4, factor=2)
    assert pooled.shape == (1, 2, 4)
    np.testing.assert_allclose(pooled[0, 0], [2.5, 4.5, 10.5, 12.5])
    np.testing.assert_allclose(pooled[0, 1], 2 * pooled[0, 0])


def test_pool_frames_bad_input():
    with pytest.raises(DataValidationError, match="expected"):
        pool_frames(np.zeros((1, 2, 15)), image_size=4, factor=2)
    with pytest.raises(InvalidParameterError, match="does not divide"):
        pool_frames(np.zeros((1, 2, 16)), image_size=4, factor=3)


def test_step_tasks_text_round_trips_and_bad_text_is_refused():
    matrix = np.array([[1, 0], [0, 0], [1, 1]], dtype=bool)
    text = format_step_tasks(matrix)
    assert text == "x.|..|xx"
    np.testing.assert_array_equal(parse_step_tasks(text), matrix)
    for bad in ("x.|x", "xy|..", "12"):
        with pytest.raises(DataValidationError, match="not a step-task matrix"):
            parse_step_tasks(bad)


def test_full_settings_vary_only_the_number_of_agents_and_every_size_pools_evenly():
    full = video_settings(False)
    assert [s["n_agents"] for s in full] == [2, 3]
    assert all({**s, "n_agents": 0} == {**full[0], "n_agents": 0} for s in full)
    assert all(s["image_size"] % PIXEL_GRID == 0 for s in full + video_settings(True))


# ------------------------------------------------------------------------------ the study


def test_quick_study_runs_scores_every_method_and_writes_its_figures(tmp_path, one_thread):
    run = run_experiment("agent-video", seeds=[0], quick=True, out=tmp_path)
    rows = {row["method"]: row for row in run.rows}
    assert set(rows) == set(METHODS)
    for row in rows.values():
        for metric in ("precision", "recall", "f1", "accuracy", "map"):
            assert 0.0 <= row[metric] <= 1.0, (row["method"], metric)
        assert row["seconds"] > 0
    setting = video_settings(True)[0]
    truth = make_study_video(setting, 0).step_assignment
    for row in rows.values():
        recovered = parse_step_tasks(row["recovered"])
        assert structure_scores(recovered, truth)["f1"] == pytest.approx(row["f1"])
    # the reference: Algorithm 1 on the true states recovers the structure exactly
    assert rows["algorithm-1-states"]["f1"] == 1.0
    assert rows["algorithm-1-states"]["map"] == 1.0
    assert 1 <= rows["algorithm-1-latent"]["n_active"] <= 2 * setting["n_agents"]
    assert rows["algorithm-1-pixels"]["n_active"] is None
    # at n = 1,000 the neural test on pooled pixels finds no step, the latents all of them
    assert rows["algorithm-1-latent"]["f1"] > rows["algorithm-1-pixels"]["f1"]

    assert [p.name for p in run.plots] == ["f1_map.png", "frames_structure.png"]
    for path in run.plots:
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    # the figure is drawn from the rows and the regenerated video: the same bytes again
    again = plot_video_study(run.rows, tmp_path)
    assert again[1].read_bytes() == run.plots[1].read_bytes()
