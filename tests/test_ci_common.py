"""Properties every CI test shares: its input checks name the array and the index at fault."""

from __future__ import annotations

import re

import numpy as np
import pytest

from specialize.ci import KCI, RCIT, CMIKnn, FisherZ, NeuralCMI


@pytest.mark.parametrize("make_test", [FisherZ, RCIT, KCI, CMIKnn, NeuralCMI])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("where", ["x", "y", "z"])
def test_nonfinite_input_names_array_and_index(make_test, bad, where):
    rng = np.random.default_rng(0)
    arrays = {
        "x": rng.normal(size=(100, 2)),
        "y": rng.normal(size=(100, 1)),
        "z": rng.normal(size=(100, 3)),
    }
    index = {"x": (7, 1), "y": (42, 0), "z": (5, 2)}[where]
    arrays[where][index] = bad
    kind = "NaN" if np.isnan(bad) else "inf"
    with pytest.raises(ValueError, match=re.escape(f"{where} contains {kind} at index {index}")):
        make_test().test(arrays["x"], arrays["y"], arrays["z"])
