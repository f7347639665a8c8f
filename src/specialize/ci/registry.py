"""Choose CI tests by name."""

from __future__ import annotations

from .._validation import InvalidParameterError
from .base import CITest
from .cmiknn import CMIKnn
from .fisherz import FisherZ
from .kci import KCI
from .neural import NeuralCMI
from .oracle import DSeparation
from .rcit import RCIT

_REGISTRY: dict[str, type[CITest]] = {}


def register_ci_test(cls: type[CITest]) -> type[CITest]:
    """Make ``cls`` selectable by its ``name`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, CITest)):
        raise TypeError(f"{cls!r} is not a CITest subclass")
    _REGISTRY[cls.name] = cls
    return cls


def available_ci_tests(*, data_driven_only: bool = False) -> list[str]:
    """Names accepted by :func:`make_ci_test` (only tests that read samples, if asked)."""
    return sorted(n for n, cls in _REGISTRY.items() if cls.requires_data or not data_driven_only)


def test_class(name: str) -> type[CITest] | None:
    """The class registered under ``name``, or None."""
    return _REGISTRY.get(name)


def make_ci_test(test: str | CITest, **params) -> CITest:
    """Return a CI test instance from a name (with constructor ``params``) or an instance."""
    if isinstance(test, CITest):
        if params:
            raise InvalidParameterError("test parameters are only accepted with a test name")
        return test
    if test not in _REGISTRY:
        raise InvalidParameterError(
            f"test must be one of {', '.join(repr(n) for n in available_ci_tests())} "
            f"or a CITest instance; got {test!r}"
        )
    try:
        return _REGISTRY[test](**params)
    except TypeError as exc:
        raise InvalidParameterError(
            f"test {test!r} cannot be built from parameters {sorted(params)}: {exc}; "
            "pass a test instance instead"
        ) from None


register_ci_test(FisherZ)
register_ci_test(DSeparation)
register_ci_test(CMIKnn)
register_ci_test(KCI)
register_ci_test(RCIT)
register_ci_test(NeuralCMI)
