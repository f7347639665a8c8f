"""Accuracy of ``discover_structure`` on simulated sequences: every mode, conditioning rule,
correction and aggregation rule, single-test power, a test-by-test peer, and actions that feed
the next state.

Data: ``make_task_sequences(n, 20, 4, segment_length=2, state_dim=D, random_state=seed)`` for
seeds 0 .. seeds-1 (T = 20 steps, K = 10 segments, M = 4 tasks, linear mechanism, states
observed). The segment-task assignment depends on the seed only, so every n and every D of one
seed share the same truth. Scores are segment-level, against ``ds.segment_assignment``.

Parts:

1. Main table (D = 2): precision, recall, F1 and exact recoveries for every mode x
   conditioning x correction (x aggregation in pairwise mode), per n. Each (data set, mode,
   conditioning) is run once with ``correction=None``; the other corrections and aggregations
   come from ``TaskStructure.with_decision`` (no test is run again).
2. Single-test power at raw alpha = 0.05 (D in {1, 2}): the fraction of truly dependent
   tests with p <= alpha, and of null tests. Pairwise tests are about (k, v, i), dependent when
   segments k and v both serve task i; unary and block tests about (k, i).
3. The peer-built variant: the unary band tests run one by one through tigramite
   (``ParCorrMult(correlation_type="PCCA_WilksLambda")`` for vector x or y, ``ParCorr`` when both
   are scalar), then Bonferroni; next to our default on the same data.
4. The default with ``action_to_state=True`` (D = 2).

Writes a Markdown report (``--out-md``, default docs/structure_tables.md) and every per-seed
number as JSON (``--out-json``, default benchmarks/results/structure_accuracy.json).
``--quick`` is a smoke run (2 seeds, n in 1000 2000).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from specialize.ci.registry import make_ci_test
from specialize.datasets.sequences import make_task_sequences
from specialize.structure.aggregate import adjust_pvalues
from specialize.structure.discover import discover_structure, resolve_conditioning
from specialize.structure.plan import KIND_BLOCK, KIND_PAIR, KIND_UNIT, plan_tests

ROOT = Path(__file__).resolve().parents[1]
T, M, L = 20, 4, 2
K = T // L
ALPHA = 0.05
MAIN_DIM = 2
POWER_DIMS = (1, 2)
PEER_DIMS = (2, 1)
MODES = ("segment", "unary", "step", "pairwise")
CONDITIONINGS = ("band", "all")
CORRECTIONS = (None, "bonferroni", "holm", "fdr_bh")
AGGREGATIONS = ("any", "clique")
DEFAULT = ("segment", "all", "holm", None)
#: (label, mode, conditioning, kind) of the single tests whose power is measured.
POWER_TESTS = (
    ("pairwise band", "pairwise", "band", KIND_PAIR),
    ("pairwise all", "pairwise", "all", KIND_PAIR),
    ("unary band", "unary", "band", KIND_UNIT),
    ("unary all", "unary", "all", KIND_UNIT),
    ("segment block band", "segment", "band", KIND_BLOCK),
    ("segment block all", "segment", "all", KIND_BLOCK),
)
POWER_RUNS = tuple(sorted({(mode, cond) for _, mode, cond, _ in POWER_TESTS}))
DEFAULT_RUN = (DEFAULT[0], DEFAULT[1])


# --------------------------------------------------------------------------- environment


from _environment import machine_info, source_state, versions  # noqa: E402

# --------------------------------------------------------------------------- helpers


def make_data(n: int, D: int, seed: int, action_to_state: bool = False):
    return make_task_sequences(n, T, M, segment_length=L, state_dim=D,
                               action_to_state=action_to_state, random_state=seed)


def discover(ds, mode: str, conditioning: str):
    """One run with raw decisions (correction None); other rules via ``with_decision``."""
    return discover_structure(ds.obs, ds.tasks, segment_length=L, mode=mode,
                              conditioning=conditioning, correction=None,
                              aggregation="any" if mode == "pairwise" else "clique")


def score(result, truth) -> dict:
    s = result.scores(truth)
    return {k: s[k] for k in ("precision", "recall", "f1", "exact", "tp", "fp", "fn")}


def decisions(result) -> dict:
    """Scores-ready results for every correction (and aggregation) of one raw run."""
    out = {}
    aggs = AGGREGATIONS if result.mode == "pairwise" else (None,)
    for correction in CORRECTIONS:
        for agg in aggs:
            if agg is None:
                out[(correction, None)] = result.with_decision(correction=correction)
            else:
                out[(correction, agg)] = result.with_decision(correction=correction,
                                                              aggregation=agg)
    return out


def power_counts(result, truth: np.ndarray, kind: int) -> dict:
    """Raw-alpha rejections among truly dependent and null tests of one kind."""
    t = result.tests
    sel = t["kind"] == kind
    unit, task, p = t["unit"][sel], t["task"][sel], t["pvalue"][sel]
    if kind == KIND_PAIR:
        dependent = truth[unit, task] & truth[t["partner"][sel], task]
    else:
        dependent = truth[unit, task]
    reject = p <= ALPHA
    return {
        "dependent": int(dependent.sum()),
        "dependent_rejected": int((reject & dependent).sum()),
        "null": int((~dependent).sum()),
        "null_rejected": int((reject & ~dependent).sum()),
    }


def fp_after_same_task(pred: np.ndarray, truth: np.ndarray) -> int:
    """False positives (k, i) whose previous segment k - 1 serves task i.

    With ``action_to_state=True`` the first step of such a segment is a child of the previous
    segment's last action, so its block test is dependent on the task; segment mode uses the
    representative's test there only when a test of the previous segment rejects.
    """
    fp = pred & ~truth
    return int((fp[1:] & truth[:-1]).sum())


def node_columns(D: int) -> list[np.ndarray]:
    """Columns of the flattened data of node t (step) and node T + i (task i)."""
    return [np.arange(t * D, (t + 1) * D) for t in range(T)] + [
        np.array([T * D + i]) for i in range(M)
    ]


def columns_of(nodes, cols) -> np.ndarray:
    if len(nodes) == 0:
        return np.zeros(0, dtype=int)
    return np.concatenate([cols[j] for j in nodes])


class Peer:
    """The unary band tests through tigramite, one call of ``run_test_raw`` per test."""

    def __init__(self, D: int):
        from tigramite.independence_tests.parcorr import ParCorr
        from tigramite.independence_tests.parcorr_mult import ParCorrMult

        self.D = D
        self.plan = plan_tests("unary", T, L, M, "band")
        self.cols = node_columns(D)
        self.scalar = ParCorr(significance="analytic")
        self.vector = ParCorrMult(correlation_type="PCCA_WilksLambda", significance="analytic")

    def pvalues(self, ds) -> np.ndarray:
        n = ds.obs.shape[0]
        flat = np.concatenate([ds.obs.reshape(n, -1), ds.tasks.reshape(n, -1)], axis=1)
        p = np.empty(len(self.plan))
        for j, (x, y, z) in enumerate(zip(self.plan.plan.x, self.plan.plan.y,
                                          self.plan.plan.z, strict=True)):
            xc, yc, zc = (columns_of(nodes, self.cols) for nodes in (x, y, z))
            test = self.scalar if len(xc) == 1 and len(yc) == 1 else self.vector
            _, p[j] = test.run_test_raw(flat[:, xc], flat[:, yc],
                                        flat[:, zc] if zc.size else None)
        return p

    def decide(self, pvalues: np.ndarray) -> np.ndarray:
        """(K, M) matrix after Bonferroni over the K*M p-values."""
        out = np.zeros((K, M), dtype=bool)
        rejected = adjust_pvalues(pvalues, "bonferroni") <= ALPHA
        out[self.plan.unit[rejected], self.plan.task[rejected]] = True
        return out


def structure_scores_of(pred: np.ndarray, truth: np.ndarray) -> dict:
    from specialize.metrics.structure import structure_scores

    s = structure_scores(pred, truth)
    return {k: s[k] for k in ("precision", "recall", "f1", "exact", "tp", "fp", "fn")}


def summarise(records: list[dict]) -> dict:
    return {
        "precision": float(np.mean([r["precision"] for r in records])),
        "recall": float(np.mean([r["recall"] for r in records])),
        "f1": float(np.mean([r["f1"] for r in records])),
        "exact": int(sum(bool(r["exact"]) for r in records)),
        "seeds": len(records),
    }


def key_str(mode, conditioning, correction, aggregation) -> str:
    return f"{mode}/{conditioning}/{correction or 'none'}/{aggregation or '-'}"


# --------------------------------------------------------------------------- the study


def run_study(args) -> dict:
    seeds = list(range(args.seeds))
    peer_seeds = seeds[: args.peer_seeds] if args.peer_seeds else seeds
    sizes = list(args.sizes)
    power_sizes = sorted(set(sizes) | {args.power_n})
    fisherz = make_ci_test("fisherz")
    auto = {n: resolve_conditioning("auto", fisherz, n, T, MAIN_DIM) for n in sizes}

    main = []      # per (n, seed, mode, conditioning, correction, aggregation)
    power = []     # per (D, n, seed, test)
    peer = []      # per (D, n, seed)
    actions = []   # per (n, seed)
    default_check = []  # direct default call vs the re-decided default row, per (n, seed)
    timing = {"main_discover_s": 0.0, "peer_s": 0.0, "power_extra_discover_s": 0.0,
              "action_to_state_s": 0.0, "data_s": 0.0}
    peers = {D: Peer(D) for D in PEER_DIMS}

    for D in sorted(set(POWER_DIMS) | set(PEER_DIMS) | {MAIN_DIM}, reverse=True):
        for n in sorted(set(sizes) | (set(power_sizes) if D in POWER_DIMS else set())):
            in_main = D == MAIN_DIM and n in sizes
            in_power = D in POWER_DIMS and n in power_sizes
            in_peer = D in PEER_DIMS and n in sizes
            started = time.perf_counter()
            for seed in seeds:
                t0 = time.perf_counter()
                ds = make_data(n, D, seed)
                truth = ds.segment_assignment
                timing["data_s"] += time.perf_counter() - t0
                wanted = set()
                if in_main:
                    wanted |= {(mode, c) for mode in MODES for c in CONDITIONINGS}
                if in_power:
                    wanted |= set(POWER_RUNS)
                if in_peer:
                    wanted |= {DEFAULT_RUN, ("unary", "band")}
                runs = {}
                t0 = time.perf_counter()
                for mode, cond in sorted(wanted):
                    runs[(mode, cond)] = discover(ds, mode, cond)
                timing["main_discover_s" if in_main else "power_extra_discover_s"] += (
                    time.perf_counter() - t0
                )
                if in_main:
                    # The default row comes from with_decision; check it against a direct call
                    # with every argument at its default (conditioning "auto").
                    direct = discover_structure(ds.obs, ds.tasks)
                    redecided = runs[DEFAULT_RUN].with_decision(correction=DEFAULT[2])
                    default_check.append({
                        "n": n, "seed": seed, "direct_conditioning": direct.conditioning,
                        "same_decisions": bool(np.array_equal(direct.segment_tasks,
                                                              redecided.segment_tasks)),
                        "fp_after_same_task": fp_after_same_task(redecided.segment_tasks,
                                                                 truth),
                    })
                    for (mode, cond), raw in runs.items():
                        for (corr, agg), res in decisions(raw).items():
                            main.append({"n": n, "seed": seed, "mode": mode,
                                         "conditioning": cond, "correction": corr,
                                         "aggregation": agg, **score(res, truth)})
                if in_power:
                    for label, mode, cond, kind in POWER_TESTS:
                        power.append({"state_dim": D, "n": n, "seed": seed, "test": label,
                                      **power_counts(runs[(mode, cond)], truth, kind)})
                if in_peer and seed in peer_seeds:
                    t0 = time.perf_counter()
                    p_peer = peers[D].pvalues(ds)
                    seconds = time.perf_counter() - t0
                    timing["peer_s"] += seconds
                    ours_unary = runs[("unary", "band")]
                    # Same test order: both come from plan_tests("unary", T, L, M, "band").
                    p_ours = ours_unary.tests["pvalue"]
                    default = runs[DEFAULT_RUN].with_decision(correction=DEFAULT[2])
                    peer.append({
                        "state_dim": D, "n": n, "seed": seed, "seconds": seconds,
                        "peer": structure_scores_of(peers[D].decide(p_peer), truth),
                        "ours_unary_band_bonferroni": score(
                            ours_unary.with_decision(correction="bonferroni"), truth),
                        "ours_default": score(default, truth),
                        "raw_decisions_differing": int(np.sum((p_peer <= ALPHA)
                                                              != (p_ours <= ALPHA))),
                        "max_abs_dp": float(np.max(np.abs(p_peer - p_ours))),
                    })
            print(f"  D={D} n={n:>6}: {time.perf_counter() - started:7.1f} s"
                  f"{' main' if in_main else ''}{' power' if in_power else ''}"
                  f"{' peer' if in_peer else ''}", flush=True)

    started = time.perf_counter()
    unscreened = []
    for n in sizes:
        for seed in seeds:
            for feed in (True, False):
                ds = make_data(n, MAIN_DIM, seed, action_to_state=feed)
                res = discover_structure(ds.obs, ds.tasks)  # every argument at its default
                truth = ds.segment_assignment
                if feed:
                    actions.append({"n": n, "seed": seed, "conditioning": res.conditioning,
                                    "mode": res.mode, "correction": res.correction,
                                    "fp_after_same_task": fp_after_same_task(
                                        res.segment_tasks, truth),
                                    **score(res, truth)})
                blocks = res.with_decision(actions_feed_states=False)
                unscreened.append({"n": n, "seed": seed, "action_to_state": feed,
                                   "conditioning": res.conditioning,
                                   "fp_after_same_task": fp_after_same_task(
                                       blocks.segment_tasks, truth),
                                   **score(blocks, truth)})
    timing["action_to_state_s"] = time.perf_counter() - started
    print(f"  action_to_state: {timing['action_to_state_s']:.1f} s", flush=True)

    return {
        "seeds": seeds, "peer_seeds": peer_seeds, "sizes": sizes, "power_sizes": power_sizes,
        "power_n": args.power_n, "auto_conditioning": auto,
        "main": main, "default_check": default_check, "power": power, "peer": peer,
        "action_to_state": actions,
        "unscreened": unscreened,
        "timing": timing,
    }


# --------------------------------------------------------------------------- summaries


def summarise_main(study) -> list[dict]:
    rows = []
    groups: dict = {}
    for r in study["main"]:
        groups.setdefault((r["mode"], r["conditioning"], r["correction"], r["aggregation"],
                           r["n"]), []).append(r)
    for mode in MODES:
        for cond in CONDITIONINGS:
            for corr in CORRECTIONS:
                for agg in (AGGREGATIONS if mode == "pairwise" else (None,)):
                    row = {"mode": mode, "conditioning": cond, "correction": corr,
                           "aggregation": agg, "default": (mode, cond, corr, agg) == DEFAULT,
                           "by_n": {}}
                    for n in study["sizes"]:
                        row["by_n"][n] = summarise(groups[(mode, cond, corr, agg, n)])
                    rows.append(row)
    return rows


def summarise_power(study) -> list[dict]:
    rows = []
    for D in POWER_DIMS:
        for label, *_ in POWER_TESTS:
            row = {"state_dim": D, "test": label, "by_n": {}}
            for n in study["power_sizes"]:
                recs = [r for r in study["power"]
                        if r["state_dim"] == D and r["test"] == label and r["n"] == n]
                dep = sum(r["dependent"] for r in recs)
                null = sum(r["null"] for r in recs)
                row["by_n"][n] = {
                    "power": sum(r["dependent_rejected"] for r in recs) / dep if dep else None,
                    "null_rejection": (sum(r["null_rejected"] for r in recs) / null
                                       if null else None),
                    "dependent_tests": dep, "null_tests": null,
                }
            rows.append(row)
    return rows


def summarise_peer(study) -> list[dict]:
    rows = []
    for D in PEER_DIMS:
        for variant in ("peer", "ours_unary_band_bonferroni", "ours_default"):
            row = {"state_dim": D, "variant": variant, "by_n": {}}
            for n in study["sizes"]:
                recs = [r for r in study["peer"] if r["state_dim"] == D and r["n"] == n]
                row["by_n"][n] = summarise([r[variant] for r in recs])
                if variant == "peer":
                    row["by_n"][n]["seconds_per_data_set"] = float(
                        np.mean([r["seconds"] for r in recs]))
                    row["by_n"][n]["raw_decisions_differing_from_ours"] = int(
                        sum(r["raw_decisions_differing"] for r in recs))
                    row["by_n"][n]["raw_decisions"] = len(recs) * K * M
                    row["by_n"][n]["max_abs_dp"] = float(max(r["max_abs_dp"] for r in recs))
            rows.append(row)
    return rows


def summarise_actions(study, key="action_to_state", action_to_state=None) -> dict:
    out = {}
    for n in study["sizes"]:
        recs = [r for r in study[key] if r["n"] == n
                and (action_to_state is None or r["action_to_state"] == action_to_state)]
        out[n] = {**summarise(recs),
                  "conditioning": sorted({r["conditioning"] for r in recs}),
                  "fp": int(sum(r["fp"] for r in recs)),
                  "fp_after_same_task": int(sum(r["fp_after_same_task"] for r in recs)),
                  "fn": int(sum(r["fn"] for r in recs))}
    return out


def summarise_default_errors(study) -> dict:
    """False positives / negatives of the no-action default (section 1), per n."""
    out = {}
    for n in study["sizes"]:
        recs = [r for r in study["main"] if r["n"] == n and (
            r["mode"], r["conditioning"], r["correction"], r["aggregation"]) == DEFAULT]
        checks = [c for c in study["default_check"] if c["n"] == n]
        out[n] = {"fp": int(sum(r["fp"] for r in recs)),
                  "fp_after_same_task": int(sum(c["fp_after_same_task"] for c in checks)),
                  "fn": int(sum(r["fn"] for r in recs))}
    return out


# --------------------------------------------------------------------------- Markdown


def f3(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def md_table(headers: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["---"] * len(headers)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(args, meta, study, summary) -> str:
    sizes = study["sizes"]
    S = len(study["seeds"])
    out = []
    out.append("# Structure recovery: accuracy tables\n")
    out.append(
        "<!-- Generated file: edit benchmarks/structure_accuracy.py and run it again. -->\n"
    )
    out.append(f"Generated by `{meta['command']}` on {meta['date']}.\n")
    mi, v, src = meta["machine"], meta["versions"], meta["source"]
    out.append(
        f"- Machine: {mi['platform']}, {mi['cpu_count']} CPUs"
        + (f" ({mi['processor']})" if mi.get("processor") else "")
        + f", Python {mi['python']}; load average at start "
        + (", ".join(f"{x:.2f}" for x in mi["load_average_at_start"])
           if mi["load_average_at_start"] else "n/a")
        + "."
    )
    out.append(
        f"- Versions: numpy {v['numpy']}, scipy {v['scipy']}, tigramite {v['tigramite']}, "
        f"specialize {v['specialize']}."
    )
    dirty = src["src_modified"] + src["src_untracked"]
    out.append(
        f"- Source: commit `{(src['commit'] or 'unknown')[:12]}`"
        + (f", with uncommitted changes under src/ ({', '.join(dirty)}; diff sha1 "
           f"`{src['src_diff_sha1']}`)" if dirty else ", src/ clean")
        + "."
    )
    out.append(f"- Total run time: {meta['runtime_s']:.0f} s.\n")
    out.append(
        "Data: `make_task_sequences(n, 20, 4, segment_length=2, state_dim=D, "
        f"random_state=seed)`, seeds 0..{S - 1} (T = 20 steps, K = {K} segments, M = {M} "
        "tasks, linear mechanism, states observed). The truth (`ds.segment_assignment`) "
        "depends on the seed only, so every n and every D of a seed share it. Scores are "
        f"segment-level over the K x M = {K * M} entries, averaged over seeds; *exact* counts "
        f"the seeds whose {K} x {M} matrix is recovered without error. Test: Fisher-z, "
        f"alpha = {ALPHA}.\n"
    )

    # ---- main table
    out.append(f"## 1. Every mode, conditioning, correction and aggregation (D = {MAIN_DIM})\n")
    auto = ", ".join(f"n = {n}: {c}" for n, c in study["auto_conditioning"].items())
    checks = study["default_check"]
    same = sum(c["same_decisions"] for c in checks)
    resolved = sorted({c["direct_conditioning"] for c in checks})
    out.append(
        "One `discover_structure(..., correction=None)` run per (data set, mode, "
        "conditioning); the other corrections and aggregations are "
        "`TaskStructure.with_decision` on the same p-values. **Bold**: the library default "
        f"(mode segment, conditioning auto, which resolves to all here ({auto}), "
        "correction holm). Aggregation applies to pairwise mode only. Check: a direct "
        "`discover_structure(ds.obs, ds.tasks)` call (every argument at its default) gave "
        f"the same matrix as the default row on {same}/{len(checks)} data sets, with "
        f"conditioning resolved to {', '.join(resolved)}.\n"
    )
    headers = ["mode", "conditioning", "correction", "aggregation"]
    for n in sizes:
        headers += [f"P n={n}", f"R n={n}", f"F1 n={n}", f"exact n={n}"]
    rows = []
    for row in summary["main"]:
        cells = [row["mode"], row["conditioning"], row["correction"] or "none",
                 row["aggregation"] or "-"]
        for n in sizes:
            s = row["by_n"][n]
            cells += [f3(s["precision"]), f3(s["recall"]), f3(s["f1"]),
                      f"{s['exact']}/{s['seeds']}"]
        if row["default"]:
            cells = [f"**{c}**" for c in cells]
        rows.append(cells)
    out.append(md_table(headers, rows, ["---"] * 4 + ["--:"] * (4 * len(sizes))))
    out.append("")

    # ---- best per n
    out.append("Highest mean F1 per n (ties broken by exact count), with the default:\n")
    best_rows = []
    for n in sizes:
        ranked = sorted(summary["main"], key=lambda r: (-r["by_n"][n]["f1"],
                                                        -r["by_n"][n]["exact"]))
        default_rank = next(i for i, r in enumerate(ranked) if r["default"]) + 1
        for i, r in enumerate(ranked[:5]):
            s = r["by_n"][n]
            best_rows.append([str(n), str(i + 1),
                              key_str(r["mode"], r["conditioning"], r["correction"],
                                      r["aggregation"]) + (" (default)" if r["default"] else ""),
                              f3(s["precision"]), f3(s["recall"]), f3(s["f1"]),
                              f"{s['exact']}/{s['seeds']}"])
        if default_rank > 5:
            r = ranked[default_rank - 1]
            s = r["by_n"][n]
            best_rows.append([str(n), str(default_rank),
                              key_str(*DEFAULT) + " (default)", f3(s["precision"]),
                              f3(s["recall"]), f3(s["f1"]), f"{s['exact']}/{s['seeds']}"])
    out.append(md_table(["n", "rank", "mode/conditioning/correction/aggregation", "P", "R",
                         "F1", "exact"], best_rows,
                        ["--:", "--:", "---", "--:", "--:", "--:", "--:"]))
    out.append("")

    # ---- power
    out.append("## 2. Single-test power at raw alpha = 0.05\n")
    out.append(
        "Fraction of truly dependent tests with p <= 0.05 (*power*) and of null tests with "
        "p <= 0.05 (*null rej.*, the type I error rate; about 0.05 when the test is calibrated), "
        "pooled over seeds. Pairwise tests are about (k, v, i), dependent when segments k and "
        "v both serve task i (null otherwise); unary and block tests about (k, i), dependent "
        "when segment k serves task i. *segment block* is the block test of all steps of a "
        f"segment (`tests['kind'] == {KIND_BLOCK}` in segment mode). n = {study['power_n']} "
        "is the reference; the other n are shown for context.\n"
    )
    headers = ["D", "test", "dependent / null tests per seed"]
    for n in study["power_sizes"]:
        headers += [f"power n={n}", f"null rej. n={n}"]
    rows = []
    for row in summary["power"]:
        ref = row["by_n"][study["power_n"]]
        cells = [str(row["state_dim"]), row["test"],
                 f"{ref['dependent_tests'] / S:.1f} / {ref['null_tests'] / S:.1f}"]
        for n in study["power_sizes"]:
            s = row["by_n"][n]
            cells += [f3(s["power"]), f3(s["null_rejection"])]
        rows.append(cells)
    out.append(md_table(headers, rows, ["--:", "---", "--:"]
                        + ["--:"] * (2 * len(study["power_sizes"]))))
    out.append("")

    # ---- peer
    P = len(study["peer_seeds"])
    out.append("## 3. The peer-built variant: tigramite test by test, then Bonferroni\n")
    out.append(
        "The unary band tests (`plan_tests('unary', 20, 2, 4, 'band')`, 40 tests per data "
        "set) run one by one through tigramite's `run_test_raw`: "
        "`ParCorrMult(correlation_type='PCCA_WilksLambda', significance='analytic')` when x or "
        "y is a vector (D = 2), `ParCorr(significance='analytic')` when both are scalar "
        "(D = 1); then Bonferroni over the 40 p-values at alpha = 0.05. Beside it, on the same "
        "data sets: the same tests through `discover_structure` (mode unary, conditioning band, "
        "correction bonferroni) and the library default (segment / all / holm). "
        + (f"The peer ran on all {P} seeds." if P == S else
           f"**The peer ran on seeds 0..{P - 1} only ({P} of {S}); all three rows of this "
           "table use those seeds.**")
        + " *raw decisions differing* (per n): (segment, task) tests where the peer's and "
          "our raw p-value fall on different sides of 0.05, out of all tests of those seeds; "
          "*max abs p difference* (per n): the largest |p_peer - p_ours| over them.\n"
    )
    names = {"peer": "tigramite, unary band, Bonferroni",
             "ours_unary_band_bonferroni": "specialize, unary band, Bonferroni",
             "ours_default": "specialize default (segment / all / holm)"}
    headers = ["D", "variant"]
    for n in sizes:
        headers += [f"F1 n={n}", f"exact n={n}"]
    headers += ["peer s / data set (largest n)", "raw decisions differing",
                "max abs p difference"]
    rows = []
    for row in summary["peer"]:
        cells = [str(row["state_dim"]), names[row["variant"]]]
        for n in sizes:
            s = row["by_n"][n]
            cells += [f3(s["f1"]), f"{s['exact']}/{s['seeds']}"]
        if row["variant"] == "peer":
            last = row["by_n"][sizes[-1]]
            cells += [f"{last['seconds_per_data_set']:.3f}",
                      ", ".join(f"{row['by_n'][n]['raw_decisions_differing_from_ours']}/"
                                f"{row['by_n'][n]['raw_decisions']}" for n in sizes),
                      ", ".join(f"{row['by_n'][n]['max_abs_dp']:.1e}" for n in sizes)]
        else:
            cells += ["", "", ""]
        rows.append(cells)
    out.append(md_table(headers, rows, ["--:", "---"] + ["--:"] * (2 * len(sizes) + 3)))
    out.append("")
    out.append(
        "Notes. The peer rows differ from the 'specialize, unary band, Bonferroni' rows only "
        "in how each test's p-value is computed. For vector x, tigramite "
        f"{meta['versions']['tigramite']}'s "
        "`ParCorrMult.compute_wilks_lambda_cca` takes `np.linalg.eigvalsh` of the "
        "non-symmetric matrix Cxx^-1 Cxy Cyy^-1 Cyx (eigvalsh reads only its lower triangle), "
        "and its Bartlett factor is n - d_z - (d_x + d_y + 1)/2 where ours is "
        "n - d_z - 1 - (d_x + d_y + 1)/2; the D = 2 peer row is tigramite as installed, and "
        "the last two columns show how far its p-values are from ours on these tests. At D = 1 "
        "tigramite's `ParCorr` (Student t on the partial correlation) and our Fisher-z differ "
        "only in the null approximation.\n"
    )

    # ---- action_to_state
    out.append(f"## 4. The default with `action_to_state=True` (D = {MAIN_DIM})\n")
    out.append(
        "`make_task_sequences(..., action_to_state=True)`: the action a_t also drives "
        "s_{t+1}. `discover_structure(ds.obs, ds.tasks)` with every argument at its default. "
        "The no-action default (section 1) on the same seeds is shown beside it.\n"
    )
    default_row = next(r for r in summary["main"] if r["default"])
    headers = ["data", "conditioning used"]
    for n in sizes:
        headers += [f"P n={n}", f"R n={n}", f"F1 n={n}", f"exact n={n}", f"FP (after) n={n}",
                    f"FN n={n}"]
    rows = []
    acts, errs = summary["action_to_state"], summary["default_errors"]
    cells = ["action_to_state=True", ", ".join(sorted({c for n in sizes
                                                      for c in acts[n]["conditioning"]}))]
    for n in sizes:
        s = acts[n]
        cells += [f3(s["precision"]), f3(s["recall"]), f3(s["f1"]), f"{s['exact']}/{s['seeds']}",
                  f"{s['fp']} ({s['fp_after_same_task']})", str(s["fn"])]
    rows.append(cells)
    cells = ["action_to_state=False (section 1)", ", ".join(resolved)]
    for n in sizes:
        s, e = default_row["by_n"][n], errs[n]
        cells += [f3(s["precision"]), f3(s["recall"]), f3(s["f1"]), f"{s['exact']}/{s['seeds']}",
                  f"{e['fp']} ({e['fp_after_same_task']})", str(e["fn"])]
    rows.append(cells)
    for feed in (True, False):
        block = summary["unscreened"][str(feed)]
        cells = [f"action_to_state={feed}, every segment's block test "
                 "(`actions_feed_states=False`)",
                 ", ".join(sorted({c for n in sizes for c in block[n]["conditioning"]}))]
        for n in sizes:
            s = block[n]
            cells += [f3(s["precision"]), f3(s["recall"]), f3(s["f1"]),
                      f"{s['exact']}/{s['seeds']}", f"{s['fp']} ({s['fp_after_same_task']})",
                      str(s["fn"])]
        rows.append(cells)
    out.append(md_table(headers, rows, ["---", "---"] + ["--:"] * (6 * len(sizes))))
    out.append("")
    out.append(
        "*FP (after)*: false positives summed over seeds, and in brackets those at a segment "
        "k whose previous segment k - 1 serves the same task. With actions feeding states, "
        "the first step of such a segment is a child of the previous segment's last action, "
        "so its block test is dependent on the task; segment mode falls back to the "
        "representative's test there only when the previous segment's representative or "
        "block test rejects at alpha, so where both lack power (small n) the block test can "
        "give a false positive. *FN*: false negatives summed over seeds.\n"
    )

    t = study["timing"]
    out.append("## Run time\n")
    out.append(
        f"Total {meta['runtime_s']:.1f} s: discover_structure for section 1 "
        f"{t['main_discover_s']:.1f} s, extra runs for section 2 {t['power_extra_discover_s']:.1f}"
        f" s, tigramite peer {t['peer_s']:.1f} s, section 4 {t['action_to_state_s']:.1f} s, "
        f"data generation {t['data_s']:.1f} s (the rest: re-deciding and scoring).\n"
    )
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0..SEEDS-1 (default 20)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 10000],
                    help="sample sizes n (default 1000 2000 10000)")
    ap.add_argument("--power-n", type=int, default=10_000,
                    help="n of the reference power figures (default 10000)")
    ap.add_argument("--peer-seeds", type=int, default=0,
                    help="run the tigramite peer on the first PEER_SEEDS seeds only "
                         "(default 0: all seeds)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 seeds, sizes 1000 2000")
    ap.add_argument("--date", default=None,
                    help="date written in the report (default: today)")
    ap.add_argument("--out-md", type=Path, default=ROOT / "docs" / "structure_tables.md")
    ap.add_argument("--out-json", type=Path,
                    default=ROOT / "benchmarks" / "results" / "structure_accuracy.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.sizes = 2, [1000, 2000]
    args.sizes = sorted(set(args.sizes))
    return args


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = " ".join(["python", "benchmarks/structure_accuracy.py",
                        *(shlex.quote(a) for a in argv)])
    meta = {
        "command": command,
        "date": args.date or datetime.date.today().isoformat(),
        "machine": machine_info(),
        "versions": versions(),
        "source": source_state(),
        "config": {"n_steps": T, "n_tasks": M, "segment_length": L, "alpha": ALPHA,
                   "main_state_dim": MAIN_DIM, "power_state_dims": list(POWER_DIMS),
                   "peer_state_dims": list(PEER_DIMS), "default": list(DEFAULT),
                   "seeds": args.seeds, "sizes": args.sizes, "power_n": args.power_n,
                   "peer_seeds": args.peer_seeds or args.seeds, "quick": args.quick},
    }
    print(f"{command}\n{meta['machine']}\n{meta['versions']}", flush=True)
    started = time.perf_counter()
    study = run_study(args)
    summary = {
        "main": summarise_main(study),
        "power": summarise_power(study),
        "peer": summarise_peer(study),
        "action_to_state": summarise_actions(study),
        "unscreened": {str(feed): summarise_actions(study, "unscreened", feed)
                       for feed in (True, False)},
        "default_errors": summarise_default_errors(study),
    }
    meta["runtime_s"] = time.perf_counter() - started

    args.out_md.parent.mkdir(parents=True, exist_ok=True)
    args.out_md.write_text(render_markdown(args, meta, study, summary))
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "summary": summary,
               "per_seed": {k: study[k] for k in ("main", "default_check", "power", "peer",
                                                  "action_to_state")},
               "timing": study["timing"], "auto_conditioning": study["auto_conditioning"]}
    args.out_json.write_text(json.dumps(jsonable(payload), indent=1))
    print(f"wrote {args.out_md} and {args.out_json} in {meta['runtime_s']:.1f} s")


if __name__ == "__main__":
    main()
