"""Task latents when the task variables are not observed: learned from an outcome observation.

Under the collider model a task is a child of its steps' actions, so a task that is never
observed leaves no trace in the joint law of the steps: no method can recover it from the
steps alone. What a video does show is the outcome (the goal scored, the pass received) in a
frame after the actions: an *outcome observation* O = f(G_1, ..., G_M), f injective. From O
and the steps this module learns task latents in three stages:

1. **Outcome latents.** U (n, M): the M leading whitened principal components of O. With a
   linear f, U = A G for an unknown invertible A (M, M): every task is mixed into every
   coordinate, and Algorithm 1 on U would give each learned task the union of all tasks' steps.
2. **Sparse read-out.** The steps' linear contributions to U: the least-squares coefficients
   C (M, T * d) of U on every step's (standardised) latents, so C = A W where row k of W is
   non-zero only on the steps of task k. A direction b in U-space gives the latent b'U, whose
   read-out b'C is zero on every segment that serves none of its tasks. The task directions
   are the sparsest read-outs: each is found by iteratively reweighted least squares for
   min sum_s ||b'C_s||_2 subject to b'r = 1 from many starts r, its support is the segments
   whose Wald test of b'C_s = 0 rejects at alpha / (number of segments), and the M
   directions with the smallest supports that are linearly independent are kept (smallest
   first, so a task whose segments include another's is still found after it; among equal
   supports, the one with the least evidence outside its support first). Before the
   choice, each is refined to the direction orthogonal to the read-outs of the segments
   outside its support, and its support tested again, until the support is stable: a
   direction that the noise of one segment's read-out pulled off a task then falls back onto
   it (and is dropped as a duplicate) instead of being kept as a mixture of tasks.
3. Task latent k is b_k'U, up to scale and sign; the structure search then runs on them
   like on observed tasks, and results are scored up to a permutation of tasks
   (:func:`specialize.metrics.matched_structure_scores`).

Assumptions, and where it fails: tasks add the contributions of their steps (true of
``make_task_sequences``; with its nonlinear mechanism the linear read-out is an approximation
and F1 drops); each task's set of segments differs from every other's; O's dependence on the
tasks is close enough to linear for M principal components to hold them (a leaky-ReLU
rendering still gives exact structure in our runs but MCC of about 0.9 instead of 0.99).
Measured: ``docs/pipeline.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, stats

from .._validation import (
    DataValidationError,
    InvalidParameterError,
    as_float_array,
    check_finite,
    warn,
)

#: Random starts of the sparse read-out search, beside the unit vectors and one per segment.
N_RANDOM_STARTS = 30
IRLS_ITERATIONS = 200
#: Rounds of (support test, refinement) until a direction's support is stable.
REFINE_ROUNDS = 10
#: Least singular value of the chosen directions (unit vectors) for a new one to be accepted.
MIN_INDEPENDENCE = 0.2


@dataclass(frozen=True)
class TaskReadout:
    """The learned map from an outcome observation to task latents.

    Attributes
    ----------
    mean : ndarray of shape (outcome_dim,)
    components : ndarray of shape (n_tasks, outcome_dim)
        Whitened principal axes: U = (O - mean) @ components.T.
    directions : ndarray of shape (n_tasks, n_tasks)
        Task latents = U @ directions.T, one row per learned task.
    supports : bool ndarray of shape (n_tasks, n_segments)
        The segments whose read-out each direction tests as non-zero.
    n_resolved : int
        How many directions the sparse read-out found (the first ones); the others, when
        fewer than n_tasks were found, complete the basis and may mix tasks.
    """

    mean: np.ndarray
    components: np.ndarray
    directions: np.ndarray
    supports: np.ndarray
    n_resolved: int

    def transform(self, outcomes) -> np.ndarray:
        """Task latents (n, n_tasks) of outcome observations (n, outcome_dim)."""
        O = check_outcomes(outcomes, width=self.mean.size)
        return (O - self.mean) @ self.components.T @ self.directions.T

    def to_dict(self) -> dict:
        return {
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "directions": self.directions.tolist(),
            "supports": self.supports.astype(int).tolist(),
            "n_resolved": self.n_resolved,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TaskReadout:
        return cls(
            np.asarray(d["mean"], dtype=float),
            np.asarray(d["components"], dtype=float),
            np.asarray(d["directions"], dtype=float),
            np.asarray(d["supports"], dtype=bool),
            int(d["n_resolved"]),
        )


def check_outcomes(outcomes, n_samples: int | None = None, width: int | None = None):
    """Outcome observations as a finite float (n, outcome_dim) array, or a clear error."""
    O = as_float_array("outcomes", outcomes, ndims=(2,), shape_hint="(n, outcome_dim)")
    check_finite("outcomes", O)
    if n_samples is not None and O.shape[0] != n_samples:
        raise DataValidationError(f"outcomes has {O.shape[0]} rows but X has {n_samples} sequences")
    if width is not None and O.shape[1] != width:
        raise DataValidationError(
            f"outcomes has {O.shape[1]} columns but the model was fitted on {width}"
        )
    return O


def outcome_latents(outcomes, n_tasks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``n_tasks`` leading whitened principal components of the outcomes.

    Returns U (n, n_tasks), the mean (outcome_dim,) and the whitened axes (n_tasks, outcome_dim).
    """
    O = np.asarray(outcomes, dtype=float)
    if O.shape[1] < n_tasks:
        raise InvalidParameterError(
            f"outcomes has {O.shape[1]} columns, fewer than n_tasks = {n_tasks}: an outcome "
            "observation must be at least as wide as the tasks it shows"
        )
    mean = O.mean(axis=0)
    _, singular, axes = np.linalg.svd(O - mean, full_matrices=False)
    scale = singular[:n_tasks] / np.sqrt(len(O) - 1)
    if scale[-1] <= 1e-10 * scale[0]:
        raise DataValidationError(
            f"outcomes has rank below n_tasks = {n_tasks}: it cannot show {n_tasks} tasks"
        )
    components = axes[:n_tasks] / scale[:, None]
    return (O - mean) @ components.T, mean, components


def learn_task_readout(
    Z, outcomes, n_tasks: int, *, segment_length: int = 2, alpha: float = 0.05, random_state=None
) -> TaskReadout:
    """Learn the task latents of :mod:`this module <specialize.structure.unknown>`.

    Parameters
    ----------
    Z : ndarray of shape (n, n_steps, d)
        Every step's latents (states, or a step encoder's latents).
    outcomes : ndarray of shape (n, outcome_dim)
    n_tasks : int
    segment_length : int
        Steps per segment; the read-out's supports are tested per segment, trailing steps
        included in none.
    alpha : float
        Level of the support tests (Bonferroni over segments).
    random_state : int or None
        Seeds the random starts.
    """
    Z = np.asarray(Z, dtype=float)
    n, T, d = Z.shape
    U, mean, components = outcome_latents(outcomes, n_tasks)
    flat = Z.reshape(n, T * d)
    spread = flat.std(axis=0)
    if (spread == 0).any():
        step, column = divmod(int(np.flatnonzero(spread == 0)[0]), d)
        raise DataValidationError(f"Z is constant at step {step}, coordinate {column}")
    design = np.column_stack([np.ones(n), (flat - flat.mean(axis=0)) / spread])
    if n <= design.shape[1] + 1:
        raise DataValidationError(
            f"{n} sequences are too few for the read-out of {T * d} step coordinates"
        )
    coef, *_ = np.linalg.lstsq(design, U, rcond=None)
    residual = U - design @ coef
    noise = residual.T @ residual / (n - design.shape[1])
    inverse_gram = np.linalg.pinv(design.T @ design)[1:, 1:]
    C = coef[1:].T
    width = segment_length * d
    blocks = [np.arange(k * width, (k + 1) * width) for k in range(T // segment_length)]

    # Read-outs in units of their standard errors: ||b' R_s||^2 / (b' noise b) is the Wald
    # statistic of b'C_s = 0 (chi-square with ``width`` dof under the null).
    readouts = [
        np.linalg.solve(np.linalg.cholesky(inverse_gram[np.ix_(c, c)]), C[:, c].T).T for c in blocks
    ]

    def wald(b):
        return np.array([np.sum((b @ r) ** 2) for r in readouts]) / (b @ noise @ b)

    threshold = stats.chi2.isf(alpha / len(blocks), width)

    def support(b):
        return wald(b) > threshold

    rng = np.random.default_rng(random_state)
    starts = [
        *np.eye(n_tasks),
        *(np.linalg.svd(r)[0][:, 0] for r in readouts),
        *rng.normal(size=(N_RANDOM_STARTS, n_tasks)),
    ]
    candidates = []
    for start in starts:
        b = _sparsest_readout(readouts, start)
        supp = support(b)
        for _ in range(REFINE_ROUNDS):
            b = _refine(b, [readouts[k] for k in np.flatnonzero(~supp)], noise)
            new_supp = support(b)
            if (new_supp == supp).all():
                break
            supp = new_supp
        if supp.any():
            outside = wald(b)[~supp].sum()
            candidates.append((int(supp.sum()), outside, b, supp))
    candidates.sort(key=lambda c: c[:2])
    directions, supports = [], []
    for *_, b, supp in candidates:
        trial = np.array([*directions, b])
        if np.linalg.svd(trial, compute_uv=False)[-1] > MIN_INDEPENDENCE:
            directions.append(b)
            supports.append(supp)
        if len(directions) == n_tasks:
            break
    n_resolved = len(directions)
    if n_resolved < n_tasks:
        warn(
            f"the sparse read-out resolved {n_resolved} of the {n_tasks} tasks asked for; the "
            f"other {n_tasks - n_resolved} learned tasks span what remains of the outcome "
            "latents and may mix several tasks (fewer tasks, more sequences, or tasks whose "
            "segments differ more would help)"
        )
        complement = linalg.null_space(np.array(directions)) if directions else np.eye(n_tasks)
        for b in complement.T[: n_tasks - n_resolved]:
            directions.append(b)
            supports.append(support(b))
    return TaskReadout(mean, components, np.array(directions), np.array(supports), n_resolved)


def _sparsest_readout(readouts: list, start: np.ndarray) -> np.ndarray:
    """Unit b minimising sum_s ||b' C_s||_2 subject to b' start = 1 (IRLS)."""
    b = start / np.linalg.norm(start)
    ridge = 1e-10 * np.eye(len(b))
    for _ in range(IRLS_ITERATIONS):
        norms = np.array([np.linalg.norm(r.T @ b) for r in readouts])
        weights = 1.0 / np.maximum(norms, 1e-6 * norms.max() + 1e-12)
        quadratic = sum(w * r @ r.T for w, r in zip(weights, readouts, strict=True)) + ridge
        new = np.linalg.solve(quadratic, start)
        new /= np.linalg.norm(new)
        if np.allclose(new, b, atol=1e-10):
            return new
        b = new
    return b


def _refine(b: np.ndarray, outside: list, noise: np.ndarray) -> np.ndarray:
    """The direction with the least Wald evidence over the segments outside b's support.

    Outside its support a task's read-out is zero, so its direction minimises
    sum_s ||b'R_s||^2 / b' noise b over those segments (a generalised eigenproblem); the
    least-squares noise of one segment weighs less there than in the IRLS optimum.
    """
    if not outside:
        return b
    quadratic = sum(r @ r.T for r in outside)
    refined = linalg.eigh(quadratic, noise)[1][:, 0]
    refined /= np.linalg.norm(refined)
    return refined * np.sign(refined @ b)
