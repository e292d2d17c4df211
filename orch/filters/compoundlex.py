"""The compound filter language's tokenizer: the text of an expression into tokens.

The grammar and the language are described in :mod:`orch.filters.compound`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from orch.filters.terms import TYPED_OPERATORS

_KEYWORDS = frozenset({"and", "or", "not"})
# Characters that end a bare word (besides whitespace): they start other tokens.
_WORD_STOP = frozenset("(),'\"=!<>")
_OPERATOR_START = frozenset("=!<>")


class Kind(enum.Enum):
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
class Token:
    """One token: its kind, its text (unescaped for strings), and where it sits."""

    kind: Kind
    text: str
    pos: int
    end: int


class Problem(Exception):
    """A parse failure at a position; :func:`parse` turns it into a FilterSyntaxError."""

    def __init__(self, pos: int, why: str) -> None:
        super().__init__(why)
        self.pos = pos
        self.why = why


def tokenize(expression: str) -> list[Token]:
    """Split ``expression`` into tokens, ending with an END token.

    The tokenizer is contextual in one place: right after an operator it reads a *value*,
    which may contain characters (``=``, ``,``, ``/`` …) that would end a name elsewhere.
    """
    tokens: list[Token] = []
    pos = 0
    while True:
        pos = _skip_space(expression, pos)
        if pos >= len(expression):
            tokens.append(Token(Kind.END, "", pos, pos))
            return tokens
        previous = tokens[-1] if tokens else None
        if previous is not None and previous.kind is Kind.OP:
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


def _scan_token(expression: str, pos: int, previous: Token | None) -> Token:
    """Read the token starting at ``pos`` outside a value."""
    char = expression[pos]
    punctuation = {"(": Kind.LPAREN, ")": Kind.RPAREN, ",": Kind.COMMA}
    if char in punctuation:
        return Token(punctuation[char], char, pos, pos + 1)
    if char in "'\"":
        return _scan_string(expression, pos)
    if char == "/":
        end = _regex_end(expression, pos)
        if end is None:
            raise Problem(pos, "unterminated regex: no closing '/'")
        return Token(Kind.REGEX, expression[pos + 1 : end], pos, end + 1)
    if char in _OPERATOR_START:
        return _scan_operator(expression, pos)
    if char == "." and _directly_after_call(previous, pos):
        text = "." + _scan_word(expression, pos + 1)
        return Token(Kind.FIELD, text, pos, pos + len(text))
    word = _scan_word(expression, pos)
    keyword = word.lower()
    if keyword in _KEYWORDS:
        return Token(Kind[keyword.upper()], word, pos, pos + len(word))
    return Token(Kind.WORD, word, pos, pos + len(word))


def _directly_after_call(previous: Token | None, pos: int) -> bool:
    """True when ``pos`` immediately follows a ``)``: a ``.`` there starts a field path."""
    return previous is not None and previous.kind is Kind.RPAREN and previous.end == pos


def _scan_operator(expression: str, pos: int) -> Token:
    """Read a comparison operator, or a lone ``!`` meaning ``not``."""
    for operator in TYPED_OPERATORS:
        if expression.startswith(operator, pos):
            return Token(Kind.OP, operator, pos, pos + len(operator))
    return Token(Kind.NOT, "!", pos, pos + 1)


def _scan_word(expression: str, pos: int) -> str:
    """Read a bare word: everything up to whitespace or a character that starts a token."""
    end = pos
    while end < len(expression):
        char = expression[end]
        if char.isspace() or char in _WORD_STOP:
            break
        end += 1
    return expression[pos:end]


def _scan_value(expression: str, pos: int) -> Token:
    """Read the value after an operator: quoted, a whole ``/regex/``, or a bare run."""
    char = expression[pos]
    if char in "'\"":
        return _scan_string(expression, pos)
    if char in "()":
        return _scan_token(expression, pos, None)
    if char == "/":
        end = _regex_end(expression, pos)
        if end is not None and _ends_value(expression, end + 1):
            return Token(Kind.VALUE, expression[pos : end + 1], pos, end + 1)
    end = pos
    while not _ends_value(expression, end):
        end += 1
    return Token(Kind.VALUE, expression[pos:end], pos, end)


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


def _scan_string(expression: str, pos: int) -> Token:
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
            return Token(Kind.STRING, "".join(chars), pos, index + 1)
        else:
            chars.append(char)
            index += 1
    raise Problem(pos, f"unterminated string: no closing {quote}")
