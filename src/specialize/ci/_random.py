"""Seeds for randomised CI tests that do not depend on how a run is split up.

A randomised test draws two kinds of randomness: per run (random Fourier feature weights of
each column, drawn once and shared by every test that uses the column) and per test
(permutations of a shuffle test). Both are derived from the test's entropy and the identity
of what they belong to (a column index, a test's node triple), never from the order in which
tests are answered, so that every batch size and every executor gives the same p-values.
"""

from __future__ import annotations

import numbers

import numpy as np

from .._validation import InvalidParameterError


def resolve_entropy(random_state) -> int:
    """A non-negative int seed: ``random_state`` itself, or fresh entropy when it is None."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state >= 0:
            return int(random_state)
    raise InvalidParameterError(
        f"random_state must be None or a non-negative int; got {random_state!r}"
    )


def generator_for(entropy: int, purpose: int, *key: int) -> np.random.Generator:
    """A Generator determined by ``entropy``, a ``purpose`` code and an integer ``key``."""
    return np.random.default_rng(np.random.SeedSequence([entropy, purpose, len(key), *key]))


def test_key(x, y, z) -> tuple[int, ...]:
    """An integer key identifying the test (x, y, z) of node (or column) index tuples."""
    return (len(x), *x, len(y), *y, len(z), *z)


test_key.__test__ = False  # a helper, not a pytest test, when imported into test modules
