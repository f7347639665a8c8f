"""Input checks shared by the public entry points.

Every check names the argument, what was expected and what arrived, so that a user
reading the message knows which array, shape or value to fix.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable

import numpy as np


class InvalidParameterError(ValueError):
    """A parameter has a value outside its documented domain."""


class DataValidationError(ValueError):
    """An input array cannot be used as given (shape, NaN/inf, degenerate columns)."""


class CollinearityError(DataValidationError):
    """Columns a test needs are (numerically) linear combinations of one another."""


def check_choice(name: str, value, choices: Iterable) -> None:
    """Raise unless ``value`` is one of ``choices``, listing the valid ones."""
    choices = list(choices)
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise InvalidParameterError(f"{name} must be one of {valid}; got {value!r}")


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as int, raising if it is not an integer within bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidParameterError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidParameterError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Return ``value`` as float, raising if it is not a finite real within bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise InvalidParameterError(f"{name} must be a finite number; got {value!r}")
    value = float(value)
    if low is not None and (value < low or (value == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise InvalidParameterError(f"{name} must be {op} {low}, got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        op = "<=" if high_inclusive else "<"
        raise InvalidParameterError(f"{name} must be {op} {high}, got {value}")
    return value


def as_float_array(name: str, array, *, ndims: tuple[int, ...], shape_hint: str) -> np.ndarray:
    """Convert to a float64 array with one of the allowed numbers of dimensions."""
    try:
        out = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"{name} must be a numeric array; {exc}") from None
    if out.ndim not in ndims:
        raise DataValidationError(f"{name} has shape {out.shape}, expected {shape_hint}")
    if out.size == 0:
        raise DataValidationError(f"{name} is empty (shape {out.shape}), expected {shape_hint}")
    return out


def first_bad_index(array: np.ndarray, bad: np.ndarray) -> tuple[int, ...]:
    """Index of the first True entry of ``bad`` (C order)."""
    flat = int(np.flatnonzero(bad.ravel())[0])
    return tuple(int(i) for i in np.unravel_index(flat, array.shape))


def check_finite(name: str, array: np.ndarray, *, allow_nan: bool = False, hint: str = "") -> None:
    """Raise on inf (always) and NaN (unless ``allow_nan``), naming the first bad index."""
    if np.isfinite(array).all():
        return
    inf = np.isinf(array)
    if inf.any():
        idx = first_bad_index(array, inf)
        raise DataValidationError(f"{name} contains inf at index {idx}")
    if not allow_nan:
        idx = first_bad_index(array, np.isnan(array))
        n_nan = int(np.isnan(array).sum())
        raise DataValidationError(f"{name} contains NaN at index {idx} ({n_nan} NaN in all){hint}")


def check_random_state(random_state) -> np.random.Generator:
    """Turn None, an int, a SeedSequence or a Generator into a numpy Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence)):
        return np.random.default_rng(random_state)
    raise InvalidParameterError(
        "random_state must be None, an int, a SeedSequence or a numpy Generator; "
        f"got {random_state!r}"
    )


def warn(message: str, category=UserWarning) -> None:
    """Issue a warning attributed to the user's call site rather than to this module."""
    warnings.warn(message, category, stacklevel=3)


def as_unit_images(name: str, images, *, shape_hint: str = "(n_images, height, width, channels)"):
    """Images (n, H, W, C) as float32 in [0, 1].

    uint8 images are read as 0-255 and divided by 255; float images must already lie in [0, 1]
    (a float array with values up to 255 is refused rather than guessed at). Bool, integer
    types other than uint8, NaN, inf and a rank other than 4 are refused, naming the array.
    """
    array = np.asarray(images)
    if array.ndim != 4:
        raise DataValidationError(f"{name} has shape {array.shape}, expected {shape_hint}")
    if array.size == 0:
        raise DataValidationError(f"{name} is empty (shape {array.shape}), expected {shape_hint}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    if not np.issubdtype(array.dtype, np.floating):
        raise DataValidationError(
            f"{name} has dtype {array.dtype}; images must be uint8 (0-255) or float (0-1)"
        )
    check_finite(name, array)
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        hint = "; divide 0-255 values by 255 or pass uint8" if high > 1.0 else ""
        raise DataValidationError(
            f"{name} has values in [{low:g}, {high:g}]; float images must lie in [0, 1]{hint}"
        )
    return array.astype(np.float32, copy=False)
