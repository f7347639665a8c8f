"""SparseTaskVAE: specialist latents from a generalist VAE through a sparse task-latent mask."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .._params import ConstructorParams, jsonable, read_saved_config, resolve_seed
from .._targets import check_task_targets, encode_targets, resolve_task_types
from .._validation import (
    DataValidationError,
    InvalidParameterError,
    as_float_array,
    check_choice,
    check_float,
    check_int,
)
from ..ci._backend import resolve_device, torch_module
from .checkpoint import TrainingCheckpoint
from .model import SparseTaskVAEModule
from .selection import select_supports
from .training import TaskData

GATES = ("l1", "hard-concrete")
SELECTIONS = ("moments", "path")
#: Penalty weights tried by ``sparsity="auto"`` (per sample, in units of the task losses).
DEFAULT_PATH = (0.01, 0.03, 0.1, 0.3)
FORMAT_VERSION = 2


class SparseTaskVAE(ConstructorParams):
    """A VAE whose task heads read the latent only through a sparse task-latent mask.

    The encoder q(z | x) and decoder p(x | z) form a Gaussian VAE with prior N(0, I); head k
    predicts task k from m_k * z, with m the (n_tasks, latent_dim) mask, penalised by
    ``sparsity`` * ||m||_1 (DESIGN.md section 4, Theorem 2). ``relevant_dims_[k]`` are the
    coordinates task k keeps; ``transform_task`` returns them as task k's specialist latent.

    Parameters
    ----------
    latent_dim : int
        Width of z; at least the number of tasks.
    sparsity : float or "auto"
        Weight lambda of the mask penalty. "auto" (the default) selects each task's support
        inside fit, by the rule ``selection`` names (docs/latents.md). 0 gives the unpenalised
        VAE (Proposition 2's superset).
    selection : {"moments", "path"}
        How ``sparsity="auto"`` selects the supports. "moments" (the default): after the
        warm-up and the alignment, task k keeps every coordinate whose share of its head's
        gradient moment (the diagonal of E[grad f_k grad f_k^T] over its trace) is at least
        ``threshold`` times its largest share, and the model is refitted with those supports
        fixed; no penalty is trained. "path": the penalty rises along ``sparsity_path``, each
        weight's supports are scored by the held-out task loss of a refit with them fixed,
        and the sparsest within ``tolerance`` of the best is kept. Ignored unless
        ``sparsity="auto"``.
    beta : float
        Weight of the KL term.
    task_weight : float
        Weight of the task losses against the ELBO (reconstruction + beta * KL, per sample)
        in every refit with the supports fixed; the warm-up, the aligned stage and the
        penalised stages weigh them by 1. The ELBO is unchanged when the latent is
        re-parametrised, so only the task terms confine each task's group to its support;
        beside the reconstruction of every observed dimension a weight of 1 leaves the
        support's coordinates mixed with the rest of the latent.
    gate : {"l1", "hard-concrete"}
        The paper's l1 mask, or a relaxed-l0 hard-concrete gate (Louizos et al., 2018) whose
        penalty is the expected number of open gates.
    align : bool
        Before the penalty, rotate the latent so that the directions each task's head reads
        become coordinates (joint diagonalisation of the heads' gradient outer products,
        :mod:`specialize.latent.alignment`), then retrain the heads. The VAE's prior and
        likelihood do not change under the rotation; the penalty then only has to choose
        coordinates, not also a basis. Not used with ``sparsity=0``.
    head_lipschitz : float
        Head k reads ``head_lipschitz * m_k * z``; with the l1 mask every head is
        1-Lipschitz, so a mask entry of 1 lets its coordinate move the prediction by at most
        ``head_lipschitz`` (standardised target units per latent unit).
    hidden_sizes, head_sizes : sequence of int
        Hidden widths of the encoder (mirrored by the decoder) and of each task head.
    epochs : int
        Most epochs of each training stage; early stopping ends a stage after ``patience``
        epochs without a better validation objective.
    batch_size : int
    learning_rate : float
    task_types : sequence of {"regression", "classification"} or None
        One per task; None infers "classification" for integer columns with at most 10
        distinct values, "regression" otherwise.
    threshold : float
        A coordinate belongs to a task's support when its mask magnitude (or, with
        ``selection="moments"``, its gradient-moment share) is at least ``threshold`` times
        the largest of that task's row.
    tolerance : float
        Relative increase of the held-out task loss that ``selection="path"`` accepts for a
        sparser support.
    sparsity_path : sequence of float
        Penalty weights tried by ``selection="path"``, increasing.
    validation_fraction : float
        Share of the samples held out for early stopping and support selection.
    patience : int
    device : "auto", "cpu", "cuda" or a torch device
    random_state : int or None
    progress : bool or None
        A progress bar with the losses; None shows it when writing to a terminal.
    checkpoint : path or None
        File to which training state is written after every epoch; a fit with the same data
        and parameters resumes from it.

    Attributes
    ----------
    task_mask_ : ndarray of shape (n_tasks, latent_dim)
        Mask magnitudes of the final model, zero off the support.
    relevant_dims_ : list of int ndarrays
        Each task's selected latent coordinates.
    sparsity_ : float
        The penalty weight of the selected supports (0 when ``sparsity=0`` and with
        ``selection="moments"``, which trains no penalty).
    path_ : list of dict
        For each penalty weight tried: the supports and the held-out task losses. With
        ``selection="moments"``, one entry with the supports, the gradient-moment ``shares``
        (n_tasks, latent_dim) and the refit's held-out task losses.
    history_ : list of dict
        Per-epoch validation losses of every stage.
    task_types_ : list of str
    classes_ : list of ndarray or None
        Class labels of each classification task.
    n_features_in_ : int
    random_state_ : int
        The seed actually used (drawn when ``random_state`` is None).
    """

    def __init__(
        self,
        latent_dim: int = 8,
        *,
        sparsity="auto",
        selection: str = "moments",
        beta: float = 1.0,
        task_weight: float = 50.0,
        gate: str = "l1",
        align: bool = True,
        head_lipschitz: float = 1.0,
        hidden_sizes=(64, 64),
        head_sizes=(32, 32),
        epochs: int = 200,
        batch_size: int = 256,
        learning_rate: float = 2e-3,
        task_types=None,
        threshold: float = 0.1,
        tolerance: float = 0.05,
        sparsity_path=DEFAULT_PATH,
        validation_fraction: float = 0.2,
        patience: int = 20,
        device="auto",
        random_state=None,
        progress=None,
        checkpoint=None,
    ):
        self.latent_dim = latent_dim
        self.sparsity = sparsity
        self.selection = selection
        self.beta = beta
        self.task_weight = task_weight
        self.gate = gate
        self.align = align
        self.head_lipschitz = head_lipschitz
        self.hidden_sizes = hidden_sizes
        self.head_sizes = head_sizes
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.task_types = task_types
        self.threshold = threshold
        self.tolerance = tolerance
        self.sparsity_path = sparsity_path
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.device = device
        self.random_state = random_state
        self.progress = progress
        self.checkpoint = checkpoint

    def _validated(self) -> dict:
        p = {
            "latent_dim": check_int("latent_dim", self.latent_dim, minimum=1),
            "beta": check_float("beta", self.beta, low=0.0),
            "task_weight": check_float(
                "task_weight", self.task_weight, low=0.0, low_inclusive=False
            ),
            "epochs": check_int("epochs", self.epochs, minimum=1),
            "batch_size": check_int("batch_size", self.batch_size, minimum=1),
            "learning_rate": check_float(
                "learning_rate", self.learning_rate, low=0.0, low_inclusive=False
            ),
            "threshold": check_float(
                "threshold", self.threshold, low=0.0, high=1.0, low_inclusive=False
            ),
            "tolerance": check_float("tolerance", self.tolerance, low=0.0),
            "validation_fraction": check_float(
                "validation_fraction",
                self.validation_fraction,
                low=0.0,
                high=0.5,
                low_inclusive=False,
            ),
            "patience": check_int("patience", self.patience, minimum=1),
            "head_lipschitz": check_float(
                "head_lipschitz", self.head_lipschitz, low=0.0, low_inclusive=False
            ),
        }
        if not isinstance(self.align, (bool, np.bool_)):
            raise InvalidParameterError(f"align must be True or False, got {self.align!r}")
        p["align"] = bool(self.align)
        check_choice("gate", self.gate, GATES)
        check_choice("selection", self.selection, SELECTIONS)
        p["selection"] = self.selection
        hidden = getattr(self, "hidden_sizes", ())  # a subclass with its own networks has none
        p["hidden_sizes"] = [check_int("hidden_sizes[]", h, minimum=1) for h in hidden]
        p["head_sizes"] = [check_int("head_sizes[]", h, minimum=1) for h in self.head_sizes]
        if isinstance(self.sparsity, str):
            check_choice("sparsity", self.sparsity, ("auto",))
            p["sparsity"] = "auto"
        else:
            p["sparsity"] = check_float("sparsity", self.sparsity, low=0.0)
        path = [
            check_float("sparsity_path[]", v, low=0.0, low_inclusive=False)
            for v in self.sparsity_path
        ]
        if not path or any(b <= a for a, b in zip(path, path[1:], strict=False)):
            raise InvalidParameterError(
                f"sparsity_path must be a non-empty increasing sequence, got {list(path)}"
            )
        p["sparsity_path"] = path
        return p

    # ------------------------------------------------------------------ fitting
    def fit(self, X, G) -> SparseTaskVAE:
        """Train on observations X (n, D) and task targets G (n, n_tasks); returns self.

        G may hold NaN where a task's label is missing: that sample still trains the VAE and
        the other tasks.
        """
        torch = torch_module()
        p = self._validated()
        X = self._check_input(X, fitted=False)
        G = check_task_targets(G, X.shape[0])
        n, n_tasks = G.shape
        if p["latent_dim"] < n_tasks:
            raise InvalidParameterError(
                f"latent_dim={p['latent_dim']} is smaller than the number of tasks ({n_tasks}): "
                "every task needs at least one latent coordinate of its own"
            )
        self.task_types_ = resolve_task_types(self.task_types, G)
        encoded, self.classes_, self.target_mean_, self.target_scale_ = encode_targets(
            G, self.task_types_
        )
        self.obs_mean_, self.obs_scale_ = self._input_scaling(X)
        self.n_features_in_ = X.shape[1]
        self.n_tasks_ = n_tasks
        self.random_state_ = resolve_seed(self.random_state)
        self.device_ = str(resolve_device(self.device))
        rng = np.random.default_rng(self.random_state_)
        order = rng.permutation(n)
        n_valid = max(1, int(round(p["validation_fraction"] * n)))
        if n - n_valid < 2:
            raise DataValidationError(
                f"X has {n} samples: too few to hold out {n_valid} for validation and train"
            )
        data = _task_data(torch, (X - self.obs_mean_) / self.obs_scale_, encoded, self.device_)
        train = data.subset(torch.as_tensor(order[n_valid:], device=self.device_))
        valid = data.subset(torch.as_tensor(order[:n_valid], device=self.device_))
        torch.manual_seed(self.random_state_)
        self.module_ = self._new_module(p)
        checkpoint = (
            TrainingCheckpoint(self.checkpoint, self._fingerprint(X, G))
            if self.checkpoint
            else None
        )
        result = select_supports(
            self.module_,
            train,
            valid,
            params=p,
            classification=[t == "classification" for t in self.task_types_],
            seed=self.random_state_,
            progress=self.progress,
            checkpoint=checkpoint,
        )
        self.history_ = result.history
        self.path_ = result.path
        self.sparsity_ = result.sparsity
        self.module_.eval()
        mask = self.module_.effective_mask().detach().abs().cpu().numpy()
        self.task_mask_ = mask
        support = self.module_.support.cpu().numpy()
        self.relevant_dims_ = [np.flatnonzero(row) for row in support]
        return self

    def _check_input(self, X, fitted: bool) -> np.ndarray:
        """X as a checked float array (n, n_features); ``fitted`` checks its width."""
        return _check_obs(X, width=self.n_features_in_ if fitted else None)

    def _input_scaling(self, X: np.ndarray):
        """Mean and scale that standardise X for the network: per feature."""
        return X.mean(axis=0), X.std(axis=0)

    def _new_module(self, p: dict):
        outputs = [1 if c is None else len(c) for c in self.classes_]
        return SparseTaskVAEModule(
            self.n_features_in_,
            p["latent_dim"],
            p["hidden_sizes"],
            p["head_sizes"],
            outputs,
            gate=self.gate,
            head_gain=p["head_lipschitz"],
        ).to(self.device_)

    def _saved_extras(self) -> dict:
        """Fitted state a subclass adds to ``config.json`` (JSON values)."""
        return {}

    def _load_extras(self, fitted: dict) -> None:
        """Restore what :meth:`_saved_extras` wrote, before the network is rebuilt."""

    def _fingerprint(self, X, G) -> str:

        h = hashlib.blake2b(digest_size=20)
        params = {k: v for k, v in self.get_params().items() if k not in ("progress", "checkpoint")}
        h.update(repr(sorted((k, repr(v)) for k, v in params.items())).encode())
        h.update(repr(self.random_state_).encode())
        for a in (X, G):
            h.update(repr(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ using a fitted model
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise InvalidParameterError(
                "this SparseTaskVAE is not fitted yet: call fit(X, G) or SparseTaskVAE.load(path)"
            )

    def _encode(self, X) -> np.ndarray:
        torch = torch_module()
        self._check_fitted()
        X = self._check_input(X, fitted=True)
        x = torch.as_tensor((X - self.obs_mean_) / self.obs_scale_, dtype=torch.float32)
        self.module_.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(x), 8192):
                mu, _ = self.module_.encode(x[start : start + 8192].to(self.device_))
                out.append(mu.cpu().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.empty((0, self.latent_dim))

    def transform(self, X) -> np.ndarray:
        """Posterior means of z: ndarray of shape (n_samples, latent_dim)."""
        return self._encode(X)

    def fit_transform(self, X, G) -> np.ndarray:
        return self.fit(X, G).transform(X)

    def transform_task(self, X, task: int) -> np.ndarray:
        """Task ``task``'s specialist latent: the posterior means of its relevant coordinates,
        ndarray of shape (n_samples, len(relevant_dims_[task]))."""
        self._check_fitted()
        task = check_int("task", task, minimum=0, maximum=self.n_tasks_ - 1)
        return self._encode(X)[:, self.relevant_dims_[task]]

    def predict(self, X) -> np.ndarray:
        """Task predictions from the posterior means: (n_samples, n_tasks); regression values
        in the targets' units, class labels for classification tasks."""
        torch = torch_module()
        z = torch.as_tensor(self._encode(X), dtype=torch.float32, device=self.device_)
        with torch.no_grad():
            outputs = self.module_.predict_tasks(z)
        out = np.empty((z.shape[0], self.n_tasks_))
        for k, o in enumerate(outputs):
            o = o.cpu().numpy()
            if self.classes_[k] is None:
                out[:, k] = o[:, 0] * self.target_scale_[k] + self.target_mean_[k]
            else:
                out[:, k] = self.classes_[k][o.argmax(axis=1)]
        return out

    def task_scores(self, X, G) -> np.ndarray:
        """Per task: R^2 (regression) or accuracy (classification) on the labelled samples,
        ndarray of shape (n_tasks,)."""
        prediction = self.predict(X)  # checks that the model is fitted and X
        G = check_task_targets(G, prediction.shape[0])
        if G.shape[1] != self.n_tasks_:
            raise DataValidationError(
                f"G has {G.shape[1]} task columns; the model was fitted with {self.n_tasks_}"
            )
        scores = np.full(self.n_tasks_, np.nan)
        for k in range(self.n_tasks_):
            labelled = ~np.isnan(G[:, k])
            y, p = G[labelled, k], prediction[labelled, k]
            if not labelled.any():
                continue
            if self.classes_[k] is None:
                scores[k] = 1.0 - np.sum((y - p) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-300)
            else:
                scores[k] = float(np.mean(y == p))
        return scores

    def score(self, X, G) -> float:
        """Mean over tasks of :meth:`task_scores` (higher is better)."""
        return float(np.nanmean(self.task_scores(X, G)))

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the fitted model to the directory ``path`` (config.json, state.pt)."""
        torch = torch_module()
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        params = jsonable(self.get_params())
        params["checkpoint"] = None
        fitted = {
            "format_version": FORMAT_VERSION,
            "n_features_in": self.n_features_in_,
            "n_tasks": self.n_tasks_,
            "task_types": self.task_types_,
            "classes": [None if c is None else c.tolist() for c in self.classes_],
            "target_mean": self.target_mean_.tolist(),
            "target_scale": self.target_scale_.tolist(),
            "obs_mean": self.obs_mean_.tolist(),
            "obs_scale": self.obs_scale_.tolist(),
            "relevant_dims": [d.tolist() for d in self.relevant_dims_],
            "task_mask": self.task_mask_.tolist(),
            "sparsity": self.sparsity_,
            "path": self.path_,
            "random_state": self.random_state_,
            "estimator": type(self).__name__,
            **self._saved_extras(),
        }
        (path / "config.json").write_text(json.dumps({"params": params, "fitted": fitted}))
        torch.save(self.module_.state_dict(), path / "state.pt")
        (path / "history.json").write_text(json.dumps(self.history_))

    @classmethod
    def load(cls, path, device="auto") -> SparseTaskVAE:
        """A fitted model from a directory written by :meth:`save`."""
        torch = torch_module()
        path = Path(path)
        config = read_saved_config(path, "config.json", cls.__name__, FORMAT_VERSION)
        fitted = config["fitted"]
        saved_as = fitted.get("estimator", "SparseTaskVAE")
        if saved_as != cls.__name__:
            raise DataValidationError(
                f"{path} holds a saved {saved_as}, not a {cls.__name__}: use {saved_as}.load"
            )
        params = config["params"]
        params["device"] = device
        model = cls(**{k: _from_json(k, v) for k, v in params.items()})
        model.n_features_in_ = fitted["n_features_in"]
        model.n_tasks_ = fitted["n_tasks"]
        model.task_types_ = fitted["task_types"]
        model.classes_ = [None if c is None else np.asarray(c) for c in fitted["classes"]]
        model.target_mean_ = np.asarray(fitted["target_mean"])
        model.target_scale_ = np.asarray(fitted["target_scale"])
        model.obs_mean_ = np.asarray(fitted["obs_mean"])
        model.obs_scale_ = np.asarray(fitted["obs_scale"])
        model.relevant_dims_ = [np.asarray(d, dtype=np.intp) for d in fitted["relevant_dims"]]
        model.task_mask_ = np.asarray(fitted["task_mask"])
        model.sparsity_ = fitted["sparsity"]
        model.path_ = fitted["path"]
        model.random_state_ = fitted["random_state"]
        model.device_ = str(resolve_device(device))
        model._load_extras(fitted)
        model.module_ = model._new_module(model._validated())
        state = torch.load(path / "state.pt", map_location=model.device_, weights_only=True)
        model.module_.load_state_dict(state)
        model.module_.eval()
        history = path / "history.json"
        model.history_ = json.loads(history.read_text()) if history.is_file() else []
        return model


def _check_obs(X, width: int | None = None) -> np.ndarray:
    X = as_float_array("X", X, ndims=(2,), shape_hint="(n_samples, n_features)")
    if width is not None and X.shape[1] != width:
        raise DataValidationError(
            f"X has {X.shape[1]} features but the model was fitted on {width}"
        )
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataValidationError(
            f"X holds a non-finite value ({X[i, j]}) at row {i}, column {j}; "
            "observations must be finite (only task labels may be missing)"
        )
    if width is None:
        constant = np.flatnonzero(X.std(axis=0) == 0) if len(X) else np.array([], int)
        if constant.size:
            raise DataValidationError(f"X column {constant[0]} is constant: drop it before fitting")
    return X


def _task_data(torch, x: np.ndarray, y: np.ndarray, device):
    return TaskData(
        torch.as_tensor(x, dtype=torch.float32, device=device),
        torch.as_tensor(y, dtype=torch.float32, device=device),
    )


def _from_json(name: str, value):
    if name in ("hidden_sizes", "head_sizes", "sparsity_path") and isinstance(value, list):
        return tuple(value)
    return value


__all__ = ["SparseTaskVAE"]
