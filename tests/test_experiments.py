"""Experiments: the runner (CSV rows, summary, resume, errors) on a tiny fake experiment, and
each registered study in quick mode."""

import csv
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from specialize._threads import one_thread as one_thread_limits
from specialize._validation import DataValidationError, InvalidParameterError
from specialize.datasets import make_task_sequences
from specialize.experiments import (
    EXPERIMENTS,
    Experiment,
    available_experiments,
    read_runs,
    register,
    run_experiment,
)
from specialize.experiments.runner import run_files_folder
from specialize.experiments.structure import (
    SEGMENT_LENGTH,
    algorithm_1,
    flat_dims_to_steps,
    latent_scores,
    task_signals,
    tasks_specializer,
)
from specialize.structure import discover_structure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ fake experiment


def fake_rows(setting: dict, seed: int) -> list[dict]:
    """Rows whose values depend on the setting and the seed, with every value type."""
    rows = []
    for method in ("first", "second"):
        rng = np.random.default_rng([seed, setting["size"], len(method)])
        rows.append(
            {
                "method": method,
                "score": float(rng.random()) / 3,  # many digits: tests the exact round trip
                "count": int(rng.integers(0, 100)),
                "hit": bool(rng.random() < 0.5),
                "note": f"seed {seed}",
                "missing": None,
            }
        )
    return rows


def fake_plot(rows, out_dir):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([row["score"] for row in rows])
    path = Path(out_dir) / "scores.png"
    fig.savefig(path)
    return [path]


class FakeStudy:
    """A registered experiment that records its calls and can be told to fail at a seed."""

    def __init__(self):
        self.calls = []
        self.fail_at_seed = None
        self.experiment = Experiment(
            name="fake",
            description="A tiny experiment for testing the runner.",
            settings=lambda quick: (
                [{"size": 1, "label": "a"}] + ([] if quick else [{"size": 2, "label": "b"}])
            ),
            run=self.run,
            metrics=("score", "count", "hit", "missing"),
            plot=fake_plot,
        )

    def run(self, setting, seed, quick):
        if seed == self.fail_at_seed:
            raise RuntimeError(f"interrupted at seed {seed}")
        self.calls.append((setting["label"], seed))
        return fake_rows(setting, seed)


@pytest.fixture
def fake(monkeypatch):
    study = FakeStudy()
    monkeypatch.setitem(EXPERIMENTS, "fake", study.experiment)
    return study


def expected_rows(seeds, settings=({"size": 1, "label": "a"}, {"size": 2, "label": "b"})):
    return [
        {**setting, "seed": seed, **row}
        for setting in settings
        for seed in seeds
        for row in fake_rows(setting, seed)
    ]


def by_run(rows):
    return sorted(rows, key=lambda r: (r["label"], r["seed"], r["method"]))


def summary_table(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, [cell.strip() for cell in line.strip("|").split("|")], strict=True))
        for line in lines[2:]
    ]


# ------------------------------------------------------------------------------ runner


def test_runs_csv_holds_every_row_once_with_its_types_restored(fake, tmp_path):
    run = run_experiment("fake", seeds=3, out=tmp_path)
    path = tmp_path / "fake" / "runs.csv"
    assert run.folder == tmp_path / "fake"
    assert (run.computed, run.skipped) == (6, 0)
    assert by_run(read_runs(path)) == by_run(expected_rows([0, 1, 2]))
    assert read_runs(path) == run.rows
    lines = path.read_text().splitlines()
    assert lines[0] == "size,label,seed,method,score,count,hit,note,missing"
    assert sum(line == lines[0] for line in lines) == 1
    row = run.rows[0]
    assert [type(row[k]) for k in ("size", "label", "seed", "score", "count", "hit", "note")] == [
        int,
        str,
        int,
        float,
        int,
        bool,
        str,
    ]
    assert row["missing"] is None
    assert {p.name for p in run.plots} == {"scores.png"}
    assert run.plots[0].read_bytes().startswith(PNG_SIGNATURE)


def test_summary_gives_mean_and_std_over_seeds_of_each_setting_and_method(fake, tmp_path):
    run = run_experiment("fake", seeds=[0, 3, 7, 11], out=tmp_path)
    assert (tmp_path / "fake" / "summary.md").read_text() == run.summary
    table = summary_table(run.summary)
    assert len(table) == 2 * 2
    for line in table:
        rows = [
            r for r in run.rows if r["label"] == line["label"] and r["method"] == line["method"]
        ]
        assert int(line["seeds"]) == len(rows) == 4
        for metric in ("score", "count", "hit"):
            values = np.array([float(r[metric]) for r in rows])
            mean, std = (float(x) for x in line[metric].split(" ± "))
            assert mean == pytest.approx(values.mean(), rel=1e-3, abs=1e-4)
            assert std == pytest.approx(values.std(ddof=1), rel=1e-3, abs=1e-4)
        assert line["missing"] == "n/a"

    single = summary_table(run_experiment("fake", seeds=[5], out=tmp_path / "one").summary)
    assert all(line["score"].endswith(" ± –") and line["seeds"] == "1" for line in single)


def test_a_second_call_computes_nothing_and_gives_the_same_rows(fake, tmp_path):
    first = run_experiment("fake", seeds=3, out=tmp_path)
    calls = list(fake.calls)
    second = run_experiment("fake", seeds=3, out=tmp_path)
    assert (second.computed, second.skipped) == (0, 6)
    assert fake.calls == calls
    assert second.rows == first.rows
    assert second.summary == first.summary


def test_deleting_one_seeds_rows_recomputes_only_that_seed(fake, tmp_path):
    first = run_experiment("fake", seeds=3, out=tmp_path)
    path = tmp_path / "fake" / "runs.csv"
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    seed_column = lines[0].index("seed")
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(
            [lines[0]] + [line for line in lines[1:] if line[seed_column] != "1"]
        )
    fake.calls.clear()
    again = run_experiment("fake", seeds=3, out=tmp_path)
    assert sorted(fake.calls) == [("a", 1), ("b", 1)]
    assert (again.computed, again.skipped) == (2, 4)
    assert by_run(again.rows) == by_run(first.rows)


def test_an_interrupted_call_keeps_its_finished_runs(fake, tmp_path):
    fake.fail_at_seed = 2
    with pytest.raises(RuntimeError, match="interrupted at seed 2"):
        run_experiment("fake", seeds=4, out=tmp_path, progress=True)
    kept = read_runs(tmp_path / "fake" / "runs.csv")
    assert by_run(kept) == by_run(expected_rows([0, 1], settings=[{"size": 1, "label": "a"}]))

    fake.fail_at_seed = None
    fake.calls.clear()
    resumed = run_experiment("fake", seeds=4, out=tmp_path)
    assert (resumed.computed, resumed.skipped) == (6, 2)
    assert ("a", 0) not in fake.calls and ("a", 1) not in fake.calls
    assert by_run(resumed.rows) == by_run(expected_rows([0, 1, 2, 3]))


def test_a_write_cut_short_redoes_only_the_last_run(fake, tmp_path):
    run_experiment("fake", seeds=2, out=tmp_path)
    path = tmp_path / "fake" / "runs.csv"
    text = path.read_text()
    path.write_text(text[: len(text) - 10])  # inside the last row of run (b, seed 1)
    fake.calls.clear()
    again = run_experiment("fake", seeds=2, out=tmp_path)
    assert fake.calls == [("b", 1)]
    assert by_run(again.rows) == by_run(expected_rows([0, 1]))


def test_a_metric_added_later_widens_the_file_and_leaves_earlier_rows_empty(
    fake, tmp_path, monkeypatch
):
    run_experiment("fake", seeds=1, out=tmp_path)

    def run_with_extra(setting, seed, quick):
        return [{**row, "extra": 1.5} for row in fake_rows(setting, seed)]

    wider = Experiment(
        "fake", "", fake.experiment.settings, run_with_extra, ("score", "extra"), fake_plot
    )
    monkeypatch.setitem(EXPERIMENTS, "fake", wider)
    run = run_experiment("fake", seeds=2, out=tmp_path)
    assert read_runs(tmp_path / "fake" / "runs.csv") == run.rows
    assert {r["seed"]: r["extra"] for r in run.rows} == {0: None, 1: 1.5}
    assert {line["extra"] for line in summary_table(run.summary)} == {"1.5 ± –"}


def test_quick_and_full_runs_cannot_share_a_folder(fake, tmp_path):
    run_experiment("fake", seeds=1, quick=True, out=tmp_path)
    with pytest.raises(InvalidParameterError, match=r"fake.*quick=True"):
        run_experiment("fake", seeds=1, quick=False, out=tmp_path)
    manifest = json.loads((tmp_path / "fake" / "manifest.json").read_text())
    assert manifest["quick"] is True
    assert manifest["seeds"] == [0] and manifest["runs"] == 1
    assert manifest["settings"] == [{"size": 1, "label": "a"}]
    assert {"numpy", "torch", "scikit-learn", "specialize"} <= set(manifest["versions"])
    assert {"platform", "cpu_count"} <= set(manifest["machine"])
    assert manifest["seconds"] >= 0


def test_an_unknown_experiment_is_refused_with_the_available_names(fake, tmp_path):
    with pytest.raises(InvalidParameterError, match="structure-vs-steps") as error:
        run_experiment("no-such-study", out=tmp_path)
    assert all(name in str(error.value) for name in available_experiments())
    assert not (tmp_path / "no-such-study").exists()


@pytest.mark.parametrize("seeds", [0, -2, [], [-1], [1, 1], [0.5], True, "3", 2.0])
def test_seeds_must_be_a_positive_count_or_distinct_non_negative_ints(fake, tmp_path, seeds):
    with pytest.raises(InvalidParameterError, match="seeds"):
        run_experiment("fake", seeds=seeds, out=tmp_path)


def test_a_run_cannot_change_global_random_states_or_torch_threads(fake, tmp_path, monkeypatch):
    import torch

    def careless(setting, seed, quick):
        np.random.seed(seed)  # noqa: NPY002 - the legacy global state is what is tested
        random.seed(seed)
        torch.manual_seed(seed)
        torch.set_num_threads(torch.get_num_threads() + 1)
        return fake_rows(setting, seed)

    monkeypatch.setitem(
        EXPERIMENTS,
        "fake",
        Experiment("fake", "", lambda q: [{"size": 1}], careless, (), fake_plot),
    )
    threads = torch.get_num_threads()
    before = (np.random.get_state()[1].copy(), random.getstate(), torch.get_rng_state())  # noqa: NPY002
    run_experiment("fake", seeds=2, out=tmp_path)
    assert torch.get_num_threads() == threads
    np.testing.assert_array_equal(np.random.get_state()[1], before[0])  # noqa: NPY002
    assert random.getstate() == before[1]
    assert torch.equal(torch.get_rng_state(), before[2])


def test_registering_a_second_experiment_under_a_taken_name_is_refused(fake):
    with pytest.raises(InvalidParameterError, match="already registered"):
        register(Experiment("fake", "", fake.experiment.settings, fake.run, (), fake_plot))
    assert {"structure-vs-steps", "structure-vs-tasks", "latent-ablation"} <= set(
        available_experiments()
    )


# ------------------------------------------------------------------------------ the studies


@pytest.fixture
def one_thread():
    """PyTorch and BLAS on one thread each, as the shared test machines need."""
    with one_thread_limits():
        yield


def assert_valid_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.exists() and path.read_bytes().startswith(PNG_SIGNATURE)
    assert imread(path).ndim == 3


def test_flattened_coordinates_map_to_their_steps():
    step_tasks = flat_dims_to_steps([np.array([0, 1, 5]), np.array([], dtype=int)], 4, 2)
    np.testing.assert_array_equal(
        step_tasks, [[True, False], [False, False], [True, False], [False, False]]
    )


def test_latent_scores_are_near_one_for_the_signal_and_near_zero_for_noise(one_thread):
    rng = np.random.default_rng(0)
    signal = rng.normal(size=2000)
    noise = rng.normal(size=2000)

    itself = latent_scores(3.0 * signal[:, None] - 1.0, signal, random_state=0)
    assert itself["latent_r2"] > 0.99 and itself["latent_mcc"] > 0.99
    assert itself["latent_dims"] == 1
    unrelated = latent_scores(noise[:, None], signal, random_state=0)
    assert unrelated["latent_r2"] < 0.05 and unrelated["latent_mcc"] < 0.1
    both = latent_scores(np.column_stack([noise, signal]), signal, random_state=0)
    assert both["latent_r2"] > 0.99 and both["latent_mcc"] > 0.99 and both["latent_dims"] == 2
    nothing = latent_scores(np.empty((2000, 0)), signal, random_state=0)
    assert nothing == {"latent_r2": 0.0, "latent_mcc": 0.0, "latent_dims": 0}
    with pytest.raises(DataValidationError, match=r"signal has shape \(1999,\)"):
        latent_scores(signal[:, None], signal[:-1], random_state=0)


def test_task_signal_is_the_least_squares_fit_on_the_states_of_the_true_steps_only():
    data = make_task_sequences(3000, 12, 3, state_dim=2, segment_length=2, random_state=4)
    signals = task_signals(data)
    assert signals.shape == (3000, 3)
    for k in range(3):
        true_steps = data.states[:, data.step_assignment[:, k]].reshape(3000, -1)
        residual = data.tasks[:, k] - signals[:, k]
        # the residual is orthogonal to the regressors: no better fit on these states exists
        np.testing.assert_allclose(true_steps.T @ residual / 3000, 0.0, atol=1e-9)
        assert abs(residual.mean()) < 1e-9
        # and the signal is a linear function of these states alone (no other step enters)
        design = np.column_stack([np.ones(3000), true_steps])
        fitted = design @ np.linalg.lstsq(design, signals[:, k], rcond=None)[0]
        np.testing.assert_allclose(fitted, signals[:, k], atol=1e-9)
        assert 0.02 < signals[:, k].var() / data.tasks[:, k].var() < 1.0


def test_the_pipeline_finds_the_structure_of_algorithm_1_with_the_same_seed(one_thread):
    # few samples, so that the structure is not simply the truth and must match entry by entry
    data = make_task_sequences(300, 12, 4, state_dim=2, segment_length=2, random_state=3)
    model = tasks_specializer(3).set_params(specialists=False).fit(data.obs, data.tasks)
    reference = discover_structure(
        data.obs, data.tasks, segment_length=SEGMENT_LENGTH, random_state=3
    )
    np.testing.assert_array_equal(model.step_tasks_, reference.step_tasks)
    assert not np.array_equal(model.step_tasks_, data.step_assignment)


def assert_structure_rows(run, x: str, values: list, methods: set) -> None:
    """Rows of a quick structure study: every (setting, method), scores in range, Algorithm 1
    at F1 >= 0.9 and above CCA in precision."""
    assert sorted((row[x], row["method"]) for row in run.rows) == sorted(
        (v, m) for v in values for m in methods
    )
    for row in run.rows:
        assert row["n_samples"] == 2000 and row["seed"] == 0
        for metric in ("precision", "recall", "f1", "accuracy"):
            assert 0.0 <= row[metric] <= 1.0
        assert isinstance(row["exact"], bool) and row["exact"] == (row["f1"] == 1.0)
        assert row["seconds"] >= 0
    for value in values:
        scores = {row["method"]: row for row in run.rows if row[x] == value}
        assert scores["algorithm-1"]["f1"] >= 0.9
        # CCA assigns the chain neighbours of task steps as well (docs/baselines.md)
        assert scores["cca"]["precision"] < scores["algorithm-1"]["precision"]


STRUCTURE_METHOD_NAMES = {"algorithm-1", "algorithm-1-pairwise", "cca", "group-lasso"}
LATENT_COLUMNS = ("latent_r2", "latent_mcc", "latent_dims", "specialist_seconds")


def test_quick_structure_vs_steps_ranks_algorithm_1_above_cca(tmp_path, one_thread):
    run = run_experiment("structure-vs-steps", seeds=[0], quick=True, out=tmp_path)
    assert_structure_rows(run, "n_steps", [8, 12], STRUCTURE_METHOD_NAMES)
    assert not any(column in run.rows[0] for column in LATENT_COLUMNS)
    assert [p.name for p in run.plots] == ["f1_accuracy.png"]
    assert_valid_png(run.plots[0])


def test_quick_structure_vs_tasks_scores_the_latents_of_algorithm_1_only(tmp_path, one_thread):
    run = run_experiment("structure-vs-tasks", seeds=[0], quick=True, out=tmp_path)
    assert_structure_rows(run, "n_tasks", [2, 4], STRUCTURE_METHOD_NAMES)
    for row in run.rows:
        if row["method"] == "algorithm-1":
            assert 0.0 <= row["latent_r2"] <= 1.0 and 0.0 <= row["latent_mcc"] <= 1.0
            # each task reads at most the 2-dimensional states of the 12 steps
            assert 0.0 <= row["latent_dims"] <= 24 and row["specialist_seconds"] > 0
            data = make_task_sequences(
                2000, 12, row["n_tasks"], state_dim=2, segment_length=2, random_state=0
            )
            reference = algorithm_1(data, 0)
            assert {k: row[k] for k in reference} == reference
        else:
            assert all(row[column] is None for column in LATENT_COLUMNS)
    for line in summary_table(run.summary):
        has_latents = line["method"] == "algorithm-1"
        assert all((line[column] != "n/a") == has_latents for column in LATENT_COLUMNS)
    assert [p.name for p in run.plots] == ["f1_accuracy.png", "latents.png"]
    for path in run.plots:
        assert_valid_png(path)


def test_quick_latent_ablation_without_penalty_keeps_every_coordinate(tmp_path, one_thread):
    run = run_experiment("latent-ablation", seeds=[0], quick=True, out=tmp_path)
    assert sorted((row["method"], row["task"]) for row in run.rows) == [
        (method, task)
        for method in ("group-lasso", "l1-path", "sparse-vae", "vae")
        for task in (0, 1)
    ]
    for row in run.rows:
        assert (row["n_samples"], row["epochs"]) == (2000, 10)
        assert row["r2_relevant"] <= 1.0 and row["r2_irrelevant"] <= 1.0
        assert 0 <= row["n_selected"] <= 6 and row["true_size"] == 2
        assert row["n_selected"] == len(json.loads(row["dims"]))
        assert row["target_met"] == (
            row["n_selected"] == 2 and row["r2_relevant"] >= 0.9 and row["r2_irrelevant"] <= 0.2
        )
        if row["method"] == "vae":
            assert row["n_selected"] == 6 and row["sparsity_selected"] == 0.0
            assert not row["target_met"]
        elif row["method"] == "group-lasso":
            assert row["sparsity_selected"] is None
        elif row["method"] == "l1-path":
            assert row["sparsity_selected"] > 0  # a weight of the path
        else:
            assert row["sparsity_selected"] == 0.0  # the moment rule trains no penalty
    # the same selection of the same latent gets the same block R^2
    vae = {r["task"]: r for r in run.rows if r["method"] == "vae"}
    for row in run.rows:
        if row["method"] == "group-lasso" and row["dims"] == vae[row["task"]]["dims"]:
            assert row["r2_relevant"] == vae[row["task"]]["r2_relevant"]
    assert [p.name for p in run.plots] == ["r2.png"]
    assert_valid_png(run.plots[0])
    assert re.search(r"\| vae \| 0 \| .* \| 6 ± – \|", run.summary)


def test_quick_observed_vs_latent_ranks_latents_above_raw_observations(tmp_path, one_thread):
    run = run_experiment("observed-vs-latent", seeds=[0], quick=True, out=tmp_path)
    rows = {row["method"]: row for row in run.rows}
    assert set(rows) == {
        "algorithm-1-latent",
        "algorithm-1-observed",
        "cca-observed",
        "algorithm-1-states",
    }
    assert rows["algorithm-1-latent"]["n_active"] >= 2  # the states are 2-dimensional
    assert rows["algorithm-1-observed"]["n_active"] is None
    # at n = 1,000 the tests on 30-dim steps given 60-dim neighbours lose power; on the
    # learned latents they recover as much as on the true states
    assert rows["algorithm-1-latent"]["recall"] > rows["algorithm-1-observed"]["recall"]
    assert rows["algorithm-1-latent"]["f1"] >= rows["algorithm-1-states"]["f1"] - 0.1
    assert_valid_png(run.plots[0])


def test_parallel_runs_give_the_rows_of_sequential_ones(tmp_path, one_thread):
    def without_time(rows):
        rows = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
        return sorted(rows, key=lambda r: (r["n_steps"], r["seed"], r["method"]))

    sequential = run_experiment("structure-vs-steps", seeds=2, quick=True, out=tmp_path / "a")
    parallel = run_experiment(
        "structure-vs-steps", seeds=2, quick=True, out=tmp_path / "b", n_jobs=2
    )
    assert parallel.computed == 4
    assert without_time(parallel.rows) == without_time(sequential.rows)
    with pytest.raises(InvalidParameterError, match="n_jobs"):
        run_experiment("structure-vs-steps", seeds=2, quick=True, out=tmp_path / "b", n_jobs=0)


def test_reproduce_command_writes_the_folder_and_resumes(tmp_path):
    from typer.testing import CliRunner

    from specialize.cli import app

    args = ["reproduce", "structure-vs-tasks", "--quick", "--seeds", "1", "--out", str(tmp_path)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "4 runs computed" not in first.output and "2 runs computed, 0 reused" in first.output
    folder = tmp_path / "structure-vs-tasks"
    assert {p.name for p in folder.iterdir()} >= {"runs.csv", "summary.md", "manifest.json"}
    again = CliRunner().invoke(app, args)
    assert "0 runs computed, 2 reused" in again.output
    bad = CliRunner().invoke(app, ["reproduce", "no-such-study", "--quick", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "structure-vs-steps" in bad.output


def test_a_study_that_writes_files_gets_a_folder_of_its_own_per_run(tmp_path, monkeypatch):
    seen = []

    def run(setting, seed, quick, files):
        assert files.is_dir() and not any(files.iterdir())  # created for it, empty
        (files / "note.txt").write_text(f"{setting['label']} {seed}")
        seen.append(files)
        return fake_rows(setting, seed)

    experiment = Experiment(
        "fake-files",
        "",
        lambda quick: [{"size": 1, "label": "a b/c"}, {"size": 2, "label": "d"}],
        run,
        ("score",),
        fake_plot,
        writes_files=True,
    )
    monkeypatch.setitem(EXPERIMENTS, "fake-files", experiment)
    run_experiment("fake-files", seeds=2, out=tmp_path)
    folder = tmp_path / "fake-files"
    assert len(set(seen)) == 4  # one folder per (setting, seed), none shared
    for setting in ({"size": 1, "label": "a b/c"}, {"size": 2, "label": "d"}):
        for seed in (0, 1):
            path = run_files_folder(folder, setting, seed)
            assert path.parent == folder / "runs"  # unsafe characters of a label are replaced
            assert (path / "note.txt").read_text() == f"{setting['label']} {seed}"
