"""Constructor parameters of estimators, read and set by name (scikit-learn convention)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np

from ._validation import DataValidationError, InvalidParameterError, check_int


class ConstructorParams:
    """``get_params`` / ``set_params`` over the keyword arguments of ``__init__``.

    A subclass stores every constructor argument, unchanged, under its own name.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        parameters = inspect.signature(cls.__init__).parameters.values()
        return [
            p.name
            for p in parameters
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments, as given."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor arguments by name; returns self."""
        names = self._param_names()
        for name, value in params.items():
            if name not in names:
                raise InvalidParameterError(f"{type(self).__name__} has no parameter {name!r}")
            setattr(self, name, value)
        return self


def resolve_seed(random_state) -> int:
    """The seed a fit uses: ``random_state`` itself (an int >= 0), or one drawn when None."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy % 2**31)
    return check_int("random_state", random_state, minimum=0)


def read_saved_config(folder, filename: str, what: str, version: int) -> dict:
    """The JSON ``folder/filename`` of a saved ``what``, checked to be of format ``version``."""
    path = Path(folder) / filename
    if not path.is_file():
        raise DataValidationError(f"{folder} holds no saved {what} (no {filename})")
    config = json.loads(path.read_text())
    found = config.get("fitted", {}).get("format_version")
    if found != version:
        raise DataValidationError(
            f"{path} has format version {found}; this release reads version {version}"
        )
    return config


def jsonable(value):
    """``value`` with tuples made lists and paths made strings, in nested dicts and lists too."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
