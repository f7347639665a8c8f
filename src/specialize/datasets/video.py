"""Procedurally rendered multi-agent video whose tasks are colliders of their steps' actions.

The latent model is exactly that of :func:`make_task_sequences` with ``state_dim = 2 *
n_agents``: the states form a Markov chain, each state emits an action, each task variable is
a child of the actions of the steps that serve it. The video only changes how the states are
observed: agent k's position at step t is its two state coordinates ``(2k, 2k + 1)`` squashed
into the canvas, and each frame shows every agent as a Gaussian blob.

Position map (pixel units, pixel centres at 0, 1, ..., S - 1, canvas edges at -0.5 and S - 0.5;
coordinate 0 is the column x, coordinate 1 the row y)::

    position = (S - 1) / 2 + radius * tanh(state / STATE_SCALE),
    radius = (S - 1) / 2 - 2 * blob_width.

``STATE_SCALE`` = 1.5 is about the standard deviation of the chain's coordinates (0.98 to
1.54 over steps, measured on the default model), so one standard deviation reaches 76 % of
the radius. tanh is smooth and strictly increasing, so the map is injective, and every blob
centre keeps two blob widths (plus half a pixel) from the edge.

Render: agent k adds ``colour_k * B(position_k)`` to the frame, where B is a Gaussian of
standard deviation ``blob_width`` integrated over each pixel's area (anti-aliased; its
intensity-weighted centroid is the position up to the cut at the canvas edge), scaled so that
a blob centred on a pixel gives that pixel the value 1. Greyscale agents have the distinct
intensities 2 (k + 1) / (N (N + 1)), which sum to 1; with three channels agents 0, 1, 2 are
pure red, green and blue, and more agents get evenly spaced hues scaled so that every
channel's colours sum to at most 1. Frames therefore lie in [0, 1] without clipping at zero
pixel noise, and a frame is a sum of blobs whose amplitudes tell the agents apart. Optional
Gaussian pixel noise is added afterwards, then frames are clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
from scipy.special import ndtr

from .._validation import (
    DataValidationError,
    InvalidParameterError,
    check_float,
    check_int,
    check_random_state,
)
from .sequences import TaskSequences, make_task_sequences

#: Scale of the state coordinates in the position map (about their standard deviation).
STATE_SCALE = 1.5
#: Smallest side of the square canvas, in pixels.
MIN_IMAGE_SIZE = 8
#: Readable task labels, cycled with an index when there are more than three tasks.
TASK_LABELS = ("reach goal", "pass", "formation")
#: Blob centres keep this many blob widths from the outermost pixel centres.
MARGIN_WIDTHS = 2.0
DTYPES = ("float32", "float64", "uint8")
# Floats per rendering chunk (8 MB in float32): bounds the memory of the temporaries.
_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class AgentVideo:
    """A rendered multi-agent video data set with its ground truth.

    Attributes
    ----------
    frames : ndarray of shape (n_samples, n_steps, image_size, image_size, channels)
        Values in [0, 1] (float32 or float64), or 0-255 (uint8).
    states : ndarray of shape (n_samples, n_steps, 2 * n_agents)
        The latent states of :func:`make_task_sequences`; agent k owns columns 2k, 2k + 1.
    positions : ndarray of shape (n_samples, n_steps, n_agents, 2)
        Blob centres in pixels, (x, y) = (column, row).
    actions : ndarray of shape (n_samples, n_steps, 2 * n_agents)
    tasks : ndarray of shape (n_samples, n_tasks)
    segment_assignment : bool ndarray of shape (n_segments, n_tasks)
    step_assignment : bool ndarray of shape (n_steps, n_tasks)
    dag : networkx.DiGraph
        Nodes ``("s", t)``, ``("a", t)``, ``("g", i)``, as for :class:`TaskSequences`.
    segment_length : int
    task_names : tuple of str
        One readable label per task (labels only: every task is the same kind of collider).
    params : dict
        The generator's arguments, ``random_state`` included.
    """

    frames: np.ndarray
    states: np.ndarray
    positions: np.ndarray
    actions: np.ndarray
    tasks: np.ndarray
    segment_assignment: np.ndarray
    step_assignment: np.ndarray
    dag: nx.DiGraph = field(repr=False)
    segment_length: int = 2
    task_names: tuple = ()
    params: dict = field(default_factory=dict)

    def flat_obs(self, dtype=np.float64) -> np.ndarray:
        """Frames as observations of shape (n_samples, n_steps, H * W * C), values in [0, 1].

        This is the (n, T, D) layout that :func:`discover_structure` and ``Specializer``
        take; uint8 frames are divided by 255.
        """
        n, T = self.frames.shape[:2]
        out = self.frames.reshape(n, T, -1).astype(dtype)
        if self.frames.dtype == np.uint8:
            out /= 255
        return out

    def as_task_sequences(self, dtype=np.float64) -> TaskSequences:
        """The same data set as :class:`TaskSequences` with ``obs = self.flat_obs(dtype)``."""
        return TaskSequences(
            obs=self.flat_obs(dtype),
            states=self.states,
            actions=self.actions,
            tasks=self.tasks,
            segment_assignment=self.segment_assignment,
            step_assignment=self.step_assignment,
            dag=self.dag,
            segment_length=self.segment_length,
            params=dict(self.params),
        )

    def save(self, path) -> None:
        """Write the arrays (not the DAG) to an ``.npz`` file; ``frames`` keep their 5-D shape."""
        np.savez_compressed(
            path,
            frames=self.frames,
            states=self.states,
            positions=self.positions,
            actions=self.actions,
            tasks=self.tasks,
            segment_assignment=self.segment_assignment,
            step_assignment=self.step_assignment,
            segment_length=np.int64(self.segment_length),
            task_names=np.array(self.task_names, dtype=str),
        )


def make_agent_video(
    n_samples: int = 2000,
    n_steps: int = 12,
    n_tasks: int = 2,
    *,
    n_agents: int = 2,
    image_size: int = 32,
    channels: int = 1,
    segment_length: int = 2,
    assignment=None,
    blob_width: float | None = None,
    pixel_noise: float = 0.0,
    dtype=np.float32,
    random_state=None,
) -> AgentVideo:
    """Simulate n videos of agents whose moves serve tasks that are colliders of their steps.

    The states, actions, tasks and step-task truth are those of ``make_task_sequences(
    n_samples, n_steps, n_tasks, state_dim=2 * n_agents, segment_length=segment_length,
    assignment=assignment, random_state=random_state)``, value for value; the frames render
    them (module docstring: the position map and the render).

    Parameters
    ----------
    n_samples : int, default=2000
        Number of videos n.
    n_steps : int, default=12
        Frames T per video (one per time step).
    n_tasks : int, default=2
        Task variables M.
    n_agents : int, default=2
        Agents N; the state of a step has 2N coordinates.
    image_size : int, default=32
        Side S of the square frames in pixels (>= 8).
    channels : {1, 3}, default=1
        Greyscale (agents differ in intensity) or RGB (agents differ in colour).
    segment_length : int, default=2
        Steps L per segment, as in :func:`make_task_sequences`.
    assignment : bool array of shape (K, M) or (T, M), optional
        The step-task structure; drawn at random when None.
    blob_width : float or None
        Standard deviation of each blob in pixels; None gives ``image_size / 16``. Must leave
        room for the margin: ``blob_width < (image_size - 1) / 4``.
    pixel_noise : float, default=0.0
        Standard deviation of Gaussian noise added to every pixel (frame units, before
        clipping to [0, 1]).
    dtype : {np.float32, np.float64, np.uint8}
        Frame type; uint8 frames hold round(255 * value).
    random_state : int, Generator or None

    Returns
    -------
    AgentVideo
    """
    n_agents = check_int("n_agents", n_agents, minimum=1)
    size = check_int("image_size", image_size, minimum=MIN_IMAGE_SIZE)
    channels = _check_channels(channels)
    out_dtype = _check_dtype(dtype)
    width = _check_blob_width(blob_width, size)
    noise = check_float("pixel_noise", pixel_noise, low=0.0)
    rng = check_random_state(random_state)

    # Passing the generator (not a fresh seed) makes the latents those of
    # make_task_sequences(..., random_state=random_state); the noise is drawn after them.
    latent = make_task_sequences(
        n_samples,
        n_steps,
        n_tasks,
        segment_length=segment_length,
        state_dim=2 * n_agents,
        assignment=assignment,
        random_state=rng,
    )
    n, T = latent.states.shape[:2]
    positions = states_to_positions(latent.states, image_size=size, blob_width=width)
    frames = render_agents(
        positions.reshape(n * T, n_agents, 2),
        image_size=size,
        channels=channels,
        blob_width=width,
        pixel_noise=noise,
        dtype=out_dtype,
        random_state=rng if noise > 0 else None,
    ).reshape(n, T, size, size, channels)
    params = dict(
        n_samples=n,
        n_steps=T,
        n_tasks=latent.tasks.shape[1],
        n_agents=n_agents,
        image_size=size,
        channels=channels,
        segment_length=latent.segment_length,
        assignment=None if assignment is None else np.asarray(assignment).tolist(),
        blob_width=width,
        pixel_noise=noise,
        dtype=out_dtype.name,
        random_state=random_state
        if isinstance(random_state, (int, type(None)))
        else repr(random_state),
    )
    return AgentVideo(
        frames=frames,
        states=latent.states,
        positions=positions,
        actions=latent.actions,
        tasks=latent.tasks,
        segment_assignment=latent.segment_assignment,
        step_assignment=latent.step_assignment,
        dag=latent.dag,
        segment_length=latent.segment_length,
        task_names=task_names(latent.tasks.shape[1]),
        params=params,
    )


def task_names(n_tasks: int) -> tuple:
    """Readable labels: the three base names, each with a cycle index when n_tasks > 3."""
    M = check_int("n_tasks", n_tasks, minimum=1)
    if M <= len(TASK_LABELS):
        return TASK_LABELS[:M]
    return tuple(f"{TASK_LABELS[i % 3]} {i // 3 + 1}" for i in range(M))


def states_to_positions(states, *, image_size: int, blob_width: float | None = None) -> np.ndarray:
    """Map states (..., 2 * n_agents) to blob centres (..., n_agents, 2) in pixels.

    position = (S - 1) / 2 + radius * tanh(state / STATE_SCALE), with radius = (S - 1) / 2 -
    2 * blob_width: smooth, strictly increasing per coordinate, inside the canvas.
    """
    size = check_int("image_size", image_size, minimum=MIN_IMAGE_SIZE)
    width = _check_blob_width(blob_width, size)
    states = np.asarray(states, dtype=np.float64)
    if states.ndim < 1 or states.shape[-1] < 2 or states.shape[-1] % 2:
        raise DataValidationError(
            f"states has shape {states.shape}, expected (..., 2 * n_agents) with an even, "
            "non-zero last dimension"
        )
    centre = (size - 1) / 2
    radius = centre - MARGIN_WIDTHS * width
    positions = centre + radius * np.tanh(states / STATE_SCALE)
    return positions.reshape(*states.shape[:-1], states.shape[-1] // 2, 2)


def agent_colours(n_agents: int, channels: int) -> np.ndarray:
    """Per-agent colours of shape (n_agents, channels) whose columns sum to at most 1.

    Greyscale: intensities 2 (k + 1) / (N (N + 1)). RGB: red, green, blue for the first three
    of at most three agents; for more, evenly spaced hues scaled so no channel sums above 1.
    """
    N = check_int("n_agents", n_agents, minimum=1)
    channels = _check_channels(channels)
    if channels == 1:
        return (2.0 * np.arange(1, N + 1) / (N * (N + 1)))[:, None]
    if N <= 3:
        return np.eye(3)[:N]
    hue = np.arange(N) / N
    colours = np.stack(
        [
            np.clip(np.abs(6 * hue - 3) - 1, 0, 1),
            np.clip(2 - np.abs(6 * hue - 2), 0, 1),
            np.clip(2 - np.abs(6 * hue - 4), 0, 1),
        ],
        axis=1,
    )
    return colours / colours.sum(axis=0).max()


def render_agents(
    positions,
    *,
    image_size: int,
    channels: int = 1,
    blob_width: float | None = None,
    pixel_noise: float = 0.0,
    dtype=np.float32,
    random_state=None,
) -> np.ndarray:
    """Render frames of shape (n_frames, S, S, channels) from positions (n_frames, n_agents, 2).

    Positions are in pixels, (x, y) = (column, row). Each agent adds its colour times a
    pixel-integrated Gaussian blob; noise of standard deviation ``pixel_noise``, drawn from
    ``random_state``, is added and the frames are clipped to [0, 1] (uint8: scaled to 0-255
    and rounded). Arguments as in :func:`make_agent_video`.
    """
    size = check_int("image_size", image_size, minimum=MIN_IMAGE_SIZE)
    channels = _check_channels(channels)
    width = _check_blob_width(blob_width, size)
    noise = check_float("pixel_noise", pixel_noise, low=0.0)
    out_dtype = _check_dtype(dtype)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[2] != 2 or positions.shape[1] < 1:
        raise DataValidationError(
            f"positions has shape {positions.shape}, expected (n_frames, n_agents, 2)"
        )
    if not np.isfinite(positions).all():
        raise DataValidationError("positions contains NaN or inf")
    rng = check_random_state(random_state) if noise > 0 else None
    n_frames, n_agents = positions.shape[:2]
    work = np.float64 if out_dtype == np.float64 else np.float32
    colours = agent_colours(n_agents, channels).astype(work)
    edges = np.arange(size + 1) - 0.5
    # per axis, so that a blob centred on a pixel gives that pixel the value 1
    peak = 2 * ndtr(0.5 / width) - 1
    out = np.empty((n_frames, size, size, channels), dtype=out_dtype)
    chunk = max(1, _CHUNK_ELEMENTS // (size * size * channels))
    for start in range(0, n_frames, chunk):
        stop = min(start + chunk, n_frames)
        # channels first while drawing, so that every update is over contiguous memory
        frames = np.zeros((stop - start, channels, size, size), dtype=work)
        for k in range(n_agents):
            profile_x = _pixel_profile(positions[start:stop, k, 0], edges, width, peak, work)
            profile_y = _pixel_profile(positions[start:stop, k, 1], edges, width, peak, work)
            blob = profile_y[:, :, None] * profile_x[:, None, :]
            for c in np.flatnonzero(colours[k]):
                frames[:, c] += colours[k, c] * blob
        if noise > 0:
            frames += noise * rng.standard_normal(frames.shape, dtype=work)
        np.clip(frames, 0.0, 1.0, out=frames)
        if out_dtype == np.uint8:
            np.rint(frames * 255, out=frames)
        out[start:stop] = frames.transpose(0, 2, 3, 1)
    return out


def plot_frames(video: AgentVideo, sample: int = 0, path=None, *, steps=None):
    """Show the frames of one video in a row, each titled with its step and the tasks it serves.

    Parameters
    ----------
    video : AgentVideo
    sample : int, default=0
        Which of the n videos.
    path : str or Path, optional
        Where to save the figure (PNG, or any format matplotlib infers from the suffix).
    steps : sequence of int, optional
        Steps to show; all by default.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    n, T = video.frames.shape[:2]
    sample = check_int("sample", sample, minimum=0, maximum=n - 1)
    shown = list(range(T)) if steps is None else [int(t) for t in steps]
    if not shown or min(shown) < 0 or max(shown) >= T:
        raise InvalidParameterError(f"steps must be a non-empty list of steps in [0, {T - 1}]")
    fig = Figure(figsize=(1.3 * len(shown), 1.75), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(shown)))
    frames = video.frames[sample]
    scale = 255.0 if frames.dtype == np.uint8 else 1.0
    for ax, t in zip(axes, shown, strict=True):
        image = frames[t] / scale
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(image)
        served = [video.task_names[i] for i in np.flatnonzero(video.step_assignment[t])]
        ax.set_title(f"t={t}\n" + (", ".join(served) or "-"), fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def _pixel_profile(centres, edges, width: float, peak: float, dtype) -> np.ndarray:
    """Gaussian mass of each pixel along one axis, (n_frames, S), divided by the centred peak."""
    cdf = ndtr((edges[None, :] - centres[:, None]) / width)
    return (np.diff(cdf, axis=1) / peak).astype(dtype)


def _check_channels(channels) -> int:
    channels = check_int("channels", channels)
    if channels not in (1, 3):
        raise InvalidParameterError(f"channels must be 1 (greyscale) or 3 (RGB); got {channels}")
    return channels


def _check_dtype(dtype) -> np.dtype:
    try:
        # np.dtype(None) is float64: refuse None rather than pick a type silently
        out = None if dtype is None else np.dtype(dtype)
    except TypeError:
        out = None
    if out is None or out.name not in DTYPES:
        raise InvalidParameterError(
            f"dtype must be one of np.float32, np.float64, np.uint8; got {dtype!r}"
        )
    return out


def _check_blob_width(blob_width, image_size: int) -> float:
    if blob_width is None:
        return image_size / 16
    width = check_float("blob_width", blob_width, low=0.0, low_inclusive=False)
    limit = (image_size - 1) / (2 * MARGIN_WIDTHS)
    if width >= limit:
        raise InvalidParameterError(
            f"blob_width must be < (image_size - 1) / 4 = {limit:g} so that blobs fit inside "
            f"the {image_size}x{image_size} canvas with a margin; got {width:g}"
        )
    return width
