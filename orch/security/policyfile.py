"""The action policy file format: ``<agent>.policy`` and ``groups`` files parsed into a
:class:`Policy`, or a :class:`PolicyError` naming the file and line.

The decisions behind the format (strict where MCollective is lenient, tab-separated
fields, filter parts parsed with the server's :class:`~orch.core.filter.FilterEngine`)
are recorded in :mod:`orch.security.actionpolicy`, the authorizer that reads these files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orch.core.errors import ConfigError
from orch.core.filter import FilterEngine, FilterSyntaxError
from orch.core.patterns import PatternError, compile_pattern
from orch.core.patterns import is_slashed as is_regex_pattern
from orch.core.protocol import valid_name

#: The file used for an agent that has no ``<agent>.policy`` of its own, when it exists.
DEFAULT_POLICY_NAME = "default.policy"
#: MCollective's callers groups file: ``name member member …`` per line, in ``policy_dir``.
GROUPS_FILE_NAME = "groups"

_FIELD_NAMES = ("callers", "actions", "facts", "classes")
_RULE_SHAPE = "allow|deny<TAB>callers<TAB>actions[<TAB>facts[<TAB>classes]]"
_COMPOUND_KEYWORDS = frozenset({"and", "or", "not"})
# ``name(`` somewhere in a token: a compound-language function call such as ``uptime()``.
_FUNCTION_CALL = re.compile(r"\w\(")
# Group names as MCollective and Choria accept them.
_GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_TABS = re.compile(r"\t+")
# Longest user text quoted in an error message: the rest of the message must stay readable.
_QUOTE_LIMIT = 80


class PolicyError(ConfigError):
    """A policy (or groups) file is malformed.

    The message is ``<file>:<line>: <what is wrong>``, so an operator can jump to the line;
    the parts are also kept as :attr:`source`, :attr:`line` (1-based) and :attr:`problem`.
    A server answering for an agent whose policy file raises this denies every request to
    that agent, because a policy that cannot be read cannot be shown to allow anything.
    """

    def __init__(self, source: str, line: int, problem: str) -> None:
        super().__init__(f"{source}:{line}: {problem}")
        self.source = source
        self.line = line
        self.problem = problem


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Rule:
    """One ``allow``/``deny`` line. ``None`` in a field stands for ``*`` (anything)."""

    allow: bool
    #: Caller ids (``cert=alice``), ``/regex/`` patterns searched in the caller id, and
    #: names of groups from the ``groups`` file.
    callers: tuple[str, ...] | None
    actions: tuple[str, ...] | None
    #: A wire filter: ``{"fact": [term, …]}`` (every term must match) or
    #: ``{"compound": [expression]}``.
    facts: Mapping[str, list[Any]] | None
    #: Class names or ``/regex/`` patterns; the node must have every one.
    classes: tuple[str, ...] | None
    #: 1-based line number in the file, for decisions and audit records.
    line: int


@dataclass(frozen=True)
class Policy:
    """A parsed policy file: its rules in file order and the decision when none matches."""

    default: bool
    rules: tuple[Rule, ...]
    #: Where the policy came from (a file path), for messages.
    source: str = "<policy>"
    #: The line of ``policy default …``, or None when the file has none (the default is
    #: then deny).
    default_line: int | None = None


# --------------------------------------------------------------------------- parsing


def _has_operator(token: str) -> bool:
    """True when ``token`` holds a comparison: every operator has ``=``, ``<`` or ``>``."""
    return any(char in "=<>" for char in token)


def parse_policy(
    text: str, source: str, filters: FilterEngine
) -> Policy:
    """Parse the text of a policy file; raise :class:`PolicyError` for anything malformed.

    ``source`` names the file in error messages; ``filters`` parses the fact, compound and
    class fields: the server's engine (a tool outside a server builds one from its
    registry, ``FilterEngine.for_registry``). Any input whatsoever either parses
    or raises :class:`PolicyError` (a property test holds this), so a server can load files
    written by anyone without guarding against other exceptions.
    """
    engine = filters
    if not isinstance(text, str):
        raise PolicyError(source, 1, f"a policy must be text, got {type(text).__name__}")
    default: bool | None = None
    default_line: int | None = None
    rules: list[Rule] = []
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] == "policy":
            value = _parse_default(words, source, number)
            if default_line is not None:
                raise PolicyError(
                    source, number,
                    f"a second 'policy default' line (the first is line {default_line})",
                )
            default, default_line = value, number
            continue
        rules.append(_parse_rule(line, source, number, engine))
    return Policy(bool(default), tuple(rules), source, default_line)


def parse_groups(text: str, source: str = GROUPS_FILE_NAME) -> dict[str, frozenset[str]]:
    """Parse a ``groups`` file: ``group_name caller_id caller_id …`` on each line.

    A group named in a rule's callers field matches any of its members. Raises
    :class:`PolicyError` for a bad group name, a group without members, or a group defined
    twice (MCollective silently kept the last definition).
    """
    if not isinstance(text, str):
        raise PolicyError(source, 1, f"a groups file must be text, got {type(text).__name__}")
    groups: dict[str, frozenset[str]] = {}
    defined_at: dict[str, int] = {}
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, *members = line.split()
        if not _GROUP_NAME.fullmatch(name):
            raise PolicyError(
                source, number,
                f"group name {quote(name)} may only contain letters, digits, '_', '.' and '-'",
            )
        if not members:
            raise PolicyError(
                source, number,
                f"group {name} has no members; write: {name} cert=alice cert=bob",
            )
        if name in groups:
            raise PolicyError(
                source, number, f"group {name} is already defined on line {defined_at[name]}"
            )
        groups[name], defined_at[name] = frozenset(members), number
    return groups


def _parse_default(words: list[str], source: str, number: int) -> bool:
    """``policy default allow|deny`` ⇒ True for allow."""
    if len(words) != 3 or words[1] != "default" or words[2] not in ("allow", "deny"):
        raise PolicyError(
            source, number, "expected 'policy default allow' or 'policy default deny'"
        )
    return words[2] == "allow"


def _parse_rule(line: str, source: str, number: int, filters: FilterEngine) -> Rule:
    """Parse one ``allow``/``deny`` line (already stripped, not a comment)."""
    fields = [part.strip() for part in _TABS.split(line)]
    keyword = fields[0]
    if keyword not in ("allow", "deny"):
        raise PolicyError(source, number, _explain_keyword(keyword))
    values = fields[1:]
    if len(values) < 2:
        raise PolicyError(
            source, number,
            f"a rule needs at least a callers and an actions field, separated by tabs: "
            f"{_RULE_SHAPE} (write * for any)",
        )
    if len(values) > len(_FIELD_NAMES):
        raise PolicyError(
            source, number,
            f"too many fields ({len(values)}); a rule is {_RULE_SHAPE} "
            "(comments must be on a line of their own)",
        )
    for name, value in zip(_FIELD_NAMES, values, strict=False):
        if not value:
            raise PolicyError(source, number, f"the {name} field is empty; write * for any")
    values += ["*"] * (len(_FIELD_NAMES) - len(values))

    def fail(problem: str) -> PolicyError:
        return PolicyError(source, number, problem)

    return Rule(
        allow=keyword == "allow",
        callers=_parse_callers(values[0], fail),
        actions=_parse_actions(values[1], fail),
        facts=_parse_facts(values[2], fail, filters),
        classes=_parse_classes(values[3], fail, filters),
        line=number,
    )


def _explain_keyword(keyword: str) -> str:
    """Say why a line does not start a rule, guessing the usual mistakes."""
    first = keyword.split()[0]
    if first in ("allow", "deny"):
        return (
            f"separate the fields of a rule with tabs, not spaces: {_RULE_SHAPE} "
            "(spaces separate the values inside a field)"
        )
    if first.lower() in ("allow", "deny", "policy"):
        return f"write {first.lower()!r} in lower case"
    return (
        f"expected a rule (allow or deny), 'policy default allow|deny' or a # comment; "
        f"found {quote(first)}"
    )


def _tokens(value: str, name: str, fail: Callable[[str], PolicyError]) -> tuple[str, ...] | None:
    """Split a field into its values; ``*`` alone means any (None)."""
    tokens = tuple(value.split())
    if tokens == ("*",):
        return None
    if "*" in tokens:
        raise fail(f"'*' must stand alone in the {name} field; it already means any")
    return tokens


def _parse_callers(
    value: str, fail: Callable[[str], PolicyError]
) -> tuple[str, ...] | None:
    """Callers: ``kind=id`` (exact), ``/regex/`` (searched, as in Choria) or a group name."""
    tokens = _tokens(value, "callers", fail)
    for token in tokens or ():
        if is_regex_pattern(token):
            try:
                compile_pattern(token[1:-1])
            except PatternError as exc:
                raise fail(f"caller pattern {quote(token)}: invalid regex: {exc}") from None
        elif "=" in token:
            kind, _, ident = token.partition("=")
            if not kind or not ident:
                raise fail(f"caller {quote(token)} must look like cert=alice or user=bob")
        elif not _GROUP_NAME.fullmatch(token):
            raise fail(
                f"caller {quote(token)} is neither a caller id (cert=alice), "
                "a /regex/ nor a group name"
            )
    return tokens


def _parse_actions(
    value: str, fail: Callable[[str], PolicyError]
) -> tuple[str, ...] | None:
    """Actions: names of the agent's actions."""
    tokens = _tokens(value, "actions", fail)
    for token in tokens or ():
        if not valid_name(token):
            hint = "; separate actions with spaces" if "," in token else ""
            raise fail(f"{quote(token)} is not a valid action name{hint}")
    return tokens


def _parse_facts(
    value: str, fail: Callable[[str], PolicyError], filters: FilterEngine
) -> Mapping[str, list[Any]] | None:
    """Facts: ``*``, ``fact=value`` terms that must all match, or a compound expression."""
    tokens = _tokens(value, "facts", fail)
    if tokens is None:
        return None
    if _looks_compound(tokens):
        try:
            expression = filters.parse("compound", value)
        except FilterSyntaxError as exc:
            raise fail(first_line(str(exc))) from None
        return {"compound": [expression]}
    terms = []
    for token in tokens:
        if not _has_operator(token):
            raise fail(
                f"fact term {quote(token)} has no operator (write fact=value); classes "
                "belong in the classes field, or write a compound expression"
            )
        try:
            terms.append(filters.parse("fact", token))
        except FilterSyntaxError as exc:
            raise fail(first_line(str(exc))) from None
    return {"fact": terms}


def _parse_classes(
    value: str, fail: Callable[[str], PolicyError], filters: FilterEngine
) -> tuple[str, ...] | None:
    """Classes: names or ``/regex/`` patterns the node must all have."""
    tokens = _tokens(value, "classes", fail)
    if tokens is None:
        return None
    if _looks_compound(tokens):
        raise fail(
            "a compound expression belongs in the facts field (it can test classes too); "
            "the classes field lists class names"
        )
    for token in tokens:
        if not is_regex_pattern(token) and _has_operator(token):
            raise fail(
                f"{quote(token)} looks like a fact term; facts go in the facts field, "
                "before the classes"
            )
        try:
            filters.parse("class", token)
        except FilterSyntaxError as exc:
            raise fail(first_line(str(exc))) from None
    return tokens


def _looks_compound(tokens: tuple[str, ...]) -> bool:
    """True when a field is a compound expression rather than a list of terms.

    As in MCollective: a token that is ``and``/``or``/``not``, starts with ``!`` or ``(``
    or ends with ``)``; and a function call (``uptime() > 3600``). A regex value with
    parentheses (``os=~/^(deb|ubu)/``) stays a plain fact term.
    """
    return any(
        token.lower() in _COMPOUND_KEYWORDS
        or token.startswith(("!", "("))
        or token.endswith(")")
        or _FUNCTION_CALL.search(token) is not None
        for token in tokens
    )


def first_line(message: str) -> str:
    """The first line of a filter error: the caret drawing does not fit in a reply."""
    return message.split("\n", 1)[0]


def quote(text: str) -> str:
    """``repr`` of user text, shortened: errors must stay readable whatever the input."""
    shown = repr(text)
    return shown if len(shown) <= _QUOTE_LIMIT else shown[: _QUOTE_LIMIT - 4] + "…" + shown[-1]
