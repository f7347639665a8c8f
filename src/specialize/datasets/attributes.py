"""Procedurally drawn cartoon faces whose attributes (glasses, hat, tie) are independent factors.

A data set for attribute editing: every image is drawn from a seed, nothing is downloaded,
and the map from factors to pixels (:func:`render_attribute_images`) is public, so the
ground-truth counterfactual of an edit (the same face with one factor changed) can be
rendered exactly.

Factors (all mutually independent):

- attribute k (``glasses``, ``hat``, ``tie``, in any order or subset): present with
  probability ``presence``; when present, its style is uniform over 1, ..., ``n_styles``;
  stored as 0 (absent) or the style;
- six nuisance factors, uniform on the ranges of :data:`NUISANCE_RANGES`:

  ===============  ==============  ====================================================
  name             range           meaning
  ===============  ==============  ====================================================
  skin_hue         [0, 0.8]        hue of the face colour (HSV, saturation 0.45)
  skin_lightness   [0.55, 0.95]    HSV value of the face colour
  background_hue   [0, 0.8]        hue of the background (HSV, saturation 0.5, value 0.8)
  position_x       [-0.06, 0.06]   horizontal offset of the face centre, in canvas sides
  position_y       [-0.06, 0.06]   vertical offset of the face centre (down), canvas sides
  size             [0.8, 1.2]      scale of the face radius (radius = 0.18 * size sides)
  ===============  ==============  ====================================================

  Hue is circular; its range stops at 0.8 so that hue 0 and hue 1 (the same colour) are
  never both drawn and a regressor can predict it as a number, without wrap-around.

Drawing. Canvas coordinates (u, v) run over [-1, 1] (u to the right, v down; pixel centres at
-1 + (2j + 1) / S). The face centre is (cx, cy) = (2 position_x, -0.04 + 2 position_y) and its
radius R = 0.36 size; every element is defined in face units (x, y) = ((u - cx) / R,
(v - cy) / R), so it moves and scales with the face. Painter's order: background (from
``background_hue``), shirt (a fixed grey rounded box from y = 1.15 down past the canvas edge),
neck and face (an ellipse of half-axes 0.88 and 1, skin colour), two eyes, a mouth, then the
tie, the glasses and the hat (see :data:`STYLES`). Each shape has a signed distance d (canvas
units); its coverage is a smooth step of d over one pixel, ``smoothstep(0.5 - d / pixel)``,
and it is composited as ``image += coverage * (colour - image)``. Pixels therefore change
continuously with every factor. Colours of the attributes are fixed, independent of the
nuisance, so an attribute and a nuisance factor cannot imitate one another.

Speed. Images are drawn in chunks of 256 on an (n_chunk, H, W) grid, each shape only inside a
fixed pixel box that holds it for every nuisance value (so an image does not depend on which
others share its chunk). On one thread, about 34,000 images per second at 32 x 32 and 9,000 to
11,000 at 64 x 64 (5,000 on a busy machine; ``docs/generative.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._validation import (
    DataValidationError,
    InvalidParameterError,
    check_float,
    check_int,
    check_random_state,
)

#: The attributes that can be drawn, in their default order.
ATTRIBUTE_NAMES = ("glasses", "hat", "tie")
#: Number of styles drawn for every attribute (``n_styles`` may not exceed it).
MAX_STYLES = 3
#: What each style looks like (documentation; the drawing is in ``_ATTRIBUTE_PAINTERS``).
STYLES = {
    "glasses": (
        "black round rings at the eyes, a bridge and temple arms",
        "black square frames, a bridge and temple arms",
        "thick dark-blue round rings, a bridge and temple arms",
    ),
    "hat": (
        "navy cap: half-disc dome over the head and a brim to the right",
        "black top hat: tall crown with a red band and a wide brim",
        "green beanie: half-ellipse dome with a yellow pom-pom",
    ),
    "tie": (
        "plain dark-red long tie (knot and blade) under the chin",
        "purple bow tie at the collar",
        "dark-red long tie with diagonal gold stripes",
    ),
}
#: Nuisance factors, the columns of ``AttributeImages.nuisance``.
NUISANCE_NAMES = (
    "skin_hue",
    "skin_lightness",
    "background_hue",
    "position_x",
    "position_y",
    "size",
)
#: Closed range of each nuisance factor; ``make_attribute_images`` draws uniformly on it.
NUISANCE_RANGES = {
    "skin_hue": (0.0, 0.8),
    "skin_lightness": (0.55, 0.95),
    "background_hue": (0.0, 0.8),
    "position_x": (-0.06, 0.06),
    "position_y": (-0.06, 0.06),
    "size": (0.8, 1.2),
}
#: Smallest side of the square canvas, in pixels.
MIN_IMAGE_SIZE = 16
DTYPES = ("float32", "uint8")
#: Face radius at size 1 and vertical position of the face centre at offset 0 (canvas units).
FACE_RADIUS = 0.36
FACE_V = -0.04
SKIN_SATURATION = 0.45
BACKGROUND_SATURATION = 0.5
BACKGROUND_VALUE = 0.8
#: Images drawn at once (bounds the memory of the temporaries: 12 MB at 64 x 64).
CHUNK_SIZE = 256

_LOW = np.array([NUISANCE_RANGES[name][0] for name in NUISANCE_NAMES])
_HIGH = np.array([NUISANCE_RANGES[name][1] for name in NUISANCE_NAMES])
# face-centre and radius extremes, for the fixed pixel boxes of the shapes
_CX_RANGE = (2 * _LOW[3], 2 * _HIGH[3])
_CY_RANGE = (FACE_V + 2 * _LOW[4], FACE_V + 2 * _HIGH[4])
_R_RANGE = (FACE_RADIUS * _LOW[5], FACE_RADIUS * _HIGH[5])
# distances to a small offset are exact to float32 far below one pixel
_EPS = np.float32(1e-6)

_SHIRT = (0.74, 0.75, 0.78)
_EYES = (0.08, 0.08, 0.1)
_MOUTH = (0.45, 0.12, 0.12)
_BLACK = (0.05, 0.05, 0.06)
_BLUE_FRAME = (0.05, 0.12, 0.45)
_NAVY = (0.12, 0.22, 0.55)
_HAT_BAND = (0.6, 0.1, 0.15)
_GREEN = (0.1, 0.5, 0.3)
_YELLOW = (0.95, 0.85, 0.25)
_TIE_RED = (0.6, 0.06, 0.1)
_PURPLE = (0.45, 0.1, 0.5)
_GOLD = (0.9, 0.75, 0.2)


@dataclass(frozen=True)
class AttributeImages:
    """Drawn faces with their attributes and nuisance factors.

    Attributes
    ----------
    images : ndarray of shape (n_samples, image_size, image_size, 3)
        RGB, float32 in [0, 1], or uint8 0-255 (round(255 * value)).
    attributes : int64 ndarray of shape (n_samples, n_attributes)
        0 = absent, 1 ... n_styles = present with that style; one column per attribute name.
    attribute_names : tuple of str
    nuisance : float64 ndarray of shape (n_samples, 6)
        One column per name of ``nuisance_names``, within :data:`NUISANCE_RANGES`.
    nuisance_names : tuple of str
    n_styles : int
    image_size : int
    random_state : int, None or str
        The seed given (a Generator or SeedSequence is recorded by its repr).
    params : dict
        The generator's arguments, ``random_state`` included.
    """

    images: np.ndarray
    attributes: np.ndarray
    attribute_names: tuple
    nuisance: np.ndarray
    nuisance_names: tuple = NUISANCE_NAMES
    n_styles: int = 2
    image_size: int = 64
    random_state: object = None
    params: dict = field(default_factory=dict)

    @property
    def tasks(self) -> np.ndarray:
        """The attributes as float64, shape (n_samples, n_attributes), for tools that read tasks."""
        return self.attributes.astype(np.float64)

    @property
    def present(self) -> np.ndarray:
        """Bool array of shape (n_samples, n_attributes): True where the attribute is worn."""
        return self.attributes > 0

    def flat_obs(self, dtype=np.float64) -> np.ndarray:
        """Images as rows of shape (n_samples, H * W * 3), values in [0, 1] (uint8 / 255)."""
        out = self.images.reshape(len(self.images), -1).astype(dtype)
        if self.images.dtype == np.uint8:
            out /= 255
        return out

    def save(self, path) -> None:
        """Write the arrays to an ``.npz`` file; ``tasks`` holds the attributes as float."""
        np.savez_compressed(
            path,
            images=self.images,
            tasks=self.tasks,
            attributes=self.attributes,
            nuisance=self.nuisance,
            attribute_names=np.array(self.attribute_names, dtype=str),
            nuisance_names=np.array(self.nuisance_names, dtype=str),
        )


def make_attribute_images(
    n_samples: int,
    *,
    image_size: int = 64,
    attributes=ATTRIBUTE_NAMES,
    n_styles: int = 2,
    presence: float = 0.5,
    noise: float = 0.0,
    dtype="float32",
    random_state=None,
) -> AttributeImages:
    """Draw n cartoon faces with independent attributes and nuisance factors.

    The factors are drawn first (attribute presence, then styles, then the nuisance), the
    images are ``render_attribute_images(attributes, nuisance)``, then Gaussian pixel noise
    (drawn after the factors, so it does not change them) is added and the images are clipped
    to [0, 1]. Module docstring: the factors and the drawing.

    Parameters
    ----------
    n_samples : int
        Number of images n (>= 1).
    image_size : int, default=64
        Side S of the square images in pixels (>= 16).
    attributes : sequence of str, default=("glasses", "hat", "tie")
        The attributes drawn, one column each, in this order; distinct names from
        :data:`ATTRIBUTE_NAMES`.
    n_styles : int, default=2
        Styles per attribute, 1 ... :data:`MAX_STYLES` (3).
    presence : float, default=0.5
        Probability that an attribute is present, in (0, 1), for each attribute independently.
    noise : float, default=0.0
        Standard deviation of Gaussian pixel noise (image units, before clipping).
    dtype : {"float32", "uint8"}, default="float32"
        Image type; uint8 images hold round(255 * value).
    random_state : int, SeedSequence, Generator or None

    Returns
    -------
    AttributeImages
    """
    n = check_int("n_samples", n_samples, minimum=1)
    size = check_int("image_size", image_size, minimum=MIN_IMAGE_SIZE)
    names = _check_attribute_names("attributes", attributes)
    n_styles = check_int("n_styles", n_styles, minimum=1, maximum=MAX_STYLES)
    presence = check_float(
        "presence", presence, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
    )
    noise = check_float("noise", noise, low=0.0)
    out_dtype = _check_dtype(dtype)
    rng = check_random_state(random_state)

    A = len(names)
    present = rng.random((n, A)) < presence
    styles = rng.integers(1, n_styles + 1, size=(n, A))
    factors = np.where(present, styles, 0).astype(np.int64)
    nuisance = _LOW + (_HIGH - _LOW) * rng.random((n, len(NUISANCE_NAMES)))

    images = np.empty((n, size, size, 3), dtype=out_dtype)
    for start in range(0, n, CHUNK_SIZE):
        stop = min(start + CHUNK_SIZE, n)
        chunk = _render_chunk(factors[start:stop], nuisance[start:stop], names, size)
        if noise > 0:
            chunk += noise * rng.standard_normal(chunk.shape, dtype=np.float32)
            np.clip(chunk, 0.0, 1.0, out=chunk)
        images[start:stop] = _to_dtype(chunk, out_dtype)
    seed = random_state if isinstance(random_state, (int, type(None))) else repr(random_state)
    params = dict(
        n_samples=n,
        image_size=size,
        attributes=names,
        n_styles=n_styles,
        presence=presence,
        noise=noise,
        dtype=out_dtype.name,
        random_state=seed,
    )
    return AttributeImages(
        images=images,
        attributes=factors,
        attribute_names=names,
        nuisance=nuisance,
        nuisance_names=NUISANCE_NAMES,
        n_styles=n_styles,
        image_size=size,
        random_state=seed,
        params=params,
    )


def render_attribute_images(
    attributes,
    nuisance,
    *,
    image_size: int = 64,
    attribute_names=ATTRIBUTE_NAMES,
    dtype="float32",
) -> np.ndarray:
    """Draw the noise-free faces of given factors: the deterministic map factors -> pixels.

    Parameters
    ----------
    attributes : array-like of shape (n, n_attributes)
        Integers 0 (absent) ... :data:`MAX_STYLES`; column k belongs to ``attribute_names[k]``.
        Floats holding integers (such as a saved ``tasks`` array) are accepted.
    nuisance : array-like of shape (n, 6)
        Columns as :data:`NUISANCE_NAMES`, each within its range in :data:`NUISANCE_RANGES`.
    image_size : int, default=64
        Side S in pixels (>= 16).
    attribute_names : sequence of str, default=("glasses", "hat", "tie")
        Distinct names from :data:`ATTRIBUTE_NAMES`.
    dtype : {"float32", "uint8"}, default="float32"

    Returns
    -------
    ndarray of shape (n, image_size, image_size, 3)
        float32 in [0, 1], or uint8 round(255 * value). Each image depends on its own row of
        factors only, so rendering a subset, or one changed row, reproduces those images
        exactly.
    """
    size = check_int("image_size", image_size, minimum=MIN_IMAGE_SIZE)
    names = _check_attribute_names("attribute_names", attribute_names)
    out_dtype = _check_dtype(dtype)
    factors = _check_attributes(attributes, len(names))
    nuisance = _check_nuisance(nuisance, len(factors))
    n = len(factors)
    images = np.empty((n, size, size, 3), dtype=out_dtype)
    for start in range(0, n, CHUNK_SIZE):
        stop = min(start + CHUNK_SIZE, n)
        chunk = _render_chunk(factors[start:stop], nuisance[start:stop], names, size)
        images[start:stop] = _to_dtype(chunk, out_dtype)
    return images


# ---------------------------------------------------------------------------------------------
# validation


def _check_attribute_names(name: str, value) -> tuple:
    if isinstance(value, str):
        value = (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise InvalidParameterError(
            f"{name} must be a sequence of attribute names; got {value!r}"
        ) from None
    if not names:
        raise InvalidParameterError(f"{name} must name at least one attribute; got {value!r}")
    known = ", ".join(repr(a) for a in ATTRIBUTE_NAMES)
    for item in names:
        if item not in ATTRIBUTE_NAMES:
            raise InvalidParameterError(
                f"{name} contains the unknown attribute {item!r}; known attributes: {known}"
            )
    duplicates = sorted({a for a in names if names.count(a) > 1})
    if duplicates:
        raise InvalidParameterError(
            f"{name} names {', '.join(repr(a) for a in duplicates)} more than once; got {names}"
        )
    return names


def _check_dtype(dtype) -> np.dtype:
    try:
        # np.dtype(None) is float64: refuse None rather than pick a type silently
        name = None if dtype is None else np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise InvalidParameterError(f"dtype must be one of 'float32', 'uint8'; got {dtype!r}")
    return np.dtype(name)


def _check_attributes(attributes, n_attributes: int) -> np.ndarray:
    hint = f"(n, {n_attributes}): one column per attribute name"
    try:
        values = np.asarray(attributes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"attributes must be a numeric array; {exc}") from None
    if values.ndim != 2 or values.shape[1] != n_attributes or values.shape[0] == 0:
        raise DataValidationError(f"attributes has shape {values.shape}, expected {hint}")
    if not np.isfinite(values).all():
        raise DataValidationError("attributes contains NaN or inf")
    bad = (values != np.round(values)) | (values < 0) | (values > MAX_STYLES)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise DataValidationError(
            f"attributes must hold integers 0 (absent) ... {MAX_STYLES} (styles); got "
            f"{values[i, k]:g} at index ({i}, {k})"
        )
    return values.astype(np.int64)


def _check_nuisance(nuisance, n: int) -> np.ndarray:
    F = len(NUISANCE_NAMES)
    try:
        values = np.asarray(nuisance, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"nuisance must be a numeric array; {exc}") from None
    if values.ndim != 2 or values.shape != (n, F):
        raise DataValidationError(
            f"nuisance has shape {values.shape}, expected ({n}, {F}): one row per row of "
            f"attributes, columns {', '.join(NUISANCE_NAMES)}"
        )
    if not np.isfinite(values).all():
        raise DataValidationError("nuisance contains NaN or inf")
    bad = (values < _LOW) | (values > _HIGH)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        low, high = NUISANCE_RANGES[NUISANCE_NAMES[k]]
        raise DataValidationError(
            f"nuisance column {k} ({NUISANCE_NAMES[k]}) must lie in [{low}, {high}]; got "
            f"{values[i, k]:g} at row {i}"
        )
    return values


def _to_dtype(chunk: np.ndarray, out_dtype: np.dtype) -> np.ndarray:
    """(n, 3, S, S) float32 in [0, 1] -> (n, S, S, 3) of the output type."""
    if out_dtype == np.uint8:
        np.rint(chunk * np.float32(255), out=chunk)
    return chunk.transpose(0, 2, 3, 1)


# ---------------------------------------------------------------------------------------------
# drawing


def _hsv_to_rgb(hue, saturation, value) -> np.ndarray:
    """(n,) HSV arrays -> (n, 3) RGB in [0, 1]."""
    hue, saturation, value = np.broadcast_arrays(hue, saturation, value)
    k = (np.array([5.0, 3.0, 1.0]) + 6 * hue[:, None]) % 6
    ramp = np.clip(np.minimum(k, 4 - k), 0, 1)
    return value[:, None] * (1 - saturation[:, None] * ramp)


class _Canvas:
    """One chunk of images (n, 3, S, S) float32 and the face geometry of each."""

    def __init__(self, nuisance: np.ndarray, size: int):
        n = len(nuisance)
        self.size = size
        self.pixel = 2.0 / size
        self.grid = (-1 + (2 * np.arange(size) + 1) / size).astype(np.float32)
        self.cx = (2 * nuisance[:, 3]).astype(np.float32)
        self.cy = (FACE_V + 2 * nuisance[:, 4]).astype(np.float32)
        self.radius = (FACE_RADIUS * nuisance[:, 5]).astype(np.float32)
        self.skin = _hsv_to_rgb(nuisance[:, 0], SKIN_SATURATION, nuisance[:, 1]).astype(np.float32)
        background = _hsv_to_rgb(nuisance[:, 2], BACKGROUND_SATURATION, BACKGROUND_VALUE)
        self.images = np.empty((n, 3, size, size), dtype=np.float32)
        self.images[:] = background.astype(np.float32)[:, :, None, None]

    def box(self, extent) -> tuple:
        """Pixel slices (rows, columns) that hold a shape of face-unit extent for every face.

        extent = (x0, x1, y0, y1): the shape lies in x0 <= x <= x1, y0 <= y <= y1. The box
        is fixed by the nuisance ranges (not by the faces of a chunk), with a margin of two
        pixels for the smooth edge.
        """
        x0, x1, y0, y1 = extent
        r_lo, r_hi = _R_RANGE
        margin = 2 * self.pixel
        u0 = _CX_RANGE[0] + min(r_lo * x0, r_hi * x0) - margin
        u1 = _CX_RANGE[1] + max(r_lo * x1, r_hi * x1) + margin
        v0 = _CY_RANGE[0] + min(r_lo * y0, r_hi * y0) - margin
        v1 = _CY_RANGE[1] + max(r_lo * y1, r_hi * y1) + margin
        cols = slice(*np.searchsorted(self.grid, [u0, u1]))
        rows = slice(*np.searchsorted(self.grid, [v0, v1]))
        return rows, cols

    def paint(self, select, extent, distance, colour) -> None:
        """Composite a shape of fixed or per-image colour onto the selected images.

        ``distance(x, y)`` gives the signed distance in face units from the face-unit
        coordinates x (n, 1, w) and y (n, h, 1); ``select`` is a slice or index array.
        """
        rows, cols = self.box(extent)
        if rows.start >= rows.stop or cols.start >= cols.stop:
            return
        if isinstance(select, np.ndarray):
            if select.size == 0:
                return
            region = self.images[select][:, :, rows, cols]
        else:
            region = self.images[select, :, rows, cols]
        cx, cy, radius = self.cx[select], self.cy[select], self.radius[select]
        x = (self.grid[cols][None, None, :] - cx[:, None, None]) / radius[:, None, None]
        y = (self.grid[rows][None, :, None] - cy[:, None, None]) / radius[:, None, None]
        d = distance(x, y)
        # smooth step over one pixel: d (face units) * radius / pixel is in pixels
        scale = (radius / np.float32(self.pixel))[:, None, None]
        t = np.clip(np.float32(0.5) - d * scale, 0, 1)
        coverage = t * t * (np.float32(3) - np.float32(2) * t)
        colour = np.asarray(colour, dtype=np.float32)
        for c in range(3):
            target = colour[select, c][:, None, None] if colour.ndim == 2 else colour[c]
            region[:, c] += coverage * (target - region[:, c])
        if isinstance(select, np.ndarray):
            block = self.images[select]
            block[:, :, rows, cols] = region
            self.images[select] = block


# signed distances in face units; x has shape (n, 1, w), y (n, h, 1)


def _circle(x, y, x0, y0, r):
    return np.sqrt((x - np.float32(x0)) ** 2 + (y - np.float32(y0)) ** 2) - np.float32(r)


def _ellipse(x, y, x0, y0, a, b):
    """First-order distance (f - 1) / |grad f| to the ellipse f = 1; exact on the boundary."""
    px, py = (x - np.float32(x0)) / np.float32(a), (y - np.float32(y0)) / np.float32(b)
    f = np.sqrt(px * px + py * py)
    g = np.sqrt((px / np.float32(a)) ** 2 + (py / np.float32(b)) ** 2)
    return (f - 1) * (f + _EPS) / (g + _EPS / np.float32(min(a, b)))


def _rect(x, y, x0, y0, hw, hh):
    """Sharp-cornered box (the L-infinity distance outside, exact along its edges)."""
    return np.maximum(
        np.abs(x - np.float32(x0)) - np.float32(hw), np.abs(y - np.float32(y0)) - np.float32(hh)
    )


def _round_rect(x, y, x0, y0, hw, hh, r):
    qx = np.abs(x - np.float32(x0)) - np.float32(hw - r)
    qy = np.abs(y - np.float32(y0)) - np.float32(hh - r)
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0) - np.float32(r)


def _polygon(x, y, points):
    """Convex polygon: the largest signed distance to the lines of its edges (exact inside)."""
    points = np.asarray(points, dtype=np.float64)
    following = np.roll(points, -1, axis=0)
    # orientation: outward normals point away from the centroid whichever way the points run
    area = np.sum(points[:, 0] * following[:, 1] - following[:, 0] * points[:, 1])
    sign = 1.0 if area > 0 else -1.0
    d = None
    for p, q in zip(points, following, strict=True):
        ex, ey = q - p
        length = np.hypot(ex, ey)
        nx, ny = np.float32(sign * ey / length), np.float32(-sign * ex / length)
        offset = np.float32(nx * p[0] + ny * p[1])
        edge = (x * nx - offset) + y * ny
        d = edge if d is None else np.maximum(d, edge)
    return d


_EYE_X, _EYE_Y = 0.36, -0.12
_TIE_BLADE = [(-0.1, 1.28), (-0.22, 1.8), (0.0, 1.97), (0.22, 1.8), (0.1, 1.28)]
_TIE_KNOT = [(-0.14, 1.12), (-0.1, 1.3), (0.1, 1.3), (0.14, 1.12)]


def _draw_face(canvas: _Canvas, everyone) -> None:
    canvas.paint(
        everyone,
        (-1.3, 1.3, 1.15, np.inf),
        lambda x, y: _round_rect(x, y, 0.0, 1.15 + 3.0, 1.3, 3.0, 0.45),
        _SHIRT,
    )
    canvas.paint(
        everyone, (-0.3, 0.3, 0.5, 1.3), lambda x, y: _rect(x, y, 0.0, 0.9, 0.3, 0.4), canvas.skin
    )
    canvas.paint(
        everyone,
        (-0.88, 0.88, -1.0, 1.0),
        lambda x, y: _ellipse(x, y, 0.0, 0.0, 0.88, 1.0),
        canvas.skin,
    )
    canvas.paint(
        everyone,
        (-0.47, 0.47, -0.23, -0.01),
        lambda x, y: np.minimum(
            _circle(x, y, -_EYE_X, _EYE_Y, 0.11), _circle(x, y, _EYE_X, _EYE_Y, 0.11)
        ),
        _EYES,
    )
    canvas.paint(
        everyone, (-0.3, 0.3, 0.4, 0.56), lambda x, y: _ellipse(x, y, 0.0, 0.48, 0.3, 0.08), _MOUTH
    )


def _glasses_distance(style: int):
    def distance(x, y):
        if style == 2:
            left = np.abs(_rect(x, y, -_EYE_X, _EYE_Y, 0.24, 0.2)) - np.float32(0.045)
            right = np.abs(_rect(x, y, _EYE_X, _EYE_Y, 0.24, 0.2)) - np.float32(0.045)
            inner, outer = _EYE_X - 0.24, _EYE_X + 0.24
        else:
            radius, half = (0.25, 0.045) if style == 1 else (0.26, 0.08)
            left = np.abs(_circle(x, y, -_EYE_X, _EYE_Y, radius)) - np.float32(half)
            right = np.abs(_circle(x, y, _EYE_X, _EYE_Y, radius)) - np.float32(half)
            inner, outer = _EYE_X - radius, _EYE_X + radius
        bridge = _rect(x, y, 0.0, _EYE_Y, inner, 0.04)
        arm_x = (outer + 0.86) / 2
        arms = _rect(np.abs(x), y, arm_x, _EYE_Y, (0.86 - outer) / 2, 0.035)
        return np.minimum(np.minimum(left, right), np.minimum(bridge, arms))

    return distance


def _draw_glasses(canvas: _Canvas, select, style: int) -> None:
    colour = _BLUE_FRAME if style == 3 else _BLACK
    canvas.paint(select, (-0.9, 0.9, -0.48, 0.24), _glasses_distance(style), colour)


def _draw_hat(canvas: _Canvas, select, style: int) -> None:
    if style == 1:
        canvas.paint(
            select,
            (-0.95, 1.25, -1.35, -0.36),
            lambda x, y: np.minimum(
                np.maximum(_circle(x, y, 0.0, -0.4, 0.92), y + np.float32(0.4)),
                _rect(x, y, 0.55, -0.43, 0.7, 0.07),
            ),
            _NAVY,
        )
    elif style == 2:
        canvas.paint(
            select,
            (-1.05, 1.05, -1.8, -0.72),
            lambda x, y: np.minimum(
                _rect(x, y, 0.0, -0.8, 1.05, 0.08), _rect(x, y, 0.0, -1.3, 0.62, 0.5)
            ),
            _BLACK,
        )
        canvas.paint(
            select,
            (-0.62, 0.62, -1.05, -0.87),
            lambda x, y: _rect(x, y, 0.0, -0.96, 0.62, 0.08),
            _HAT_BAND,
        )
    else:
        canvas.paint(
            select,
            (-0.95, 0.95, -1.2, -0.45),
            lambda x, y: np.maximum(_ellipse(x, y, 0.0, -0.45, 0.95, 0.75), y + np.float32(0.45)),
            _GREEN,
        )
        canvas.paint(
            select,
            (-0.18, 0.18, -1.43, -1.07),
            lambda x, y: _circle(x, y, 0.0, -1.25, 0.18),
            _YELLOW,
        )


def _long_tie(x, y):
    return np.minimum(_polygon(x, y, _TIE_KNOT), _polygon(x, y, _TIE_BLADE))


def _draw_tie(canvas: _Canvas, select, style: int) -> None:
    if style == 2:
        bow = [(-0.45, 1.03), (-0.45, 1.47), (0.0, 1.25)]
        canvas.paint(
            select,
            (-0.45, 0.45, 1.03, 1.47),
            lambda x, y: np.minimum(
                np.minimum(_polygon(x, y, bow), _polygon(-x, y, bow)), _circle(x, y, 0.0, 1.25, 0.1)
            ),
            _PURPLE,
        )
        return
    extent = (-0.22, 0.22, 1.12, 1.97)
    canvas.paint(select, extent, _long_tie, _TIE_RED)
    if style == 3:
        period = np.float32(0.24)

        def stripes(x, y):
            w = (x + y) / period
            band = np.abs(w - np.floor(w) - np.float32(0.5)) - np.float32(0.25)
            return np.maximum(_long_tie(x, y), band * (period / np.float32(np.sqrt(2))))

        canvas.paint(select, extent, stripes, _GOLD)


_ATTRIBUTE_PAINTERS = {"tie": _draw_tie, "glasses": _draw_glasses, "hat": _draw_hat}
# the order in which attributes are drawn, whatever the order of the columns
_DRAW_ORDER = ("tie", "glasses", "hat")


def _render_chunk(factors: np.ndarray, nuisance: np.ndarray, names: tuple, size: int):
    """(n, A) int styles and (n, 6) nuisance -> (n, 3, S, S) float32 images in [0, 1]."""
    canvas = _Canvas(nuisance, size)
    everyone = slice(None)
    _draw_face(canvas, everyone)
    for name in _DRAW_ORDER:
        if name not in names:
            continue
        column = factors[:, names.index(name)]
        for style in range(1, MAX_STYLES + 1):
            select = np.flatnonzero(column == style)
            if select.size == len(column):
                select = everyone
            if isinstance(select, slice) or select.size:
                _ATTRIBUTE_PAINTERS[name](canvas, select, style)
    np.clip(canvas.images, 0.0, 1.0, out=canvas.images)
    return canvas.images
