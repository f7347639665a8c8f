"""Executors, checkpoints and fault tolerance: every way of running a plan gives one answer."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from specialize import discover_structure, make_task_sequences
from specialize._validation import InvalidParameterError
from specialize.ci import CIResult, CITest, FisherZ
from specialize.ci._random import generator_for, resolve_entropy, test_key
from specialize.ci.checkpoint import Checkpoint
from specialize.ci.execute import ExecutorError, answer_plan
from specialize.structure.discover import sequence_ci_data
from specialize.structure.plan import plan_tests

distributed = pytest.importorskip("distributed")


class PermutationCorrelation(CITest):
    """A small randomised test: permutation p-value of the correlation of residuals.

    Its permutations come from the per-test seed convention, so that it checks that executors
    keep randomised answers identical.
    """

    name = "permutation-correlation"

    def __init__(self, n_permutations: int = 49, random_state=None):
        self.n_permutations = n_permutations
        self.random_state = random_state
        self._entropy = resolve_entropy(random_state)

    def run(self, data, plan):
        out = CIResult.empty(len(plan))
        for k, (x, y, z) in enumerate(zip(plan.x, plan.y, plan.z, strict=True)):
            xs, ys = data.gather(data.columns(x))[:, 0], data.gather(data.columns(y))[:, 0]
            if z:
                zs = np.column_stack([np.ones(data.n_samples), data.gather(data.columns(z))])
                xs = xs - zs @ np.linalg.lstsq(zs, xs, rcond=None)[0]
                ys = ys - zs @ np.linalg.lstsq(zs, ys, rcond=None)[0]
            rng = generator_for(self._entropy, 99, *test_key(x, y, z))
            stat = abs(xs @ ys)
            null = [abs(xs[rng.permutation(len(xs))] @ ys) for _ in range(self.n_permutations)]
            out.statistic[k] = stat
            out.pvalue[k] = (1 + sum(s >= stat for s in null)) / (1 + self.n_permutations)
            out.n_samples[k] = data.n_samples
        return out


class FisherZWithSabotage(FisherZ):
    """Fisher-z whose answering can be made to fail once.

    ``kill_marker``: the worker answering test 0 kills itself, unless that file exists (it
    creates it first, so exactly one worker dies). An interruption is configured from the
    environment instead of the parameters, so an interrupted run and a clean one share a
    checkpoint fingerprint.
    """

    name = "fisherz-sabotage"

    def __init__(self, kill_marker=None):
        super().__init__()
        self.kill_marker = kill_marker

    def prepare(self, data):
        answer = super().prepare(data)
        marker = self.kill_marker

        def sabotaged(plan):
            if marker and not Path(marker).exists() and len(plan) and 0 in plan.index:
                Path(marker).touch()
                os.kill(os.getpid(), signal.SIGKILL)  # this worker dies mid-batch
            log = os.environ.get("SPECIALIZE_TEST_ANSWER_LOG")
            if log:
                answered = Path(log).read_text().count("\n") if Path(log).exists() else 0
                limit = int(os.environ.get("SPECIALIZE_TEST_INTERRUPT_AFTER", "-1"))
                if answered >= limit >= 0:
                    raise KeyboardInterrupt
                with open(log, "a") as fh:
                    fh.writelines(f"{i}\n" for i in plan.index)
            return answer(plan)

        return sabotaged


@pytest.fixture(scope="module")
def sequences():
    return make_task_sequences(600, 12, 3, state_dim=2, random_state=4)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def _plan_and_data(sequences, mode="unary", conditioning="band"):
    T, M = sequences.obs.shape[1], sequences.tasks.shape[1]
    plan = plan_tests(mode, T, 2, M, conditioning).plan
    return plan, sequence_ci_data(sequences.obs, sequences.tasks[:, :, None])


def _assert_same(a: CIResult, b: CIResult):
    """Bit-identical answers (Fisher-z's shared-precision path may round differently when
    batches group tests differently, so compare runs with the same batch size)."""
    np.testing.assert_array_equal(a.pvalue, b.pvalue)
    np.testing.assert_array_equal(a.statistic, b.statistic)
    np.testing.assert_array_equal(a.n_samples, b.n_samples)


@pytest.mark.parametrize("make_test", [FisherZ, lambda: PermutationCorrelation(random_state=3)])
def test_every_executor_and_batch_size_gives_the_same_answers(make_test, sequences, client):
    plan, data = _plan_and_data(sequences)
    reference, _ = answer_plan(make_test(), data, plan)
    assert np.isfinite(reference.pvalue).all()
    for kwargs in (
        {"batch_size": 1},
        {"batch_size": 7},
        {"executor": "processes", "n_jobs": 2, "batch_size": 5},
        {"executor": client, "batch_size": 4},
    ):
        result, _ = answer_plan(make_test(), data, plan, **kwargs)
        _assert_same(reference, result)


@pytest.mark.parametrize(
    "name, params",
    [
        ("rcit", {"random_state": 5}),
        ("cmiknn", {"random_state": 5, "sig_samples": 19}),
        ("kci", {"approximation": "low-rank"}),
    ],
)
def test_nonlinear_tests_answer_alike_on_a_local_cluster(name, params, client):
    """The library's randomised tests, seeded, give bit-identical p-values in-process, in
    worker processes and on a LocalCluster, with the default and with small batches; the
    deterministic KCI gives the same p-values to rounding."""
    ds = make_task_sequences(300, 6, 2, state_dim=2, mechanism="nonlinear", random_state=1)
    common = {"test": name, "test_params": params, "mode": "segment", "correction": None}
    reference = discover_structure(ds.states, ds.tasks, **common)
    assert np.isfinite(reference.tests["pvalue"]).all()
    for kwargs in ({"executor": client}, {"n_jobs": 2, "batch_size": 3}):
        other = discover_structure(ds.states, ds.tasks, **common, **kwargs)
        # the same seeds draw the same features and permutations; BLAS threads per worker
        # and batch shapes change rounding only
        np.testing.assert_allclose(
            reference.tests["pvalue"], other.tests["pvalue"], rtol=1e-9, atol=1e-12
        )
        np.testing.assert_array_equal(reference.segment_tasks, other.segment_tasks)


def test_seeds_change_randomised_answers(sequences):
    plan, data = _plan_and_data(sequences)
    a, _ = answer_plan(PermutationCorrelation(random_state=1), data, plan)
    b, _ = answer_plan(PermutationCorrelation(random_state=2), data, plan)
    assert not np.array_equal(a.pvalue, b.pvalue)


def test_discover_structure_on_dask_equals_in_process(sequences, client):
    kwargs = {"mode": "pairwise", "correction": None}
    local = discover_structure(sequences.obs, sequences.tasks, **kwargs)
    remote = discover_structure(sequences.obs, sequences.tasks, executor=client, **kwargs)
    np.testing.assert_allclose(local.tests["pvalue"], remote.tests["pvalue"], rtol=1e-10)
    np.testing.assert_array_equal(local.segment_tasks, remote.segment_tasks)


def test_a_dask_worker_killed_mid_run_loses_nothing(sequences, client, tmp_path):
    plan, data = _plan_and_data(sequences, mode="step", conditioning="all")
    reference, _ = answer_plan(FisherZ(), data, plan, batch_size=3)
    marker = tmp_path / "killed"
    workers_before = set(client.run(os.getpid).values())
    result, _ = answer_plan(
        FisherZWithSabotage(str(marker)), data, plan, executor=client, batch_size=3
    )
    assert marker.exists(), "no worker was killed: the test did not test recovery"
    _assert_same(reference, result)
    client.wait_for_workers(2, timeout=60)
    assert set(client.run(os.getpid).values()) != workers_before  # a worker was replaced


def test_a_pool_worker_killed_mid_run_loses_nothing(sequences, tmp_path):
    plan, data = _plan_and_data(sequences)
    reference, _ = answer_plan(FisherZ(), data, plan, batch_size=3)
    marker = tmp_path / "killed"
    result, _ = answer_plan(
        FisherZWithSabotage(str(marker)), data, plan, executor="processes", n_jobs=2, batch_size=3
    )
    assert marker.exists()
    _assert_same(reference, result)


def test_an_interrupted_run_resumes_from_its_checkpoint(sequences, tmp_path, monkeypatch):
    plan, data = _plan_and_data(sequences, mode="step", conditioning="all")
    reference, _ = answer_plan(FisherZ(), data, plan, batch_size=5)
    path, log = tmp_path / "run.ckpt", tmp_path / "answered.log"
    monkeypatch.setenv("SPECIALIZE_TEST_ANSWER_LOG", str(log))
    monkeypatch.setenv("SPECIALIZE_TEST_INTERRUPT_AFTER", "20")
    with pytest.raises(KeyboardInterrupt):
        answer_plan(FisherZWithSabotage(), data, plan, batch_size=5, checkpoint=path)
    first = [int(i) for i in log.read_text().split()]
    assert len(first) == 20 < len(plan)

    monkeypatch.setenv("SPECIALIZE_TEST_INTERRUPT_AFTER", "-1")
    log.unlink()
    result, _ = answer_plan(FisherZWithSabotage(), data, plan, batch_size=5, checkpoint=path)
    second = [int(i) for i in log.read_text().split()]
    assert sorted(first + second) == list(range(len(plan)))  # nothing answered twice
    _assert_same(reference, result)

    log.unlink()
    again, _ = answer_plan(FisherZWithSabotage(), data, plan, batch_size=5, checkpoint=path)
    assert not log.exists()  # a finished checkpoint answers everything
    _assert_same(reference, again)


def test_a_torn_checkpoint_line_is_recomputed(sequences, tmp_path):
    plan, data = _plan_and_data(sequences)
    path = tmp_path / "run.ckpt"
    reference, _ = answer_plan(FisherZ(), data, plan, batch_size=4, checkpoint=path)
    lines = path.read_text().split("\n")
    path.write_text("\n".join(lines[:-1] + [lines[-1][: len(lines[-1]) // 2]]))
    store = Checkpoint(path, json.loads(lines[0])["fingerprint"], len(plan))
    done, _ = store.load()
    assert len(done) == len(plan) - len(json.loads(lines[-1])["positions"])
    result, _ = answer_plan(FisherZ(), data, plan, batch_size=4, checkpoint=path)
    _assert_same(reference, result)


def test_a_checkpoint_of_another_run_is_refused(sequences, tmp_path):
    plan, data = _plan_and_data(sequences)
    path = tmp_path / "run.ckpt"
    answer_plan(FisherZ(), data, plan, checkpoint=path)
    other = sequence_ci_data(sequences.obs[:500], sequences.tasks[:500, :, None])
    with pytest.raises(InvalidParameterError, match="different run"):
        answer_plan(FisherZ(), other, plan, checkpoint=path)
    with pytest.raises(InvalidParameterError, match="different run"):
        answer_plan(PermutationCorrelation(random_state=0), data, plan, checkpoint=path)
    path.write_text("not a checkpoint")
    with pytest.raises(InvalidParameterError, match="not a specialize checkpoint"):
        answer_plan(FisherZ(), data, plan, checkpoint=path)


def test_discover_structure_checkpoint_round_trip(sequences, tmp_path):
    path = tmp_path / "structure.ckpt"
    first = discover_structure(sequences.obs, sequences.tasks, checkpoint=path)
    again = discover_structure(sequences.obs, sequences.tasks, checkpoint=path)
    np.testing.assert_array_equal(first.tests["pvalue"], again.tests["pvalue"])
    with pytest.raises(InvalidParameterError, match="different run"):
        discover_structure(sequences.obs, sequences.tasks, checkpoint=path, mode="unary")


def test_checkpoint_of_a_randomised_test_needs_a_seed(sequences, tmp_path):
    plan, data = _plan_and_data(sequences)
    with pytest.raises(InvalidParameterError, match="random_state"):
        answer_plan(PermutationCorrelation(), data, plan, checkpoint=tmp_path / "c")


def test_unreachable_scheduler_fails_fast(sequences):
    started = time.perf_counter()
    with pytest.raises(ExecutorError, match="cannot reach the Dask scheduler"):
        discover_structure(sequences.obs, sequences.tasks, executor="tcp://127.0.0.1:9")
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"executor": "threads"}, "executor must be"),
        ({"n_jobs": 0}, "n_jobs"),
        ({"n_jobs": -2}, "n_jobs"),
        ({"executor": 3.5}, "executor must be"),
    ],
)
def test_bad_executor_arguments(sequences, kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        discover_structure(sequences.obs, sequences.tasks, **kwargs)


def test_random_state_is_recorded_and_reproduces(sequences):
    from specialize.ci import registry

    registry.register_ci_test(PermutationCorrelation)
    try:
        a = discover_structure(sequences.obs, sequences.tasks, test=PermutationCorrelation.name)
        assert isinstance(a.random_state, int)  # drawn and recorded
        b = discover_structure(
            sequences.obs,
            sequences.tasks,
            test=PermutationCorrelation.name,
            random_state=a.random_state,
        )
        np.testing.assert_array_equal(a.tests["pvalue"], b.tests["pvalue"])
        with pytest.raises(InvalidParameterError, match="contradicts"):
            discover_structure(
                sequences.obs,
                sequences.tasks,
                test=PermutationCorrelation(random_state=1),
                random_state=2,
            )
    finally:
        registry._REGISTRY.pop(PermutationCorrelation.name)
