"""Constructor parameters of estimators, read and set by name (scikit-learn convention)."""

from __future__ import annotations

import inspect

from ._validation import InvalidParameterError


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
