"""Scores of an attribute edit: did the asked factor change, and did anything else move?

Both functions compare an edited image with the same image decoded without the edit (its
reconstruction), not with the original: what the decoder loses on every image is then not
counted against the edit.

Assumptions. ``edit_effects`` reads the factors through a probe (a model trained on images of
known factors, :class:`specialize.generative.FactorProbe`); a probe's own errors count as
changes where the probe is unsure, so its held-out accuracy bounds what these scores can
resolve (a probe at 95 % accuracy can show about 5 % of changes that are not there, more on
the smoother decoded images). ``pixel_change`` needs the true region of an edit, which only a
renderer of known factors gives (the counterfactual image with the one factor changed); it
makes no use of a probe, but a region drawn too tight counts the edge of a correct change as
leakage.
"""

from __future__ import annotations

import numpy as np

from .._validation import DataValidationError, as_float_array, check_finite, check_int


def edit_effects(
    before_labels,
    after_labels,
    before_nuisance,
    after_nuisance,
    *,
    task: int,
    target,
    nuisance_scale,
) -> dict:
    """What an edit of attribute ``task`` to ``target`` did, as read by a probe.

    Parameters
    ----------
    before_labels, after_labels : array of shape (n, n_attributes)
        The probe's attribute labels of the unedited and of the edited images.
    before_nuisance, after_nuisance : array of shape (n, n_nuisance)
        The probe's nuisance factors of the same images.
    task : int
        The edited attribute's column.
    target : int or array of shape (n,)
        The label each edit asked for.
    nuisance_scale : array of shape (n_nuisance,)
        Positive units of each nuisance factor (e.g. its standard deviation in the data).

    Returns
    -------
    dict
        ``target_success``: share of images whose edited attribute reads ``target``;
        ``others_changed``: share of (image, other attribute) pairs whose label moved (NaN with
        a single attribute); ``others_changed_each``: per attribute, NaN at ``task``;
        ``nuisance_shift``: mean over factors of the mean absolute change in units of
        ``nuisance_scale``; ``nuisance_shift_each``: per factor.
    """
    before = _labels("before_labels", before_labels)
    after = _labels("after_labels", after_labels)
    _same_shape(("before_labels", before), ("after_labels", after))
    n, n_attributes = before.shape
    task = check_int("task", task, minimum=0, maximum=n_attributes - 1)
    target = np.broadcast_to(np.asarray(target), (n,))
    nuisance_before = _values("before_nuisance", before_nuisance, n)
    nuisance_after = _values("after_nuisance", after_nuisance, n)
    _same_shape(("before_nuisance", nuisance_before), ("after_nuisance", nuisance_after))
    scale = as_float_array("nuisance_scale", nuisance_scale, ndims=(1,), shape_hint="(n_nuisance,)")
    if scale.shape != (nuisance_before.shape[1],) or not (scale > 0).all():
        raise DataValidationError(
            f"nuisance_scale must hold {nuisance_before.shape[1]} positive values; got {scale}"
        )
    changed = (after != before).mean(axis=0)
    changed[task] = np.nan
    shift = (np.abs(nuisance_after - nuisance_before) / scale).mean(axis=0)
    others = np.delete(changed, task)
    return {
        "target_success": float((after[:, task] == target).mean()),
        "others_changed": float(others.mean()) if others.size else float("nan"),
        "others_changed_each": changed.tolist(),
        "nuisance_shift": float(shift.mean()),
        "nuisance_shift_each": shift.tolist(),
    }


def pixel_change(before, after, region) -> tuple[float, float]:
    """Mean absolute pixel change outside and inside the region an edit should touch.

    Parameters
    ----------
    before, after : array of shape (n, height, width, channels)
        Unedited and edited images, in [0, 1].
    region : bool array of shape (n, height, width)
        Where the true edit changes the image (for example where the counterfactual rendering
        differs from the original, widened by a pixel or two).

    Returns
    -------
    (outside, inside) : tuple of float
        Means over the images of the mean absolute change (all channels) over the pixels
        outside and inside ``region``; an image without pixels on a side is left out of that
        side's mean, and a side with none at all is NaN.
    """
    b = as_float_array("before", before, ndims=(4,), shape_hint="(n, height, width, channels)")
    a = as_float_array("after", after, ndims=(4,), shape_hint="(n, height, width, channels)")
    _same_shape(("before", b), ("after", a))
    check_finite("before", b)
    check_finite("after", a)
    region = np.asarray(region)
    if region.shape != b.shape[:3] or region.dtype != bool:
        raise DataValidationError(
            f"region must be a bool array of shape {b.shape[:3]}; got {region.dtype} {region.shape}"
        )
    change = np.abs(a - b).mean(axis=3)  # (n, height, width)

    def side(where):
        count = where.sum(axis=(1, 2))
        used = count > 0
        if not used.any():
            return float("nan")
        return float(((change * where).sum(axis=(1, 2))[used] / count[used]).mean())

    return side(~region), side(region)


def _labels(name: str, labels) -> np.ndarray:
    array = as_float_array(name, labels, ndims=(2,), shape_hint="(n, n_attributes)")
    check_finite(name, array)
    return array


def _values(name: str, values, n: int) -> np.ndarray:
    array = as_float_array(name, values, ndims=(2,), shape_hint="(n, n_nuisance)")
    check_finite(name, array)
    if len(array) != n:
        raise DataValidationError(f"{name} has {len(array)} rows; the labels have {n}")
    return array


def _same_shape(*named) -> None:
    (first, a), *rest = named
    for name, b in rest:
        if a.shape != b.shape:
            raise DataValidationError(f"{first} has shape {a.shape} but {name} has {b.shape}")


__all__ = ["edit_effects", "pixel_change"]
