"""What a filter is, and how a node decides whether it is selected.

A request carries its filter as ``{kind: [term, …]}``. Each *kind* (``fact``, ``class``,
``identity``, ``agent``, ``compound`` and whatever plugins add) is a :class:`FilterKind`
found through the ``orch_filter_kinds`` hook. The node is selected when every term of every
kind matches; an empty filter selects every node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from orch.core.errors import OrchError

_MISSING = object()


class FilterSyntaxError(OrchError):
    """A filter term cannot be parsed; the message quotes the term and says why."""


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
        malformed (the node then stays silent), never anything else.
        """
        ...


class FilterEngine:
    """Evaluates request filters with the kinds and functions plugins registered."""

    def __init__(
        self,
        kinds: Mapping[str, FilterKind],
        functions: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.kinds = dict(kinds)
        self.functions = dict(functions or {})

    def parse(self, kind: str, text: str) -> Any:
        """Parse one user-typed term of ``kind`` into its wire form."""
        try:
            filter_kind = self.kinds[kind]
        except KeyError:
            raise FilterSyntaxError(
                f"unknown filter kind {kind!r}; installed kinds: {', '.join(sorted(self.kinds))}"
            ) from None
        return filter_kind.parse(text)

    def matches(self, filter: Mapping[str, Sequence[Any]], node: NodeView) -> bool:
        """True when ``node`` matches every term of ``filter``.

        Raises :class:`FilterSyntaxError` for an unknown kind or a malformed term, which the
        server treats as "not selected".
        """
        for kind, terms in filter.items():
            filter_kind = self.kinds.get(kind)
            if filter_kind is None:
                raise FilterSyntaxError(f"unknown filter kind {kind!r}")
            results = (filter_kind.match(term, node, self) for term in terms)
            if not (any(results) if filter_kind.match_any else all(results)):
                return False
        return True


def merge_filters(*filters: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """AND several filters together: the terms of each kind are concatenated."""
    merged: dict[str, list[Any]] = {}
    for one in filters:
        for kind, terms in one.items():
            merged.setdefault(kind, []).extend(terms)
    return {kind: terms for kind, terms in merged.items() if terms}
