"""Algorithm 1 and its variants: exactness under the oracle, decisions, results, bad input."""

import warnings

import numpy as np
import pytest

from specialize import discover_structure, make_task_sequences
from specialize.ci import DSeparation
from specialize.structure import TaskStructure, adjust_pvalues, band, plan_tests, representatives
from specialize.structure.aggregate import pair_decisions

MODES = ("segment", "unary", "pairwise", "step")


def random_structure(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(4, 17))
    L = int(rng.integers(2, min(4, T // 2) + 1))
    M = int(rng.integers(1, 4))
    return make_task_sequences(
        5,
        T,
        M,
        segment_length=L,
        disconnect_prob=float(rng.choice([0.0, 0.2, 0.5])),
        action_to_state=bool(rng.integers(2)),
        random_state=seed,
    )


def oracle_result(ds, mode, conditioning):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # T not a multiple of L
        return discover_structure(
            ds.states,
            ds.tasks,
            segment_length=ds.segment_length,
            mode=mode,
            conditioning=conditioning,
            correction=None,
            test=DSeparation(ds.dag),
        )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("conditioning", ["band", "all"])
def test_every_mode_is_exact_under_the_oracle(mode, conditioning):
    """Interleaved tasks, empty and shared segments, disconnections, actions feeding states."""
    seen_action_to_state = seen_cut = 0
    for seed in range(120):
        ds = random_structure(seed)
        result = oracle_result(ds, mode, conditioning)
        np.testing.assert_array_equal(
            result.segment_tasks, ds.segment_assignment, err_msg=str(seed)
        )
        if mode != "step" or not ds.params["action_to_state"]:
            np.testing.assert_array_equal(result.step_tasks, ds.step_assignment, err_msg=str(seed))
        seen_action_to_state += ds.params["action_to_state"]
        seen_cut += ds.params["disconnect_prob"] > 0
    assert seen_action_to_state > 30 and seen_cut > 30


def unscreened_oracle_results(action_to_state: bool):
    """(data, segment-mode result without the screen) under the oracle, for 60 structures."""
    for seed in range(60):
        ds = make_task_sequences(5, 12, 3, action_to_state=action_to_state, random_state=seed)
        yield (
            ds,
            discover_structure(
                ds.states,
                ds.tasks,
                test=DSeparation(ds.dag),
                correction=None,
                actions_feed_states=False,
            ),
        )


def test_segment_mode_without_the_screen_is_exact_when_actions_do_not_feed_states():
    for ds, result in unscreened_oracle_results(action_to_state=False):
        np.testing.assert_array_equal(result.segment_tasks, ds.segment_assignment)
    # and why the screen exists: with actions feeding states the block test sees the path
    # a_{kL-1} -> s_{kL} from a previous task segment
    wrong = 0
    for ds, result in unscreened_oracle_results(action_to_state=True):
        wrong += not np.array_equal(result.segment_tasks, ds.segment_assignment)
        screened = result.with_decision(actions_feed_states=True)
        np.testing.assert_array_equal(screened.segment_tasks, ds.segment_assignment)
    assert wrong > 10


def test_step_mode_with_actions_feeding_states_flags_the_next_step_too():
    """a_{t-1} -> s_t ties s_t to every task of step t-1: the identified set is T_i | T_i + 1."""
    for seed in range(40):
        rng = np.random.default_rng(seed)
        T, M = 12, 2
        assignment = rng.random((T, M)) < 0.3
        ds = make_task_sequences(
            5, T, M, action_to_state=True, assignment=assignment, random_state=seed
        )
        result = oracle_result(ds, "step", "all")
        shifted = ds.step_assignment.copy()
        shifted[1:] |= ds.step_assignment[:-1]
        np.testing.assert_array_equal(result.step_tasks, shifted)


def test_step_mode_recovers_step_structure_that_is_not_segment_aligned():
    assignment = np.zeros((9, 2), dtype=bool)
    assignment[[1, 4, 5], 0] = True
    assignment[[2, 8], 1] = True
    ds = make_task_sequences(5, 9, 2, assignment=assignment, random_state=0)
    result = oracle_result(ds, "step", "band")
    np.testing.assert_array_equal(result.step_tasks, assignment)


def test_plan_sizes_and_sets():
    T, L, M = 20, 2, 4
    K = T // L
    assert len(plan_tests("unary", T, L, M, "band")) == K * M
    assert len(plan_tests("segment", T, L, M, "band")) == 2 * K * M
    assert len(plan_tests("step", T, L, M, "band")) == T * M
    assert len(plan_tests("pairwise", T, L, M, "band")) == M * K * (K - 1) // 2
    np.testing.assert_array_equal(representatives(7, 3), [2, 5])
    assert band((0,), 5) == (1,)
    assert band((4,), 5) == (3,)
    assert band((1, 3), 6) == (0, 2, 4)
    pairwise = plan_tests("pairwise", T, L, M, "band")
    # Z_band(k, v, i) = neighbours of r_k and r_v plus the task node
    k = np.flatnonzero((pairwise.unit == 0) & (pairwise.partner == 5) & (pairwise.task == 2))[0]
    assert pairwise.plan.x[k] == (1,) and pairwise.plan.y[k] == (11,)
    assert pairwise.plan.z[k] == (0, 2, 10, 12, T + 2)
    every = plan_tests("unary", T, L, M, "all")
    assert all(
        len(z) == T - 1 and x[0] not in z for x, z in zip(every.plan.x, every.plan.z, strict=True)
    )


@pytest.mark.parametrize(
    "method,sm", [("bonferroni", "bonferroni"), ("holm", "holm"), ("fdr_bh", "fdr_bh")]
)
def test_corrections_match_statsmodels(method, sm):
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(size=50), rng.uniform(0, 1e-3, size=10), [0.5, 0.5]])
    np.testing.assert_allclose(
        adjust_pvalues(p, method), multipletests(p, method=sm)[1], rtol=1e-12
    )
    np.testing.assert_array_equal(adjust_pvalues(p, None), p)


def test_clique_aggregation_drops_a_single_false_pair_but_keeps_two_segment_tasks():
    K = 6

    def decide(edges, rule):
        unit = np.array([e[0] for e in edges])
        partner = np.array([e[1] for e in edges])
        task = np.zeros(len(edges), dtype=int)
        return pair_decisions(np.ones(len(edges), bool), task, unit, partner, K, 1, rule)[:, 0]

    clique = [(0, 2), (0, 4), (2, 4)]  # true task {0, 2, 4}, all pairs found
    assert decide(clique + [(4, 5)], "any").tolist() == [1, 0, 1, 0, 1, 1]
    assert decide(clique + [(4, 5)], "clique").tolist() == [1, 0, 1, 0, 1, 0]
    assert decide([(1, 3)], "clique").tolist() == [0, 1, 0, 1, 0, 0]
    # one missed pair inside a clique of four still keeps all four
    four = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
    assert decide(four, "clique").tolist() == [1, 1, 1, 1, 0, 0]


@pytest.fixture(scope="module")
def linear_data():
    return make_task_sequences(10_000, 20, 4, state_dim=2, random_state=3)


@pytest.mark.parametrize("mode", MODES)
def test_with_decision_equals_a_fresh_run(linear_data, mode):
    ds = linear_data
    base = discover_structure(ds.obs, ds.tasks, mode=mode, correction=None, alpha=0.05)
    for alpha, correction, aggregation in [
        (0.01, "holm", "any"),
        (0.1, "fdr_bh", "clique"),
        (0.05, "bonferroni", "clique"),
    ]:
        fresh = discover_structure(
            ds.obs, ds.tasks, mode=mode, alpha=alpha, correction=correction, aggregation=aggregation
        )
        redone = base.with_decision(
            alpha=alpha,
            correction=correction,
            aggregation=aggregation if mode == "pairwise" else None,
        )
        np.testing.assert_array_equal(redone.segment_tasks, fresh.segment_tasks)
        np.testing.assert_array_equal(redone.step_tasks, fresh.step_tasks)


def test_default_recovers_the_paper_scale_structure(linear_data):
    ds = linear_data
    result = discover_structure(ds.obs, ds.tasks)
    assert result.mode == "segment" and result.correction == "holm"
    assert result.conditioning == "all"
    scores = result.scores(ds.segment_assignment)
    assert scores["f1"] >= 0.95
    assert result.scores(ds.step_assignment)["f1"] == scores["f1"]


def test_default_beats_the_papers_pairwise_test_at_small_n():
    f1 = {"segment": [], "pairwise": []}
    for seed in range(4):
        ds = make_task_sequences(2000, 20, 4, state_dim=2, random_state=100 + seed)
        default = discover_structure(ds.obs, ds.tasks)
        f1["segment"].append(default.scores(ds.segment_assignment)["f1"])
        pw = discover_structure(
            ds.obs,
            ds.tasks,
            mode="pairwise",
            correction=None,
            conditioning="band",
            aggregation="any",
        )
        f1["pairwise"].append(pw.scores(ds.segment_assignment)["f1"])
    assert np.mean(f1["segment"]) > np.mean(f1["pairwise"]) + 0.2
    assert np.mean(f1["segment"]) >= 0.9


def test_vector_tasks_are_tested_as_vectors():
    ds = make_task_sequences(5000, 10, 2, task_dim=3, random_state=4)
    assert ds.tasks.shape == (5000, 2, 3)
    result = discover_structure(ds.obs, ds.tasks)
    assert result.scores(ds.segment_assignment)["f1"] >= 0.9
    # Bartlett's dof = d_x * d_y: one step (1 column) or a segment block (2 columns) vs q = 3
    unit = result.tests["kind"] == 0
    assert set(result.tests["dof"][unit]) == {3.0}
    assert set(result.tests["dof"][~unit]) == {6.0}


def test_json_round_trip_keeps_every_test(tmp_path, linear_data):
    ds = linear_data
    result = discover_structure(ds.obs, ds.tasks, mode="pairwise", random_state=7)
    path = tmp_path / "r.json"
    result.to_json(path)
    back = TaskStructure.from_json(path)
    np.testing.assert_array_equal(back.segment_tasks, result.segment_tasks)
    np.testing.assert_array_equal(back.step_tasks, result.step_tasks)
    for key, value in result.tests.items():
        np.testing.assert_allclose(back.tests[key], value)
    assert (back.mode, back.alpha, back.correction, back.random_state) == (
        "pairwise",
        0.05,
        "holm",
        7,
    )
    np.testing.assert_array_equal(
        back.with_decision(alpha=0.2).segment_tasks, result.with_decision(alpha=0.2).segment_tasks
    )
    assert TaskStructure.from_json(result.to_json()).n_tests == result.n_tests
    assert "segment" in repr(result) and "n_tests=" in repr(result)


def test_plot_writes_a_png(tmp_path, linear_data):
    ds = linear_data
    result = discover_structure(ds.obs[:2000], ds.tasks[:2000])
    result.plot(tmp_path / "s.png", truth=ds.segment_assignment)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_value_policies(linear_data):
    ds = linear_data
    X = ds.obs[:3000].copy()
    G = ds.tasks[:3000].copy()
    X[5, 3, 1] = np.nan
    G[17, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN at index \(5, 3, 1\)"):
        discover_structure(X, G)
    with pytest.warns(UserWarning, match="dropped 2 of 3000"):
        dropped = discover_structure(X, G, missing="drop-rows")
    keep = np.ones(3000, bool)
    keep[[5, 17]] = False
    clean = discover_structure(ds.obs[:3000][keep], ds.tasks[:3000][keep])
    np.testing.assert_allclose(dropped.tests["pvalue"], clean.tests["pvalue"])
    testwise = discover_structure(X, G, missing="testwise", conditioning="band", mode="unary")
    n_used = testwise.tests["n_samples"]
    plan = plan_tests("unary", 20, 2, 4, "band").plan
    uses_step3 = [3 in (x + z) for x, z in zip(plan.x, plan.z, strict=True)]
    task = testwise.tests["task"]
    expected = 3000 - np.array(uses_step3, int) - (task == 2)
    np.testing.assert_array_equal(n_used, expected)


def test_bad_input_gets_clear_errors(linear_data):
    X, G = linear_data.obs[:500], linear_data.tasks[:500]
    with pytest.raises(ValueError, match=r"X has shape \(500, 40\), expected \(n_samples, n_steps"):
        discover_structure(X.reshape(500, -1), G)
    with pytest.raises(ValueError, match="X has 500 samples but G has 499"):
        discover_structure(X, G[:499])
    with pytest.raises(ValueError, match="segment_length must be >= 2, got 1"):
        discover_structure(X, G, segment_length=1)
    with pytest.raises(ValueError, match="segment_length must be <= 20, got 21"):
        discover_structure(X, G, segment_length=21)
    with pytest.raises(ValueError, match=r"needs n_steps // segment_length >= 2; got 20 // 11 = 1"):
        discover_structure(X, G, mode="pairwise", segment_length=11)
    with pytest.warns(UserWarning, match="last 2 step"):
        discover_structure(X, G, segment_length=3)
    with pytest.raises(ValueError, match="test must be one of 'cmiknn', 'dseparation', 'fisherz'"):
        discover_structure(X, G, test="kci-typo")
    with pytest.raises(ValueError, match="mode must be one of 'segment', 'unary'"):
        discover_structure(X, G, mode="band")
    with pytest.raises(ValueError, match="alpha must be < 1.0"):
        discover_structure(X, G, alpha=1.0)
    with pytest.raises(ValueError, match=r"G contains inf at index \(3, 1\)"):
        bad = G.copy()
        bad[3, 1] = np.inf
        discover_structure(X, bad)
    constant = X.copy()
    constant[:, 4, 1] = 2.0
    with pytest.raises(ValueError, match=r"X\[:, 4, 1\] is constant"):
        discover_structure(constant, G)
    duplicated = X.copy()
    duplicated[:, 6, 0] = duplicated[:, 7, 1]
    with pytest.raises(ValueError, match=r"X\[:, 6, 0\], X\[:, 7, 1\] are collinear"):
        discover_structure(duplicated, G)
    with pytest.raises(ValueError, match="too few samples"):
        discover_structure(X[:20], G[:20], conditioning="all")


def test_steps_spanning_fewer_dimensions_are_tested_on_their_principal_components():
    """Linear mixing to D > d is injective but rank deficient: a warned, lossless fallback."""
    ds = make_task_sequences(3000, 12, 2, state_dim=2, obs_dim=5, mixing="linear", random_state=2)
    with pytest.warns(UserWarning, match=r"its 5 features at step\(s\) 12 of 12 steps \(rank 2\)"):
        on_obs = discover_structure(ds.obs, ds.tasks)
    on_states = discover_structure(ds.states, ds.tasks)
    np.testing.assert_allclose(on_obs.tests["pvalue"], on_states.tests["pvalue"], atol=1e-8)
    np.testing.assert_array_equal(on_obs.segment_tasks, on_states.segment_tasks)
    within_step = ds.states.copy()
    within_step[:, 3, 0] = within_step[:, 3, 1]
    with pytest.warns(UserWarning, match=r"its 2 features at step\(s\) 3 \(rank 1\)"):
        discover_structure(within_step, ds.tasks)
