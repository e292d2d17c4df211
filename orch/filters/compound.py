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

import enum
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from orch.core.filter import FilterBudgetError, FilterSyntaxError, NodeView
from orch.filters.terms import (
    MISSING,
    TYPED_OPERATORS,
    FactTerm,
    Scalar,
    as_number,
    compare,
    compile_regex,
    match_name,
    normalise_comparison,
)

if TYPE_CHECKING:
    from orch.core.filter import FilterEngine

#: How deeply parentheses may nest. Real filters use a handful of levels; the bound keeps a
#: hostile expression from exhausting the interpreter stack during parsing or evaluation.
MAX_NESTING = 50

_CACHE_SIZE = 1024
_KEYWORDS = frozenset({"and", "or", "not"})
# Characters that end a bare word (besides whitespace): they start other tokens.
_WORD_STOP = frozenset("(),'\"=!<>")
_OPERATOR_START = frozenset("=!<>")
# Errors show the expression with a caret under the fault only when it fits on one line.
_MAX_CARET_LENGTH = 200


class _Kind(enum.Enum):
    """Token kinds of the compound language."""

    LPAREN = "'('"
    RPAREN = "')'"
    COMMA = "','"
    AND = "'and'"
    OR = "'or'"
    NOT = "'not'"
    OP = "an operator"
    WORD = "a name"
    REGEX = "a /regex/"
    STRING = "a quoted string"
    VALUE = "a value"
    FIELD = "a .field"
    END = "the end of the expression"


@dataclass(frozen=True, slots=True)
class _Token:
    """One token: its kind, its text (unescaped for strings), and where it sits."""

    kind: _Kind
    text: str
    pos: int
    end: int


class _Problem(Exception):
    """A parse failure at a position; :func:`parse` turns it into a FilterSyntaxError."""

    def __init__(self, pos: int, why: str) -> None:
        super().__init__(why)
        self.pos = pos
        self.why = why


# --------------------------------------------------------------------------- the AST


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


# --------------------------------------------------------------------------- public API


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
        return _Parser(_tokenize(expression)).parse()
    except _Problem as problem:
        raise FilterSyntaxError(_describe(expression, problem.pos, problem.why)) from None


def _describe(expression: str, pos: int, why: str) -> str:
    """The error message: what is wrong, where, and the expression with a caret."""
    message = f"invalid compound filter {expression!r}: {why} (at position {pos})"
    if expression.strip() and len(expression) <= _MAX_CARET_LENGTH and expression.isprintable():
        message += f"\n    {expression}\n    {' ' * pos}^"
    return message


# --------------------------------------------------------------------------- tokenizer


def _tokenize(expression: str) -> list[_Token]:
    """Split ``expression`` into tokens, ending with an END token.

    The tokenizer is contextual in one place: right after an operator it reads a *value*,
    which may contain characters (``=``, ``,``, ``/`` …) that would end a name elsewhere.
    """
    tokens: list[_Token] = []
    pos = 0
    while True:
        pos = _skip_space(expression, pos)
        if pos >= len(expression):
            tokens.append(_Token(_Kind.END, "", pos, pos))
            return tokens
        previous = tokens[-1] if tokens else None
        if previous is not None and previous.kind is _Kind.OP:
            token = _scan_value(expression, pos)
        else:
            token = _scan_token(expression, pos, previous)
        tokens.append(token)
        pos = token.end


def _skip_space(expression: str, pos: int) -> int:
    """The index of the next non-whitespace character (or the end)."""
    while pos < len(expression) and expression[pos].isspace():
        pos += 1
    return pos


def _scan_token(expression: str, pos: int, previous: _Token | None) -> _Token:
    """Read the token starting at ``pos`` outside a value."""
    char = expression[pos]
    punctuation = {"(": _Kind.LPAREN, ")": _Kind.RPAREN, ",": _Kind.COMMA}
    if char in punctuation:
        return _Token(punctuation[char], char, pos, pos + 1)
    if char in "'\"":
        return _scan_string(expression, pos)
    if char == "/":
        end = _regex_end(expression, pos)
        if end is None:
            raise _Problem(pos, "unterminated regex: no closing '/'")
        return _Token(_Kind.REGEX, expression[pos + 1 : end], pos, end + 1)
    if char in _OPERATOR_START:
        return _scan_operator(expression, pos)
    if char == "." and _directly_after_call(previous, pos):
        text = "." + _scan_word(expression, pos + 1)
        return _Token(_Kind.FIELD, text, pos, pos + len(text))
    word = _scan_word(expression, pos)
    keyword = word.lower()
    if keyword in _KEYWORDS:
        return _Token(_Kind[keyword.upper()], word, pos, pos + len(word))
    return _Token(_Kind.WORD, word, pos, pos + len(word))


def _directly_after_call(previous: _Token | None, pos: int) -> bool:
    """True when ``pos`` immediately follows a ``)``: a ``.`` there starts a field path."""
    return previous is not None and previous.kind is _Kind.RPAREN and previous.end == pos


def _scan_operator(expression: str, pos: int) -> _Token:
    """Read a comparison operator, or a lone ``!`` meaning ``not``."""
    for operator in TYPED_OPERATORS:
        if expression.startswith(operator, pos):
            return _Token(_Kind.OP, operator, pos, pos + len(operator))
    return _Token(_Kind.NOT, "!", pos, pos + 1)


def _scan_word(expression: str, pos: int) -> str:
    """Read a bare word: everything up to whitespace or a character that starts a token."""
    end = pos
    while end < len(expression):
        char = expression[end]
        if char.isspace() or char in _WORD_STOP:
            break
        end += 1
    return expression[pos:end]


def _scan_value(expression: str, pos: int) -> _Token:
    """Read the value after an operator: quoted, a whole ``/regex/``, or a bare run."""
    char = expression[pos]
    if char in "'\"":
        return _scan_string(expression, pos)
    if char in "()":
        return _scan_token(expression, pos, None)
    if char == "/":
        end = _regex_end(expression, pos)
        if end is not None and _ends_value(expression, end + 1):
            return _Token(_Kind.VALUE, expression[pos : end + 1], pos, end + 1)
    end = pos
    while not _ends_value(expression, end):
        end += 1
    return _Token(_Kind.VALUE, expression[pos:end], pos, end)


def _ends_value(expression: str, pos: int) -> bool:
    """True when a bare value cannot continue at ``pos``."""
    return pos >= len(expression) or expression[pos].isspace() or expression[pos] in "()"


def _regex_end(expression: str, pos: int) -> int | None:
    """The index of the ``/`` closing the regex opened at ``pos``, skipping ``\\/``."""
    index = pos + 1
    while index < len(expression):
        char = expression[index]
        if char == "\\":
            index += 2
            continue
        if char == "/":
            return index
        index += 1
    return None


def _scan_string(expression: str, pos: int) -> _Token:
    """Read a quoted string; ``\\`` escapes only the quote character and itself."""
    quote = expression[pos]
    chars: list[str] = []
    index = pos + 1
    while index < len(expression):
        char = expression[index]
        following = expression[index + 1] if index + 1 < len(expression) else ""
        if char == "\\" and following in (quote, "\\"):
            chars.append(following)
            index += 2
        elif char == quote:
            return _Token(_Kind.STRING, "".join(chars), pos, index + 1)
        else:
            chars.append(char)
            index += 1
    raise _Problem(pos, f"unterminated string: no closing {quote}")


# --------------------------------------------------------------------------- parser


class _Parser:
    """Recursive-descent parser over the token list; one instance per expression."""

    def __init__(self, tokens: Sequence[_Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def parse(self) -> Expr:
        """Parse the whole expression; anything left over is an error."""
        if self._peek().kind is _Kind.END:
            raise _Problem(0, "empty expression")
        tree = self._or()
        token = self._peek()
        if token.kind is _Kind.RPAREN:
            raise _Problem(token.pos, "unbalanced parentheses: this ')' has no matching '('")
        if token.kind is not _Kind.END:
            raise _Problem(
                token.pos,
                f"unexpected {token.text!r}; expected 'and', 'or' or the end of the expression",
            )
        return tree

    def _peek(self) -> _Token:
        return self.tokens[self.index]

    def _advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind is not _Kind.END:
            self.index += 1
        return token

    def _or(self) -> Expr:
        operands = [self._and()]
        while self._peek().kind is _Kind.OR:
            self._advance()
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and(self) -> Expr:
        operands = [self._not()]
        while self._peek().kind is _Kind.AND:
            self._advance()
            operands.append(self._not())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _not(self) -> Expr:
        """``not``s are counted rather than recursed into, so a long run cannot overflow."""
        negations = 0
        while self._peek().kind is _Kind.NOT:
            self._advance()
            negations += 1
        atom = self._atom()
        return Not(atom) if negations % 2 else atom

    def _atom(self) -> Expr:
        token = self._peek()
        if token.kind is _Kind.LPAREN:
            return self._group()
        if token.kind in (_Kind.WORD, _Kind.REGEX):
            return self._term()
        raise self._missing_term(token)

    def _group(self) -> Expr:
        opening = self._advance()
        if self._peek().kind is _Kind.RPAREN:
            raise _Problem(opening.pos, "empty parentheses")
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise _Problem(opening.pos, f"parentheses nested more than {MAX_NESTING} deep")
        tree = self._or()
        closing = self._peek()
        if closing.kind is _Kind.END:
            raise _Problem(opening.pos, "unbalanced parentheses: this '(' is never closed")
        if closing.kind is not _Kind.RPAREN:
            raise _Problem(closing.pos, f"unexpected {closing.text!r}; expected 'and', 'or' or ')'")
        self._advance()
        self.depth -= 1
        return tree

    def _missing_term(self, token: _Token) -> _Problem:
        """Explain why no term can start at ``token``."""
        previous = self.tokens[self.index - 1] if self.index else None
        if token.kind in (_Kind.AND, _Kind.OR):
            if previous is None or previous.kind is _Kind.LPAREN:
                return _Problem(token.pos, f"{token.text!r} needs a term on its left")
            return _Problem(
                token.pos, f"expected a term after {previous.text!r}, found {token.text!r}"
            )
        if token.kind is _Kind.END and previous is not None:
            return _Problem(token.pos, f"expected a term after {previous.text!r}")
        if token.kind is _Kind.OP:
            return _Problem(token.pos, f"operator {token.text!r} has no fact name on its left")
        if token.kind is _Kind.STRING:
            return _Problem(
                token.pos, "a quoted string cannot stand alone; compare it: fact='value'"
            )
        if token.kind is _Kind.RPAREN:
            return _Problem(token.pos, "expected a term before ')'")
        return _Problem(token.pos, f"expected a term, found {token.text!r}")

    def _term(self) -> Expr:
        token = self._advance()
        if token.kind is _Kind.REGEX:
            pattern = f"/{token.text}/"
            self._check_regex(token.text, token.pos)
            return ClassTest(pattern)
        following = self._peek()
        if following.kind is _Kind.LPAREN and following.pos == token.end:
            return self._call(token)
        if following.kind is _Kind.OP:
            operator, value = self._comparison()
            return FactTest(FactTerm(token.text, operator, value))
        return ClassTest(token.text)

    def _check_regex(self, pattern: str, pos: int) -> None:
        try:
            compile_regex(pattern)
        except FilterSyntaxError as exc:
            raise _Problem(pos, str(exc)) from None

    def _comparison(self) -> tuple[str, str]:
        """Read ``OP value`` and return it in wire form."""
        operator = self._advance()
        value = self._advance()
        if value.kind not in (_Kind.VALUE, _Kind.STRING):
            raise _Problem(operator.pos, f"operator {operator.text!r} needs a value after it")
        try:
            return normalise_comparison(
                operator.text, value.text, quoted=value.kind is _Kind.STRING
            )
        except FilterSyntaxError as exc:
            raise _Problem(value.pos, str(exc)) from None

    def _call(self, name: _Token) -> Call:
        opening = self._advance()
        args = self._arguments(name, opening)
        path: tuple[str, ...] = ()
        if self._peek().kind is _Kind.FIELD:
            path = self._field_path(self._advance())
        if self._peek().kind is not _Kind.OP:
            return Call(name.text, args, path, pos=name.pos)
        operator, value = self._comparison()
        return Call(name.text, args, path, operator, value, pos=name.pos)

    def _arguments(self, name: _Token, opening: _Token) -> tuple[Scalar, ...]:
        if self._peek().kind is _Kind.RPAREN:
            self._advance()
            return ()
        args: list[Scalar] = []
        while True:
            args.append(self._argument(name, self._advance()))
            separator = self._advance()
            if separator.kind is _Kind.RPAREN:
                return tuple(args)
            if separator.kind is _Kind.END:
                raise _Problem(opening.pos, "unbalanced parentheses: this '(' is never closed")
            if separator.kind is not _Kind.COMMA:
                raise _Problem(
                    separator.pos, f"expected ',' or ')' in the arguments of {name.text}()"
                )

    def _argument(self, name: _Token, token: _Token) -> Scalar:
        if token.kind is _Kind.STRING:
            return token.text
        number = as_number(token.text) if token.kind is _Kind.WORD else None
        if number is None:
            raise _Problem(
                token.pos,
                f"arguments of {name.text}() must be quoted strings or numbers, "
                f"found {token.kind.value} {token.text!r}",
            )
        return number

    def _field_path(self, token: _Token) -> tuple[str, ...]:
        parts = tuple(token.text[1:].split("."))
        if not all(parts):
            raise _Problem(token.pos, "expected a field name after '.'")
        return parts


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
