"""Speed-up of discover_structure with worker processes and a local Dask cluster.

Runs the same structure discovery in this process, in a pool of worker processes and on a
local Dask cluster, checks that the answers are identical, and reports wall times, speed-ups
and what each executor sends: the data once per worker, then small batches of test indices.

    python benchmarks/bench_executors.py --quick
    python benchmarks/bench_executors.py --test rcit --n 10000 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import time
from pathlib import Path

import numpy as np

from _environment import load_average, machine_info, source_state, versions
from specialize import discover_structure, make_task_sequences
from specialize.ci.registry import make_ci_test
from specialize.structure.discover import seeded_test_params, sequence_ci_data
from specialize.structure.plan import plan_tests


def _time(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", default="rcit")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--state-dim", type=int, default=2)
    parser.add_argument("--mode", default="segment")
    parser.add_argument("--test-params", type=json.loads, default={}, help="JSON object")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="n = 2,000, one repeat")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/executors.json"))
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeats = 2_000, 1

    ds = make_task_sequences(
        args.n,
        args.steps,
        args.tasks,
        state_dim=args.state_dim,
        mechanism="nonlinear",
        random_state=0,
    )
    common = {
        "test": args.test,
        "mode": args.mode,
        "random_state": 0,
        "test_params": args.test_params,
    }
    print(
        f"{args.test}, {args.mode} mode, n = {args.n}, T = {args.steps}, M = {args.tasks}, "
        f"d = {args.state_dim}; median of {args.repeats}"
    )

    rows = []
    base_time, base = _time(lambda: discover_structure(ds.states, ds.tasks, **common), args.repeats)
    rows.append({"executor": "in-process", "workers": 1, "seconds": base_time})
    print(f"  in-process            {base_time:8.2f} s  ({base.n_tests} tests)")
    for workers in args.workers:
        for name, executor in (("processes", "processes"), ("dask (local)", "dask")):
            seconds, result = _time(
                lambda executor=executor, workers=workers: discover_structure(
                    ds.states, ds.tasks, executor=executor, n_jobs=workers, **common
                ),
                args.repeats,
            )
            same = np.allclose(result.tests["pvalue"], base.tests["pvalue"], rtol=1e-9, atol=0)
            rows.append(
                {"executor": name, "workers": workers, "seconds": seconds, "same_answers": same}
            )
            print(
                f"  {name:<14} x{workers:<2}    {seconds:8.2f} s  speed-up "
                f"{base_time / seconds:5.2f}  same answers: {same}"
            )

    # What is sent: the data and test once per worker; per batch, node indices and answers.
    T, M = args.steps, args.tasks
    data = sequence_ci_data(ds.states, ds.tasks[:, :, None])
    plan = plan_tests(args.mode, T, 2, M, base.conditioning).plan
    payload = len(
        pickle.dumps(
            (make_ci_test(args.test, **seeded_test_params(args.test, args.test_params, 0)), data)
        )
    )
    per_test_plan = len(pickle.dumps(plan)) / len(plan)
    per_test_result = 3 * 8 + 8
    print(
        f"  sent once per worker: {payload / 2**20:.1f} MiB; per test: "
        f"{per_test_plan:.0f} B of plan, {per_test_result} B of answer"
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "config": vars(args) | {"out": str(args.out)},
                "rows": rows,
                "bytes": {
                    "per_worker": payload,
                    "per_test_plan": per_test_plan,
                    "per_test_result": per_test_result,
                },
                "machine": machine_info(),
                "versions": versions(),
                "source": source_state(),
                "load_average": load_average(),
            },
            indent=2,
            default=str,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
