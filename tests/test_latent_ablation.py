"""A small version of the Layer-2 ablation: the unpenalised VAE keeps a superset (Proposition 2);
the default selection (gradient-moment shares, then a task-weighted refit) keeps each task's
group and nothing else. That a fixed l1 penalty shrinks the supports and that its kept
coordinates are then free of irrelevant latents are open targets, stated as strict expected
failures so that reaching them is noticed.

The full experiment (n = 10,000, five seeds) is ``benchmarks/latent_ablation.py``.
"""

import pytest
from threadpoolctl import threadpool_limits

from specialize.datasets import make_task_latents
from specialize.latent import SparseTaskVAE
from specialize.metrics import block_r2_scores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data():
    return make_task_latents(3000, random_state=0)


def _fit_and_score(data, sparsity, epochs=40):
    model = SparseTaskVAE(6, sparsity=sparsity, epochs=epochs, random_state=0, progress=False)
    model.fit(data.obs, data.tasks)
    with threadpool_limits(1):
        scores = block_r2_scores(
            model.transform(data.obs),
            model.relevant_dims_,
            data.latents,
            data.groups,
            data.irrelevant,
            max_train=1000,
            random_state=0,
        )
    return model, scores


@pytest.fixture(scope="module")
def unpenalised(data):
    return _fit_and_score(data, 0.0)


@pytest.fixture(scope="module")
def default(data):
    # the default epochs: the gradient-moment shares need heads that read the whole group, which
    # a 40-epoch warm-up on 2400 training rows does not give (one task then keeps 1 coordinate)
    return _fit_and_score(data, "auto", epochs=200)


@pytest.fixture(scope="module")
def penalised(data):
    return _fit_and_score(data, 0.3)


def test_without_penalty_every_task_keeps_a_superset(unpenalised):
    model, scores = unpenalised
    for dims, s in zip(model.relevant_dims_, scores, strict=True):
        assert len(dims) >= 4  # more than the 2 coordinates of the task's group
        assert s["r2_relevant"] > 0.7
        assert s["r2_irrelevant"] > 0.6  # the superset carries the irrelevant latents


def test_default_selection_keeps_each_group_and_nothing_else(default):
    model, scores = default
    assert model.path_[0]["rule"] == "moments" and model.sparsity_ == 0.0
    for dims, s in zip(model.relevant_dims_, scores, strict=True):
        assert len(dims) == 2  # the size of the task's group
        assert s["r2_relevant"] >= 0.85
        assert s["r2_irrelevant"] <= 0.2
    assert not set(model.relevant_dims_[0]) & set(model.relevant_dims_[1])


@pytest.mark.xfail(
    strict=True,
    reason="known limitation (docs/latents.md): on this small data set (n = 3000, 40 epochs) a "
    "weight of 0.3 leaves every coordinate in both supports",
)
def test_penalty_shrinks_the_supports(unpenalised, penalised):
    free, _ = unpenalised
    model, _ = penalised
    assert sum(map(len, model.relevant_dims_)) < sum(map(len, free.relevant_dims_))
    assert all(len(dims) >= 1 for dims in model.relevant_dims_)


@pytest.mark.xfail(
    strict=True,
    reason="known limitation (docs/latents.md): the penalty shrinks the supports but does not "
    "yet separate the groups, so the kept coordinates still carry irrelevant latents",
)
def test_penalised_supports_carry_no_irrelevant_information(penalised):
    _, scores = penalised
    for s in scores:
        assert s["r2_irrelevant"] <= 0.2 and s["r2_relevant"] >= 0.9
