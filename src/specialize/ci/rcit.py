"""Randomized conditional independence test (RCIT), batched over a whole plan.

RCIT (Strobl, Zhang and Visweswaran 2019) approximates the kernel conditional independence
test with random Fourier features: the Gaussian kernel of each variable set is replaced by a
few random cosine features, the features of x and y are regressed on those of z, and the
statistic is n times the squared Frobenius norm of the cross-covariance of the residuals.
Its null distribution is a weighted sum of chi-square(1) variables (see :mod:`._null`).

Batching. The random weights of every column are drawn once per run and shared by every test
that uses the column; the features of a column set are a random Fourier feature map of the
Gaussian kernel on that set. Tests that share their conditioning set share its features, the
Gram matrix of those features and its Cholesky factor; the tests of a batch are then answered
with stacked (batched) linear algebra, in chunks whose tensors stay below a memory cap.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.distance import pdist

from .._validation import (
    DataValidationError,
    check_choice,
    check_float,
    check_int,
)
from ._backend import resolve_device, torch_module
from ._null import chi2_sf, row_sums, weighted_chi2_sf
from ._random import generator_for, resolve_entropy
from .base import CIData, CIResult, CITest, TestPlan

APPROXIMATIONS = ("lpd4", "hbe", "gamma", "chi2")
VARIANTS = ("rcit", "rcot")
#: Purpose codes of the per-run randomness (see ``_random.generator_for``).
PURPOSE_WEIGHTS = 0x52434954
PURPOSE_OFFSETS = 0x52434955
#: The bandwidth of a set's Gaussian kernel is the median distance among its first rows.
BANDWIDTH_ROWS = 500
#: Ridge added to the correlation matrix of the conditioning features.
REGULARIZATION = 1e-10
#: Fewest complete samples a test accepts.
MIN_SAMPLES = 10
#: Longest contraction of any matrix product. A BLAS may split a long contraction between
#: threads, and whether it does depends on how many products are batched together; with
#: short ones (blocks of samples, added in a fixed order) a test's sums do not depend on
#: which other tests share its batch.
CONTRACTION = 128
#: Default soft cap on a chunk's stacked tensors, by device type (MiB).
DEFAULT_MEMORY_MIB = {"cpu": 64.0, "cuda": 1024.0}
#: Memory the cached squared distances of column sets (bandwidth step) may keep.
_PAIR_CACHE_BYTES = 64 * 2**20


class RCIT(CITest):
    """Randomized conditional independence test with random Fourier features.

    Parameters
    ----------
    approx : {"lpd4", "hbe", "gamma", "chi2"}, default="lpd4"
        Null distribution of the statistic, a weighted sum of chi-square(1) variables whose
        weights are the eigenvalues of the covariance of the products of residual features:
        ``"lpd4"`` the Lindsay-Pilla-Basak mixture of gammas matching 8 moments (falls back
        to ``"hbe"`` for a test where it has no valid solution or fewer than 4 positive
        weights), ``"hbe"`` Hall-Buckley-Eagleson (3 cumulants), ``"gamma"``
        Satterthwaite-Welch (2 moments). ``"chi2"`` instead normalises the statistic by the
        pseudo-inverse of that covariance and refers it to a chi-square with as many degrees
        of freedom as the covariance has rank. The default is causal-learn's and the RCIT
        paper's; it is the most accurate in the tail.
    num_f : int, default=100
        Random features of the conditioning set z (causal-learn's and the paper's default).
    num_f2 : int, default=5
        Random features of x and of y (causal-learn's and the paper's default). The null
        covariance is of size ``num_f2**2``.
    variant : {"rcit", "rcot"}, default="rcit"
        ``"rcit"`` augments y with z (features of (y, z)), as causal-learn's RCIT does;
        ``"rcot"`` uses y alone (RCoT), cheaper when z is large.
    device : str, default="cpu"
        PyTorch device of the computation, ``"cpu"`` or ``"cuda[:k]"``.
    max_memory_mib : float or None, default=None
        Soft cap on the stacked tensors of one chunk of tests (MiB); larger batches are
        answered in several chunks, with identical results. None: 64 MiB on the CPU, where
        chunks that stay near the caches run fastest, and 1024 MiB on a GPU, where fewer and
        larger kernels do.
    random_state : int or None, default=None
        Seed of the random features. The weights of a column and the offsets depend only on
        this seed and the column's index, so a test's p-value does not depend on how a plan
        is split into batches or processes.

    Notes
    -----
    For one test with n samples, every column is standardised; the Gaussian kernel of a
    column set S has the bandwidth sigma_S, the median of the non-zero Euclidean distances
    among the first min(n, 500) samples of S (1 where all are zero). Its features are
    ``sqrt(2) cos(sum_{c in S} x_c w_c / sigma_S + b)``: each column c holds standard-normal
    weight vectors w_c (one of length ``num_f`` for the z role and one of length ``num_f2``
    for each of the x and y roles), and b holds offsets uniform on [0, 2 pi) per role. This is
    a random Fourier feature map of the Gaussian kernel on S (Rahimi and Recht 2007). The
    features are standardised (so the factor sqrt(2) cancels).

    With f_x, f_y (augmented with z for RCIT) and f_z the feature matrices and C their
    sample covariances, the statistic is ``n * ||C_xy - C_xz (C_zz + 1e-10 I)^-1 C_zy||_F^2``.
    Under the null it is asymptotically a weighted sum of chi-square(1) variables with weights
    the eigenvalues of ``(1/n) P^T P``, P the (n, num_f2^2) products of the residuals of f_x
    and f_y on f_z. With an empty z the test is the unconditional RIT: ``n * ||C_xy||_F^2``,
    with P the products of the centred features. Eigenvalues below ``num_f2**2 * eps`` times
    the largest count as zero. ``dof`` is NaN, except for ``approx="chi2"`` (the rank of the
    covariance).

    A test needs at least 10 complete samples; with NaN in the data each test uses the
    samples complete on its own variables and reports their number in ``n_samples``. A
    constant column is an error that names it. On the CPU a test's p-value is bit-identical
    whatever the batch it is answered in (every reduction is taken in blocks of at most 128
    samples, in a fixed order); a GPU's batched products carry no such guarantee.

    Calibration: the null approximation is asymptotic and the regression on 100 features of
    z approximate. On the nonlinear band tests of ``make_task_sequences`` the level at 0.05
    holds at n = 1000 (with null p-values a little low in the bulk), while 2-dimensional
    states give about 9 % rejections of true nulls at n = 2000, with causal-learn's RCIT as
    with this one.

    Defaults follow causal-learn's ``RCIT`` (``causallearn.utils.RCIT``) and the paper, so
    that decisions agree up to the randomness of the features. Note that causal-learn 0.1.4
    with NumPy 2 answers ``approx="lpd4"`` with its Hall-Buckley-Eagleson fallback for every
    test (its ``momentchi2`` dependency uses the removed ``numpy.math``).

    References: Strobl, Zhang and Visweswaran (2019), J. Causal Inference 7(1), 20180017;
    Lindsay, Pilla and Basak (2000), Ann. Inst. Statist. Math. 52(2), 215-230; Bodenham and
    Adams (2016), Statistics and Computing 26(4), 917-928.
    """

    name = "rcit"

    def __init__(
        self,
        approx: str = "lpd4",
        num_f: int = 100,
        num_f2: int = 5,
        variant: str = "rcit",
        device="cpu",
        max_memory_mib: float | None = None,
        random_state=None,
    ):
        self.approx = approx
        self.num_f = num_f
        self.num_f2 = num_f2
        self.variant = variant
        self.device = device
        self.max_memory_mib = max_memory_mib
        self.random_state = random_state
        self._entropy = resolve_entropy(random_state)

    def prepare(self, data: CIData):
        """Standardise every column once and share bandwidths and weights across batches."""
        engine = _Engine(self._settings(), data, np.arange(data.n_columns))
        return engine.answer

    def run(self, data: CIData, plan: TestPlan) -> CIResult:
        settings = self._settings()
        if len(plan) == 0:
            return CIResult.empty(0)
        nodes = sorted(set().union(*plan.x, *plan.y, *plan.z))
        return _Engine(settings, data, data.columns(nodes)).answer(plan)

    def _settings(self) -> _Settings:
        check_choice("approx", self.approx, APPROXIMATIONS)
        check_choice("variant", self.variant, VARIANTS)
        num_f = check_int("num_f", self.num_f, minimum=1)
        num_f2 = check_int("num_f2", self.num_f2, minimum=1)
        device = resolve_device(self.device)
        if self.max_memory_mib is None:
            memory = DEFAULT_MEMORY_MIB[device.type]
        else:
            memory = check_float(
                "max_memory_mib", self.max_memory_mib, low=0.0, low_inclusive=False
            )
        return _Settings(
            approx=self.approx,
            num_f=num_f,
            num_f2=num_f2,
            augment=self.variant == "rcit",
            device=device,
            max_bytes=int(memory * 2**20),
            entropy=self._entropy,
        )

    # The random weights and offsets, exposed for tests that feed them to a reference.
    def _column_weights(self, column: int) -> dict[str, np.ndarray]:
        return _draw_column_weights(self._entropy, column, self.num_f, self.num_f2)

    def _offsets(self) -> dict[str, np.ndarray]:
        return _draw_offsets(self._entropy, self.num_f, self.num_f2)


# --------------------------------------------------------------------------------------------
# randomness
# --------------------------------------------------------------------------------------------


def _draw_column_weights(entropy: int, column: int, num_f: int, num_f2: int) -> dict:
    """Standard-normal weights of ``column`` for the z, x and y roles."""
    rng = generator_for(entropy, PURPOSE_WEIGHTS, int(column))
    return {
        "z": rng.standard_normal(num_f),
        "x": rng.standard_normal(num_f2),
        "y": rng.standard_normal(num_f2),
    }


def _draw_offsets(entropy: int, num_f: int, num_f2: int) -> dict:
    """Offsets uniform on [0, 2 pi) for the z, x and y roles (one set per run)."""
    rng = generator_for(entropy, PURPOSE_OFFSETS)
    return {
        "z": 2 * np.pi * rng.random(num_f),
        "x": 2 * np.pi * rng.random(num_f2),
        "y": 2 * np.pi * rng.random(num_f2),
    }


# --------------------------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    approx: str
    num_f: int
    num_f2: int
    augment: bool
    device: object
    max_bytes: int
    entropy: int


@dataclass
class _RowGroup:
    """Samples shared by a group of tests, with the caches that depend on them."""

    rows: np.ndarray | None  # bool mask, None for every sample
    n: int
    n_blocks: int  # samples are laid out in n_blocks panels of ``block`` samples
    block: int
    columns: dict = field(default_factory=dict)  # column -> standardised (n_blocks, block)
    ones: object = None  # (n_blocks, block) tensor: 1 for a sample, 0 for padding
    heads: dict = field(default_factory=dict)  # column -> standardised first rows (numpy)
    prefixes: OrderedDict = field(default_factory=OrderedDict)  # set -> squared distances
    sigmas: dict = field(default_factory=dict)  # sorted column tuple -> bandwidth


@dataclass
class _Test:
    """One test of a batch: its position and column sets (sorted tuples)."""

    position: int
    x: tuple
    y: tuple
    z: tuple


class _Engine:
    """Answers plans over one data set; caches what does not depend on the plan.

    Its caches and work buffers are shared by the calls, which a lock serialises (a Dask
    worker may answer batches from several threads with one prepared test).
    """

    def __init__(self, settings: _Settings, data: CIData, columns: np.ndarray):
        self.s = settings
        self.data = data
        self.torch = torch_module()
        self.dtype = self.torch.float64
        self._weights: dict[int, dict] = {}
        self._offset_values = _draw_offsets(settings.entropy, settings.num_f, settings.num_f2)
        self._groups: OrderedDict = OrderedDict()
        self._buffers: dict = {}
        self._lock = threading.Lock()
        self.has_missing = data.has_missing
        if not self.has_missing:
            group = self._group(None)
            for c in np.asarray(columns, dtype=int):
                self._column(group, int(c))

    # ------------------------------------------------------------------ helpers
    def _tensor(self, array) -> object:
        return self.torch.as_tensor(
            np.ascontiguousarray(array, dtype=np.float64), device=self.s.device
        )

    def _buffer(self, name: str, shape: tuple):
        """A reusable work tensor of ``shape`` (its content is undefined).

        Fresh large allocations are page-faulted on first touch, which costs as much as the
        arithmetic done in them; buffers are kept for the next chunk and batch instead.
        """
        numel = int(np.prod(shape))
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < numel:
            buf = self.torch.empty(numel, dtype=self.dtype, device=self.s.device)
            self._buffers[name] = buf
        return buf[:numel].view(shape)

    def _column_weight(self, column: int, role: str) -> np.ndarray:
        if column not in self._weights:
            self._weights[column] = _draw_column_weights(
                self.s.entropy, column, self.s.num_f, self.s.num_f2
            )
        return self._weights[column][role]

    def _group(self, rows: np.ndarray | None) -> _RowGroup:
        key = None if rows is None else np.packbits(rows).tobytes()
        if key in self._groups:
            self._groups.move_to_end(key)
            return self._groups[key]
        n = self.data.n_samples if rows is None else int(rows.sum())
        n_blocks = max(1, -(-n // CONTRACTION))
        block = 8 * -(-n // (8 * n_blocks))  # at most CONTRACTION, a multiple of 8
        group = _RowGroup(rows, n, n_blocks, block)
        ones = np.zeros(group.n_blocks * group.block)
        ones[:n] = 1.0
        group.ones = self._tensor(ones.reshape(group.n_blocks, group.block))
        self._groups[key] = group
        while len(self._groups) > 64:  # testwise deletion may create many row sets
            self._groups.popitem(last=False)
        return group

    def _column(self, group: _RowGroup, c: int):
        """Standardised column ``c`` over the group's rows (checked for being constant)."""
        if c in group.columns:
            return group.columns[c]
        values = np.ascontiguousarray(self.data.gather(np.array([c]), _rows(group.rows))[:, 0])
        if values.size and values.max() == values.min():
            raise DataValidationError(
                f"column {self.data.column_labels[c]} is constant "
                f"(every sample equals {values[0]:g}); RCIT cannot use it"
            )
        if values.size >= 2:
            values = (values - values.mean()) / values.std(ddof=1)
        padded = np.zeros(group.n_blocks * group.block)
        padded[: group.n] = values
        group.columns[c] = self._tensor(padded.reshape(group.n_blocks, group.block))
        group.heads[c] = values[: min(BANDWIDTH_ROWS, len(values))].copy()
        return group.columns[c]

    # ------------------------------------------------------------------ bandwidths
    def _squared_distances(self, group: _RowGroup, S: tuple) -> np.ndarray:
        """Squared distances of set S over the pairs i < j of the first rows.

        Always formed as ``d(S[:-1]) + d((S[-1],))``, so the value of a set does not depend
        on which sets were computed before; prefixes are cached (a task's augmented set is
        its conditioning set plus one column).
        """
        if S in group.prefixes:
            group.prefixes.move_to_end(S)
            return group.prefixes[S]
        if len(S) == 1:
            out = pdist(group.heads[S[0]][:, None], "sqeuclidean")
        else:
            out = self._squared_distances(group, S[:-1]) + self._squared_distances(group, S[-1:])
        group.prefixes[S] = out
        limit = max(2, _PAIR_CACHE_BYTES // max(out.nbytes, 1))
        while len(group.prefixes) > limit:
            group.prefixes.popitem(last=False)
        return out

    def _sigmas(self, group: _RowGroup, sets) -> None:
        """Median-heuristic bandwidth of every column set in ``sets`` (cached)."""
        for S in sets:
            if S not in group.sigmas:
                group.sigmas[S] = _median_distance(self._squared_distances(group, S))

    # ------------------------------------------------------------------ features
    def _stacked_features(self, group: _RowGroup, sets: list, role: str, out, standardise=True):
        """Random Fourier features of ``sets`` in ``role``, into ``out`` (K, nb, f, block).

        Panel layout: ``out[k, b]`` holds the f features of set k over the b-th block of
        samples. ``sets`` must be sorted by size; the projections of the sets of one size
        are one batched product. Cosines and means are taken set by set: an elementwise
        kernel splits a tensor into vector and scalar parts by its size, so a set's features
        are always computed in a tensor of their own size, to come out alike in every batch.
        The features are centred, and divided by their standard deviations if
        ``standardise``; padding samples are zero.
        """
        torch = self.torch
        n, nb, block = group.n, group.n_blocks, group.block
        f = out.shape[2]
        start = 0
        while start < len(sets):
            size = len(sets[start])
            stop = start
            while stop < len(sets) and len(sets[stop]) == size:
                stop += 1
            k = stop - start
            # rows (1, x_S) of each set against weights (b, W_S / sigma_S): the offsets are
            # added inside the product
            columns = []
            for S in sets[start:stop]:
                columns += [group.ones] + [group.columns[c] for c in S]
            data = torch.stack(columns).view(k, size + 1, nb, block).transpose(1, 2)
            weights = np.empty((k, f, size + 1))
            weights[:, :, 0] = self._offset_values[role]
            for i, S in enumerate(sets[start:stop]):
                weights[i, :, 1:] = np.stack([self._column_weight(c, role) for c in S], axis=1)
                weights[i, :, 1:] /= group.sigmas[S]
            weights = self._tensor(weights)[:, None].expand(k, nb, f, size + 1)
            _product(
                weights.reshape(k * nb, f, size + 1),
                data.reshape(k * nb, size + 1, block),
                out[start:stop].view(k * nb, f, block),
            )
            start = stop
        tail = n - (nb - 1) * block  # samples in the last block
        for i in range(len(sets)):
            slab = out[i]  # (nb, f, block)
            slab.cos_()
            slab[-1, :, tail:] = 0.0
            slab -= slab.sum(dim=(0, 2))[:, None] / n
            slab[-1, :, tail:] = 0.0
            if standardise:
                scale = torch.sqrt((slab * slab).sum(dim=(0, 2)) / (n - 1))
                scale = torch.where(scale > 0, scale, 1.0)  # a constant feature stays zero
                slab /= scale[:, None]

    # ------------------------------------------------------------------ answering
    def answer(self, plan: TestPlan) -> CIResult:
        with self._lock:
            return self._answer(plan)

    def _answer(self, plan: TestPlan) -> CIResult:
        result = CIResult.empty(len(plan))
        if len(plan) == 0:
            return result
        tests = [self._describe(plan, k) for k in range(len(plan))]
        self._pending: list = []
        for rows, members in self._row_sets(plan, tests):
            group = self._group(rows)
            if group.n < MIN_SAMPLES:
                k = members[0].position
                raise DataValidationError(
                    f"too few samples for RCIT of {_names(self.data, plan, k)}: it needs at "
                    f"least {MIN_SAMPLES} complete samples, got {group.n}"
                )
            sets = sorted({S for t in members for S in (t.x, t.y, t.z) if S})
            for S in sets:
                for c in S:
                    self._column(group, c)
            self._sigmas(group, sets)
            self._answer_group(group, members, result)
        if self._pending:  # the null distributions of the whole batch at once
            positions, stat, weights, n = (
                np.concatenate(a) for a in zip(*self._pending, strict=True)
            )
            pvalue, _ = weighted_chi2_sf(weights, stat, self.s.approx)
            result.fill(positions, CIResult(stat, pvalue, np.full(len(stat), np.nan), n))
        return result

    def _describe(self, plan: TestPlan, k: int) -> _Test:
        x, y, z = plan.x[k], plan.y[k], plan.z[k]
        if not x or not y:
            raise DataValidationError(
                f"test {k} of the plan has an empty {'x' if not x else 'y'}; RCIT needs "
                "at least one node on each side"
            )
        for a, b, name in ((x, y, "x and y"), (x, z, "x and z"), (y, z, "y and z")):
            shared = set(a) & set(b)
            if shared:
                raise DataValidationError(
                    f"{name} of the test {_names(self.data, plan, k)} share the node(s) "
                    f"{sorted(str(self.data.node_names[j]) for j in shared)}"
                )
        cx = tuple(sorted(int(c) for c in self.data.columns(x)))
        cz = tuple(sorted(int(c) for c in self.data.columns(z)))
        cy = tuple(sorted(int(c) for c in self.data.columns(y)))
        if self.s.augment and cz:
            cy = tuple(sorted(cy + cz))
        return _Test(k, cx, cy, cz)

    def _row_sets(self, plan: TestPlan, tests: list):
        """(rows, tests) pairs: every sample, or the complete samples of each test (NaN)."""
        if not self.has_missing:
            yield None, tests
            return
        missing = self.data.missing_by_node()
        groups: dict[bytes, list] = defaultdict(list)
        masks: dict[bytes, np.ndarray] = {}
        for k, test in enumerate(tests):
            rows = ~missing[:, list(plan.x[k] + plan.y[k] + plan.z[k])].any(axis=1)
            key = np.packbits(rows).tobytes()
            groups[key].append(test)
            masks[key] = rows
        for key, members in groups.items():
            yield masks[key], members

    # ------------------------------------------------------------------ the tests of a group
    def _answer_group(self, group: _RowGroup, tests: list, result: CIResult) -> None:
        """Tests grouped into entries, entries stacked in chunks below the memory cap.

        An entry is a conditioning set with the tests that use it (split if they need too
        many feature columns), or for unconditional tests one x set with its tests.
        """
        f, f2 = self.s.num_f, self.s.num_f2
        row_bytes = 8 * group.n_blocks * group.block
        by_key: dict[tuple, list] = defaultdict(list)
        for t in tests:
            by_key[(t.z, ()) if t.z else ((), t.x)].append(t)
        per_unit = 3 * f2 + f2 * (f2 + 1) // 2  # features, q, residual and pair products
        max_units = max(2, (self.s.max_bytes // row_bytes - f) // per_unit)
        entries = []
        for key in sorted(by_key):
            piece, units = [], set()
            for t in by_key[key]:
                new = {("x", t.x), ("y", t.y)} - units
                if piece and len(units) + len(new) > max_units:
                    entries.append((key[0], piece))
                    piece, units = [], set()
                    new = {("x", t.x), ("y", t.y)}
                piece.append(t)
                units |= new
            entries.append((key[0], piece))
        for conditional in (True, False):
            chunk, used = [], 0
            for entry in entries:
                if bool(entry[0]) != conditional:
                    continue
                n_units = len({t.x for t in entry[1]}) + len({t.y for t in entry[1]})
                cost = row_bytes * ((f if conditional else 0) + per_unit * n_units)
                if chunk and used + cost > self.s.max_bytes:
                    self._answer_chunk(group, chunk, result)
                    chunk, used = [], 0
                chunk.append(entry)
                used += cost
            if chunk:
                self._answer_chunk(group, chunk, result)

    def _answer_chunk(self, group: _RowGroup, entries: list, result: CIResult) -> None:
        """Answer the tests of stacked entries (all conditional, or all unconditional).

        Tensors are in panel layout, (entries, blocks, features, block). The feature rows ``q`` of
        an entry are its x sets' then its y sets' standardised features. With z, the z
        features are kept centred but not scaled: with s their standard deviations the
        correlation matrix is G / ((n - 1) s s^T), the regression of q on the standardised z
        features has coefficients B (standardised units), and the residuals are
        q - (B / s)^T F_centred.
        """
        torch = self.torch
        f, f2, n, nb, block = self.s.num_f, self.s.num_f2, group.n, group.n_blocks, group.block
        device = self.s.device
        conditional = bool(entries[0][0])
        entries = sorted(entries, key=lambda e: (len(e[0]), e[0]))
        kz = len(entries)

        x_sets = [sorted({t.x for t in ms}, key=_size_order) for _, ms in entries]
        y_sets = [sorted({t.y for t in ms}, key=_size_order) for _, ms in entries]
        ux_max, uy_max = max(map(len, x_sets)), max(map(len, y_sets))
        features, where = self._unit_features(
            group, {"x": set().union(*x_sets), "y": set().union(*y_sets)}
        )
        n_slots = ux_max + uy_max
        width = n_slots * f2
        q = self._buffer("q", (kz, nb, width, block))
        for j in range(kz):
            slots = [("x", S) for S in x_sets[j]] + [None] * (ux_max - len(x_sets[j]))
            slots += [("y", S) for S in y_sets[j]] + [None] * (uy_max - len(y_sets[j]))
            for u, unit in enumerate(slots):
                rows = q[j, :, u * f2 : (u + 1) * f2]
                if unit is None:
                    rows.zero_()
                else:
                    rows.copy_(features[where[unit]])
        cqq = _gram(q, q) / (n - 1)  # covariances of the x and y features
        if conditional:
            fz = self._buffer("fz", (kz, nb, f, block))
            self._stacked_features(group, [z for z, _ in entries], "z", fz, standardise=False)
            gram = _gram(fz, fz)
            scale = torch.sqrt(gram.diagonal(dim1=-2, dim2=-1) / (n - 1))
            scale = torch.where(scale > 0, scale, 1.0)
            czz = gram / ((n - 1) * scale[:, :, None] * scale[:, None, :])
            czz.diagonal(dim1=-2, dim2=-1).add_(REGULARIZATION)
            factor = torch.linalg.cholesky(czz)
            czq = _gram(fz, q) / ((n - 1) * scale[:, :, None])
            coef = torch.cholesky_solve(czq, factor)  # (kz, f, width), standardised units
            # residuals: q - (B / s)^T F_centred, block by block
            weights = (coef / scale[:, :, None]).transpose(1, 2)[:, None]
            residual = self._buffer("residual", q.shape)
            residual.copy_(q)
            _product(
                weights.expand(kz, nb, width, f).reshape(kz * nb, width, f),
                fz.view(kz * nb, f, block),
                residual.view(kz * nb, width, block),
                alpha=-1.0,
            )
        else:
            residual = q

        # per test: entry, x slot, y slot
        jz, ux, uy, tests = [], [], [], []
        for j, (_, members) in enumerate(entries):
            for t in members:
                jz.append(j)
                ux.append(x_sets[j].index(t.x))
                uy.append(ux_max + y_sets[j].index(t.y))
                tests.append(t)
        jz_t = torch.as_tensor(jz, device=device)
        ux_t = torch.as_tensor(ux, device=device)
        uy_t = torch.as_tensor(uy, device=device)
        # C_xy|z = C_xy - C_xz C_zz^-1 C_zy
        cxy = cqq.view(kz, n_slots, f2, n_slots, f2)[jz_t, ux_t, :, uy_t, :]
        if conditional:
            czx = czq.view(kz, f, n_slots, f2)[jz_t, :, ux_t, :]
            coef_y = coef.view(kz, f, n_slots, f2)[jz_t, :, uy_t, :]
            cxy = cxy - torch.bmm(czx.transpose(1, 2), coef_y)
        sums = self._product_sums(residual, ux_max, uy_max)
        # covariance of the products rx (x) ry of each test, from the pair-product Gram
        pairs = _pair_index(f2)
        rows = np.arange(f2 * f2)
        i, j = rows // f2, rows % f2
        px = torch.as_tensor(pairs[i[:, None], i[None, :]], device=device)
        py = torch.as_tensor(pairs[j[:, None], j[None, :]], device=device)
        n_pairs = f2 * (f2 + 1) // 2
        product_sums = sums[
            jz_t[:, None, None],
            ux_t[:, None, None] * n_pairs + px[None],
            (uy_t[:, None, None] - ux_max) * n_pairs + py[None],
        ]
        self._finish(group, tests, cxy, product_sums, result)

    def _product_sums(self, residual, ux_max: int, uy_max: int):
        """sum_t (rx_i rx_i')(ry_j ry_j') for every x slot and y slot of every entry.

        ``residual`` is (kz, nb, slots * f2, block), x slots first. With the products of the
        i <= i' pairs of one slot's f2 rows (f2 (f2 + 1) / 2 of them), the covariance of the
        products rx (x) ry of a test is a block of the Gram matrix between x-slot and y-slot
        pair products, of shape (kz, ux_max * pairs, uy_max * pairs).
        """
        torch = self.torch
        f2 = self.s.num_f2
        kz, nb, _, block = residual.shape
        slots = residual.view(kz, nb, ux_max + uy_max, f2, block)
        pairs = list(zip(*np.triu_indices(f2), strict=True))

        def products(name, first, count):
            out = self._buffer(name, (kz, nb, count, len(pairs), block))
            source = slots[:, :, first : first + count]
            start = 0
            for i in range(f2):  # pairs (i, i), (i, i + 1), ..., (i, f2 - 1)
                stop = start + f2 - i
                torch.mul(
                    source[:, :, :, i : i + 1], source[:, :, :, i:], out=out[:, :, :, start:stop]
                )
                start = stop
            return out.view(kz, nb, count * len(pairs), block)

        return _gram(products("pairs_x", 0, ux_max), products("pairs_y", ux_max, uy_max))

    def _unit_features(self, group: _RowGroup, unit_sets: dict):
        """Standardised features of the x and y sets, (U, nb, f2, block), and their indices."""
        ordered = [
            (role, S) for role in ("x", "y") for S in sorted(unit_sets[role], key=_size_order)
        ]
        shape = (len(ordered), group.n_blocks, self.s.num_f2, group.block)
        features = self._buffer("units", shape)
        n_x = len(unit_sets["x"])
        if n_x:
            self._stacked_features(group, [S for _, S in ordered[:n_x]], "x", features[:n_x])
        if n_x < len(ordered):
            self._stacked_features(group, [S for _, S in ordered[n_x:]], "y", features[n_x:])
        return features, {unit: i for i, unit in enumerate(ordered)}

    # ------------------------------------------------------------------ statistic and null
    def _finish(self, group: _RowGroup, tests: list, cxy, product_sums, result: CIResult):
        """Statistic from C_xy(|z) (K, a, b) and the null's weights from the sums of residual
        products; the weighted chi-square tail is taken once per batch in :meth:`answer`."""
        torch = self.torch
        n = group.n
        k, a, b = cxy.shape
        cov = product_sums / n
        positions = np.array([t.position for t in tests])
        if self.s.approx == "chi2":
            eigvals, eigvecs = torch.linalg.eigh(cov)
            eigvals, eigvecs = eigvals.cpu().numpy(), eigvecs.cpu().numpy()
            tol = eigvals.max(axis=1, keepdims=True) * (a * b) * np.finfo(float).eps
            keep = eigvals > tol
            vec = cxy.reshape(k, a * b).cpu().numpy()
            proj = eigvecs[:, 0] * vec[:, 0, None]  # coordinates in the eigenvectors' basis
            for i in range(1, a * b):
                proj += eigvecs[:, i] * vec[:, i, None]
            inv = np.where(keep, 1.0 / np.where(keep, eigvals, 1.0), 0.0)
            stat = n * row_sums(proj * proj * inv)
            dof = keep.sum(axis=1).astype(float)
            pvalue = np.where(dof > 0, chi2_sf(stat, np.maximum(dof, 1)), 1.0)
            result.fill(positions, CIResult(stat, pvalue, dof, np.full(k, n)))
            return
        squares = (cxy * cxy).reshape(k, a * b).cpu().numpy()
        statistic = n * row_sums(squares)
        eigvals = torch.linalg.eigvalsh(cov).cpu().numpy()
        tol = eigvals.max(axis=1, keepdims=True) * (a * b) * np.finfo(float).eps
        weights = np.where(eigvals > tol, eigvals, 0.0)
        self._pending.append((positions, statistic, weights, np.full(k, n)))


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _gram(a, b):
    """Stacked sums over samples of a b^T: (K, nb, p, block) x (K, nb, q, block) -> (K, p, q).

    One batched product per block of samples, accumulated in order. Padding samples are
    zero and add exactly nothing.
    """
    total = torch_module().bmm(a[:, 0], b[:, 0].transpose(1, 2))
    for j in range(1, a.shape[1]):
        total.baddbmm_(a[:, j], b[:, j].transpose(1, 2))
    return total


def _product(a, b, out, alpha: float = 1.0):
    """out += alpha * a @ b for stacked matrices, the contraction taken in short pieces."""
    if alpha == 1.0 and a.shape[2] <= CONTRACTION:
        return torch_module().bmm(a, b, out=out)
    for start in range(0, a.shape[2], CONTRACTION):
        stop = start + CONTRACTION
        out.baddbmm_(a[:, :, start:stop], b[:, start:stop], alpha=alpha)
    return out


def _size_order(S: tuple):
    return (len(S), S)


def _pair_index(f: int) -> np.ndarray:
    """(f, f) symmetric map from (i, i') to the index of the pair in ``np.triu_indices(f)``."""
    first, second = np.triu_indices(f)
    out = np.empty((f, f), dtype=np.int64)
    out[first, second] = np.arange(len(first))
    out[second, first] = np.arange(len(first))
    return out


def _median_distance(d2: np.ndarray) -> float:
    """Median of the non-zero distances whose squares are ``d2``; 1.0 if none is non-zero.

    As numpy's median: the mean of the two middle values when their number is even.
    """
    zeros = int(np.count_nonzero(d2 == 0))
    m = d2.size - zeros
    if m == 0:
        return 1.0
    high = zeros + m // 2
    part = np.partition(d2, high)
    upper = np.sqrt(part[high])
    if m % 2:
        return float(upper)
    lower = np.sqrt(part[:high].max())
    return float(0.5 * (lower + upper))


def _rows(rows: np.ndarray | None):
    return slice(None) if rows is None else rows


def _names(data: CIData, plan: TestPlan, k: int) -> str:
    def names(nodes):
        return "{" + ", ".join(str(data.node_names[j]) for j in nodes) + "}"

    return f"{names(plan.x[k])} vs {names(plan.y[k])} given {names(plan.z[k])}"
