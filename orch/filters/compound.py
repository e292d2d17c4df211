"""The compound filter language of ``-S``: boolean expressions over facts, classes, functions.

Grammar (keywords are case-insensitive; ``not`` binds tighter than ``and``, which binds
tighter than ``or``)::

    expr     := or_expr
    or_expr  := and_expr ('or' and_expr)*
    and_expr := not_expr ('and' not_expr)*
    not_expr := ('not' | '!') not_expr | atom
    atom     := '(' expr ')' | term
    term     := fact OP value          -- role=web, uptime >= 3600, os.family=~/deb/
              | name | /regex/         -- a class
              | func '(' args ')' ('.' field)* (OP value)?

``OP`` is one of ``= == != < > <= >= =~`` (and MCollective's ``=>``/``=<``); comparisons
follow :func:`orch.filters.terms.compare`. A value is a run of characters up to whitespace
or a parenthesis, a ``/regex/`` (which may contain spaces and ``\\/``), or a string quoted
with ``'`` or ``"`` (inside which ``\\'``, ``\\"`` and ``\\\\`` are escapes; any other
backslash is kept, so regexes need no doubling). A value that contains ``/`` but is not one
whole regex, such as ``/dev/sda``, is literal. Function arguments are quoted strings or
numbers; a function's result is compared like a fact, or used for its truth without an
operator. Functions come from the ``orch_filter_functions`` hook.

The text of the expression travels on the wire unchanged; each node parses it (once, thanks
to a cache) and evaluates it against itself. Every failure — at parse or at evaluation — is
a :class:`~orch.core.filter.FilterSyntaxError` whose message quotes the expression.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from orch.core.filter import FilterBudgetError, FilterSyntaxError, NodeView
from orch.filters.compoundast import And, Call, ClassTest, Expr, FactTest, Not, Or
from orch.filters.compoundlex import Problem, tokenize
from orch.filters.compoundparse import MAX_NESTING, Parser

if TYPE_CHECKING:
    from orch.core.filter import FilterEngine

#: The syntax tree (:mod:`orch.filters.compoundast`) and the nesting bound stay importable
#: from here, the language's public module.
__all__ = ["MAX_NESTING", "And", "Call", "ClassTest", "Expr", "FactTest", "Not", "Or",
           "cost", "functions_called", "matches", "parse"]

_CACHE_SIZE = 1024
# Errors show the expression with a caret under the fault only when it fits on one line.
_MAX_CARET_LENGTH = 200


def parse(expression: str) -> Expr:
    """Parse a compound expression into its AST, from a cache of recent expressions.

    Raises :class:`FilterSyntaxError` quoting the expression and the position of the fault.
    """
    if not isinstance(expression, str):
        raise FilterSyntaxError(
            f"a compound filter must be a string, got {type(expression).__name__}"
        )
    return _parse_cached(expression)


def matches(expression: str, node: NodeView, engine: FilterEngine) -> bool:
    """Parse (or fetch from the cache) and evaluate ``expression`` against ``node``."""
    tree = parse(expression)
    try:
        return tree.evaluate(node, engine)
    except FilterBudgetError:
        raise
    except FilterSyntaxError as exc:
        raise FilterSyntaxError(f"compound filter {expression!r}: {exc}") from None


def cost(expression: str) -> tuple[int, int]:
    """``(tests, depth)`` of an expression: its comparisons, class tests and calls, and how
    deeply its ``and``/``or``/``not`` nest — what the filter budget counts."""
    parse(expression)  # validates the type before the cache hashes it
    return _cost_cached(expression)


def functions_called(expression: str) -> tuple[str, ...]:
    """The names of the functions ``expression`` calls, each once, in order of appearance."""
    names: dict[str, None] = {}
    stack: list[Expr] = [parse(expression)]
    while stack:
        tree = stack.pop()
        if isinstance(tree, And | Or):
            stack.extend(reversed(tree.operands))
        elif isinstance(tree, Not):
            stack.append(tree.operand)
        elif isinstance(tree, Call):
            names[tree.name] = None
    return tuple(names)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cost_cached(expression: str) -> tuple[int, int]:
    """Cached like the parse: a fleet sees the same few expressions again and again."""
    tests, depth = 0, 0
    stack: list[tuple[Expr, int]] = [(parse(expression), 0)]
    while stack:
        tree, level = stack.pop()
        depth = max(depth, level)
        if isinstance(tree, And | Or):
            stack.extend((operand, level + 1) for operand in tree.operands)
        elif isinstance(tree, Not):
            stack.append((tree.operand, level + 1))
        else:
            tests += 1
    return tests, depth


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parse_cached(expression: str) -> Expr:
    """The cached parse; failures are not cached, so each is reported every time."""
    try:
        return Parser(tokenize(expression)).parse()
    except Problem as problem:
        raise FilterSyntaxError(_describe(expression, problem.pos, problem.why)) from None


def _describe(expression: str, pos: int, why: str) -> str:
    """The error message: what is wrong, where, and the expression with a caret."""
    message = f"invalid compound filter {expression!r}: {why} (at position {pos})"
    if expression.strip() and len(expression) <= _MAX_CARET_LENGTH and expression.isprintable():
        message += f"\n    {expression}\n    {' ' * pos}^"
    return message
