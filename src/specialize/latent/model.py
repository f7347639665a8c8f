"""The PyTorch model behind :class:`specialize.SparseTaskVAE`.

A Gaussian VAE (encoder q(z | x), decoder p(x | z), prior N(0, I)) with one head per task
that reads the latent only through its row of a task-latent mask: head k sees m_k * z. With
the l1 mask every head is 1-Lipschitz (spectral normalisation), so a mask entry bounds how much
its coordinate can matter and the penalty cannot be undone by larger head weights.
With ``gate="hard-concrete"`` the mask is a relaxed-l0 gate (Louizos et al., 2018) whose
penalty is the expected number of open gates.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

#: Stretch interval and temperature of the hard-concrete gate (Louizos et al., 2018).
GATE_LIMITS = (-0.1, 1.1)
GATE_TEMPERATURE = 2.0 / 3.0


def mlp(sizes: list[int], lipschitz: bool = False) -> nn.Sequential:
    """Linear layers of ``sizes`` with SiLU between them (none after the last).

    With ``lipschitz``, every layer is spectrally normalised, so the network is 1-Lipschitz
    up to SiLU's largest slope (1.1). A task head behind an l1 mask needs this: the mask then
    alone sets how strongly a coordinate can move the prediction (a hard-concrete gate is 0 or
    1 and needs no bound).
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        linear = nn.Linear(a, b)
        layers.append(spectral_norm(linear) if lipschitz else linear)
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class SparseTaskVAEModule(nn.Module):
    """VAE with task heads behind a task-latent mask.

    Parameters
    ----------
    obs_dim : int
    latent_dim : int
    hidden_sizes : list of int
        Widths of the encoder's hidden layers (the decoder mirrors them).
    head_sizes : list of int
        Widths of each task head's hidden layers.
    task_outputs : list of int
        Outputs of each head: 1 for regression, the number of classes for classification.
    gate : {"l1", "hard-concrete"}
    head_gain : float
        Head k reads ``head_gain * m_k * z``: with the l1 mask, the bound on how much a unit of
        mask lets a coordinate move a (1-Lipschitz) head. Tasks steeper than the latent's unit
        scale need masks of about their slope divided by the gain.
    encoder, decoder : nn.Sequential, optional
        Networks to use instead of the MLPs of ``hidden_sizes``: the encoder maps
        (batch, obs_dim) to (batch, 2 * latent_dim) and must end with an ``nn.Linear``; the
        decoder maps (batch, latent_dim) to (batch, obs_dim) and must start with one (the
        alignment rotates the latent through these two layers).
    """

    def __init__(
        self,
        obs_dim: int,
        latent_dim: int,
        hidden_sizes: list[int],
        head_sizes: list[int],
        task_outputs: list[int],
        gate: str = "l1",
        head_gain: float = 1.0,
        encoder: nn.Sequential | None = None,
        decoder: nn.Sequential | None = None,
    ):
        super().__init__()
        self.latent_dim = latent_dim
        self.gate = gate
        self.head_gain = float(head_gain)
        self.encoder = encoder or mlp([obs_dim, *hidden_sizes, 2 * latent_dim])
        self.decoder = decoder or mlp([latent_dim, *reversed(hidden_sizes), obs_dim])
        self.log_noise = nn.Parameter(torch.zeros(()))  # decoder's log standard deviation
        self._head_layout = (list(head_sizes), list(task_outputs))
        self.heads = self._new_heads()
        self.mask = nn.Parameter(torch.full((len(task_outputs), latent_dim), self._mask_start()))
        # a fixed support (True = usable); all usable until the support is selected
        self.register_buffer("support", torch.ones_like(self.mask, dtype=torch.bool))

    def _new_heads(self) -> nn.ModuleList:
        """Head k maps (batch, latent_dim) to (batch, outputs k)."""
        sizes, outputs = self._head_layout
        return nn.ModuleList(
            mlp([self.latent_dim, *sizes, k], lipschitz=self.gate == "l1") for k in outputs
        )

    def _mask_start(self) -> float:
        """Initial mask: 1 for l1; for hard-concrete, a log-alpha that leaves the gates open."""
        return 1.0 if self.gate == "l1" else 3.0

    def reset_heads(self) -> None:
        """Re-initialise every task head and the mask (for a latent re-expressed in a new basis)."""
        device = self.mask.device
        self.heads = self._new_heads().to(device)
        with torch.no_grad():
            self.mask.fill_(self._mask_start())

    def encode(self, x):
        """Posterior mean and log-variance, each (batch, latent_dim)."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 8.0)

    def effective_mask(self, sample: bool = False):
        """Mask values (n_tasks, latent_dim) as the heads see them, zero off the support."""
        if self.gate == "l1":
            mask = self.mask
        elif sample:
            u = torch.rand_like(self.mask).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((u.log() - (-u).log1p() + self.mask) / GATE_TEMPERATURE)
            mask = _stretch(s)
        else:
            mask = _stretch(torch.sigmoid(self.mask))
        return mask * self.support

    def penalty(self):
        """l1 norm of the mask, or the expected number of open hard-concrete gates."""
        if self.gate == "l1":
            return (self.mask * self.support).abs().sum()
        low, high = GATE_LIMITS
        shift = GATE_TEMPERATURE * math.log(-low / high)
        return (torch.sigmoid(self.mask - shift) * self.support).sum()

    def predict_tasks(self, z, sample: bool = False):
        """Head outputs for latents z (batch, latent_dim): a list of (batch, n_outputs)."""
        mask = self.effective_mask(sample)
        return [head(z * (self.head_gain * mask[k])) for k, head in enumerate(self.heads)]

    def forward(self, x, sample: bool = True):
        """(mu, logvar, z, reconstruction, task outputs) of a batch x (batch, obs_dim)."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return mu, logvar, z, self.decoder(z), self.predict_tasks(z, sample)


def _stretch(s):
    low, high = GATE_LIMITS
    return (s * (high - low) + low).clamp(0.0, 1.0)
