"""Structure recovery from rendered video: Algorithm 1 on pixels, on learned latents, on states.

Data of a (setting, seed) run: ``make_agent_video(n, T, M, n_agents=N, image_size=S,
channels=1, pixel_noise=0.02, random_state=seed)``, agents rendered as Gaussian blobs whose
positions are the states of the collider model of ``make_task_sequences`` (state dimension
2N, segments of 2 steps). Full: n = 2,000, T = 12, M = 2, S = 32, N in {2, 3}; quick:
n = 1,000, T = 8, M = 2, S = 16, N = 2.

Methods, each scored at the step level with the wall time of its fit:

- ``algorithm-1-pixels``: :func:`specialize.discover_structure` with the neural CMI test
  (``"neural-cmi"``, :data:`NEURAL_PARAMS`) on the frames average-pooled to
  :data:`PIXEL_GRID` x :data:`PIXEL_GRID` pixels. On the 1,024 pixels of 32 x 32 frames one
  test took 185 to 233 s on one thread at n = 3,000 (the test's defaults, or 30 epochs with 299
  permutations), and a run has 24 tests: over an hour per run, against 7 to 9 s per test on
  the pooled frames (defaults, same n). Pooling keeps the observation a raw image (an average
  over 4 x 4 pixel blocks, never the states or a learned feature); a block is two blob
  widths wide, so a blob spreads over two to three blocks and its position stays visible.
- ``algorithm-1-latent`` (ours): :class:`specialize.Specializer` without specialists: a
  StepVAE of ``latent_dim = 2 N`` (the agents' position coordinates; :data:`VAE_EPOCHS`
  epochs) learns every frame's latent, and Algorithm 1 with the package defaults (Fisher-z)
  runs on its active coordinates; ``n_active`` records how many.
- ``algorithm-1-temporal``: the same with ``temporal_prior=True``, a VAE whose prior is a
  learned linear-Gaussian transition p(z_t | z_{t-1}): the documented substitute for LEAP
  (Yao et al., ICLR 2022, "Learning temporally causal latent processes from general temporal
  data"). LEAP is not built here because its guarantees rest on conditions these videos do
  not meet: its nonparametric version identifies the latents through nonstationary process
  noise (noise distributions that change across regimes), with a learned transition per
  latent and noise densities fitted through the Jacobian of that transition; its parametric
  version assumes linear transitions with non-Gaussian noise. Here the states follow a
  linear chain with Gaussian noise of one fixed law (no regimes), so a faithful LEAP would
  be fitted outside its own assumptions. The
  substitute keeps LEAP's idea, a learned temporal prior on the latents, in the form closest
  to this chain: a linear transition with Gaussian noise (one transition for all steps,
  where the generator draws a matrix per step).
- ``algorithm-1-states``: Algorithm 1 (package defaults) on the true states, the reference.

Metrics per row: step ``precision``, ``recall``, ``f1``, ``accuracy`` and ``exact`` at
alpha = 0.05 (:func:`~specialize.experiments.structure.step_scores`); ``map``, the mean over
tasks of the average precision of the steps ranked by their evidence (:func:`step_evidence`,
:func:`mean_average_precision`); ``seconds``; and ``recovered``, the step-task matrix as text
(:func:`format_step_tasks`), which the structure figure reads.

Plots: ``f1_map.png`` (F1 and mAP against N) and ``frames_structure.png`` (the frames of one
video of the first setting and smallest seed, and under them the truth and every method's
recovered structure, errors outlined).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from .._validation import DataValidationError, InvalidParameterError, check_int
from ..datasets import TaskSequences
from ..datasets.video import AgentVideo, make_agent_video
from ..structure import TaskStructure, discover_structure
from ..structure.plan import KIND_BLOCK, KIND_UNIT
from .observed import fit_latent_structure
from .runner import Experiment
from .structure import (
    SEGMENT_LENGTH,
    STRUCTURE_METRICS,
    StructureMethod,
    evaluate_methods,
    plot_scores_against,
    step_scores,
)

#: Standard deviation of the Gaussian pixel noise (frame units; frames lie in [0, 1]).
PIXEL_NOISE = 0.02
#: Side of the grid the pixel method sees: each frame average-pooled to PIXEL_GRID^2 pixels.
PIXEL_GRID = 8
#: Neural CMI settings of the pixel method, chosen for cost. 249 permutations put the smallest
#: p-value (1/250) under the Holm threshold 0.05 / 12 of the K * M = 12 decisions of a run;
#: 20 epochs (default 100) and 32 hidden units (default 64) shorten training; 2 y-permutations
#: (default 4) shorten scoring but keep the contrast without which the test rejects true nulls
#: far too often (``docs/ci.md``; its calibration with 2 is not measured). At n = 2,000 a run's
#: 24 tests take about 58 s on one thread, 40 % of it the neighbour searches in z.
NEURAL_PARAMS = {"hidden": 32, "epochs": 20, "n_permutations": 249, "y_permutations": 2}
#: StepVAE epochs of the latent methods (full, quick).
VAE_EPOCHS = (20, 10)
SETTING_KEYS = ("n_samples", "n_steps", "n_tasks", "image_size", "n_agents")
VIDEO_METRICS = (*STRUCTURE_METRICS, "map", "n_active")
#: Signed statistics whose size, not sign, measures dependence (Fisher-z of one column pair).
TWO_SIDED_STATISTICS = ("fisherz",)
#: Text of the recovered matrix: one character per task, steps separated by "|".
MARK_SERVES, MARK_FREE, STEP_SEPARATOR = "x", ".", "|"


def video_settings(quick: bool) -> list[dict]:
    """N in {2, 3} agents with n = 2,000, T = 12, M = 2, 32 x 32 (quick: N = 2, n = 1,000,
    T = 8, 16 x 16)."""
    if quick:
        return [{"n_samples": 1_000, "n_steps": 8, "n_tasks": 2, "image_size": 16, "n_agents": 2}]
    return [
        {"n_samples": 2_000, "n_steps": 12, "n_tasks": 2, "image_size": 32, "n_agents": N}
        for N in (2, 3)
    ]


def make_study_video(setting: dict, seed: int) -> AgentVideo:
    """The greyscale video of a (setting, seed) run."""
    return make_agent_video(
        setting["n_samples"],
        setting["n_steps"],
        setting["n_tasks"],
        n_agents=setting["n_agents"],
        image_size=setting["image_size"],
        channels=1,
        segment_length=SEGMENT_LENGTH,
        pixel_noise=PIXEL_NOISE,
        random_state=seed,
    )


def run_video(setting: dict, seed: int, quick: bool) -> list[dict]:
    """One run: the video of ``setting`` and ``seed``, one row per method."""
    data = make_study_video(setting, seed).as_task_sequences()
    epochs = VAE_EPOCHS[1] if quick else VAE_EPOCHS[0]
    latent_dim = 2 * setting["n_agents"]
    methods = (
        StructureMethod("algorithm-1-pixels", partial(_pixels, image_size=setting["image_size"])),
        StructureMethod(
            "algorithm-1-latent",
            partial(_latent, latent_dim=latent_dim, epochs=epochs, temporal=False),
        ),
        StructureMethod(
            "algorithm-1-temporal",
            partial(_latent, latent_dim=latent_dim, epochs=epochs, temporal=True),
        ),
        StructureMethod("algorithm-1-states", _states),
    )
    return evaluate_methods(data, seed, methods)


# ---------------------------------------------------------------------------------- methods


def pool_frames(obs, *, image_size: int, factor: int) -> np.ndarray:
    """Average-pool flat greyscale frames over ``factor`` x ``factor`` pixel blocks.

    Parameters
    ----------
    obs : ndarray of shape (n_samples, n_steps, image_size ** 2)
        Frames flattened row by row (``AgentVideo.flat_obs()`` of one channel).
    image_size : int
        Side S of the frames in pixels.
    factor : int
        Side of the pooled blocks in pixels; must divide S.

    Returns
    -------
    ndarray of shape (n_samples, n_steps, (S // factor) ** 2)
    """
    size = check_int("image_size", image_size, minimum=1)
    factor = check_int("factor", factor, minimum=1)
    obs = np.asarray(obs, dtype=float)
    if obs.ndim != 3 or obs.shape[2] != size * size:
        raise DataValidationError(
            f"obs has shape {obs.shape}; expected (n_samples, n_steps, {size * size}), "
            f"greyscale {size} x {size} frames flattened"
        )
    if size % factor:
        raise InvalidParameterError(f"factor {factor} does not divide image_size {size}")
    n, T = obs.shape[:2]
    side = size // factor
    blocks = obs.reshape(n, T, side, factor, side, factor)
    return blocks.mean(axis=(3, 5)).reshape(n, T, side * side)


def _pixels(data: TaskSequences, seed: int, image_size: int) -> dict:
    pixels = pool_frames(data.obs, image_size=image_size, factor=image_size // PIXEL_GRID)
    result = discover_structure(
        pixels,
        data.tasks,
        segment_length=SEGMENT_LENGTH,
        test="neural-cmi",
        test_params=dict(NEURAL_PARAMS),
        random_state=seed,
    )
    return structure_row(result, data)


def _latent(data: TaskSequences, seed: int, latent_dim: int, epochs: int, temporal: bool) -> dict:
    model = fit_latent_structure(
        data, seed, latent_dim=latent_dim, epochs=epochs, temporal_prior=temporal
    )
    return {**structure_row(model.structure_, data), "n_active": int(model.active_dims_.size)}


def _states(data: TaskSequences, seed: int) -> dict:
    result = discover_structure(
        data.states, data.tasks, segment_length=SEGMENT_LENGTH, random_state=seed
    )
    return structure_row(result, data)


def structure_row(result: TaskStructure, data: TaskSequences) -> dict:
    """Step scores, ``map`` and the ``recovered`` text of a structure against ``data``'s truth."""
    return {
        **step_scores(result.step_tasks, data),
        "map": mean_average_precision(step_evidence(result), data.step_assignment),
        "recovered": format_step_tasks(result.step_tasks),
    }


# ---------------------------------------------------------------------------------- evidence


def step_evidence(result: TaskStructure) -> np.ndarray:
    """Evidence that each step serves each task, as a ranking score (higher: more evidence).

    A step's evidence for task k is that of its segment (of itself in step mode). Units are
    ordered by their adjusted p-value (``result.unit_evidence``), ties broken by the raw
    p-value of the test that decided the unit, then by its statistic (larger first; its
    absolute value for the two-sided Fisher-z of one column pair). A unit's deciding test is
    the one ``unit_evidence`` takes its p-value from: in segment mode the block test of the
    segment's steps, or its representative's test where the previous segment shows
    dependence. Statistics of the two kinds are compared as the test reports them, so this
    last tie rule is only a rough one across kinds. Units still tied share a score. Trailing
    steps outside every segment get the lowest score.

    Parameters
    ----------
    result : TaskStructure
        Of mode "segment", "unary" or "step".

    Returns
    -------
    ndarray of shape (n_steps, n_tasks)
        Dense ranks of the units turned into scores: only their order means anything.
    """
    if result.mode == "pairwise":
        raise InvalidParameterError(
            "step_evidence needs a result of mode 'segment', 'unary' or 'step'; got mode "
            "'pairwise', whose tests are about pairs of segments"
        )
    adjusted = np.asarray(result.unit_evidence, dtype=float)
    raw, statistic = deciding_tests(result)
    if result.test in TWO_SIDED_STATISTICS:
        statistic = np.abs(statistic)
    keys = np.column_stack(
        [
            _nan_to_inf(adjusted).ravel(),
            _nan_to_inf(raw).ravel(),
            -np.where(np.isnan(statistic), -np.inf, statistic).ravel(),
        ]
    )
    # np.unique sorts rows lexicographically: rank 0 is the strongest evidence
    _, rank = np.unique(keys, axis=0, return_inverse=True)
    unit_scores = -rank.reshape(adjusted.shape).astype(float)
    if result.mode == "step":
        return unit_scores
    L = result.segment_length
    out = np.full((result.n_steps, result.n_tasks), unit_scores.min() - 1.0)
    out[: unit_scores.shape[0] * L] = np.repeat(unit_scores, L, axis=0)
    return out


def deciding_tests(result: TaskStructure) -> tuple[np.ndarray, np.ndarray]:
    """Raw p-value and statistic of the test that decides each unit.

    Parameters
    ----------
    result : TaskStructure
        Of mode "segment", "unary" or "step".

    Returns
    -------
    (raw, statistic) : ndarrays of the shape of ``result.unit_evidence``, (n_units, n_tasks)
        In segment mode, the block test's where the previous segment shows no dependence at
        alpha (or everywhere when actions do not feed states), the representative test's
        elsewhere; the unit test's in the other modes. A missing statistic is NaN.
    """
    tests = result.tests
    n_units = result.unit_evidence.shape[0]
    shape = (n_units, result.n_tasks)

    def table(kind: int, values: np.ndarray, fill: float) -> np.ndarray:
        out = np.full(shape, fill)
        chosen = tests["kind"] == kind
        out[tests["unit"][chosen], tests["task"][chosen]] = values[chosen]
        return out

    pvalue = np.asarray(tests["pvalue"], dtype=float)
    statistic = np.asarray(tests["statistic"], dtype=float)
    single_p, single_s = table(KIND_UNIT, pvalue, 1.0), table(KIND_UNIT, statistic, np.nan)
    if result.mode != "segment":
        return single_p, single_s
    block_p, block_s = table(KIND_BLOCK, pvalue, 1.0), table(KIND_BLOCK, statistic, np.nan)
    # the rule of specialize.structure.result.unit_pvalues
    use_block = np.ones(shape, dtype=bool)
    if result.actions_feed_states:
        use_block[1:] = np.minimum(single_p, block_p)[:-1] > result.alpha
    return np.where(use_block, block_p, single_p), np.where(use_block, block_s, single_s)


def _nan_to_inf(values: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), np.inf, values)


def average_precision_by_task(evidence, truth) -> np.ndarray:
    """Average precision of each task's steps ranked by their evidence.

    Parameters
    ----------
    evidence : array of shape (n_steps, n_tasks)
        Higher means more evidence that the step serves the task (:func:`step_evidence`).
        Steps with equal evidence enter the ranking together, as one threshold.
    truth : bool array of shape (n_steps, n_tasks)
        Which steps serve which task.

    Returns
    -------
    ndarray of shape (n_tasks,)
        ``sklearn.metrics.average_precision_score`` per task: the mean, over the thresholds
        of the ranking, of the precision at each threshold weighted by the recall it adds.
        NaN for a task that no step serves (its average precision is undefined).
    """
    from sklearn.metrics import average_precision_score

    evidence = np.asarray(evidence, dtype=float)
    truth = np.asarray(truth)
    if evidence.ndim != 2:
        raise DataValidationError(
            f"evidence has shape {evidence.shape}; expected (n_steps, n_tasks)"
        )
    if truth.shape != evidence.shape:
        raise DataValidationError(
            f"truth has shape {truth.shape} but evidence has shape {evidence.shape}; they "
            "must match, (n_steps, n_tasks)"
        )
    if not np.isfinite(evidence).all():
        raise DataValidationError("evidence contains NaN or inf")
    truth = truth.astype(bool)
    return np.array(
        [
            average_precision_score(truth[:, k], evidence[:, k]) if truth[:, k].any() else np.nan
            for k in range(truth.shape[1])
        ]
    )


def mean_average_precision(evidence, truth) -> float:
    """Mean over tasks of :func:`average_precision_by_task` (tasks no step serves are left out;
    NaN when no task has a step)."""
    per_task = average_precision_by_task(evidence, truth)
    if np.isnan(per_task).all():
        return float("nan")
    return float(np.nanmean(per_task))


def format_step_tasks(step_tasks) -> str:
    """A (T, M) bool matrix as text: per step one mark per task, steps joined by "|"."""
    matrix = np.asarray(step_tasks, dtype=bool)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise DataValidationError(
            f"step_tasks has shape {matrix.shape}; expected (n_steps, n_tasks), both >= 1"
        )
    return STEP_SEPARATOR.join(
        "".join(MARK_SERVES if v else MARK_FREE for v in row) for row in matrix
    )


def parse_step_tasks(text: str) -> np.ndarray:
    """The (T, M) bool matrix of :func:`format_step_tasks`."""
    steps = str(text).split(STEP_SEPARATOR)
    if len({len(s) for s in steps}) != 1 or set("".join(steps)) - {MARK_SERVES, MARK_FREE}:
        raise DataValidationError(
            f"{text!r} is not a step-task matrix written by format_step_tasks: steps of equal "
            f"length made of {MARK_SERVES!r} and {MARK_FREE!r}, joined by {STEP_SEPARATOR!r}"
        )
    return np.array([[c == MARK_SERVES for c in s] for s in steps], dtype=bool)


# ---------------------------------------------------------------------------------- plots


def plot_video_study(rows: list[dict], out_dir: Path) -> list[Path]:
    """``f1_map.png``: F1 and mAP against N; ``frames_structure.png``: :func:`plot_run`."""
    paths = plot_scores_against(
        rows,
        out_dir,
        x="n_agents",
        x_label="agents N",
        metrics=("f1", "map"),
        filename="f1_map.png",
    )
    first = {k: rows[0][k] for k in SETTING_KEYS}
    seed = min(r["seed"] for r in rows if all(r[k] == first[k] for k in SETTING_KEYS))
    run_rows = [
        r for r in rows if r["seed"] == seed and all(r[k] == first[k] for k in SETTING_KEYS)
    ]
    path = Path(out_dir) / "frames_structure.png"
    plot_run(make_study_video(first, seed), run_rows, path)
    return [*paths, path]


def plot_run(video: AgentVideo, rows: list[dict], path=None, *, sample: int = 0):
    """The frames of one video and, under them, the truth and each row's recovered structure.

    Parameters
    ----------
    video : AgentVideo
        The run's video.
    rows : list of dict
        The run's rows: ``method``, ``recovered`` (:func:`format_step_tasks`; rows without it
        are left out), and ``f1`` and ``map`` for the panel titles.
    path : str or Path, optional
        Where to save the PNG.
    sample : int, default=0
        Which video's frames to show.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    n, T = video.frames.shape[:2]
    sample = check_int("sample", sample, minimum=0, maximum=n - 1)
    truth = video.step_assignment
    M = truth.shape[1]
    panels = [("truth", truth, "")]
    for row in rows:
        if row.get("recovered") is None:
            continue
        recovered = parse_step_tasks(row["recovered"])
        if recovered.shape != truth.shape:
            raise DataValidationError(
                f"row of {row['method']!r}: recovered has shape {recovered.shape}, the truth "
                f"{truth.shape}"
            )
        panels.append((row["method"], recovered, f"  F1 {row['f1']:.2f}, mAP {row['map']:.2f}"))
    # heights in inches: a frame row as high as a frame is wide, plus its title lines
    frame_height = 0.8 + 0.11 * (1 + int(truth.sum(axis=1).max()))
    panel_height = 0.25 * M + 0.55
    fig = Figure(
        figsize=(0.85 * T + 1.4, 0.5 + frame_height + len(panels) * panel_height),
        layout="constrained",
    )
    grid = fig.add_gridspec(
        1 + len(panels), T, height_ratios=[frame_height] + [panel_height] * len(panels)
    )
    frames = video.frames[sample].astype(float)
    if video.frames.dtype == np.uint8:
        frames /= 255
    for t in range(T):
        ax = fig.add_subplot(grid[0, t])
        ax.imshow(frames[t, :, :, 0], cmap="gray", vmin=0, vmax=1)
        served = [video.task_names[i] for i in np.flatnonzero(truth[t])]
        ax.set_title(f"t={t}\n" + ("\n".join(served) or "-"), fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    for p, (name, matrix, scores) in enumerate(panels, start=1):
        ax = fig.add_subplot(grid[p, :])
        ax.imshow(matrix.T.astype(float), cmap="Greys", vmin=0, vmax=1.4, aspect="auto")
        for t, k in zip(*np.nonzero(matrix != truth), strict=True):
            ax.add_patch(Rectangle((t - 0.5, k - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
        ax.set_title(name + scores, fontsize=7, loc="left")
        ax.set_xticks(range(T), [str(t) for t in range(T)], fontsize=6)
        ax.set_yticks(range(M), video.task_names, fontsize=6)
    fig.suptitle(
        f"sample {sample}: frames, true step-task structure, recovered (errors in red)",
        fontsize=8,
    )
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig


AGENT_VIDEO = Experiment(
    name="agent-video",
    description=(
        "Step-level structure recovery from rendered multi-agent video (make_agent_video, "
        "greyscale, N agents): Algorithm 1 on the pooled pixels through the neural "
        "CMI test, on per-frame StepVAE latents, on StepVAE latents with a learned "
        "linear-Gaussian transition prior (a substitute for LEAP), and on the true states as "
        "the reference; F1 at alpha = 0.05 and mAP of the steps ranked by evidence."
    ),
    settings=video_settings,
    run=run_video,
    metrics=VIDEO_METRICS,
    plot=plot_video_study,
)
