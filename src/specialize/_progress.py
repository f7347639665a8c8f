"""Rich progress bars on stderr, shared by the long-running entry points."""

from __future__ import annotations


def counting_progress(unit: str):
    """A transient ``rich.progress.Progress`` on stderr: description, bar, done / total
    ``unit``, elapsed and remaining time."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
