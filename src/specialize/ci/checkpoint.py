"""Finished CI tests kept on disk, so that an interrupted run resumes where it stopped.

A checkpoint is a JSON-lines file: a header that identifies the run (a fingerprint of the
test, its parameters, the data and the plan), then one line per finished batch with the plan
positions it answered and their statistics, p-values, degrees of freedom and sample counts.
Each batch line is flushed and synced before the run goes on, so a run killed at any moment
loses at most the batches in flight; a torn last line is ignored on resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .._validation import InvalidParameterError
from .base import CIData, CIResult, CITest, TestPlan

FORMAT = "specialize-ci-checkpoint"
VERSION = 1


def run_fingerprint(ci_test: CITest, data: CIData, plan: TestPlan, extra: str = "") -> str:
    """A hex digest that changes with the test, its parameters, the data or the plan."""
    h = hashlib.blake2b(digest_size=20)
    params = getattr(ci_test, "_entropy", None), sorted(ci_test.get_params().items(), key=str)
    h.update(repr((ci_test.name, params, data.n_samples, extra)).encode())
    for cols in data.node_columns:
        h.update(np.asarray(cols, dtype=np.int64).tobytes())
    for block in data.blocks:
        h.update(repr(block.shape).encode())
        h.update(np.ascontiguousarray(block).tobytes())
    h.update(repr((plan.x, plan.y, plan.z)).encode())
    return h.hexdigest()


class Checkpoint:
    """Append-only store of finished tests for one run.

    Parameters
    ----------
    path : str or Path
        The checkpoint file; created when missing.
    fingerprint : str
        Identity of the run (:func:`run_fingerprint`); a file written for another run is an
        error, not silently reused.
    n_tests : int
        Tests in the run's plan.
    """

    def __init__(self, path, fingerprint: str, n_tests: int):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.n_tests = int(n_tests)

    def load(self) -> tuple[np.ndarray, CIResult]:
        """Positions already answered (sorted) and a full-length result holding their answers."""
        result = CIResult.empty(self.n_tests)
        done = np.zeros(self.n_tests, dtype=bool)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._write_header()
            return np.flatnonzero(done), result
        with self.path.open() as fh:
            lines = fh.read().split("\n")
        self._check_header(lines[0])
        for line in lines[1:]:
            try:
                batch = json.loads(line)
                positions = np.asarray(batch["positions"], dtype=int)
                answered = CIResult(
                    np.asarray(batch["statistic"], dtype=float),
                    np.asarray(batch["pvalue"], dtype=float),
                    np.asarray(batch["dof"], dtype=float),
                    np.asarray(batch["n_samples"], dtype=int),
                )
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by an interruption: its batch is recomputed
            if len(positions) and (positions.min() < 0 or positions.max() >= self.n_tests):
                raise InvalidParameterError(
                    f"checkpoint {self.path} holds test positions outside this run's "
                    f"{self.n_tests} tests"
                )
            result.fill(positions, answered)
            done[positions] = True
        return np.flatnonzero(done), result

    def append(self, positions: np.ndarray, answered: CIResult) -> None:
        """Record one finished batch (durably)."""
        line = json.dumps(
            {
                "positions": np.asarray(positions).tolist(),
                "statistic": answered.statistic.tolist(),
                "pvalue": answered.pvalue.tolist(),
                "dof": answered.dof.tolist(),
                "n_samples": answered.n_samples.tolist(),
            }
        )
        with self.path.open("a") as fh:
            fh.write("\n" + line)
            fh.flush()
            os.fsync(fh.fileno())

    def _write_header(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "format": FORMAT,
            "version": VERSION,
            "fingerprint": self.fingerprint,
            "n_tests": self.n_tests,
        }
        with self.path.open("w") as fh:
            fh.write(json.dumps(header))
            fh.flush()
            os.fsync(fh.fileno())

    def _check_header(self, line: str) -> None:
        try:
            header = json.loads(line)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise InvalidParameterError(
                f"checkpoint {self.path} exists but is not a specialize checkpoint; "
                "choose another path"
            )
        if header.get("fingerprint") != self.fingerprint or header.get("n_tests") != self.n_tests:
            raise InvalidParameterError(
                f"checkpoint {self.path} was written by a different run (other data, test, "
                "parameters, seed or plan); delete it or choose another path"
            )
