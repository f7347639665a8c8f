"""Speed of the kNN CMI test (CMIKnn) against tigramite's CMIknn, and their agreement.

For every n in ``--sizes``, the shared nonlinear band cases (``tests/nonlinear_cases.py``:
state of a step vs a task given the neighbouring states, 1- and 2-dimensional states, half
null and half alternative by the d-separation oracle) are answered by both tests with the
same k (``--knn``), neighbourhood (``--shuffle-neighbors``), number of shuffles
(``--sig-samples``), rank transform, and permuted variable (x, as in Runge 2018). The two
run one after the other on each case, so that both see the same load. Reported per n: the
median wall time of one test (statistic and p-value) for each, their ratio, the time of one
tigramite estimate (the shuffle test costs about ``sig_samples + 1`` of them), the largest
difference of the statistics, and how often the decisions at ``--alpha`` agree (each side
draws its own permutations, so borderline cases may differ by Monte Carlo error alone).

tigramite's cmiknn imports numba for ``@jit(forceobj=True)`` decorators. Where numba is not
installed a pass-through stands in (recorded as ``peer_numba``): tigramite's results are the
same, but its restricted-permutation loop then runs as plain Python, about ten times slower
(some 0.13 s instead of 0.01 s per shuffle at n = 2,000), which inflates the ratio; install
numba beside tigramite for timings to report.

``python benchmarks/bench_cmiknn.py --quick`` is a smoke run of about a minute (4 cases per
n, 20 shuffles); without ``--quick`` it runs 8 cases per n at n = 500, 1,000, 2,000 with 100
shuffles (about fifteen minutes on one core, nearly all of it tigramite's). ``--out
FILE.json`` sets where the raw figures go (default ``benchmarks/results/bench_cmiknn.json``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np

from _environment import ROOT, load_average, run_header, write_results

sys.path.insert(0, str(ROOT / "tests"))

from nonlinear_cases import band_cases  # noqa: E402
from specialize.ci.cmiknn import CMIKnn  # noqa: E402

TARGET_RATIO = 10.0


# --------------------------------------------------------------------------- the peer


def load_peer():
    """tigramite's CMIknn class and the numba it runs with (a version, or 'stand-in')."""
    if importlib.util.find_spec("numba") is not None:
        import numba
        from tigramite.independence_tests.cmiknn import CMIknn

        return CMIknn, numba.__version__
    shim = types.ModuleType("numba")
    shim.jit = lambda *args, **kwargs: lambda f: f
    sys.modules["numba"] = shim
    try:
        from tigramite.independence_tests.cmiknn import CMIknn
    finally:
        del sys.modules["numba"]
    return CMIknn, "stand-in"


def peer_test(peer_class, args, seed):
    return peer_class(
        knn=args.knn,
        shuffle_neighbors=args.shuffle_neighbors,
        significance="shuffle_test",
        sig_samples=args.sig_samples,
        transform="ranks",
        permute="X",
        workers=args.peer_workers,
        seed=seed,
    )


def peer_estimate_seconds(peer, case) -> float:
    array = np.vstack([case.x.T, case.y.T, case.z.T])
    xyz = np.array([0] * case.x.shape[1] + [1] * case.y.shape[1] + [2] * case.z.shape[1])
    t0 = time.perf_counter()
    peer.get_dependence_measure(array, xyz)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- one size


def bench_size(n: int, args, peer_class) -> dict:
    # the cases spread over 1- and 2-dimensional states and over null and alternative
    per_dim = [args.cases // 2 + args.cases % 2, args.cases // 2]
    cases = []
    for d, count in zip((1, 2), per_dim, strict=True):
        n_null = (count + 1) // 2
        cases += band_cases(
            n,
            n_null=n_null,
            n_alternative=count - n_null,
            state_dims=(d,),
            random_state=args.seed,
        )
    ours_test = CMIKnn(
        knn=args.knn,
        shuffle_neighbors=args.shuffle_neighbors,
        sig_samples=args.sig_samples,
        random_state=args.seed,
        workers=args.workers,
    )
    # warm-up of both: imports, first allocations, numba's compilation of the peer
    ours_test.test(cases[0].x, cases[0].y, cases[0].z)
    warm_args = argparse.Namespace(**{**vars(args), "sig_samples": 2})
    peer_test(peer_class, warm_args, 0).run_test_raw(cases[0].x, cases[0].y, cases[0].z)
    rows = []
    for j, case in enumerate(cases):
        t0 = time.perf_counter()
        ours = ours_test.test(case.x, case.y, case.z)
        t1 = time.perf_counter()
        peer = peer_test(peer_class, args, args.seed + j)
        statistic, pvalue = peer.run_test_raw(case.x, case.y, case.z)
        t2 = time.perf_counter()
        estimate = peer_estimate_seconds(peer, case)
        rows.append(
            {
                "label": case.label,
                "null": bool(case.null),
                "state_dim": int(case.x.shape[1]),
                "ours_s": t1 - t0,
                "peer_s": t2 - t1,
                "peer_estimate_s": estimate,
                "ours_statistic": ours.statistic,
                "peer_statistic": float(statistic),
                "ours_pvalue": ours.pvalue,
                "peer_pvalue": float(pvalue),
            }
        )
        r = rows[-1]
        print(
            f"  n={n:>5} {case.label:<40} ours {r['ours_s']:7.2f} s  peer {r['peer_s']:8.2f} s"
            f"  x{r['peer_s'] / r['ours_s']:6.1f}  p {r['ours_pvalue']:.3f} / "
            f"{r['peer_pvalue']:.3f}",
            flush=True,
        )
    ours_s = np.array([r["ours_s"] for r in rows])
    peer_s = np.array([r["peer_s"] for r in rows])
    p_ours = np.array([r["ours_pvalue"] for r in rows])
    p_peer = np.array([r["peer_pvalue"] for r in rows])
    stat_diff = np.abs([r["ours_statistic"] - r["peer_statistic"] for r in rows])
    return {
        "n": n,
        "k": ours_test.neighbours_for(n),
        "cases": rows,
        "ours_median_s": float(np.median(ours_s)),
        "peer_median_s": float(np.median(peer_s)),
        "peer_estimate_median_s": float(np.median([r["peer_estimate_s"] for r in rows])),
        "ratio_of_medians": float(np.median(peer_s) / np.median(ours_s)),
        "ratio_of_totals": float(peer_s.sum() / ours_s.sum()),
        "max_abs_statistic_diff": float(stat_diff.max()),
        "decision_agreement": float(np.mean((p_ours <= args.alpha) == (p_peer <= args.alpha))),
        "dependent_ours": int(np.sum(p_ours <= args.alpha)),
        "dependent_peer": int(np.sum(p_peer <= args.alpha)),
        "max_abs_pvalue_diff": float(np.max(np.abs(p_ours - p_peer))),
    }


def report(results: list[dict], args) -> None:
    headers = [
        "n",
        "k",
        "cases",
        "ours ms",
        "peer ms",
        "peer/ours",
        "peer est. ms",
        "max |dI|",
        "agree",
        "dep. ours",
        "dep. peer",
        "max |dp|",
    ]
    table = [
        [
            r["n"],
            r["k"],
            len(r["cases"]),
            1e3 * r["ours_median_s"],
            1e3 * r["peer_median_s"],
            r["ratio_of_medians"],
            1e3 * r["peer_estimate_median_s"],
            r["max_abs_statistic_diff"],
            r["decision_agreement"],
            r["dependent_ours"],
            r["dependent_peer"],
            r["max_abs_pvalue_diff"],
        ]
        for r in results
    ]
    cells = [[_fmt(v) for v in row] for row in table]
    widths = [max(len(h), *(len(c[j]) for c in cells)) for j, h in enumerate(headers)]
    print(
        f"\nPer-test median wall time, {args.sig_samples} shuffles, knn={args.knn}, "
        f"shuffle_neighbors={args.shuffle_neighbors}, workers ours={args.workers} "
        f"peer={args.peer_workers}"
    )
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths, strict=True)))
    for r in results:
        if r["n"] == 2000:
            verdict = "meets" if r["ratio_of_medians"] >= TARGET_RATIO else "MISSES"
            print(
                f"\nn = 2,000: {r['ratio_of_medians']:.1f}x faster than tigramite "
                f"({verdict} the {TARGET_RATIO:.0f}x target)"
            )


def _fmt(v) -> str:
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 1 or v == 0:
            return f"{v:.2f}"
        return f"{v:.2g}"
    return str(v)


# --------------------------------------------------------------------------- main


def _knn(text: str):
    value = float(text)
    return int(value) if value >= 1 else value


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 4 cases per n, 20 shuffles")
    p.add_argument("--sizes", type=int, nargs="+", default=[500, 1_000, 2_000])
    p.add_argument(
        "--cases",
        type=int,
        default=8,
        help="band cases per n: half with 1-, half with 2-dimensional states, each half split "
        "into null and alternative cases",
    )
    p.add_argument("--sig-samples", type=int, default=100)
    p.add_argument(
        "--knn", type=_knn, default=0.2, help="a fraction of n in (0, 1) or a count of neighbours"
    )
    p.add_argument("--shuffle-neighbors", type=int, default=5)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--workers", type=int, default=1, help="threads of ours (CMIKnn workers)")
    p.add_argument(
        "--peer-workers",
        type=int,
        default=1,
        help="tigramite's workers (its default is -1, every CPU)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_cmiknn.json"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.cases, args.sig_samples = 4, 20
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", module="tigramite")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    peer_class, numba_version = load_peer()
    started = time.perf_counter()
    header = run_header(args, peer_numba=numba_version)
    m = header["machine"]
    print("specialize CMIKnn speed benchmark")
    print(f"date      : {header['date']}")
    print(f"command   : {header['command']}")
    print(f"machine   : {m['platform']}, {m['cpu_count']} CPUs, {m['processor']}")
    print(f"load avg  : {m['load_average_at_start']} (1, 5, 15 min) at start")
    print(
        "versions  : "
        + ", ".join(f"{k} {v}" for k, v in header["versions"].items())
        + f", numba for the peer: {numba_version}"
    )
    if numba_version == "stand-in":
        print(
            "WARNING: numba is not installed; tigramite's restricted permutation runs as "
            "plain Python, so its times (and the ratios) are inflated"
        )
    results = [bench_size(n, args, peer_class) for n in args.sizes]
    report(results, args)
    out = {
        **header,
        "sizes": results,
        "load_average_at_end": load_average(),
        "wall_s": time.perf_counter() - started,
    }
    print(f"\ntotal wall time: {out['wall_s']:.1f} s; load avg at end: {load_average()}")
    write_results(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
