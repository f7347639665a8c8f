"""NeuralCMI against CMIKnn and RCIT on high-dimensional cases: calibration, power and time.

Cases (``tests/nonlinear_cases.py``, ``conditional_case``): x and y nonlinear in a common z
(sine and tanh of random projections plus Gaussian noise). Null rows: x and y independent
given z; for NeuralCMI with its default contrast, with the plain mean score
(``y_permutations=0``) and for CMIKnn, the rate of p <= 0.05 with its binomial 99.9 %
acceptance interval and the KS p-value of uniformity (grid p-values spread by U(0, 1)/(B+1)).
Power rows: x of 50 columns of which 2 carry the dependence of y given z. Every test is
seeded per case; one thread (torch and BLAS).

    python benchmarks/bench_neural_cmi.py --null-cases 100 --power-cases 10
    python benchmarks/bench_neural_cmi.py --sizes 500 --noise 0.5 --power-cases 0 \
        --out benchmarks/results/neural_cmi_noise05.json
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from scipy import stats
from threadpoolctl import threadpool_limits

from _environment import ROOT, run_header, write_results
from specialize.ci.registry import make_ci_test

sys.path.insert(0, str(ROOT / "tests"))
from nonlinear_cases import conditional_case  # noqa: E402

ALPHA = 0.05
PERMUTATIONS = 199
#: (label, registry name, parameters) of the tests compared.
NULL_TESTS = [
    ("neural-cmi", "neural-cmi", {"n_permutations": PERMUTATIONS}),
    (
        "neural-cmi, y_permutations=0",
        "neural-cmi",
        {"n_permutations": PERMUTATIONS, "y_permutations": 0},
    ),
    ("cmiknn", "cmiknn", {"sig_samples": PERMUTATIONS}),
]
POWER_TESTS = [NULL_TESTS[0], NULL_TESTS[2], ("rcit", "rcit", {})]


def run_cases(name: str, params: dict, cases) -> tuple[np.ndarray, float]:
    """p-values of ``cases`` (seed, x, y, z) and the median seconds per test."""
    pvalues, seconds = [], []
    for seed, x, y, z in cases:
        started = time.perf_counter()
        pvalues.append(make_ci_test(name, random_state=seed, **params).test(x, y, z).pvalue)
        seconds.append(time.perf_counter() - started)
    return np.array(pvalues), float(np.median(seconds))


def null_summary(pvalues: np.ndarray, grid: int | None) -> dict:
    low, high = stats.binom.interval(0.999, len(pvalues), ALPHA)
    rejections = int((pvalues <= ALPHA).sum())
    spread = pvalues
    if grid:
        spread = pvalues - np.random.default_rng(0).random(len(pvalues)) / (grid + 1)
    return {
        "rate": rejections / len(pvalues),
        "bound": [low / len(pvalues), high / len(pvalues)],
        "inside": bool(low <= rejections <= high),
        "ks_pvalue": float(stats.kstest(spread, "uniform").pvalue),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[500, 1000])
    parser.add_argument("--null-cases", type=int, default=100)
    parser.add_argument("--power-cases", type=int, default=10)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "neural_cmi.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = run_header(args)
    print(header["machine"], header["versions"])
    records = []
    print(f"{'case':34s} {'test':30s} {'n':>5s} {'rate':>6s}  99.9% bound      KS p   s/test")
    with threadpool_limits(1):
        for n in args.sizes:
            cases = [
                (j, *conditional_case(10_000 + j, n, noise=args.noise))
                for j in range(args.null_cases)
            ]
            for label, name, params in NULL_TESTS:
                p, seconds = run_cases(name, params, cases)
                summary = null_summary(p, PERMUTATIONS)
                low, high = summary["bound"]
                records.append(
                    {"case": "null", "test": label, "n": n, "seconds": seconds, **summary}
                )
                print(
                    f"{f'null, noise {args.noise:g}':34s} {label:30s} {n:5d} "
                    f"{summary['rate']:6.3f}  [{low:.3f}, {high:.3f}]"
                    f" {summary['ks_pvalue']:8.3g} {seconds:6.2f}",
                    flush=True,
                )
        cases = [
            (j, *conditional_case(20_000 + j, 1000, effect=1.0, dx=50, informative=2))
            for j in range(args.power_cases)
        ]
        for label, name, params in POWER_TESTS if cases else []:
            p, seconds = run_cases(name, params, cases)
            rate = float((p <= ALPHA).mean())
            records.append(
                {"case": "power", "test": label, "n": 1000, "seconds": seconds, "rate": rate}
            )
            print(
                f"{'power, x 50 (2 informative)':34s} {label:30s} {1000:5d} {rate:6.3f}"
                f"{'':27s} {seconds:6.2f}",
                flush=True,
            )
    write_results(args.out, {**header, "records": records})


if __name__ == "__main__":
    main()
