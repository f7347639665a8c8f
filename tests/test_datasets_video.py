"""make_agent_video: frames, truth shared with make_task_sequences, read-back, bad input, files."""

import networkx as nx
import numpy as np
import pytest
from scipy.optimize import least_squares

from specialize._validation import DataValidationError, InvalidParameterError
from specialize.datasets import AgentVideo, make_agent_video, make_task_sequences
from specialize.datasets.video import (
    agent_colours,
    plot_frames,
    render_agents,
    states_to_positions,
    task_names,
)


@pytest.mark.parametrize(
    ("channels", "dtype"),
    [(1, np.float32), (3, np.float32), (1, np.float64), (1, np.uint8), (3, np.uint8)],
)
def test_shapes_types_and_ranges(channels, dtype):
    video = make_agent_video(
        15, 6, 2, n_agents=3, image_size=20, channels=channels, dtype=dtype, random_state=0
    )
    assert isinstance(video, AgentVideo)
    assert video.frames.shape == (15, 6, 20, 20, channels)
    assert video.frames.dtype == dtype
    assert video.states.shape == video.actions.shape == (15, 6, 6)
    assert video.positions.shape == (15, 6, 3, 2)
    assert video.tasks.shape == (15, 2) and video.step_assignment.shape == (6, 2)
    top = 255 if dtype == np.uint8 else 1.0
    assert video.frames.min() >= 0 and video.frames.max() <= top
    # every frame shows its agents: the brightest pixel is at least the dimmest agent's share
    brightest = video.frames.reshape(15 * 6, -1).max(axis=1) / top
    assert brightest.min() > 0.15
    flat = video.flat_obs()
    assert flat.shape == (15, 6, 20 * 20 * channels) and flat.dtype == np.float64
    np.testing.assert_allclose(flat.max(), video.frames.max() / top, rtol=1e-6)


def test_uint8_frames_are_the_rounded_float_frames():
    common = dict(n_agents=2, channels=3, pixel_noise=0.05, random_state=4)
    floats = make_agent_video(10, 4, 2, **common)
    ints = make_agent_video(10, 4, 2, dtype=np.uint8, **common)
    np.testing.assert_array_equal(ints.frames, np.rint(floats.frames * 255).astype(np.uint8))
    np.testing.assert_allclose(ints.flat_obs(), floats.flat_obs(), atol=0.5 / 255 + 1e-6)


def test_same_seed_same_frames_other_seed_other_frames():
    a = make_agent_video(20, 6, 2, pixel_noise=0.1, random_state=3)
    b = make_agent_video(20, 6, 2, pixel_noise=0.1, random_state=3)
    c = make_agent_video(20, 6, 2, pixel_noise=0.1, random_state=4)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.tasks, b.tasks)
    assert not np.allclose(a.frames, c.frames)
    assert not np.allclose(a.states, c.states)


def test_truth_is_that_of_make_task_sequences():
    video = make_agent_video(40, 8, 3, n_agents=3, segment_length=2, random_state=7)
    latent = make_task_sequences(40, 8, 3, state_dim=6, segment_length=2, random_state=7)
    np.testing.assert_array_equal(video.states, latent.states)
    np.testing.assert_array_equal(video.actions, latent.actions)
    np.testing.assert_array_equal(video.tasks, latent.tasks)
    np.testing.assert_array_equal(video.step_assignment, latent.step_assignment)
    np.testing.assert_array_equal(video.segment_assignment, latent.segment_assignment)
    assert nx.utils.graphs_equal(video.dag, latent.dag)
    # the positions are the states' own coordinates: agent k owns columns 2k and 2k + 1
    np.testing.assert_array_equal(
        video.positions, states_to_positions(latent.states, image_size=32)
    )


def test_pixel_noise_leaves_the_truth_and_has_the_asked_scale():
    clean = make_agent_video(30, 6, 2, random_state=5)
    noisy = make_agent_video(30, 6, 2, pixel_noise=0.05, dtype=np.float64, random_state=5)
    np.testing.assert_array_equal(clean.states, noisy.states)
    np.testing.assert_array_equal(clean.tasks, noisy.tasks)
    # away from the clip at 0 and 1 the difference is the added noise
    inside = (clean.frames > 0.3) & (clean.frames < 0.7)
    residual = noisy.frames[inside] - clean.frames[inside]
    assert inside.sum() > 2000
    assert abs(residual.std() / 0.05 - 1) < 0.1 and abs(residual.mean()) < 0.005


def test_explicit_assignment_is_used():
    assignment = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    video = make_agent_video(10, 7, 2, assignment=assignment, random_state=0)
    np.testing.assert_array_equal(video.segment_assignment, assignment)
    assert not video.step_assignment[6].any()
    assert video.params["assignment"] == assignment.tolist()


def test_rgb_positions_are_read_back_from_channel_centroids():
    video = make_agent_video(30, 8, 2, n_agents=3, channels=3, random_state=1)
    frames = video.frames.reshape(-1, 32, 32, 3).astype(np.float64)
    true = video.positions.reshape(-1, 3, 2)
    pixels = np.arange(32)
    for k in range(3):
        mass = frames[..., k].sum(axis=(1, 2))
        x = frames[..., k].sum(axis=1) @ pixels / mass
        y = frames[..., k].sum(axis=2) @ pixels / mass
        # exact up to the part of the blob cut off at the canvas edge
        assert np.abs(x - true[:, k, 0]).max() < 0.1
        assert np.abs(y - true[:, k, 1]).max() < 0.1


def test_greyscale_positions_and_identities_are_read_back_from_the_frames():
    """Overlapping blobs of equal intensity could swap; distinct intensities keep them apart.

    Template matching on a one-pixel grid reads every frame back; where the blobs overlap,
    a least-squares fit started from the match and from its swap recovers the exact positions.
    """
    video = make_agent_video(25, 8, 2, n_agents=2, random_state=0)
    width = video.params["blob_width"]

    def render(positions):
        return render_agents(positions, image_size=32, blob_width=width, dtype=np.float64)

    grid = np.arange(np.floor(video.positions.min()), np.ceil(video.positions.max()) + 1)
    candidates = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 1, 2)
    templates = render(candidates).reshape(len(candidates), -1)
    dim, bright = agent_colours(2, 1)[:, 0]
    norms = (templates**2).sum(axis=1)
    # squared error of frame - dim * B(p) - bright * B(q) for all pairs (p, q), up to |frame|^2
    pair_cost = (
        dim**2 * norms[:, None]
        + bright**2 * norms[None, :]
        + 2 * dim * bright * (templates @ templates.T)
    )
    frames = video.frames.reshape(-1, 32 * 32).astype(np.float64)
    matched = np.empty((len(frames), 2, 2))
    for i, corr in enumerate(frames @ templates.T):
        cost = pair_cost - 2 * dim * corr[:, None] - 2 * bright * corr[None, :]
        p, q = np.unravel_index(np.argmin(cost), cost.shape)
        matched[i] = candidates[p, 0], candidates[q, 0]
    true = video.positions.reshape(-1, 2, 2)
    r2 = 1 - ((matched - true) ** 2).mean(axis=0) / true.var(axis=0)
    assert r2.min() > 0.99

    overlapping = np.flatnonzero(np.linalg.norm(matched[:, 0] - matched[:, 1], axis=1) < 4)
    assert len(overlapping) >= 5
    for i in overlapping:
        fits = [
            least_squares(lambda x, i=i: render(x.reshape(1, 2, 2)).ravel() - frames[i], x0.ravel())
            for x0 in (matched[i], matched[i, ::-1])
        ]
        best = min(fits, key=lambda fit: fit.cost)
        np.testing.assert_allclose(best.x.reshape(2, 2), true[i], atol=0.01)


def test_position_map_is_increasing_and_keeps_blobs_inside():
    states = np.linspace(-8, 8, 1001)[:, None].repeat(2, axis=1)
    positions = states_to_positions(states, image_size=32, blob_width=2.0)[:, 0]
    assert np.all(np.diff(positions, axis=0) > 0)
    extremes = np.array([[-1e6, -1e6], [1e6, 1e6], [0.0, 0.0]])
    corner = states_to_positions(extremes, image_size=32, blob_width=2.0)
    np.testing.assert_allclose(corner[:, 0], [[4.0, 4.0], [27.0, 27.0], [15.5, 15.5]])
    # a blob pushed to a corner keeps nearly all of its mass inside the canvas
    frames = render_agents(corner, image_size=32, blob_width=2.0, dtype=np.float64)
    mass = frames.sum(axis=(1, 2, 3))
    assert mass[:2].min() > 0.95 * mass[2]
    assert np.unravel_index(frames[0, ..., 0].argmax(), (32, 32)) == (4, 4)
    assert np.unravel_index(frames[1, ..., 0].argmax(), (32, 32)) == (27, 27)


def test_agents_have_distinct_colours_that_never_saturate():
    for n_agents in (1, 2, 3, 5):
        for channels in (1, 3):
            colours = agent_colours(n_agents, channels)
            assert colours.shape == (n_agents, channels)
            assert colours.sum(axis=0).max() <= 1 + 1e-12
            assert len({tuple(np.round(c, 9)) for c in colours}) == n_agents
    np.testing.assert_array_equal(agent_colours(3, 3), np.eye(3))
    # a blob centred on a pixel gives it the agent's intensity: 1/3 and 2/3 for two agents
    frame = render_agents([[[5.0, 6.0], [12.0, 10.0]]], image_size=16, dtype=np.float64)[0, ..., 0]
    np.testing.assert_allclose([frame[6, 5], frame[10, 12]], [1 / 3, 2 / 3], atol=1e-4)


def test_task_names_and_params():
    assert task_names(2) == ("reach goal", "pass")
    names = task_names(5)
    assert names[0] == "reach goal 1" and names[3] == "reach goal 2" and len(set(names)) == 5
    video = make_agent_video(5, 4, 1, image_size=16, random_state=2)
    assert video.task_names == ("reach goal",)
    assert video.params["random_state"] == 2 and video.params["dtype"] == "float32"
    assert video.params["blob_width"] == 1.0 and video.params["image_size"] == 16


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(image_size=7), "image_size"),
        (dict(n_agents=0), "n_agents"),
        (dict(channels=2), "channels"),
        (dict(dtype=np.int16), "dtype"),
        (dict(dtype=None), "dtype"),
        (dict(blob_width=0.0), "blob_width"),
        (dict(blob_width=-1.0), "blob_width"),
        (dict(blob_width=8.0), "blob_width"),
        (dict(pixel_noise=-0.1), "pixel_noise"),
        (dict(segment_length=1), "segment_length"),
    ],
)
def test_bad_input_names_the_argument(kwargs, name):
    with pytest.raises(InvalidParameterError, match=name):
        make_agent_video(5, 4, 1, **kwargs)


def test_bad_positions_are_refused():
    with pytest.raises(DataValidationError, match="positions"):
        render_agents(np.zeros((3, 2)), image_size=16)
    with pytest.raises(DataValidationError, match="states"):
        states_to_positions(np.zeros((3, 3)), image_size=16)


def test_npz_round_trip(tmp_path):
    video = make_agent_video(6, 4, 2, channels=3, dtype=np.uint8, random_state=0)
    path = tmp_path / "video.npz"
    video.save(path)
    with np.load(path) as data:
        assert data["frames"].shape == (6, 4, 32, 32, 3)
        np.testing.assert_array_equal(data["frames"], video.frames)
        for key in ("states", "positions", "actions", "tasks", "step_assignment"):
            np.testing.assert_array_equal(data[key], getattr(video, key))
        np.testing.assert_array_equal(data["segment_assignment"], video.segment_assignment)
        assert int(data["segment_length"]) == video.segment_length
        assert tuple(data["task_names"]) == video.task_names


def test_as_task_sequences_carries_the_truth():
    video = make_agent_video(6, 4, 2, image_size=16, random_state=0)
    sequences = video.as_task_sequences()
    assert sequences.obs.shape == (6, 4, 256)
    np.testing.assert_array_equal(sequences.states, video.states)
    np.testing.assert_array_equal(sequences.step_assignment, video.step_assignment)


def test_plot_frames_writes_a_png(tmp_path):
    video = make_agent_video(2, 4, 2, channels=3, dtype=np.uint8, random_state=0)
    path = tmp_path / "frames.png"
    fig = plot_frames(video, sample=1, path=path)
    assert len(fig.axes) == 4
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidParameterError, match="sample"):
        plot_frames(video, sample=2)
