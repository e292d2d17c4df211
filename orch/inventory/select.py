"""Evaluating a filter against the store by distinct value, not node by node.

At 10,000 nodes, decoding every node's facts and running the filter on each costs
hundreds of milliseconds in Python. But a fact term's answer depends only on the value of
its one fact, and a class, agent or identity term only on those names — and a fleet has
few distinct values per fact (7 roles, 3 environments …). So each term of the built-in
``fact``, ``class``, ``agent`` and ``identity`` kinds — and each leaf of a ``compound``
expression — is run, through its own ``match``/``evaluate``, once per distinct value the
store holds (the store's ``orch_node_values`` index), and the store returns the identities
holding each answer. The answer is exactly what node-by-node evaluation gives; only where
the work happens changes.

Exactness, including errors. Node by node, a term that raises
:class:`~orch.core.filter.FilterSyntaxError` leaves the node unselected, and ``and``/``or``
short-circuit left to right, so an error behind a decided operand never happens. Each term
or leaf is therefore answered as an :class:`Outcome` — the nodes for which it is true and
those for which it raises (false is the rest) — and combined with the same left-to-right
rules (:meth:`_Evaluator.all_of`, :meth:`_Evaluator.any_of`); a node is selected when every
kind's outcome is true for it.

What a leaf reads is said by the filter kind itself, through its optional ``plan`` method
(:mod:`orch.core.filterplan`): a fact path is answered per distinct value of that path plus
once for "no such fact"; classes or agents per distinct name (they match when *any* name
does); the identity per identity. A kind without ``plan``, a plan of None (a plugin's
compound function), a fact path into a list (``tags.0``), a leaf telling ``null`` from an
absent fact on a path some node holds as ``null`` (the index stores an unresolvable path as
``null`` too), or a store without the indexed lookups returns None, and the caller
evaluates node by node.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from orch.core.filter import FilterEngine, FilterSyntaxError, NodeView
from orch.core.filterplan import (
    AGENTS,
    CLASSES,
    FACT,
    IDENTITY,
    NOTHING,
    AllOf,
    AnyOf,
    Leaf,
    NotOf,
    Plan,
)

#: The order kinds are answered in: cheapest first, unknown ones last.
_ORDER = ("fact", "class", "agent", "identity", "compound")


class IndexedStore(Protocol):
    def identities(self, collective: str, agent: str | None = None) -> list[str]: ...

    def distinct_values(self, collective: str, kind: str, name: str) -> list[str]: ...

    def holders(self, collective: str, kind: str, name: str,
                values: Sequence[str]) -> set[str]: ...


class _Fallback(Exception):
    """This filter cannot be answered by value; evaluate node by node."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One term's answer over the candidate nodes: where it is true, where it raises."""

    true: frozenset[str]
    error: frozenset[str]


_TRUE, _FALSE, _ERROR = "true", "false", "error"


def indexed_select(store: Any, engine: FilterEngine, collective: str,
                   filter: Mapping[str, Sequence[Any]], agent: str | None) -> list[str] | None:
    """The non-stale identities hosting ``agent`` that ``filter`` selects, or None."""
    if not all(hasattr(store, name) for name in ("identities", "distinct_values", "holders")):
        return None
    plans: dict[str, list[Plan]] = {}
    for kind, terms in filter.items():
        make = getattr(engine.kinds.get(kind), "plan", None)
        if make is None:
            return None
        for term in terms:
            plan = make(term, engine)
            if plan is None:
                return None
            plans.setdefault(kind, []).append(plan)
    # Sorted once (cheaply when the store returns them in order), then filtered in order:
    # sorting the answer instead would cost more than the rest at 10,000 nodes.
    everyone = sorted(store.identities(collective, agent))
    if not filter:
        return everyone
    evaluator = _Evaluator(store, engine, collective, frozenset(everyone))
    try:
        # Every operation is per node, so each kind need only be answered for the nodes
        # the kinds before it left: the costly ones (per identity, compound) come last.
        for kind in sorted(plans, key=lambda k: _ORDER.index(k) if k in _ORDER else 9):
            if not evaluator.everyone:
                break
            outcomes = (evaluator.plan(plan) for plan in plans[kind])
            combined = (evaluator.any_of(outcomes) if engine.kinds[kind].match_any
                        else evaluator.all_of(outcomes))
            evaluator.everyone = combined.true
    except _Fallback:
        return None
    chosen = evaluator.everyone
    return [name for name in everyone if name in chosen]


class _Evaluator:
    """Answers terms and compound leaves as :class:`Outcome` over ``everyone``."""

    def __init__(self, store: IndexedStore, engine: FilterEngine, collective: str,
                 everyone: frozenset[str]) -> None:
        self.store = store
        self.engine = engine
        self.collective = collective
        self.everyone = everyone

    # -- combining, with the node-by-node evaluation's left-to-right rules ---------------

    def all_of(self, outcomes: Iterable[Outcome]) -> Outcome:
        """Every operand true; a node errs at the first operand that raises while it is
        still true so far (``and``, and the terms of a match-all kind)."""
        true, error = self.everyone, frozenset[str]()
        for outcome in outcomes:
            error |= true & outcome.error
            true &= outcome.true
        return Outcome(true, error)

    def any_of(self, outcomes: Iterable[Outcome]) -> Outcome:
        """Some operand true; a node errs at the first operand that raises while it is
        still false so far (``or``, and the terms of ``identity``)."""
        true, error, pending = frozenset[str](), frozenset[str](), self.everyone
        for outcome in outcomes:
            true |= pending & outcome.true
            error |= pending & outcome.error
            pending = pending - outcome.true - outcome.error
        return Outcome(true, error)

    def negate(self, outcome: Outcome) -> Outcome:
        return Outcome(self.everyone - outcome.true - outcome.error, outcome.error)

    def uniform(self, result: str) -> Outcome:
        return Outcome(self.everyone if result == _TRUE else frozenset(),
                       self.everyone if result == _ERROR else frozenset())

    # -- plans ------------------------------------------------------------------------

    def plan(self, plan: Plan) -> Outcome:
        if isinstance(plan, AllOf):
            return self.all_of(self.plan(part) for part in plan.parts)
        if isinstance(plan, AnyOf):
            return self.any_of(self.plan(part) for part in plan.parts)
        if isinstance(plan, NotOf):
            return self.negate(self.plan(plan.part))
        return self.leaf(plan)

    def leaf(self, leaf: Leaf) -> Outcome:
        if leaf.reads == FACT:
            return self.by_fact(leaf.path, leaf.evaluate, null_differs=leaf.null_differs)
        if leaf.reads in (CLASSES, AGENTS) and leaf.probe is not None:
            return self.by_names("class" if leaf.reads == CLASSES else "agent", leaf.probe,
                                 leaf.evaluate)
        if leaf.reads == IDENTITY:
            if leaf.matching is not None:
                return Outcome(leaf.matching(self.everyone), frozenset())
            return self.by_each_identity(leaf.evaluate)
        if leaf.reads == NOTHING:
            return self.uniform(self._result(leaf.evaluate, NodeView("")))
        raise _Fallback

    # -- answering by what a leaf reads ------------------------------------------------

    def _result(self, evaluate: Callable[[NodeView], bool], view: NodeView) -> str:
        try:
            return _TRUE if evaluate(view) else _FALSE
        except FilterSyntaxError:
            return _ERROR

    def _holders(self, kind: str, name: str, values: Sequence[str]) -> frozenset[str]:
        if not values:
            return frozenset()
        return self.everyone.intersection(
            self.store.holders(self.collective, kind, name, values))

    def by_fact(self, path: str, evaluate: Callable[[NodeView], bool], *,
                null_differs: bool = False) -> Outcome:
        """A leaf reading one fact path: answered per distinct value and for its absence."""
        if any(part.isdigit() for part in path.split(".")):
            raise _Fallback  # a path into a list is not indexed
        values = self.store.distinct_values(self.collective, "fact", path)
        if null_differs and "null" in values:
            raise _Fallback
        groups: dict[str, list[str]] = {_TRUE: [], _FALSE: [], _ERROR: []}
        for value in values:
            groups[self._result(evaluate, NodeView("", {path: json.loads(value)}))].append(value)
        absent = self._result(evaluate, NodeView("", {}))
        if absent == _FALSE:
            return Outcome(self._holders("fact", path, groups[_TRUE]),
                           self._holders("fact", path, groups[_ERROR]))
        # Nodes lacking the fact are those holding none of its values.
        others = [result for result in (_TRUE, _FALSE, _ERROR) if result != absent]
        own = {result: self._holders("fact", path, groups[result]) for result in others}
        own[absent] = self.everyone - own[others[0]] - own[others[1]]
        return Outcome(own[_TRUE], own[_ERROR])

    def by_names(self, kind: str, probe: Callable[[NodeView], bool],
                 evaluate: Callable[[NodeView], bool]) -> Outcome:
        """A leaf over a node's classes or agents that depends only on whether *any* of them
        matches ``probe`` (a name pattern): answered per distinct name."""
        def view(names: frozenset[str]) -> NodeView:
            return NodeView("", classes=names) if kind == "class" else NodeView("", agents=names)

        none = self._result(evaluate, view(frozenset()))
        if none == _ERROR:  # a malformed pattern or argument raises before any name is read
            return self.uniform(_ERROR)
        good = []
        for name in self.store.distinct_values(self.collective, kind, ""):
            result = self._result(probe, view(frozenset({name})))
            if result == _ERROR:
                raise _Fallback
            if result == _TRUE:
                good.append(name)
        matched = self._holders(kind, "", good)
        some = self._result(evaluate, view(frozenset(good[:1]))) if good else _FALSE
        if some == _ERROR:
            raise _Fallback
        true = (matched if some == _TRUE else frozenset()) | \
            (self.everyone - matched if none == _TRUE else frozenset())
        return Outcome(true, frozenset())

    def by_each_identity(self, evaluate: Callable[[NodeView], bool]) -> Outcome:
        results = {name: self._result(evaluate, NodeView(name)) for name in self.everyone}
        return Outcome(frozenset(n for n, r in results.items() if r == _TRUE),
                       frozenset(n for n, r in results.items() if r == _ERROR))
