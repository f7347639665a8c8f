"""The result of a structure search: decisions, every test's evidence, and how they were made."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .._validation import check_choice, check_float
from ..metrics.structure import structure_scores
from .aggregate import AGGREGATIONS, CORRECTIONS, adjust_pvalues, pair_decisions
from .plan import KIND_BLOCK, KIND_UNIT, n_segments, representatives

TEST_FIELDS = ("kind", "task", "unit", "partner", "pvalue", "statistic", "dof", "n_samples")


def unit_pvalues(
    tests: dict, *, mode, alpha, n_steps, segment_length, n_tasks, actions_feed_states=True
) -> np.ndarray:
    """One raw p-value per (segment, task), or per (step, task) in step mode.

    In segment mode a segment's p-value is its block test's (all its steps) unless the
    previous segment shows dependence on the task at ``alpha`` (its representative or its block
    test rejects); then the block's first step may be tied to the task through the previous
    action (a_{kL-1} -> s_{kL}), and the segment's representative test is used instead. Under
    the oracle this is exact with or without actions that feed states; see
    ``docs/structure.md``. With ``actions_feed_states=False`` (the user rules that path out)
    every segment takes its block test.
    """
    n_units = n_steps if mode == "step" else n_segments(n_steps, segment_length)
    kind, unit, task, p = tests["kind"], tests["unit"], tests["task"], tests["pvalue"]
    single = np.ones((n_units, n_tasks))
    one = kind == KIND_UNIT
    single[unit[one], task[one]] = p[one]
    if mode != "segment":
        return single
    block = np.ones_like(single)
    pooled = kind == KIND_BLOCK
    block[unit[pooled], task[pooled]] = p[pooled]
    if not actions_feed_states:
        return block
    previous_free = np.ones_like(single, dtype=bool)
    previous_free[1:] = np.minimum(single, block)[:-1] > alpha
    return np.where(previous_free, block, single)


def expand_to_steps(segment_tasks: np.ndarray, n_steps: int, segment_length: int) -> np.ndarray:
    """(T, M) step matrix: every step of a segment takes its row; trailing steps none."""
    K = segment_tasks.shape[0]
    out = np.zeros((n_steps, segment_tasks.shape[1]), dtype=bool)
    out[: K * segment_length] = np.repeat(segment_tasks, segment_length, axis=0)
    return out


@dataclass(frozen=True, repr=False)
class TaskStructure:
    """Which segments and steps serve which task, with the evidence of every CI test.

    Attributes
    ----------
    segment_tasks : bool ndarray of shape (K, M)
        Derived from ``tests`` by the decision rule (alpha, correction, aggregation,
        actions_feed_states), so a result never disagrees with its own evidence.
    step_tasks : bool ndarray of shape (T, M)
    tests : dict of ndarray, each of shape (n_tests,)
        ``kind`` (0: one step or segment representative vs a task, 1: a pair of segments,
        2: all steps of a segment vs a task), ``task``, ``unit`` (segment k, or step t in
        step mode), ``partner`` (segment v of a pairwise test, else -1), ``pvalue`` (raw),
        ``statistic``, ``dof``, ``n_samples``.
    mode, test, conditioning, alpha, correction, aggregation, segment_length, missing,
    actions_feed_states
        How the result was made; ``test_params`` the CI test's parameters.
    n_samples, n_steps, n_tasks : int
        Of the input data (n_samples after any dropped rows).
    random_state : int or None
    timings : dict of float, seconds
    """

    tests: dict
    mode: str
    test: str
    conditioning: str
    alpha: float
    correction: str | None
    aggregation: str | None
    segment_length: int
    n_samples: int
    n_steps: int
    n_tasks: int
    missing: str = "raise"
    actions_feed_states: bool = True
    random_state: int | None = None
    test_params: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    version: str = ""

    @cached_property
    def _decisions(self) -> tuple[np.ndarray, np.ndarray]:
        """(segment_tasks, step_tasks) from the stored p-values and the decision rule."""
        if self.mode == "pairwise":
            rejected = adjust_pvalues(self.tests["pvalue"], self.correction) <= self.alpha
            t = self.tests
            segment_tasks = pair_decisions(
                rejected,
                t["task"],
                t["unit"],
                t["partner"],
                self.n_segments,
                self.n_tasks,
                self.aggregation,
            )
            return segment_tasks, expand_to_steps(segment_tasks, self.n_steps, self.segment_length)
        rejected = self.unit_evidence <= self.alpha
        if self.mode == "step":
            return rejected[representatives(self.n_steps, self.segment_length)], rejected
        return rejected, expand_to_steps(rejected, self.n_steps, self.segment_length)

    @property
    def segment_tasks(self) -> np.ndarray:
        """(K, M) bool: segment k serves task i."""
        return self._decisions[0]

    @property
    def step_tasks(self) -> np.ndarray:
        """(T, M) bool: step t serves task i."""
        return self._decisions[1]

    @property
    def n_tests(self) -> int:
        return int(len(self.tests["pvalue"]))

    @property
    def n_segments(self) -> int:
        return n_segments(self.n_steps, self.segment_length)

    @property
    def seconds(self) -> float:
        return float(self.timings.get("total", np.nan))

    @cached_property
    def unit_evidence(self) -> np.ndarray:
        """Adjusted p-value of each (segment, task), or (step, task) in step mode.

        In pairwise mode, the smallest adjusted p-value of the pairs the segment is part of.
        Shape (K, M), or (T, M) in step mode.
        """
        t = self.tests
        if self.mode == "pairwise":
            p = adjust_pvalues(t["pvalue"], self.correction)
            out = np.ones((self.n_segments, self.n_tasks))
            np.minimum.at(out, (t["unit"], t["task"]), p)
            np.minimum.at(out, (t["partner"], t["task"]), p)
            return out
        p = unit_pvalues(
            t,
            mode=self.mode,
            alpha=self.alpha,
            n_steps=self.n_steps,
            segment_length=self.segment_length,
            n_tasks=self.n_tasks,
            actions_feed_states=self.actions_feed_states,
        )
        return adjust_pvalues(p.ravel(), self.correction).reshape(p.shape)

    @property
    def segment_evidence(self) -> np.ndarray:
        """Adjusted p-value bearing on each (segment, task), shape (K, M)."""
        if self.mode == "step":
            return self.unit_evidence[representatives(self.n_steps, self.segment_length)]
        return self.unit_evidence

    def with_decision(
        self,
        *,
        alpha=None,
        correction="unchanged",
        aggregation="unchanged",
        actions_feed_states="unchanged",
    ):
        """The same tests decided at another alpha, correction, aggregation or screening rule.

        No CI test is run again.
        """
        alpha = (
            self.alpha
            if alpha is None
            else check_float(
                "alpha", alpha, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
            )
        )
        correction = self.correction if correction == "unchanged" else correction
        aggregation = self.aggregation if aggregation == "unchanged" else aggregation
        if actions_feed_states == "unchanged":
            actions_feed_states = self.actions_feed_states
        check_choice("correction", correction, CORRECTIONS)
        if self.mode == "pairwise":
            check_choice("aggregation", aggregation, AGGREGATIONS)
        return dataclasses.replace(
            self,
            alpha=alpha,
            correction=correction,
            aggregation=aggregation,
            actions_feed_states=bool(actions_feed_states),
        )

    def scores(self, truth) -> dict:
        """:func:`specialize.metrics.structure_scores` against a (K, M) or (T, M) truth."""
        truth = np.asarray(truth, dtype=bool)
        if truth.shape == self.segment_tasks.shape:
            return structure_scores(self.segment_tasks, truth)
        return structure_scores(self.step_tasks, truth)

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return {
            "segment_tasks": self.segment_tasks.astype(int).tolist(),
            "step_tasks": self.step_tasks.astype(int).tolist(),
            "segment_length": self.segment_length,
            "test": self.test,
            "test_params": self.test_params,
            "alpha": self.alpha,
            "mode": self.mode,
            "conditioning": self.conditioning,
            "correction": self.correction,
            "aggregation": self.aggregation,
            "missing": self.missing,
            "actions_feed_states": self.actions_feed_states,
            "n_tests": self.n_tests,
            "n_samples": self.n_samples,
            "n_steps": self.n_steps,
            "n_tasks": self.n_tasks,
            "random_state": self.random_state,
            "seconds": self.seconds,
            "timings": self.timings,
            "version": self.version,
            "tests": {k: _json_list(self.tests[k]) for k in TEST_FIELDS},
        }

    @classmethod
    def from_dict(cls, d: dict) -> TaskStructure:
        tests = {
            k: np.array(
                [np.nan if v is None else v for v in d["tests"][k]],
                dtype=float if k in ("pvalue", "statistic", "dof") else int,
            )
            for k in TEST_FIELDS
        }
        return cls(
            tests=tests,
            mode=d["mode"],
            test=d["test"],
            conditioning=d["conditioning"],
            alpha=float(d["alpha"]),
            correction=d["correction"],
            aggregation=d["aggregation"],
            segment_length=int(d["segment_length"]),
            n_samples=int(d["n_samples"]),
            n_steps=int(d["n_steps"]),
            n_tasks=int(d["n_tasks"]),
            missing=d.get("missing", "raise"),
            actions_feed_states=bool(d.get("actions_feed_states", True)),
            random_state=d.get("random_state"),
            test_params=d.get("test_params", {}),
            timings=d.get("timings", {}),
            version=d.get("version", ""),
        )

    def to_json(self, path=None, **extra) -> str:
        """Serialise to JSON (with ``extra`` top-level keys, e.g. scores); write to ``path``."""
        text = json.dumps({**self.to_dict(), **extra}, indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source) -> TaskStructure:
        """Read a result from a JSON string or a path to a JSON file."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            text = Path(source).read_text()
        return cls.from_dict(json.loads(text))

    def plot(self, path=None, *, truth=None):
        """Heat-map of the segment-task matrix (and the truth beside it, when given).

        Cells show -log10 of each (segment, task)'s smallest adjusted p-value; recovered
        entries are outlined. Returns the matplotlib Figure; saves it to ``path`` if given.
        """
        from ..plotting import plot_structure

        return plot_structure(self, path, truth=truth)

    def __repr__(self) -> str:
        head = (
            f"TaskStructure(mode={self.mode!r}, test={self.test!r}, "
            f"conditioning={self.conditioning!r}, alpha={self.alpha}, "
            f"correction={self.correction!r}, n_samples={self.n_samples}, "
            f"n_tests={self.n_tests}, seconds={self.seconds:.4f})"
        )
        return head + "\n" + format_matrix(self.segment_tasks, row_label="segment")


def format_matrix(matrix: np.ndarray, *, row_label: str, other: np.ndarray | None = None) -> str:
    """Text table of a (K, M) bool matrix ('x' marks), optionally beside a second one."""
    K, M = matrix.shape
    cols = " ".join(f"g{i}" for i in range(M))
    header = f"{row_label:>8} {cols}"
    if other is not None:
        header += "   |  " + cols
    lines = [header]
    for k in range(K):
        row = " ".join(f"{'x' if v else '.':>{len(f'g{i}')}}" for i, v in enumerate(matrix[k]))
        line = f"{k:>8} {row}"
        if other is not None:
            row2 = " ".join(f"{'x' if v else '.':>{len(f'g{i}')}}" for i, v in enumerate(other[k]))
            line += "   |  " + row2
        lines.append(line)
    return "\n".join(lines)


def _json_list(a: np.ndarray) -> list:
    if a.dtype.kind == "f":
        return [None if not np.isfinite(v) else float(v) for v in a]
    return [int(v) for v in a]
