"""The compound filter language's recursive-descent parser: tokens into the syntax tree
of :mod:`orch.filters.compoundast` (the grammar is in :mod:`orch.filters.compound`)."""

from __future__ import annotations

from collections.abc import Sequence

from orch.core.filter import FilterSyntaxError
from orch.filters.compoundast import And, Call, ClassTest, Expr, FactTest, Not, Or
from orch.filters.compoundlex import Kind, Problem, Token
from orch.filters.terms import FactTerm, Scalar, as_number, compile_regex, normalise_comparison

#: How deeply parentheses may nest. Real filters use a handful of levels; the bound keeps a
#: hostile expression from exhausting the interpreter stack during parsing or evaluation.
MAX_NESTING = 50


class Parser:
    """Recursive-descent parser over the token list; one instance per expression."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def parse(self) -> Expr:
        """Parse the whole expression; anything left over is an error."""
        if self._peek().kind is Kind.END:
            raise Problem(0, "empty expression")
        tree = self._or()
        token = self._peek()
        if token.kind is Kind.RPAREN:
            raise Problem(token.pos, "unbalanced parentheses: this ')' has no matching '('")
        if token.kind is not Kind.END:
            raise Problem(
                token.pos,
                f"unexpected {token.text!r}; expected 'and', 'or' or the end of the expression",
            )
        return tree

    def _peek(self) -> Token:
        return self.tokens[self.index]

    def _advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not Kind.END:
            self.index += 1
        return token

    def _or(self) -> Expr:
        operands = [self._and()]
        while self._peek().kind is Kind.OR:
            self._advance()
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and(self) -> Expr:
        operands = [self._not()]
        while self._peek().kind is Kind.AND:
            self._advance()
            operands.append(self._not())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _not(self) -> Expr:
        """``not``s are counted rather than recursed into, so a long run cannot overflow."""
        negations = 0
        while self._peek().kind is Kind.NOT:
            self._advance()
            negations += 1
        atom = self._atom()
        return Not(atom) if negations % 2 else atom

    def _atom(self) -> Expr:
        token = self._peek()
        if token.kind is Kind.LPAREN:
            return self._group()
        if token.kind in (Kind.WORD, Kind.REGEX):
            return self._term()
        raise self._missing_term(token)

    def _group(self) -> Expr:
        opening = self._advance()
        if self._peek().kind is Kind.RPAREN:
            raise Problem(opening.pos, "empty parentheses")
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise Problem(opening.pos, f"parentheses nested more than {MAX_NESTING} deep")
        tree = self._or()
        closing = self._peek()
        if closing.kind is Kind.END:
            raise Problem(opening.pos, "unbalanced parentheses: this '(' is never closed")
        if closing.kind is not Kind.RPAREN:
            raise Problem(closing.pos, f"unexpected {closing.text!r}; expected 'and', 'or' or ')'")
        self._advance()
        self.depth -= 1
        return tree

    def _missing_term(self, token: Token) -> Problem:
        """Explain why no term can start at ``token``."""
        previous = self.tokens[self.index - 1] if self.index else None
        if token.kind in (Kind.AND, Kind.OR):
            if previous is None or previous.kind is Kind.LPAREN:
                return Problem(token.pos, f"{token.text!r} needs a term on its left")
            return Problem(
                token.pos, f"expected a term after {previous.text!r}, found {token.text!r}"
            )
        if token.kind is Kind.END and previous is not None:
            return Problem(token.pos, f"expected a term after {previous.text!r}")
        if token.kind is Kind.OP:
            return Problem(token.pos, f"operator {token.text!r} has no fact name on its left")
        if token.kind is Kind.STRING:
            return Problem(
                token.pos, "a quoted string cannot stand alone; compare it: fact='value'"
            )
        if token.kind is Kind.RPAREN:
            return Problem(token.pos, "expected a term before ')'")
        return Problem(token.pos, f"expected a term, found {token.text!r}")

    def _term(self) -> Expr:
        token = self._advance()
        if token.kind is Kind.REGEX:
            pattern = f"/{token.text}/"
            self._check_regex(token.text, token.pos)
            return ClassTest(pattern)
        following = self._peek()
        if following.kind is Kind.LPAREN and following.pos == token.end:
            return self._call(token)
        if following.kind is Kind.OP:
            operator, value = self._comparison()
            return FactTest(FactTerm(token.text, operator, value))
        return ClassTest(token.text)

    def _check_regex(self, pattern: str, pos: int) -> None:
        try:
            compile_regex(pattern)
        except FilterSyntaxError as exc:
            raise Problem(pos, str(exc)) from None

    def _comparison(self) -> tuple[str, str]:
        """Read ``OP value`` and return it in wire form."""
        operator = self._advance()
        value = self._advance()
        if value.kind not in (Kind.VALUE, Kind.STRING):
            raise Problem(operator.pos, f"operator {operator.text!r} needs a value after it")
        try:
            return normalise_comparison(
                operator.text, value.text, quoted=value.kind is Kind.STRING
            )
        except FilterSyntaxError as exc:
            raise Problem(value.pos, str(exc)) from None

    def _call(self, name: Token) -> Call:
        opening = self._advance()
        args = self._arguments(name, opening)
        path: tuple[str, ...] = ()
        if self._peek().kind is Kind.FIELD:
            path = self._field_path(self._advance())
        if self._peek().kind is not Kind.OP:
            return Call(name.text, args, path, pos=name.pos)
        operator, value = self._comparison()
        return Call(name.text, args, path, operator, value, pos=name.pos)

    def _arguments(self, name: Token, opening: Token) -> tuple[Scalar, ...]:
        if self._peek().kind is Kind.RPAREN:
            self._advance()
            return ()
        args: list[Scalar] = []
        while True:
            args.append(self._argument(name, self._advance()))
            separator = self._advance()
            if separator.kind is Kind.RPAREN:
                return tuple(args)
            if separator.kind is Kind.END:
                raise Problem(opening.pos, "unbalanced parentheses: this '(' is never closed")
            if separator.kind is not Kind.COMMA:
                raise Problem(
                    separator.pos, f"expected ',' or ')' in the arguments of {name.text}()"
                )

    def _argument(self, name: Token, token: Token) -> Scalar:
        if token.kind is Kind.STRING:
            return token.text
        number = as_number(token.text) if token.kind is Kind.WORD else None
        if number is None:
            raise Problem(
                token.pos,
                f"arguments of {name.text}() must be quoted strings or numbers, "
                f"found {token.kind.value} {token.text!r}",
            )
        return number

    def _field_path(self, token: Token) -> tuple[str, ...]:
        parts = tuple(token.text[1:].split("."))
        if not all(parts):
            raise Problem(token.pos, "expected a field name after '.'")
        return parts
