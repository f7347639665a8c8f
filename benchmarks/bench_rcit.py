"""Speed and accuracy of RCIT in ``discover_structure`` against causal-learn's RCIT, test by test.

The target: the whole ``discover_structure`` call with ``RCIT`` (default mode "segment",
conditioning "auto", which resolves to "band" for RCIT) on the nonlinear generator at
n = 10,000, T = 20, M = 4, 2-dimensional states is at least 10 times faster than the same CI
tests (the same x, y, z, from ``plan_tests``) answered one by one through causal-learn's
``CIT(data, "rcit")``, with an F1 at least as high.

For every seed: the median wall time of ``discover_structure`` over ``--repeats`` calls, the
wall time of the peer's loop over the plan (``--peer-repeats`` times), the F1 of both against
the true segment-task assignment (the peer's p-values go through the same decision rule, via
the result's stored tests), and how often the two decide alike. ``--profile`` adds where our
time goes (bandwidths, features, Gram matrices, null distributions).

causal-learn 0.1.4 with NumPy 2 answers ``approx="lpd4"`` with its Hall-Buckley-Eagleson
fallback (its ``momentchi2`` dependency calls the removed ``numpy.math``), so the peer as
installed is timed and scored; its null is the cheaper one.

``python benchmarks/bench_rcit.py --quick`` is a smoke run (n = 4,000, T = 10, M = 2, one
seed); without ``--quick`` it is the target configuration over 3 seeds. ``--threads N`` pins
torch's and the BLAS's threads for both; ``--device cuda`` times ours on a GPU. Raw figures go
to ``--out`` (default ``benchmarks/results/bench_rcit.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import importlib.metadata
import pstats
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from _environment import ROOT, load_average, run_header, versions, write_results
from specialize.ci.rcit import RCIT
from specialize.datasets.sequences import make_task_sequences
from specialize.structure.discover import discover_structure, sequence_ci_data
from specialize.structure.plan import plan_tests

ALPHA = 0.05
L = 2
#: Internal steps of RCIT reported by ``--profile`` (cumulative seconds of one call).
PROFILED = {
    "bandwidths (median distances)": "_sigmas",
    "features (projection, cosine, centring)": "_stacked_features",
    "Gram matrices and residual sums": "_gram",
    "pair products of residuals": "_product_sums",
    "eigenvalues and statistics": "_finish",
    "null tail (lpd4)": "weighted_chi2_sf",
}


def median(xs) -> float:
    return float(np.median(xs))


def make_data(n: int, T: int, M: int, D: int, seed: int):
    return make_task_sequences(
        n, T, M, segment_length=L, state_dim=D, mechanism="nonlinear", random_state=seed
    )


def ours(ds, args):
    test = RCIT(random_state=args.test_seed, device=args.device)
    return discover_structure(ds.obs, ds.tasks, segment_length=L, test=test)


def peer_pvalues(ds, plan) -> tuple[np.ndarray, float]:
    """Every test of ``plan`` through causal-learn's CIT(data, "rcit"), one at a time."""
    from causallearn.utils.cit import CIT

    n = ds.obs.shape[0]
    flat = np.concatenate([ds.obs.reshape(n, -1), ds.tasks], axis=1)
    data = sequence_ci_data(ds.obs, ds.tasks[:, :, None])
    columns = [
        (
            [int(c) for c in data.columns(x)],
            [int(c) for c in data.columns(y)],
            [int(c) for c in data.columns(z)],
        )
        for x, y, z in zip(plan.x, plan.y, plan.z, strict=True)
    ]
    cit = CIT(flat, "rcit")
    pvalues = np.empty(len(plan))
    started = time.perf_counter()
    for k, (x, y, z) in enumerate(columns):
        pvalues[k] = cit(x, y, z)
    elapsed = time.perf_counter() - started
    return pvalues, elapsed


def profile_once(ds, args) -> dict:
    """Cumulative seconds of RCIT's internal steps in one ``discover_structure`` call."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.runcall(ours, ds, args)
    total = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    out = {"total_s (profiled)": total}
    for label, name in PROFILED.items():
        out[label] = sum(
            row[3]
            for key, row in stats.stats.items()
            if key[2] == name  # cumulative time
        )
    return out


def bench_seed(seed: int, args) -> dict:
    ds = make_data(args.n, args.T, args.M, args.D, seed)
    ours(ds, args)  # warm-up: imports, first allocations
    times, result = [], None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = ours(ds, args)
        times.append(time.perf_counter() - t0)
    plan = plan_tests("segment", args.T, L, args.M, result.conditioning)
    assert result.mode == "segment" and len(plan) == result.n_tests
    peer_times, peer_p = [], None
    for _ in range(args.peer_repeats):
        peer_p, elapsed = peer_pvalues(ds, plan.plan)
        peer_times.append(elapsed)
    peer_result = dataclasses.replace(result, tests={**result.tests, "pvalue": peer_p})
    truth = ds.segment_assignment
    our_scores, peer_scores = result.scores(truth), peer_result.scores(truth)
    p = result.tests["pvalue"]
    record = {
        "seed": seed,
        "n_tests": len(plan),
        "conditioning": result.conditioning,
        "ours_s": times,
        "ours_median_s": median(times),
        "ours_phases_s": dict(result.timings),
        "peer_s": peer_times,
        "peer_median_s": median(peer_times),
        "peer_per_test_ms": 1e3 * median(peer_times) / len(plan),
        "ours_f1": our_scores["f1"],
        "peer_f1": peer_scores["f1"],
        "ours_scores": {k: _plain(v) for k, v in our_scores.items()},
        "peer_scores": {k: _plain(v) for k, v in peer_scores.items()},
        "raw_decisions_agree": float(np.mean((p <= ALPHA) == (peer_p <= ALPHA))),
        "ours_raw_rejections": int((p <= ALPHA).sum()),
        "peer_raw_rejections": int((peer_p <= ALPHA).sum()),
    }
    record["speedup"] = record["peer_median_s"] / record["ours_median_s"]
    if args.profile:
        record["profile_s"] = profile_once(ds, args)
    return record


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def report(records: list, args) -> None:
    print(
        f"\nn={args.n}, T={args.T}, M={args.M}, state_dim={args.D}, mode=segment, "
        f"device={args.device}; ours: median of {args.repeats}, peer: median of "
        f"{args.peer_repeats}"
    )
    header = (
        f"{'seed':>4} {'tests':>5} {'cond':>5} {'ours s':>8} {'peer s':>8} "
        f"{'peer ms/test':>12} {'speedup':>8} {'F1 ours':>8} {'F1 peer':>8} "
        f"{'agree':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in records:
        print(
            f"{r['seed']:>4} {r['n_tests']:>5} {r['conditioning']:>5} "
            f"{r['ours_median_s']:>8.3f} {r['peer_median_s']:>8.3f} "
            f"{r['peer_per_test_ms']:>12.1f} {r['speedup']:>8.1f} {r['ours_f1']:>8.3f} "
            f"{r['peer_f1']:>8.3f} {r['raw_decisions_agree']:>6.2f}"
        )
    speed = [r["speedup"] for r in records]
    f1_ours = np.mean([r["ours_f1"] for r in records])
    f1_peer = np.mean([r["peer_f1"] for r in records])
    print(
        f"median speedup {np.median(speed):.1f}x (target >= 10x: "
        f"{'yes' if np.median(speed) >= 10 else 'NO'}); mean F1 ours {f1_ours:.3f}, "
        f"peer {f1_peer:.3f} (target ours >= peer: {'yes' if f1_ours >= f1_peer else 'NO'})"
    )
    for r in records:
        if "profile_s" in r:
            print(f"\nwhere our time goes (seed {r['seed']}, one profiled call, cumulative s):")
            for label, seconds in r["profile_s"].items():
                print(f"  {label:<42} {seconds:8.3f}")
            break


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smoke run (small n, T, M, one seed)")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--T", type=int, default=20)
    p.add_argument("--M", type=int, default=4)
    p.add_argument("--D", type=int, default=2, help="state dimension")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data sets")
    p.add_argument("--test-seed", type=int, default=0, help="random_state of RCIT")
    p.add_argument("--repeats", type=int, default=7, help="timed calls of ours per seed")
    p.add_argument("--peer-repeats", type=int, default=3, help="timed peer loops per seed")
    p.add_argument("--device", default="cpu", help="torch device of ours")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and BLAS threads for both (needs threadpoolctl); default: as is",
    )
    p.add_argument("--profile", action="store_true", help="where our time goes")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_rcit.json")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.T, args.M, args.seeds, args.repeats = 4_000, 10, 2, [0], 3
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", module="causallearn")
    started = time.perf_counter()
    limit = contextlib.nullcontext()
    if args.threads is not None:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        limit = threadpool_limits(args.threads)
    import torch

    header = run_header(
        args,
        versions={**versions(), **{p: _version(p) for p in ("torch", "causal-learn")}},
        torch_threads=torch.get_num_threads(),
    )
    m = header["machine"]
    print("RCIT benchmark: discover_structure vs causal-learn's RCIT test by test")
    print(
        f"machine: {m['platform']}, {m['cpu_count']} CPUs, {m['processor']}; "
        f"torch threads {header['torch_threads']}; load {m['load_average_at_start']}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in header["versions"].items()))
    with limit:
        records = []
        for seed in args.seeds:
            records.append(bench_seed(seed, args))
            print(
                f"  seed {seed}: ours {records[-1]['ours_median_s']:.3f} s, peer "
                f"{records[-1]['peer_median_s']:.2f} s",
                flush=True,
            )
    report(records, args)
    out = {
        **header,
        "records": records,
        "load_average_at_end": load_average(),
        "wall_s": time.perf_counter() - started,
    }
    write_results(args.out, out)
    return 0


def _version(package: str):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
