"""Exact CI answers from a known DAG: the d-separation oracle."""

from __future__ import annotations

from collections.abc import Hashable

import networkx as nx
import numpy as np

from .._validation import DataValidationError
from .base import CIData, CIResult, CITest, TestPlan


class DSeparation(CITest):
    """Answer CI tests by d-separation in a known DAG.

    Each node of the :class:`CIData` is looked up in ``dag`` by its name (for
    :func:`specialize.discover_structure`: ``("s", t)`` for step t and ``("g", i)`` for task i,
    the names :func:`specialize.datasets.make_task_sequences` uses).

    Parameters
    ----------
    dag : networkx.DiGraph
        The true causal graph.

    Notes
    -----
    ``pvalue`` is 0.0 where x and y are d-connected given z (dependent) and 1.0 where they are
    d-separated; ``statistic`` is 1.0 and 0.0 respectively; ``dof`` is NaN. Under the Markov
    and faithfulness conditions these are the answers of a perfect test.
    """

    name = "dseparation"
    requires_data = False
    handles_large_conditioning_sets = True

    def __init__(self, dag: nx.DiGraph):
        if not isinstance(dag, nx.DiGraph) or not nx.is_directed_acyclic_graph(dag):
            raise DataValidationError("dag must be a networkx.DiGraph without cycles")
        self.dag = dag

    def get_params(self) -> dict:
        return {"n_nodes": self.dag.number_of_nodes(), "n_edges": self.dag.number_of_edges()}

    def d_separated(self, x: set[Hashable], y: set[Hashable], z: set[Hashable]) -> bool:
        """Whether node sets x and y are d-separated by z in the DAG."""
        return nx.is_d_separator(self.dag, set(x), set(y), set(z))

    def run(self, data: CIData, plan: TestPlan) -> CIResult:
        names = data.node_names
        missing = [n for n in set(names) if n not in self.dag]
        if missing:
            raise DataValidationError(
                f"nodes {sorted(map(str, missing))[:5]} of the data are not in the oracle's DAG"
            )
        separated = np.array(
            [
                self.d_separated(
                    {names[j] for j in x}, {names[j] for j in y}, {names[j] for j in z}
                )
                for x, y, z in zip(plan.x, plan.y, plan.z, strict=True)
            ],
            dtype=bool,
        )
        k = len(plan)
        return CIResult(
            statistic=(~separated).astype(float),
            pvalue=separated.astype(float),
            dof=np.full(k, np.nan),
            n_samples=np.full(k, data.n_samples, dtype=int),
        )
