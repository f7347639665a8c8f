"""Synthetic sequences in which tasks are colliders of the actions of their steps.

The generative model (DESIGN.md, section 2): latent states form a Markov chain, each state
emits an action, each task variable is a child of the actions of the steps that serve it,
and observations are an injective function of the states.

Signal strengths (fixed, documented so that results are comparable across releases):

=====================  ==========================================================
transition s_{t-1}->s_t  random matrix with singular values uniform in [0.5, 0.9]
state noise              standard deviation 1
action a_t from s_t      random matrix with singular values uniform in [0.5, 1.0]
action noise             standard deviation ``ACTION_NOISE`` = 2
action a_t -> s_{t+1}    (``action_to_state``) random matrix, singular values in [0.3, 0.6]
task weights             per (task, step): entries of magnitude uniform in [0.5, 1.0],
                         random signs, divided by sqrt(state_dim)
task noise               standard deviation 1
=====================  ==========================================================

With these, a step explains about 1 % of its task's variance through its state, so that a
band test of one step against its task has power near 1 at n = 10,000 and clearly below 1 at
n = 1,000 (see ``docs/structure.md`` for measured power and F1).
The nonlinear mechanism adds a tanh layer to every map (transition, action) with a linear
skip, draws noise from a Laplace distribution of the same variance, and passes each step's
contribution to a task through a monotone nonlinearity (tanh, cubic or softsign-like).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from .._validation import (
    InvalidParameterError,
    check_choice,
    check_float,
    check_int,
    check_random_state,
)

STATE_NOISE = 1.0
ACTION_NOISE = 2.0
TASK_NOISE = 1.0
TRANSITION_GAIN = (0.5, 0.9)
ACTION_GAIN = (0.5, 1.0)
ACTION_TO_STATE_GAIN = (0.3, 0.6)
TASK_WEIGHT = (0.5, 1.0)
LEAKY_SLOPE = 0.2

MECHANISMS = ("linear", "nonlinear")
MIXINGS = ("identity", "linear", "mlp")


@dataclass(frozen=True)
class TaskSequences:
    """A simulated data set with its ground truth.

    Attributes
    ----------
    obs : ndarray of shape (n_samples, n_steps, obs_dim)
    states : ndarray of shape (n_samples, n_steps, state_dim)
    actions : ndarray of shape (n_samples, n_steps, state_dim)
    tasks : ndarray of shape (n_samples, n_tasks), or (n_samples, n_tasks, task_dim)
    segment_assignment : bool ndarray of shape (n_segments, n_tasks)
    step_assignment : bool ndarray of shape (n_steps, n_tasks)
    dag : networkx.DiGraph
        Nodes ``("s", t)``, ``("a", t)``, ``("g", i)``; readable by
        :class:`specialize.ci.DSeparation`.
    segment_length : int
    params : dict
        The generator's arguments, ``random_state`` included.
    outcomes : ndarray of shape (n_samples, outcome_dim) or None
        With ``outcome_dim``: an observation of the tasks' outcomes (the frame after the
        actions that shows them), an injective function of the task variables.
    """

    obs: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    tasks: np.ndarray
    segment_assignment: np.ndarray
    step_assignment: np.ndarray
    dag: nx.DiGraph = field(repr=False)
    segment_length: int = 2
    params: dict = field(default_factory=dict)
    outcomes: np.ndarray | None = None

    def save(self, path) -> None:
        """Write the arrays (not the DAG) to an ``.npz`` file."""
        extra = {} if self.outcomes is None else {"outcomes": self.outcomes}
        np.savez_compressed(
            path,
            **extra,
            obs=self.obs,
            states=self.states,
            actions=self.actions,
            tasks=self.tasks,
            segment_assignment=self.segment_assignment,
            step_assignment=self.step_assignment,
            segment_length=np.int64(self.segment_length),
        )


def make_task_sequences(
    n_samples: int = 10_000,
    n_steps: int = 20,
    n_tasks: int = 4,
    *,
    segment_length: int = 2,
    state_dim: int = 1,
    obs_dim: int | None = None,
    task_dim: int = 1,
    mechanism: str = "linear",
    mixing: str = "identity",
    disconnect_prob: float = 0.0,
    action_to_state: bool = False,
    assignment=None,
    outcome_dim: int | None = None,
    outcome_mixing: str = "linear",
    random_state=None,
) -> TaskSequences:
    """Simulate n i.i.d. sequences whose tasks are colliders of their steps' actions.

    Parameters
    ----------
    n_samples : int
        Number of sequences n.
    n_steps : int
        Steps T per sequence.
    n_tasks : int
        Task variables M.
    segment_length : int, default=2
        Steps L per segment (>= 2); the K = T // L segments carry the task assignment, and the
        T - K*L trailing steps serve no task.
    state_dim : int, default=1
        Dimension d of states and actions.
    obs_dim : int or None
        Dimension D of observations (>= state_dim); None observes the states (D = d).
    task_dim : int, default=1
        Dimension q of each task variable; tasks have shape (n, M) when q = 1, else (n, M, q).
    mechanism : {"linear", "nonlinear"}
        Linear Gaussian, or tanh-MLP maps with Laplace noise and nonlinear task functions.
    mixing : {"identity", "linear", "mlp"}
        Injective map from states to observations: none, a full-rank matrix, or a leaky-ReLU
        MLP with full-rank layers.
    disconnect_prob : float in [0, 1)
        Probability that a step's state has no parents (the chain is cut there).
    action_to_state : bool
        Whether the action a_t also drives the next state s_{t+1}.
    assignment : bool array of shape (K, M) or (T, M), optional
        The step-task structure; drawn at random when None. Random assignments interleave
        tasks, give every task at least two segments, and (where K >= 3) leave some segment in
        no task and put some segment in several.
    outcome_dim : int or None
        Also return ``outcomes`` (n, outcome_dim): the task variables (flattened to M * q
        columns) seen through an injective map, for learning tasks that are not observed
        (:mod:`specialize.structure.unknown`). Drawn after everything else, so the other
        arrays do not depend on it.
    outcome_mixing : {"linear", "mlp"}
        That map: a full-rank matrix, or a leaky-ReLU MLP with full-rank layers.
    random_state : int, Generator or None

    Returns
    -------
    TaskSequences
    """
    n = check_int("n_samples", n_samples, minimum=1)
    T = check_int("n_steps", n_steps, minimum=2)
    M = check_int("n_tasks", n_tasks, minimum=1)
    L = check_int("segment_length", segment_length, minimum=2, maximum=T)
    d = check_int("state_dim", state_dim, minimum=1)
    q = check_int("task_dim", task_dim, minimum=1)
    check_choice("mechanism", mechanism, MECHANISMS)
    check_choice("mixing", mixing, MIXINGS)
    D = d if obs_dim is None else check_int("obs_dim", obs_dim, minimum=1)
    if D < d:
        raise InvalidParameterError(
            f"obs_dim must be >= state_dim = {d} for an injective mixing, got {D}"
        )
    if mixing == "identity" and D != d:
        raise InvalidParameterError(
            f"mixing='identity' observes the states, so obs_dim must be None or {d}; got {D}"
        )
    if outcome_dim is not None:
        outcome_dim = check_int("outcome_dim", outcome_dim, minimum=M * q)
    check_choice("outcome_mixing", outcome_mixing, MIXINGS[1:])
    p_cut = check_float("disconnect_prob", disconnect_prob, low=0.0, high=1.0, high_inclusive=False)
    rng = check_random_state(random_state)
    K = T // L

    step_assignment = _resolve_assignment(assignment, T, L, M, rng)
    segment_assignment = step_assignment[L - 1 : K * L : L].copy()
    nonlinear = mechanism == "nonlinear"

    connected = np.r_[False, rng.random(T - 1) >= p_cut]
    states = np.empty((n, T, d))
    actions = np.empty((n, T, d))
    task_map = {i: {} for i in range(M)}
    for i in range(M):
        for t in np.flatnonzero(step_assignment[:, i]):
            sign = rng.choice([-1.0, 1.0], size=(q, d))
            task_map[i][t] = (
                sign * rng.uniform(*TASK_WEIGHT, size=(q, d)) / np.sqrt(d),
                rng.integers(3),
            )
    for t in range(T):
        s = _noise(rng, (n, d), STATE_NOISE, nonlinear)
        if connected[t]:
            s += _random_map(rng, states[:, t - 1], d, TRANSITION_GAIN, nonlinear)
            if action_to_state:
                s += _random_map(rng, actions[:, t - 1], d, ACTION_TO_STATE_GAIN, nonlinear)
        states[:, t] = s
        actions[:, t] = _random_map(rng, s, d, ACTION_GAIN, nonlinear) + _noise(
            rng, (n, d), ACTION_NOISE, nonlinear
        )
    tasks = np.empty((n, M, q))
    for i in range(M):
        g = _noise(rng, (n, q), TASK_NOISE, nonlinear)
        for t, (weight, kind) in task_map[i].items():
            contribution = actions[:, t] @ weight.T
            g += (
                _task_nonlinearity(contribution / ACTION_NOISE, kind) * ACTION_NOISE
                if nonlinear
                else contribution
            )
        tasks[:, i] = g
    obs = _mix(states, D, mixing, rng)
    dag = _build_dag(T, M, connected, action_to_state, step_assignment)
    outcomes = None
    if outcome_dim is not None:
        outcomes = _mix(tasks.reshape(n, 1, M * q), outcome_dim, outcome_mixing, rng)[:, 0]
    params = dict(
        n_samples=n,
        n_steps=T,
        n_tasks=M,
        segment_length=L,
        state_dim=d,
        obs_dim=D,
        task_dim=q,
        mechanism=mechanism,
        mixing=mixing,
        disconnect_prob=p_cut,
        action_to_state=bool(action_to_state),
        outcome_dim=outcome_dim,
        outcome_mixing=outcome_mixing,
        random_state=random_state
        if isinstance(random_state, (int, type(None)))
        else repr(random_state),
    )
    return TaskSequences(
        obs=obs,
        states=states,
        actions=actions,
        tasks=tasks[:, :, 0] if q == 1 else tasks,
        segment_assignment=segment_assignment,
        step_assignment=step_assignment,
        dag=dag,
        segment_length=L,
        params=params,
        outcomes=outcomes,
    )


def random_segment_assignment(n_segments: int, n_tasks: int, random_state=None) -> np.ndarray:
    """Draw a (K, M) bool segment-task assignment.

    Every task gets between 2 and ``max(2, min(K - 1, ceil(K / M) + 1))`` segments chosen at
    random (so tasks interleave); where K >= 3 at least one segment serves no task and, with
    M >= 2, at least one serves several.
    """
    K = check_int("n_segments", n_segments, minimum=2)
    M = check_int("n_tasks", n_tasks, minimum=1)
    rng = check_random_state(random_state)
    upper = max(2, min(K - 1, int(np.ceil(K / M)) + 1))
    for _ in range(10_000):
        out = np.zeros((K, M), dtype=bool)
        for i in range(M):
            size = rng.integers(2, upper + 1)
            out[rng.choice(K, size=size, replace=False), i] = True
        per_segment = out.sum(axis=1)
        if K >= 3 and not (per_segment == 0).any():
            continue
        if K >= 3 and M >= 2 and not (per_segment >= 2).any():
            continue
        return out
    raise InvalidParameterError(
        f"could not draw an assignment of {M} tasks over {K} segments with an empty and a "
        "shared segment; pass an explicit assignment"
    )


def _resolve_assignment(assignment, T: int, L: int, M: int, rng) -> np.ndarray:
    """The (T, M) step assignment: drawn, expanded from (K, M), or taken as given."""
    K = T // L
    if assignment is None:
        segments = random_segment_assignment(K, M, rng)
        steps = np.zeros((T, M), dtype=bool)
        steps[: K * L] = np.repeat(segments, L, axis=0)
        return steps
    a = np.asarray(assignment)
    if a.dtype != bool:
        if not np.isin(a, (0, 1)).all():
            raise InvalidParameterError("assignment must hold booleans or 0/1 values")
        a = a.astype(bool)
    if a.shape == (K, M):
        steps = np.zeros((T, M), dtype=bool)
        steps[: K * L] = np.repeat(a, L, axis=0)
        return steps
    if a.shape == (T, M):
        return a.copy()
    raise InvalidParameterError(
        f"assignment has shape {a.shape}, expected (n_segments, n_tasks) = ({K}, {M}) "
        f"or (n_steps, n_tasks) = ({T}, {M})"
    )


def _noise(rng, shape, scale: float, nonlinear: bool) -> np.ndarray:
    if nonlinear:
        return rng.laplace(scale=scale / np.sqrt(2), size=shape)
    return rng.normal(scale=scale, size=shape)


def _random_matrix(rng, d_out: int, d_in: int, gain: tuple[float, float]) -> np.ndarray:
    """A random (d_out, d_in) matrix whose singular values are uniform in ``gain``.

    Bounding the smallest singular value away from zero keeps every edge's effect visible
    (no near-cancellation that would make the data almost unfaithful to the DAG).
    """
    return _full_rank_matrix(rng, d_out, d_in, gain)


def _random_map(rng, x: np.ndarray, d_out: int, gain, nonlinear: bool) -> np.ndarray:
    """x @ W.T, plus for the nonlinear mechanism a tanh layer beside the linear skip."""
    w = _random_matrix(rng, d_out, x.shape[1], gain)
    out = x @ w.T
    if nonlinear:
        u = _random_matrix(rng, d_out, x.shape[1], (1.0, 1.5))
        out = 0.5 * out + 1.5 * np.tanh(x @ u.T)
    return out


def _task_nonlinearity(x: np.ndarray, kind: int) -> np.ndarray:
    """Monotone nonlinearities applied to a step's contribution to a task."""
    if kind == 0:
        return np.tanh(2 * x)
    if kind == 1:
        return x + 0.5 * x**3
    return x / (0.3 + np.abs(x))


def _mix(states: np.ndarray, D: int, mixing: str, rng) -> np.ndarray:
    """Injective map from states (n, T, d) to observations (n, T, D), shared by all steps."""
    if mixing == "identity":
        return states.copy()
    d = states.shape[2]
    w = _full_rank_matrix(rng, D, d)
    out = states @ w.T
    if mixing == "mlp":
        out = _leaky_relu(out)
        w2 = _full_rank_matrix(rng, D, D)
        out = _leaky_relu(out @ w2.T)
    return out


def _full_rank_matrix(rng, d_out: int, d_in: int, gain=(0.5, 1.0)) -> np.ndarray:
    """A (d_out, d_in) matrix, d_out >= d_in, with singular values uniform in ``gain``."""
    q_out, _ = np.linalg.qr(rng.normal(size=(d_out, d_in)))
    q_in, _ = np.linalg.qr(rng.normal(size=(d_in, d_in)))
    return q_out @ np.diag(rng.uniform(*gain, size=d_in)) @ q_in.T


def _leaky_relu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, LEAKY_SLOPE * x)


def _build_dag(T, M, connected, action_to_state, step_assignment) -> nx.DiGraph:
    dag = nx.DiGraph()
    dag.add_nodes_from([("s", t) for t in range(T)] + [("a", t) for t in range(T)])
    dag.add_nodes_from(("g", i) for i in range(M))
    for t in range(T):
        dag.add_edge(("s", t), ("a", t))
        if connected[t]:
            dag.add_edge(("s", t - 1), ("s", t))
            if action_to_state:
                dag.add_edge(("a", t - 1), ("s", t))
    for t, i in zip(*np.nonzero(step_assignment), strict=True):
        dag.add_edge(("a", int(t)), ("g", int(i)))
    return dag
