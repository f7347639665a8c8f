"""Synthetic i.i.d. data for Layer 2: task-relevant latent groups behind an injective mixing.

The generative model (DESIGN.md, section 4):

- latents s ~ N(0, I_d), laid out as ``overlap`` coordinates shared by every task, then each
  task's private coordinates, then ``n_irrelevant`` coordinates no task depends on;
- observations x = f(s), with f an injective leaky-ReLU MLP (``mixing_layers`` hidden
  layers, each a full-rank matrix followed by a leaky ReLU of slope 0.2; 0 layers is a
  linear map), each column of x standardised;
- task k: g_k = h_k(s_{I_k}) + noise, with h_k a sum of random non-monotone tanh networks of
  the coordinates of a random rotation of its group (standardised to unit variance), so that
  it depends on every direction of the group and no single direction explains much more than
  1 / |I_k| of it; for classification, g_k is cut at its quantiles into ``n_classes``
  balanced classes 0, 1, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._targets import per_task_types
from .._validation import (
    InvalidParameterError,
    check_float,
    check_int,
    check_random_state,
)
from .sequences import _full_rank_matrix, _leaky_relu

#: Hidden units of the random function of each rotated group coordinate.
TASK_HIDDEN = 4
#: Weight of the linear trend in each coordinate's part, against its unit-variance nonlinear rest.
TASK_LINEAR = 0.5


@dataclass(frozen=True)
class TaskLatents:
    """A simulated Layer-2 data set with its ground truth.

    Attributes
    ----------
    obs : ndarray of shape (n_samples, obs_dim)
    latents : ndarray of shape (n_samples, latent_dim)
    tasks : ndarray of shape (n_samples, n_tasks)
        Float targets; class labels 0, 1, ... (as floats) for classification tasks.
    groups : tuple of int ndarrays
        The latent coordinates each task depends on.
    irrelevant : int ndarray
        The coordinates no task depends on.
    task_types : tuple of str
    params : dict
        The generator's arguments, ``random_state`` included.
    """

    obs: np.ndarray
    latents: np.ndarray
    tasks: np.ndarray
    groups: tuple
    irrelevant: np.ndarray
    task_types: tuple
    params: dict = field(default_factory=dict)

    @property
    def group_mask(self) -> np.ndarray:
        """Bool array of shape (n_tasks, latent_dim): True where a task depends on a latent."""
        mask = np.zeros((len(self.groups), self.latents.shape[1]), dtype=bool)
        for k, group in enumerate(self.groups):
            mask[k, group] = True
        return mask

    def save(self, path) -> None:
        """Write the arrays to an ``.npz`` file (``groups`` as the (n_tasks, latent_dim) mask)."""
        np.savez_compressed(
            path,
            obs=self.obs,
            latents=self.latents,
            tasks=self.tasks,
            groups=self.group_mask,
            irrelevant=self.irrelevant,
            task_types=np.array(self.task_types),
        )


def make_task_latents(
    n_samples: int = 10_000,
    *,
    group_sizes=(2, 2),
    overlap: int = 0,
    n_irrelevant: int = 2,
    obs_dim: int = 12,
    mixing_layers: int = 3,
    task_type="regression",
    n_classes: int = 3,
    noise: float = 0.1,
    random_state=None,
) -> TaskLatents:
    """Simulate observations of latent task groups (module docstring: the model).

    Parameters
    ----------
    n_samples : int
    group_sizes : sequence of int
        Relevant latent coordinates of each task, shared ones included; one entry per task.
    overlap : int
        Coordinates shared by every task; each group must keep at least one of its own.
    n_irrelevant : int
        Latent coordinates no task depends on.
    obs_dim : int
        Width D of the observations; at least the latent dimension.
    mixing_layers : int
        Leaky-ReLU layers of the injective mixing; 0 gives a linear mixing.
    task_type : {"regression", "classification"} or sequence of them, one per task
    n_classes : int
        Classes of a classification task (balanced, by quantiles).
    noise : float
        Standard deviation of the task noise, relative to the unit variance of h_k.
    random_state : int, numpy Generator or None

    Returns
    -------
    TaskLatents
    """
    n = check_int("n_samples", n_samples, minimum=2)
    sizes = [check_int("group_sizes[]", s, minimum=1) for s in np.atleast_1d(group_sizes)]
    if not sizes:
        raise InvalidParameterError("group_sizes needs one entry per task, got none")
    overlap = check_int("overlap", overlap, minimum=0)
    if overlap >= min(sizes):
        raise InvalidParameterError(
            f"overlap={overlap} must be smaller than every group size {sizes}: each task "
            "needs at least one coordinate of its own"
        )
    n_irrelevant = check_int("n_irrelevant", n_irrelevant, minimum=0)
    d = overlap + sum(s - overlap for s in sizes) + n_irrelevant
    D = check_int("obs_dim", obs_dim, minimum=1)
    if D < d:
        raise InvalidParameterError(
            f"obs_dim={D} is smaller than the latent dimension {d}: the mixing would not be "
            "injective"
        )
    layers = check_int("mixing_layers", mixing_layers, minimum=0)
    types = tuple(per_task_types("task_type", task_type, len(sizes), "tasks (one per group)"))
    n_classes = check_int("n_classes", n_classes, minimum=2)
    noise = check_float("noise", noise, low=0.0)
    rng = check_random_state(random_state)

    groups, start = [], overlap
    for size in sizes:
        own = np.arange(start, start + size - overlap)
        groups.append(np.concatenate([np.arange(overlap), own]).astype(np.intp))
        start += size - overlap
    irrelevant = np.arange(start, start + n_irrelevant, dtype=np.intp)

    latents = rng.standard_normal((n, d))
    obs = _mix(latents, D, layers, rng)
    tasks = np.empty((n, len(sizes)))
    for k, group in enumerate(groups):
        score = _task_function(latents[:, group], rng) + noise * rng.standard_normal(n)
        tasks[:, k] = _classes(score, n_classes) if types[k] == "classification" else score
    params = dict(
        n_samples=n,
        group_sizes=tuple(sizes),
        overlap=overlap,
        n_irrelevant=n_irrelevant,
        obs_dim=D,
        mixing_layers=layers,
        task_type=types,
        n_classes=n_classes,
        noise=noise,
        random_state=random_state if not isinstance(random_state, np.random.Generator) else None,
    )
    return TaskLatents(obs, latents, tasks, tuple(groups), irrelevant, types, params)


def _mix(latents: np.ndarray, D: int, layers: int, rng) -> np.ndarray:
    """Injective map R^d -> R^D: full-rank matrices with leaky ReLUs between them."""
    d = latents.shape[1]
    h = latents @ _full_rank_matrix(rng, D, d).T
    for _ in range(layers):
        h = _leaky_relu(h)
        h = h @ _full_rank_matrix(rng, D, D).T
    return (h - h.mean(axis=0)) / h.std(axis=0)


def _task_function(group_latents: np.ndarray, rng) -> np.ndarray:
    """A random function of the whole group, standardised: (n,) values.

    The group is rotated at random, u = Q^T s; each rotated coordinate u_j gets a random
    non-monotone tanh network whose linear trend is cut to ``TASK_LINEAR`` of its variance, and
    the parts are summed. No single direction of the group then explains much more than
    1 / |group| of the task's variance (a near-linear task would depend on one direction only
    and leave the rest of its group unidentifiable).
    """
    size = group_latents.shape[1]
    q, _ = np.linalg.qr(rng.normal(size=(size, size)))
    rotated = group_latents @ q
    total = np.zeros(len(group_latents))
    for u in rotated.T:
        slope = rng.uniform(0.5, 1.5, TASK_HIDDEN) * rng.choice([-1.0, 1.0], TASK_HIDDEN)
        bias = rng.normal(size=TASK_HIDDEN)
        weight = rng.choice([-1.0, 1.0], TASK_HIDDEN) * rng.uniform(0.5, 1.0, TASK_HIDDEN)
        part = np.tanh(u[:, None] * slope + bias) @ weight
        part -= part.mean()
        part -= (part @ u) / (u @ u) * u
        part = part / part.std() + TASK_LINEAR * rng.choice([-1.0, 1.0]) * u
        total += part / part.std()
    return (total - total.mean()) / total.std()


def _classes(score: np.ndarray, n_classes: int) -> np.ndarray:
    cuts = np.quantile(score, np.arange(1, n_classes) / n_classes)
    return np.searchsorted(cuts, score).astype(float)
