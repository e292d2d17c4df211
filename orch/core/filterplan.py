"""What a filter term reads of a node: how a store can evaluate it per distinct value.

A node evaluates its filter against itself. A store (the inventory) holds thousands of
nodes, and running each term on each node costs hundreds of milliseconds at 10,000 nodes;
but most terms read one thing — one fact's value, the class names, the identity — and a
fleet has few distinct values of each. A :class:`~orch.core.filter.FilterKind` may describe
a term as a :data:`Plan` through an optional ``plan(term, engine)`` method: a tree of
:class:`AllOf` / :class:`AnyOf` / :class:`NotOf` (evaluated left to right with
short-circuit, as the node does) over :class:`Leaf` s, each saying what it reads and how
to evaluate it on a node showing only that. The store then evaluates each leaf once per
distinct value (``orch.inventory.select``). ``plan`` returns None for a term it cannot
describe exactly (a plugin's function may read anything); the store then evaluates node
by node. The kind owns the promise: a leaf's answer must depend on nothing but what it
says it reads, or a store's answer would differ from the nodes'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeAlias

from orch.core.filter import NodeView

#: ``Leaf.reads`` values.
FACT, CLASSES, AGENTS, IDENTITY, NOTHING = "fact", "classes", "agents", "identity", "nothing"


@dataclass(frozen=True, slots=True)
class Leaf:
    """One test of a term, evaluated on a :class:`NodeView` holding only what it reads.

    ``reads`` is one of:

    * ``fact``: the value of fact ``path`` (``NodeView("", {path: value})``, or no facts for
      a node without it). ``null_differs`` says the leaf tells a ``null`` value from an
      absent fact (``has_fact``);
    * ``classes`` / ``agents``: the answer depends only on whether *any* of the node's
      names satisfies ``probe`` (evaluated on a view holding one name); ``evaluate`` on a
      view with one such name, or none, gives the answer. A malformed pattern must raise
      on every view alike;
    * ``identity``: the node's identity (``NodeView(identity)``); ``matching``, when given,
      returns at once the identities among its argument for which the leaf is true (it
      never raises);
    * ``nothing``: the same answer, or the same error, for every node.

    ``evaluate`` raises :class:`~orch.core.filter.FilterSyntaxError` where the node would
    (the node is then not selected).
    """

    reads: str
    evaluate: Callable[[NodeView], bool]
    path: str = ""
    null_differs: bool = False
    probe: Callable[[NodeView], bool] | None = None
    matching: Callable[[Iterable[str]], frozenset[str]] | None = None


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every part, left to right, stopping at the first false or raising one."""

    parts: tuple[Plan, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Some part, left to right, stopping at the first true or raising one."""

    parts: tuple[Plan, ...]


@dataclass(frozen=True, slots=True)
class NotOf:
    """The negation of a part (which raises where the part raises)."""

    part: Plan


Plan: TypeAlias = Leaf | AllOf | AnyOf | NotOf
