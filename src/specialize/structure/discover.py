"""Algorithm 1: which segments (or steps) serve which task, from batteries of CI tests."""

from __future__ import annotations

import inspect
import math
import time
from functools import partial

import numpy as np

from .. import __version__
from .._validation import (
    CollinearityError,
    DataValidationError,
    InvalidParameterError,
    as_float_array,
    check_choice,
    check_finite,
    check_float,
    check_int,
    warn,
)
from ..ci.base import CIData, CITest
from ..ci.checkpoint import run_fingerprint
from ..ci.execute import answer_plan
from ..ci.registry import make_ci_test, test_class
from .aggregate import AGGREGATIONS, CORRECTIONS
from .plan import CONDITIONINGS, MODES, plan_tests
from .result import TaskStructure

MISSING_POLICIES = ("raise", "drop-rows", "testwise")
DEFAULT_MODE = "segment"
#: ``conditioning="auto"`` conditions on all other steps when a test handles large
#: conditioning sets and there are at least this many samples per conditioning column.
AUTO_SAMPLES_PER_COLUMN = 10


def discover_structure(
    X,
    G,
    *,
    segment_length: int = 2,
    test: str | CITest = "fisherz",
    alpha: float = 0.05,
    mode: str = DEFAULT_MODE,
    conditioning: str = "auto",
    correction: str | None = "holm",
    aggregation: str = "clique",
    missing: str = "raise",
    actions_feed_states: bool = True,
    batch_size: int = 16_384,
    n_jobs: int = 1,
    executor=None,
    checkpoint=None,
    progress: bool = False,
    random_state=None,
    test_params: dict | None = None,
) -> TaskStructure:
    """Recover the segment-task structure of sequences from CI tests (Algorithm 1).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_steps, n_features)
        States or observations of every step of n i.i.d. sequences.
    G : ndarray of shape (n_samples, n_tasks) or (n_samples, n_tasks, task_dim)
        Task variables.
    segment_length : int, default=2
        Steps L per segment, 2 <= L <= T. Segment k is represented by step k*L + L - 1.
    test : str or CITest, default="fisherz"
        A registered test name (:func:`specialize.ci.available_ci_tests`) or an instance, e.g.
        ``DSeparation(dag)`` for exact answers.
    alpha : float in (0, 1), default=0.05
        Level at which a (corrected) p-value counts as dependence.
    mode : {"segment", "unary", "pairwise", "step"}, default="segment"
        ``"unary"``: each segment's representative step against each task given its
        conditioning steps (K*M tests). ``"segment"``: the unary tests plus a block test of
        all the steps of each segment (Corollary 1: every step of a segment carries the
        task), used wherever the previous segment's representative shows no dependence;
        2*K*M tests. ``"pairwise"``: Algorithm 1 as the paper states it, the band test of
        every pair of segments given the task (M*K*(K-1)/2 tests). ``"step"``: the unary test
        at every step, for step-level structure without the equal-segment assumption. Why
        segment is the default: ``docs/structure.md``.
    conditioning : {"auto", "band", "all"}, default="auto"
        ``"band"``: the neighbours of the tested steps (Theorem 1). ``"all"``: every other
        step, which removes the part of the task other steps explain and so raises power.
        ``"auto"``: ``"all"`` when the test handles large conditioning sets (Fisher-z, the
        oracle) and n >= 10 x the number of conditioning columns, else ``"band"``.
    correction : {"holm", None, "bonferroni", "fdr_bh"}, default="holm"
        Multiple-testing correction over the run's family of decisions: one p-value per
        (segment or step, task), or per (pair, task) in pairwise mode. None tests each at
        ``alpha``, which with K*M tests gives about alpha*K*M false positives.
    aggregation : {"clique", "any"}, default="clique"
        Pairwise mode only: ``"any"`` marks both segments of every dependent pair (the paper);
        ``"clique"`` keeps the segments that are dependent with most of their task's other
        segments, so that one false positive does not mark a segment.
    missing : {"raise", "drop-rows", "testwise"}, default="raise"
        NaN handling: raise; drop every sequence with a NaN; or let each test drop only the
        sequences with a NaN in the variables it uses (each test reports its n).
    actions_feed_states : bool, default=True
        Segment mode only. True allows for actions that drive the next state
        (a_{t-1} -> s_t): a segment whose previous segment shows dependence on a task is then
        decided by its representative test alone. False asserts that no action feeds a state,
        and every segment is decided by the block test of all its steps (more power; false
        positives after task segments if the assertion is wrong).
    batch_size : int
        Most tests answered per batch.
    n_jobs : int, default=1
        Worker processes (-1: one per core). More than 1 with no ``executor`` uses a process
        pool. Scripts that use worker processes must guard their entry point with
        ``if __name__ == "__main__":``.
    executor : None, "processes", "dask", a scheduler address or a distributed.Client
        Where the tests run: this process (None), a pool of ``n_jobs`` processes, a local Dask
        cluster of ``n_jobs`` workers, or an existing Dask cluster (``"tcp://host:8786"`` or a
        ``Client``). The data are sent to each worker once; every executor gives the same
        answers for the same seed. See ``docs/execution.md``.
    checkpoint : str or Path, optional
        File that keeps finished p-values as batches finish; rerunning the same call after an
        interruption answers only the tests not yet in it.
    progress : bool
        Show a progress bar of tests done and to do (only when writing to a terminal).
    random_state : int or None
        Seed for randomised tests (RCIT, CMIKnn). When None, a seed is drawn and recorded in
        the result, so that any run can be repeated.
    test_params : dict, optional
        Constructor arguments when ``test`` is a name, e.g. ``{"device": "cuda"}``.

    Returns
    -------
    TaskStructure
    """
    started = time.perf_counter()
    check_choice("mode", mode, MODES)
    check_choice("conditioning", conditioning, ("auto", *CONDITIONINGS))
    check_choice("correction", correction, CORRECTIONS)
    check_choice("aggregation", aggregation, AGGREGATIONS)
    check_choice("missing", missing, MISSING_POLICIES)
    alpha = check_float(
        "alpha", alpha, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
    )
    batch_size = check_int("batch_size", batch_size, minimum=1)
    ci_test = make_ci_test(test, **seeded_test_params(test, test_params, random_state))
    random_state = getattr(ci_test, "_entropy", random_state)

    X, G = _validated_arrays(X, G, missing if ci_test.requires_data else "raise")
    n, T, D = X.shape
    M = G.shape[1]
    L = check_int("segment_length", segment_length, minimum=2, maximum=T)
    if mode == "pairwise" and T // L < 2:
        raise InvalidParameterError(
            f"mode='pairwise' tests pairs of segments and needs n_steps // segment_length >= 2; "
            f"got {T} // {L} = {T // L}"
        )
    if T % L and mode != "step":
        warn(
            f"n_steps = {T} is not a multiple of segment_length = {L}: the last {T % L} "
            "step(s) belong to no segment and are not tested"
        )
    conditioning = resolve_conditioning(conditioning, ci_test, n, T, D)
    structure_plan = plan_tests(mode, T, L, M, conditioning)
    unreachable = _unreachable_pvalue_message(
        ci_test, len(structure_plan) // (2 if mode == "segment" else 1), alpha, correction
    )
    if unreachable:
        warn(unreachable)
    data = sequence_ci_data(X, G)
    run = partial(
        answer_plan,
        ci_test,
        plan=structure_plan.plan,
        batch_size=batch_size,
        n_jobs=n_jobs,
        executor=executor,
        progress=progress,
        checkpoint=checkpoint,
        fingerprint=None
        if checkpoint is None
        else run_fingerprint(ci_test, data, structure_plan.plan, repr((mode, alpha))),
        label=f"{mode} {ci_test.name} tests",
    )
    validated = time.perf_counter()

    try:
        result, test_timings = run(data)
    except CollinearityError:
        bases = rank_deficient_step_bases(X)
        if not bases:
            raise
        ranks = sorted({b.shape[1] for b in bases.values()})
        steps = list(bases)
        where = ", ".join(map(str, steps)) if len(steps) <= 5 else f"{len(steps)} of {T} steps"
        warn(
            f"X spans fewer dimensions than its {D} features at step(s) {where} "
            f"(rank {', '.join(map(str, ranks))}): each such step is tested on its principal "
            "components, a lossless change of basis for partial-correlation tests"
        )
        result, test_timings = run(sequence_ci_data(X, G, step_bases=bases))
    tested = time.perf_counter()

    tests = {
        "kind": structure_plan.kind,
        "task": structure_plan.task,
        "unit": structure_plan.unit,
        "partner": structure_plan.partner,
        "pvalue": result.pvalue,
        "statistic": result.statistic,
        "dof": result.dof,
        "n_samples": result.n_samples,
    }
    aggregation = aggregation if mode == "pairwise" else None
    timings = {"validate_and_plan": validated - started, **test_timings}
    result = TaskStructure(
        tests=tests,
        mode=mode,
        test=ci_test.name,
        conditioning=conditioning,
        alpha=alpha,
        correction=correction,
        aggregation=aggregation,
        segment_length=L,
        n_samples=n,
        n_steps=T,
        n_tasks=M,
        missing=missing,
        actions_feed_states=bool(actions_feed_states),
        random_state=random_state,
        test_params=ci_test.get_params(),
        timings=timings,
        version=__version__,
    )
    result.segment_tasks  # noqa: B018 - decide now, so that the timings include it
    finished = time.perf_counter()
    timings.update(aggregate=finished - tested, total=finished - started)
    return result


def resolve_conditioning(conditioning: str, ci_test: CITest, n: int, T: int, D: int) -> str:
    """The conditioning set rule actually used (see ``discover_structure``)."""
    if conditioning != "auto":
        return conditioning
    if ci_test.handles_large_conditioning_sets and (
        not ci_test.requires_data or n >= AUTO_SAMPLES_PER_COLUMN * (T - 1) * D
    ):
        return "all"
    return "band"


def _unreachable_pvalue_message(ci_test: CITest, n_decisions: int, alpha, correction) -> str:
    """A warning when a permutation test's p-values cannot pass the corrected threshold."""
    floor = ci_test.smallest_pvalue()
    threshold = alpha if correction is None else alpha / max(n_decisions, 1)
    if floor <= threshold:
        return ""
    knob = "sig_samples" if "sig_samples" in ci_test.get_params() else "its permutations"
    return (
        f"test {ci_test.name!r} cannot return p-values below {floor:.2g}, but correction "
        f"{correction!r} over {n_decisions} decisions needs p <= {threshold:.2g} for any "
        f"dependence to be found; raise {knob} to at least {math.ceil(1 / threshold)} "
        "(several times that for power), or use correction='fdr_bh' or None"
    )


def seeded_test_params(test, test_params: dict | None, random_state) -> dict:
    """``test_params`` with ``random_state`` added where the named test takes a seed.

    A test instance keeps its own seed; a ``random_state`` that contradicts it is an error.
    """
    params = dict(test_params or {})
    if isinstance(test, CITest):
        own = test.get_params().get("random_state")
        if random_state is not None and "random_state" in test.get_params() and own is None:
            raise InvalidParameterError(
                f"random_state={random_state!r} cannot seed a test instance built without one; "
                f"pass {type(test).__name__}(random_state={random_state!r}) instead"
            )
        if random_state is not None and own is not None and own != random_state:
            raise InvalidParameterError(
                f"random_state={random_state!r} contradicts the test instance's "
                f"random_state={own!r}"
            )
        return params
    cls = test_class(test) if isinstance(test, str) else None
    if cls is not None and "random_state" in inspect.signature(cls).parameters:
        params.setdefault("random_state", random_state)
    return params


def rank_deficient_step_bases(X: np.ndarray, tolerance: float = 1e-10) -> dict:
    """Orthonormal bases of the steps whose features span fewer dimensions than they have.

    Observations o_t = W s_t with W of shape (D, d), D > d, are injective but span only d
    dimensions. Returns ``{t: basis of shape (D, r)}`` for such steps (eigenvectors of the
    step's covariance with eigenvalue above ``tolerance`` times the largest).
    """
    out = {}
    for t in range(X.shape[1]):
        step = X[:, t, :]
        step = step[~np.isnan(step).any(axis=1)]
        if step.shape[1] < 2 or step.shape[0] < 2:
            continue
        eigvals, eigvecs = np.linalg.eigh(np.cov(step, rowvar=False))
        keep = eigvals > tolerance * eigvals.max()
        if keep.any() and not keep.all():
            out[t] = eigvecs[:, keep]
    return out


def sequence_ci_data(X: np.ndarray, G: np.ndarray, step_bases: dict | None = None) -> CIData:
    """CIData with one node per step (D columns of X) and one per task (q columns of G).

    Node t is named ``("s", t)`` and node T + i ``("g", i)``, the names of the generator's DAG.
    ``step_bases`` ({t: (D, r) basis}) replaces step t's features by their coordinates in
    that basis (see :func:`rank_deficient_step_bases`).
    """
    n, T, D = X.shape
    M, q = G.shape[1], G.shape[2]
    if not step_bases:
        step_blocks = [X.reshape(n, T * D)]
        widths = [D] * T
        step_labels = [f"X[:, {t}, {j}]" for t in range(T) for j in range(D)]
    else:
        step_blocks = [
            X[:, t, :] @ step_bases[t] if t in step_bases else X[:, t, :] for t in range(T)
        ]
        widths = [b.shape[1] for b in step_blocks]
        step_labels = [
            f"X[:, {t}, :] component {j}" if t in step_bases else f"X[:, {t}, {j}]"
            for t in range(T)
            for j in range(widths[t])
        ]
    starts = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    node_columns = tuple(np.arange(starts[t], starts[t + 1]) for t in range(T)) + tuple(
        starts[-1] + np.arange(i * q, (i + 1) * q) for i in range(M)
    )
    names = tuple(("s", t) for t in range(T)) + tuple(("g", i) for i in range(M))
    labels = tuple(step_labels) + tuple(
        f"G[:, {i}]" if q == 1 else f"G[:, {i}, {j}]" for i in range(M) for j in range(q)
    )
    return CIData((*step_blocks, G.reshape(n, M * q)), node_columns, names, labels, n)


def _validated_arrays(X, G, missing: str) -> tuple[np.ndarray, np.ndarray]:
    """X as (n, T, D) and G as (n, M, q) float arrays, with the missing-value policy applied."""
    X = as_float_array("X", X, ndims=(3,), shape_hint="(n_samples, n_steps, n_features)")
    G = as_float_array(
        "G", G, ndims=(2, 3), shape_hint="(n_samples, n_tasks) or (n_samples, n_tasks, task_dim)"
    )
    if X.shape[0] != G.shape[0]:
        raise DataValidationError(
            f"X has {X.shape[0]} samples but G has {G.shape[0]}; they must match"
        )
    hint = "; pass missing='drop-rows' or missing='testwise' to use the complete samples"
    check_finite("X", X, allow_nan=missing != "raise", hint=hint)
    check_finite("G", G, allow_nan=missing != "raise", hint=hint)
    if G.ndim == 2:
        G = G[:, :, None]
    if missing == "drop-rows":
        keep = ~(np.isnan(X).any(axis=(1, 2)) | np.isnan(G).any(axis=(1, 2)))
        if not keep.all():
            warn(
                f"missing='drop-rows' dropped {int((~keep).sum())} of {len(keep)} samples with NaN"
            )
            X, G = X[keep], G[keep]
        if X.shape[0] == 0:
            raise DataValidationError("every sample has a NaN; nothing is left to test")
    return np.ascontiguousarray(X), np.ascontiguousarray(G)
