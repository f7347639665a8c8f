"""The ``specialize`` command line: simulate, discover, demo.

Every error in the user's input ends the command with a one-line message on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import typer

from .ci.execute import ExecutorError
from .ci.registry import available_ci_tests

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Task structure of sequences from conditional-independence tests (Layer 1).",
)

EXIT_USAGE = 2


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


@app.command()
def demo(
    out: Path = typer.Option(Path("specialize-demo"), "--out", help="Folder for the PNG and JSON."),
    n_samples: int = typer.Option(10_000, help="Number of simulated sequences."),
    random_state: int = typer.Option(0, help="Seed of the simulation."),
):
    """Simulate a data set, recover its task structure, compare with the truth, plot it."""
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
            f"({time.perf_counter() - start:.1f} s in all)"
        )


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
