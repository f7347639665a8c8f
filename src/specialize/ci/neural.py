"""A neural estimate of conditional mutual information, tested by local permutations held out.

A small network T(x, y, z), the critic, is trained on part of a test's samples to tell the
joint samples (x, y, z) from conditionally independent ones (x', y, z), where x' is x
permuted among neighbours in z (Runge 2018). Its Donsker-Varadhan (MINE) value on the other
samples estimates I(x; y | z); copies of those samples with x permuted afresh, scored by the
same critic, give the null distribution. PyTorch is imported only when a test is answered.
"""

from __future__ import annotations

import math

import numpy as np

from .._validation import DataValidationError, check_float, check_int
from ._backend import resolve_device, torch_module
from ._knn import nearest_in, restricted_permutations
from ._random import generator_for, resolve_entropy, test_key
from .base import CIData, CIResult, CITest, TestPlan
from .cmiknn import _describe

#: Purpose code of the per-test randomness (``_random.generator_for``).
TEST_PURPOSE = 0x6E636D01
#: The p-value needs at least this many held-out samples.
MIN_HELD_OUT = 20
#: Rows of permuted copies scored by the critic at once.
SCORE_ROWS = 1 << 16


class NeuralCMI(CITest):
    """Neural conditional mutual information (MINE critic) with a held-out local permutation test.

    For high-dimensional x, y and z (tens to hundreds of columns), where nearest-neighbour
    and kernel estimates lose power: a small network learns which features of (x, y, z)
    carry the dependence.

    Parameters
    ----------
    hidden : int >= 1, default=64
        Units in each of the critic's two hidden layers (ELU activations).
    epochs : int >= 1, default=100
        Passes over the training samples, each with a fresh local permutation of x.
    learning_rate : float > 0, default=1e-3
        Step size of the Adam optimiser.
    batch_size : int >= 2, default=256
        Samples per gradient step (a last batch under half this size joins the one before).
    train_fraction : float in (0, 1), default=0.5
        Share of a test's samples that trains the critic; the rest, held out, gives the
        statistic and the p-value.
    n_permutations : int >= 1, default=200
        Local permutations of x among the held-out samples drawn for the p-value, which is a
        multiple of ``1 / (n_permutations + 1)``.
    shuffle_neighbors : int >= 1, default=5
        Size of the neighbourhood in z (the sample itself included) among which x (and y)
        is permuted, as in :class:`~specialize.ci.CMIKnn`.
    y_permutations : int >= 0, default=4
        Local permutations of y whose scores are subtracted in the p-value's contrast (see
        Notes); 0 ranks the critic's plain mean score, which rejects true nulls far too
        often when x depends on z.
    device : str, default="cpu"
        PyTorch device of the critic: ``"cpu"``, ``"cuda[:k]"``, or ``"auto"`` (CUDA when
        available). PyTorch's thread settings are left as the caller set them.
    random_state : None or int >= 0, default=None
        Seed of every random choice: the split, the critic's initial weights, the batches and
        the permutations. The draws of a test come from its (x, y, z) node triple, so a
        p-value does not depend on how a plan is batched.

    Notes
    -----
    Training. A test's n samples are split at random: ``train_fraction`` of them train the
    critic, the other m are held out. Inputs are standardised with the training samples'
    means and standard deviations. The critic, an MLP of two hidden layers, maximises the
    Donsker-Varadhan bound by Adam on mini-batches::

        I(x; y | z) >= E_P[T] - log E_Q[exp T]

    with P the joint law of (x, y, z) and Q that of (x', y, z), x' drawn from x | z
    independently of y: a fresh local permutation of x per epoch stands in for Q (Runge's
    restricted scheme among the ``shuffle_neighbors`` nearest training samples in z, in the
    maximum norm; a plain permutation when z is empty). There is no early stopping.

    Statistic, in nats, from B local permutations pi_b among the held-out samples::

        S = mean_i T(x_i, y_i, z_i) - log mean_{b, i} exp T(x_pi_b(i), y_i, z_i)

    the DV estimate of I(x; y | z) on samples the critic never saw; it can be negative.

    P-value. Each copy, the data (b = 0, pi_0 the identity) and the B permuted ones, gets
    the contrast::

        C_b = mean_i [T(x_pi_b(i), y_i, z_i) - mean_k T(x_pi_b(i), y_sigma_k(i), z_i)]

    with sigma_1 .. sigma_K (K = ``y_permutations``) local permutations of y, the same for
    every copy; ``pvalue = (1 + #{C_b >= C_0}) / (1 + B)``. The critic never saw the held-out
    samples and is not retrained for the copies, so the test is exact whenever the local
    permutations leave the law of the held-out samples unchanged under the null. With
    K = 0, C_b is the first term of S on copy b (S's second term is common to all copies),
    as MINE's statistic prescribes; but a permuted x fits z a little worse than the real
    one (its neighbour's z is not its own), the critic is trained to see exactly that, and
    the data then outscore their copies under the null (39 % of true nulls rejected at 5 % in
    the noise-0.5 case of ``docs/ci.md``). The subtracted term removes every part of T that
    does not involve y (x fits z equally well on both sides of the difference), which brings
    that rate to 12 %. ``dof`` is NaN.

    Assumptions. The local permutation draws from x | z only when x | z changes little
    between neighbours in z: with z high-dimensional or sparse, or x a fast-varying function
    of z, neighbours differ, x and y keep a trace of their common z that the copies lose,
    and the test rejects true nulls too often (so does :class:`~specialize.ci.CMIKnn`).
    Power is that of the critic: a dependence it cannot represent, or cannot learn from the
    training samples, goes unseen; holding out half of the samples is the price of a valid
    p-value.

    Cost per test: training, ``epochs`` passes over the n_train training samples through
    the MLP, O(epochs n_train hidden (d + hidden)) with d = d_x + d_y + d_z; scoring,
    (1 + K)(1 + B) m forward passes; neighbours in z, O(n^2 d_z), and Runge's permutations,
    O((epochs + B + K) n shuffle_neighbors). About a second at n = 1,000 with x, y, z of 50,
    5, 3 columns on one CPU thread (``docs/ci.md``).

    References
    ----------
    M. I. Belghazi et al. (2018), Mutual information neural estimation, ICML, PMLR 80:531-540.
    J. Runge (2018), Conditional independence testing based on a nearest-neighbor estimator
    of conditional mutual information, AISTATS, PMLR 84:938-947.
    """

    name = "neural-cmi"

    def __init__(
        self,
        hidden: int = 64,
        epochs: int = 100,
        learning_rate: float = 1e-3,
        batch_size: int = 256,
        train_fraction: float = 0.5,
        n_permutations: int = 200,
        shuffle_neighbors: int = 5,
        y_permutations: int = 4,
        device: str = "cpu",
        random_state: int | None = None,
    ):
        self.hidden = hidden
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.train_fraction = train_fraction
        self.n_permutations = n_permutations
        self.shuffle_neighbors = shuffle_neighbors
        self.y_permutations = y_permutations
        self.device = device
        self.random_state = random_state
        self._entropy = resolve_entropy(random_state)

    def _check_params(self) -> None:
        check_int("hidden", self.hidden, minimum=1)
        check_int("epochs", self.epochs, minimum=1)
        check_float("learning_rate", self.learning_rate, low=0.0, low_inclusive=False)
        check_int("batch_size", self.batch_size, minimum=2)
        check_float(
            "train_fraction",
            self.train_fraction,
            low=0.0,
            high=1.0,
            low_inclusive=False,
            high_inclusive=False,
        )
        check_int("n_permutations", self.n_permutations, minimum=1)
        check_int("shuffle_neighbors", self.shuffle_neighbors, minimum=1)
        check_int("y_permutations", self.y_permutations, minimum=0)

    def smallest_pvalue(self) -> float:
        return 1.0 / (self.n_permutations + 1)

    # ------------------------------------------------------------------------- entry point

    def run(self, data: CIData, plan: TestPlan) -> CIResult:
        self._check_params()
        result = CIResult.empty(len(plan))
        if len(plan) == 0:
            return result
        device = resolve_device(self.device)
        for positions, rows in plan.row_groups(data):
            n = data.n_samples if rows is None else int(rows.sum())
            for p in positions:
                self._check_size(data, plan, p, n)
            for p in positions:
                x, y, z = (
                    data.gather(data.columns(v), slice(None) if rows is None else rows)
                    for v in (plan.x[p], plan.y[p], plan.z[p])
                )
                rng = generator_for(
                    self._entropy, TEST_PURPOSE, *test_key(plan.x[p], plan.y[p], plan.z[p])
                )
                result.statistic[p], result.pvalue[p] = self._one_test(x, y, z, rng, device)
                result.n_samples[p] = n
        return result

    # ------------------------------------------------------------------------- work

    def split_sizes(self, n: int) -> tuple[int, int]:
        """Samples that train the critic and samples held out, for a test of ``n``."""
        n_train = int(round(self.train_fraction * n))
        return n_train, n - n_train

    def _check_size(self, data: CIData, plan: TestPlan, p: int, n: int) -> None:
        n_train, n_held = self.split_sizes(n)
        local = self.shuffle_neighbors + 1 if plan.z[p] else 2
        for have, need, part in (
            (n_held, max(MIN_HELD_OUT, local), "held-out"),
            (n_train, local, "training"),
        ):
            if have < need:
                raise DataValidationError(
                    f"too few samples for the neural CMI test of {_describe(data, plan, p)}: "
                    f"n={n} with train_fraction={self.train_fraction} leaves {have} {part} "
                    f"samples, fewer than the {need} it needs; give more samples"
                )

    def _one_test(self, x, y, z, rng: np.random.Generator, device) -> tuple[float, float]:
        """(statistic, p-value) of one test on raw columns of shapes (n, d_x), (n, d_y),
        (n, d_z)."""
        n_train, _ = self.split_sizes(x.shape[0])
        train, held = np.split(rng.permutation(x.shape[0]), [n_train])
        x, y, z = _standardise((x, y, z), train)
        critic = self._train(x, y, z, train, rng, device)
        x_shuffles = self._permutations(z[held], self.n_permutations, rng)
        y_shuffles = self._permutations(z[held], self.y_permutations, rng)
        return _held_out_test(critic, x[held], y[held], z[held], x_shuffles, y_shuffles, device)

    def _permutations(self, z: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` local permutations among the samples of ``z`` (n, d_z), shape (count, n);
        plain permutations when z has no columns."""
        n = z.shape[0]
        if z.shape[1] == 0:
            return rng.permuted(np.broadcast_to(np.arange(n), (count, n)), axis=1)
        return restricted_permutations(nearest_in(z, self.shuffle_neighbors), count, rng)

    def _train(self, x, y, z, train, rng, device):
        """The critic trained on the samples ``train`` (index array) of x, y, z."""
        torch = torch_module()
        critic = _critic(x.shape[1] + y.shape[1] + z.shape[1], self.hidden, rng, device)
        optimiser = torch.optim.Adam(critic.parameters(), lr=self.learning_rate)
        shuffles = self._permutations(z[train], self.epochs, rng)
        tensors = [_tensor(a[train], device) for a in (x, y, z)]
        for shuffle in shuffles:
            batches = _batches(len(train), self.batch_size, rng)
            _train_epoch(critic, optimiser, tensors, shuffle, batches)
        return critic


# ----------------------------------------------------------------------------- the critic


def _critic(d: int, hidden: int, rng: np.random.Generator, device):
    """An MLP d -> hidden -> hidden -> 1 with ELU activations, float32 on ``device``, with
    weights and biases uniform on +-1/sqrt(fan_in) (PyTorch's default) drawn from ``rng``."""
    torch = torch_module()
    sizes = [(d, hidden), (hidden, hidden), (hidden, 1)]
    layers = [torch.nn.Linear(a, b) for a, b in sizes]
    with torch.no_grad():
        for layer in layers:
            bound = 1.0 / math.sqrt(layer.in_features)
            for param in (layer.weight, layer.bias):
                param.copy_(torch.from_numpy(rng.uniform(-bound, bound, param.shape)))
    model = torch.nn.Sequential(layers[0], torch.nn.ELU(), layers[1], torch.nn.ELU(), layers[2])
    return model.to(device)


def _tensor(array: np.ndarray, device):
    return torch_module().as_tensor(np.ascontiguousarray(array, dtype=np.float32), device=device)


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random partition of range(n) into batches of ``batch_size`` (the last one merged into
    the one before when it would be smaller than half a batch)."""
    order = rng.permutation(n)
    cuts = list(range(batch_size, n, batch_size))
    if cuts and n - cuts[-1] < batch_size // 2:
        cuts.pop()
    return np.split(order, cuts)


def _train_epoch(critic, optimiser, tensors, shuffle: np.ndarray, batches) -> None:
    """One pass of Adam on the negative Donsker-Varadhan bound; x of the independent samples
    is ``x[shuffle]``."""
    torch = torch_module()
    x, y, z = tensors
    shuffle = torch.as_tensor(shuffle, device=x.device)
    for batch in batches:
        rows = torch.as_tensor(batch, device=x.device)
        yz = torch.cat([y[rows], z[rows]], dim=1)
        joint = critic(torch.cat([x[rows], yz], dim=1))[:, 0]
        independent = critic(torch.cat([x[shuffle[rows]], yz], dim=1))[:, 0]
        bound = joint.mean() - (torch.logsumexp(independent, 0) - math.log(len(batch)))
        optimiser.zero_grad()
        (-bound).backward()
        optimiser.step()


def _scores(critic, x: np.ndarray, y: np.ndarray, z: np.ndarray, shuffles, device) -> np.ndarray:
    """Critic values of (x[pi], y, z) for each row pi of ``shuffles`` (B, m): shape (B, m),
    float64."""
    torch = torch_module()
    m = x.shape[0]
    x_t, yz = _tensor(x, device), _tensor(np.concatenate([y, z], axis=1), device)
    shuffles_t = torch.as_tensor(shuffles, device=device)
    out = np.empty(shuffles.shape)
    step = max(1, SCORE_ROWS // m)
    with torch.no_grad():
        for start in range(0, len(shuffles), step):
            chunk = shuffles_t[start : start + step]
            inputs = torch.cat([x_t[chunk], yz.expand(len(chunk), m, -1)], dim=2)
            out[start : start + step] = critic(inputs)[..., 0].double().cpu().numpy()
    return out


def _dv(joint: np.ndarray, independent: np.ndarray) -> float:
    """mean(joint) - log mean exp(independent), in nats."""
    top = independent.max()
    return float(joint.mean() - top - np.log(np.mean(np.exp(independent - top))))


def _held_out_test(critic, x, y, z, x_shuffles, y_shuffles, device) -> tuple[float, float]:
    """(statistic, p-value) of the held-out samples x, y, z (m rows each).

    ``x_shuffles`` (B, m) are the null copies' permutations of x; the scores of the copies
    with y also permuted by each row of ``y_shuffles`` (K, m), averaged, are subtracted from
    every copy's mean score (K may be 0).
    """
    copies = np.vstack([np.arange(x.shape[0]), x_shuffles])
    scores = _scores(critic, x, y, z, copies, device)
    statistic = _dv(scores[0], scores[1:])
    contrast = scores.mean(axis=1)
    for shuffle in y_shuffles:
        contrast -= _scores(critic, x, y[shuffle], z, copies, device).mean(axis=1) / len(y_shuffles)
    pvalue = (1.0 + np.count_nonzero(contrast[1:] >= contrast[0])) / len(contrast)
    return statistic, float(pvalue)


def _standardise(arrays, rows: np.ndarray):
    """Each array (n, d) centred and scaled by the mean and standard deviation of ``rows``
    (a column constant there is only centred)."""
    out = []
    for a in arrays:
        mean = a[rows].mean(axis=0)
        scale = a[rows].std(axis=0)
        out.append((a - mean) / np.where(scale > 0, scale, 1.0))
    return out
