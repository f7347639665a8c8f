"""make_task_latents: layout of the groups, injectivity, what the tasks depend on, bad input."""

import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge

from specialize._validation import InvalidParameterError
from specialize.datasets import make_task_latents


def heldout_r2(inputs, target, n_train=600):
    a = (inputs - inputs.mean(0)) / inputs.std(0)
    b = (target - target.mean()) / target.std()
    model = KernelRidge(kernel="rbf", gamma=0.5 / a.shape[1], alpha=1e-2)
    model.fit(a[:n_train], b[:n_train])
    residual = model.predict(a[n_train:]) - b[n_train:]
    return 1.0 - residual.var() / b[n_train:].var()


def test_shapes_and_layout_with_overlap():
    ds = make_task_latents(300, group_sizes=(3, 2, 2), overlap=1, n_irrelevant=2, random_state=0)
    assert ds.latents.shape == (300, 1 + 2 + 1 + 1 + 2)
    assert ds.obs.shape == (300, 12) and ds.tasks.shape == (300, 3)
    assert [g.tolist() for g in ds.groups] == [[0, 1, 2], [0, 3], [0, 4]]
    assert ds.irrelevant.tolist() == [5, 6]
    mask = ds.group_mask
    assert mask.shape == (3, 7) and mask.sum() == 7 and not mask[:, ds.irrelevant].any()


def test_same_seed_same_data_and_other_seed_other_data():
    a, b = make_task_latents(200, random_state=3), make_task_latents(200, random_state=3)
    c = make_task_latents(200, random_state=4)
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.tasks, b.tasks)
    assert not np.allclose(a.obs, c.obs)


def test_linear_mixing_is_exactly_invertible():
    ds = make_task_latents(500, mixing_layers=0, obs_dim=9, random_state=1)
    coef, *_ = np.linalg.lstsq(ds.obs, ds.latents - ds.latents.mean(0), rcond=None)
    np.testing.assert_allclose(ds.obs @ coef, ds.latents - ds.latents.mean(0), atol=1e-8)


def test_nonlinear_mixing_is_injective_and_not_linear():
    ds = make_task_latents(3000, mixing_layers=3, random_state=2)
    # leaky ReLUs are invertible: no two distinct latents share an observation, and a
    # linear read-out of the latents misses part of them
    coef, *_ = np.linalg.lstsq(ds.obs, ds.latents - ds.latents.mean(0), rcond=None)
    linear_r2 = 1 - (ds.obs @ coef - ds.latents + ds.latents.mean(0)).var(0) / ds.latents.var(0)
    assert linear_r2.min() < 0.99
    assert np.linalg.matrix_rank(ds.obs) == ds.obs.shape[1]


def test_tasks_depend_on_their_group_only():
    ds = make_task_latents(1500, noise=0.1, random_state=5)
    for k, group in enumerate(ds.groups):
        assert heldout_r2(ds.latents[:, group], ds.tasks[:, k]) > 0.9
        assert heldout_r2(ds.latents[:, ds.irrelevant], ds.tasks[:, k]) < 0.05
        # every coordinate of the group matters: dropping one loses a clear share
        for drop in range(len(group)):
            kept = np.delete(group, drop)
            assert heldout_r2(ds.latents[:, kept], ds.tasks[:, k]) < 0.85


def _best_single_direction_r2(group_latents, task, n_angles=90, n_bins=40):
    """Largest share of the task's variance any one direction of a 2-d group explains."""
    best = 0.0
    for angle in np.linspace(0, np.pi, n_angles, endpoint=False):
        u = group_latents @ np.array([np.cos(angle), np.sin(angle)])
        edges = np.quantile(u, np.linspace(0, 1, n_bins + 1))
        bins = np.clip(np.searchsorted(edges, u) - 1, 0, n_bins - 1)
        means = np.bincount(bins, task, n_bins) / np.bincount(bins, minlength=n_bins)
        best = max(best, 1 - np.var(task - means[bins]) / np.var(task))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_every_direction_of_a_group_matters(seed):
    # a task explained by one direction of its group leaves the rest of the group
    # unidentifiable from the task; the generator keeps each direction's share near 1/|group|
    data = make_task_latents(4000, noise=0.0, random_state=seed)
    for k, group in enumerate(data.groups):
        share = _best_single_direction_r2(data.latents[:, group], data.tasks[:, k])
        assert 0.4 < share < 0.65, (k, share)


def test_classification_tasks_are_balanced_labels():
    ds = make_task_latents(
        900, task_type=["classification", "regression"], n_classes=3, random_state=0
    )
    labels, counts = np.unique(ds.tasks[:, 0], return_counts=True)
    assert labels.tolist() == [0.0, 1.0, 2.0] and counts.min() >= 299
    assert len(np.unique(ds.tasks[:, 1])) == 900


def test_save_writes_groups_as_a_mask(tmp_path):
    ds = make_task_latents(100, random_state=0)
    ds.save(tmp_path / "d.npz")
    with np.load(tmp_path / "d.npz") as f:
        np.testing.assert_array_equal(f["groups"], ds.group_mask)
        np.testing.assert_array_equal(f["obs"], ds.obs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"overlap": 2}, "overlap"),
        ({"obs_dim": 4}, "obs_dim"),
        ({"task_type": "ranking"}, "task_type"),
        ({"task_type": ["regression"]}, "task_type"),
        ({"group_sizes": ()}, "group_sizes"),
        ({"noise": -1.0}, "noise"),
        ({"n_classes": 1}, "n_classes"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        make_task_latents(50, **kwargs)
