"""The ``specialize`` command line: simulate, discover, fit-latents, fit, transform, reproduce,
demo.

Every error in the user's input ends the command with a one-line message on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import typer

from ._threads import one_thread
from .ci.execute import ExecutorError
from .ci.registry import available_ci_tests

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Task structure of sequences from conditional-independence tests (Layer 1) and "
    "specialist latents from a sparse task-latent VAE (Layer 2).",
)

EXIT_USAGE = 2
#: Most epochs of each training stage in the demo's Layer-2 part (the estimator's default).
DEMO_LATENT_EPOCHS = 200


@contextmanager
def _user_errors():
    """Turn input errors into one line and exit 2; print warnings as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except (ValueError, KeyError, FileNotFoundError, OSError, ExecutorError) as exc:
            _print_warnings(caught)
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
    _print_warnings(caught)


def _print_warnings(caught) -> None:
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
            continue
        typer.echo(f"warning: {w.message}", err=True)


@app.command()
def simulate(
    out: Path = typer.Option(..., "--out", help="Path of the .npz file to write."),
    n_samples: int = typer.Option(10_000, help="Number of i.i.d. sequences n."),
    n_steps: int = typer.Option(20, help="Steps T per sequence."),
    n_tasks: int = typer.Option(4, help="Number of task variables M."),
    segment_length: int = typer.Option(2, help="Steps L per segment (>= 2)."),
    state_dim: int = typer.Option(1, help="Dimension d of states and actions."),
    obs_dim: int | None = typer.Option(
        None, help="Dimension D of observations (>= state_dim); default: observe the states."
    ),
    task_dim: int = typer.Option(1, help="Dimension q of each task variable."),
    mechanism: str = typer.Option("linear", help="'linear' (Gaussian) or 'nonlinear'."),
    mixing: str = typer.Option("identity", help="States to observations: identity, linear, mlp."),
    disconnect_prob: float = typer.Option(
        0.0, help="Probability in [0, 1) that a step's state has no parents."
    ),
    action_to_state: bool = typer.Option(
        False, "--action-to-state", help="Let each action also drive the next state."
    ),
    random_state: int = typer.Option(0, help="Seed of the simulation."),
):
    """Simulate sequences whose tasks are colliders of their steps' actions.

    Writes obs (n, T, D), states (n, T, d), actions, tasks (n, M) or (n, M, q), and the true segment_assignment (K, M) and step_assignment (T, M).
    """  # noqa: E501 - typer shows a docstring's lines as they are
    from .datasets import make_task_sequences

    with _user_errors():
        ds = make_task_sequences(
            n_samples,
            n_steps,
            n_tasks,
            segment_length=segment_length,
            state_dim=state_dim,
            obs_dim=obs_dim,
            task_dim=task_dim,
            mechanism=mechanism,
            mixing=mixing,
            disconnect_prob=disconnect_prob,
            action_to_state=action_to_state,
            random_state=random_state,
        )
        ds.save(out)
    typer.echo(
        f"wrote {out}: obs {ds.obs.shape}, tasks {ds.tasks.shape}, "
        f"{ds.segment_assignment.shape[0]} segments of {segment_length} steps"
    )


@app.command()
def discover(
    data: Path = typer.Argument(
        ..., help="An .npz file with 'obs' or 'states' (n, T, D) and 'tasks'."
    ),
    test: str = typer.Option(
        "fisherz", help=f"CI test: {', '.join(available_ci_tests(data_driven_only=True))}."
    ),
    segment_length: int | None = typer.Option(
        None, help="Steps L per segment; default: the file's segment_length, else 2."
    ),
    alpha: float = typer.Option(0.05, help="Significance level in (0, 1)."),
    mode: str = typer.Option("segment", help="segment, unary, pairwise (the paper's) or step."),
    correction: str = typer.Option(
        "holm", help="Multiple-testing correction: holm, bonferroni, fdr_bh or none."
    ),
    conditioning: str = typer.Option(
        "auto",
        help="Conditioning set: band (neighbours, Theorem 1), all (every other step) or auto.",
    ),
    aggregation: str = typer.Option(
        "clique", help="Pairwise mode: any (the paper's) or clique (robust to one false pair)."
    ),
    missing: str = typer.Option("raise", help="NaN policy: raise, drop-rows or testwise."),
    actions_feed_states: bool = typer.Option(
        True,
        help="Segment mode: allow for actions that drive the next state (safe); "
        "--no-actions-feed-states asserts they do not and uses every segment's block test.",
    ),
    key: str | None = typer.Option(
        None, help="Array to test: obs or states; default obs if present."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the result as JSON here."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a heat-map PNG here."),
    random_state: int | None = typer.Option(
        None, help="Seed for randomised tests (rcit, cmiknn); drawn and recorded when omitted."
    ),
    test_param: list[str] = typer.Option(
        [],
        "--test-param",
        help="A test's constructor argument as KEY=VALUE (repeatable), e.g. device=cuda, "
        "num_f=200; VALUE is read as JSON when it parses, else as a string.",
    ),
    n_jobs: int = typer.Option(1, help="Worker processes (-1: one per core)."),
    executor: str | None = typer.Option(
        None,
        help="Where tests run: processes, dask (a local cluster of --n-jobs workers) or a Dask "
        "scheduler address such as tcp://host:8786; default: this process, or processes "
        "when --n-jobs > 1.",
    ),
    checkpoint: Path | None = typer.Option(
        None,
        help="File keeping finished tests; rerun the same command to resume an interrupted run.",
    ),
):
    """Discover which segments serve which task (Algorithm 1 and its variants).

    Prints the recovered segment-task matrix; when the file holds the true assignment, also the scores (precision, recall, F1, exact), which go into the JSON as well.
    """  # noqa: E501 - typer shows a docstring's lines as they are
    from .datasets import load_sequences
    from .structure import discover_structure
    from .structure.result import format_matrix

    with _user_errors():
        f = load_sequences(data, key=key)
        L = segment_length or f.segment_length or 2
        result = discover_structure(
            f.X,
            f.G,
            segment_length=L,
            test=test,
            alpha=alpha,
            mode=mode,
            correction=None if correction.lower() == "none" else correction,
            conditioning=conditioning,
            aggregation=aggregation,
            missing=missing,
            actions_feed_states=actions_feed_states,
            random_state=random_state,
            test_params=_parse_test_params(test_param),
            n_jobs=n_jobs,
            executor=executor,
            checkpoint=checkpoint,
            progress=True,
        )
        scores = _scores(result, f)
        truth = f.segment_assignment
        truth = truth if truth is not None and truth.shape == result.segment_tasks.shape else None
        typer.echo(
            f"{result.n_tests} {result.test} tests ({result.mode}, conditioning "
            f"{result.conditioning}, correction {result.correction}) on '{f.key}' "
            f"{f.X.shape} in {result.seconds:.3f} s"
            + (
                f" (random_state {result.random_state})"
                if "random_state" in result.test_params
                else ""
            )
        )
        typer.echo(
            ("recovered | truth\n" if truth is not None else "")
            + format_matrix(result.segment_tasks, row_label="segment", other=truth)
        )
        for level, s in scores.items():
            typer.echo(_format_scores(level, s))
        if out is not None:
            result.to_json(out, scores=scores) if scores else result.to_json(out)
            typer.echo(f"wrote {out}")
        if plot is not None:
            result.plot(plot, truth=truth)
            typer.echo(f"wrote {plot}")


@app.command("fit-latents")
def fit_latents(
    data: Path = typer.Argument(
        ...,
        help="An .npz file with 'obs' (n, D) and 'tasks' (n, M), NaN marking a missing label; "
        "optional: 'task_types', and the truth 'latents', 'groups' (M, d) and 'irrelevant'.",
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the model, report.json, mask.png."),
    latent_dim: int | None = typer.Option(
        None, help="Width of z (at least the number of tasks); default: the estimator's."
    ),
    sparsity: str = typer.Option(
        "auto", help="Mask penalty: a number >= 0 (0: none) or auto (supports chosen in the fit)."
    ),
    selection: str | None = typer.Option(
        None,
        help="How auto chooses the supports: moments (the heads' gradient-moment shares) or "
        "path (a penalty path scored by held-out task losses); default: the estimator's.",
    ),
    epochs: int | None = typer.Option(
        None, help="Most epochs per training stage; default: the estimator's."
    ),
    batch_size: int | None = typer.Option(
        None, help="Samples per mini-batch; default: the estimator's."
    ),
    gate: str | None = typer.Option(None, help="l1 or hard-concrete; default: the estimator's."),
    beta: float | None = typer.Option(
        None, help="Weight of the KL term; default: the estimator's."
    ),
    device: str = typer.Option("auto", help="auto (CUDA if available), cpu or cuda."),
    random_state: int = typer.Option(0, help="Seed of the split, the weights and the batches."),
    checkpoint: Path | None = typer.Option(
        None, help="File of training state; rerun the same command to resume an interrupted fit."
    ),
    progress: bool | None = typer.Option(
        None,
        "--progress/--no-progress",
        help="Progress bar on stderr; default: when stderr is a terminal.",
    ),
):
    """Train a SparseTaskVAE: each task's specialist latent dims from a generalist VAE.

    Writes the model (reload it with SparseTaskVAE.load), report.json (mask, selected dims, sparsity path, validation losses; block R^2, support recovery and MCC when the file holds 'latents' and 'groups') and mask.png.
    """  # noqa: E501 - typer shows a docstring's lines as they are
    import time

    from .latent import SparseTaskVAE
    from .latent.report import (
        format_summary,
        latent_report,
        load_latent_file,
        plot_task_mask,
        write_report,
    )

    with _user_errors():
        f = load_latent_file(data)
        optional = dict(
            latent_dim=latent_dim,
            selection=selection,
            epochs=epochs,
            batch_size=batch_size,
            gate=gate,
            beta=beta,
        )
        model = SparseTaskVAE(
            sparsity=_parse_sparsity(sparsity),
            task_types=f.task_types,
            device=device,
            random_state=random_state,
            progress=progress,
            checkpoint=checkpoint,
            **{k: v for k, v in optional.items() if v is not None},
        )
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file; give a folder for the model")
        start = time.perf_counter()
        model.fit(f.obs, f.tasks)
        seconds = time.perf_counter() - start
        model.save(out)
        report = latent_report(model, f, seconds, source=data.name)
        write_report(report, out / "report.json")
        plot_task_mask(model.task_mask_, model.relevant_dims_, out / "mask.png")
    typer.echo(format_summary(report))
    typer.echo(f"wrote {out}: the model, report.json and mask.png")


@app.command()
def fit(
    data: Path = typer.Argument(
        ...,
        help="An .npz file with 'obs' (n, T, D) and 'tasks' (n, M), or, when the tasks are "
        "not observed, 'outcomes' (n, outcome_dim) with --n-tasks; optional: the truth "
        "'step_assignment' (T, M).",
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the model, report.json, report.png."),
    latent_dim: int = typer.Option(8, help="Width of each step's generalist latent."),
    n_tasks: int | None = typer.Option(
        None,
        help="Learn this many tasks from the file's 'outcomes' (for a file without 'tasks'; "
        "learned tasks are scored after matching them to the true ones).",
    ),
    step_encoder: str = typer.Option(
        "vae", help="vae (learn the latents) or identity (the file's arrays are the latents)."
    ),
    temporal_prior: bool = typer.Option(
        False, "--temporal-prior/--no-temporal-prior", help="Linear-Gaussian prior across steps."
    ),
    epochs: int | None = typer.Option(None, help="Most epochs of the step VAE."),
    segment_length: int | None = typer.Option(
        None, help="Steps L per segment; default: the file's segment_length, else 2."
    ),
    test: str = typer.Option(
        "fisherz", help=f"CI test: {', '.join(available_ci_tests(data_driven_only=True))}."
    ),
    alpha: float = typer.Option(0.05, help="Significance level in (0, 1)."),
    mode: str = typer.Option("segment", help="segment, unary, pairwise (the paper's) or step."),
    specialists: bool = typer.Option(
        True, "--specialists/--no-specialists", help="Fit a SparseTaskVAE per task."
    ),
    sparsity: str = typer.Option("auto", help="The specialists' mask penalty: a number or auto."),
    specialist_epochs: int | None = typer.Option(
        None, help="Most epochs per training stage of each specialist."
    ),
    key: str | None = typer.Option(None, help="Array to read: obs or states; default obs."),
    device: str = typer.Option("auto", help="auto (CUDA if available), cpu or cuda."),
    random_state: int = typer.Option(0, help="Seed of every random choice."),
    checkpoint: Path | None = typer.Option(
        None, help="Folder of training state; rerun the same command to resume."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bars; default: when stderr is a terminal."
    ),
):
    """Learn generalist latents of every step, the task structure on them, and a specialist per task (Specializer).

    Writes the model (reload it with Specializer.load), report.json (structure, each task's steps and kept dims, timings; scores when the file holds 'step_assignment') and report.png.
    """  # noqa: E501 - typer shows a docstring's lines as they are
    import json

    from .datasets import load_sequences
    from .pipeline import Specializer
    from .structure.result import format_matrix

    with _user_errors():
        f = load_sequences(data, key=key, with_tasks=False)
        learn_tasks = f.G is None or n_tasks is not None
        if learn_tasks and (f.outcomes is None or n_tasks is None):
            raise ValueError(
                f"{data} has no 'tasks': give a file with 'tasks', or one with 'outcomes' "
                "(an observation of the tasks' outcomes) and --n-tasks"
                if f.G is None
                else f"--n-tasks learns tasks from 'outcomes', which {data} does not hold"
            )
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file; give a folder for the model")
        model = Specializer(
            latent_dim,
            step_encoder=step_encoder,
            temporal_prior=temporal_prior,
            vae_params=None if epochs is None else {"epochs": epochs},
            structure_params={
                "segment_length": segment_length or f.segment_length or 2,
                "test": test,
                "alpha": alpha,
                "mode": mode,
            },
            specialist_params={
                "sparsity": _parse_sparsity(sparsity),
                **({} if specialist_epochs is None else {"epochs": specialist_epochs}),
            },
            specialists=specialists,
            n_tasks=n_tasks,
            device=device,
            random_state=random_state,
            progress=progress,
            checkpoint=checkpoint,
        )
        if learn_tasks:
            model.fit(f.X, outcomes=f.outcomes)
        else:
            model.fit(f.X, f.G)
        truth = f.step_assignment
        truth = truth if truth is not None and truth.shape == model.step_tasks_.shape else None
        model.save(out)
        report = model.report(truth=truth)
        report["source"] = data.name
        (out / "report.json").write_text(json.dumps(report, indent=1))
        model.plot(out / "report.png", truth=truth)
        truth = model.aligned_truth(truth)
    typer.echo(
        ("recovered | truth\n" if truth is not None else "")
        + format_matrix(model.step_tasks_, row_label="step", other=truth)
    )
    if truth is not None:
        typer.echo(_format_scores("step", report["scores"]))
    for entry in report["tasks"]:
        typer.echo(
            f"task {entry['task']}: steps {entry['steps']}, specialist dims "
            f"{entry['relevant_dims']} of {entry.get('input_dim', 0)}"
        )
    typer.echo(f"wrote {out}: the model, report.json and report.png")


@app.command()
def transform(
    model_dir: Path = typer.Argument(..., help="A model folder written by fit or fit-latents."),
    data: Path = typer.Argument(
        ..., help="An .npz file with 'obs': (n, T, D) for fit's models, (n, D) for fit-latents'."
    ),
    out: Path = typer.Option(..., "--out", help="The .npy file to write."),
    task: int | None = typer.Option(
        None,
        metavar="K",
        help="Write task K's specialist latent (n, its number of dims); default: the "
        "generalist latent (fit: (n, T, active dims); fit-latents: (n, latent_dim)).",
    ),
    device: str = typer.Option("auto", help="auto (CUDA if available), cpu or cuda."),
):
    """Encode observations with a trained model: a task's specialist latent or the generalist."""
    import numpy as np

    from .pipeline import MODEL_FILE

    with _user_errors():
        if (model_dir / MODEL_FILE).is_file():
            z, what = _encode_sequences(model_dir, data, task, device)
        else:
            z, what = _encode_latents(model_dir, data, task, device)
        with open(out, "wb") as handle:
            np.save(handle, z)
    typer.echo(f"wrote {out}: {what}, shape {z.shape}")


def _encode_sequences(model_dir: Path, data: Path, task: int | None, device: str):
    """A Specializer's output for the sequences in ``data`` and a description of it."""
    from .datasets import load_sequences
    from .pipeline import Specializer

    model = Specializer.load(model_dir, device=device)
    f = load_sequences(data, key="obs", with_tasks=False)
    if task is None:
        return model.encode(f.X), "the generalist latents of every step"
    if not 0 <= task < model.n_tasks_:
        raise ValueError(
            f"--task {task} is out of range: the model has {model.n_tasks_} tasks "
            f"(0 to {model.n_tasks_ - 1})"
        )
    dims = model.relevant_dims_[task].tolist()
    return model.transform(f.X, task), f"task {task}'s specialist dims {dims}"


def _encode_latents(model_dir: Path, data: Path, task: int | None, device: str):
    """A SparseTaskVAE's output for the observations in ``data`` and a description of it."""
    from .latent import SparseTaskVAE
    from .latent.report import load_latent_file

    model = SparseTaskVAE.load(model_dir, device=device)
    f = load_latent_file(data, with_tasks=False)
    z = _encode(model, f, task, model_dir)
    what = "z" if task is None else f"task {task}'s dims {model.relevant_dims_[task].tolist()} of z"
    return z, what


@app.command()
def reproduce(
    experiment: str = typer.Argument(
        ...,
        help="structure-vs-steps, structure-vs-tasks, latent-ablation, observed-vs-latent, "
        "unknown-tasks, agent-video, attribute-editing, or all.",
    ),
    seeds: int = typer.Option(10, help="Seeds 0 .. N-1 per setting."),
    quick: bool = typer.Option(False, "--quick", help="Reduced sizes: minutes, not an hour."),
    out: Path = typer.Option(Path("results"), "--out", help="Parent folder of the results."),
    jobs: int = typer.Option(
        1, "--jobs", help="Runs computed at once, one process each (2 on a 2-core machine)."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar; default: when stderr is a terminal."
    ),
):
    """Reproduce one of the paper's studies (or all): runs.csv, summary.md, PNG plots, manifest.json.

    Every (setting, seed) run is appended to runs.csv as it finishes; rerunning the same command resumes and never recomputes a finished run.
    """  # noqa: E501 - typer shows a docstring's lines as they are
    import time

    from .experiments import available_experiments, run_experiment

    with _user_errors():
        names = available_experiments() if experiment == "all" else [experiment]
        for name in names:
            start = time.perf_counter()
            with one_thread():
                run = run_experiment(
                    name, seeds=seeds, quick=quick, out=out, progress=progress, n_jobs=jobs
                )
            typer.echo(run.summary)
            typer.echo(
                f"{name}: {run.computed} runs computed, {run.skipped} reused, "
                f"{time.perf_counter() - start:.1f} s; wrote {run.folder}"
            )


@app.command()
def demo(
    out: Path = typer.Option(Path("specialize-demo"), "--out", help="Folder for the PNG and JSON."),
    n_samples: int = typer.Option(10_000, help="Number of simulated sequences."),
    random_state: int = typer.Option(0, help="Seed of the simulation."),
    latents: bool = typer.Option(
        True,
        "--latents/--no-latents",
        help="Also run Layer 2: fit a SparseTaskVAE to simulated task latents (about a minute).",
    ),
    latent_samples: int = typer.Option(10_000, help="Number of samples of the Layer-2 part."),
):
    """Simulate data, recover its task structure (Layer 1) and task latents (Layer 2), compare with the truth, plot both."""  # noqa: E501
    import time

    from .datasets import make_task_sequences
    from .metrics import structure_scores
    from .structure import discover_structure
    from .structure.result import format_matrix

    with _user_errors():
        start = time.perf_counter()
        ds = make_task_sequences(
            n_samples, 20, 4, state_dim=2, segment_length=2, random_state=random_state
        )
        typer.echo(
            f"Simulated {n_samples} sequences: T = 20 steps of 2-dim states, 4 tasks, "
            f"segments of 2 steps (seed {random_state})."
        )
        result = discover_structure(ds.obs, ds.tasks, random_state=random_state)
        typer.echo(
            f"\n{result.n_tests} Fisher-z tests ({result.mode} mode) in {result.seconds:.3f} s"
        )
        typer.echo("recovered | truth")
        typer.echo(
            format_matrix(result.segment_tasks, row_label="segment", other=ds.segment_assignment)
        )
        typer.echo(
            _format_scores("segment", structure_scores(result.segment_tasks, ds.segment_assignment))
        )
        typer.echo("\nThe same data through other modes (each its own default correction):")
        for mode, correction in (("unary", "holm"), ("pairwise", None)):
            other = discover_structure(ds.obs, ds.tasks, mode=mode, correction=correction)
            typer.echo(_format_scores(f"{mode:>8}", other.scores(ds.segment_assignment)))
        out.mkdir(parents=True, exist_ok=True)
        result.plot(out / "structure.png", truth=ds.segment_assignment)
        result.to_json(
            out / "structure.json",
            scores={"segment": structure_scores(result.segment_tasks, ds.segment_assignment)},
        )
        typer.echo(
            f"\nwrote {out / 'structure.png'} and {out / 'structure.json'} "
            f"({time.perf_counter() - start:.1f} s)"
        )
        if latents:
            _demo_latents(out, latent_samples, random_state)
            typer.echo(f"\n{time.perf_counter() - start:.1f} s in all")


def _demo_latents(out: Path, n_samples: int, seed: int) -> None:
    """The demo's Layer 2: simulate task latents, fit a SparseTaskVAE, score, plot."""
    import time

    from .datasets import make_task_latents
    from .latent import SparseTaskVAE
    from .latent.report import format_summary, latent_report, plot_task_mask, write_report

    data = make_task_latents(n_samples=n_samples, random_state=seed)
    groups = ", ".join(f"task {k} {list(map(int, g))}" for k, g in enumerate(data.groups))
    typer.echo(
        f"\nLayer 2: {n_samples} samples of {data.obs.shape[1]}-dim observations mixing "
        f"{data.latents.shape[1]} latents (seed {seed}); true groups: {groups}, "
        f"irrelevant {list(map(int, data.irrelevant))}."
    )
    model = SparseTaskVAE(
        latent_dim=data.latents.shape[1],
        epochs=DEMO_LATENT_EPOCHS,
        random_state=seed,
        progress=False,
    )
    source = f"make_task_latents(n_samples={n_samples}, random_state={seed})"
    with one_thread():
        start = time.perf_counter()
        model.fit(data.obs, data.tasks)
        report = latent_report(model, data, time.perf_counter() - start, source=source)
    typer.echo(format_summary(report))
    plot_task_mask(model.task_mask_, model.relevant_dims_, out / "latent-mask.png")
    write_report(report, out / "latents.json")
    typer.echo(f"wrote {out / 'latent-mask.png'} and {out / 'latents.json'}")


def _parse_sparsity(text: str):
    """The --sparsity option as the estimator takes it: "auto" or a float."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--sparsity must be 'auto' or a number >= 0; got {text!r}") from None


def _encode(model, f, task: int | None, model_dir: Path):
    """The posterior means of ``f.obs`` (n, latent_dim), or task ``task``'s dims of them."""
    if f.obs.shape[1] != model.n_features_in_:
        raise ValueError(
            f"'obs' in {f.path} has {f.obs.shape[1]} columns but the model in {model_dir} "
            f"was fitted on {model.n_features_in_}"
        )
    if task is None:
        return model.transform(f.obs)
    if not 0 <= task < model.n_tasks_:
        raise ValueError(
            f"--task {task} is out of range: the model has {model.n_tasks_} tasks "
            f"(0 to {model.n_tasks_ - 1})"
        )
    return model.transform_task(f.obs, task)


def _parse_test_params(items: list[str]) -> dict:
    """{"KEY": value} from ``KEY=VALUE`` strings (VALUE as JSON if it parses)."""
    import json

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--test-param must look like KEY=VALUE; got {item!r}")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return params


def _scores(result, f) -> dict:
    """Segment- and step-level scores against whatever truth the file holds (and fits)."""
    scores = {}
    if (
        f.segment_assignment is not None
        and f.segment_assignment.shape == result.segment_tasks.shape
    ):
        scores["segment"] = result.scores(f.segment_assignment)
    if f.step_assignment is not None and f.step_assignment.shape == result.step_tasks.shape:
        scores["step"] = result.scores(f.step_assignment)
    return scores


def _format_scores(level: str, s: dict) -> str:
    return (
        f"{level}: precision {s['precision']:.3f}  recall {s['recall']:.3f}  "
        f"F1 {s['f1']:.3f}  exact {'yes' if s['exact'] else 'no'}"
    )


def main() -> None:
    """Console entry point."""
    app(prog_name="specialize")


if __name__ == "__main__":
    sys.exit(main())
