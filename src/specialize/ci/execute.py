"""Answer a test plan in batches: in this process, in a process pool, or on a Dask cluster.

Every executor sends the data to a worker once (never per test or per batch): a process pool
passes it to each worker when the worker starts, Dask scatters it to every worker once. A
worker then calls the test's ``prepare`` once and answers batch after batch. Randomised tests
derive their seeds from each test's identity (see ``_random.py``), so every executor and
every batch size give the same answers for the same seed.

Workers that die are replaced and their batches answered again: a process pool is restarted
(up to ``MAX_RESTARTS`` times); Dask reschedules lost batches itself, and batches it gives up
on are resubmitted here with the data scattered anew.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

import numpy as np

from .._validation import InvalidParameterError, check_float, check_int
from .base import CIData, CIResult, CITest, TestPlan
from .checkpoint import Checkpoint, run_fingerprint

#: Executors named by a string; a ``distributed.Client`` or a scheduler address also work.
EXECUTORS = ("processes", "dask")
#: Times a broken process pool, or a batch Dask gave up on, is retried before the run fails.
MAX_RESTARTS = 3
#: Seconds to wait for a Dask scheduler given by address.
CONNECT_TIMEOUT = 5.0
#: Batches per worker when the plan is spread over workers (load balance vs overhead).
BATCHES_PER_WORKER = 4


class ExecutorError(RuntimeError):
    """The executor could not run the plan (unreachable scheduler, workers that keep dying)."""


def answer_plan(
    ci_test: CITest,
    data: CIData,
    plan: TestPlan,
    *,
    batch_size: int = 16_384,
    n_jobs: int = 1,
    executor=None,
    progress: bool = False,
    checkpoint=None,
    fingerprint: str | None = None,
    label: str = "CI tests",
) -> tuple[CIResult, dict]:
    """Answer every test of ``plan``; returns the result and timings in seconds.

    Parameters
    ----------
    ci_test, data, plan
        The test, the data it reads and the tests to answer.
    batch_size : int
        Most tests per batch. With several workers, batches are made smaller so that each
        worker gets about ``BATCHES_PER_WORKER`` of them.
    n_jobs : int
        Worker processes for ``executor="processes"`` or ``"dask"`` (a local cluster); -1 uses
        every core. ``n_jobs > 1`` with no executor means ``"processes"``.
    executor : None, "processes", "dask", a scheduler address or a ``distributed.Client``
        None answers in this process. ``"dask"`` starts a local Dask cluster of ``n_jobs``
        workers for this run; an address (``"tcp://host:8786"``) or a Client uses that cluster.
    progress : bool
        Show a progress bar of tests done and to do (when writing to a terminal).
    checkpoint : str or Path, optional
        File that keeps finished tests; a run pointed at the file of an interrupted run with
        the same inputs answers only the tests not yet in it.
    fingerprint : str, optional
        Identity of the run for the checkpoint; default :func:`run_fingerprint`.
    label : str
        Description on the progress bar.

    Returns
    -------
    result : CIResult
    timings : dict
        ``prepare`` (shared work in this process; 0 when workers do it) and ``tests``.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    kind, n_workers = _resolve_executor(executor, n_jobs)
    started = time.perf_counter()

    result = CIResult.empty(len(plan))
    store = None
    pending = np.arange(len(plan))
    if checkpoint is not None:
        if "random_state" in ci_test.get_params() and ci_test.get_params()["random_state"] is None:
            raise InvalidParameterError(
                f"checkpoint needs a fixed random_state for the randomised test "
                f"{ci_test.name!r}, so that a resumed run answers the same tests"
            )
        fingerprint = fingerprint or run_fingerprint(ci_test, data, plan)
        store = Checkpoint(checkpoint, fingerprint, len(plan))
        done, result = store.load()
        pending = np.setdiff1d(pending, done)

    size = batch_size
    if n_workers > 1:
        size = min(batch_size, max(1, math.ceil(len(pending) / (BATCHES_PER_WORKER * n_workers))))
    batches = [pending[i : i + size] for i in range(0, len(pending), size)]

    def record(positions, answered):
        result.fill(positions, answered)
        if store is not None:
            store.append(positions, answered)

    timings = {"prepare": 0.0}
    with _progress_bar(progress, label, len(plan), len(plan) - len(pending)) as advance:
        if kind == "inline":
            answer = ci_test.prepare(data)
            timings["prepare"] = time.perf_counter() - started
            for positions in batches:
                record(positions, answer(plan.subset(positions)))
                advance(len(positions))
        elif kind == "processes":
            _run_process_pool(ci_test, data, plan, batches, n_workers, record, advance)
        else:
            _run_dask(executor, n_workers, ci_test, data, plan, batches, record, advance)
    timings["tests"] = time.perf_counter() - started - timings["prepare"]
    return result, timings


def _resolve_executor(executor, n_jobs) -> tuple[str, int]:
    """("inline" | "processes" | "dask", number of local workers)."""
    n_jobs = check_int("n_jobs", n_jobs, minimum=-1)
    if n_jobs == 0:
        raise InvalidParameterError("n_jobs must be a positive number of workers or -1; got 0")
    n_workers = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs
    if executor is None:
        return ("processes", n_workers) if n_workers > 1 else ("inline", 1)
    if executor == "processes":
        return "processes", n_workers
    if isinstance(executor, str) and executor != "dask" and "://" not in executor:
        if ":" not in executor:
            raise InvalidParameterError(
                f"executor must be None, 'processes', 'dask', a Dask scheduler address such as "
                f"'tcp://host:8786' or a distributed.Client; got {executor!r}"
            )
    return "dask", n_workers


# --- process pool ---------------------------------------------------------------------------

_WORKER_STATE: dict = {}


def _start_worker(ci_test: CITest, data: CIData, threads: int) -> None:
    _WORKER_STATE.clear()
    _WORKER_STATE.update(ci_test=ci_test, data=data)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _answer_in_worker(plan: TestPlan) -> CIResult:
    if "answer" not in _WORKER_STATE:
        _WORKER_STATE["answer"] = _WORKER_STATE["ci_test"].prepare(_WORKER_STATE["data"])
    return _WORKER_STATE["answer"](plan)


@contextmanager
def _thread_limits(threads: int):
    """Limit BLAS and OpenMP threads in worker processes started inside the block."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: str(threads) for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_process_pool(ci_test, data, plan, batches, n_workers, record, advance) -> None:
    """Answer ``batches`` on a pool of spawned processes, restarting it if a worker dies."""
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // n_workers)
    todo = list(range(len(batches)))
    for attempt in range(MAX_RESTARTS + 1):
        pool = ProcessPoolExecutor(
            max_workers=min(n_workers, max(1, len(todo))),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(ci_test, data, threads),
        )
        broken = False
        try:
            with _thread_limits(threads):  # spawned workers read it when the first job starts them
                futures = {pool.submit(_answer_in_worker, plan.subset(batches[b])): b for b in todo}
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in finished:
                    b = futures.pop(future)
                    record(batches[b], future.result())
                    advance(len(batches[b]))
                    todo.remove(b)
        except BrokenProcessPool:
            broken = True
            if attempt == MAX_RESTARTS:
                raise ExecutorError(
                    f"worker processes died {MAX_RESTARTS + 1} times; {len(todo)} batches "
                    "unanswered (out of memory?)"
                ) from None
            continue
        finally:
            if broken:  # waiting on a broken pool can hang: end its workers instead
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    process.kill()
                pool.shutdown(wait=False, cancel_futures=True)
            else:
                pool.shutdown(wait=True, cancel_futures=True)
        return


# --- Dask -------------------------------------------------------------------------------------

_DASK_PREPARED: dict = {}
_DASK_LOCK = threading.Lock()


def _answer_on_dask_worker(token: str, payload, plan: TestPlan) -> CIResult:
    """Prepare once per worker and run (``token`` names the run), then answer ``plan``."""
    with _DASK_LOCK:
        if token not in _DASK_PREPARED:
            _DASK_PREPARED.clear()  # one run's shared work at a time
            ci_test, data = payload
            _DASK_PREPARED[token] = ci_test.prepare(data)
        answer = _DASK_PREPARED[token]
    return answer(plan)


def dask_client(executor, n_workers: int, timeout: float = CONNECT_TIMEOUT):
    """(client, owned): the Client to use and whether this run must close it."""
    try:
        import distributed
    except ImportError:  # pragma: no cover - dask is a test dependency
        raise InvalidParameterError("executor needs Dask: pip install 'specialize[dask]'") from None
    if isinstance(executor, distributed.Client):
        return executor, False
    if executor == "dask":
        cluster = distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        return distributed.Client(cluster, set_as_default=False), True
    if not isinstance(executor, str):
        raise InvalidParameterError(
            f"executor must be None, 'processes', 'dask', a Dask scheduler address or a "
            f"distributed.Client; got {type(executor).__name__}"
        )
    timeout = check_float("timeout", timeout, low=0.0, low_inclusive=False)
    try:
        return distributed.Client(executor, timeout=timeout, set_as_default=False), True
    except (OSError, TimeoutError) as exc:
        raise ExecutorError(
            f"cannot reach the Dask scheduler at {executor!r} within {timeout:g} s ({exc})"
        ) from None


def _run_dask(executor, n_workers, ci_test, data, plan, batches, record, advance) -> None:
    import distributed

    retryable = (
        distributed.scheduler.KilledWorker,
        distributed.client.FutureCancelledError,
        distributed.comm.CommClosedError,
    )
    client, owned = dask_client(executor, n_workers)
    token = uuid.uuid4().hex
    todo = list(range(len(batches)))
    try:
        for attempt in range(MAX_RESTARTS + 1):
            [payload] = client.scatter([(ci_test, data)], broadcast=True, hash=False)
            futures = {
                client.submit(
                    _answer_on_dask_worker,
                    token,
                    payload,
                    plan.subset(batches[b]),
                    key=f"specialize-batch-{token}-{b}-{attempt}",
                    pure=False,
                ): b
                for b in todo
            }
            failed = []
            for future in distributed.as_completed(list(futures), loop=client.loop):
                b = futures[future]
                try:
                    answered = future.result()
                except retryable:
                    failed.append(b)
                    continue
                record(batches[b], answered)
                advance(len(batches[b]))
                todo.remove(b)
            client.cancel(list(futures) + [payload])
            if not failed:
                return
        raise ExecutorError(
            f"Dask workers kept dying: {len(todo)} batches unanswered after {MAX_RESTARTS + 1} "
            "attempts"
        )
    finally:
        if owned:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()


# --- progress ---------------------------------------------------------------------------------


@contextmanager
def _progress_bar(enabled: bool, label: str, total: int, completed: int):
    """Yield ``advance(n_tests)``; draws tests done / to do on a terminal when enabled."""
    if not enabled or not sys.stderr.isatty() or total - completed < 2:
        yield lambda n: None
        return
    from .._progress import counting_progress

    with counting_progress("tests") as bar:
        task = bar.add_task(label, total=total, completed=completed)
        yield lambda n: bar.advance(task, n)
