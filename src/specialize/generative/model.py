"""MaskedImageVAE: a generative model of images whose latent is split by learned task masks.

The Layer-2 model (:class:`specialize.SparseTaskVAE`: a VAE whose task heads read the latent
only through an l1-penalised task-latent mask, with the same training stages and choice of
supports) with a convolutional encoder and decoder, so that it reads and writes images. What a
task's mask keeps are that task's latents, and :meth:`MaskedImageVAE.edit` changes only those:
an edit of "glasses" moves the glasses coordinates and leaves every other coordinate, and so
(when the supports separate the factors) every other attribute and nuisance factor, as it was.
"""

from __future__ import annotations

import numpy as np

from .._targets import check_task_targets
from .._validation import (
    DataValidationError,
    InvalidParameterError,
    as_float_array,
    as_unit_images,
    check_choice,
    check_finite,
    check_float,
    check_int,
)
from ..ci._backend import torch_module
from ..latent.estimator import DEFAULT_PATH, SparseTaskVAE
from ..latent.model import SparseTaskVAEModule
from .networks import conv_decoder, conv_encoder

#: Latent units moved per step of an edit, and the most steps an edit takes: a walk ends at
#: most 4 prior standard deviations from where it started, so that an edit the head cannot
#: reach (or a head that is flat there) does not carry the latent far outside the prior.
EDIT_STEP = 0.05
EDIT_MAX_STEPS = 80
EDIT_METHODS = ("walk", "class-mean")
#: A regression edit is done when the head is within this many target standard deviations.
REGRESSION_EDIT_TOLERANCE = 0.05


class MaskedImageVAE(SparseTaskVAE):
    """A VAE on images whose task heads read the latent through a sparse task-latent mask.

    Everything :class:`specialize.SparseTaskVAE` does (the penalty and its automatic choice,
    the alignment, the refit with supports fixed, missing labels, early stopping, checkpoints,
    ``save``/``load``), with a convolutional encoder and decoder (stride-2 convolutions, SiLU,
    :mod:`specialize.generative.networks`) and a Gaussian likelihood on the pixels. Images are
    (n, height, width, channels), uint8 0-255 or float 0-1.

    Parameters
    ----------
    latent_dim : int
        Width of z.
    task_names : sequence of str, optional
        One name per task column of G, for :meth:`edit` and :meth:`transform_task`; by default
        ``"task0"``, ``"task1"``, ...
    selection, task_weight
        As for :class:`specialize.SparseTaskVAE`, but by default the penalty path with
        unweighted refits (``"path"``, 1): the rule measured on images (docs/generative.md);
        the gradient-moment rule and the weighted refits of the vector model's default are
        not yet measured here.
    sparsity, beta, gate, align, head_lipschitz, head_sizes, epochs, batch_size,
    learning_rate, task_types, threshold, tolerance, sparsity_path, validation_fraction,
    patience, device, random_state, progress, checkpoint
        As for :class:`specialize.SparseTaskVAE`; the defaults of ``latent_dim``, ``epochs``,
        ``batch_size``, ``learning_rate`` and ``patience`` suit images on a CPU.

    Attributes
    ----------
    image_shape_ : tuple of int
        (height, width, channels) of the training images.
    task_names_ : list of str
    class_latents_ : list of ndarray or None
        Per classification task, the mean posterior mean of the training images of each
        class, (n_classes, latent_dim), used by ``edit(..., method="class-mean")``; None for a
        regression task.
    task_mask_, relevant_dims_, sparsity_, path_, history_, task_types_, classes_
        As for :class:`specialize.SparseTaskVAE`.
    """

    def __init__(
        self,
        latent_dim: int = 16,
        *,
        task_names=None,
        sparsity="auto",
        selection: str = "path",
        beta: float = 1.0,
        task_weight: float = 1.0,
        gate: str = "l1",
        align: bool = True,
        head_lipschitz: float = 1.0,
        head_sizes=(32, 32),
        epochs: int = 60,
        batch_size: int = 64,
        learning_rate: float = 2e-3,
        task_types=None,
        threshold: float = 0.1,
        tolerance: float = 0.05,
        sparsity_path=DEFAULT_PATH,
        validation_fraction: float = 0.2,
        patience: int = 10,
        device="auto",
        random_state=None,
        progress=None,
        checkpoint=None,
    ):
        super().__init__(
            latent_dim,
            sparsity=sparsity,
            selection=selection,
            beta=beta,
            task_weight=task_weight,
            gate=gate,
            align=align,
            head_lipschitz=head_lipschitz,
            head_sizes=head_sizes,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            task_types=task_types,
            threshold=threshold,
            tolerance=tolerance,
            sparsity_path=sparsity_path,
            validation_fraction=validation_fraction,
            patience=patience,
            device=device,
            random_state=random_state,
            progress=progress,
            checkpoint=checkpoint,
        )
        del self.hidden_sizes  # the convolutions replace the MLP's hidden layers
        self.task_names = task_names

    # ------------------------------------------------------------------ images in and out
    def fit(self, X, G) -> MaskedImageVAE:
        """Train on images X (n, height, width, channels) and task targets G (n, n_tasks)."""
        images = as_unit_images("X", X)
        targets = check_task_targets(G, len(images))
        self.task_names_ = self._checked_task_names(targets.shape[1])
        self.image_shape_ = tuple(int(s) for s in images.shape[1:])
        super().fit(images, targets)
        self.class_latents_ = self._class_latents(self.encode(images), targets)
        return self

    def _class_latents(self, z: np.ndarray, targets: np.ndarray) -> list:
        """Per task: the mean posterior mean of each class's images (n_classes, latent_dim),
        or None for a regression task."""
        means = []
        for k, classes in enumerate(self.classes_):
            if classes is None:
                means.append(None)
                continue
            labels = targets[:, k]
            means.append(np.stack([z[labels == c].mean(axis=0) for c in classes]))
        return means

    def _checked_task_names(self, n_tasks: int) -> list[str]:
        if self.task_names is None:
            return [f"task{k}" for k in range(n_tasks)]
        names = [self.task_names] if isinstance(self.task_names, str) else list(self.task_names)
        if len(names) != n_tasks or not all(isinstance(n, str) for n in names):
            raise InvalidParameterError(
                f"task_names must be {n_tasks} strings, one per task column of G; got {names!r}"
            )
        if len(set(names)) != len(names):
            raise InvalidParameterError(f"task_names must be distinct; got {names!r}")
        return names

    def _check_input(self, X, fitted: bool) -> np.ndarray:
        """Images (n, H, W, C) as float32 rows (n, C*H*W) in channel-first order."""
        images = as_unit_images("X", X)
        if fitted and images.shape[1:] != self.image_shape_:
            raise DataValidationError(
                f"X holds images of shape {images.shape[1:]}; the model was fitted on "
                f"{self.image_shape_} (height, width, channels)"
            )
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)

    def _input_scaling(self, X: np.ndarray):
        """One mean and one scale for all pixels, so that the images stay images."""
        scale = np.float32(X.std())
        if scale == 0:
            raise DataValidationError("X holds images that are all the same constant colour")
        return np.float32(X.mean()), scale

    def _new_module(self, p: dict):
        outputs = [1 if c is None else len(c) for c in self.classes_]
        d = p["latent_dim"]
        return SparseTaskVAEModule(
            self.n_features_in_,
            d,
            [],
            p["head_sizes"],
            outputs,
            gate=self.gate,
            head_gain=p["head_lipschitz"],
            encoder=conv_encoder(self.image_shape_, 2 * d),
            decoder=conv_decoder(self.image_shape_, d),
        ).to(self.device_)

    def _saved_extras(self) -> dict:
        return {
            "image_shape": list(self.image_shape_),
            "task_names": self.task_names_,
            "class_latents": [None if m is None else m.tolist() for m in self.class_latents_],
        }

    def _load_extras(self, fitted: dict) -> None:
        self.image_shape_ = tuple(fitted["image_shape"])
        self.task_names_ = list(fitted["task_names"])
        self.class_latents_ = [
            None if m is None else np.asarray(m) for m in fitted["class_latents"]
        ]
        self.obs_mean_ = np.float32(self.obs_mean_)
        self.obs_scale_ = np.float32(self.obs_scale_)

    def encode(self, X) -> np.ndarray:
        """Posterior means of images X: (n, latent_dim); the same as :meth:`transform`."""
        return self.transform(X)

    def decode(self, Z) -> np.ndarray:
        """Images (n, height, width, channels), float32 in [0, 1], decoded from latents Z
        (n, latent_dim) (the decoder's mean, clipped to [0, 1])."""
        torch = torch_module()
        Z = self._check_latents(Z)
        height, width, channels = self.image_shape_
        out = []
        self.module_.eval()
        with torch.no_grad():
            for start in range(0, len(Z), 1024):
                z = torch.as_tensor(Z[start : start + 1024], dtype=torch.float32)
                x = self.module_.decoder(z.to(self.device_)).cpu().numpy()
                out.append(x * self.obs_scale_ + self.obs_mean_)
        flat = np.concatenate(out).astype(np.float32)
        images = flat.reshape(len(Z), channels, height, width).transpose(0, 2, 3, 1)
        return np.clip(images, 0.0, 1.0)

    def reconstruct(self, X) -> np.ndarray:
        """``decode(encode(X))``: images of the shape of X, float32 in [0, 1]."""
        return self.decode(self.encode(X))

    def sample(self, n_samples: int, random_state=None) -> np.ndarray:
        """``n_samples`` images decoded from latents drawn from the prior N(0, I)."""
        self._check_fitted()
        n_samples = check_int("n_samples", n_samples, minimum=1)
        rng = np.random.default_rng(random_state)
        return self.decode(rng.standard_normal((n_samples, self.latent_dim)))

    # ------------------------------------------------------------------ tasks and edits
    def task_index(self, task) -> int:
        """The column of ``task``, given as its index or its name in ``task_names_``."""
        self._check_fitted()
        if isinstance(task, str):
            if task not in self.task_names_:
                known = ", ".join(repr(n) for n in self.task_names_)
                raise InvalidParameterError(f"unknown task {task!r}; the tasks are {known}")
            return self.task_names_.index(task)
        return check_int("task", task, minimum=0, maximum=self.n_tasks_ - 1)

    def transform_task(self, X, task) -> np.ndarray:
        """Task ``task``'s latents (by index or name): (n, len(relevant_dims_[task]))."""
        return super().transform_task(X, self.task_index(task))

    def edit(self, X, task, value, *, method: str = "walk") -> np.ndarray:
        """Images with task ``task`` set to ``value``, by changing only that task's latents.

        Parameters
        ----------
        X : ndarray of shape (n, height, width, channels) or (n, latent_dim)
            Images to edit (encoded to their posterior means first), or latents.
        task : int or str
            The task, by index or by name.
        value : class label or float
            A class of the task (one of ``classes_[task]``) or, for a regression task, a
            target in the task's units.
        method : {"walk", "class-mean"}
            How the task's latents are changed (:meth:`edit_latents`).

        Returns
        -------
        ndarray of shape (n, height, width, channels)
            The decoded edited latents, float32 in [0, 1].
        """
        Z = self.encode(X) if np.ndim(X) == 4 else X
        return self.decode(self.edit_latents(Z, task, value, method=method))

    def edit_latents(self, Z, task, value, *, method: str = "walk") -> np.ndarray:
        """Latents Z (n, latent_dim) with only ``relevant_dims_[task]`` changed.

        ``method="walk"`` (the default): each row walks along the head's gradient within the
        task's coordinates, in steps of ``EDIT_STEP`` latent units (the normalised gradient of
        the head's loss for ``value``), until the head gives ``value`` a probability of at
        least 0.95 (classification), or comes within ``REGRESSION_EDIT_TOLERANCE`` standard
        deviations of it (regression), or ``EDIT_MAX_STEPS`` steps are taken; a row already
        there is returned unchanged. ``method="class-mean"`` (classification tasks): the task's
        coordinates are set to their mean over the training images of class ``value``
        (``class_latents_``), whatever the head says; with every coordinate in the support,
        as without the penalty, that replaces the whole latent.
        """
        Z = self._check_latents(Z)
        k = self.task_index(task)
        check_choice("method", method, EDIT_METHODS)
        target = self._encoded_value(k, value)
        if method == "class-mean":
            if self.class_latents_[k] is None:
                raise InvalidParameterError(
                    f"method='class-mean' needs a classification task; "
                    f"{self.task_names_[k]!r} is a regression task"
                )
            edited = Z.copy()
            dims = self.relevant_dims_[k]
            edited[:, dims] = self.class_latents_[k][int(target), dims]
            return edited
        return self._walk(Z, k, target)

    def _walk(self, Z: np.ndarray, k: int, target: float) -> np.ndarray:
        torch = torch_module()
        dims = torch.as_tensor(self.relevant_dims_[k], dtype=torch.long, device=self.device_)
        start = torch.as_tensor(Z, dtype=torch.float32, device=self.device_)
        z = start
        moving = torch.ones(len(z), dtype=torch.bool, device=self.device_)
        self.module_.eval()
        for _ in range(EDIT_MAX_STEPS):
            z = z.detach().requires_grad_(True)
            out = self.module_.predict_tasks(z)[k]
            if self.classes_[k] is None:
                gap = out[:, 0] - target
                loss, done = 0.5 * gap**2, gap.abs() <= REGRESSION_EDIT_TOLERANCE
            else:
                log_p = torch.log_softmax(out, dim=1)[:, int(target)]
                loss, done = -log_p, log_p.exp() >= 0.95
            moving &= ~done.detach()
            if not moving.any():
                break
            (grad,) = torch.autograd.grad(loss.sum(), z)
            step = torch.zeros_like(z)
            step[:, dims] = grad[:, dims]
            norm = step.norm(dim=1, keepdim=True).clamp_min(1e-12)
            with torch.no_grad():
                z = z - EDIT_STEP * step / norm * moving[:, None]
        # the change is added to Z itself, so that a row that does not move is Z's own row
        return Z + (z.detach() - start).cpu().numpy().astype(np.float64)

    def _encoded_value(self, k: int, value) -> float:
        """``value`` as the head sees it: a class index, or a standardised target."""
        classes = self.classes_[k]
        name = self.task_names_[k]
        if classes is None:
            value = check_float(f"value of task {name!r}", value)
            return (value - self.target_mean_[k]) / self.target_scale_[k]
        matches = np.flatnonzero(classes == value)
        if not matches.size:
            known = ", ".join(str(c.item() if hasattr(c, "item") else c) for c in classes)
            raise InvalidParameterError(
                f"value {value!r} is not a class of task {name!r}; its classes are {known}"
            )
        return float(matches[0])

    def _check_latents(self, Z) -> np.ndarray:
        self._check_fitted()
        Z = as_float_array("Z", Z, ndims=(2,), shape_hint="(n_samples, latent_dim)")
        if Z.shape[1] != self.latent_dim:
            raise DataValidationError(
                f"Z has {Z.shape[1]} columns; the model's latent has {self.latent_dim}"
            )
        check_finite("Z", Z)
        return Z


__all__ = ["MaskedImageVAE"]
