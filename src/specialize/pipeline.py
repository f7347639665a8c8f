"""Specializer: observations -> generalist latents -> task structure -> specialist latents.

1. A :class:`~specialize.latent.sequence.StepVAE` learns one latent representation z_t of
   every step's observation, shared across steps (the generalist); its active coordinates
   are kept.
2. Algorithm 1 (:func:`~specialize.structure.discover_structure`) runs on those latents and
   labels each step with its tasks.
3. For each task, a :class:`~specialize.latent.SparseTaskVAE` reads the generalist latents
   of the task's steps (concatenated) and keeps, through its sparse task-latent mask, the
   coordinates the task needs: the task's specialist.

When the tasks are not observed, ``fit(X, outcomes=O)`` with ``n_tasks=M`` first learns task
latents from an observation O of the tasks' outcomes (:mod:`specialize.structure.unknown`) and
runs steps 2 and 3 on them; learned tasks are numbered in no particular order, so their
scores match them to the true tasks first.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import __version__
from ._params import ConstructorParams, jsonable, read_saved_config, resolve_seed
from ._targets import check_task_targets
from ._validation import DataValidationError, InvalidParameterError, check_choice, check_int
from .structure import TaskStructure, discover_structure
from .structure.unknown import TaskReadout

STEP_ENCODERS = ("vae", "identity")
FORMAT_VERSION = 1
MODEL_FILE = "specializer.json"


class Specializer(ConstructorParams):
    """The end-to-end pipeline from raw sequences to per-task specialist encoders.

    Parameters
    ----------
    latent_dim : int
        Width of each step's generalist latent (the StepVAE's ``latent_dim``); only its
        active coordinates reach the structure search.
    step_encoder : {"vae", "identity"}
        "vae" learns the generalist latents; "identity" takes X as the latents (for states or
        embeddings that need no encoder).
    temporal_prior : bool
        The StepVAE's linear-Gaussian prior across neighbouring steps.
    vae_params : dict or None
        Further StepVAE arguments (``epochs``, ``hidden_sizes``, ``beta``, ...).
    structure_params : dict or None
        Arguments of :func:`discover_structure` (``segment_length``, ``test``, ``alpha``,
        ``mode``, ...); its defaults otherwise.
    specialist_params : dict or None
        SparseTaskVAE arguments for every specialist (``sparsity``, ``epochs``, ...);
        ``latent_dim`` defaults to the width of the specialist's input.
    specialists : bool
        Fit the specialists (step 3); False stops after the structure.
    n_tasks : int or None
        Number of tasks to learn when ``fit`` gets outcome observations instead of tasks.
    device : "auto", "cpu", "cuda" or a torch device
    random_state : int or None
        Seeds the StepVAE, the CI tests and every specialist (task k gets seed + 1 + k).
    progress : bool or None
        Progress bars; None shows them when writing to a terminal.
    checkpoint : path or None
        A folder of training state: a fit interrupted at any stage resumes from it.

    Attributes
    ----------
    encoder_ : StepVAE or None
    active_dims_ : int ndarray
        Generalist coordinates used downstream.
    structure_ : TaskStructure
    step_tasks_ : bool ndarray of shape (n_steps, n_tasks)
    task_steps_ : list of int ndarrays
        The steps each task's specialist reads.
    specialists_ : list of SparseTaskVAE or None
        None for a task with no step, or when ``specialists=False``.
    relevant_dims_ : list of int ndarrays
        Each task's selected coordinates of its specialist's latent (empty without one).
    task_readout_ : TaskReadout or None
        The map from outcome observations to the learned task latents (unknown tasks only).
    timings_ : dict of float, seconds per stage
    """

    def __init__(
        self,
        latent_dim: int = 8,
        *,
        step_encoder: str = "vae",
        temporal_prior: bool = False,
        vae_params: dict | None = None,
        structure_params: dict | None = None,
        specialist_params: dict | None = None,
        specialists: bool = True,
        n_tasks: int | None = None,
        device="auto",
        random_state=None,
        progress=None,
        checkpoint=None,
    ):
        self.latent_dim = latent_dim
        self.step_encoder = step_encoder
        self.temporal_prior = temporal_prior
        self.vae_params = vae_params
        self.structure_params = structure_params
        self.specialist_params = specialist_params
        self.specialists = specialists
        self.n_tasks = n_tasks
        self.device = device
        self.random_state = random_state
        self.progress = progress
        self.checkpoint = checkpoint

    # ------------------------------------------------------------------ fitting
    def fit(self, X, G=None, *, outcomes=None) -> Specializer:
        """Fit on sequences X (n, n_steps, n_features) and task variables G (n, n_tasks).

        Without G, ``outcomes`` (n, outcome_dim), an observation of the tasks' outcomes, and
        the constructor's ``n_tasks`` are required: the tasks are learned from them.
        """
        from .latent import SparseTaskVAE
        from .latent.sequence import StepVAE, check_sequences
        from .structure.unknown import check_outcomes, learn_task_readout

        check_choice("step_encoder", self.step_encoder, STEP_ENCODERS)
        for name in ("vae_params", "structure_params", "specialist_params"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise InvalidParameterError(f"{name} must be a dict or None, got {value!r}")
        X = check_sequences(X)
        if (G is None) == (outcomes is None):
            raise InvalidParameterError(
                "pass either the task variables G or, when the tasks are not observed, "
                "outcomes= (an observation of the tasks' outcomes) with n_tasks set"
            )
        if G is not None:
            G = check_task_targets(G, X.shape[0])
            if np.isnan(G).any():
                raise DataValidationError(
                    "G holds NaN: the structure search needs every task observed in every sequence"
                )
            n_tasks = G.shape[1]
        else:
            if self.n_tasks is None:
                raise InvalidParameterError(
                    "n_tasks is None: set the number of tasks to learn from the outcomes"
                )
            n_tasks = check_int("n_tasks", self.n_tasks, minimum=1)
            outcomes = check_outcomes(outcomes, n_samples=X.shape[0])
        n, T, D = X.shape
        self.n_features_in_, self.n_steps_, self.n_tasks_ = D, T, n_tasks
        self.random_state_ = resolve_seed(self.random_state)
        folder = None if self.checkpoint is None else Path(self.checkpoint)
        self.timings_ = {}

        start = time.perf_counter()
        if self.step_encoder == "vae":
            self.encoder_ = StepVAE(
                self.latent_dim,
                **{
                    "temporal_prior": self.temporal_prior,
                    "device": self.device,
                    "random_state": self.random_state_,
                    "progress": self.progress,
                    "checkpoint": None if folder is None else folder / "step_vae.pt",
                    **(self.vae_params or {}),
                },
            ).fit(X)
            self.active_dims_ = self.encoder_.active_dims_
        else:
            self.encoder_ = None
            self.active_dims_ = np.arange(D)
        Z = self._generalist(X)
        self.timings_["encoder"] = time.perf_counter() - start

        self.task_readout_ = None
        if G is None:
            start = time.perf_counter()
            settings = self.structure_params or {}
            self.task_readout_ = learn_task_readout(
                Z,
                outcomes,
                n_tasks,
                segment_length=settings.get("segment_length", 2),
                alpha=settings.get("alpha", 0.05),
                random_state=self.random_state_,
            )
            G = self.task_readout_.transform(outcomes)
            self.timings_["task_latents"] = time.perf_counter() - start

        start = time.perf_counter()
        structure_params = {"random_state": self.random_state_, **(self.structure_params or {})}
        if folder is not None:
            structure_params.setdefault("checkpoint", folder / "structure.ckpt")
        structure_params.setdefault("progress", bool(self.progress))
        self.structure_ = discover_structure(Z, G, **structure_params)
        self.step_tasks_ = self.structure_.step_tasks
        self.task_steps_ = [np.flatnonzero(column) for column in self.step_tasks_.T]
        self.timings_["structure"] = time.perf_counter() - start

        start = time.perf_counter()
        self.specialists_, self.relevant_dims_ = [], []
        for k, steps in enumerate(self.task_steps_):
            if not self.specialists or steps.size == 0:
                self.specialists_.append(None)
                self.relevant_dims_.append(np.array([], dtype=np.intp))
                continue
            inputs = self._task_inputs(Z, k)
            params = {
                "latent_dim": inputs.shape[1],
                "device": self.device,
                "random_state": self.random_state_ + 1 + k,
                "progress": self.progress,
                "checkpoint": None if folder is None else folder / f"specialist_{k}.pt",
                **(self.specialist_params or {}),
            }
            specialist = SparseTaskVAE(**params).fit(inputs, G[:, [k]])
            self.specialists_.append(specialist)
            self.relevant_dims_.append(specialist.relevant_dims_[0])
        self.timings_["specialists"] = time.perf_counter() - start
        return self

    # ------------------------------------------------------------------ using a fitted model
    def _check_fitted(self) -> None:
        if not hasattr(self, "structure_"):
            raise InvalidParameterError(
                "this Specializer is not fitted yet: call fit(X, G) or Specializer.load(path)"
            )

    def _generalist(self, X) -> np.ndarray:
        if self.encoder_ is None:
            return X
        return self.encoder_.transform(X)[:, :, self.active_dims_]

    def _task_inputs(self, Z: np.ndarray, task: int) -> np.ndarray:
        """The generalist latents of task ``task``'s steps, (n, n_task_steps * n_active)."""
        return Z[:, self.task_steps_[task]].reshape(len(Z), -1)

    def encode(self, X) -> np.ndarray:
        """Generalist latents of every step, (n, n_steps, n_active) (X itself for
        ``step_encoder="identity"``)."""
        from .latent.sequence import check_sequences

        self._check_fitted()
        X = check_sequences(X, width=self.n_features_in_)
        if X.shape[1] != self.n_steps_:
            raise DataValidationError(
                f"X has {X.shape[1]} steps but the model was fitted on {self.n_steps_}"
            )
        return self._generalist(X)

    def task_latents(self, outcomes) -> np.ndarray:
        """Learned task latents (n, n_tasks) of outcome observations (unknown tasks only)."""
        self._check_fitted()
        if self.task_readout_ is None:
            raise InvalidParameterError(
                "this model was fitted on observed tasks: it has no learned task latents"
            )
        return self.task_readout_.transform(outcomes)

    def transform(self, X, task: int) -> np.ndarray:
        """Task ``task``'s specialist latent: (n, len(relevant_dims_[task]))."""
        self._check_fitted()
        task = check_int("task", task, minimum=0, maximum=self.n_tasks_ - 1)
        specialist = self.specialists_[task]
        if specialist is None:
            reason = (
                "no step was assigned to it"
                if self.task_steps_[task].size == 0
                else "the model was fitted with specialists=False"
            )
            raise InvalidParameterError(f"task {task} has no specialist: {reason}")
        return specialist.transform_task(self._task_inputs(self.encode(X), task), 0)

    # ------------------------------------------------------------------ reporting
    def report(self, truth=None) -> dict:
        """A JSON-friendly summary; ``truth`` (n_steps, n_tasks) adds the structure scores
        (for learned tasks, after matching them to the true tasks: ``scores["permutation"]``)."""
        self._check_fitted()
        tasks = []
        for k, specialist in enumerate(self.specialists_):
            entry = {
                "task": k,
                "steps": self.task_steps_[k].tolist(),
                "relevant_dims": self.relevant_dims_[k].tolist(),
            }
            if specialist is not None:
                entry.update(
                    input_dim=int(specialist.n_features_in_),
                    sparsity=specialist.sparsity_,
                    mask=specialist.task_mask_[0].tolist(),
                    task_type=specialist.task_types_[0],
                )
            tasks.append(entry)
        report = {
            "version": __version__,
            "random_state": self.random_state_,
            "n_steps": self.n_steps_,
            "n_tasks": self.n_tasks_,
            "n_features": self.n_features_in_,
            "step_encoder": self.step_encoder,
            "active_dims": self.active_dims_.tolist(),
            "step_tasks": self.step_tasks_.astype(int).tolist(),
            "tasks": tasks,
            "timings": self.timings_,
        }
        if self.task_readout_ is not None:
            report["learned_tasks"] = True
            report["task_supports"] = self.task_readout_.supports.astype(int).tolist()
            report["tasks_resolved"] = self.task_readout_.n_resolved
        if truth is not None:
            report["scores"] = self.scores(truth)
        return report

    def scores(self, truth) -> dict:
        """Structure scores against ``truth`` (n_steps or n_segments, n_tasks).

        Learned tasks are matched to the true ones first
        (:func:`~specialize.metrics.matched_structure_scores`).
        """
        from .metrics.structure import matched_structure_scores

        self._check_fitted()
        if self.task_readout_ is None:
            return self.structure_.scores(truth)
        truth = np.asarray(truth, dtype=bool)
        segments = self.structure_.segment_tasks
        predicted = segments if truth.shape == segments.shape else self.step_tasks_
        return matched_structure_scores(predicted, truth)

    def plot(self, path=None, *, truth=None):
        """Structure heat-map (steps x tasks) and every specialist's task-latent mask."""
        from .pipeline_plot import plot_specializer

        self._check_fitted()
        return plot_specializer(self, path, truth=self.aligned_truth(truth))

    def aligned_truth(self, truth):
        """``truth`` with its task columns in the order of the learned tasks (matched by
        :meth:`scores`); as given for observed tasks or None."""
        if truth is None or self.task_readout_ is None:
            return truth
        return np.asarray(truth)[:, self.scores(truth)["permutation"]]

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the fitted pipeline to the folder ``path``: specializer.json, structure.json,
        step_vae/ and specialist_K/."""
        self._check_fitted()
        path = Path(path)
        params = self.get_params()
        params.update(checkpoint=None)
        for name in ("vae_params", "structure_params", "specialist_params"):
            params[name] = jsonable(params[name])
        fitted = {
            "format_version": FORMAT_VERSION,
            "n_features_in": self.n_features_in_,
            "n_steps": self.n_steps_,
            "n_tasks": self.n_tasks_,
            "random_state": self.random_state_,
            "active_dims": self.active_dims_.tolist(),
            "task_steps": [s.tolist() for s in self.task_steps_],
            "relevant_dims": [d.tolist() for d in self.relevant_dims_],
            "has_specialist": [s is not None for s in self.specialists_],
            "task_readout": None if self.task_readout_ is None else self.task_readout_.to_dict(),
            "timings": self.timings_,
        }
        try:
            text = json.dumps({"params": params, "fitted": fitted})
        except TypeError as error:
            raise InvalidParameterError(
                f"cannot save this Specializer: its parameters must be JSON values (numbers, "
                f"strings, lists, dicts) to be written, and one is not ({error}); pass a "
                "registered test name instead of a CITest instance"
            ) from None
        path.mkdir(parents=True, exist_ok=True)
        (path / MODEL_FILE).write_text(text)
        self.structure_.to_json(path / "structure.json")
        if self.encoder_ is not None:
            self.encoder_.save(path / "step_vae")
        for k, specialist in enumerate(self.specialists_):
            if specialist is not None:
                specialist.save(path / f"specialist_{k}")

    @classmethod
    def load(cls, path, device="auto") -> Specializer:
        """A fitted pipeline from a folder written by :meth:`save`."""
        from .latent import SparseTaskVAE
        from .latent.sequence import StepVAE

        path = Path(path)
        config = read_saved_config(path, MODEL_FILE, "Specializer", FORMAT_VERSION)
        fitted = config["fitted"]
        model = cls(**dict(config["params"], device=device))
        model.n_features_in_ = fitted["n_features_in"]
        model.n_steps_ = fitted["n_steps"]
        model.n_tasks_ = fitted["n_tasks"]
        model.random_state_ = fitted["random_state"]
        model.active_dims_ = np.asarray(fitted["active_dims"], dtype=np.intp)
        model.task_steps_ = [np.asarray(s, dtype=np.intp) for s in fitted["task_steps"]]
        model.relevant_dims_ = [np.asarray(d, dtype=np.intp) for d in fitted["relevant_dims"]]
        model.timings_ = fitted["timings"]
        readout = fitted.get("task_readout")
        model.task_readout_ = None if readout is None else TaskReadout.from_dict(readout)
        model.structure_ = TaskStructure.from_json(path / "structure.json")
        model.step_tasks_ = model.structure_.step_tasks
        model.encoder_ = (
            StepVAE.load(path / "step_vae", device=device) if model.step_encoder == "vae" else None
        )
        model.specialists_ = [
            SparseTaskVAE.load(path / f"specialist_{k}", device=device) if has else None
            for k, has in enumerate(fitted["has_specialist"])
        ]
        return model


__all__ = ["Specializer"]
