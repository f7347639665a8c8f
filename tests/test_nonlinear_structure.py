"""Algorithm 1 through the nonlinear CI tests: every test by name, every mode, seeds, CLI."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from specialize import discover_structure, make_task_sequences
from specialize.ci import available_ci_tests
from specialize.structure.plan import MODES

FAST_PARAMS = {
    "rcit": {},
    "kci": {},
    "cmiknn": {"sig_samples": 49, "knn": 0.1},
}


@pytest.fixture(scope="module")
def nonlinear():
    return make_task_sequences(400, 8, 2, state_dim=2, mechanism="nonlinear", random_state=2)


def test_the_nonlinear_tests_are_registered():
    assert {"fisherz", "rcit", "kci", "cmiknn"} <= set(available_ci_tests(data_driven_only=True))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(FAST_PARAMS))
def test_every_test_runs_every_mode_by_name(name, mode, nonlinear):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the permutation-floor warning of small sig_samples
        result = discover_structure(
            nonlinear.states,
            nonlinear.tasks,
            test=name,
            mode=mode,
            correction=None,
            test_params=FAST_PARAMS[name],
            random_state=7,
        )
    assert result.test == name and result.conditioning == "band"
    p = result.tests["pvalue"]
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    assert result.segment_tasks.shape == nonlinear.segment_assignment.shape
    if "random_state" in result.test_params:
        assert result.random_state == 7


@pytest.mark.parametrize("name", ["rcit", "cmiknn"])
def test_randomised_tests_repeat_from_the_recorded_seed(name, nonlinear):
    params = FAST_PARAMS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = discover_structure(nonlinear.states, nonlinear.tasks, test=name, test_params=params)
        again = discover_structure(
            nonlinear.states,
            nonlinear.tasks,
            test=name,
            test_params=params,
            random_state=first.random_state,
        )
        other = discover_structure(
            nonlinear.states,
            nonlinear.tasks,
            test=name,
            test_params=params,
            random_state=first.random_state + 1,
        )
    np.testing.assert_array_equal(first.tests["pvalue"], again.tests["pvalue"])
    assert not np.array_equal(first.tests["pvalue"], other.tests["pvalue"])


def test_a_permutation_test_that_cannot_pass_the_correction_warns(nonlinear):
    with pytest.warns(UserWarning, match="raise sig_samples to at least"):
        discover_structure(
            nonlinear.states,
            nonlinear.tasks,
            test="cmiknn",
            test_params={"sig_samples": 19},
            random_state=0,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enough permutations for Holm over 8 decisions
        discover_structure(
            nonlinear.states,
            nonlinear.tasks,
            test="cmiknn",
            mode="unary",
            test_params={"sig_samples": 199, "knn": 0.1},
            random_state=0,
        )


def test_rcit_finds_nonlinear_structure_that_fisherz_misses():
    """Power where it matters: on a seed of the nonlinear generator at n = 3,000, RCIT (unary
    mode) finds task segments that Fisher-z's linear test misses, with no false positive."""
    ds = make_task_sequences(3000, 8, 2, state_dim=1, mechanism="nonlinear", random_state=3)
    rcit = discover_structure(ds.states, ds.tasks, test="rcit", mode="unary", random_state=0)
    linear = discover_structure(ds.states, ds.tasks, test="fisherz", mode="unary")
    scores = rcit.scores(ds.segment_assignment)
    assert scores["precision"] == 1.0 and scores["recall"] >= 0.75
    assert scores["recall"] > linear.scores(ds.segment_assignment)["recall"]
