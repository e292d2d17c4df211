"""Parsing and matching of single filter terms, shared by the filter kinds and ``-S``.

A *fact term* travels as ``{"fact": "os.family", "operator": "==", "value": "Debian"}``.
Whatever the user typed, the operator on the wire is one of :data:`OPERATORS`: ``=`` is
sent as ``==``, MCollective's ``=>``/``=<`` as ``>=``/``<=``, and ``fact=/re/`` as
``=~`` with the bare regex as the value, so nodes never re-interpret user syntax.

A *name pattern* (classes, identities, agents) is a plain name matched exactly, or
``/regex/`` searched in each name.

Everything that arrives from the network is validated here and rejected with
:class:`~orch.core.filter.FilterSyntaxError` only: a node receiving a malformed filter must
stay silent, not crash its request loop.

Comparison rules (:func:`compare`), chosen to match what an operator expects from
MCollective:

* both sides parse as numbers (ints, floats or numeric strings such as ``"10"``) ⇒ numeric
  comparison, so ``"10" > "9"``; otherwise the text forms are compared, so ``"abc" < "abd"``;
* a boolean is written ``true``/``false`` and compared case-insensitively;
* ``=~`` searches the text form with :func:`orch.core.patterns.search` (RE2: linear time,
  whatever the pattern — see that module for why);
* a list value matches ``==``, ``=~``, ``<`` … when any element does;
* a missing fact (or one whose value is ``null``) never matches, except for ``!=``: ``!=`` is
  always exactly "not ``==``", so ``-F 'role!=db'`` selects nodes without a ``role`` too.
  That keeps ``fact!=x`` and ``not fact=x`` equivalent, which is the least surprising rule
  for compound expressions;
* a mapping (a fact that is itself a tree of facts) equals nothing, so only ``!=`` matches it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from operator import eq, ge, gt, le, lt
from typing import Any, TypeAlias

from orch.core.filter import FilterSyntaxError, NodeView
from orch.core.patterns import Pattern, PatternError, compile_pattern, is_slashed

#: A JSON scalar a fact term may compare against.
Scalar: TypeAlias = str | int | float | bool

#: The operators of a fact term on the wire.
OPERATORS: frozenset[str] = frozenset({"==", "!=", "<", ">", "<=", ">=", "=~"})

#: What users may type, longest first so that ``==`` is not read as ``=`` followed by ``=``.
TYPED_OPERATORS: tuple[str, ...] = ("==", "!=", "<=", ">=", "=~", "=>", "=<", "=", "<", ">")

#: Typed spellings that are sent as another operator.
_ALIASES: Mapping[str, str] = {"=": "==", "=>": ">=", "=<": "<="}

_ORDERINGS: Mapping[str, Callable[[Any, Any], bool]] = {
    "==": eq,
    "<": lt,
    ">": gt,
    "<=": le,
    ">=": ge,
}

#: Stands for "this fact does not exist", distinct from every fact value.
MISSING: Any = object()

# ASCII digits only: ``int()`` also accepts other scripts' digits and underscores, which no
# fact file means as a number.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# A longer "number" is an identifier or a hash, not a quantity; this also keeps ``int()``
# far from Python's limit on the digits of a decimal string.
_MAX_NUMBER_LENGTH = 100


@dataclass(frozen=True, slots=True)
class FactTerm:
    """One validated fact comparison: ``fact operator value``."""

    fact: str
    operator: str
    value: Scalar

    @classmethod
    def from_wire(cls, term: object) -> FactTerm:
        """Validate a fact term received from the network.

        Unknown extra keys are ignored so that a newer client can add some without
        silencing older nodes.
        """
        if not isinstance(term, Mapping):
            raise FilterSyntaxError(
                "a fact filter term must be an object with 'fact', 'operator' and 'value'; "
                f"got {_type_name(term)}"
            )
        fact, operator, value = term.get("fact"), term.get("operator"), term.get("value")
        if not isinstance(fact, str) or not fact:
            raise FilterSyntaxError(
                f"fact filter term: 'fact' must be a non-empty string, got {_type_name(fact)}"
            )
        if not isinstance(operator, str) or _ALIASES.get(operator, operator) not in OPERATORS:
            raise FilterSyntaxError(
                f"fact filter term on {fact!r}: 'operator' must be one of "
                f"{', '.join(sorted(OPERATORS))}"
            )
        if not isinstance(value, Scalar):
            raise FilterSyntaxError(
                f"fact filter term on {fact!r}: 'value' must be a string, number or boolean, "
                f"got {_type_name(value)}"
            )
        operator = _ALIASES.get(operator, operator)
        if operator == "=~":
            compile_regex(to_text(value))
        return cls(fact, operator, value)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-serialisable form sent in a request's ``fact`` filter."""
        return {"fact": self.fact, "operator": self.operator, "value": self.value}

    def matches(self, node: NodeView) -> bool:
        """True when ``node``'s fact satisfies this comparison (see the module rules)."""
        return compare(fact_value(node, self.fact), self.operator, self.value)


def fact_value(node: NodeView, name: str) -> Any:
    """``node.fact(name)``, or :data:`MISSING` when the node has no such fact."""
    try:
        return node.fact(name, MISSING)
    except ValueError:
        # NodeView.fact reads a path segment such as "²" (a Unicode digit that is not a
        # decimal digit) as a list index and int() rejects it; such a path names nothing.
        return MISSING


def find_operator(text: str) -> tuple[int, str] | None:
    """Find the first comparison operator in ``text``: ``(index, operator as typed)``.

    A lone ``!`` is not an operator (it is ``not`` in compound expressions), so it is
    skipped.
    """
    for index, char in enumerate(text):
        if char not in "=!<>":
            continue
        for operator in TYPED_OPERATORS:
            if text.startswith(operator, index):
                return index, operator
    return None


def normalise_comparison(operator: str, value: str, *, quoted: bool) -> tuple[str, str]:
    """Turn a typed ``operator`` and ``value`` into their wire form.

    An unquoted ``/re/`` after ``=`` or ``=~`` means a regex match, so ``fact=/^web/`` and
    ``fact=~/^web/`` both become ``("=~", "^web")``. Quoting the value, or writing ``==``,
    keeps it literal, which is how a fact equal to ``/var/`` is selected.
    Raises :class:`FilterSyntaxError` for an unknown operator or an invalid regex.
    """
    if operator in ("=", "=~") and not quoted and is_regex_pattern(value):
        operator, value = "=~", value[1:-1]
    operator = _ALIASES.get(operator, operator)
    if operator not in OPERATORS:
        raise FilterSyntaxError(f"unknown operator {operator!r}")
    if operator == "=~":
        compile_regex(value)
    return operator, value


def parse_fact_term(text: str) -> dict[str, Any]:
    """Parse what a user typed after ``-F`` into a wire fact term.

    ``"os.family=Debian"`` ⇒ ``{"fact": "os.family", "operator": "==", "value": "Debian"}``.
    Spaces around the operator are allowed; a value wrapped in matching ``'`` or ``"`` is
    taken literally (the only way to select an empty value: ``fact=''``).
    """
    if not isinstance(text, str):
        raise FilterSyntaxError(f"a fact filter must be a string, got {_type_name(text)}")
    found = find_operator(text)
    if found is None:
        raise FilterSyntaxError(
            f"fact filter {text!r} has no operator; write fact=value, fact!=value, "
            "fact>=number or fact=~/regex/"
        )
    index, operator = found
    fact, raw_value = text[:index].strip(), text[index + len(operator) :].strip()
    _check_fact_name(fact, text)
    quoted = len(raw_value) >= 2 and raw_value[0] in "'\"" and raw_value[-1] == raw_value[0]
    if not raw_value:
        raise FilterSyntaxError(
            f"fact filter {text!r} has no value after {operator!r}; "
            "write fact='' to select an empty value"
        )
    value = raw_value[1:-1] if quoted else raw_value
    try:
        wire_operator, wire_value = normalise_comparison(operator, value, quoted=quoted)
    except FilterSyntaxError as exc:
        raise FilterSyntaxError(f"fact filter {text!r}: {exc}") from None
    return FactTerm(fact, wire_operator, wire_value).to_wire()


def match_fact(term: object, node: NodeView) -> bool:
    """Decide whether ``node`` matches a wire fact ``term``, validating it first."""
    return FactTerm.from_wire(term).matches(node)


def compare(actual: Any, operator: str, expected: Scalar) -> bool:
    """Compare a fact (or function) value with a term's value; see the module rules.

    ``actual`` may be :data:`MISSING`. ``operator`` must already be a wire operator.
    """
    if operator == "!=":
        return not compare(actual, "==", expected)
    if actual is MISSING or actual is None:
        return False
    if isinstance(actual, list | tuple | set | frozenset):
        return any(_compare_scalar(element, operator, expected) for element in actual)
    return _compare_scalar(actual, operator, expected)


def _compare_scalar(actual: Any, operator: str, expected: Scalar) -> bool:
    """Compare one non-list value; containers and ``null`` inside a list match nothing."""
    if actual is None or isinstance(actual, Mapping | list | tuple | set | frozenset):
        return False
    if operator == "=~":
        return compile_regex(to_text(expected)).search(to_text(actual)) is not None
    ordering = _ORDERINGS[operator]
    actual_number, expected_number = as_number(actual), as_number(expected)
    if actual_number is not None and expected_number is not None:
        return ordering(actual_number, expected_number)
    actual_text, expected_text = to_text(actual), to_text(expected)
    if isinstance(actual, bool) or isinstance(expected, bool):
        actual_text, expected_text = actual_text.lower(), expected_text.lower()
    return ordering(actual_text, expected_text)


def as_number(value: object) -> int | float | None:
    """The numeric value of an int, float or numeric string; ``None`` for anything else.

    Booleans are not numbers here: ``true`` must not equal ``1``.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if (
        isinstance(value, str)
        and len(value) <= _MAX_NUMBER_LENGTH
        and _NUMBER.fullmatch(value) is not None
    ):
        try:
            return int(value)
        except ValueError:
            return float(value)
    return None


def to_text(value: object) -> str:
    """The text form a value is compared or regex-searched as."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except ValueError:
        # An int beyond Python's decimal-conversion limit: hex is exact and cannot fail.
        return hex(value) if isinstance(value, int) else ""


def is_regex_pattern(text: str) -> bool:
    """True when ``text`` is written ``/regex/``."""
    return is_slashed(text)


def compile_regex(pattern: str) -> Pattern:
    """Compile ``pattern`` with the bounded engine (cached in :mod:`orch.core.patterns`).

    Raises :class:`FilterSyntaxError` naming the pattern and the reason it is refused.
    """
    try:
        return compile_pattern(pattern)
    except PatternError as exc:
        raise FilterSyntaxError(f"invalid regex {pattern!r}: {exc}") from None


def parse_name_pattern(text: str, kind: str) -> str:
    """Validate a user-typed class, identity or agent pattern and return its wire form.

    ``kind`` only names the filter in error messages.
    """
    if not isinstance(text, str):
        raise FilterSyntaxError(f"a {kind} filter must be a string, got {_type_name(text)}")
    pattern = text.strip()
    if not pattern:
        raise FilterSyntaxError(f"empty {kind} filter; give a name or a /regex/")
    if is_regex_pattern(pattern):
        _compile_name_regex(pattern, kind)
    elif any(char.isspace() for char in pattern):
        raise FilterSyntaxError(
            f"{kind} filter {text!r} contains whitespace; give one name, or a /regex/"
        )
    return pattern


def match_name(pattern: object, names: Collection[str]) -> bool:
    """True when some name in ``names`` is ``pattern``, or is matched by ``/pattern/``.

    ``pattern`` may have come from the network, so it is validated here.
    """
    if not isinstance(pattern, str) or not pattern:
        raise FilterSyntaxError(
            f"a name filter term must be a non-empty string, got {_type_name(pattern)}"
        )
    if is_regex_pattern(pattern):
        regex = _compile_name_regex(pattern, "name")
        return any(regex.search(name) is not None for name in names)
    return pattern in names


def _compile_name_regex(pattern: str, kind: str) -> Pattern:
    """Compile the body of a ``/regex/`` name pattern, naming the kind on failure."""
    try:
        return compile_regex(pattern[1:-1])
    except FilterSyntaxError as exc:
        raise FilterSyntaxError(f"{kind} filter {pattern!r}: {exc}") from None


def _check_fact_name(fact: str, text: str) -> None:
    """Reject an empty fact name or one with spaces, quoting the whole term."""
    if not fact:
        raise FilterSyntaxError(f"fact filter {text!r} has no fact name before the operator")
    if any(char.isspace() for char in fact):
        raise FilterSyntaxError(f"fact filter {text!r}: fact name {fact!r} contains whitespace")


def _type_name(value: object) -> str:
    """Describe a bad value by its JSON type only: its repr could be huge or hostile."""
    if value is None:
        return "null"
    return type(value).__name__
