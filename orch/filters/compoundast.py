"""The compound filter language's syntax tree: each node evaluates itself against a
:class:`~orch.core.filter.NodeView`. Built by :mod:`orch.filters.compoundparse`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from orch.core.filter import FilterSyntaxError, NodeView
from orch.filters.terms import MISSING, FactTerm, Scalar, compare, match_name

if TYPE_CHECKING:
    from orch.core.filter import FilterEngine


@dataclass(frozen=True, slots=True)
class FactTest:
    """``fact OP value``."""

    term: FactTerm

    def evaluate(self, node: NodeView, engine: FilterEngine) -> bool:
        """True when the node's fact satisfies the comparison."""
        return self.term.matches(node)


@dataclass(frozen=True, slots=True)
class ClassTest:
    """A bare class name, or ``/regex/`` over the node's classes."""

    pattern: str

    def evaluate(self, node: NodeView, engine: FilterEngine) -> bool:
        """True when the node has the class (or one matching the regex)."""
        return match_name(self.pattern, node.classes)


@dataclass(frozen=True, slots=True)
class Call:
    """``name(args…)``, optionally followed by ``.field`` lookups and a comparison."""

    name: str
    args: tuple[Scalar, ...] = ()
    path: tuple[str, ...] = ()
    operator: str | None = None
    value: Scalar | None = None
    pos: int = field(default=0, compare=False)

    def evaluate(self, node: NodeView, engine: FilterEngine) -> bool:
        """Call the function, follow the field path, then compare or take the truth."""
        function = engine.functions.get(self.name)
        if function is None:
            available = ", ".join(sorted(engine.functions)) or "none"
            raise FilterSyntaxError(
                f"unknown function {self.name}() at position {self.pos}; available: {available}"
            )
        result = _lookup(self._call(function, node), self.path)
        if self.operator is None or self.value is None:
            return result is not MISSING and bool(result)
        return compare(result, self.operator, self.value)

    def _call(self, function: Callable[..., Any], node: NodeView) -> Any:
        """Run a plugin's function; whatever it raises becomes a FilterSyntaxError.

        Functions are plugin code and the expression may call them with the wrong number or
        type of arguments; a node must answer "not selected", never crash.
        """
        try:
            return function(node, *self.args)
        except FilterSyntaxError:
            raise
        except Exception as exc:
            raise FilterSyntaxError(
                f"function {self.name}() at position {self.pos} failed: {type(exc).__name__}: {exc}"
            ) from None


@dataclass(frozen=True, slots=True)
class Not:
    """``not operand``."""

    operand: Expr

    def evaluate(self, node: NodeView, engine: FilterEngine) -> bool:
        """The negation of the operand."""
        return not self.operand.evaluate(node, engine)


@dataclass(frozen=True, slots=True)
class And:
    """``a and b and …``, kept flat so long chains do not nest."""

    operands: tuple[Expr, ...]

    def evaluate(self, node: NodeView, engine: FilterEngine) -> bool:
        """True when every operand is, evaluated left to right and short-circuiting."""
        return all(_timed(operand, node, engine) for operand in self.operands)


@dataclass(frozen=True, slots=True)
class Or:
    """``a or b or …``, kept flat so long chains do not nest."""

    operands: tuple[Expr, ...]

    def evaluate(self, node: NodeView, engine: FilterEngine) -> bool:
        """True when any operand is, evaluated left to right and short-circuiting."""
        return any(_timed(operand, node, engine) for operand in self.operands)


def _timed(operand: Expr, node: NodeView, engine: FilterEngine) -> bool:
    """Evaluate one operand after checking the request's time budget."""
    engine.check_time()
    return operand.evaluate(node, engine)


Expr: TypeAlias = FactTest | ClassTest | Call | Not | And | Or


def _lookup(value: Any, path: Sequence[str]) -> Any:
    """Follow ``.field`` lookups into a function's result, like dotted fact names."""
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list | tuple) and _is_index(part) and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


def _is_index(part: str) -> bool:
    """True for an ASCII list index; ``str.isdigit`` alone also accepts ``²``."""
    return part.isascii() and part.isdigit()
