"""StepVAE: one latent representation shared by every step of a sequence (the generalist).

A Gaussian VAE encodes each step's observation x_t (D,) to z_t (latent_dim,) with the same
encoder and decoder at every step. The prior is N(0, I) at every step, or, with
``temporal_prior``, a learned linear-Gaussian transition p(z_t | z_{t-1}) = N(A z_{t-1} + b,
diag(exp(v))) after the first step, so that neighbouring steps' latents may stay dependent
as the states of a Markov chain are. Inactive coordinates (posterior collapse) are found by
the active-unit rule of Burda et al. (2016): coordinate j is active when the variance over
the data of its posterior mean exceeds ``active_threshold``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from .._params import ConstructorParams, jsonable, read_saved_config, resolve_seed
from .._validation import (
    DataValidationError,
    InvalidParameterError,
    as_float_array,
    check_float,
    check_int,
)
from ..ci._backend import resolve_device, torch_module
from .checkpoint import TrainingCheckpoint

FORMAT_VERSION = 1
STAGE = "step-vae"


def _module_class():
    """The torch module, defined on first use so that importing this file needs no torch."""
    torch = torch_module()
    from torch import nn

    from .model import mlp

    class StepVAEModule(nn.Module):
        """Encoder, decoder, decoder noise scale and (optionally) a linear transition prior."""

        def __init__(self, obs_dim: int, latent_dim: int, hidden_sizes, temporal: bool):
            super().__init__()
            self.temporal = temporal
            self.encoder = mlp([obs_dim, *hidden_sizes, 2 * latent_dim])
            self.decoder = mlp([latent_dim, *reversed(hidden_sizes), obs_dim])
            self.log_noise = nn.Parameter(torch.zeros(()))
            if temporal:
                self.transition = nn.Linear(latent_dim, latent_dim)
                nn.init.zeros_(self.transition.weight)
                nn.init.zeros_(self.transition.bias)
                self.prior_logvar = nn.Parameter(torch.zeros(latent_dim))

        def encode(self, x):
            mu, logvar = self.encoder(x).chunk(2, dim=-1)
            return mu, logvar.clamp(-12.0, 8.0)

        def losses(self, x, sample: bool = True):
            """Mean per-step reconstruction NLL and KL of sequences x (batch, T, D)."""
            b, T, D = x.shape
            mu, logvar = self.encode(x)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
            noise = self.log_noise
            recon = 0.5 * ((x - self.decoder(z)) ** 2).sum(-1) * torch.exp(-2 * noise)
            recon = recon + D * (noise + 0.5 * math.log(2 * math.pi))
            if self.temporal and T > 1:
                prior_mean = torch.cat([torch.zeros_like(z[:, :1]), self.transition(z[:, :-1])], 1)
                prior_logvar = torch.cat(
                    [
                        torch.zeros_like(z[:, :1]),
                        self.prior_logvar.expand(b, T - 1, -1),
                    ],
                    1,
                )
            else:
                prior_mean, prior_logvar = torch.zeros_like(mu), torch.zeros_like(mu)
            kl = 0.5 * (
                prior_logvar
                - logvar
                + (logvar.exp() + (mu - prior_mean) ** 2) / prior_logvar.exp()
                - 1.0
            ).sum(-1)
            return recon.mean(), kl.mean()

    return StepVAEModule


class StepVAE(ConstructorParams):
    """A VAE over the steps of sequences, sharing its encoder across steps.

    Parameters
    ----------
    latent_dim : int
        Width of each step's latent z_t.
    temporal_prior : bool
        A learned linear-Gaussian prior p(z_t | z_{t-1}) instead of N(0, I) at steps t >= 1.
    beta : float
        Weight of the KL term.
    hidden_sizes : sequence of int
        Hidden widths of the encoder (mirrored by the decoder).
    epochs, batch_size, learning_rate, patience, validation_fraction
        Mini-batch Adam over whole sequences (``batch_size`` sequences per step), stopped
        after ``patience`` epochs without a better held-out loss; the best epoch is kept.
    active_threshold : float
        A coordinate is active when the variance of its posterior mean over the data
        exceeds this (Burda et al., 2016).
    device : "auto", "cpu", "cuda" or a torch device
    random_state : int or None
    progress : bool or None
        A progress bar; None shows it when writing to a terminal.
    checkpoint : path or None
        File of training state written after every epoch; the same fit resumes from it.

    Attributes
    ----------
    active_dims_ : int ndarray
        The active coordinates (all of them if none passes the rule, so that none is lost).
    history_ : list of dict
        Per-epoch held-out reconstruction and KL.
    n_features_in_ : int
    random_state_ : int
    """

    def __init__(
        self,
        latent_dim: int = 8,
        *,
        temporal_prior: bool = False,
        beta: float = 1.0,
        hidden_sizes=(64, 64),
        epochs: int = 100,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        patience: int = 8,
        validation_fraction: float = 0.1,
        active_threshold: float = 0.01,
        device="auto",
        random_state=None,
        progress=None,
        checkpoint=None,
    ):
        self.latent_dim = latent_dim
        self.temporal_prior = temporal_prior
        self.beta = beta
        self.hidden_sizes = hidden_sizes
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.active_threshold = active_threshold
        self.device = device
        self.random_state = random_state
        self.progress = progress
        self.checkpoint = checkpoint

    def _validated(self) -> dict:
        if not isinstance(self.temporal_prior, (bool, np.bool_)):
            raise InvalidParameterError(
                f"temporal_prior must be True or False, got {self.temporal_prior!r}"
            )
        return {
            "latent_dim": check_int("latent_dim", self.latent_dim, minimum=1),
            "beta": check_float("beta", self.beta, low=0.0),
            "hidden_sizes": [check_int("hidden_sizes[]", h, minimum=1) for h in self.hidden_sizes],
            "epochs": check_int("epochs", self.epochs, minimum=1),
            "batch_size": check_int("batch_size", self.batch_size, minimum=1),
            "learning_rate": check_float(
                "learning_rate", self.learning_rate, low=0.0, low_inclusive=False
            ),
            "patience": check_int("patience", self.patience, minimum=1),
            "validation_fraction": check_float(
                "validation_fraction",
                self.validation_fraction,
                low=0.0,
                high=0.5,
                low_inclusive=False,
            ),
            "active_threshold": check_float("active_threshold", self.active_threshold, low=0.0),
        }

    def _new_module(self, p: dict):
        return _module_class()(
            self.n_features_in_, p["latent_dim"], p["hidden_sizes"], bool(self.temporal_prior)
        ).to(self.device_)

    # ------------------------------------------------------------------ fitting
    def fit(self, X) -> StepVAE:
        """Train on sequences X (n_sequences, n_steps, n_features); returns self."""
        torch = torch_module()
        p = self._validated()
        X = check_sequences(X)
        n = X.shape[0]
        flat = X.reshape(-1, X.shape[2])
        self.obs_mean_, self.obs_scale_ = flat.mean(axis=0), flat.std(axis=0)
        constant = np.flatnonzero(self.obs_scale_ == 0)
        if constant.size:
            raise DataValidationError(
                f"X feature {constant[0]} is constant over every sequence and step: drop it"
            )
        self.n_features_in_, self.n_steps_ = X.shape[2], X.shape[1]
        self.random_state_ = resolve_seed(self.random_state)
        self.device_ = str(resolve_device(self.device))
        n_valid = max(1, int(round(p["validation_fraction"] * n)))
        if n - n_valid < 2:
            raise DataValidationError(
                f"X has {n} sequences: too few to hold out {n_valid} for validation and train"
            )
        order = np.random.default_rng(self.random_state_).permutation(n)
        x = torch.as_tensor((X - self.obs_mean_) / self.obs_scale_, dtype=torch.float32)
        x = x.to(self.device_)
        train, valid = x[order[n_valid:]], x[order[:n_valid]]
        torch.manual_seed(self.random_state_)
        self.module_ = self._new_module(p)
        checkpoint = (
            TrainingCheckpoint(self.checkpoint, self._fingerprint(X)) if self.checkpoint else None
        )
        self.history_ = _train(
            self.module_, train, valid, p, self.random_state_, checkpoint, self.progress
        )
        self.module_.eval()
        variance = self.transform(X).reshape(-1, p["latent_dim"]).var(axis=0)
        active = np.flatnonzero(variance > p["active_threshold"])
        self.active_dims_ = active if active.size else np.arange(p["latent_dim"])
        self.latent_variance_ = variance
        return self

    def _fingerprint(self, X) -> str:
        h = hashlib.blake2b(digest_size=20)
        params = {k: v for k, v in self.get_params().items() if k not in ("progress", "checkpoint")}
        h.update(repr(sorted((k, repr(v)) for k, v in params.items())).encode())
        h.update(repr((self.random_state_, X.shape)).encode())
        h.update(np.ascontiguousarray(X).tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ using a fitted model
    def transform(self, X) -> np.ndarray:
        """Posterior means: ndarray of shape (n_sequences, n_steps, latent_dim)."""
        torch = torch_module()
        if not hasattr(self, "module_"):
            raise InvalidParameterError(
                "this StepVAE is not fitted yet: call fit(X) or StepVAE.load(path)"
            )
        X = check_sequences(X, width=self.n_features_in_)
        n, T, D = X.shape
        flat = torch.as_tensor(
            ((X - self.obs_mean_) / self.obs_scale_).reshape(-1, D), dtype=torch.float32
        )
        out = []
        with torch.no_grad():
            for start in range(0, len(flat), 65_536):
                mu, _ = self.module_.encode(flat[start : start + 65_536].to(self.device_))
                out.append(mu.cpu().numpy().astype(np.float64))
        latent_dim = self.module_.decoder[0].in_features
        z = np.concatenate(out) if out else np.empty((0, latent_dim))
        return z.reshape(n, T, latent_dim)

    def score(self, X) -> float:
        """Negative loss per step (reconstruction NLL + beta * KL at the posterior means) of
        sequences X; higher is better."""
        torch = torch_module()
        if not hasattr(self, "module_"):
            raise InvalidParameterError("this StepVAE is not fitted yet: call fit(X) first")
        X = check_sequences(X, width=self.n_features_in_)
        x = torch.as_tensor(
            (X - self.obs_mean_) / self.obs_scale_, dtype=torch.float32, device=self.device_
        )
        with torch.no_grad():
            recon, kl = self.module_.losses(x, sample=False)
        return -float(recon + self.beta * kl)

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the fitted model to the directory ``path`` (config.json, state.pt)."""
        torch = torch_module()
        if not hasattr(self, "module_"):
            raise InvalidParameterError("this StepVAE is not fitted yet: nothing to save")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        params = jsonable(self.get_params())
        params["checkpoint"] = None
        fitted = {
            "format_version": FORMAT_VERSION,
            "n_features_in": self.n_features_in_,
            "n_steps": self.n_steps_,
            "obs_mean": self.obs_mean_.tolist(),
            "obs_scale": self.obs_scale_.tolist(),
            "active_dims": self.active_dims_.tolist(),
            "latent_variance": self.latent_variance_.tolist(),
            "random_state": self.random_state_,
            "history": self.history_,
        }
        (path / "config.json").write_text(json.dumps({"params": params, "fitted": fitted}))
        torch.save(self.module_.state_dict(), path / "state.pt")

    @classmethod
    def load(cls, path, device="auto") -> StepVAE:
        """A fitted model from a directory written by :meth:`save`."""
        torch = torch_module()
        config = read_saved_config(path, "config.json", "StepVAE", FORMAT_VERSION)
        fitted = config["fitted"]
        params = dict(config["params"], device=device)
        params["hidden_sizes"] = tuple(params["hidden_sizes"])
        model = cls(**params)
        model.n_features_in_ = fitted["n_features_in"]
        model.n_steps_ = fitted["n_steps"]
        model.obs_mean_ = np.asarray(fitted["obs_mean"])
        model.obs_scale_ = np.asarray(fitted["obs_scale"])
        model.active_dims_ = np.asarray(fitted["active_dims"], dtype=np.intp)
        model.latent_variance_ = np.asarray(fitted["latent_variance"])
        model.random_state_ = fitted["random_state"]
        model.history_ = fitted["history"]
        model.device_ = str(resolve_device(device))
        model.module_ = model._new_module(model._validated())
        state = torch.load(Path(path) / "state.pt", map_location=model.device_, weights_only=True)
        model.module_.load_state_dict(state)
        model.module_.eval()
        return model


def check_sequences(X, width: int | None = None, name: str = "X") -> np.ndarray:
    """``X`` as a finite float array (n_sequences, n_steps, n_features); ``width`` checks D."""
    X = as_float_array(name, X, ndims=(3,), shape_hint="(n_sequences, n_steps, n_features)")
    if X.shape[1] < 1 or X.shape[2] < 1:
        raise DataValidationError(f"{name} has shape {X.shape}: it needs steps and features")
    if width is not None and X.shape[2] != width:
        raise DataValidationError(
            f"{name} has {X.shape[2]} features per step but the model was fitted on {width}"
        )
    bad = ~np.isfinite(X)
    if bad.any():
        i, t, j = np.argwhere(bad)[0]
        raise DataValidationError(
            f"{name} holds a non-finite value ({X[i, t, j]}) at sequence {i}, step {t}, feature {j}"
        )
    return X


def _train(module, train, valid, p: dict, seed: int, checkpoint, progress) -> list:
    """Mini-batch Adam with early stopping on ``valid``; leaves the best epoch in ``module``."""
    from .selection import _progress

    torch = torch_module()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=p["learning_rate"])
    history: list = []
    best = {"loss": math.inf, "epoch": -1, "state": None}
    start = 0
    finished = checkpoint.finished(STAGE) if checkpoint is not None else None
    if finished is not None:
        module.load_state_dict(finished["state"])
        return finished["history"]
    resume = checkpoint.current(STAGE) if checkpoint is not None else None
    if resume is not None:
        module.load_state_dict(resume["state"])
        optimizer.load_state_dict(resume["optimizer"])
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["rng"])
        history, best, start = resume["history"], resume["best"], resume["epoch"] + 1
    n = len(train)
    with _progress(progress) as bar:
        if bar is not None:
            bar.start("step VAE", p["epochs"], start)
        for epoch in range(start, p["epochs"]):
            module.train()
            order = torch.randperm(n, generator=generator).to(train.device)
            for begin in range(0, n, p["batch_size"]):
                recon, kl = module.losses(train[order[begin : begin + p["batch_size"]]])
                loss = recon + p["beta"] * kl
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            module.eval()
            with torch.no_grad():
                recon, kl = module.losses(valid, sample=False)
            record = {"epoch": epoch, "recon": float(recon), "kl": float(kl)}
            record["loss"] = record["recon"] + p["beta"] * record["kl"]
            history.append(record)
            if record["loss"] < best["loss"]:
                best = {
                    "loss": record["loss"],
                    "epoch": epoch,
                    "state": copy.deepcopy(module.state_dict()),
                }
            if bar is not None:
                bar.advance(record)
            stop = epoch - best["epoch"] >= p["patience"]
            if checkpoint is not None and not stop and epoch < p["epochs"] - 1:
                checkpoint.save_progress(
                    STAGE,
                    epoch=epoch,
                    state=copy.deepcopy(module.state_dict()),
                    optimizer=copy.deepcopy(optimizer.state_dict()),
                    generator=generator.get_state(),
                    rng=torch.get_rng_state(),
                    history=list(history),
                    best=best,
                )
            if stop:
                break
    module.load_state_dict(best["state"])
    if checkpoint is not None:
        checkpoint.save_finished(
            STAGE, state=copy.deepcopy(module.state_dict()), history=list(history)
        )
    return history


__all__ = ["StepVAE", "check_sequences"]
