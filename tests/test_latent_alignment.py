"""The rotation that turns each task's latent directions into coordinates."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from specialize._validation import InvalidParameterError  # noqa: E402
from specialize.datasets import make_task_latents  # noqa: E402
from specialize.latent import SparseTaskVAE  # noqa: E402
from specialize.latent.alignment import (  # noqa: E402
    alignment_rotation,
    joint_diagonalizer,
    rotate_latent,
    task_gradient_moments,
)
from specialize.latent.model import SparseTaskVAEModule  # noqa: E402


def _random_rotation(rng, d):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_joint_diagonalizer_recovers_a_shared_eigenbasis(seed):
    rng = np.random.default_rng(seed)
    d = 6
    q = _random_rotation(rng, d)
    matrices = np.stack([q @ np.diag(rng.uniform(0, 1, d)) @ q.T for _ in range(3)])
    v = joint_diagonalizer(matrices)
    np.testing.assert_allclose(v.T @ v, np.eye(d), atol=1e-10)
    # the columns of v are those of q up to order and sign
    overlap = np.abs(v.T @ q)
    np.testing.assert_allclose(np.sort(overlap, axis=1)[:, -1], 1.0, atol=1e-6)
    for a in matrices:
        rotated = v.T @ a @ v
        assert np.abs(rotated - np.diag(np.diag(rotated))).max() < 1e-8


def test_alignment_rotation_makes_disjoint_task_subspaces_coordinates():
    rng = np.random.default_rng(3)
    q = _random_rotation(rng, 6)
    # task 0 reads directions q0, q1; task 1 reads q2, q3; q4, q5 are read by none
    moments = np.stack(
        [
            q @ np.diag([3.0, 1.0, 0, 0, 0, 0]) @ q.T,
            q @ np.diag([0, 0, 2.0, 0.5, 0, 0]) @ q.T,
            np.zeros((6, 6)),  # a head that ignores z is left out
        ]
    )
    r = alignment_rotation(moments)
    shares = [np.diag(r @ m @ r.T) / max(np.trace(m), 1e-300) for m in moments[:2]]
    for share, expected in zip(shares, ([0.75, 0.25], [0.8, 0.2]), strict=True):
        np.testing.assert_allclose(np.sort(share)[::-1][:2], expected, atol=1e-8)
        assert np.sort(share)[::-1][2] < 1e-8
    # the two tasks end up on different coordinates
    assert set(np.flatnonzero(shares[0] > 1e-6)).isdisjoint(np.flatnonzero(shares[1] > 1e-6))
    np.testing.assert_array_equal(alignment_rotation(np.zeros((2, 4, 4))), np.eye(4))


def _module(outputs=(1,), gate="l1", gain=2.0):
    torch.manual_seed(0)
    return SparseTaskVAEModule(5, 4, [16], [8], list(outputs), gate=gate, head_gain=gain)


def test_gradient_moments_of_linear_heads_are_exact():
    module = _module(outputs=(1, 3), gain=2.0)
    w_reg = torch.tensor([[0.5, -1.0, 0.0, 2.0]])
    w_cls = torch.randn(3, 4)
    module.heads[0] = torch.nn.Linear(4, 1)
    module.heads[1] = torch.nn.Linear(4, 3)
    with torch.no_grad():
        module.heads[0].weight.copy_(w_reg)
        module.heads[1].weight.copy_(w_cls)
        module.mask.copy_(torch.tensor([[1.0, 0.5, 1.0, 0.0], [1.0, 1.0, 2.0, 1.0]]))
    x = torch.randn(50, 5)
    moments = task_gradient_moments(module, x, batch_size=7)

    scale = 2.0 * module.mask.detach().numpy()  # head k reads gain * m_k * z
    g = w_reg.numpy()[0] * scale[0]
    np.testing.assert_allclose(moments[0], np.outer(g, g), rtol=1e-5, atol=1e-6)

    with torch.no_grad():
        mu, _ = module.encode(x)
        p = torch.softmax(module.predict_tasks(mu)[1], dim=1).double().numpy()
    jac = w_cls.double().numpy() * scale[1]  # d logit_c / dz, (3, 4)
    fisher = np.zeros((4, 4))
    for pi in p:  # grad log p_c = J_c - sum_j p_j J_j
        centred = jac - pi @ jac
        fisher += np.einsum("c,ci,cj->ij", pi, centred, centred)
    np.testing.assert_allclose(moments[1], fisher / len(x), rtol=1e-4, atol=1e-7)


def test_gradient_moments_do_not_depend_on_the_batch_size():
    module = _module(outputs=(1, 2))
    x = torch.randn(40, 5)
    np.testing.assert_allclose(
        task_gradient_moments(module, x, batch_size=3),
        task_gradient_moments(module, x, batch_size=4096),
        rtol=1e-5,
        atol=1e-8,
    )


@pytest.mark.parametrize("gate", ["l1", "hard-concrete"])
def test_rotation_keeps_the_decoded_posterior_means_and_restarts_the_heads(gate):
    module = _module(outputs=(1, 2), gate=gate)
    with torch.no_grad():
        module.mask.mul_(0.3)
    start = 1.0 if gate == "l1" else 3.0
    x = torch.randn(30, 5)
    with torch.no_grad():
        mu, _ = module.encode(x)
        before = module.decoder(mu)
    r = _random_rotation(np.random.default_rng(0), 4)
    rotate_latent(module, r)
    with torch.no_grad():
        mu_rotated, _ = module.encode(x)
        after = module.decoder(mu_rotated)
    np.testing.assert_allclose(mu_rotated.numpy(), mu.numpy() @ r.T, atol=1e-5)
    np.testing.assert_allclose(after.numpy(), before.numpy(), atol=1e-5)
    np.testing.assert_array_equal(module.mask.detach().numpy(), start)


def test_aligned_stage_runs_only_with_a_penalty():
    data = make_task_latents(600, random_state=0)
    stages = {}
    for sparsity, align in [(0, True), (0.1, True), (0.1, False)]:
        model = SparseTaskVAE(
            6, sparsity=sparsity, align=align, epochs=2, random_state=0, progress=False
        ).fit(data.obs, data.tasks)
        stages[(sparsity, align)] = {h["stage"] for h in model.history_}
    assert "aligned" not in stages[(0, True)]
    assert "aligned" in stages[(0.1, True)]
    assert "aligned" not in stages[(0.1, False)]


@pytest.mark.parametrize(
    "params, match",
    [({"align": "yes"}, "align must be True or False"), ({"head_lipschitz": 0}, "head_lipschitz")],
)
def test_bad_alignment_parameters(params, match):
    data = make_task_latents(100, random_state=0)
    with pytest.raises(InvalidParameterError, match=match):
        SparseTaskVAE(6, epochs=1, progress=False, **params).fit(data.obs, data.tasks)
