"""Tests of the d-separation oracle (specialize.ci.DSeparation).

The reference is an independent d-separation written here (the moralised ancestral graph
criterion of Lauritzen et al. 1990), not networkx's, which the oracle itself uses.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from specialize.ci import CIData, DSeparation, FisherZ, TestPlan
from specialize.datasets.sequences import make_task_sequences
from specialize.structure.discover import sequence_ci_data
from specialize.structure.plan import plan_tests

# --------------------------------------------------------------------------------------------
# an independent d-separation
# --------------------------------------------------------------------------------------------


def _ancestral_closure(parents: dict, nodes: set) -> set:
    seen, stack = set(nodes), list(nodes)
    while stack:
        for p in parents[stack.pop()]:
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return seen


def moral_ancestral_d_separated(edges, all_nodes, x: set, y: set, z: set) -> bool:
    """x and y are d-separated by z iff they are disconnected, after removing z, in the
    moral graph of the smallest ancestral set containing x, y and z."""
    parents = {v: set() for v in all_nodes}
    for u, v in edges:
        parents[v].add(u)
    keep = _ancestral_closure(parents, x | y | z)
    neighbours = {v: set() for v in keep}
    for v in keep:
        ps = sorted(parents[v], key=repr)
        for i, p in enumerate(ps):  # parents are in the ancestral set too
            neighbours[v].add(p)
            neighbours[p].add(v)
            for q in ps[i + 1 :]:  # marry the parents
                neighbours[p].add(q)
                neighbours[q].add(p)
    seen = set(x)
    stack = list(x)
    while stack:
        for w in neighbours[stack.pop()]:
            if w in z or w in seen:
                continue
            if w in y:
                return False
            seen.add(w)
            stack.append(w)
    return True


def _random_dag(rng, n_nodes, p_edge, labelled):
    g = nx.gnp_random_graph(n_nodes, p_edge, seed=int(rng.integers(2**31)), directed=True)
    order = rng.permutation(n_nodes)  # a random topological order, not the identity
    dag = nx.DiGraph()
    names = [("v", int(i)) for i in range(n_nodes)] if labelled else list(range(n_nodes))
    dag.add_nodes_from(names)
    for u, v in g.edges():
        if order[u] < order[v]:
            dag.add_edge(names[u], names[v])
    assert nx.is_directed_acyclic_graph(dag)
    return dag, names


def _random_queries(rng, n_nodes, n_queries):
    x, y, z = [], [], []
    for _ in range(n_queries):
        sizes = rng.integers(1, 3), rng.integers(1, 3), rng.integers(0, 5)
        chosen = rng.choice(n_nodes, size=int(sum(sizes)), replace=False)
        a, b = int(sizes[0]), int(sizes[0] + sizes[1])
        x.append(tuple(int(j) for j in chosen[:a]))
        y.append(tuple(int(j) for j in chosen[a:b]))
        z.append(tuple(int(j) for j in chosen[b:]))
    return TestPlan(tuple(x), tuple(y), tuple(z))


def _case(seed):
    """A random DAG (8 to 15 nodes, sparse to dense) with 40 random queries."""
    rng = np.random.default_rng(seed)
    n_nodes = int(rng.integers(8, 16))
    dag, names = _random_dag(rng, n_nodes, float(rng.uniform(0.05, 0.3)), seed % 2 == 0)
    return dag, names, _random_queries(rng, n_nodes, 40)


N_CASES = 16


def _graph_data(names, n_samples=0) -> CIData:
    """Data-free CIData whose nodes are the DAG's nodes, in ``names`` order."""
    return CIData((), tuple(np.zeros(0, dtype=int) for _ in names), tuple(names), (), n_samples)


# --------------------------------------------------------------------------------------------
# agreement with the independent implementation
# --------------------------------------------------------------------------------------------


def test_reference_implementation_on_textbook_graphs():
    """The reference itself, on a chain, a fork and a collider with a descendant."""
    nodes = ["a", "b", "c", "d"]
    chain = [("a", "b"), ("b", "c")]
    assert not moral_ancestral_d_separated(chain, nodes, {"a"}, {"c"}, set())
    assert moral_ancestral_d_separated(chain, nodes, {"a"}, {"c"}, {"b"})
    fork = [("b", "a"), ("b", "c")]
    assert not moral_ancestral_d_separated(fork, nodes, {"a"}, {"c"}, set())
    assert moral_ancestral_d_separated(fork, nodes, {"a"}, {"c"}, {"b"})
    collider = [("a", "b"), ("c", "b"), ("b", "d")]
    assert moral_ancestral_d_separated(collider, nodes, {"a"}, {"c"}, set())
    assert not moral_ancestral_d_separated(collider, nodes, {"a"}, {"c"}, {"b"})
    assert not moral_ancestral_d_separated(collider, nodes, {"a"}, {"c"}, {"d"})


@pytest.mark.parametrize("seed", range(N_CASES))
def test_agrees_with_moral_ancestral_criterion(seed):
    dag, names, plan = _case(seed)
    result = DSeparation(dag).run(_graph_data(names, 17), plan)
    expected = np.array(
        [
            moral_ancestral_d_separated(
                dag.edges(),
                dag.nodes(),
                {names[j] for j in x},
                {names[j] for j in y},
                {names[j] for j in z},
            )
            for x, y, z in zip(plan.x, plan.y, plan.z, strict=True)
        ]
    )
    np.testing.assert_array_equal(result.pvalue, expected.astype(float))
    # 0/1 semantics: pvalue 1 where separated, statistic its complement, no dof
    assert set(np.unique(result.pvalue)) <= {0.0, 1.0}
    np.testing.assert_array_equal(result.statistic, 1.0 - result.pvalue)
    assert np.isnan(result.dof).all()
    np.testing.assert_array_equal(result.n_samples, 17)
    # the single-query method agrees with the batch
    oracle = DSeparation(dag)
    for k in range(0, len(plan), 7):
        separated = oracle.d_separated(
            {names[j] for j in plan.x[k]},
            {names[j] for j in plan.y[k]},
            {names[j] for j in plan.z[k]},
        )
        assert separated == expected[k]


def test_random_queries_cover_both_answers():
    """Across the seeds above, both answers occur often (the agreement is not vacuous)."""
    counts = np.zeros(2, dtype=int)
    for seed in range(N_CASES):
        dag, names, plan = _case(seed)
        p = DSeparation(dag).run(_graph_data(names), plan).pvalue
        counts += np.bincount(p.astype(int), minlength=2)
    assert counts.sum() == 40 * N_CASES
    assert counts.min() >= 150, counts


def test_order_of_nodes_in_data_does_not_matter():
    rng = np.random.default_rng(3)
    dag, names = _random_dag(rng, 10, 0.3, labelled=True)
    plan = _random_queries(rng, 10, 60)
    base = DSeparation(dag).run(_graph_data(names), plan).pvalue
    perm = rng.permutation(10)  # node j of the new data is names[perm[j]]
    inverse = np.argsort(perm)
    moved = TestPlan(
        *(
            tuple(tuple(int(inverse[j]) for j in s) for s in part)
            for part in (plan.x, plan.y, plan.z)
        )
    )
    again = DSeparation(dag).run(_graph_data([names[p] for p in perm]), moved).pvalue
    np.testing.assert_array_equal(again, base)


def test_agrees_with_causallearn_d_separation():
    cit_module = pytest.importorskip("causallearn.utils.cit")
    rng = np.random.default_rng(7)
    for _ in range(5):
        dag, names = _random_dag(rng, 10, 0.3, labelled=False)
        try:
            cit = cit_module.CIT(np.zeros((5, 10)), "d_separation", true_dag=dag)
        except Exception as exc:  # pragma: no cover - depends on the causal-learn version
            pytest.skip(f"causal-learn's d_separation CIT is unavailable: {exc}")
        plan = _random_queries(rng, 10, 40)
        plan = TestPlan(tuple(x[:1] for x in plan.x), tuple(y[:1] for y in plan.y), plan.z)
        ours = DSeparation(dag).run(_graph_data(names), plan).pvalue
        theirs = np.array(
            [cit(x[0], y[0], list(z)) for x, y, z in zip(plan.x, plan.y, plan.z, strict=True)]
        )
        np.testing.assert_array_equal(ours, theirs)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_unknown_node_name_raises():
    dag = nx.DiGraph([(("s", 0), ("s", 1)), (("s", 1), ("g", 0))])
    data = _graph_data([("s", 0), ("s", 1), ("g", 7)])
    plan = TestPlan(((0,),), ((1,),), ((),))
    with pytest.raises(ValueError, match=r"not in the oracle's DAG") as info:
        DSeparation(dag).run(data, plan)
    assert "('g', 7)" in str(info.value)
    assert "('s', 0)" not in str(info.value)


def test_not_a_dag_raises():
    with pytest.raises(ValueError, match="without cycles"):
        DSeparation(nx.DiGraph([(0, 1), (1, 2), (2, 0)]))
    with pytest.raises(ValueError, match="networkx.DiGraph"):
        DSeparation(nx.Graph([(0, 1)]))


def test_empty_plan():
    dag = nx.DiGraph([(0, 1)])
    result = DSeparation(dag).run(_graph_data([0, 1]), TestPlan((), (), ()))
    assert len(result) == 0


# --------------------------------------------------------------------------------------------
# the oracle on the generator's DAG, and Fisher-z on the generator's data
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action_to_state", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_oracle_band_tests_recover_the_assignment(seed, action_to_state):
    """Theorem 1: s_{r_k} and g_i are d-connected given the band iff segment k serves task i."""
    ds = make_task_sequences(5, 12, 3, action_to_state=action_to_state, random_state=seed)
    data = sequence_ci_data(ds.states, ds.tasks[:, :, None])
    structure = plan_tests("unary", 12, 2, 3, "band")
    result = DSeparation(ds.dag).run(data, structure.plan)
    assigned = ds.segment_assignment[structure.unit, structure.task]
    np.testing.assert_array_equal(result.pvalue == 0.0, assigned)
    # and by the independent criterion
    names = data.node_names
    expected = [
        moral_ancestral_d_separated(
            ds.dag.edges(), ds.dag.nodes(), {names[x[0]]}, {names[y[0]]}, {names[j] for j in z}
        )
        for x, y, z in zip(structure.plan.x, structure.plan.y, structure.plan.z, strict=True)
    ]
    np.testing.assert_array_equal(result.pvalue, np.array(expected, dtype=float))


@pytest.mark.slow
@pytest.mark.parametrize("seed,state_dim", [(0, 1), (1, 2), (4, 1), (5, 2), (6, 1)])
def test_fisherz_agrees_with_oracle_at_large_n(seed, state_dim):
    """On n = 20,000 linear Gaussian sequences, Fisher-z decisions at a small alpha equal the
    oracle's for the step-vs-task test at every step and task, given the band and given all
    other steps.

    (The generator's ``action_to_state=True`` is left out: there, conditioning on s_{t+1},
    a common child of s_t and a_t, partly cancels the s_t -> a_t -> g path, and one such test
    only reaches p ~ 5e-4 at this n. That is a small faithfulness margin, not an error.)
    """
    alpha = 1e-4
    n_steps, n_tasks = 12, 3
    ds = make_task_sequences(20_000, n_steps, n_tasks, state_dim=state_dim, random_state=seed)
    data = sequence_ci_data(ds.states, ds.tasks[:, :, None])
    for conditioning in ("band", "all"):
        plan = plan_tests("step", n_steps, 2, n_tasks, conditioning).plan
        oracle = DSeparation(ds.dag).run(data, plan)
        fisher = FisherZ().run(data, plan)
        dependent = oracle.pvalue == 0.0
        assert dependent.sum() >= 6 and (~dependent).sum() >= 6
        np.testing.assert_array_equal(fisher.pvalue < alpha, dependent, err_msg=conditioning)
