"""Null and alternative band tests drawn from the nonlinear generator, labelled by the oracle.

Shared by the tests of every nonlinear CI test, so that they are judged on the same cases.
``conditional_case`` draws a high-dimensional case instead: x and y nonlinear in a common z,
optionally dependent given z.
A case is one unary band test of Algorithm 1: the state of step t against task i given the
states of steps t-1 and t+1; it is null exactly when the DAG d-separates them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specialize.ci import DSeparation
from specialize.datasets import make_task_sequences
from specialize.structure.plan import band


@dataclass(frozen=True)
class BandCase:
    x: np.ndarray  # (n, d) state of the tested step
    y: np.ndarray  # (n, 1) task variable
    z: np.ndarray  # (n, d * |band|) states of the neighbouring steps
    null: bool
    label: str


def band_cases(
    n_samples: int,
    *,
    n_null: int,
    n_alternative: int = 0,
    state_dims=(1, 2),
    n_steps: int = 6,
    n_tasks: int = 2,
    random_state: int = 0,
) -> list[BandCase]:
    """At least ``n_null`` null and ``n_alternative`` alternative cases (exactly that many).

    Data sets are drawn one after another (seeds ``random_state``, ``random_state + 1``, ...)
    and alternate over ``state_dims``; every step-task pair of a data set gives one case.
    """
    nulls: list[BandCase] = []
    alternatives: list[BandCase] = []
    seed = random_state
    while len(nulls) < n_null or len(alternatives) < n_alternative:
        d = state_dims[(seed - random_state) % len(state_dims)]
        data = make_task_sequences(
            n_samples,
            n_steps,
            n_tasks,
            segment_length=2,
            state_dim=d,
            mechanism="nonlinear",
            random_state=seed,
        )
        oracle = DSeparation(data.dag)
        for t in range(n_steps):
            steps = band([t], n_steps)
            z = data.states[:, list(steps), :].reshape(n_samples, -1)
            for i in range(n_tasks):
                x, y = data.states[:, t, :], data.tasks[:, i : i + 1]
                null = oracle.d_separated({("s", t)}, {("g", i)}, {("s", s) for s in steps})
                case = BandCase(x, y, z, null, f"seed={seed} d={d} s{t} vs g{i} | s{list(steps)}")
                (nulls if null else alternatives).append(case)
        seed += 1
    return nulls[:n_null] + alternatives[:n_alternative]


def conditional_case(seed, n, *, effect=0.0, dx=5, dy=5, dz=3, informative=1, noise=1.0):
    """x and y both depend on z through nonlinear maps (sin and tanh of random projections)
    plus Gaussian noise of standard deviation ``noise``; with ``effect``, y[:, 0] also
    depends on the sum of the first ``informative`` columns of x (scaled to unit weight)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, dz))
    x = np.sin(z @ rng.normal(size=(dz, dx)) / np.sqrt(dz)) + noise * rng.normal(size=(n, dx))
    y = np.tanh(z @ rng.normal(size=(dz, dy)) / np.sqrt(dz)) + noise * rng.normal(size=(n, dy))
    y[:, 0] += effect * x[:, :informative].sum(axis=1) / np.sqrt(informative)
    return x, y, z
