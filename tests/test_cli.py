"""The command line, driven as a user would: through the installed console command."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest


def run(*args, cwd=None):
    exe = shutil.which("specialize")
    command = [exe] if exe else [sys.executable, "-m", "specialize.cli"]
    return subprocess.run(
        command + list(args), capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "data.npz"
    done = run(
        "simulate",
        "--out",
        str(path),
        "--n-samples",
        "5000",
        "--state-dim",
        "2",
        "--random-state",
        "1",
    )
    assert done.returncode == 0, done.stderr
    return path


def test_simulate_writes_the_documented_keys(data_file):
    with np.load(data_file) as f:
        assert {"obs", "tasks", "step_assignment", "segment_assignment"} <= set(f.files)
        assert f["obs"].shape == (5000, 20, 2) and f["tasks"].shape == (5000, 4)


def test_discover_writes_json_with_scores_and_a_plot(data_file, tmp_path):
    out, plot = tmp_path / "r.json", tmp_path / "s.png"
    done = run("discover", str(data_file), "--out", str(out), "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    assert "F1" in done.stdout
    result = json.loads(out.read_text())
    for key in (
        "segment_tasks",
        "step_tasks",
        "segment_length",
        "test",
        "alpha",
        "mode",
        "n_tests",
        "seconds",
        "scores",
    ):
        assert key in result
    assert len(result["segment_tasks"]) == 10 and len(result["segment_tasks"][0]) == 4
    assert len(result["step_tasks"]) == 20
    assert set(np.ravel(result["segment_tasks"])) <= {0, 1}
    assert result["scores"]["segment"]["f1"] >= 0.9
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_discover_options(data_file, tmp_path):
    out = tmp_path / "p.json"
    done = run(
        "discover",
        str(data_file),
        "--mode",
        "pairwise",
        "--correction",
        "none",
        "--alpha",
        "0.01",
        "--segment-length",
        "4",
        "--test",
        "fisherz",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert (result["mode"], result["alpha"], result["segment_length"]) == ("pairwise", 0.01, 4)
    assert result["correction"] is None and result["n_tests"] == 4 * 5 * 4 // 2
    assert "segment" not in result.get("scores", {})  # the file's truth has 10 segments, not 5


def test_discover_in_worker_processes_with_a_checkpoint(data_file, tmp_path):
    """The same answers in two worker processes, and a rerun resumes from the checkpoint."""
    plain, parallel = tmp_path / "plain.json", tmp_path / "parallel.json"
    checkpoint = tmp_path / "run.ckpt"
    assert run("discover", str(data_file), "--out", str(plain)).returncode == 0
    for _ in range(2):
        done = run(
            "discover", str(data_file), "--n-jobs", "2", "--checkpoint", str(checkpoint),
            "--out", str(parallel), "--test-param", "chunk_rows=1000",
        )
        assert done.returncode == 0, done.stderr
    a, b = json.loads(plain.read_text()), json.loads(parallel.read_text())
    assert a["segment_tasks"] == b["segment_tasks"]
    np.testing.assert_allclose(a["tests"]["pvalue"], b["tests"]["pvalue"], rtol=1e-10)
    assert b["test_params"] == {"chunk_rows": 1000}
    assert checkpoint.read_text().startswith('{"format": "specialize-ci-checkpoint"')


@pytest.mark.parametrize(
    "args,message",
    [
        (["discover", "missing.npz"], "no such file"),
        (["discover", "{data}", "--mode", "banded"], "mode must be one of"),
        (["discover", "{data}", "--segment-length", "1"], "segment_length must be >= 2, got 1"),
        (["discover", "{data}", "--test", "nope"], "test must be one of"),
        (["discover", "{data}", "--test", "dseparation"], "pass a test instance"),
        (["discover", "{data}", "--alpha", "2"], "alpha must be < 1.0"),
        (["discover", "{bad}"], "has no key 'tasks'"),
        (["discover", "{data}", "--test-param", "chunk_rows"], "KEY=VALUE"),
        (["discover", "{data}", "--test-param", "nope=1"], "cannot be built from parameters"),
        (["discover", "{data}", "--executor", "threads"], "executor must be"),
        (["discover", "{data}", "--executor", "tcp://127.0.0.1:9"], "cannot reach the Dask"),
        (
            ["simulate", "--out", "{tmp}/x.npz", "--segment-length", "0"],
            "segment_length must be >= 2",
        ),
    ],
)
def test_errors_are_one_line_and_exit_2(data_file, tmp_path, args, message):
    bad = tmp_path / "bad.npz"
    np.savez(bad, obs=np.zeros((3, 4, 1)))
    args = [a.format(data=data_file, bad=bad, tmp=tmp_path) for a in args]
    done = run(*args, cwd=tmp_path)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["simulate", "discover", "demo"])
def test_help_documents_every_option(command):
    done = run(command, "--help")
    assert done.returncode == 0
    assert "default" in done.stdout.lower() or "[default" in done.stdout


def test_demo_runs_and_writes_its_outputs(tmp_path):
    done = run("demo", "--out", str(tmp_path / "demo"), "--n-samples", "3000", "--no-latents")
    assert done.returncode == 0, done.stderr
    assert "recovered | truth" in done.stdout and "F1" in done.stdout
    assert (tmp_path / "demo" / "structure.png").exists()
    assert json.loads((tmp_path / "demo" / "structure.json").read_text())["mode"] == "segment"
