"""Evaluating a filter against the store by distinct value, not node by node.

At 10,000 nodes, decoding every node's facts and running the filter on each costs
hundreds of milliseconds in Python. But a fact term's answer depends only on the value of
its one fact, and a class, agent or identity term only on those names — and a fleet has
few distinct values per fact (7 roles, 3 environments …). So each term of the built-in
``fact``, ``class``, ``agent`` and ``identity`` kinds is run, through the kind's own
``match``, once per distinct value the store holds (the store's ``orch_node_values``
index), and the store returns the identities holding the matching values. The answer is
exactly what node-by-node evaluation gives; only where the work happens changes.

A filter with any other kind (``compound``, a plugin's kind), a fact path into a list, or
a store without the indexed lookups returns None: the caller then evaluates node by node.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from orch.core.filter import FilterEngine, FilterSyntaxError, NodeView

#: The built-in kinds whose answer depends only on one fact's value, or on one set of names
#: with "any name matches" semantics (see orch.filters.builtin).
INDEXED_KINDS = frozenset({"fact", "class", "agent", "identity"})


class IndexedStore(Protocol):
    def identities(self, collective: str, agent: str | None = None) -> list[str]: ...

    def distinct_values(self, collective: str, kind: str, name: str) -> list[str]: ...

    def holders(self, collective: str, kind: str, name: str,
                values: Sequence[str]) -> set[str]: ...


class _Fallback(Exception):
    """This filter cannot be answered by value; evaluate node by node."""


def indexed_select(store: Any, engine: FilterEngine, collective: str,
                   filter: Mapping[str, Sequence[Any]], agent: str | None) -> list[str] | None:
    """The non-stale identities hosting ``agent`` that ``filter`` selects, or None."""
    if not all(hasattr(store, name) for name in ("identities", "distinct_values", "holders")):
        return None
    if set(filter) - INDEXED_KINDS or not all(kind in engine.kinds for kind in filter):
        return None
    everyone = set(store.identities(collective, agent))
    chosen = set(everyone)
    try:
        # Identities last, tested only on the nodes the other kinds left.
        for kind, terms in sorted(filter.items(), key=lambda item: item[0] == "identity"):
            matches_any = engine.kinds[kind].match_any
            among = chosen if kind == "identity" else everyone
            sets = [_term(store, engine, collective, kind, term, among) for term in terms]
            if not sets:
                continue
            combined = set.union(*sets) if matches_any else set.intersection(*sets)
            chosen &= combined
    except _Fallback:
        return None
    return sorted(chosen)


def _matches(engine: FilterEngine, kind: str, term: Any, view: NodeView) -> bool:
    try:
        return bool(engine.kinds[kind].match(term, view, engine))
    except FilterSyntaxError:  # as a node would: not selected
        return False


def _term(store: IndexedStore, engine: FilterEngine, collective: str, kind: str, term: Any,
          everyone: set[str]) -> set[str]:
    if kind == "identity":
        return {name for name in everyone if _matches(engine, kind, term, NodeView(name))}
    if kind == "fact":
        path = term.get("fact") if isinstance(term, Mapping) else None
        if not isinstance(path, str) or any(part.isdigit() for part in path.split(".")):
            raise _Fallback
        values = store.distinct_values(collective, "fact", path)
        good = [v for v in values
                if _matches(engine, kind, term, NodeView("", {path: json.loads(v)}))]
        if _matches(engine, kind, term, NodeView("", {})):  # nodes without the fact match
            bad = sorted(set(values) - set(good))
            return everyone - store.holders(collective, "fact", path, bad)
        return store.holders(collective, "fact", path, good)
    names = store.distinct_values(collective, kind, "")
    empty = NodeView("")
    if _matches(engine, kind, term, empty):
        raise _Fallback  # "no class at all" matching is not a per-name question
    views = {name: (NodeView("", classes=frozenset({name})) if kind == "class"
                    else NodeView("", agents=frozenset({name}))) for name in names}
    good = [name for name, view in views.items() if _matches(engine, kind, term, view)]
    return store.holders(collective, kind, "", good)
