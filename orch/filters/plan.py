"""The built-in filter kinds described as :mod:`orch.core.filterplan` plans.

What each term reads (see :mod:`orch.filters.builtin` and :mod:`orch.filters.compound`):
a fact term and ``fact()`` / ``has_fact()`` one fact path; a class or agent term, a bare
class name, ``has_class()`` and ``has_agent()`` whether *any* of the node's names matches
a pattern; an identity term and ``identity()`` the identity. Anything else — a function
that is not the built-in one of its name, a plugin's — makes the plan None: the store then
evaluates node by node, which is always exact.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

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
from orch.filters.terms import compare, compile_regex, is_regex_pattern, to_text

# A regex that is a caret and plain characters is exactly "starts with": no metacharacter,
# no flag, no escape. Anything else is searched by the regex engine itself.
_LITERAL_PREFIX = re.compile(r"\^([A-Za-z0-9_:@-]+)")


def searched(pattern: str) -> Callable[[Iterable[str]], frozenset[str]]:
    """The names ``pattern`` is found in, as the regex engine searches them (compiled once;
    raises FilterSyntaxError now for a pattern nothing compiles)."""
    literal = _LITERAL_PREFIX.fullmatch(pattern)
    if literal is not None:
        prefix = literal.group(1)
        return lambda names: frozenset(name for name in names if name.startswith(prefix))
    regex = compile_regex(pattern)
    return lambda names: frozenset(name for name in names if regex.search(name) is not None)


def fact_term(term: Any, engine: FilterEngine, match: Callable[..., bool]) -> Plan:
    """A ``-F`` term: the fact its ``fact`` names (a malformed term raises on every node)."""
    def evaluate(view: NodeView) -> bool:
        return bool(match(term, view, engine))

    path = term.get("fact") if isinstance(term, Mapping) else None
    if not isinstance(path, str):
        return Leaf(NOTHING, evaluate)
    return Leaf(FACT, evaluate, path=path)


def names_term(kind: str, term: Any, engine: FilterEngine, match: Callable[..., bool]) -> Plan:
    """A ``-C`` / ``-A`` term: any name matching the pattern (checked before names are)."""
    def evaluate(view: NodeView) -> bool:
        return bool(match(term, view, engine))

    return Leaf(CLASSES if kind == "class" else AGENTS, evaluate, probe=evaluate)


def identity_term(term: Any, engine: FilterEngine, match: Callable[..., bool]) -> Plan:
    """A ``-I`` term: one name, or a regex searched in the identity."""
    def evaluate(view: NodeView) -> bool:
        return bool(match(term, view, engine))

    try:
        evaluate(NodeView(""))
    except FilterSyntaxError:  # malformed: raises for every node alike
        return Leaf(NOTHING, evaluate)
    if isinstance(term, str) and is_regex_pattern(term):
        return Leaf(IDENTITY, evaluate, matching=searched(term[1:-1]))
    return Leaf(IDENTITY, evaluate,
                matching=lambda names: frozenset(name for name in names if name == term))


def compound_term(expression: Any, engine: FilterEngine) -> Plan | None:
    """A ``-S`` expression, or None when it calls a function other than the built-ins."""
    from orch.filters import compound

    try:
        tree = compound.parse(expression)
    except FilterSyntaxError:
        def fails(view: NodeView) -> bool:
            return compound.matches(expression, view, engine)

        return Leaf(NOTHING, fails)
    return _expression(tree, engine)


def _expression(tree: Any, engine: FilterEngine) -> Plan | None:
    from orch.filters import builtin, compound

    if isinstance(tree, compound.And | compound.Or):
        parts = [_expression(operand, engine) for operand in tree.operands]
        if any(part is None for part in parts):
            return None
        known = tuple(part for part in parts if part is not None)
        return AllOf(known) if isinstance(tree, compound.And) else AnyOf(known)
    if isinstance(tree, compound.Not):
        part = _expression(tree.operand, engine)
        return None if part is None else NotOf(part)

    def evaluate(view: NodeView) -> bool:
        return bool(tree.evaluate(view, engine))

    if isinstance(tree, compound.FactTest):
        return Leaf(FACT, evaluate, path=tree.term.fact)
    if isinstance(tree, compound.ClassTest):
        return Leaf(CLASSES, evaluate, probe=evaluate)
    if not isinstance(tree, compound.Call):
        return None
    function = engine.functions.get(tree.name)
    args = tree.args
    if function in (builtin.fact_function, builtin.has_fact_function):
        if len(args) != 1 or not isinstance(args[0], str):  # raises on every node
            return Leaf(NOTHING, evaluate)
        return Leaf(FACT, evaluate, path=args[0],
                    null_differs=function is builtin.has_fact_function)
    if function in (builtin.has_class_function, builtin.has_agent_function):
        def probe(view: NodeView) -> bool:
            return bool(function(view, *args))

        reads = CLASSES if function is builtin.has_class_function else AGENTS
        return Leaf(reads, evaluate, probe=probe)
    if function is builtin.identity_function:
        return _identity_call(tree, evaluate)
    return None


def _identity_call(call: Any, evaluate: Callable[[NodeView], bool]) -> Plan:
    """``identity()``: with arguments it raises, with a ``.field`` it finds nothing in a
    string — alike for every node; compared, it is the identity compared."""
    if call.args or call.path:
        return Leaf(NOTHING, evaluate)
    try:
        evaluate(NodeView(""))
    except FilterSyntaxError:
        return Leaf(NOTHING, evaluate)
    operator, value = call.operator, call.value
    if operator == "=~" and value is not None:
        return Leaf(IDENTITY, evaluate, matching=searched(to_text(value)))
    if operator is not None and value is not None:
        return Leaf(IDENTITY, evaluate, matching=lambda names: frozenset(
            name for name in names if compare(name, operator, value)))
    return Leaf(IDENTITY, evaluate)
