"""The array backend of the kernel tests: PyTorch tensors on the CPU or a CUDA device.

PyTorch is imported on first use, so that linear tests never pay for it.
"""

from __future__ import annotations

import numpy as np

from .._validation import InvalidParameterError


def torch_module():
    """The ``torch`` module (imported lazily)."""
    import torch

    return torch


def resolve_device(device):
    """A ``torch.device`` from ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a device, or ``"auto"``
    (CUDA when PyTorch sees a device, else the CPU); checks CUDA."""
    torch = torch_module()
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidParameterError(f"device must be 'cpu' or 'cuda[:k]'; got {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(
            f"device={device!r} asks for CUDA, but this PyTorch build sees no CUDA device; "
            "use device='cpu'"
        )
    if resolved.type not in ("cpu", "cuda"):
        raise InvalidParameterError(f"device must be 'cpu' or 'cuda[:k]'; got {device!r}")
    return resolved


def as_tensor(array: np.ndarray, device):
    """``array`` as a float64 tensor on ``device`` (no copy on the CPU when possible)."""
    torch = torch_module()
    return torch.as_tensor(np.ascontiguousarray(array, dtype=np.float64), device=device)
