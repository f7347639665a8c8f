"""FactorProbe: a CNN that reads the generating factors back from images.

An edit is scored by what it does to the factors of an image, which only a model can read from
pixels. The probe is trained on images whose factors are known (rendered from them), with a
random Gaussian blur on every batch so that it also reads the smoother images a VAE decodes,
and predicts every attribute (a class each) and every nuisance factor (a regression each).
"""

from __future__ import annotations

import math

import numpy as np

from .._params import ConstructorParams, resolve_seed
from .._validation import (
    DataValidationError,
    as_float_array,
    as_unit_images,
    check_finite,
    check_float,
    check_int,
)
from ..ci._backend import resolve_device, torch_module
from .networks import conv_encoder


class FactorProbe(ConstructorParams):
    """Predicts attributes (classes) and nuisance factors (real values) of images.

    Parameters
    ----------
    epochs : int
        Passes over the training images (Adam, cosine-free constant learning rate).
    batch_size : int
    learning_rate : float
    blur : float
        Largest standard deviation, in pixels, of the Gaussian blur drawn for each batch
        (uniform on [0, blur]); 0 trains on the images as given.
    device : "auto", "cpu", "cuda" or a torch device
    random_state : int or None

    Attributes
    ----------
    n_classes_ : list of int
        Classes of each attribute (labels 0 .. n_classes - 1).
    nuisance_mean_, nuisance_scale_ : ndarray of shape (n_nuisance,)
        The nuisance factors are predicted standardised by these.
    image_shape_ : tuple of int
    """

    def __init__(
        self,
        epochs: int = 12,
        *,
        batch_size: int = 128,
        learning_rate: float = 2e-3,
        blur: float = 1.5,
        device="auto",
        random_state=None,
    ):
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.blur = blur
        self.device = device
        self.random_state = random_state

    def fit(self, images, attributes, nuisance) -> FactorProbe:
        """Train on images (n, H, W, C), integer attributes (n, A) and nuisance (n, F)."""
        torch = torch_module()
        epochs = check_int("epochs", self.epochs, minimum=1)
        batch_size = check_int("batch_size", self.batch_size, minimum=1)
        lr = check_float("learning_rate", self.learning_rate, low=0.0, low_inclusive=False)
        blur = check_float("blur", self.blur, low=0.0)
        x = as_unit_images("images", images)
        labels = _check_labels(attributes, len(x))
        values = _check_nuisance(nuisance, len(x))
        self.image_shape_ = tuple(int(s) for s in x.shape[1:])
        self.n_classes_ = [int(labels[:, a].max()) + 1 for a in range(labels.shape[1])]
        self.nuisance_mean_ = values.mean(axis=0)
        self.nuisance_scale_ = np.where(values.std(axis=0) > 0, values.std(axis=0), 1.0)
        self.random_state_ = resolve_seed(self.random_state)
        self.device_ = str(resolve_device(self.device))
        torch.manual_seed(self.random_state_)
        generator = torch.Generator().manual_seed(self.random_state_)
        n_out = sum(self.n_classes_) + values.shape[1]
        self.network_ = conv_encoder(self.image_shape_, n_out).to(self.device_)
        images_t = torch.as_tensor(_flat(x))
        labels_t = torch.as_tensor(labels, dtype=torch.long)
        values_t = torch.as_tensor(
            (values - self.nuisance_mean_) / self.nuisance_scale_, dtype=torch.float32
        )
        optimizer = torch.optim.Adam(self.network_.parameters(), lr=lr)
        self.network_.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), batch_size):
                index = order[start : start + batch_size]
                sigma = float(torch.rand((), generator=generator)) * blur
                batch = _blurred(torch, images_t[index], self.image_shape_, sigma)
                out = self.network_(batch.to(self.device_))
                loss = self._loss(out, labels_t[index].to(self.device_), values_t[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        self.network_.eval()
        return self

    def _loss(self, out, labels, values):
        functional = torch_module().nn.functional
        loss = 0.0
        start = 0
        for a, c in enumerate(self.n_classes_):
            loss = loss + functional.cross_entropy(out[:, start : start + c], labels[:, a])
            start += c
        return loss + 0.5 * ((out[:, start:] - values.to(out.device)) ** 2).sum(1).mean()

    def predict(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Attribute labels (n, A) int64 and nuisance factors (n, F) of images (n, H, W, C)."""
        torch = torch_module()
        if not hasattr(self, "network_"):
            raise DataValidationError("this FactorProbe is not fitted yet: call fit first")
        x = as_unit_images("images", images)
        if x.shape[1:] != self.image_shape_:
            raise DataValidationError(
                f"images have shape {x.shape[1:]}; the probe was fitted on {self.image_shape_}"
            )
        outputs = []
        with torch.no_grad():
            for start in range(0, len(x), 1024):
                batch = torch.as_tensor(_flat(x[start : start + 1024])).to(self.device_)
                outputs.append(self.network_(batch).cpu().numpy())
        out = np.concatenate(outputs)
        labels, start = [], 0
        for c in self.n_classes_:
            labels.append(out[:, start : start + c].argmax(axis=1))
            start += c
        nuisance = out[:, start:] * self.nuisance_scale_ + self.nuisance_mean_
        return np.stack(labels, axis=1).astype(np.int64), nuisance

    def score(self, images, attributes, nuisance) -> dict:
        """Held-out accuracy of each attribute and R^2 of each nuisance factor (lists)."""
        labels, values = self.predict(images)
        attributes = _check_labels(attributes, len(labels))
        nuisance = _check_nuisance(nuisance, len(labels))
        residual = ((values - nuisance) ** 2).sum(axis=0)
        total = ((nuisance - nuisance.mean(axis=0)) ** 2).sum(axis=0)
        return {
            "accuracy": (labels == attributes).mean(axis=0).tolist(),
            "r2": (1.0 - residual / np.maximum(total, 1e-300)).tolist(),
        }


def _flat(images: np.ndarray) -> np.ndarray:
    """(n, H, W, C) -> (n, C*H*W) in channel-first order, as the networks read them."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)


def _blurred(torch, flat, image_shape, sigma: float):
    """A batch of flattened images blurred by a Gaussian of ``sigma`` pixels (0: unchanged)."""
    if sigma < 0.2:
        return flat
    height, width, channels = image_shape
    radius = max(1, math.ceil(2.5 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = flat.reshape(-1, channels, height, width)
    functional = torch.nn.functional
    row = kernel.reshape(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    column = kernel.reshape(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    x = functional.conv2d(
        functional.pad(x, (radius, radius, 0, 0), mode="replicate"), row, groups=channels
    )
    x = functional.conv2d(
        functional.pad(x, (0, 0, radius, radius), mode="replicate"), column, groups=channels
    )
    return x.reshape(len(flat), -1)


def _check_labels(attributes, n: int) -> np.ndarray:
    a = as_float_array("attributes", attributes, ndims=(2,), shape_hint="(n_images, n_attributes)")
    check_finite("attributes", a)
    if len(a) != n:
        raise DataValidationError(f"attributes has {len(a)} rows for {n} images")
    if (a < 0).any() or (a != np.round(a)).any():
        raise DataValidationError("attributes must hold class labels 0, 1, 2, ...")
    return a.astype(np.int64)


def _check_nuisance(nuisance, n: int) -> np.ndarray:
    v = as_float_array("nuisance", nuisance, ndims=(2,), shape_hint="(n_images, n_nuisance)")
    check_finite("nuisance", v)
    if len(v) != n:
        raise DataValidationError(f"nuisance has {len(v)} rows for {n} images")
    return v


__all__ = ["FactorProbe"]
