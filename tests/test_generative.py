"""MaskedImageVAE (images in and out, edits that touch only a task's latents, save/load, bad
input), FactorProbe, the edit metrics, and the attribute-editing study's quick form."""

import copy

import numpy as np
import pytest

from specialize._threads import one_thread as one_thread_limits
from specialize._validation import DataValidationError, InvalidParameterError
from specialize.datasets import make_attribute_images
from specialize.experiments import run_experiment
from specialize.experiments.editing import EDITING_METRICS, EDITS, METHODS, plot_editing_study
from specialize.generative import FactorProbe, MaskedImageVAE
from specialize.generative.model import EDIT_MAX_STEPS, EDIT_STEP
from specialize.generative.networks import conv_decoder, conv_encoder, n_halvings
from specialize.generative.probes import _blurred
from specialize.latent import SparseTaskVAE
from specialize.metrics import edit_effects, pixel_change

torch = pytest.importorskip("torch")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ("glasses", "hat", "tie")


@pytest.fixture(scope="module")
def one_thread():
    with one_thread_limits():
        yield


@pytest.fixture(scope="module")
def faces():
    return make_attribute_images(400, image_size=16, n_styles=1, random_state=0)


@pytest.fixture(scope="module")
def fitted(faces, one_thread):
    model = MaskedImageVAE(
        6, sparsity=0.0, epochs=3, task_names=NAMES, random_state=0, progress=False
    )
    return model.fit(faces.images, faces.attributes)


# ------------------------------------------------------------------------------ networks


@pytest.mark.parametrize(
    ("shape", "halvings"), [((32, 32, 3), 3), ((64, 64, 3), 4), ((48, 40, 1), 3), ((17, 17, 3), 0)]
)
def test_networks_map_images_to_latents_and_back_for_any_side(shape, halvings):
    assert n_halvings(shape[0], shape[1]) == halvings
    encoder, decoder = conv_encoder(shape, 10), conv_decoder(shape, 5)
    x = torch.randn(3, shape[0] * shape[1] * shape[2])
    assert encoder(x).shape == (3, 10)
    assert decoder(torch.randn(3, 5)).shape == x.shape
    # the alignment rotates the latent through these two layers
    assert isinstance(encoder[-1], torch.nn.Linear)
    assert isinstance(decoder[0], torch.nn.Linear)


# ------------------------------------------------------------------------------ the model


def test_images_round_trip_through_the_latent(fitted, faces):
    z = fitted.encode(faces.images[:20])
    assert z.shape == (20, 6)
    np.testing.assert_array_equal(z, fitted.transform(faces.images[:20]))
    images = fitted.decode(z)
    assert images.shape == (20, 16, 16, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_array_equal(fitted.reconstruct(faces.images[:20]), images)
    # uint8 images are read as 0-255
    uint8 = np.round(faces.images[:20] * 255).astype(np.uint8)
    np.testing.assert_allclose(fitted.encode(uint8), z, atol=0.05)
    samples = fitted.sample(5, random_state=1)
    assert samples.shape == (5, 16, 16, 3)
    np.testing.assert_array_equal(samples, fitted.sample(5, random_state=1))
    assert not np.array_equal(samples, fitted.sample(5, random_state=2))


def test_reconstructions_are_closer_to_their_own_image_than_to_others(fitted, faces):
    images = faces.images[:50]
    recon = fitted.reconstruct(images)
    own = np.abs(recon - images).mean()
    shuffled = np.abs(recon - images[::-1]).mean()
    assert own < 0.8 * shuffled


def _restricted(model, task: int, dims):
    """The model with task ``task``'s support cut to ``dims`` (as a penalty would leave it)."""
    support = np.zeros(model.latent_dim, bool)
    support[list(dims)] = True
    with torch.no_grad():
        model.module_.support[task] = torch.as_tensor(support)
    model.relevant_dims_[task] = np.flatnonzero(support)
    return model


def test_an_edit_moves_only_the_tasks_latents_and_reaches_the_value(faces, one_thread):
    model = MaskedImageVAE(
        6, sparsity=0.0, epochs=3, task_names=NAMES, random_state=0, progress=False
    ).fit(faces.images, faces.attributes)
    _restricted(model, 1, [1, 4])
    z = model.encode(faces.images[:40])
    edited = model.edit_latents(z, "hat", 1)
    untouched = [0, 2, 3, 5]
    np.testing.assert_array_equal(edited[:, untouched], z[:, untouched])
    assert np.abs(edited[:, [1, 4]] - z[:, [1, 4]]).max() > 0
    # every walk raises the head's probability of the asked class
    assert (_probability(model, edited, 1, 1) > _probability(model, z, 1, 1)).all()
    # the task by name or by index is the same edit; images are edited through their latents
    np.testing.assert_array_equal(model.edit_latents(z, 1, 1), edited)
    np.testing.assert_array_equal(model.edit(faces.images[:40], "hat", 1), model.decode(edited))
    np.testing.assert_array_equal(model.edit(z, "hat", 1), model.decode(edited))


def _probability(model, z, task: int, value: int) -> np.ndarray:
    with torch.no_grad():
        logits = model.module_.predict_tasks(torch.as_tensor(z, dtype=torch.float32))[task]
    return torch.softmax(logits, 1)[:, value].numpy()


def test_a_walk_stops_at_the_value_or_at_its_largest_distance(fitted):
    """With a known head, p(hat) = sigmoid(2 a z_1), every walk is exact: z_1 rises by
    EDIT_STEP a step until p >= 0.95, for at most EDIT_MAX_STEPS steps."""
    model = _restricted(copy.deepcopy(fitted), 1, [1, 4])
    a = 2.0
    head = torch.nn.Linear(6, 2)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[1, 1], head.weight[0, 1] = a, -a
        model.module_.mask.fill_(1.0)
    model.module_.heads[1] = head
    z = np.zeros((5, 6))
    z[:, 1] = [-5.0, -1.0, 0.0, 0.5, 1.0]
    z[:, 0] = 3.0  # another coordinate: never moves
    walked = model.edit_latents(z, "hat", 1)
    threshold = np.log(0.95 / 0.05) / (2 * a)  # z_1 where p reaches 0.95 (0.736)
    steps = np.clip(np.ceil((threshold - z[:, 1]) / EDIT_STEP - 1e-6), 0, EDIT_MAX_STEPS)
    np.testing.assert_allclose(walked[:, 1], z[:, 1] + EDIT_STEP * steps, atol=1e-5)
    assert steps[0] == EDIT_MAX_STEPS and steps[-1] == 0  # too far; already there
    np.testing.assert_array_equal(walked[-1], z[-1])
    np.testing.assert_array_equal(np.delete(walked, 1, axis=1), np.delete(z, 1, axis=1))


def test_class_means_are_the_mean_latents_of_each_class(fitted, faces):
    z = fitted.encode(faces.images)
    for k in range(3):
        for c in (0, 1):
            np.testing.assert_allclose(
                fitted.class_latents_[k][c], z[faces.attributes[:, k] == c].mean(axis=0)
            )


def test_a_class_mean_edit_sets_only_the_tasks_latents_to_the_class_mean(fitted, faces):
    model = _restricted(copy.deepcopy(fitted), 2, [0, 3])
    z = model.encode(faces.images[:30])
    edited = model.edit_latents(z, "tie", 1, method="class-mean")
    np.testing.assert_array_equal(edited[:, [1, 2, 4, 5]], z[:, [1, 2, 4, 5]])
    mean = model.class_latents_[2][1, [0, 3]]
    np.testing.assert_array_equal(edited[:, [0, 3]], np.tile(mean, (30, 1)))
    # without the penalty the support is the whole latent: every image becomes the class mean
    whole = fitted.edit_latents(z, "tie", 1, method="class-mean")
    np.testing.assert_array_equal(whole, np.tile(fitted.class_latents_[2][1], (30, 1)))
    with pytest.raises(InvalidParameterError, match="method must be one of 'walk', 'class-mean'"):
        fitted.edit_latents(z, "tie", 1, method="swap")


def test_a_class_mean_edit_needs_a_classification_task(faces, one_thread):
    score = faces.nuisance[:, :1]
    model = MaskedImageVAE(4, sparsity=0.0, epochs=1, random_state=0, progress=False)
    model.fit(faces.images, score)
    assert model.class_latents_ == [None]
    with pytest.raises(InvalidParameterError, match="'task0' is a regression task"):
        model.edit_latents(np.zeros((1, 4)), 0, 0.3, method="class-mean")
    walked = model.edit_latents(np.zeros((1, 4)), 0, float(score.max()))
    assert walked.shape == (1, 4)


def test_transform_task_takes_names_and_returns_the_tasks_coordinates(fitted, faces):
    z = fitted.encode(faces.images[:10])
    np.testing.assert_array_equal(
        fitted.transform_task(faces.images[:10], "glasses"), z[:, fitted.relevant_dims_[0]]
    )


def test_edit_bad_input(fitted, faces):
    z = fitted.encode(faces.images[:5])
    with pytest.raises(InvalidParameterError, match="unknown task 'scarf'.*'glasses', 'hat'"):
        fitted.edit(faces.images[:5], "scarf", 1)
    with pytest.raises(InvalidParameterError, match="task must be <= 2"):
        fitted.edit_latents(z, 3, 1)
    with pytest.raises(InvalidParameterError, match="value 7 is not a class of task 'hat'"):
        fitted.edit_latents(z, "hat", 7)
    with pytest.raises(DataValidationError, match="Z has 4 columns; the model's latent has 6"):
        fitted.edit_latents(z[:, :4], "hat", 1)
    with pytest.raises(DataValidationError, match="Z contains NaN"):
        fitted.decode(np.full((2, 6), np.nan))


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((4, 16, 16)), r"X has shape \(4, 16, 16\), expected \(n_images, height"),
        (np.zeros((4, 16, 16, 3), dtype=np.int32), "X has dtype int32; images must be uint8"),
        (np.full((4, 16, 16, 3), 200.0), r"values in \[200, 200\].*divide 0-255 values by 255"),
        (np.full((4, 16, 16, 3), -0.5), r"float images must lie in \[0, 1\]$"),
        (np.full((4, 16, 16, 3), np.nan), "X contains NaN at index"),
    ],
)
def test_bad_images_are_refused_naming_the_array(fitted, images, message):
    with pytest.raises(DataValidationError, match=message):
        fitted.encode(images)


def test_images_of_another_shape_are_refused(fitted):
    with pytest.raises(DataValidationError, match=r"shape \(32, 32, 3\); the model was fitted on"):
        fitted.encode(np.zeros((2, 32, 32, 3), np.float32))


def test_fit_bad_input(faces):
    with pytest.raises(InvalidParameterError, match="task_names must be 3 strings"):
        MaskedImageVAE(4, task_names=("a", "b"), epochs=1).fit(faces.images, faces.attributes)
    with pytest.raises(InvalidParameterError, match="task_names must be distinct"):
        MaskedImageVAE(4, task_names=("a", "a", "b"), epochs=1).fit(faces.images, faces.attributes)
    with pytest.raises(DataValidationError, match="all the same constant colour"):
        MaskedImageVAE(4, epochs=1).fit(np.zeros((20, 16, 16, 3)), faces.attributes[:20])
    with pytest.raises(DataValidationError, match="X has 400 samples but G has 10"):
        MaskedImageVAE(4, epochs=1).fit(faces.images, faces.attributes[:10])


def test_parameters_are_stored_as_given():
    model = MaskedImageVAE(5, task_names=["x"], epochs=2)
    params = model.get_params()
    assert "hidden_sizes" not in params
    assert params["task_names"] == ["x"] and params["latent_dim"] == 5
    assert MaskedImageVAE(**params).get_params() == params


def test_save_and_load_round_trip(fitted, faces, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = MaskedImageVAE.load(tmp_path / "model", device="cpu")
    assert loaded.task_names_ == list(NAMES) and loaded.image_shape_ == (16, 16, 3)
    for saved, original in zip(loaded.class_latents_, fitted.class_latents_, strict=True):
        np.testing.assert_array_equal(saved, original)
    images = faces.images[:10]
    np.testing.assert_array_equal(loaded.encode(images), fitted.encode(images))
    np.testing.assert_array_equal(loaded.edit(images, "hat", 0), fitted.edit(images, "hat", 0))
    with pytest.raises(DataValidationError, match="holds a saved MaskedImageVAE, not a Sparse"):
        SparseTaskVAE.load(tmp_path / "model")


def test_a_penalised_fit_aligns_then_shrinks_the_mask(faces, one_thread):
    model = MaskedImageVAE(
        6, sparsity=1.0, epochs=4, task_names=NAMES, random_state=0, progress=False
    ).fit(faces.images, faces.attributes)
    stages = [h["stage"] for h in model.history_]
    assert list(dict.fromkeys(stages)) == ["warm-up", "aligned", "penalty 1", "refit"]
    aligned = [h["penalty"] for h in model.history_ if h["stage"] == "aligned"]
    penalised = [h["penalty"] for h in model.history_ if h["stage"] == "penalty 1"]
    assert penalised[-1] < aligned[-1] and penalised[-1] < penalised[0]


# ------------------------------------------------------------------------------ the probe


def test_blur_keeps_a_constant_image_and_the_mass_of_a_point():
    flat = torch.full((2, 3 * 9 * 9), 0.25)
    np.testing.assert_allclose(_blurred(torch, flat, (9, 9, 3), 1.0).numpy(), 0.25, rtol=1e-6)
    point = torch.zeros(1, 1, 9, 9)
    point[0, 0, 4, 4] = 1.0
    blurred = _blurred(torch, point.reshape(1, -1), (9, 9, 1), 1.0).reshape(9, 9)
    assert float(blurred.sum()) == pytest.approx(1.0, rel=1e-5)
    assert float(blurred[4, 4]) < 0.5 and float(blurred[4, 3]) > 0
    assert torch.equal(_blurred(torch, flat, (9, 9, 3), 0.0), flat)


def test_probe_reads_the_factors_of_held_out_faces(one_thread):
    train = make_attribute_images(1500, image_size=16, n_styles=1, random_state=1)
    test = make_attribute_images(300, image_size=16, n_styles=1, random_state=2)
    probe = FactorProbe(6, random_state=0).fit(train.images, train.attributes, train.nuisance)
    labels, nuisance = probe.predict(test.images)
    assert labels.shape == (300, 3) and nuisance.shape == (300, 6)
    scores = probe.score(test.images, test.attributes, test.nuisance)
    assert scores["accuracy"][1] > 0.9  # the hat covers many pixels even at 16 x 16
    assert min(scores["accuracy"]) > 0.6  # every attribute above chance (0.5)
    background = train.nuisance_names.index("background_hue")
    assert scores["r2"][background] > 0.8


def test_probe_bad_input():
    with pytest.raises(DataValidationError, match="not fitted"):
        FactorProbe().predict(np.zeros((1, 16, 16, 3)))
    images = np.zeros((4, 16, 16, 3))
    with pytest.raises(DataValidationError, match="attributes has 3 rows for 4 images"):
        FactorProbe(1).fit(images, np.zeros((3, 2)), np.zeros((4, 1)))
    with pytest.raises(DataValidationError, match="class labels 0, 1, 2"):
        FactorProbe(1).fit(images, np.full((4, 2), 0.5), np.zeros((4, 1)))


# ------------------------------------------------------------------------------ metrics


def test_edit_effects_by_hand():
    before = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 1]])
    after = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 1], [1, 0, 1]])
    nb = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    na = np.array([[0.2, 1.0], [0.0, 0.0], [0.0, 1.0], [0.4, 1.0]])
    target = np.array([1, 0, 1, 0])
    out = edit_effects(before, after, nb, na, task=0, target=target, nuisance_scale=[0.5, 2.0])
    assert out["target_success"] == 0.75
    # attribute 1 moved in 1 of 4 images, attribute 2 in 1 of 4
    assert out["others_changed_each"][1:] == [0.25, 0.25] and np.isnan(
        out["others_changed_each"][0]
    )
    assert out["others_changed"] == 0.25
    np.testing.assert_allclose(out["nuisance_shift_each"], [0.3, 0.125])
    assert out["nuisance_shift"] == pytest.approx(0.2125)


def test_edit_effects_bad_input():
    labels, values = np.zeros((3, 2)), np.zeros((3, 2))
    with pytest.raises(DataValidationError, match="before_labels has shape"):
        edit_effects(
            labels, np.zeros((3, 3)), values, values, task=0, target=1, nuisance_scale=[1, 1]
        )
    with pytest.raises(DataValidationError, match="nuisance_scale must hold 2 positive"):
        edit_effects(labels, labels, values, values, task=0, target=1, nuisance_scale=[1, 0])
    with pytest.raises(InvalidParameterError, match="task must be <= 1"):
        edit_effects(labels, labels, values, values, task=2, target=1, nuisance_scale=[1, 1])


def test_pixel_change_by_hand():
    before = np.zeros((2, 2, 2, 1))
    after = before.copy()
    after[0, 0, 0] = 0.4  # inside
    after[0, 1, 1] = 0.2  # outside
    after[1, 1, 1] = 0.6  # outside; image 1 has no region at all
    region = np.zeros((2, 2, 2), bool)
    region[0, 0, :] = True
    outside, inside = pixel_change(before, after, region)
    assert outside == pytest.approx((0.2 / 2 + 0.6 / 4) / 2)
    assert inside == pytest.approx(0.4 / 2)
    with pytest.raises(DataValidationError, match="region must be a bool array"):
        pixel_change(before, after, region.astype(int))


# ------------------------------------------------------------------------------ the study


def test_quick_study_scores_every_method_and_task_and_writes_its_figures(tmp_path, one_thread):
    run = run_experiment("attribute-editing", seeds=[0], quick=True, out=tmp_path)
    assert len(run.rows) == len(METHODS) * len(EDITS) * len(NAMES)
    assert {(r["method"], r["edit"], r["task"]) for r in run.rows} == {
        (m, e, t) for m in METHODS for e in EDITS for t in NAMES
    }
    for row in run.rows:
        for metric in ("target_success", "others_changed", "kept_accuracy", "probe_accuracy"):
            assert 0.0 <= row[metric] <= 1.0, (row["method"], metric)
        for metric in EDITING_METRICS:
            assert row[metric] is not None and np.isfinite(row[metric]), metric
        assert row["nuisance_shift"] >= 0 and row["outside_change"] >= 0
    # without the penalty every task keeps the whole latent
    assert all(r["n_latents"] == 16 for r in run.rows if r["method"] == "vae")
    names = [p.name for p in run.plots]
    assert names == ["edit_scores.png", "edits.png", "masks.png"]
    for path in run.plots:
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert plot_editing_study(run.rows, tmp_path / "attribute-editing")[1].is_file()
    # a rerun resumes: nothing is recomputed
    again = run_experiment("attribute-editing", seeds=[0], quick=True, out=tmp_path)
    assert again.computed == 0 and again.skipped == 1
