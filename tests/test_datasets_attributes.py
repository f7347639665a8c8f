"""make_attribute_images: arrays, seeds, the render map, independent factors, edits, bad input."""

import warnings

import numpy as np
import pytest

from specialize._validation import DataValidationError, InvalidParameterError
from specialize.datasets import AttributeImages, make_attribute_images, render_attribute_images
from specialize.datasets.attributes import (
    FACE_RADIUS,
    FACE_V,
    MAX_STYLES,
    NUISANCE_NAMES,
    NUISANCE_RANGES,
)

NAMES = ("glasses", "hat", "tie")
COLUMN = {name: k for k, name in enumerate(NUISANCE_NAMES)}
#: Where each attribute may draw, in face units (x0, x1, y0, y1), with room for the smooth edge.
REGIONS = {
    "glasses": (-0.95, 0.95, -0.55, 0.3),
    "hat": (-1.1, 1.35, -1.9, -0.3),
    "tie": (-0.5, 0.5, 1.0, 2.05),
}


def _face_units(nuisance, size):
    """Face-unit coordinates x (n, 1, S) and y (n, S, 1) of the pixel centres."""
    grid = -1 + (2 * np.arange(size) + 1) / size
    cx = 2 * nuisance[:, COLUMN["position_x"]]
    cy = FACE_V + 2 * nuisance[:, COLUMN["position_y"]]
    radius = FACE_RADIUS * nuisance[:, COLUMN["size"]]
    x = (grid[None, None, :] - cx[:, None, None]) / radius[:, None, None]
    y = (grid[None, :, None] - cy[:, None, None]) / radius[:, None, None]
    return x, y, radius


def _skin_mask(data_images, nuisance):
    """Pixels of (nearly) the skin colour: the face and neck with their features removed."""
    from specialize.datasets.attributes import SKIN_SATURATION, _hsv_to_rgb

    skin = _hsv_to_rgb(nuisance[:, 0], SKIN_SATURATION, nuisance[:, 1])
    return np.abs(data_images - skin[:, None, None, :]).max(axis=-1) < 0.01


def _random_factors(n, rng, n_styles=2):
    attributes = rng.integers(0, n_styles + 1, size=(n, 3))
    low = np.array([NUISANCE_RANGES[name][0] for name in NUISANCE_NAMES])
    high = np.array([NUISANCE_RANGES[name][1] for name in NUISANCE_NAMES])
    return attributes, low + (high - low) * rng.random((n, 6))


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_shapes_types_and_ranges(dtype):
    data = make_attribute_images(30, image_size=24, dtype=dtype, random_state=0)
    assert isinstance(data, AttributeImages)
    assert data.images.shape == (30, 24, 24, 3) and data.images.dtype == np.dtype(dtype)
    assert data.attributes.shape == (30, 3) and data.attributes.dtype == np.int64
    assert data.nuisance.shape == (30, 6) and data.nuisance.dtype == np.float64
    assert data.attribute_names == NAMES and data.nuisance_names == NUISANCE_NAMES
    assert data.n_styles == 2 and data.image_size == 24 and data.random_state == 0
    assert set(np.unique(data.attributes)) <= {0, 1, 2}
    top = 255 if dtype == "uint8" else 1.0
    assert data.images.min() >= 0 and data.images.max() <= top
    # dark eyes and a light shirt in every image: the range is used, not a constant
    assert (
        data.images.reshape(30, -1).max(axis=1) - data.images.reshape(30, -1).min(axis=1)
        > 0.5 * top
    ).all()
    np.testing.assert_array_equal(data.tasks, data.attributes.astype(float))
    flat = data.flat_obs()
    assert flat.shape == (30, 24 * 24 * 3) and flat.max() <= 1.0
    for k, name in enumerate(NUISANCE_NAMES):
        low, high = NUISANCE_RANGES[name]
        assert low <= data.nuisance[:, k].min() and data.nuisance[:, k].max() <= high


def test_uint8_images_are_the_rounded_float_images():
    for noise in (0.0, 0.05):
        floats = make_attribute_images(40, image_size=20, noise=noise, random_state=4)
        ints = make_attribute_images(40, image_size=20, noise=noise, dtype="uint8", random_state=4)
        np.testing.assert_array_equal(ints.images, np.rint(floats.images * 255).astype(np.uint8))
        np.testing.assert_array_equal(ints.attributes, floats.attributes)


def test_same_seed_same_arrays_other_seed_other_arrays():
    a = make_attribute_images(25, image_size=16, noise=0.1, random_state=3)
    b = make_attribute_images(25, image_size=16, noise=0.1, random_state=3)
    c = make_attribute_images(25, image_size=16, noise=0.1, random_state=5)
    for key in ("images", "attributes", "nuisance"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.allclose(a.images, c.images)
    assert not np.array_equal(a.attributes, c.attributes)
    assert not np.allclose(a.nuisance, c.nuisance)


def test_render_is_the_noise_free_map_and_each_image_depends_on_its_own_factors():
    # more than one chunk of 256, three styles
    data = make_attribute_images(300, image_size=32, n_styles=3, random_state=1)
    rendered = render_attribute_images(data.attributes, data.nuisance, image_size=32)
    np.testing.assert_array_equal(rendered, data.images)
    # a subset (across the chunk boundary) and the saved float tasks give the same images
    rows = [3, 255, 256, 299]
    subset = render_attribute_images(data.tasks[rows], data.nuisance[rows], image_size=32)
    np.testing.assert_array_equal(subset, data.images[rows])
    ints = render_attribute_images(data.attributes, data.nuisance, image_size=32, dtype="uint8")
    np.testing.assert_array_equal(ints, np.rint(data.images * 255).astype(np.uint8))
    # the noise is drawn after the factors: same factors, and noise of the asked scale
    noisy = make_attribute_images(300, image_size=32, n_styles=3, noise=0.05, random_state=1)
    np.testing.assert_array_equal(noisy.attributes, data.attributes)
    np.testing.assert_array_equal(noisy.nuisance, data.nuisance)
    inside = (data.images > 0.2) & (data.images < 0.8)
    residual = noisy.images[inside] - data.images[inside]
    assert abs(residual.std() / 0.05 - 1) < 0.05 and abs(residual.mean()) < 0.002


@pytest.mark.parametrize("size", [16, 33, 64])
def test_fixed_pixel_boxes_hold_every_shape(size, monkeypatch):
    """Drawing each shape on the whole canvas, not in its box, changes no pixel.

    Faces at the corners of the nuisance ranges (the largest, most displaced) and inside them.
    """
    from specialize.datasets import attributes as module

    rng = np.random.default_rng(size)
    attributes, nuisance = _random_factors(400, rng, n_styles=MAX_STYLES)
    low = np.array([NUISANCE_RANGES[name][0] for name in NUISANCE_NAMES])
    high = np.array([NUISANCE_RANGES[name][1] for name in NUISANCE_NAMES])
    nuisance[:200] = np.where(rng.random((200, 6)) < 0.5, low, high)
    boxed = render_attribute_images(attributes, nuisance, image_size=size)
    monkeypatch.setattr(
        module._Canvas, "box", lambda self, extent: (slice(0, self.size), slice(0, self.size))
    )
    whole = render_attribute_images(attributes, nuisance, image_size=size)
    np.testing.assert_array_equal(boxed, whole)


def test_columns_follow_the_attribute_names():
    data = make_attribute_images(20, image_size=20, attributes=("tie", "glasses"), random_state=2)
    assert data.attribute_names == ("tie", "glasses") and data.attributes.shape == (20, 2)
    full = np.zeros((20, 3), dtype=int)
    full[:, 2], full[:, 0] = data.attributes[:, 0], data.attributes[:, 1]
    np.testing.assert_array_equal(
        render_attribute_images(full, data.nuisance, image_size=20), data.images
    )


def test_factors_are_independent_with_the_asked_presence():
    data = make_attribute_images(4000, image_size=16, n_styles=3, presence=0.3, random_state=0)
    present = data.attributes > 0
    np.testing.assert_allclose(present.mean(axis=0), 0.3, atol=0.03)
    # styles uniform among the present
    for k in range(3):
        counts = np.bincount(data.attributes[present[:, k], k], minlength=4)[1:]
        np.testing.assert_allclose(counts / counts.sum(), 1 / 3, atol=0.05)
    # every pair of factor columns (presence, style and nuisance) is uncorrelated
    factors = np.column_stack([present, data.attributes, data.nuisance]).astype(float)
    corr = np.corrcoef(factors, rowvar=False)
    for i in range(3):  # a presence column and its own style column are related by definition
        corr[i, 3 + i] = corr[3 + i, i] = 0
    off = np.abs(corr - np.diag(np.diag(corr)))
    assert off.max() < 0.07, off.max()
    # each nuisance factor spreads over its whole range
    for k, name in enumerate(NUISANCE_NAMES):
        low, high = NUISANCE_RANGES[name]
        values = data.nuisance[:, k]
        assert values.min() < low + 0.01 * (high - low) and values.max() > high - 0.01 * (
            high - low
        )
        assert abs(values.mean() - (low + high) / 2) < 0.02 * (high - low)


@pytest.mark.parametrize("name", NAMES)
def test_toggling_an_attribute_changes_only_its_region(name):
    size, n = 64, 60
    k = NAMES.index(name)
    attributes, nuisance = _random_factors(n, np.random.default_rng(k), n_styles=MAX_STYLES)
    attributes[:, k] = 0
    without = render_attribute_images(attributes, nuisance, image_size=size).astype(float)
    x, y, radius = _face_units(nuisance, size)
    x0, x1, y0, y1 = REGIONS[name]
    margin = 2 * (2 / size) / radius[:, None, None]  # two pixels, in face units
    inside = (x > x0 - margin) & (x < x1 + margin) & (y > y0 - margin) & (y < y1 + margin)
    bottom = slice(size - 3, size)
    centre = slice(size // 2 - 3, size // 2 + 3)
    for style in range(1, MAX_STYLES + 1):
        attributes[:, k] = style
        worn = render_attribute_images(attributes, nuisance, image_size=size).astype(float)
        change = np.abs(worn - without).max(axis=-1)
        assert change[~inside].max() == 0, (name, style)
        # the background corners and the shirt at the bottom centre never change
        assert change[:, :3, :3].max() == 0 and change[:, :3, -3:].max() == 0
        assert change[:, bottom, centre].max() == 0
        # and every face visibly wears it
        assert (change.reshape(n, -1).sum(axis=1) > 3).all(), (name, style)
        assert (change.reshape(n, -1).max(axis=1) > 0.2).all(), (name, style)


def test_styles_render_differently_in_fixed_colours():
    size, n = 96, 12
    attributes, nuisance = _random_factors(n, np.random.default_rng(9))
    for k in range(3):
        renders = []
        for style in range(1, MAX_STYLES + 1):
            attributes[:, k] = style
            renders.append(render_attribute_images(attributes, nuisance, image_size=size))
        for a in range(MAX_STYLES):
            for b in range(a + 1, MAX_STYLES):
                diff = np.abs(renders[a] - renders[b]).max(axis=-1).reshape(n, -1)
                assert ((diff > 0.2).sum(axis=1) >= 5).all(), (k, a, b)
    # colours deep inside a top hat and a plain tie do not depend on skin or background
    attributes[:] = [0, 2, 1]
    images = render_attribute_images(attributes, nuisance, image_size=size)
    x, y, _ = _face_units(nuisance, size)
    for point in ((0.0, -1.5), (0.0, 1.55)):
        distance = (x - point[0]) ** 2 + (y - point[1]) ** 2
        rows, cols = np.unravel_index(distance.reshape(n, -1).argmin(axis=1), (size, size))
        colours = images[np.arange(n), rows, cols]
        assert np.ptp(colours, axis=0).max() < 1e-6, colours
    assert images[0, rows[0], cols[0], 0] > 2 * images[0, rows[0], cols[0], 1]  # the red tie


def test_background_hue_changes_the_corners_not_the_face():
    size = 48
    attributes, nuisance = _random_factors(20, np.random.default_rng(3))
    other = nuisance.copy()
    other[:, COLUMN["background_hue"]] = (nuisance[:, COLUMN["background_hue"]] + 0.3) % 0.8
    a = render_attribute_images(attributes, nuisance, image_size=size)
    b = render_attribute_images(attributes, other, image_size=size)
    for corner in (a[:, 0, 0] - b[:, 0, 0], a[:, 0, -1] - b[:, 0, -1], a[:, -1, 0] - b[:, -1, 0]):
        assert (np.abs(corner).max(axis=-1) > 0.05).all()
    x, y, _ = _face_units(nuisance, size)
    face_centre = (x**2 + y**2 < 0.3**2)[..., None].repeat(3, axis=-1)
    np.testing.assert_array_equal(a[face_centre], b[face_centre])


def test_position_shifts_the_face_in_its_direction():
    size, n = 64, 10
    attributes, nuisance = _random_factors(n, np.random.default_rng(4))
    attributes[:] = 0
    grid = np.arange(size)
    for name, axis in (("position_x", 1), ("position_y", 0)):
        centroids = []
        for offset in (-0.05, 0.0, 0.05):
            moved = nuisance.copy()
            moved[:, COLUMN[name]] = offset
            images = render_attribute_images(attributes, moved, image_size=size)
            mask = _skin_mask(images, moved).astype(float)
            profile = mask.sum(axis=2 - axis)
            centroids.append(profile @ grid / profile.sum(axis=1))
        # an offset of 0.05 sides is 3.2 pixels at 64 x 64, in the positive direction
        np.testing.assert_allclose(centroids[1] - centroids[0], 3.2, atol=0.5)
        np.testing.assert_allclose(centroids[2] - centroids[1], 3.2, atol=0.5)


def test_size_grows_the_face_area_monotonically():
    size, n = 64, 8
    attributes, nuisance = _random_factors(n, np.random.default_rng(5))
    attributes[:] = 0
    scales = np.linspace(0.8, 1.2, 9)
    areas = []
    for scale in scales:
        grown = nuisance.copy()
        grown[:, COLUMN["size"]] = scale
        images = render_attribute_images(attributes, grown, image_size=size)
        areas.append(_skin_mask(images, grown).sum(axis=(1, 2)))
    areas = np.array(areas)
    assert (np.diff(areas, axis=0) > 0).all()
    # area scales as size squared: (1.2 / 0.8) ** 2 = 2.25
    np.testing.assert_allclose(areas[-1] / areas[0], 2.25, rtol=0.12)


def test_every_attribute_is_learnable_from_pixels():
    from sklearn.linear_model import LogisticRegression

    data = make_attribute_images(2000, image_size=32, random_state=0)
    X = data.flat_obs()
    for k, name in enumerate(data.attribute_names):
        y = data.present[:, k]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs may stop at max_iter; the score decides
            model = LogisticRegression(C=0.1, max_iter=200).fit(X[:1500], y[:1500])
        accuracy = model.score(X[1500:], y[1500:])
        assert accuracy > 0.9, (name, accuracy)


def test_npz_round_trip(tmp_path):
    data = make_attribute_images(7, image_size=16, dtype="uint8", random_state=0)
    path = tmp_path / "faces.npz"
    data.save(path)
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["images"], data.images)
        assert saved["images"].dtype == np.uint8
        np.testing.assert_array_equal(saved["attributes"], data.attributes)
        np.testing.assert_array_equal(saved["nuisance"], data.nuisance)
        assert saved["tasks"].dtype == np.float64
        np.testing.assert_array_equal(saved["tasks"], data.attributes)
        assert tuple(saved["attribute_names"]) == NAMES
        assert tuple(saved["nuisance_names"]) == NUISANCE_NAMES


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(n_samples=0), "n_samples"),
        (dict(image_size=15), "image_size"),
        (dict(attributes=("glasses", "scarf")), "attributes.*scarf.*known.*'hat'"),
        (dict(attributes=("hat", "hat")), "attributes.*'hat'"),
        (dict(attributes=()), "attributes"),
        (dict(n_styles=0), "n_styles"),
        (dict(n_styles=MAX_STYLES + 1), "n_styles"),
        (dict(presence=0.0), "presence"),
        (dict(presence=1.0), "presence"),
        (dict(noise=-0.1), "noise"),
        (dict(dtype="float64"), "dtype.*float64"),
        (dict(dtype=None), "dtype"),
        (dict(random_state="seed"), "random_state"),
    ],
)
def test_bad_input_names_the_argument(kwargs, name):
    args = dict(n_samples=5, image_size=16) | kwargs
    with pytest.raises(InvalidParameterError, match=name):
        make_attribute_images(args.pop("n_samples"), **args)


def _good_nuisance(n):
    return np.array([[0.3, 0.7, 0.5, 0.0, 0.0, 1.0]] * n)


@pytest.mark.parametrize(
    ("attributes", "nuisance", "match"),
    [
        (np.zeros((4, 2)), _good_nuisance(4), r"attributes has shape \(4, 2\)"),
        (np.zeros(4), _good_nuisance(4), "attributes has shape"),
        (np.zeros((4, 3)), _good_nuisance(3), r"nuisance has shape \(3, 6\)"),
        (np.zeros((4, 3)), np.zeros((4, 5)), "nuisance has shape"),
        (np.full((4, 3), np.nan), _good_nuisance(4), "attributes contains NaN"),
        (np.zeros((4, 3)), _good_nuisance(4) + [np.inf, 0, 0, 0, 0, 0], "nuisance .*inf"),
        (np.full((4, 3), MAX_STYLES + 1), _good_nuisance(4), "attributes .* 4"),
        (np.full((4, 3), -1), _good_nuisance(4), "attributes"),
        (np.full((4, 3), 0.5), _good_nuisance(4), "attributes .*integers"),
        (np.zeros((4, 3)), _good_nuisance(4) * [1, 1, 1, 1, 1, 2], r"size.*\[0.8, 1.2\]"),
        (np.zeros((4, 3)), _good_nuisance(4) + [0.9, 0, 0, 0, 0, 0], "skin_hue"),
        (np.zeros((4, 3)), _good_nuisance(4) + [0, 0, 0, 0.1, 0, 0], "position_x"),
    ],
)
def test_bad_factors_are_refused(attributes, nuisance, match):
    with pytest.raises(DataValidationError, match=match):
        render_attribute_images(attributes, nuisance, image_size=16)


def test_bad_render_arguments_name_the_argument():
    good = (np.zeros((2, 3)), _good_nuisance(2))
    with pytest.raises(InvalidParameterError, match="attribute_names.*known"):
        render_attribute_images(*good, attribute_names=("glasses", "hat", "cape"))
    with pytest.raises(InvalidParameterError, match="attribute_names"):
        render_attribute_images(*good, attribute_names=("tie", "tie", "hat"))
    with pytest.raises(InvalidParameterError, match="image_size"):
        render_attribute_images(*good, image_size=8)
    with pytest.raises(InvalidParameterError, match="dtype"):
        render_attribute_images(*good, dtype="int16")
