"""Rotate a VAE's latent so that each task's directions become latent coordinates.

The prior N(0, I) and the likelihood of a Gaussian VAE are unchanged when the latent is
rotated (z' = R z with the decoder reading R^T z'), so nothing in the VAE's own objective picks
a basis: only the task heads can, and a mask penalty that starts from a random basis must
rotate the latent and shrink the mask at once, which it does poorly. The alignment does the
rotation in closed form instead. For each task k, the expected gradient outer product of its
head over the training latents,

    C_k = E[ grad_z f_k(z) grad_z f_k(z)^T ]        (latent_dim, latent_dim),

spans the directions the task reads (for a classification head, the expected Fisher
information of its class probabilities in z). The rotation R is the orthogonal matrix that
diagonalises the trace-normalised C_k jointly (Cardoso and Souloumiac, 1996): with disjoint
task groups the C_k share an eigenbasis, and in it each task's directions are coordinates.
"""

from __future__ import annotations

import numpy as np

from ..ci._backend import torch_module

#: Sweeps and smallest rotation angle (sine) of the Jacobi joint diagonalisation.
JACOBI_SWEEPS = 100
JACOBI_TOLERANCE = 1e-10


def task_gradient_moments(module, x, batch_size: int = 4096) -> np.ndarray:
    """Expected gradient outer products of the heads at the posterior means of ``x``.

    Parameters
    ----------
    module : SparseTaskVAEModule
    x : tensor of shape (n, obs_dim)
        Standardised observations, on the module's device.

    Returns
    -------
    ndarray of shape (n_tasks, latent_dim, latent_dim)
        C_k for a regression head; for a head with several outputs (class logits), the
        expected Fisher information sum_c p_c grad log p_c grad log p_c^T.
    """
    torch = torch_module()
    d = module.latent_dim
    total = np.zeros((len(module.heads), d, d))
    was_training = module.training
    module.eval()
    for start in range(0, len(x), batch_size):
        with torch.no_grad():
            mu, _ = module.encode(x[start : start + batch_size])
        mu = mu.detach().requires_grad_(True)
        for k, out in enumerate(module.predict_tasks(mu)):
            total[k] += _outer_gradients(torch, out, mu)
    module.train(was_training)
    return total / len(x)


def _outer_gradients(torch, out, mu) -> np.ndarray:
    """Sum over the batch of grad grad^T of one head's output(s) with respect to ``mu``."""
    if out.shape[1] == 1:
        (grad,) = torch.autograd.grad(out.sum(), mu, retain_graph=True)
        g = grad.detach().double().cpu().numpy()
        return g.T @ g
    log_p = torch.log_softmax(out, dim=1)
    p = log_p.exp().detach()
    result = 0.0
    for c in range(out.shape[1]):
        (grad,) = torch.autograd.grad(log_p[:, c].sum(), mu, retain_graph=True)
        g = grad.detach().double().cpu().numpy()
        w = p[:, c].double().cpu().numpy()
        result = result + (g * w[:, None]).T @ g
    return result


def joint_diagonalizer(matrices) -> np.ndarray:
    """Orthogonal V whose columns jointly diagonalise symmetric matrices (Jacobi angles).

    Parameters
    ----------
    matrices : array of shape (K, d, d)
        Symmetric matrices.

    Returns
    -------
    ndarray of shape (d, d)
        V minimising the off-diagonal mass sum_k ||offdiag(V^T A_k V)||^2 (Cardoso and
        Souloumiac, 1996); exact when the A_k share an eigenbasis.
    """
    a = np.array(matrices, dtype=float)
    d = a.shape[1]
    v = np.eye(d)
    for _ in range(JACOBI_SWEEPS):
        rotated = False
        for p in range(d - 1):
            for q in range(p + 1, d):
                h = np.stack([a[:, p, p] - a[:, q, q], a[:, p, q] + a[:, q, p]], axis=1)
                g = h.T @ h
                ton, toff = g[0, 0] - g[1, 1], g[0, 1] + g[1, 0]
                theta = 0.5 * np.arctan2(toff, ton + np.hypot(ton, toff))
                c, s = np.cos(theta), np.sin(theta)
                if abs(s) <= JACOBI_TOLERANCE:
                    continue
                rotated = True
                j = np.eye(d)
                j[p, p] = j[q, q] = c
                j[p, q], j[q, p] = -s, s
                a = j.T @ a @ j
                v = v @ j
        if not rotated:
            break
    return v


def alignment_rotation(moments: np.ndarray) -> np.ndarray:
    """The rotation R (z' = R z) that makes the tasks' gradient directions coordinates.

    ``moments`` (n_tasks, d, d) are normalised to unit trace (a task with a zero moment, a
    head that ignores z, is left out) and diagonalised jointly; R = V^T.
    """
    traces = np.trace(moments, axis1=1, axis2=2)
    used = moments[traces > 0] / traces[traces > 0, None, None]
    if not len(used):
        return np.eye(moments.shape[1])
    return joint_diagonalizer(used).T


def rotate_latent(module, rotation: np.ndarray) -> None:
    """Re-express ``module`` in the rotated latent z' = R z; the heads are re-initialised.

    The encoder's mean becomes R mu and the decoder reads R^T z', so reconstructions from
    posterior means are unchanged. A diagonal posterior cannot hold the rotated covariance
    exactly: each new log-variance is the R^2-weighted mean of the old ones (the log of a
    geometric mean of variances), which the training that follows adapts. The heads and the
    mask restart from their initial values, since a head read its coordinates in the old basis.
    """
    torch = torch_module()
    last, first = module.encoder[-1], module.decoder[0]
    d = module.latent_dim
    r = torch.as_tensor(rotation, dtype=last.weight.dtype, device=last.weight.device)
    with torch.no_grad():
        weight, bias = last.weight.clone(), last.bias.clone()
        last.weight[:d] = r @ weight[:d]
        last.bias[:d] = r @ bias[:d]
        last.weight[d:] = (r * r) @ weight[d:]
        last.bias[d:] = (r * r) @ bias[d:]
        first.weight.copy_(first.weight @ r.T)
    module.reset_heads()
