"""What a filter is, and how a node decides whether it is selected.

A request carries its filter as ``{kind: [term, …]}``. Each *kind* (``fact``, ``class``,
``identity``, ``agent``, ``compound`` and whatever plugins add) is a :class:`FilterKind`
found through the ``orch_filter_kinds`` hook. The node is selected when every term of every
kind matches; an empty filter selects every node.

A filter arrives from the network and is evaluated before authorization (a node that is not
selected stays silent), so any certificate holder can make every node evaluate it. Each
request's filter therefore has a :class:`FilterBudget`: its encoded size, its number of
tests, how deeply it nests, and how long evaluating it may take. :meth:`FilterEngine.check`
measures the first three before any evaluation — the server refuses a request over budget,
and the client refuses to send one — and :meth:`FilterEngine.matches` stops an evaluation
that outlives the time budget. Regular expressions in filters are bounded separately, by
:mod:`orch.core.patterns`.
"""

from __future__ import annotations

import contextvars
import reprlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from orch.core.errors import OrchError

if TYPE_CHECKING:
    from orch.core.config import Settings
    from orch.core.plugins import PluginRegistry

_MISSING = object()


class FilterSyntaxError(OrchError):
    """A filter term cannot be parsed; the message quotes the term and says why."""


class FilterBudgetError(FilterSyntaxError):
    """A filter is larger, deeper, longer or slower than its :class:`FilterBudget` allows.

    A subclass of :class:`FilterSyntaxError` so that every caller that already treats a bad
    filter as a usage error (the CLI: exit 2) or as "not selected" keeps doing so; the
    server tells the two apart to refuse and audit a request over budget.
    """


@dataclass(frozen=True)
class FilterBudget:
    """What one request's filter may cost; the numbers are the ``filter_max_*`` settings."""

    #: Size of the filter as JSON text, in characters.
    max_bytes: int = 16384
    #: Elementary tests: each fact, class, identity or agent term, and each comparison,
    #: class test or function call inside a compound expression.
    max_terms: int = 100
    #: Nesting: ``and``/``or``/``not`` in a compound expression, lists and objects in a term.
    max_depth: int = 32
    #: Wall-clock seconds one evaluation may take before it is abandoned.
    max_seconds: float = 0.25

    @classmethod
    def from_settings(cls, settings: Settings) -> FilterBudget:
        return cls(settings.filter_max_bytes, settings.filter_max_terms,
                   settings.filter_max_depth, settings.filter_max_seconds)


@dataclass(frozen=True)
class FilterCost:
    """What one term costs: its elementary tests and its nesting depth."""

    terms: int = 1
    depth: int = 0


@dataclass(frozen=True)
class NodeView:
    """The facts a filter is evaluated against: one node as its filters see it."""

    identity: str
    facts: Mapping[str, Any] = field(default_factory=dict)
    classes: frozenset[str] = frozenset()
    agents: frozenset[str] = frozenset()

    def fact(self, path: str, default: Any = None) -> Any:
        """Look a fact up by name, or by dotted path into nested facts (``os.family``).

        A flat key containing dots wins over the nested path, so facts named the way
        MCollective's YAML files often name them keep working.
        """
        if path in self.facts:
            return self.facts[path]
        value: Any = self.facts
        for part in path.split("."):
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isascii() and part.isdigit() \
                    and int(part) < len(value):
                value = value[int(part)]
            else:
                return default
        return value


class FilterKind(Protocol):
    """One kind of filter term. Implement it to add a new way of selecting nodes."""

    #: The key of this kind in a request's filter mapping.
    name: str
    #: True when a node is selected if *any* term of this kind matches (identities: ``-I a
    #: -I b`` means a or b); False when every term must match (facts, classes, agents).
    match_any: bool

    def parse(self, text: str) -> Any:
        """Turn the text a user typed (``-F role=web``) into a JSON-serialisable wire term.

        Raise :class:`FilterSyntaxError` with a message naming the term on bad input.
        """
        ...

    def match(self, term: Any, node: NodeView, engine: FilterEngine) -> bool:
        """Decide whether ``node`` matches one wire ``term`` of this kind.

        ``term`` arrived from the network: raise :class:`FilterSyntaxError` if it is
        malformed (the node then stays silent), never anything else. A kind whose terms
        hold many tests should call ``engine.check_time()`` between them.
        """
        ...

    # A kind may also define ``cost(term) -> FilterCost`` when one term holds several
    # tests or nests (the compound kind does); without it a term costs one test and the
    # depth of its JSON structure. ``cost`` raises FilterSyntaxError for a malformed term.
    # It may also define ``plan(term, engine)``, describing what the term reads of a node
    # so a store can evaluate it per distinct value (see orch.core.filterplan).
    # It may also define ``check(term, engine)``, raising FilterSyntaxError for a term that
    # parses but cannot work with this engine (the compound kind: a function nobody
    # installed), so the client refuses it before sending instead of every node going
    # silent.


_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "orch_filter_deadline", default=None)


class FilterEngine:
    """Evaluates request filters with the kinds and functions plugins registered."""

    def __init__(
        self,
        kinds: Mapping[str, FilterKind],
        functions: Mapping[str, Callable[..., Any]] | None = None,
        budget: FilterBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kinds = dict(kinds)
        self.functions = dict(functions or {})
        self.budget = budget or FilterBudget()
        self._clock = clock

    @classmethod
    def for_registry(cls, registry: PluginRegistry, settings: Settings) -> FilterEngine:
        """The engine of the kinds and functions ``registry``'s plugins offer, budgeted by
        ``settings``: what a client needs to parse and check a filter before connecting."""
        return cls(registry.filter_kinds(), registry.filter_functions(),
                   FilterBudget.from_settings(settings))

    def parse(self, kind: str, text: str) -> Any:
        """Parse one user-typed term of ``kind`` into its wire form."""
        try:
            filter_kind = self.kinds[kind]
        except KeyError:
            raise FilterSyntaxError(
                f"unknown filter kind {kind!r}; installed kinds: {', '.join(sorted(self.kinds))}"
            ) from None
        return filter_kind.parse(text)

    def check(self, filter: Mapping[str, Sequence[Any]]) -> None:
        """Refuse ``filter`` if its size, terms or nesting exceed the budget.

        Raises :class:`FilterBudgetError` naming the limit (by its setting) and the term
        that crossed it; a malformed term raises :class:`FilterSyntaxError` as
        :meth:`matches` would. Cheap by construction: the size is measured first, with a
        walk that stops at the limit, so nothing larger than ``max_bytes`` is parsed.
        """
        budget = self.budget
        size, terms = 2, 0  # the filter's braces
        for kind, kind_terms in filter.items():
            filter_kind = self.kinds.get(kind)
            size += len(kind) + 5 + len(kind_terms)  # "kind":[…], and the commas
            for term in kind_terms:
                term_size, depth = _measure(term, budget.max_bytes - size, budget.max_depth)
                size += term_size
                if size > budget.max_bytes:
                    raise FilterBudgetError(
                        f"the filter is larger than {budget.max_bytes} characters "
                        "(filter_max_bytes)")
                if depth > budget.max_depth:
                    raise FilterBudgetError(
                        f"{kind} term {_shown(term)} nests more than {budget.max_depth} "
                        "levels (filter_max_depth)")
                cost = self._cost(filter_kind, term, depth)
                terms += cost.terms
                if terms > budget.max_terms:
                    raise FilterBudgetError(
                        f"{kind} term {_shown(term)} brings the filter to {terms} tests, more "
                        f"than {budget.max_terms} (filter_max_terms)")
                if cost.depth > budget.max_depth:
                    raise FilterBudgetError(
                        f"{kind} term {_shown(term)} nests {cost.depth} levels, more than "
                        f"{budget.max_depth} (filter_max_depth)")
                check_term = getattr(filter_kind, "check", None)
                if check_term is not None:
                    check_term(term, self)

    @staticmethod
    def _cost(filter_kind: FilterKind | None, term: Any, depth: int) -> FilterCost:
        """The kind's own measure of ``term``, else one test at its JSON ``depth``."""
        measure = getattr(filter_kind, "cost", None)
        if measure is not None:
            cost = measure(term)
            if isinstance(cost, FilterCost):
                return cost
        return FilterCost(1, depth)

    def matches(self, filter: Mapping[str, Sequence[Any]], node: NodeView) -> bool:
        """True when ``node`` matches every term of ``filter``.

        Raises :class:`FilterSyntaxError` for an unknown kind or a malformed term, which the
        server treats as "not selected", and :class:`FilterBudgetError` when the evaluation
        outlives ``budget.max_seconds`` (checked between terms, see :meth:`check_time`).
        """
        deadline = self._clock() + self.budget.max_seconds
        outer = _DEADLINE.get()
        token = _DEADLINE.set(deadline if outer is None else min(outer, deadline))
        try:
            for kind, terms in filter.items():
                filter_kind = self.kinds.get(kind)
                if filter_kind is None:
                    raise FilterSyntaxError(f"unknown filter kind {kind!r}")
                results = (self._timed(filter_kind, term, node) for term in terms)
                if not (any(results) if filter_kind.match_any else all(results)):
                    return False
            return True
        finally:
            _DEADLINE.reset(token)

    def _timed(self, filter_kind: FilterKind, term: Any, node: NodeView) -> bool:
        self.check_time()
        return filter_kind.match(term, node, self)

    def check_time(self) -> None:
        """Raise :class:`FilterBudgetError` when the current evaluation is past its time.

        Python cannot interrupt a running function, so the limit is cooperative: the engine
        checks it before each term, the compound kind before each operand. Each single test
        is itself bounded (patterns match in linear time), so an evaluation overruns by at
        most one test. Outside :meth:`matches` this does nothing.
        """
        deadline = _DEADLINE.get()
        if deadline is not None and self._clock() > deadline:
            raise FilterBudgetError(
                f"evaluating the filter took longer than {self.budget.max_seconds:g}s "
                "(filter_max_seconds)")


def _measure(value: Any, max_size: int, max_depth: int) -> tuple[int, int]:
    """``(size as JSON text, depth)`` of a decoded JSON value, roughly and iteratively.

    A scalar has depth 0, an object or list one more than its deepest member. Stops as
    soon as either exceeds its limit, so a hostile term costs at most the limits to
    measure. Strings count their length plus quotes (escapes are ignored: this is a budget,
    not a serializer); numbers count their decimal digits, roughly.
    """
    if isinstance(value, str):  # most terms: a class, identity or compound expression
        return len(value) + 2, 0
    size, depth = 0, 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, dict | Mapping):
            depth = max(depth, level + 1)
            size += 2 + len(item)
            for key, child in item.items():
                size += len(key) + 3 if isinstance(key, str) else 8
                stack.append((child, level + 1))
        elif isinstance(item, list | tuple):
            depth = max(depth, level + 1)
            size += 2 + len(item)
            stack.extend((child, level + 1) for child in item)
        elif isinstance(item, bool) or item is None:
            size += 5
        elif isinstance(item, int):
            size += min(item.bit_length() // 3 + 2, max_size + 1)
        else:
            size += 24
        if size > max_size or depth > max_depth:
            break
    return size, depth


def _shown(term: Any, limit: int = 60) -> str:
    """A short quotation of a term for messages: budgets apply to huge and deep terms too,
    so the quotation is bounded in both (plain ``repr`` would recurse without end)."""
    quoter = reprlib.Repr()
    quoter.maxlevel, quoter.maxstring, quoter.maxother = 3, limit, limit
    text = quoter.repr(term)
    return text if len(text) <= limit else text[: limit - 4] + "…" + text[-1]
