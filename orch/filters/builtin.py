"""The built-in filter kinds and compound-filter functions, registered as a plugin.

orch's own ``setup.cfg`` registers this module under the ``orch`` entry-point group
(``filters = orch.filters.builtin``), exactly as a third-party plugin would register its own.

Wire form of one term of each kind, as carried in a request's filter mapping:

* ``fact`` (``-F role=web``): ``{"fact": "role", "operator": "==", "value": "web"}``;
* ``class`` (``-C``), ``identity`` (``-I``), ``agent`` (``-A``): a name such as
  ``"webserver"``, or a regex written ``"/^web/"``;
* ``compound`` (``-S``): the expression text, unchanged.

Every term of a kind must match, except for ``identity`` where any one suffices.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from orch.core.filter import FilterCost, FilterEngine, FilterKind, FilterSyntaxError, NodeView
from orch.core.filterplan import Plan
from orch.core.hookspecs import hookimpl
from orch.filters.terms import (
    MISSING,
    fact_value,
    match_fact,
    match_name,
    parse_fact_term,
    parse_name_pattern,
)


class FactFilter:
    """``-F fact=value``: compare one fact of the node (see :mod:`orch.filters.terms`)."""

    name = "fact"
    match_any = False

    def parse(self, text: str) -> dict[str, Any]:
        """``"role=web"`` ⇒ ``{"fact": "role", "operator": "==", "value": "web"}``."""
        return parse_fact_term(text)

    def match(self, term: Any, node: NodeView, engine: FilterEngine) -> bool:
        """Validate the wire term, then compare the node's fact."""
        return match_fact(term, node)

    def plan(self, term: Any, engine: FilterEngine) -> Plan | None:
        """One fact path's value (see :mod:`orch.core.filterplan`)."""
        from orch.filters.plan import fact_term

        return fact_term(term, engine, self.match)


class _NameFilter:
    """A kind selecting on a set of names: exact name, or ``/regex/`` searched."""

    name = "name"
    match_any = False

    def names(self, node: NodeView) -> Collection[str]:
        """The names of ``node`` this kind selects on."""
        raise NotImplementedError

    def parse(self, text: str) -> str:
        """Validate the pattern (and its regex); the wire term is the stripped text."""
        return parse_name_pattern(text, self.name)

    def match(self, term: Any, node: NodeView, engine: FilterEngine) -> bool:
        """True when any of the node's names matches the pattern ``term``."""
        return match_name(term, self.names(node))

    def plan(self, term: Any, engine: FilterEngine) -> Plan | None:
        """Whether any class (agent) matches; the identity for ``-I``."""
        from orch.filters.plan import identity_term, names_term

        if self.name == "identity":
            return identity_term(term, engine, self.match)
        return names_term(self.name, term, engine, self.match)


class ClassFilter(_NameFilter):
    """``-C class``: the node has a configuration-management class."""

    name = "class"

    def names(self, node: NodeView) -> Collection[str]:
        """The node's classes."""
        return node.classes


class IdentityFilter(_NameFilter):
    """``-I identity``: the node's identity (usually its FQDN).

    A node has one identity, so requiring every ``-I`` term would select nothing as soon as
    two names are given; ``-I web1 -I web2`` therefore means either, as in MCollective.
    """

    name = "identity"
    match_any = True

    def names(self, node: NodeView) -> Collection[str]:
        """The node's one identity."""
        return (node.identity,)


class AgentFilter(_NameFilter):
    """``-A agent``: the node hosts an agent."""

    name = "agent"

    def names(self, node: NodeView) -> Collection[str]:
        """The agents the node hosts."""
        return node.agents


class CompoundFilter:
    """``-S expression``: a boolean expression, see :mod:`orch.filters.compound`."""

    name = "compound"
    match_any = False

    def parse(self, text: str) -> str:
        """Check the expression parses so typos fail on the client, then send it as is."""
        from orch.filters.compound import parse  # the language is imported when first used

        parse(text)
        return text

    def match(self, term: Any, node: NodeView, engine: FilterEngine) -> bool:
        """Evaluate the expression against the node with the engine's functions."""
        from orch.filters.compound import matches

        return matches(term, node, engine)

    def plan(self, term: Any, engine: FilterEngine) -> Plan | None:
        """The expression's tree over what each test reads; None when it calls a function
        other than the built-ins (which may read anything)."""
        from orch.filters.plan import compound_term

        return compound_term(term, engine)

    def cost(self, term: Any) -> FilterCost:
        """One test per comparison, class test or call; depth is the operators' nesting."""
        from orch.filters.compound import cost

        tests, depth = cost(term)
        return FilterCost(tests, depth)

    def check(self, term: Any, engine: FilterEngine) -> None:
        """Every function the expression calls must be one the engine knows."""
        from orch.filters.compound import functions_called

        unknown = sorted(set(functions_called(term)) - set(engine.functions))
        if unknown:
            available = ", ".join(f"{name}()" for name in sorted(engine.functions)) or "none"
            raise FilterSyntaxError(
                f"compound filter {term!r} calls unknown function "
                f"{', '.join(f'{name}()' for name in unknown)}; available: {available}")


# --------------------------------------------------------------------------- functions


def fact_function(node: NodeView, name: str) -> Any:
    """``fact('os.family')``: the fact's value (``None`` when the node lacks it)."""
    value = fact_value(node, _string_argument("fact", name))
    return None if value is MISSING else value


def has_fact_function(node: NodeView, name: str) -> bool:
    """``has_fact('ec2')``: the node has the fact, whatever its value."""
    return fact_value(node, _string_argument("has_fact", name)) is not MISSING


def has_class_function(node: NodeView, pattern: str) -> bool:
    """``has_class('web')`` or ``has_class('/^web/')``: the node has a matching class."""
    return match_name(_string_argument("has_class", pattern), node.classes)


def has_agent_function(node: NodeView, pattern: str) -> bool:
    """``has_agent('puppet')``: the node hosts a matching agent."""
    return match_name(_string_argument("has_agent", pattern), node.agents)


def identity_function(node: NodeView) -> str:
    """``identity()``: the node's identity, e.g. ``identity() =~ /^web/``."""
    return node.identity


def _string_argument(function: str, value: object) -> str:
    """Reject a non-string argument with a message naming the function."""
    if not isinstance(value, str):
        raise FilterSyntaxError(f"{function}() takes a string argument, got {value!r}")
    return value


# --------------------------------------------------------------------------- hooks


@hookimpl
def orch_filter_kinds() -> list[FilterKind]:
    """The five built-in kinds: ``fact``, ``class``, ``identity``, ``agent``, ``compound``."""
    return [FactFilter(), ClassFilter(), IdentityFilter(), AgentFilter(), CompoundFilter()]


@hookimpl
def orch_filter_functions() -> dict[str, Callable[..., Any]]:
    """Functions for compound expressions: ``fact``, ``has_fact``, ``has_class`` …."""
    return {
        "fact": fact_function,
        "has_fact": has_fact_function,
        "has_class": has_class_function,
        "has_agent": has_agent_function,
        "identity": identity_function,
    }


# --------------------------------------------------------------------------- CLI helper
