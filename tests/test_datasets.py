"""The sequence generator: shapes, ground truth, reproducibility, and bad arguments."""

import networkx as nx
import numpy as np
import pytest

from specialize.datasets import load_sequences, make_task_sequences, random_segment_assignment


def test_shapes_and_truth():
    ds = make_task_sequences(
        300,
        13,
        3,
        segment_length=3,
        state_dim=2,
        obs_dim=5,
        mixing="mlp",
        task_dim=2,
        random_state=0,
    )
    assert ds.obs.shape == (300, 13, 5)
    assert ds.states.shape == ds.actions.shape == (300, 13, 2)
    assert ds.tasks.shape == (300, 3, 2)
    assert ds.segment_assignment.shape == (4, 3)
    assert ds.step_assignment.shape == (13, 3)
    assert not ds.step_assignment[12].any()  # trailing step serves no task
    np.testing.assert_array_equal(
        np.repeat(ds.segment_assignment, 3, axis=0), ds.step_assignment[:12]
    )
    assert ds.params["random_state"] == 0 and ds.params["mixing"] == "mlp"


def test_random_assignments_interleave_leave_gaps_and_share():
    for seed in range(50):
        a = random_segment_assignment(10, 4, seed)
        assert (a.sum(axis=0) >= 2).all()
        assert (a.sum(axis=1) == 0).any()
        assert (a.sum(axis=1) >= 2).any()
    with pytest.raises(ValueError, match="n_segments must be >= 2"):
        random_segment_assignment(1, 2)


def test_dag_matches_the_model():
    ds = make_task_sequences(10, 8, 2, action_to_state=True, disconnect_prob=0.5, random_state=3)
    dag = ds.dag
    assert nx.is_directed_acyclic_graph(dag)
    for t in range(8):
        assert dag.has_edge(("s", t), ("a", t))
        for i in range(2):
            assert dag.has_edge(("a", t), ("g", i)) == ds.step_assignment[t, i]
    for t in range(1, 8):
        chained = dag.has_edge(("s", t - 1), ("s", t))
        assert dag.has_edge(("a", t - 1), ("s", t)) == chained
    cut = [t for t in range(1, 8) if not dag.has_edge(("s", t - 1), ("s", t))]
    assert cut, "with disconnect_prob=0.5 some link should be cut for this seed"
    # a cut link means the states are independent across it
    states = make_task_sequences(20_000, 8, 2, disconnect_prob=0.5, random_state=3).states
    for t in cut:
        r = np.corrcoef(states[:, t - 1, 0], states[:, t, 0])[0, 1]
        assert abs(r) < 0.05


def test_same_seed_same_data_other_seed_other_data():
    a = make_task_sequences(200, 10, 2, mechanism="nonlinear", random_state=5)
    b = make_task_sequences(200, 10, 2, mechanism="nonlinear", random_state=5)
    c = make_task_sequences(200, 10, 2, mechanism="nonlinear", random_state=6)
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.tasks, b.tasks)
    assert not np.allclose(a.obs, c.obs)


@pytest.mark.parametrize("mixing", ["linear", "mlp"])
def test_mixing_is_injective(mixing):
    ds = make_task_sequences(2000, 4, 1, state_dim=3, obs_dim=6, mixing=mixing, random_state=1)
    # the states are recoverable from the observations: leaky-ReLU layers and full-rank maps
    obs, states = ds.obs[:, 0], ds.states[:, 0]
    if mixing == "linear":
        coef, *_ = np.linalg.lstsq(obs, states, rcond=None)
        np.testing.assert_allclose(obs @ coef, states, atol=1e-8)
    else:
        # distinct states give distinct observations
        assert len(np.unique(np.round(obs, 12), axis=0)) == len(np.unique(states, axis=0))


def test_explicit_assignment():
    seg = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool)
    ds = make_task_sequences(50, 8, 2, assignment=seg, random_state=0)
    np.testing.assert_array_equal(ds.segment_assignment, seg)
    steps = np.zeros((8, 2), dtype=int)
    steps[[0, 5], 0] = 1
    ds = make_task_sequences(50, 8, 2, assignment=steps, random_state=0)
    np.testing.assert_array_equal(ds.step_assignment, steps.astype(bool))
    with pytest.raises(ValueError, match=r"assignment has shape \(3, 2\), expected"):
        make_task_sequences(50, 8, 2, assignment=np.ones((3, 2)))
    with pytest.raises(ValueError, match="booleans or 0/1"):
        make_task_sequences(50, 8, 2, assignment=np.full((4, 2), 2))


def test_signal_strength_documented_regime():
    """Solvable at n = 10,000, not trivial at n = 1,000 (see the module docstring)."""
    from specialize import discover_structure

    f1 = {}
    for n in (1000, 10_000):
        scores = []
        for seed in range(3):
            ds = make_task_sequences(n, 20, 4, state_dim=2, random_state=seed)
            result = discover_structure(
                ds.obs, ds.tasks, mode="unary", conditioning="band", correction="bonferroni"
            )
            scores.append(result.scores(ds.segment_assignment)["f1"])
        f1[n] = np.mean(scores)
    assert f1[10_000] >= 0.97
    assert f1[1000] <= 0.9


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(n_samples=0), "n_samples must be >= 1, got 0"),
        (dict(segment_length=1), "segment_length must be >= 2, got 1"),
        (dict(segment_length=30), "segment_length must be <= 20, got 30"),
        (dict(mechanism="quadratic"), "mechanism must be one of 'linear', 'nonlinear'"),
        (dict(mixing="pca"), "mixing must be one of"),
        (dict(state_dim=3, obs_dim=2, mixing="linear"), "obs_dim must be >= state_dim = 3"),
        (dict(obs_dim=4), "mixing='identity' observes the states"),
        (dict(disconnect_prob=1.0), "disconnect_prob must be < 1.0"),
        (dict(n_steps=2.5), "n_steps must be an integer"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = dict(n_samples=10, n_steps=20, n_tasks=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        make_task_sequences(**args)


def test_npz_round_trip_and_errors(tmp_path):
    ds = make_task_sequences(30, 6, 2, random_state=0)
    path = tmp_path / "d.npz"
    ds.save(path)
    f = load_sequences(path)
    assert f.key == "obs" and f.segment_length == 2
    np.testing.assert_array_equal(f.X, ds.obs)
    np.testing.assert_array_equal(f.segment_assignment, ds.segment_assignment)
    np.savez(tmp_path / "no_tasks.npz", obs=ds.obs)
    with pytest.raises(ValueError, match="has no key 'tasks'"):
        load_sequences(tmp_path / "no_tasks.npz")
    np.savez(tmp_path / "flat.npz", states=ds.obs[:, :, 0], tasks=ds.tasks)
    with pytest.raises(
        ValueError, match=r"'states' in .* has shape \(30, 6\), expected \(n, T, D\)"
    ):
        load_sequences(tmp_path / "flat.npz")
    with pytest.raises(ValueError, match="has no key 'states'"):
        load_sequences(tmp_path / "no_tasks.npz", key="states")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_sequences(tmp_path / "junk.npz")
