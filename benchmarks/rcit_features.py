"""RCIT's numbers of random features: power, structure F1 and calibration, beside Fisher-z.

For each configuration: mean F1 of ``discover_structure(mode="unary", conditioning="band")``
over ``--seeds`` data sets of the nonlinear generator (n = ``--n``, T = 12, M = 3, 2-dim
states), the power of its unary tests at raw alpha = 0.05, and the type-I error of one test on
300 null band cases (``tests/nonlinear_cases.py``) at n = 1,000 and 2,000, over all cases and
over those with 2-dim states.

    python benchmarks/rcit_features.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from specialize import discover_structure, make_task_sequences
from specialize.ci import RCIT, FisherZ

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nonlinear_cases import band_cases  # noqa: E402

CONFIGS = (
    ("fisherz", {}),
    ("rcit", {"num_f2": 5, "num_f": 100}),
    ("rcit", {"num_f2": 10, "num_f": 100}),
    ("rcit", {"num_f2": 20, "num_f": 100}),
    ("rcit", {"num_f2": 20, "num_f": 200}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--null-cases", type=int, default=300)
    args = parser.parse_args()
    print("test params | mean F1 | unary power | type-I n=1000 (all, 2-dim) | n=2000 (all, 2-dim)")
    for name, params in CONFIGS:
        f1, hits, total = [], 0, 0
        for seed in range(args.seeds):
            ds = make_task_sequences(
                args.n, 12, 3, state_dim=2, mechanism="nonlinear", random_state=seed
            )
            seeded = {"random_state": seed} if name == "rcit" else {}
            result = discover_structure(
                ds.states,
                ds.tasks,
                test=name,
                mode="unary",
                conditioning="band",
                test_params=params,
                **seeded,
            )
            f1.append(result.scores(ds.segment_assignment)["f1"])
            truth = ds.segment_assignment[result.tests["unit"], result.tests["task"]]
            hits += int((result.tests["pvalue"][truth] <= 0.05).sum())
            total += int(truth.sum())
        rates = []
        for n in (1000, 2000):
            cases = band_cases(n, n_null=args.null_cases, random_state=0)
            test = RCIT(random_state=1, **params) if name == "rcit" else FisherZ()
            p = np.array([test.test(c.x, c.y, c.z).pvalue for c in cases])
            two = np.array([c.x.shape[1] == 2 for c in cases])
            rates.append(f"{(p <= 0.05).mean():.3f}, {(p[two] <= 0.05).mean():.3f}")
        print(f"{name} {params} | {np.mean(f1):.3f} | {hits}/{total} | {rates[0]} | {rates[1]}")


if __name__ == "__main__":
    main()
