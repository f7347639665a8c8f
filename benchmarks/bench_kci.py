"""Time and peak memory of one KCI test, ours against causal-learn's, on the same data.

For each sample size n and state dimension d, one band test of the nonlinear generator (the
state of an inner step against a task, given the two neighbouring states: x has d columns, y
one, z 2d) is answered by

- ``ours-auto``: ``KCI()``, the default (exact up to n = 1,000, low-rank above;
  dof-corrected null);
- ``ours-auto-standard``: ``KCI(null="standard")``, the paper's (and causal-learn's) null;
- ``ours-exact`` / ``ours-low-rank``: the two paths forced (exact only where it fits
  ``--exact-max-n``);
- ``causal-learn``: ``CIT(data, "kci")``, skipped above ``--peer-max-n``.

Every configuration runs in a fresh Python process, so that its peak resident memory
(``resource.getrusage`` max RSS) is its own: the figure reported is the peak RSS during the
call minus the RSS just before it (the process has imported its libraries and built the data
by then). On CUDA the peak device memory is reported too. The call is timed after one small
warm-up call (lazy imports and library initialisation are not part of a test's cost).

``python benchmarks/bench_kci.py --quick`` runs n = 500 and 1,000 (a few minutes, most of it
causal-learn); without ``--quick``, n = 1,000, 2,000 and 5,000 (causal-learn at 5,000 takes
minutes and over 2 GB). ``--out FILE.json`` chooses where the raw figures go (default
``benchmarks/results/kci.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _environment import load_average, run_header, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
METHODS = ("ours-auto", "ours-auto-standard", "ours-exact", "ours-low-rank", "causal-learn")


# --------------------------------------------------------------------------- one configuration


def band_test_data(n: int, d: int, seed: int):
    """x (n, d), y (n, 1), z (n, 2d): an inner step's state, a task, the neighbouring states.

    The task is the first whose segment contains the step (a dependent case), so that the
    p-values compared between the implementations are not all near 1.
    """
    from specialize.datasets import make_task_sequences

    T = 6
    ds = make_task_sequences(
        n, T, 2, segment_length=2, state_dim=d, mechanism="nonlinear", random_state=seed
    )
    t = 2
    tasks = np.flatnonzero(ds.step_assignment[t]) if hasattr(ds, "step_assignment") else []
    i = int(tasks[0]) if len(tasks) else 0
    x = ds.states[:, t, :]
    y = ds.tasks[:, i : i + 1]
    z = ds.states[:, [t - 1, t + 1], :].reshape(n, -1)
    return np.ascontiguousarray(x), np.ascontiguousarray(y), np.ascontiguousarray(z)


def current_rss() -> int:
    """Resident memory of this process now, in bytes."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """Largest resident memory of this process so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(config: dict) -> dict:
    """Run one configuration in this (fresh) process and return its figures."""
    method, n, d, seed, device = (
        config["method"], config["n"], config["d"], config["seed"], config["device"]
    )
    x, y, z = band_test_data(n, d, seed)
    small = band_test_data(60, d, seed + 1)
    if os.environ.get("OMP_NUM_THREADS") and method != "causal-learn":
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    if method == "causal-learn":
        from causallearn.utils.cit import CIT

        def call(x, y, z):
            data = np.column_stack([x, y, z])
            dx = x.shape[1]
            cond = list(range(dx + 1, data.shape[1]))
            return float(CIT(data, "kci")(list(range(dx)), [dx], cond)), None
    else:
        import torch

        from specialize.ci.kci import KCI

        params = {
            "ours-auto": {},
            "ours-auto-standard": {"null": "standard"},
            "ours-exact": {"approximation": "exact", "max_memory_mib": 1e9},
            "ours-low-rank": {"approximation": "low-rank"},
        }[method]
        test = KCI(device=device, **params)

        def call(x, y, z):
            result = test.test(x, y, z)
            if device != "cpu":
                torch.cuda.synchronize()
            return result.pvalue, result.statistic

    call(*small)  # warm-up: lazy imports, thread pools, CUDA context
    if device != "cpu":
        import torch

        torch.cuda.reset_peak_memory_stats()
    before = current_rss()
    started = time.perf_counter()
    pvalue, statistic = call(x, y, z)
    seconds = time.perf_counter() - started
    out = {
        **config,
        "seconds": seconds,
        "pvalue": pvalue,
        "statistic": statistic,
        "rss_before_mib": before / MIB,
        "peak_rss_mib": peak_rss() / MIB,
        "peak_increase_mib": max(peak_rss() - before, 0) / MIB,
    }
    if device != "cpu":
        import torch

        out["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / MIB
    return out


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def run_isolated(config: dict, timeout: float, threads: int | None) -> dict:
    """Run ``config`` in a fresh interpreter; a failure or timeout is recorded, not raised.

    ``threads`` pins the BLAS, OpenMP and PyTorch thread pools of that interpreter.
    """
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(config)]
    env = dict(os.environ)
    if threads is not None:
        env.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {**config, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        return {**config, "error": " | ".join(tail) or f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the benchmark


def configurations(args) -> list[dict]:
    out = []
    for d in args.dims:
        for n in args.sizes:
            for method in args.methods:
                if method == "ours-exact" and n > args.exact_max_n:
                    continue
                if method == "causal-learn" and n > args.peer_max_n:
                    continue
                for repeat in range(args.repeats if method != "causal-learn" else 1):
                    out.append({
                        "method": method, "n": n, "d": d, "seed": args.seed,
                        "device": args.device, "repeat": repeat,
                    })
    return out


def summarise(records: list[dict]) -> list[dict]:
    """Median time and memory per (d, n, method), with the speed-up over causal-learn."""
    rows = []
    keys = sorted({(r["d"], r["n"], r["method"]) for r in records},
                  key=lambda k: (k[0], k[1], METHODS.index(k[2])))
    for d, n, method in keys:
        runs = [r for r in records if (r["d"], r["n"], r["method"]) == (d, n, method)]
        good = [r for r in runs if "error" not in r]
        if not good:
            rows.append({"d": d, "n": n, "method": method, "error": runs[0]["error"]})
            continue
        row = {
            "d": d, "n": n, "method": method, "runs": len(good),
            "seconds": float(np.median([r["seconds"] for r in good])),
            "peak_increase_mib": float(np.median([r["peak_increase_mib"] for r in good])),
            "peak_rss_mib": float(np.median([r["peak_rss_mib"] for r in good])),
            "pvalue": good[0]["pvalue"],
        }
        if "cuda_peak_allocated_mib" in good[0]:
            row["cuda_peak_allocated_mib"] = good[0]["cuda_peak_allocated_mib"]
        rows.append(row)
    for row in rows:
        peer = next((r for r in rows if (r["d"], r["n"], r["method"]) ==
                     (row["d"], row["n"], "causal-learn") and "error" not in r), None)
        if peer is not None and "error" not in row:
            row["speedup_vs_causal_learn"] = peer["seconds"] / row["seconds"]
            row["abs_pvalue_difference"] = abs(row["pvalue"] - peer["pvalue"])
    return rows


def print_table(rows: list[dict]) -> None:
    headers = ["d", "n", "method", "seconds", "peak +MiB", "peak RSS MiB", "x faster",
               "p-value", "|p - p_cl|"]
    cells = []
    for r in rows:
        if "error" in r:
            cells.append([str(r["d"]), f"{r['n']:,}", r["method"], "error: " + r["error"][:60],
                          "", "", "", "", ""])
            continue
        cells.append([
            str(r["d"]), f"{r['n']:,}", r["method"], f"{r['seconds']:.3f}",
            f"{r['peak_increase_mib']:.0f}", f"{r['peak_rss_mib']:.0f}",
            f"{r['speedup_vs_causal_learn']:.1f}" if "speedup_vs_causal_learn" in r else "",
            f"{r['pvalue']:.4g}",
            f"{r['abs_pvalue_difference']:.1e}" if "abs_pvalue_difference" in r else "",
        ])
    widths = [max(len(h), *(len(c[j]) for c in cells)) for j, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths, strict=True)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="n = 500 and 1,000 only")
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="sample sizes (default 1000 2000 5000, or 500 1000 with --quick)")
    p.add_argument("--dims", type=int, nargs="+", default=[1, 2], help="state dimensions d")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--repeats", type=int, default=1, help="runs of each of our configurations")
    p.add_argument("--exact-max-n", type=int, default=2000, help="largest n for ours-exact")
    p.add_argument("--peer-max-n", type=int, default=5000, help="largest n for causal-learn")
    p.add_argument("--device", default="cpu", help="device of our test: cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per configuration")
    p.add_argument("--threads", type=int, default=None,
                   help="pin BLAS/OpenMP/PyTorch threads of every run (steadies timings on a "
                        "shared machine; oversubscribed OpenMP pools slow both libraries "
                        "down many times over)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kci.json")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.sizes is None:
        args.sizes = [500, 1000] if args.quick else [1000, 2000, 5000]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    started = time.perf_counter()
    header = run_header(args)
    try:
        import torch

        header["versions"]["torch"] = torch.__version__
        header["torch_threads"] = args.threads or torch.get_num_threads()
        if args.device != "cpu":
            header["cuda_device"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    m = header["machine"]
    print("KCI benchmark: one band test, ours vs causal-learn")
    print(f"date      : {header['date']}")
    print(f"machine   : {m['platform']}, {m['cpu_count']} CPUs, {m['processor']}")
    print(f"threads   : torch {header.get('torch_threads')}, BLAS {m['blas_threads']}, "
          f"env {m['thread_env'] or 'unset'}")
    print(f"load avg  : {m['load_average_at_start']} at start")
    print("versions  : " + ", ".join(f"{k} {v}" for k, v in header["versions"].items()))
    records = []
    for config in configurations(args):
        record = run_isolated(config, args.timeout, args.threads)
        records.append(record)
        status = record.get("error") or (
            f"{record['seconds']:.3f} s, +{record['peak_increase_mib']:.0f} MiB, "
            f"p = {record['pvalue']:.4g}"
        )
        print(f"  d={config['d']} n={config['n']:>6,} {config['method']:>14}: {status}",
              flush=True)
    rows = summarise(records)
    print()
    print_table(rows)
    out = {**header, "records": records, "summary": rows,
           "load_average_at_end": load_average(), "wall_s": time.perf_counter() - started}
    print(f"\nwall time {out['wall_s']:.0f} s")
    write_results(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
