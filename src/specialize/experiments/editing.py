"""The paper's image-editing study on rendered faces: edit one task's latents, keep the rest.

Data of a seed: ``make_attribute_images(n, image_size, n_styles, random_state=seed)``, cartoon
faces whose attributes (glasses, hat, tie) and nuisance factors (skin hue and lightness,
background hue, position, size) are independent; 80 % train the models, the rest are edited.

Methods, each a :class:`specialize.generative.MaskedImageVAE` trained on the images with the
attributes as its tasks:

- ``vae``: ``sparsity=0``, no penalty: every task keeps every latent coordinate;
- ``sparse-vae``: the default automatic penalty, which selects each task's coordinates.

For every held-out image and attribute the edit asks for the other presence (absent ->
present with a random style, present -> absent), in two ways (``edit``): ``walk`` moves the
task's latents along its head's gradient until the head agrees, ``class-mean`` sets them to
their mean over the training images of the asked class. The study trains its own
:class:`specialize.generative.FactorProbe` on freshly rendered images of other seeds and reads
the factors of each edited image and of its unedited reconstruction (the decoder's loss on
every image is then not counted against the edit). Row metrics, one row per (method, edit,
task):

- ``target_success``: the probe reads the asked-for label on the edited image;
- ``others_changed``: share of (image, other attribute) pairs whose label moved;
- ``nuisance_shift`` and ``shift_<factor>``: mean absolute change of the nuisance factors, in
  units of their standard deviation in the data;
- ``outside_change`` / ``inside_change``: mean absolute pixel change outside / inside the region
  where the true counterfactual (the same face rendered with the one attribute changed)
  differs from the original, widened by a pixel; no probe involved;
- ``kept_accuracy``: the probe reads the true label on the reconstruction (how well the model
  keeps the attribute at all); ``probe_accuracy``: the probe on clean held-out renders;
- ``n_latents``: coordinates the task's mask keeps; ``sparsity_selected``; ``seconds``: the
  model's fit.

Files of a run: ``edits.png`` (originals, reconstructions and every edit of a few held-out
faces, both methods and both ways) and ``masks.png`` (each method's task-latent mask).
"""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation

from ..datasets.attributes import NUISANCE_NAMES, make_attribute_images, render_attribute_images
from ..metrics.editing import edit_effects, pixel_change
from .runner import Experiment, aggregate, run_files_folder

LATENT_DIM = 16
#: Fresh renders that train the probe, and the probe's epochs (full, quick).
PROBE_SAMPLES = (8000, 1500)
PROBE_EPOCHS = (12, 3)
#: Held-out images edited per run, at most.
MAX_EDITED = 500
#: A pixel belongs to an edit's true region when the counterfactual moves it by more than this.
REGION_THRESHOLD = 0.02
#: Faces shown in ``edits.png``.
GRID_FACES = 6
METHODS = {"vae": {"sparsity": 0.0}, "sparse-vae": {}}
#: How an edit changes the task's latents (``MaskedImageVAE.edit_latents``).
EDITS = ("walk", "class-mean")
SETTING_KEYS = ("n_samples", "image_size", "n_styles", "epochs")
EDITING_METRICS = (
    "target_success",
    "others_changed",
    "nuisance_shift",
    "outside_change",
    "inside_change",
    "kept_accuracy",
    "probe_accuracy",
    "n_latents",
    "sparsity_selected",
    "seconds",
    *(f"shift_{name}" for name in NUISANCE_NAMES),
)


def editing_settings(quick: bool) -> list[dict]:
    """One setting: 6,000 faces of 32 x 32, one style per attribute, 30 epochs (quick: 1,000
    faces of 16 x 16 and 4 epochs)."""
    if quick:
        return [{"n_samples": 1000, "image_size": 16, "n_styles": 1, "epochs": 4}]
    return [{"n_samples": 6000, "image_size": 32, "n_styles": 1, "epochs": 30}]


def run_editing(setting: dict, seed: int, quick: bool, files: Path | None = None) -> list[dict]:
    """Fit both methods on one seed's faces, edit every attribute of the held-out ones."""
    from ..generative import FactorProbe, MaskedImageVAE

    size, n_styles = setting["image_size"], setting["n_styles"]
    data = make_attribute_images(
        setting["n_samples"], image_size=size, n_styles=n_styles, random_state=seed
    )
    n_train = int(round(0.8 * len(data.images)))
    held_out = slice(n_train, n_train + MAX_EDITED)
    images, attributes = data.images[held_out], data.attributes[held_out]
    nuisance = data.nuisance[held_out]
    names = data.attribute_names
    targets = _edit_targets(attributes, n_styles, np.random.default_rng([seed, 2]))

    probe_data, probe_test = (
        make_attribute_images(
            count, image_size=size, n_styles=n_styles, random_state=np.random.SeedSequence(key)
        )
        for count, key in ((PROBE_SAMPLES[quick], [seed, 1]), (MAX_EDITED, [seed, 3]))
    )
    probe = FactorProbe(PROBE_EPOCHS[quick], random_state=seed).fit(
        probe_data.images, probe_data.attributes, probe_data.nuisance
    )
    probe_accuracy = probe.score(probe_test.images, probe_test.attributes, probe_test.nuisance)
    scale = data.nuisance.std(axis=0)
    regions = _edit_regions(attributes, nuisance, targets, names, size)

    rows, shown = [], {}
    for method, params in METHODS.items():
        model = MaskedImageVAE(
            LATENT_DIM,
            epochs=setting["epochs"],
            task_names=names,
            random_state=seed,
            progress=False,
            **params,
        )
        started = time.perf_counter()
        model.fit(data.images[:n_train], data.attributes[:n_train])
        seconds = time.perf_counter() - started
        z = model.encode(images)
        reconstruction = model.decode(z)
        labels_before, nuisance_before = probe.predict(reconstruction)
        shown[method] = {"model": model, "reconstruction": reconstruction[:GRID_FACES]}
        for (k, name), edit in itertools.product(enumerate(names), EDITS):
            edited = np.empty_like(reconstruction)
            for value in np.unique(targets[:, k]):
                chosen = targets[:, k] == value
                edited[chosen] = model.decode(model.edit_latents(z[chosen], k, value, method=edit))
            labels_after, nuisance_after = probe.predict(edited)
            effects = edit_effects(
                labels_before,
                labels_after,
                nuisance_before,
                nuisance_after,
                task=k,
                target=targets[:, k],
                nuisance_scale=scale,
            )
            outside, inside = pixel_change(reconstruction, edited, regions[k])
            shown[method][f"{edit} {name}"] = edited[:GRID_FACES]
            rows.append(
                {
                    "method": method,
                    "edit": edit,
                    "task": name,
                    "target_success": effects["target_success"],
                    "others_changed": effects["others_changed"],
                    "nuisance_shift": effects["nuisance_shift"],
                    "outside_change": outside,
                    "inside_change": inside,
                    "kept_accuracy": float((labels_before[:, k] == attributes[:, k]).mean()),
                    "probe_accuracy": probe_accuracy["accuracy"][k],
                    "n_latents": len(model.relevant_dims_[k]),
                    "sparsity_selected": float(model.sparsity_),
                    "seconds": seconds,
                    **{
                        f"shift_{factor}": value
                        for factor, value in zip(
                            NUISANCE_NAMES, effects["nuisance_shift_each"], strict=True
                        )
                    },
                }
            )
    if files is not None:
        plot_edits(images[:GRID_FACES], shown, Path(files) / "edits.png")
        plot_masks({m: s["model"] for m, s in shown.items()}, Path(files) / "masks.png")
    return rows


def _edit_targets(attributes: np.ndarray, n_styles: int, rng) -> np.ndarray:
    """The other presence of every attribute: 0 where present, a random style where absent."""
    styles = rng.integers(1, n_styles + 1, size=attributes.shape)
    return np.where(attributes > 0, 0, styles)


def _edit_regions(attributes, nuisance, targets, names, size: int) -> list[np.ndarray]:
    """Per attribute k, bool (n, H, W): the pixels that the true edit of k to ``targets[:, k]``
    moves (its counterfactual rendering against the original), widened by one pixel."""
    originals = render_attribute_images(
        attributes, nuisance, image_size=size, attribute_names=names
    )
    regions = []
    for k in range(attributes.shape[1]):
        changed = attributes.copy()
        changed[:, k] = targets[:, k]
        truth = render_attribute_images(changed, nuisance, image_size=size, attribute_names=names)
        moved = np.abs(truth - originals).max(axis=3) > REGION_THRESHOLD
        regions.append(binary_dilation(moved, structure=np.ones((1, 3, 3), bool)))
    return regions


def plot_edits(originals, shown: dict, path) -> Path:
    """A grid: a column per face; rows: the original, then per method its reconstruction and
    every edit of every attribute (``shown[method]``: label -> images, in order)."""
    from matplotlib.figure import Figure

    panels = [("original", originals)]
    for method, images in shown.items():
        panels += [
            (f"{method}\n{label}", edited) for label, edited in images.items() if label != "model"
        ]
    n_faces = len(originals)
    fig = Figure(figsize=(1.6 + 0.9 * n_faces, 0.9 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), n_faces, squeeze=False)
    for r, (label, images) in enumerate(panels):
        for c in range(n_faces):
            ax = axes[r, c]
            ax.imshow(images[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle("edits of held-out faces: each attribute set to its other presence", fontsize=8)
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_masks(models: dict, path) -> Path:
    """Each method's task-latent mask |m| (tasks x latent coordinates), selected ones boxed."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(7, 1.3 * len(models) + 0.4), layout="constrained")
    axes = fig.subplots(len(models), 1, squeeze=False)[:, 0]
    for ax, (method, model) in zip(axes, models.items(), strict=True):
        mask = model.task_mask_
        ax.imshow(mask, cmap="Greys", aspect="auto", vmin=0)
        for k, dims in enumerate(model.relevant_dims_):
            for j in dims:
                ax.add_patch(Rectangle((j - 0.5, k - 0.5), 1, 1, fill=False, ec="red", lw=1))
        ax.set_yticks(range(len(model.task_names_)), model.task_names_, fontsize=7)
        ax.set_xticks(range(mask.shape[1]), [str(j) for j in range(mask.shape[1])], fontsize=6)
        ax.set_title(f"{method}: |task-latent mask|, kept coordinates boxed", fontsize=8)
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_editing_study(rows: list[dict], out_dir: Path) -> list[Path]:
    """``edit_scores.png`` (bars per method and task, std over seeds) and the first run's
    ``edits.png`` and ``masks.png``, copied from its files."""
    from matplotlib.figure import Figure

    metrics = ("target_success", "others_changed", "nuisance_shift", "outside_change")
    lines = aggregate(rows, ["method", "edit", "task"], list(metrics))
    for line in lines:
        line["method"] = f"{line['method']}, {line['edit']}"
    fig = Figure(figsize=(3.0 * len(metrics), 3.2), layout="constrained")
    axes = fig.subplots(1, len(metrics))
    methods = list(dict.fromkeys(line["method"] for line in lines))
    tasks = list(dict.fromkeys(line["task"] for line in lines))
    width = 0.8 / len(methods)
    for ax, metric in zip(axes, metrics, strict=True):
        for i, method in enumerate(methods):
            mine = {line["task"]: line[metric] for line in lines if line["method"] == method}
            means = np.array([mine[t][0] for t in tasks])
            stds = np.nan_to_num(np.array([mine[t][1] for t in tasks]))
            positions = np.arange(len(tasks)) + (i - (len(methods) - 1) / 2) * width
            ax.bar(positions, means, width, yerr=stds, capsize=2, label=method)
        ax.set_xticks(range(len(tasks)), tasks, fontsize=7)
        ax.set_title(metric.replace("_", " "), fontsize=8)
    axes[0].legend(fontsize=7)
    path = Path(out_dir) / "edit_scores.png"
    fig.savefig(path, dpi=120)
    paths = [path]
    first = min(rows, key=lambda r: r["seed"])
    folder = run_files_folder(out_dir, {k: first[k] for k in SETTING_KEYS}, first["seed"])
    for name in ("edits.png", "masks.png"):
        if (folder / name).is_file():
            shutil.copyfile(folder / name, Path(out_dir) / name)
            paths.append(Path(out_dir) / name)
    return paths


ATTRIBUTE_EDITING = Experiment(
    name="attribute-editing",
    description=(
        "Attribute editing on rendered faces (make_attribute_images): a MaskedImageVAE with "
        "and without its sparse task-latent mask edits each attribute of held-out faces; a "
        "probe trained on renders reads whether the asked attribute changed and how far the "
        "other attributes and the nuisance factors moved."
    ),
    settings=editing_settings,
    run=run_editing,
    metrics=EDITING_METRICS,
    plot=plot_editing_study,
    group_by=("method", "edit", "task"),
    writes_files=True,
)
