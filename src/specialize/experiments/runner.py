"""Seeded, resumable experiments: every (setting, seed) run is kept in a CSV file as it finishes.

An :class:`Experiment` lists its settings (one dict of scalars each), says what one run of a
setting with a seed returns (rows of metrics, one per method, or per method and task) and how
to plot the rows. :func:`run_experiment` runs every setting with every seed that its output
folder does not hold yet, appends each run's rows to ``runs.csv`` as soon as the run
finishes, and then writes ``summary.md`` (mean and standard deviation over seeds), the plots
and ``manifest.json`` (versions, machine, seeds, time spent).

New experiments are added with :func:`register`.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import math
import numbers
import os
import platform
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .. import __version__
from .._validation import InvalidParameterError, check_int

RUNS_FILE = "runs.csv"
SUMMARY_FILE = "summary.md"
MANIFEST_FILE = "manifest.json"
SEED_COLUMN = "seed"
#: Shown for the standard deviation of a single value, which is undefined.
NO_SPREAD = "–"

_INT_TEXT = re.compile(r"[+-]?\d+")
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf)")


@dataclass(frozen=True)
class Experiment:
    """A study defined by its settings, what one seeded run of a setting returns, and its plots.

    Attributes
    ----------
    name : str
        The name :func:`run_experiment` takes, and the name of the output folder.
    description : str
        One sentence, written at the top of ``summary.md``.
    settings : callable (quick: bool) -> list of dict
        The settings to run, e.g. ``{"n_steps": 8, "n_tasks": 2}``; every setting has the same
        keys, and the values are JSON scalars (bool, int, finite float, str).
    run : callable (setting: dict, seed: int, quick: bool) -> list of dict
        One run: rows with a ``"method"`` key, the ``group_by`` keys and metric values
        (scalars, or None for a value a row does not have). It must seed every random choice
        from ``seed``.
    metrics : tuple of str
        The metric columns to summarise, in order.
    plot : callable (rows: list of dict, out_dir: Path) -> list of Path
        Writes PNG files from every row of the folder (setting keys, ``"seed"`` and row keys)
        and returns their paths.
    group_by : tuple of str, default=("method",)
        Row keys that, besides the setting keys, identify a line of the summary table.
    writes_files : bool, default=False
        The run also takes ``files=`` a folder of its own (``out/name/runs/<setting>-seed<seed>``,
        created for it) for what rows cannot hold, such as images of what it fitted; ``plot``
        may read them back.
    """

    name: str
    description: str
    settings: Callable[[bool], list[dict]]
    run: Callable[[dict, int, bool], list[dict]]
    metrics: tuple[str, ...]
    plot: Callable[[list[dict], Path], list[Path]]
    group_by: tuple[str, ...] = ("method",)
    writes_files: bool = False


def run_files_folder(out_dir, setting: dict, seed: int) -> Path:
    """The folder of the files of one (setting, seed) run of an experiment in ``out_dir``."""
    name = "_".join(f"{k}={v}" for k, v in setting.items()) + f"-seed{seed}"
    return Path(out_dir) / "runs" / re.sub(r"[^A-Za-z0-9_.=+-]", "-", name)


@dataclass
class ExperimentRun:
    """What :func:`run_experiment` did and what its folder now holds.

    Attributes
    ----------
    folder : Path
        ``out / name``.
    rows : list of dict
        Every row of ``runs.csv``, with the types restored (float, int, bool, str; None for an
        empty cell).
    summary : str
        The Markdown text of ``summary.md``.
    plots : list of Path
        The PNG files written.
    computed : int
        (setting, seed) runs computed by this call.
    skipped : int
        (setting, seed) runs asked for that the folder already held.
    """

    folder: Path
    rows: list[dict]
    summary: str
    plots: list[Path]
    computed: int
    skipped: int


EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment, *, replace: bool = False) -> Experiment:
    """Add an experiment to :data:`EXPERIMENTS` under its name; returns it.

    Raises InvalidParameterError if another experiment already has that name, unless
    ``replace`` is True.
    """
    if not isinstance(experiment, Experiment):
        raise InvalidParameterError(f"experiment must be an Experiment; got {experiment!r}")
    if not replace and EXPERIMENTS.get(experiment.name, experiment) is not experiment:
        raise InvalidParameterError(
            f"an experiment named {experiment.name!r} is already registered; pass replace=True "
            "to replace it"
        )
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def available_experiments() -> list[str]:
    """Names of the registered experiments, sorted."""
    return sorted(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    """The registered experiment called ``name``; InvalidParameterError lists the others."""
    if not isinstance(name, str) or name not in EXPERIMENTS:
        valid = ", ".join(available_experiments()) or "none"
        raise InvalidParameterError(f"unknown experiment {name!r}; available: {valid}")
    return EXPERIMENTS[name]


def run_experiment(
    name: str,
    *,
    seeds: int | Sequence[int] = 10,
    quick: bool = False,
    out="results",
    progress: bool | None = None,
    n_jobs: int = 1,
) -> ExperimentRun:
    """Run every setting of an experiment with every seed, resuming what ``out`` already holds.

    Parameters
    ----------
    name : str
        A registered experiment (:func:`available_experiments`).
    seeds : int or sequence of int, default=10
        An int n runs seeds 0, ..., n - 1; a sequence gives the seeds themselves (distinct,
        >= 0).
    quick : bool, default=False
        The experiment's small version. A folder holds either quick or full runs, never both.
    out : str or Path, default="results"
        Parent of the output folder ``out / name``.
    progress : bool or None
        Draw a progress bar over the (setting, seed) runs on stderr; None draws it only when
        stderr is a terminal.
    n_jobs : int, default=1
        Runs computed at once, each in its own process with one PyTorch and one BLAS thread
        (the experiment must be registered when :mod:`specialize.experiments` is imported).
        The rows do not depend on it; only the order of the lines of ``runs.csv`` does.

    Returns
    -------
    ExperimentRun

    Raises
    ------
    InvalidParameterError
        An unknown experiment (the message lists the available ones); seeds not >= 1 or a
        negative or repeated seed; a folder whose ``manifest.json`` records the other value of
        ``quick``, another experiment, or whose ``runs.csv`` lacks the settings' columns.

    Notes
    -----
    Output, in ``out / name``:

    - ``runs.csv``: one row per row of every (setting, seed) run, with the setting keys, then
      ``seed``, then the row keys as columns. A run's rows are appended and flushed as soon as
      it finishes, so an interrupted call loses only the run it was computing. Floats are
      written with ``repr`` (they read back exactly), booleans as True/False.
    - ``summary.md``: one line per setting and group (``Experiment.group_by``), each metric as
      "mean ± std" over the folder's rows (std with ddof=1, "–" for a single value) and the
      number of seeds. It covers every run in the folder, including seeds from earlier calls.
    - the experiment's PNG plots, from the same rows.
    - ``manifest.json``: experiment, quick flag, seeds and settings in the folder, package and
      library versions, machine, and the seconds spent on computed runs (summed over calls).

    A (setting, seed) pair already in ``runs.csv`` (compared by value) is not run again. Each
    run is given its seed and is expected to seed every random choice from it; NumPy's and
    Python's global random states, PyTorch's random state and its thread count are restored
    after each run, so a run does not change them for the caller or for the next run.
    """
    experiment = get_experiment(name)
    seed_list = _check_seeds(seeds)
    if not isinstance(quick, (bool, np.bool_)):
        raise InvalidParameterError(f"quick must be True or False; got {quick!r}")
    quick = bool(quick)
    settings = _check_settings(experiment, experiment.settings(quick))
    setting_keys = list(settings[0])
    folder = Path(out) / experiment.name
    folder.mkdir(parents=True, exist_ok=True)
    manifest = _open_manifest(folder, experiment, quick, settings)
    store = RunStore(folder / RUNS_FILE, setting_keys)

    n_jobs = check_int("n_jobs", n_jobs, minimum=1)
    todo = [(s, seed) for s in settings for seed in seed_list if not store.has(s, seed)]
    skipped = len(settings) * len(seed_list) - len(todo)
    computed = 0
    with _progress_bar(progress, len(todo)) as bar:
        runs = _computed_runs(experiment, todo, quick, n_jobs, bar, folder)
        for setting, seed, rows, seconds in runs:
            store.append(setting, seed, _check_rows(experiment, rows, setting_keys))
            computed += 1
            manifest["seconds"] = manifest.get("seconds", 0.0) + seconds
            _write_manifest(folder, manifest, store)
            bar.advance()

    ordered = _in_setting_order(store.rows, settings, setting_keys)
    summary = format_summary(experiment, ordered, setting_keys, quick)
    (folder / SUMMARY_FILE).write_text(summary, encoding="utf-8")
    plots = [Path(p) for p in experiment.plot(ordered, folder)]
    _write_manifest(folder, manifest, store)
    return ExperimentRun(folder, list(store.rows), summary, plots, computed, skipped)


def _computed_runs(experiment: Experiment, todo: list, quick: bool, n_jobs: int, bar, folder):
    """Yield (setting, seed, rows, seconds) of every run in ``todo`` as each finishes."""

    def files(setting, seed):
        return run_files_folder(folder, setting, seed) if experiment.writes_files else None

    if n_jobs == 1 or len(todo) <= 1:
        for setting, seed in todo:
            bar.describe(f"{experiment.name} {_describe(setting)} seed {seed}")
            yield (
                setting,
                seed,
                *_timed_run(experiment, setting, seed, quick, files(setting, seed)),
            )
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # no forked PyTorch or BLAS thread pools
    with ProcessPoolExecutor(min(n_jobs, len(todo)), mp_context=context) as pool:
        futures = {
            pool.submit(
                _run_in_worker, experiment.name, setting, seed, quick, files(setting, seed)
            ): (setting, seed)
            for setting, seed in todo
        }
        bar.describe(f"{experiment.name}: {len(todo)} runs on {n_jobs} processes")
        try:
            for future in as_completed(futures):
                setting, seed = futures[future]
                yield (setting, seed, *future.result())
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _timed_run(experiment: Experiment, setting: dict, seed: int, quick: bool, files=None):
    started = time.perf_counter()
    with _isolated_global_state():
        if files is None:
            rows = experiment.run(dict(setting), seed, quick)
        else:
            files.mkdir(parents=True, exist_ok=True)
            rows = experiment.run(dict(setting), seed, quick, files=files)
    return rows, time.perf_counter() - started


def _run_in_worker(name: str, setting: dict, seed: int, quick: bool, files=None):
    """One run in a worker process, with one PyTorch and one BLAS thread."""
    import torch
    from threadpoolctl import threadpool_limits

    from . import get_experiment as registered  # importing the package registers the studies

    torch.set_num_threads(1)
    with threadpool_limits(1):
        return _timed_run(registered(name), setting, seed, quick, files)


# ----------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------


def _check_seeds(seeds) -> list[int]:
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, (bool, np.bool_)):
        return list(range(check_int("seeds", seeds, minimum=1)))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, np.ndarray)):
        raise InvalidParameterError(
            f"seeds must be a number of seeds (>= 1) or a list of seeds; got {seeds!r}"
        )
    if len(seeds) == 0:
        raise InvalidParameterError("seeds is an empty list; give at least one seed")
    out = [check_int(f"seeds[{i}]", seed, minimum=0) for i, seed in enumerate(seeds)]
    repeated = sorted({s for s in out if out.count(s) > 1})
    if repeated:
        raise InvalidParameterError(f"seeds lists seed {repeated[0]} more than once: {out}")
    return out


def _check_settings(experiment: Experiment, settings) -> list[dict]:
    name = experiment.name
    if not isinstance(settings, list) or not settings:
        raise InvalidParameterError(
            f"experiment {name!r}: settings() must return a non-empty list of dicts; "
            f"got {settings!r}"
        )
    keys = None
    seen = set()
    for i, setting in enumerate(settings):
        if not isinstance(setting, dict):
            raise InvalidParameterError(f"experiment {name!r}: setting {i} is not a dict")
        if keys is None:
            keys = list(setting)
        if list(setting) != keys:
            raise InvalidParameterError(
                f"experiment {name!r}: setting {i} has keys {list(setting)}, setting 0 has "
                f"{keys}; every setting needs the same keys in the same order"
            )
        if SEED_COLUMN in setting or "method" in setting:
            raise InvalidParameterError(
                f"experiment {name!r}: 'seed' and 'method' are reserved column names; setting "
                f"{i} has keys {keys}"
            )
        for key, value in setting.items():
            if value is None or isinstance(value, float) and not math.isfinite(value):
                raise InvalidParameterError(
                    f"experiment {name!r}: setting {i}[{key!r}] is {value!r}; a setting value "
                    "must be a bool, an int, a finite float or a non-empty str"
                )
            _format_value(value, f"setting {i}[{key!r}] of experiment {name!r}")
        key = _setting_key(setting, keys)
        if key in seen:
            raise InvalidParameterError(f"experiment {name!r}: setting {i} is listed twice")
        seen.add(key)
    return settings


def _check_rows(experiment: Experiment, rows, setting_keys: list[str]) -> list[dict]:
    """The rows of one run, with NumPy scalars turned into Python ones."""
    name = experiment.name
    if not isinstance(rows, list) or not rows:
        raise InvalidParameterError(
            f"experiment {name!r}: run() must return a non-empty list of dicts; got {rows!r}"
        )
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidParameterError(f"experiment {name!r}: row {i} is not a dict: {row!r}")
        missing = [k for k in ("method", *experiment.group_by) if k not in row]
        if missing:
            raise InvalidParameterError(
                f"experiment {name!r}: row {i} lacks the key(s) {missing}; every row needs "
                f"'method' and the group_by keys {list(experiment.group_by)}"
            )
        clash = [k for k in row if k in setting_keys or k == SEED_COLUMN]
        if clash:
            raise InvalidParameterError(
                f"experiment {name!r}: row {i} has the key(s) {clash}, which are setting keys "
                "or 'seed'"
            )
        clean = {}
        for key, value in row.items():
            where = f"row {i}[{key!r}] of experiment {name!r}"
            clean[key] = _parse_value(_format_value(value, where))
            if key in experiment.metrics and isinstance(clean[key], str):
                raise InvalidParameterError(
                    f"{where} is the text {value!r}; a metric must be a number, a bool or None"
                )
        out.append(clean)
    return out


# ----------------------------------------------------------------------------------------
# runs.csv
# ----------------------------------------------------------------------------------------


def _format_value(value, where: str = "value") -> str:
    """One CSV cell: repr for floats (exact round trip), True/False for booleans."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if isinstance(value, str) and value:
        return value
    raise InvalidParameterError(
        f"{where} is {value!r}; values must be None, bools, ints, floats or non-empty str"
    )


def _parse_value(text: str):
    """Inverse of :func:`_format_value`: None, bool, int, float or str.

    Text that reads as a bool or a number comes back as one, even where it was written as a
    str.
    """
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    if _INT_TEXT.fullmatch(text):
        return int(text)
    if _FLOAT_TEXT.fullmatch(text):
        return float(text)
    return text


def _setting_key(setting: dict, keys: list[str]) -> tuple:
    """The values of a setting as they read back from the CSV file, for comparison."""
    return tuple(_parse_value(_format_value(setting[k])) for k in keys)


def read_runs(path) -> list[dict]:
    """Rows of a ``runs.csv`` file with their types restored (float, int, bool, str, None)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _parse_value(v) for k, v in row.items()} for row in csv.DictReader(f)]


class RunStore:
    """The rows of ``runs.csv``, which (setting, seed) runs they cover, and appending to it.

    Parameters
    ----------
    path : Path
        The CSV file; read if it exists.
    setting_keys : list of str
        The experiment's setting keys, which the file must have as columns.
    """

    def __init__(self, path: Path, setting_keys: list[str]):
        self.path = Path(path)
        self.setting_keys = list(setting_keys)
        self.columns: list[str] = []
        self.rows: list[dict] = []
        self._done: set = set()
        if self.path.exists() and self.path.stat().st_size:
            self._read()

    def _read(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        cut_short = not text.endswith("\n")
        if cut_short:
            text = text[: text.rfind("\n") + 1]
            if not text:  # not even the header was written in full
                self.path.write_text("", encoding="utf-8")
                return
        reader = csv.DictReader(io.StringIO(text, newline=""))
        self.columns = list(reader.fieldnames or [])
        absent = [k for k in (*self.setting_keys, SEED_COLUMN) if k not in self.columns]
        if absent:
            raise InvalidParameterError(
                f"{self.path} has the columns {self.columns} but lacks {absent}, which this "
                "experiment's settings need; it holds runs of another definition: choose "
                "another output folder"
            )
        for raw in reader:
            if None in raw:
                raise InvalidParameterError(
                    f"line {reader.line_num} of {self.path} has {len(self.columns)} + "
                    f"{len(raw[None])} cells for {len(self.columns)} columns; repair or remove "
                    "the file"
                )
            row = {k: _parse_value(v if v is not None else "") for k, v in raw.items()}
            self.rows.append(row)
            self._done.add(self._key(row, row[SEED_COLUMN]))
        if cut_short:
            # A run's rows are written at once, so a write cut short leaves a partial last
            # line and possibly some complete rows of the same run before it: drop the last
            # run whole (at worst one finished run is redone) and rewrite the file.
            if self.rows:
                last = self._key(self.rows[-1], self.rows[-1][SEED_COLUMN])
                self.rows = [r for r in self.rows if self._key(r, r[SEED_COLUMN]) != last]
                self._done.discard(last)
            self._write_all([])

    def _key(self, setting: dict, seed: int) -> tuple:
        return (*_setting_key(setting, self.setting_keys), seed)

    @property
    def n_runs(self) -> int:
        """Number of (setting, seed) runs in the file."""
        return len(self._done)

    def has(self, setting: dict, seed: int) -> bool:
        """Whether the file holds the run of ``setting`` with ``seed``."""
        return self._key(setting, seed) in self._done

    def append(self, setting: dict, seed: int, rows: list[dict]) -> None:
        """Add one run's rows to the file (flushed to disk before returning)."""
        full = [{**setting, SEED_COLUMN: seed, **row} for row in rows]
        new_columns = []
        for row in full:
            new_columns += [k for k in row if k not in self.columns and k not in new_columns]
        if not self.columns:
            self.columns = new_columns
            self._write_all(full)
        elif new_columns:
            # Rows with new columns (an experiment that gained a metric): earlier rows get
            # empty cells in them, and the file is rewritten with the wider header.
            self.columns += new_columns
            self.rows = [{k: row.get(k) for k in self.columns} for row in self.rows]
            self._write_all(full)
        else:
            with open(self.path, "a", newline="", encoding="utf-8") as f:
                f.write(self._lines(full, header=False))
                f.flush()
                os.fsync(f.fileno())
        self.rows += [
            {k: _parse_value(_format_value(row.get(k))) for k in self.columns} for row in full
        ]
        self._done.add(self._key(setting, seed))

    def _lines(self, rows: list[dict], *, header: bool) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if header:
            writer.writerow(self.columns)
        writer.writerows([[_format_value(row.get(k)) for k in self.columns] for row in rows])
        return buffer.getvalue()

    def _write_all(self, new_rows: list[dict]) -> None:
        temporary = self.path.with_suffix(".csv.tmp")
        with open(temporary, "w", newline="", encoding="utf-8") as f:
            f.write(self._lines([*self.rows, *new_rows], header=True))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)


# ----------------------------------------------------------------------------------------
# summary
# ----------------------------------------------------------------------------------------


def aggregate(rows: list[dict], keys: Sequence[str], metrics: Sequence[str]) -> list[dict]:
    """Mean, standard deviation and count of each metric over the rows of each group.

    Parameters
    ----------
    rows : list of dict
    keys : sequence of str
        The row keys whose values define a group (e.g. setting keys and "method").
    metrics : sequence of str
        Numeric (or bool, counted as 0/1) columns; None values are left out.

    Returns
    -------
    list of dict, one per group in order of first appearance
        The group's key values, ``"seeds"`` (distinct seeds among its rows, or its number of
        rows when rows have no seed), and per metric ``metric: (mean, std, count)`` with std
        of ddof=1 (NaN for fewer than two values; mean NaN for none).
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    out = []
    for values, members in groups.items():
        line = dict(zip(keys, values, strict=True))
        seeds = {row.get(SEED_COLUMN) for row in members}
        line["seeds"] = len(members) if seeds == {None} else len(seeds - {None})
        for metric in metrics:
            sample = np.array(
                [float(row[metric]) for row in members if row.get(metric) is not None]
            )
            mean = float(sample.mean()) if sample.size else math.nan
            std = float(sample.std(ddof=1)) if sample.size > 1 else math.nan
            line[metric] = (mean, std, int(sample.size))
        out.append(line)
    return out


def format_summary(
    experiment: Experiment, rows: list[dict], setting_keys: list[str], quick: bool
) -> str:
    """The Markdown of ``summary.md``: a title, the description and one table."""
    keys = [*setting_keys, *experiment.group_by]
    lines = aggregate(rows, keys, experiment.metrics)
    header = [*keys, *experiment.metrics, "seeds"]
    table = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * len(keys) + ["--:"] * (len(experiment.metrics) + 1)) + "|",
    ]
    for line in lines:
        cells = [_format_value(line[k]) for k in keys]
        cells += [_mean_std(*line[m]) for m in experiment.metrics]
        table.append("| " + " | ".join([*cells, str(line["seeds"])]) + " |")
    mode = "quick" if quick else "full"
    return (
        f"# {experiment.name} ({mode})\n\n{experiment.description}\n\n"
        f"Mean ± standard deviation over seeds (ddof = 1; {NO_SPREAD} for one seed).\n\n"
        + "\n".join(table)
        + "\n"
    )


def _mean_std(mean: float, std: float, count: int) -> str:
    if count == 0:
        return "n/a"
    spread = NO_SPREAD if count < 2 else f"{std:.4g}"
    return f"{mean:.4g} ± {spread}"


def _in_setting_order(rows: list[dict], settings: list[dict], keys: list[str]) -> list[dict]:
    """Rows sorted (stably) by the position of their setting in ``settings``, then by seed."""
    position = {_setting_key(s, keys): i for i, s in enumerate(settings)}

    def order(row):
        index = position.get(tuple(row.get(k) for k in keys), len(settings))
        return index, row.get(SEED_COLUMN) or 0

    return sorted(rows, key=order)


def _describe(setting: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in setting.items())


# ----------------------------------------------------------------------------------------
# manifest
# ----------------------------------------------------------------------------------------


def _versions() -> dict:
    out = {"python": platform.python_version(), "specialize": __version__}
    for package in ("numpy", "scipy", "scikit-learn", "torch"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def _open_manifest(folder: Path, experiment: Experiment, quick: bool, settings) -> dict:
    """The folder's manifest, checked against this call; a new one is written at once."""
    path = folder / MANIFEST_FILE
    if path.exists():
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("experiment") != experiment.name:
            raise InvalidParameterError(
                f"{folder} holds runs of experiment {manifest.get('experiment')!r} "
                f"({path}), not {experiment.name!r}: choose another output folder"
            )
        if manifest.get("quick") != quick:
            stored = manifest.get("quick")
            raise InvalidParameterError(
                f"{folder} holds {'quick' if stored else 'full'} runs (quick={stored} in "
                f"{path}); this call has quick={quick}: quick and full runs cannot share a "
                "folder, choose another output folder"
            )
        return manifest
    if (folder / RUNS_FILE).exists():
        raise InvalidParameterError(
            f"{folder} holds {RUNS_FILE} but no {MANIFEST_FILE}, so whether its runs are quick "
            "or full is unknown: choose another output folder"
        )
    manifest = {
        "experiment": experiment.name,
        "description": experiment.description,
        "quick": quick,
        "settings": settings,
        "seeds": [],
        "runs": 0,
        "seconds": 0.0,
        "versions": _versions(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    }
    _write_manifest(folder, manifest, None)
    return manifest


def _write_manifest(folder: Path, manifest: dict, store: RunStore | None) -> None:
    """Write the manifest with the seeds and the number of runs ``store`` holds."""
    if store is not None:
        manifest["seeds"] = sorted({row[SEED_COLUMN] for row in store.rows})
        manifest["runs"] = store.n_runs
    manifest["versions"] = _versions()
    manifest["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
    text = json.dumps(manifest, indent=1)
    temporary = folder / (MANIFEST_FILE + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, folder / MANIFEST_FILE)


# ----------------------------------------------------------------------------------------
# global state and progress
# ----------------------------------------------------------------------------------------


@contextmanager
def _isolated_global_state():
    """Restore the global random states and PyTorch's thread count after a run.

    PyTorch is looked at only if it is already imported; estimators that seed it
    (``torch.manual_seed``) would otherwise leave its global generator changed.
    """
    numpy_state = np.random.get_state()  # noqa: NPY002 - saved so that a run cannot change it
    python_state = random.getstate()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch_threads = torch.get_num_threads()
        torch_state = torch.get_rng_state()
        cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        np.random.set_state(numpy_state)  # noqa: NPY002
        random.setstate(python_state)
        if torch is not None:
            torch.set_rng_state(torch_state)
            if cuda_states is not None:
                torch.cuda.set_rng_state_all(cuda_states)
            if torch.get_num_threads() != torch_threads:
                torch.set_num_threads(torch_threads)


class _NoBar:
    def describe(self, text: str) -> None:
        pass

    def advance(self) -> None:
        pass


class _Bar:
    def __init__(self, progress, task):
        self.progress, self.task = progress, task

    def describe(self, text: str) -> None:
        self.progress.update(self.task, description=text)

    def advance(self) -> None:
        self.progress.advance(self.task)


@contextmanager
def _progress_bar(progress: bool | None, total: int):
    """Yield an object with ``describe(text)`` and ``advance()``; draws a bar when enabled."""
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if not show or total == 0:
        yield _NoBar()
        return
    from .._progress import counting_progress

    with counting_progress("runs") as bar:
        yield _Bar(bar, bar.add_task("", total=total))
