"""The interface every conditional-independence test implements.

A run of Algorithm 1 asks many CI questions of the same data. The data are described once,
as a :class:`CIData` of *nodes* (a node is a group of columns: one time step's state, one task
variable), and the questions as a :class:`TestPlan` of node-index triples (x, y, z). A test's
:meth:`CITest.run` answers the whole plan at once and returns a :class:`CIResult` of arrays.
:meth:`CITest.test` is the one-question convenience on plain 2-D arrays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

import numpy as np

from .._validation import DataValidationError, as_float_array, check_finite

NodeSet = tuple[int, ...]


@dataclass(frozen=True)
class CIData:
    """Data for a batch of CI tests: nodes, each a group of columns of one data matrix.

    The data matrix is the horizontal concatenation of ``blocks`` (never materialised): each
    block is an array of shape (n_samples, p_b). Node ``j`` owns the global columns
    ``node_columns[j]``.

    Parameters
    ----------
    blocks : tuple of ndarray of shape (n_samples, p_b), or empty for data-free tests
    node_columns : tuple of int ndarray
        Global column indices of each node.
    node_names : tuple of hashable
        A name per node (the d-separation oracle maps these to DAG nodes).
    column_labels : tuple of str
        A readable label per global column, used in error messages, e.g. ``"X[:, 3, 1]"``.
    n_samples : int
    """

    blocks: tuple[np.ndarray, ...]
    node_columns: tuple[np.ndarray, ...]
    node_names: tuple[Hashable, ...]
    column_labels: tuple[str, ...]
    n_samples: int
    _offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        widths = [b.shape[1] for b in self.blocks]
        object.__setattr__(self, "_offsets", np.concatenate([[0], np.cumsum(widths)]).astype(int))

    @property
    def n_nodes(self) -> int:
        return len(self.node_columns)

    @property
    def n_columns(self) -> int:
        return int(self._offsets[-1])

    @property
    def has_missing(self) -> bool:
        return any(np.isnan(b).any() for b in self.blocks)

    def columns(self, nodes: Sequence[int]) -> np.ndarray:
        """Global column indices of ``nodes``, concatenated in order."""
        if len(nodes) == 0:
            return np.zeros(0, dtype=int)
        return np.concatenate([self.node_columns[j] for j in nodes])

    def gather(self, columns: np.ndarray, rows=slice(None)) -> np.ndarray:
        """Return the data matrix restricted to ``rows`` and ``columns`` (in that column order)."""
        columns = np.asarray(columns, dtype=int)
        if len(columns) == self.n_columns and (columns == np.arange(self.n_columns)).all():
            return np.concatenate([b[rows] for b in self.blocks], axis=1)
        block_of = np.searchsorted(self._offsets, columns, side="right") - 1
        if isinstance(rows, slice):
            n_rows = len(range(self.n_samples)[rows])
        else:
            n_rows = len(np.arange(self.n_samples)[rows])
        out = np.empty((n_rows, len(columns)))
        for b in np.unique(block_of):
            sel = np.flatnonzero(block_of == b)
            out[:, sel] = self.blocks[b][rows][:, columns[sel] - self._offsets[b]]
        return out

    def missing_by_node(self) -> np.ndarray:
        """Boolean array of shape (n_samples, n_nodes): node has a NaN in that sample."""
        out = np.zeros((self.n_samples, self.n_nodes), dtype=bool)
        for j, cols in enumerate(self.node_columns):
            out[:, j] = np.isnan(self.gather(cols)).any(axis=1)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray | None]) -> CIData:
        """One node per named 2-D array of shape (n, d); ``None`` or a (n, 0) array is skipped."""
        blocks, node_columns, names, labels = [], [], [], []
        n = None
        start = 0
        for name, arr in arrays.items():
            if arr is None:
                continue
            arr = as_float_array(name, arr, ndims=(1, 2), shape_hint="(n_samples, d)")
            check_finite(name, arr)
            if arr.ndim == 1:
                arr = arr[:, None]
            if arr.shape[1] == 0:
                continue
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise DataValidationError(
                    f"{name} has {arr.shape[0]} samples but the first array has {n}"
                )
            blocks.append(arr)
            node_columns.append(np.arange(start, start + arr.shape[1]))
            names.append(name)
            labels.extend(f"{name}[:, {j}]" for j in range(arr.shape[1]))
            start += arr.shape[1]
        return cls(tuple(blocks), tuple(node_columns), tuple(names), tuple(labels), int(n))


@dataclass(frozen=True)
class TestPlan:
    """A batch of CI tests over the nodes of one :class:`CIData`.

    Test ``k`` asks whether nodes ``x[k]`` are independent of nodes ``y[k]`` given ``z[k]``.
    ``index[k]`` is the test's identity within the whole run (kept when a plan is split into
    batches), which randomised tests use to derive their seeds.
    """

    __test__ = False  # not a pytest class

    x: tuple[NodeSet, ...]
    y: tuple[NodeSet, ...]
    z: tuple[NodeSet, ...]
    index: np.ndarray | None = None

    def __post_init__(self):
        if not (len(self.x) == len(self.y) == len(self.z)):
            raise ValueError("x, y and z of a TestPlan must have the same length")
        if self.index is None:
            object.__setattr__(self, "index", np.arange(len(self.x)))

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, positions: Sequence[int] | np.ndarray) -> TestPlan:
        """The tests at ``positions``, keeping their run-wide ``index``."""
        positions = np.asarray(positions, dtype=int)
        return TestPlan(
            tuple(self.x[p] for p in positions),
            tuple(self.y[p] for p in positions),
            tuple(self.z[p] for p in positions),
            self.index[positions],
        )

    def batches(self, batch_size: int):
        """Yield (positions, sub-plan) pairs of at most ``batch_size`` tests."""
        for start in range(0, len(self), batch_size):
            positions = np.arange(start, min(start + batch_size, len(self)))
            yield positions, self.subset(positions)

    def row_groups(self, data: CIData):
        """Yield (positions, rows): tests grouped by the samples complete on all their nodes.

        ``rows`` is None (every sample) when ``data`` has no NaN, else a boolean mask of shape
        (n_samples,). Tests with the same complete samples form one group, so that they can
        share work (the ``testwise`` missing-value policy).
        """
        if not data.has_missing:
            yield np.arange(len(self)), None
            return
        missing = data.missing_by_node()
        groups: dict[bytes, list[int]] = defaultdict(list)
        masks: dict[bytes, np.ndarray] = {}
        for k, (x, y, z) in enumerate(zip(self.x, self.y, self.z, strict=True)):
            rows = ~missing[:, list(x + y + z)].any(axis=1)
            key = np.packbits(rows).tobytes()
            groups[key].append(k)
            masks[key] = rows
        for key, positions in groups.items():
            yield np.asarray(positions), masks[key]

    def group_by_shape(self, data: CIData) -> dict[tuple[int, int, int], np.ndarray]:
        """Positions of tests grouped by their column counts (d_x, d_y, d_z)."""
        width = [len(c) for c in data.node_columns]
        groups: dict[tuple[int, int, int], list[int]] = defaultdict(list)
        for k, (x, y, z) in enumerate(zip(self.x, self.y, self.z, strict=True)):
            key = (sum(width[j] for j in x), sum(width[j] for j in y), sum(width[j] for j in z))
            groups[key].append(k)
        return {key: np.asarray(pos) for key, pos in groups.items()}


@dataclass(frozen=True)
class SingleCIResult:
    """The answer to one CI test."""

    statistic: float
    pvalue: float
    dof: float
    n_samples: int


@dataclass(frozen=True)
class CIResult:
    """Answers to a batch of CI tests, each field of shape (n_tests,).

    statistic : test statistic (for Fisher-z the signed z-score, for Bartlett's test chi2)
    pvalue : in [0, 1]
    dof : degrees of freedom of the reference distribution (NaN where none applies)
    n_samples : samples the test used
    """

    statistic: np.ndarray
    pvalue: np.ndarray
    dof: np.ndarray
    n_samples: np.ndarray

    def __len__(self) -> int:
        return len(self.pvalue)

    def __getitem__(self, k: int) -> SingleCIResult:
        return SingleCIResult(
            float(self.statistic[k]),
            float(self.pvalue[k]),
            float(self.dof[k]),
            int(self.n_samples[k]),
        )

    @classmethod
    def empty(cls, n_tests: int) -> CIResult:
        return cls(
            np.full(n_tests, np.nan),
            np.full(n_tests, np.nan),
            np.full(n_tests, np.nan),
            np.zeros(n_tests, dtype=int),
        )

    def fill(self, positions: np.ndarray, other: CIResult) -> None:
        """Write ``other`` (a result for a sub-plan) into ``positions`` of this result."""
        self.statistic[positions] = other.statistic
        self.pvalue[positions] = other.pvalue
        self.dof[positions] = other.dof
        self.n_samples[positions] = other.n_samples


class CITest(ABC):
    """A conditional-independence test: ``x`` independent of ``y`` given ``z``?

    Subclasses set ``name`` and implement :meth:`run`. Constructor arguments are stored as
    given, so that :meth:`get_params` can record them in results.
    """

    name: ClassVar[str]
    #: False for tests that answer from a known graph (the oracle) rather than from samples.
    requires_data: ClassVar[bool] = True
    #: True where conditioning on many variables costs little power (linear tests, the oracle).
    handles_large_conditioning_sets: ClassVar[bool] = False

    @abstractmethod
    def run(self, data: CIData, plan: TestPlan) -> CIResult:
        """Answer every test of ``plan`` over ``data``."""

    def smallest_pvalue(self) -> float:
        """The smallest p-value the test can return (a permutation test's 1 / (B + 1))."""
        return 0.0

    def prepare(self, data: CIData) -> Callable[[TestPlan], CIResult]:
        """Do the work shared by all tests over ``data`` once; return a function answering plans.

        Executors call this once per data set and then answer the plan batch by batch. The
        default shares nothing and runs each batch from scratch. A test may check every column
        of ``data`` here (Fisher-z does), so columns no test uses should not be in ``data``.
        """
        return partial(self.run, data)

    def test(self, x, y, z=None) -> SingleCIResult:
        """Test ``x`` independent of ``y`` given ``z``.

        Parameters
        ----------
        x : ndarray of shape (n_samples, d_x) or (n_samples,)
        y : ndarray of shape (n_samples, d_y) or (n_samples,)
        z : ndarray of shape (n_samples, d_z), or None for an unconditional test

        Returns
        -------
        SingleCIResult
            ``statistic``, ``pvalue``, ``dof`` and ``n_samples`` of the test.
        """
        return self.run(*single_test(x, y, z))[0]

    def get_params(self) -> dict:
        """Constructor parameters, for recording in results."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def single_test(x, y, z=None) -> tuple[CIData, TestPlan]:
    """The data and the one-test plan of ``x`` against ``y`` given ``z`` on plain arrays."""
    data = CIData.from_arrays({"x": x, "y": y, "z": z})
    if data.n_nodes < 2 or data.node_names[:2] != ("x", "y"):
        raise DataValidationError("x and y must each have at least one column")
    plan = TestPlan(((0,),), ((1,),), ((2,),) if data.n_nodes == 3 else ((),))
    return data, plan
