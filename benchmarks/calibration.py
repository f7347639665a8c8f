"""Calibration of the CI tests on null band cases of the nonlinear generator, at scale.

The larger version of the calibration tests: for each test and sample size, ``--cases`` null
band cases (``tests/nonlinear_cases.py``: the state of a step against a task given the
neighbouring states, d-separated in the true DAG; 1- and 2-dim states alternate), the rate of
p <= alpha for alpha in 0.01, 0.05, 0.1 with its binomial 99.9 % acceptance interval, and the
Kolmogorov-Smirnov p-value of uniformity; overall and for 2-dim states alone.

    python benchmarks/calibration.py --quick
    python benchmarks/calibration.py --tests rcit kci --sizes 1000 2000 --cases 600
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from _environment import machine_info, source_state, versions
from specialize.ci.registry import make_ci_test
from specialize.structure.discover import seeded_test_params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nonlinear_cases import band_cases  # noqa: E402

ALPHAS = (0.01, 0.05, 0.1)


def rates(p: np.ndarray) -> dict:
    out = {}
    for alpha in ALPHAS:
        low, high = stats.binom.interval(0.999, len(p), alpha)
        out[f"{alpha:g}"] = {
            "rate": float((p <= alpha).mean()),
            "bound": [low / len(p), high / len(p)],
            "inside": bool(low <= (p <= alpha).sum() <= high),
        }
    out["ks_pvalue"] = float(stats.kstest(p, "uniform").pvalue)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", nargs="+", default=["fisherz", "rcit", "kci", "cmiknn"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[500, 1000, 2000])
    parser.add_argument("--cases", type=int, default=600)
    parser.add_argument(
        "--params", type=json.loads, default={}, help='per test, e.g. {"cmiknn": {"knn": 0.1}}'
    )
    parser.add_argument("--quick", action="store_true", help="100 cases at n = 500")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/calibration.json"))
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.cases = [500], 100
    records = []
    print("test     n     cases  2-dim  alpha=0.05 rate [bound]      2-dim rate   KS p")
    for n in args.sizes:
        cases = band_cases(n, n_null=args.cases, random_state=1000)
        two = np.array([c.x.shape[1] == 2 for c in cases])
        for name in args.tests:
            params = dict(args.params.get(name, {}))
            start = time.perf_counter()
            # a seed per case: cases sharing one seed share their random features, and
            # their errors would not be independent
            p = np.array(
                [
                    make_ci_test(name, **seeded_test_params(name, params, i))
                    .test(c.x, c.y, c.z)
                    .pvalue
                    for i, c in enumerate(cases)
                ]
            )
            seconds = time.perf_counter() - start
            record = {
                "test": name,
                "n": n,
                "params": params,
                "seconds": seconds,
                "all": rates(p),
                "two_dim": rates(p[two]),
            }
            records.append(record)
            a, b = record["all"]["0.05"], record["two_dim"]["0.05"]
            print(
                f"{name:8s} {n:5d} {len(p):6d} {two.sum():6d}  {a['rate']:.3f} "
                f"[{a['bound'][0]:.3f}, {a['bound'][1]:.3f}] {'ok' if a['inside'] else 'OUT'}"
                f"   {b['rate']:.3f} {'ok' if b['inside'] else 'OUT'}   "
                f"{record['all']['ks_pvalue']:.3g}",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "records": records,
                "machine": machine_info(),
                "versions": versions(),
                "source": source_state(),
                "argv": sys.argv[1:],
            },
            indent=1,
            default=str,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
