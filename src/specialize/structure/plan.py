"""Which CI tests Algorithm 1 runs: pure index logic, no data.

Nodes are numbered as in :func:`specialize.structure.discover.sequence_ci_data`: step t is
node t (0 <= t < T) and task i is node T + i.

Conditioning sets:

- ``"band"``: the neighbours of the tested steps, Theorem 1's Z_band (DESIGN.md, section 2).
- ``"all"``: every other step. Conditioning on more steps blocks the same paths (no state is
  a collider whose conditioning opens a path to the task, see ``docs/structure.md``) and also
  explains the part of the task that other steps' states predict, so the test sees its step's
  contribution against less noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..ci.base import TestPlan

MODES = ("segment", "unary", "pairwise", "step")
#: What a test is about: one step (``unit``), a pair of segments, or a whole segment's steps.
KIND_UNIT, KIND_PAIR, KIND_BLOCK = 0, 1, 2
CONDITIONINGS = ("band", "all")


def n_segments(n_steps: int, segment_length: int) -> int:
    """K = floor(T / L)."""
    return n_steps // segment_length


def representatives(n_steps: int, segment_length: int) -> np.ndarray:
    """Representative step r_k = k*L + L - 1 of every segment k, shape (K,)."""
    K = n_segments(n_steps, segment_length)
    return np.arange(K) * segment_length + segment_length - 1


def band(steps, n_steps: int) -> tuple[int, ...]:
    """The neighbours t-1, t+1 of every step in ``steps`` inside 0..T-1, minus the steps."""
    steps = set(int(s) for s in steps)
    around = {t + o for t in steps for o in (-1, 1)}
    return tuple(sorted(t for t in around if 0 <= t < n_steps and t not in steps))


def conditioning_steps(steps, n_steps: int, conditioning: str) -> tuple[int, ...]:
    """Steps to condition on when testing ``steps``: their band, or all other steps."""
    if conditioning == "band":
        return band(steps, n_steps)
    steps = set(int(s) for s in steps)
    return tuple(t for t in range(n_steps) if t not in steps)


@dataclass(frozen=True)
class StructurePlan:
    """A test plan together with what each test is about.

    Attributes
    ----------
    plan : TestPlan
    task : int ndarray of shape (n_tests,)
        The task i of each test.
    unit : int ndarray of shape (n_tests,)
        The segment k (unary, pairwise) or the step t (step mode) tested.
    partner : int ndarray of shape (n_tests,)
        The second segment v of a pairwise test (k < v); -1 otherwise.
    kind : int ndarray of shape (n_tests,)
        ``KIND_UNIT`` (one step against a task), ``KIND_PAIR`` or ``KIND_BLOCK`` (all steps of a
        segment against a task).
    """

    plan: TestPlan
    task: np.ndarray
    unit: np.ndarray
    partner: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return len(self.plan)


@lru_cache(maxsize=64)
def plan_tests(
    mode: str, n_steps: int, segment_length: int, n_tasks: int, conditioning: str
) -> StructurePlan:
    """Every CI test of one run of Algorithm 1, in task-major order.

    - ``"unary"``: s_{r_k} vs g_i given the conditioning steps of r_k; K*M tests.
    - ``"step"``: s_t vs g_i given the conditioning steps of t, for every step t; T*M tests.
    - ``"pairwise"``: s_{r_k} vs s_{r_v} given the conditioning steps of {r_k, r_v} and g_i,
      for every k < v (Algorithm 1 as the paper states it); M*K*(K-1)/2 tests.
    - ``"segment"``: the unary tests, and for every segment the block test of all its steps
      {s_{kL}, ..., s_{kL+L-1}} vs g_i given the block's conditioning steps; 2*K*M tests.
    """
    T = n_steps
    x, y, z, task, unit, partner, kind = [], [], [], [], [], [], []
    if mode == "pairwise":
        reps = representatives(T, segment_length)
        for i in range(n_tasks):
            for k in range(len(reps)):
                for v in range(k + 1, len(reps)):
                    x.append((int(reps[k]),))
                    y.append((int(reps[v]),))
                    z.append(conditioning_steps((reps[k], reps[v]), T, conditioning) + (T + i,))
                    task.append(i)
                    unit.append(k)
                    partner.append(v)
                    kind.append(KIND_PAIR)
    else:
        tested = np.arange(T) if mode == "step" else representatives(T, segment_length)
        for i in range(n_tasks):
            for u, t in enumerate(tested):
                x.append((int(t),))
                y.append((T + i,))
                z.append(conditioning_steps((t,), T, conditioning))
                task.append(i)
                unit.append(u)
                partner.append(-1)
                kind.append(KIND_UNIT)
        if mode == "segment":
            for i in range(n_tasks):
                for k in range(n_segments(T, segment_length)):
                    steps = tuple(range(k * segment_length, (k + 1) * segment_length))
                    x.append(steps)
                    y.append((T + i,))
                    z.append(conditioning_steps(steps, T, conditioning))
                    task.append(i)
                    unit.append(k)
                    partner.append(-1)
                    kind.append(KIND_BLOCK)
    arrays = [np.asarray(a, dtype=int) for a in (task, unit, partner, kind)]
    for a in arrays:
        a.flags.writeable = False  # plans are cached and shared between runs
    return StructurePlan(TestPlan(tuple(x), tuple(y), tuple(z)), *arrays)
