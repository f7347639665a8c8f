"""Conditional-independence tests behind one batched interface.

>>> from specialize.ci import FisherZ
>>> result = FisherZ().test(x, y, z)        # doctest: +SKIP
>>> result.pvalue                            # doctest: +SKIP
"""

from .base import CIData, CIResult, CITest, SingleCIResult, TestPlan
from .cmiknn import CMIKnn
from .fisherz import FisherZ
from .kci import KCI
from .neural import NeuralCMI
from .oracle import DSeparation
from .rcit import RCIT
from .registry import available_ci_tests, make_ci_test, register_ci_test

__all__ = [
    "CIData",
    "CIResult",
    "CMIKnn",
    "CITest",
    "DSeparation",
    "FisherZ",
    "KCI",
    "NeuralCMI",
    "RCIT",
    "SingleCIResult",
    "TestPlan",
    "available_ci_tests",
    "make_ci_test",
    "register_ci_test",
]
