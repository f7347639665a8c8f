"""Speed and memory of ``discover_structure`` against a test-by-test peer and np.cov.

Three parts:

1. Paper scale (n = 10,000, T = 20, L = 2, M = 4, state_dim = 2, linear mechanism). For every
   mode and conditioning rule: the median wall time of the whole ``discover_structure`` call;
   the median time of the same CI tests (the same x, y, z, taken from ``plan_tests``) run one
   by one through tigramite's ``ParCorrMult(correlation_type="PCCA_WilksLambda")``; and the
   median time of one ``np.cov`` of the flattened (n, T*D + M) data. The peer's p-values are
   compared with ours.
2. Scaling of the default mode (``conditioning="auto"``) in n and in T: median time, peak
   traced memory (tracemalloc, which sees numpy's allocations) of the call beyond its inputs,
   and fitted growth exponents.
3. Machine and versions, printed first.

Run ``python benchmarks/bench_structure_speed.py --quick`` for a smoke run of a few seconds,
or without ``--quick`` for the full run; ``--out FILE.json`` writes every raw timing.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

from specialize.datasets.sequences import make_task_sequences
from specialize.structure.discover import discover_structure, sequence_ci_data
from specialize.structure.plan import MODES, plan_tests

ALPHA = 0.05
CONDITIONINGS = ("band", "all")
MIB = 2**20


# --------------------------------------------------------------------------- environment


from _environment import load_average, run_header, write_results  # noqa: E402

# --------------------------------------------------------------------------- helpers


def make_data(n: int, T: int, M: int, D: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    ds = make_task_sequences(n, T, M, state_dim=D, random_state=seed)
    return np.ascontiguousarray(ds.obs), np.ascontiguousarray(ds.tasks)


def flatten(X: np.ndarray, G: np.ndarray) -> np.ndarray:
    """(n, T*D + M) matrix: step t in columns t*D .. t*D + D - 1, task i in column T*D + i."""
    return np.ascontiguousarray(np.concatenate([X.reshape(len(X), -1), G], axis=1))


def node_columns(T: int, D: int, M: int) -> list[np.ndarray]:
    """Columns of the flattened data for node t (step) and node T + i (task i)."""
    steps = [np.arange(t * D, (t + 1) * D) for t in range(T)]
    tasks = [np.array([T * D + i]) for i in range(M)]
    return steps + tasks


def columns_of(nodes, cols) -> np.ndarray:
    if len(nodes) == 0:
        return np.zeros(0, dtype=int)
    return np.concatenate([cols[j] for j in nodes])


def median(xs) -> float:
    return float(np.median(xs))


def median_phases(timings: list[dict]) -> dict:
    """Median over calls of each phase of ``TaskStructure.timings``."""
    return {k: median([t[k] for t in timings]) for k in timings[0]}


def fit_exponent(xs, ys) -> dict:
    """Least-squares slope of log y on log x, and the slope between the last two points."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    overall = float(np.polyfit(lx, ly, 1)[0]) if len(xs) >= 2 else float("nan")
    last = float((ly[-1] - ly[-2]) / (lx[-1] - lx[-2])) if len(xs) >= 2 else float("nan")
    return {"fit": overall, "last_two": last}


def peak_traced_bytes(fn) -> tuple[int, object]:
    """Peak memory traced while ``fn()`` runs, beyond what was allocated before it."""
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        value = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base, value


def repeats_for(seconds_per_call: float, budget_s: float, low: int, high: int) -> int:
    if seconds_per_call <= 0:
        return high
    return int(min(high, max(low, budget_s // seconds_per_call)))


def print_table(title: str, headers: list[str], rows: list[list]) -> None:
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[j]) for r in cells)) if cells else len(h)
              for j, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))


def _fmt(v) -> str:
    if isinstance(v, float):
        if v != v:
            return "nan"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        if abs(v) >= 0.01 or v == 0:
            return f"{v:.2f}"
        return f"{v:.1e}"
    return str(v)


# --------------------------------------------------------------------------- the peer


def make_peer(flat: np.ndarray, corrected: bool = False):
    """tigramite's ParCorrMult (Wilks lambda, analytic p-values) on the flattened data.

    ``corrected=True`` gives the same test with one line changed (see ``_corrected_peer_class``);
    it is used only to check agreement, never timed.
    """
    from tigramite import data_processing as pp
    from tigramite.independence_tests.parcorr_mult import ParCorrMult

    cls = _corrected_peer_class() if corrected else ParCorrMult
    peer = cls(correlation_type="PCCA_WilksLambda", significance="analytic")
    peer.set_dataframe(pp.DataFrame(flat))
    return peer


def _corrected_peer_class():
    """ParCorrMult whose Wilks lambda takes the eigenvalues of the (non-symmetric) matrix
    Cxx^-1 Cxy Cyy^-1 Cyx with ``np.linalg.eigvals``.

    tigramite 5.2.10 calls ``np.linalg.eigvalsh`` on that matrix, which reads only its lower
    triangle, so its squared canonical correlations (and Wilks lambda) are off whenever
    d_x > 1; the benchmark reports agreement with both the shipped and this corrected peer.
    """
    from scipy import linalg
    from tigramite.independence_tests.parcorr_mult import ParCorrMult

    class CorrectedParCorrMult(ParCorrMult):
        def compute_wilks_lambda_cca(self, X, Y, num_components=None):
            X = X - X.mean(axis=1, keepdims=True)
            Y = Y - Y.mean(axis=1, keepdims=True)
            cxx = np.atleast_2d(np.cov(X, rowvar=True))
            cyy = np.atleast_2d(np.cov(Y, rowvar=True))
            cxy = np.cov(X, Y, rowvar=True)[: X.shape[0], X.shape[0]:]
            eps = 1e-10
            cxx += eps * np.eye(cxx.shape[0])
            cyy += eps * np.eye(cyy.shape[0])
            m = linalg.inv(cxx) @ cxy @ linalg.inv(cyy) @ cxy.T
            rho_sq = np.clip(np.sort(np.real(np.linalg.eigvals(m)))[::-1], 0.0, None)
            if num_components is not None:
                rho_sq = rho_sq[:num_components]
            return float(np.prod(1 - rho_sq))

    return CorrectedParCorrMult


def run_peer(peer, flat: np.ndarray, plan, cols) -> tuple[np.ndarray, np.ndarray]:
    """Every test of ``plan`` through ``run_test_raw``, one at a time (column selection timed)."""
    values = np.empty(len(plan))
    pvalues = np.empty(len(plan))
    for k, (x, y, z) in enumerate(zip(plan.x, plan.y, plan.z, strict=True)):
        zc = columns_of(z, cols)
        values[k], pvalues[k] = peer.run_test_raw(
            flat[:, columns_of(x, cols)], flat[:, columns_of(y, cols)],
            flat[:, zc] if zc.size else None,
        )
    return values, pvalues


def compare_pvalues(ours, plan, cols, shipped, corrected, n) -> dict:
    """Vector (Bartlett) tests: our raw p-values against the shipped and the corrected peer.

    ``shipped`` and ``corrected`` are (Wilks lambda, p-value) arrays. "same factor" puts the
    corrected peer's Wilks lambda through our Bartlett factor n - d_z - 1 - (d_x + d_y + 1) / 2
    (tigramite uses n - d_z - (d_x + d_y + 1) / 2), which isolates the statistic itself.
    """
    dx = np.array([len(columns_of(x, cols)) for x in plan.x])
    dy = np.array([len(columns_of(y, cols)) for y in plan.y])
    dz = np.array([len(columns_of(z, cols)) for z in plan.z])
    vector = ~((dx == 1) & (dy == 1))
    out = {"n_vector_tests": int(vector.sum())}
    if not vector.any():
        return out
    p_ours = np.asarray(ours.tests["pvalue"])[vector]
    factor = (n - dz - 1 - (dx + dy + 1) / 2)[vector]
    log_wilks_ours = -np.asarray(ours.tests["statistic"])[vector] / factor
    out["dependent_ours"] = int(np.sum(p_ours <= ALPHA))
    for name, (values, pvalues) in (("shipped", shipped), ("corrected", corrected)):
        p_peer = pvalues[vector]
        log_wilks = np.log(np.clip(values[vector], 1e-300, None))
        p_same_factor = stats.chi2.sf(-factor * log_wilks, (dx * dy)[vector])
        out[name] = {
            "max_abs_dp": float(np.max(np.abs(p_ours - p_peer))),
            "max_abs_dp_same_factor": float(np.max(np.abs(p_ours - p_same_factor))),
            "max_rel_diff_log_wilks": float(np.max(
                np.abs(log_wilks_ours - log_wilks) / np.maximum(np.abs(log_wilks_ours), 1e-300)
            )),
            "differing_decisions": int(np.sum((p_ours <= ALPHA) != (p_peer <= ALPHA))),
            "dependent": int(np.sum(p_peer <= ALPHA)),
        }
    return out


# --------------------------------------------------------------------------- part 1


def bench_paper_scale(args) -> dict:
    n, T, L, M, D = args.n, args.T, 2, 4, 2
    X, G = make_data(n, T, M, D, args.seed)
    flat = flatten(X, G)
    cols = node_columns(T, D, M)
    ours_cols = sequence_ci_data(X, G[:, :, None]).node_columns
    assert all(np.array_equal(a, b) for a, b in zip(cols, ours_cols, strict=True))
    peer = make_peer(flat)
    corrected_peer = make_peer(flat, corrected=True)

    def ours_call(mode, conditioning):
        return discover_structure(X, G, segment_length=L, mode=mode, conditioning=conditioning)

    # Warm up: page faults on first use of memory, BLAS thread start, imports.
    for _ in range(3):
        ours_call("segment", "all")
        np.cov(flat, rowvar=False)

    configs = [(mode, c) for mode in args.modes for c in CONDITIONINGS]
    plans = {key: plan_tests(key[0], T, L, M, key[1]).plan for key in configs}
    t_ours = {key: [] for key in configs}
    t_peer = {key: [] for key in configs}
    t_cov = {key: [] for key in configs}
    phases = {key: [] for key in configs}
    results, peer_out = {}, {}
    for key in configs:
        ours_call(*key)
    # Rounds: every configuration once per round (ours, then np.cov, then the peer), so
    # that a burst of background load is spread over all configurations.
    for r in range(args.repeats):
        for key in configs:
            t0 = time.perf_counter()
            results[key] = ours_call(*key)
            t_ours[key].append(time.perf_counter() - t0)
            phases[key].append(dict(results[key].timings))
            t0 = time.perf_counter()
            np.cov(flat, rowvar=False)
            t_cov[key].append(time.perf_counter() - t0)
            if r < args.peer_repeats:
                t0 = time.perf_counter()
                peer_out[key] = run_peer(peer, flat, plans[key], cols)
                t_peer[key].append(time.perf_counter() - t0)
        if (r + 1) % 5 == 0 or r + 1 == args.repeats:
            print(f"  round {r + 1}/{args.repeats} done", flush=True)
    records = []
    for key in configs:
        mode, conditioning = key
        plan, result = plans[key], results[key]
        corrected_out = run_peer(corrected_peer, flat, plan, cols)  # untimed
        agreement = compare_pvalues(result, plan, cols, peer_out[key], corrected_out, n)
        rec = {
            "mode": mode,
            "conditioning": conditioning,
            "resolved_conditioning": result.conditioning,
            "n_tests": len(plan),
            "ours_s": t_ours[key],
            "peer_s": t_peer[key],
            "cov_s": t_cov[key],
            "ours_median_s": median(t_ours[key]),
            "peer_median_s": median(t_peer[key]),
            "cov_median_s": median(t_cov[key]),
            "ours_phases_median_s": median_phases(phases[key]),
            "agreement": agreement,
        }
        rec["peer_over_ours"] = rec["peer_median_s"] / rec["ours_median_s"]
        rec["ours_over_cov"] = rec["ours_median_s"] / rec["cov_median_s"]
        records.append(rec)
    all_cov = [t for rec in records for t in rec["cov_s"]]
    return {
        "n": n, "T": T, "L": L, "M": M, "state_dim": D, "seed": args.seed,
        "flat_shape": list(flat.shape),
        "repeats": args.repeats, "peer_repeats": args.peer_repeats,
        "cov_median_s_pooled": median(all_cov),
        "records": records,
    }


def report_paper_scale(part: dict, target_peer: float, target_cov: float) -> None:
    rows, agree = [], []
    for rec in part["records"]:
        rows.append([
            rec["mode"], rec["conditioning"], rec["n_tests"],
            1e3 * rec["ours_median_s"], 1e3 * rec["peer_median_s"], rec["peer_over_ours"],
            1e3 * rec["cov_median_s"], rec["ours_over_cov"],
            "yes" if rec["peer_over_ours"] >= target_peer else "NO",
            "yes" if rec["ours_over_cov"] <= target_cov else "NO",
        ])
        a = rec["agreement"]
        if "shipped" in a:
            sh, co = a["shipped"], a["corrected"]
            agree.append([
                rec["mode"], rec["conditioning"], a["n_vector_tests"], a["dependent_ours"],
                sh["max_abs_dp"], sh["max_rel_diff_log_wilks"], sh["differing_decisions"],
                co["max_abs_dp"], co["max_abs_dp_same_factor"], co["max_rel_diff_log_wilks"],
                co["differing_decisions"],
            ])
    print_table(
        f"Paper scale: n={part['n']}, T={part['T']}, L={part['L']}, M={part['M']}, "
        f"state_dim={part['state_dim']}; medians of {part['repeats']} (ours, np.cov) and "
        f"{part['peer_repeats']} (peer) repeats",
        ["mode", "cond", "tests", "ours ms", "peer ms", "peer/ours", "cov ms", "ours/cov",
         f">={target_peer:g}x", f"<={target_cov:g}x cov"],
        rows,
    )
    print(f"np.cov of the flattened {part['flat_shape'][0]} x {part['flat_shape'][1]} data, "
          f"pooled median: {1e3 * part['cov_median_s_pooled']:.2f} ms")
    phase_names = list(part["records"][0]["ours_phases_median_s"])
    print_table(
        "Where our time goes: median ms per phase of discover_structure (TaskStructure.timings)",
        ["mode", "cond", *phase_names],
        [[rec["mode"], rec["conditioning"],
          *(1e3 * rec["ours_phases_median_s"][k] for k in phase_names)]
         for rec in part["records"]],
    )
    print_table(
        f"Agreement with the peer (vector tests, raw p-values, alpha={ALPHA}); shipped = "
        "tigramite as installed, corrected = eigvals instead of eigvalsh in its Wilks lambda",
        ["mode", "cond", "vector tests", "dep. ours", "shipped max|dp|", "shipped rel dlogW",
         "shipped dec. differ", "corr. max|dp|", "corr. max|dp| same factor",
         "corr. rel dlogW", "corr. dec. differ"],
        agree,
    )


# --------------------------------------------------------------------------- part 2


class ScalingPoint:
    """One data set of the scaling grid, timed over rounds shared with the other points."""

    def __init__(self, X, G, args):
        self.X, self.G = X, G
        self.flat = flatten(X, G)
        first = time.perf_counter()
        self.call()
        first = time.perf_counter() - first
        self.repeats = repeats_for(first, args.scaling_budget, args.min_scaling_repeats,
                                   args.repeats)
        self.times, self.cov_times, self.phases, self.result = [], [], [], None

    def call(self):
        return discover_structure(self.X, self.G)  # default mode and conditioning

    def time_once(self):
        t0 = time.perf_counter()
        self.result = self.call()
        self.times.append(time.perf_counter() - t0)
        self.phases.append(dict(self.result.timings))
        t0 = time.perf_counter()
        np.cov(self.flat, rowvar=False)
        self.cov_times.append(time.perf_counter() - t0)

    def record(self) -> dict:
        peak, _ = peak_traced_bytes(self.call)
        cov_peak, _ = peak_traced_bytes(lambda: np.cov(self.flat, rowvar=False))
        X, G, result = self.X, self.G, self.result
        return {
            "n": X.shape[0], "T": X.shape[1], "state_dim": X.shape[2], "M": G.shape[1],
            "mode": result.mode, "resolved_conditioning": result.conditioning,
            "n_tests": len(result.tests["pvalue"]),
            "repeats": self.repeats,
            "ours_s": self.times, "ours_median_s": median(self.times),
            "phases_median_s": median_phases(self.phases),
            "cov_s": self.cov_times, "cov_median_s": median(self.cov_times),
            "peak_bytes": int(peak), "cov_peak_bytes": int(cov_peak),
            "input_bytes": int(X.nbytes + G.nbytes),
        }


def bench_scaling(args) -> dict:
    M, D = 4, 2
    points = [("n", ScalingPoint(*make_data(n, 20, M, D, args.seed), args))
              for n in args.scaling_n]
    points += [("T", ScalingPoint(*make_data(args.n, T, M, D, args.seed), args))
               for T in args.scaling_T]
    for r in range(max(p.repeats for _, p in points)):
        for _, p in points:
            if r < p.repeats:
                p.time_once()
    by_n, by_T = [], []
    for axis, p in points:
        (by_n if axis == "n" else by_T).append(p.record())
        _progress_line(axis, (by_n if axis == "n" else by_T)[-1])
    del points
    exps = {
        "time_vs_n": fit_exponent([r["n"] for r in by_n], [r["ours_median_s"] for r in by_n]),
        "memory_vs_n": fit_exponent([r["n"] for r in by_n], [r["peak_bytes"] for r in by_n]),
        "time_vs_T": fit_exponent([r["T"] for r in by_T], [r["ours_median_s"] for r in by_T]),
        "memory_vs_T": fit_exponent([r["T"] for r in by_T], [r["peak_bytes"] for r in by_T]),
        "cov_time_vs_n": fit_exponent([r["n"] for r in by_n], [r["cov_median_s"] for r in by_n]),
        "cov_time_vs_T": fit_exponent([r["T"] for r in by_T], [r["cov_median_s"] for r in by_T]),
    }
    return {"by_n": by_n, "by_T": by_T, "exponents": exps}


def _progress_line(axis, r):
    print(f"  {axis}: n={r['n']:>8} T={r['T']:>4}: {1e3 * r['ours_median_s']:9.2f} ms "
          f"({r['repeats']} repeats), peak {r['peak_bytes'] / MIB:8.2f} MiB, "
          f"conditioning={r['resolved_conditioning']}", flush=True)


def report_scaling(part: dict) -> None:
    headers = ["n", "T", "cond", "tests", "reps", "ours ms", "prepare ms", "tests ms",
               "cov ms", "ours/cov", "peak MiB", "cov peak MiB", "input MiB"]

    def row(r):
        return [r["n"], r["T"], r["resolved_conditioning"], r["n_tests"], r["repeats"],
                1e3 * r["ours_median_s"], 1e3 * r["phases_median_s"]["prepare"],
                1e3 * r["phases_median_s"]["tests"],
                1e3 * r["cov_median_s"], r["ours_median_s"] / r["cov_median_s"],
                r["peak_bytes"] / MIB, r["cov_peak_bytes"] / MIB, r["input_bytes"] / MIB]

    print_table("Scaling in n (T=20, state_dim=2, M=4, default mode 'segment', "
                "conditioning='auto')", headers, [row(r) for r in part["by_n"]])
    print_table("Scaling in T (n fixed, state_dim=2, M=4, default mode, conditioning='auto')",
                headers, [row(r) for r in part["by_T"]])
    print_table("Growth exponents (slope of log y vs log x)",
                ["quantity", "LS fit", "last two points"],
                [[k, v["fit"], v["last_two"]] for k, v in part["exponents"].items()])


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run of a few seconds (small n, few repeats, small scaling grid)")
    p.add_argument("--out", type=Path, default=None, help="write the raw figures as JSON here")
    p.add_argument("--n", type=int, default=10_000, help="samples at paper scale")
    p.add_argument("--T", type=int, default=20, help="steps at paper scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=20,
                   help="timed repeats of discover_structure and np.cov (max for scaling)")
    p.add_argument("--peer-repeats", type=int, default=5,
                   help="timed repeats of the peer (each runs every test of the plan)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--scaling-n", type=int, nargs="+",
                   default=[1_000, 10_000, 100_000, 1_000_000])
    p.add_argument("--scaling-T", type=int, nargs="+", default=[20, 50, 100, 200, 400])
    p.add_argument("--scaling-budget", type=float, default=4.0,
                   help="seconds per scaling point; sets its repeats within "
                        "[--min-scaling-repeats, --repeats]")
    p.add_argument("--min-scaling-repeats", type=int, default=5)
    p.add_argument("--skip-peer-part", action="store_true", help="only run the scaling part")
    p.add_argument("--skip-scaling", action="store_true", help="only run the paper-scale part")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="limit BLAS threads (ours, the peer and np.cov alike; needs "
                        "threadpoolctl); default: the library default")
    p.add_argument("--target-peer", type=float, default=50.0)
    p.add_argument("--target-cov", type=float, default=10.0)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.T, args.repeats, args.peer_repeats = 1_000, 10, 3, 1
        args.scaling_n, args.scaling_T = [1_000, 4_000], [10, 20]
        args.scaling_budget, args.min_scaling_repeats = 0.2, 2
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.blas_threads is None:
        return run(args)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        sys.exit("--blas-threads needs threadpoolctl (pip install threadpoolctl)")
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        return run(args)


def run(args) -> int:
    warnings.filterwarnings("ignore", module="tigramite")
    started = time.perf_counter()
    header = run_header(args)
    print("specialize structure-discovery speed benchmark")
    print(f"date      : {header['date']}")
    print(f"command   : {header['command']}")
    m = header["machine"]
    print(f"machine   : {m['platform']}, {m['cpu_count']} CPUs, {m['processor']}")
    print(f"BLAS      : {m['blas']}, pools {m['blas_threads']}, "
          f"thread env: {m['thread_env'] or 'unset'}")
    print(f"load avg  : {m['load_average_at_start']} (1, 5, 15 min) at start")
    print("versions  : " + ", ".join(f"{k} {v}" for k, v in header["versions"].items()))
    s = header["source"]
    print(f"source    : commit {s['commit']}, uncommitted src diff sha1 {s['src_diff_sha1']}, "
          f"untracked in src: {s['src_untracked']}")

    out = dict(header)
    if not args.skip_peer_part:
        print("\n[1] paper scale: ours vs tigramite ParCorrMult test by test, vs np.cov")
        out["paper_scale"] = bench_paper_scale(args)
        out["paper_scale"]["load_average_at_end"] = load_average()
        report_paper_scale(out["paper_scale"], args.target_peer, args.target_cov)
    if not args.skip_scaling:
        print("\n[2] scaling of the default mode")
        out["scaling"] = bench_scaling(args)
        out["scaling"]["load_average_at_end"] = load_average()
        report_scaling(out["scaling"])
    out["wall_s"] = time.perf_counter() - started
    print(f"\ntotal benchmark wall time: {out['wall_s']:.1f} s; load avg at end: "
          f"{load_average()}")
    if args.out is not None:
        write_results(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
