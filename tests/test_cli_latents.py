"""Layer 2 from the command line: fit-latents, transform and the demo's Layer-2 part."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from specialize.cli import app
from specialize.datasets import make_task_latents
from specialize.latent import SparseTaskVAE
from specialize.latent.report import load_latent_file, plot_task_mask, write_report
from specialize.metrics.latents import mcc, support_recovery

FAST = ["--epochs", "3", "--batch-size", "128", "--no-progress"]
REPORT_KEYS = {
    "data",
    "n_samples",
    "obs_dim",
    "n_tasks",
    "task_types",
    "latent_dim",
    "settings",
    "random_state",
    "sparsity",
    "task_mask",
    "relevant_dims",
    "sparsity_path",
    "validation",
    "seconds",
}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, message):
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("latents")


@pytest.fixture(scope="module")
def truth_file(folder):
    path = folder / "truth.npz"
    make_task_latents(500, obs_dim=8, random_state=0).save(path)
    return path


@pytest.fixture(scope="module")
def labels_file(folder):
    """Observations and partly missing labels, no truth."""
    data = make_task_latents(500, obs_dim=8, random_state=1)
    tasks = data.tasks.copy()
    tasks[::7, 0] = np.nan
    tasks[::5, 1] = np.nan
    path = folder / "labels.npz"
    np.savez(path, obs=data.obs, tasks=tasks)
    return path


@pytest.fixture(scope="module")
def fitted(folder, truth_file):
    model_dir = folder / "model"
    result = invoke(
        "fit-latents", truth_file, "--out", model_dir, "--latent-dim", "5", "--sparsity", "0.1",
        *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return model_dir, result


def read_report(model_dir):
    return json.loads((model_dir / "report.json").read_text())


def test_fit_latents_writes_model_report_and_mask(fitted, truth_file):
    model_dir, result = fitted
    report = read_report(model_dir)
    assert REPORT_KEYS <= set(report)
    model = SparseTaskVAE.load(model_dir)
    assert report["relevant_dims"] == [d.tolist() for d in model.relevant_dims_]
    np.testing.assert_allclose(report["task_mask"], model.task_mask_)
    assert (report["n_samples"], report["obs_dim"], report["n_tasks"]) == (500, 8, 2)
    assert report["latent_dim"] == 5 and report["data"] == truth_file.name
    assert report["settings"]["epochs"] == 3 and report["settings"]["sparsity"] == 0.1
    assert report["sparsity"] == 0.1 and report["random_state"] == 0
    assert report["task_types"] == ["regression", "regression"]
    selected = report["validation"]["selected"]
    assert selected["stage"] == "refit" and len(selected["tasks"]) == 2
    assert report["validation"]["n_epochs"] == len(model.history_)
    assert (model_dir / "mask.png").read_bytes()[:8] == PNG
    assert "R2 relevant" in result.stdout and "selected dims" in result.stdout


def test_report_metrics_are_those_of_the_saved_model_and_the_true_groups(fitted, truth_file):
    model_dir, _ = fitted
    metrics = read_report(model_dir)["metrics"]
    truth = make_task_latents(500, obs_dim=8, random_state=0)
    model = SparseTaskVAE.load(model_dir)
    z = model.transform(truth.obs)
    matched = mcc(z, truth.latents)
    assert metrics["groups"] == [g.tolist() for g in truth.groups]
    assert metrics["irrelevant"] == truth.irrelevant.tolist()
    assert metrics["mcc"]["score"] == pytest.approx(matched.score)
    assert metrics["mcc"]["matching"] == matched.matching.tolist()
    assert metrics["support_recovery"] == support_recovery(
        model.relevant_dims_, truth.groups, matched.matching
    )
    assert [s["dims"] for s in metrics["block_r2"]] == read_report(model_dir)["relevant_dims"]
    for s in metrics["block_r2"]:
        assert -1.0 < s["r2_relevant"] <= 1.0 and -1.0 < s["r2_irrelevant"] <= 1.0


def test_no_truth_no_metrics_and_missing_labels_pass_through(folder, labels_file):
    model_dir = folder / "labels-model"
    result = invoke("fit-latents", labels_file, "--out", model_dir, "--sparsity", "0", *FAST)
    assert result.exit_code == 0, result.output
    report = read_report(model_dir)
    assert "metrics" not in report and "R2" not in result.stdout
    assert report["n_labelled"] == [500 - len(range(0, 500, 7)), 500 - len(range(0, 500, 5))]
    assert report["latent_dim"] == SparseTaskVAE().latent_dim  # the estimator's default
    assert report["sparsity"] == 0.0 and report["sparsity_path"] == []
    assert report["validation"]["selected"]["stage"] == "warm-up"


def test_auto_sparsity_reports_the_path_and_the_selected_losses(folder, labels_file):
    model_dir = folder / "auto-model"
    args = ["--out", model_dir, "--latent-dim", "4", "--epochs", "2", "--no-progress"]
    args += ["--selection", "path"]
    result = invoke("fit-latents", labels_file, *args)
    assert result.exit_code == 0, result.output
    report = read_report(model_dir)
    path = report["sparsity_path"]
    assert [entry["sparsity"] for entry in path] == [0.0, 0.01, 0.03, 0.1, 0.3]
    chosen = [entry for entry in path if entry["selected"]]
    assert len(chosen) == 1 and chosen[0]["sparsity"] == report["sparsity"]
    assert report["validation"]["selected"]["tasks"] == chosen[0]["valid_task_losses"]
    assert report["settings"]["sparsity"] == "auto" and "chosen along the path" in result.stdout


def test_checkpoint_is_written_and_a_rerun_gives_the_same_model(folder, labels_file):
    checkpoint = folder / "fit.ckpt"
    reports = []
    for name in ("first", "again"):
        args = ["--out", folder / name, "--sparsity", "0", "--checkpoint", checkpoint, *FAST]
        result = invoke("fit-latents", labels_file, *args)
        assert result.exit_code == 0, result.output
        assert checkpoint.exists()
        reports.append(read_report(folder / name))
    assert reports[1]["task_mask"] == reports[0]["task_mask"]
    assert reports[1]["validation"] == reports[0]["validation"]


def test_the_files_task_types_override_inference(tmp_path):
    data = make_task_latents(300, obs_dim=8, task_type="classification", random_state=2)
    path = tmp_path / "classes.npz"
    np.savez(path, obs=data.obs, tasks=data.tasks, task_types=np.array(["regression"] * 2))
    result = invoke("fit-latents", path, "--out", tmp_path / "m", "--sparsity", "0", *FAST)
    assert result.exit_code == 0, result.output
    # integer labels 0, 1, 2 would be inferred as classes; the file says regression
    assert read_report(tmp_path / "m")["task_types"] == ["regression", "regression"]


@pytest.mark.parametrize("task", [0, 1])
def test_transform_writes_a_tasks_specialist_latent(fitted, truth_file, tmp_path, task):
    model_dir, _ = fitted
    out = tmp_path / "z.npy"
    result = invoke("transform", model_dir, truth_file, "--task", task, "--out", out)
    assert result.exit_code == 0, result.output
    model = SparseTaskVAE.load(model_dir)
    obs = np.load(truth_file)["obs"]
    z = np.load(out)
    assert z.shape == (500, len(model.relevant_dims_[task]))
    np.testing.assert_allclose(z, model.transform_task(obs, task), rtol=0, atol=1e-12)


def test_transform_without_task_writes_all_posterior_means(fitted, truth_file, tmp_path):
    model_dir, _ = fitted
    out = tmp_path / "z-all.npy"
    result = invoke("transform", model_dir, truth_file, "--out", out)
    assert result.exit_code == 0, result.output
    z = np.load(out)
    assert z.shape == (500, 5)
    model = SparseTaskVAE.load(model_dir)
    np.testing.assert_allclose(z, model.transform(np.load(truth_file)["obs"]), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["fit-latents", "{only_tasks}", "--out", "{tmp}/m"], "has no key 'obs'"),
        (["fit-latents", "{only_obs}", "--out", "{tmp}/m"], "has no key 'tasks'"),
        (["fit-latents", "{nan_obs}", "--out", "{tmp}/m"], "'obs' in"),
        (["fit-latents", "{truth}", "--out", "{tmp}/m", "--sparsity", "some"], "--sparsity"),
        (["fit-latents", "{tmp}/none.npz", "--out", "{tmp}/m"], "no such file"),
        (["fit-latents", "{truth}", "--out", "{truth}"], "is a file"),
        (["fit-latents", "{truth}", "--out", "{tmp}/m", "--latent-dim", "1"], "latent_dim=1"),
        (["transform", "{model}", "{truth}", "--task", "2", "--out", "{tmp}/z.npy"], "2 tasks"),
        (["transform", "{model}", "{truth}", "--task", "-1", "--out", "{tmp}/z.npy"], "2 tasks"),
        (["transform", "{model}", "{narrow}", "--out", "{tmp}/z.npy"], "3 columns"),
        (["transform", "{model}", "{nan_obs}", "--out", "{tmp}/z.npy"], "contains NaN"),
        (["transform", "{model}", "{only_tasks}", "--out", "{tmp}/z.npy"], "has no key 'obs'"),
        (["transform", "{tmp}", "{truth}", "--out", "{tmp}/z.npy"], "no config.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(fitted, truth_file, tmp_path, command, message):
    obs = np.random.default_rng(0).normal(size=(50, 8))
    tasks = np.random.default_rng(1).normal(size=(50, 2))
    nan_obs = obs.copy()
    nan_obs[3, 1] = np.nan
    files = {
        "only_tasks": dict(tasks=tasks),
        "only_obs": dict(obs=obs),
        "nan_obs": dict(obs=nan_obs, tasks=tasks),
        "narrow": dict(obs=obs[:, :3]),
    }
    names = {"truth": truth_file, "model": fitted[0], "tmp": tmp_path}
    for name, arrays in files.items():
        names[name] = tmp_path / f"{name}.npz"
        np.savez(names[name], **arrays)
    result = invoke(*[part.format(**names) for part in command])
    assert_one_line_error(result, message)
    if "{nan_obs}" in command:
        assert "(3, 1)" in result.stderr  # the first bad index


def test_a_file_without_irrelevant_takes_the_coordinates_in_no_group(tmp_path):
    data = make_task_latents(50, group_sizes=(2, 1), n_irrelevant=3, obs_dim=8, random_state=0)
    path = tmp_path / "d.npz"
    np.savez(path, obs=data.obs, tasks=data.tasks, latents=data.latents, groups=data.group_mask)
    f = load_latent_file(path)
    assert [g.tolist() for g in f.groups] == [[0, 1], [2]]
    assert f.irrelevant.tolist() == [3, 4, 5]
    assert load_latent_file(path, with_tasks=False).tasks is None


def test_report_json_is_strict_and_the_mask_plot_checks_its_supports(tmp_path):
    write_report({"r2": float("nan"), "dims": np.arange(2)}, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {"r2": None, "dims": [0, 1]}
    with pytest.raises(ValueError, match="supports\\[1\\] holds dim 4"):
        plot_task_mask(np.ones((2, 4)), [[0], [4]])
    with pytest.raises(ValueError, match="supports has 1 entries but mask has 2 tasks"):
        plot_task_mask(np.ones((2, 4)), [[0]])


def test_demo_without_latents_skips_layer_2(tmp_path):
    out = tmp_path / "demo"
    result = invoke("demo", "--out", out, "--n-samples", "2000", "--no-latents")
    assert result.exit_code == 0, result.output
    assert (out / "structure.png").exists() and "Layer 2" not in result.stdout
    assert not (out / "latent-mask.png").exists() and not (out / "latents.json").exists()


def test_demo_with_latents_writes_the_mask_and_the_report(tmp_path):
    out = tmp_path / "demo"
    result = invoke("demo", "--out", out, "--n-samples", "2000", "--latent-samples", "500")
    assert result.exit_code == 0, result.output
    assert "Layer 2" in result.stdout and "R2 relevant" in result.stdout
    assert (out / "latent-mask.png").read_bytes()[:8] == PNG
    report = json.loads((out / "latents.json").read_text())
    assert report["n_samples"] == 500 and report["latent_dim"] == 6
    assert report["settings"]["sparsity"] == "auto" and len(report["metrics"]["block_r2"]) == 2
