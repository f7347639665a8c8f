"""Resumable training state of a SparseTaskVAE fit, written after every epoch."""

from __future__ import annotations

import os
from pathlib import Path

from .._validation import DataValidationError
from ..ci._backend import torch_module


class TrainingCheckpoint:
    """One file holding the finished stages and the stage in progress.

    Parameters
    ----------
    path : str or Path
    fingerprint : str
        Identity of the fit (data, parameters and seed); a file written by another fit is an
        error, not silently reused.
    """

    def __init__(self, path, fingerprint: str):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.state = {"fingerprint": fingerprint, "finished": {}, "current": None}
        if self.path.exists():
            torch = torch_module()
            try:
                state = torch.load(self.path, map_location="cpu", weights_only=False)
            except Exception as error:  # noqa: BLE001 - any unreadable file is reported alike
                raise DataValidationError(
                    f"checkpoint {self.path} cannot be read ({error}); delete it to start over"
                ) from error
            if state.get("fingerprint") != fingerprint:
                raise DataValidationError(
                    f"checkpoint {self.path} was written by a fit with other data, parameters "
                    "or seed; delete it or pass another path"
                )
            self.state = state

    def finished(self, stage: str):
        """The saved result of a finished stage, or None."""
        return self.state["finished"].get(stage)

    def current(self, stage: str):
        """The saved progress of ``stage`` if it was interrupted, or None."""
        current = self.state["current"]
        return current if current is not None and current["stage"] == stage else None

    def save_progress(self, stage: str, **progress) -> None:
        self.state["current"] = {"stage": stage, **progress}
        self._write()

    def save_finished(self, stage: str, **result) -> None:
        self.state["finished"][stage] = result
        self.state["current"] = None
        self._write()

    def _write(self) -> None:
        torch = torch_module()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        torch.save(self.state, partial)
        os.replace(partial, self.path)
