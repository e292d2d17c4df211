"""Discovery by distinct value (orch.inventory.select) gives exactly what evaluating the
filter node by node gives, for every indexed filter kind and compound expressions (errors
and short-circuits included), on a real SQLite store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orch.core.client import Client
from orch.core.config import load_settings
from orch.core.filter import FilterEngine
from orch.core.inventory import NodeRecord
from orch.inventory.discovery import select
from orch.inventory.select import indexed_select
from orch.inventory.sqlite import SQLiteStore
from orch.inventory.sqlstore import fact_paths

ROLES = ["web", "db", "cache", ""]
CLASSES = ["base", "role::web", "role::db", "nginx", "monitoring"]


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with Client(load_settings(overrides={"broker": "memory://", "security": "insecure"},
                              environ={})) as client:
        yield client


node_strategy = st.builds(
    lambda i, role, cores, family, classes, agents, extra: NodeRecord(
        f"n{i}", "orch",
        {"role": role, "cores": cores, "os": {"family": family}, **extra},
        tuple(classes), tuple(agents), "1", 0.0, time.time()),
    st.integers(0, 10_000), st.sampled_from(ROLES), st.one_of(st.integers(0, 16), st.just("8")),
    st.sampled_from(["Debian", "RedHat"]),
    st.lists(st.sampled_from(CLASSES), unique=True, max_size=3),
    st.lists(st.sampled_from(["rpcutil", "puppet"]), unique=True, max_size=2),
    st.sampled_from([{}, {"os.family": "Flat"}, {"tags": ["a", "b"]}, {"role.x": 1},
                     {"n": None}, {"a": {"b.c": 1}}, {"os": "flat"}]),
)

TERMS = {
    "fact": ["role=web", "role=moved", "role!=web", "role=''", "cores>4", "cores<=8", "cores=8",
             "os.family=Debian", "os.family=~/^Red/", "os.family!=Flat", "missing!=x",
             "missing=x", "tags.0=a",
             "role.x=1"],
    "class": ["base", "/^role::/", "nginx", "nosuch"],
    "identity": ["n1", "/^n1/", "/0$/"],
    "agent": ["puppet", "/pup/"],
    "compound": [
        "role=web and not nginx", "role=web or cores>4", "not (cores > 4 and /^role::/)",
        "fact('os').family = Debian", "fact('os.family') =~ /^Red/", "fact('role')",
        "has_fact('role.x') or has_fact('missing')", "has_fact('n')", "has_fact('a.b.c')",
        "has_class('/^role::/') = false", "has_agent('puppet')", "has_class(1)",
        "identity() =~ /^n1/", "identity() = n12", "identity() > n5", "identity()",
        "identity().x = 1", "identity(1)", "role=web or fact(1)", "fact(1) or role=web",
        "not fact(1) and base", "missing!=x and !monitoring", "tags.0=a or role=db",
        "fact('tags').0 = a", "cores=8 and (role='' or role=cache)",
    ],
}


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nodes=st.lists(node_strategy, max_size=25, unique_by=lambda n: n.identity),
       chosen=st.lists(st.tuples(st.sampled_from(sorted(TERMS)), st.integers(0, 20)),
                       max_size=3),
       agent=st.sampled_from(["rpcutil", "puppet", None]))
def test_by_value_agrees_with_node_by_node(client: Client, nodes: list[NodeRecord],
                                           chosen: list[tuple[str, int]],
                                           agent: str | None) -> None:
    filter: dict[str, list[Any]] = {}
    for kind, index in chosen:
        text = TERMS[kind][index % len(TERMS[kind])]
        filter.setdefault(kind, []).append(client.filters.parse(kind, text))
    store = SQLiteStore(":memory:")
    try:
        store.upsert_nodes(nodes)
        # Re-registrations: half unchanged, half with new facts, classes and agents.
        store.upsert_nodes([replace(n, facts={**n.facts, "role": "moved"}, classes=("base",),
                                    agents=("rpcutil",)) if i % 2 else n
                            for i, n in enumerate(nodes)])
        fast = indexed_select(store, client.filters, "orch", filter, agent)
        slow = select(client, store.nodes("orch", include_stale=False), filter, agent)
        if fast is not None:  # None: the filter needs node-by-node evaluation
            assert fast == slow, filter
        else:  # only for a path into a list, an unknown function, has_fact() on a null
            assert any("tags.0" in str(t) or "has_fact" in str(t) or "nosuch" in str(t)
                       for terms in filter.values() for t in terms), filter
    finally:
        store.close()


def test_plugin_functions_fall_back_to_node_by_node(client: Client) -> None:
    """A plugin's function may read anything of the node: only node by node is exact."""
    engine = FilterEngine(client.filters.kinds,
                          {**client.filters.functions, "custom": lambda node: True})
    store = SQLiteStore(":memory:")
    try:
        store.upsert_nodes([NodeRecord("n1", "orch", {"role": "web"}, (), (), "1", 0.0,
                                       time.time())])
        compound = {"compound": ["custom() and role=web"]}
        assert indexed_select(store, engine, "orch", compound, None) is None
        by_value = {"compound": ["has_fact('role') and role=web"]}
        assert indexed_select(store, engine, "orch", by_value, None) == ["n1"]
    finally:
        store.close()


def test_fact_paths_resolve_as_filters_do() -> None:
    paths = fact_paths({"os": {"family": "Debian"}, "os.family": "Flat", "a": {"b.c": 1}})
    assert paths["os.family"] == "Flat"  # a flat key with dots wins, as in NodeView.fact
    assert paths["os"] == {"family": "Debian"}
    assert paths["a.b.c"] is None
