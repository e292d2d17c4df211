"""The ``actionpolicy`` authorizer: MCollective/Choria action policy files, read per agent.

Operators of MCollective and Choria already describe who may run what in files like
``/etc/puppetlabs/mcollective/policies/puppet.policy``::

    policy default deny
    allow	cert=alice cert=bob	*	*	*
    allow	cert=carol	status enable disable	customer=acme	acme::devserver
    deny	*	runonce	(environment=production and not has_class('canary'))

One file per agent (``<policy_dir>/<agent>.policy``), one rule per line, fields separated by
TABs: ``allow|deny``, callers, actions, facts, classes. The first rule that matches the
request decides; when none does, the ``policy default`` line does (deny when it is absent).
``docs/actionpolicy.md`` is the operator's guide; this docstring records the decisions.

Why the parser is strict where MCollective is lenient: MCollective and Choria log a warning
and *skip* a line they cannot read, so a mistyped ``deny`` line silently stops denying. Here
any malformed line makes the whole file a :class:`PolicyError`, and the authorizer denies
every request to that agent (fail closed) until the file is fixed, with a reason naming the
file and line. Fields must be separated by tabs, as in MCollective: a space already
separates the values *inside* a field (``enable disable``), so a line split on spaces would
be ambiguous. Runs of tabs (to line columns up) and spaces next to a tab are accepted, like
Choria's ``\\t+``.

Why files are parsed at load and not per request: fact terms and compound expressions are
validated once, so a typo is reported when the file is first read (logged once per version
of the file), and the per-request work is a ``stat`` and a walk over already parsed rules.
An edited file is picked up on the next request — no restart or ``SIGHUP`` needed.

Why the filter parts go through the :class:`~orch.core.filter.FilterEngine` the server
hands over (and parse with the same engine): a policy's fact terms, compound expressions and
class patterns mean exactly what they mean in a request filter, with the same bounded regex
engine and time budget, and this plugin imports no other plugin. Caller ``/regex/`` patterns
are compiled by :mod:`orch.core.patterns` (RE2), like every other pattern.

Why a rule that cannot be evaluated (a compound expression calling a function this node does
not have, say) is treated by its kind: a ``deny`` rule that might have matched denies the
request; an ``allow`` rule is skipped with a warning, because whatever the later rules decide
is never more permissive than the allow it could have been.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from orch.core import convert
from orch.core.authorization import Decision
from orch.core.errors import ConfigError
from orch.core.filter import FilterEngine, FilterSyntaxError, NodeView
from orch.core.hookspecs import hookimpl
from orch.core.patterns import PatternError, compile_pattern
from orch.core.patterns import is_slashed as is_regex_pattern
from orch.core.protocol import Request, valid_name
from orch.core.sections import setting

if TYPE_CHECKING:
    from orch.core.authorization import Authorizer
    from orch.core.config import Settings

log = logging.getLogger(__name__)

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
# A file modified this close (seconds) to when it was read may change again without its
# mtime, ctime or size changing (coarse file system clocks), so it is re-read and compared.
_RACY_SECONDS = 2.0
# Distinct "rule skipped" warnings remembered so that each is logged once.
_MAX_WARNINGS_REMEMBERED = 1000
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
                f"group name {_quote(name)} may only contain letters, digits, '_', '.' and '-'",
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
        f"found {_quote(first)}"
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
                raise fail(f"caller pattern {_quote(token)}: invalid regex: {exc}") from None
        elif "=" in token:
            kind, _, ident = token.partition("=")
            if not kind or not ident:
                raise fail(f"caller {_quote(token)} must look like cert=alice or user=bob")
        elif not _GROUP_NAME.fullmatch(token):
            raise fail(
                f"caller {_quote(token)} is neither a caller id (cert=alice), "
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
            raise fail(f"{_quote(token)} is not a valid action name{hint}")
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
            raise fail(_first_line(str(exc))) from None
        return {"compound": [expression]}
    terms = []
    for token in tokens:
        if not _has_operator(token):
            raise fail(
                f"fact term {_quote(token)} has no operator (write fact=value); classes "
                "belong in the classes field, or write a compound expression"
            )
        try:
            terms.append(filters.parse("fact", token))
        except FilterSyntaxError as exc:
            raise fail(_first_line(str(exc))) from None
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
                f"{_quote(token)} looks like a fact term; facts go in the facts field, "
                "before the classes"
            )
        try:
            filters.parse("class", token)
        except FilterSyntaxError as exc:
            raise fail(_first_line(str(exc))) from None
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


def _first_line(message: str) -> str:
    """The first line of a filter error: the caret drawing does not fit in a reply."""
    return message.split("\n", 1)[0]


def _quote(text: str) -> str:
    """``repr`` of user text, shortened: errors must stay readable whatever the input."""
    shown = repr(text)
    return shown if len(shown) <= _QUOTE_LIMIT else shown[: _QUOTE_LIMIT - 4] + "…" + shown[-1]


# --------------------------------------------------------------------------- files

T = TypeVar("T")


@dataclass
class _Loaded(Generic[T]):
    """One version of a file: parsed, or the reason it cannot be used."""

    signature: tuple[int, int, int, int]
    #: The file's bytes; None when it could not be read (never "unchanged" then).
    raw: bytes | None
    value: T | None
    error: str | None
    read_at: float = field(default_factory=time.time)


class _FileCache(Generic[T]):
    """Parsed files keyed by path, re-read only when the file changed.

    A file's version is ``(mtime_ns, ctime_ns, size, inode)``: an edit, a ``chmod`` that
    makes it (un)readable, or an atomic replace all change it. A file read within
    :data:`_RACY_SECONDS` of its modification is also re-read and compared, since a second
    same-size edit inside one tick of a coarse file-system clock leaves the version alone.
    """

    def __init__(self, parse: Callable[[str, str], T], what: str) -> None:
        self._parse = parse
        self._what = what
        self._entries: dict[str, _Loaded[T]] = {}
        self._lock = threading.Lock()

    def get(self, path: str) -> _Loaded[T] | None:
        """The current version of ``path``, or None when there is no such file."""
        try:
            stat = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            with self._lock:
                self._entries.pop(path, None)
            return None
        except OSError as exc:
            return _Loaded((0, 0, 0, 0), None, None, f"cannot read {path}: {exc.strerror}")
        signature = (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            entry = self._entries.get(path)
            if (
                entry is not None
                and entry.signature == signature
                and entry.read_at - stat.st_mtime_ns / 1e9 >= _RACY_SECONDS
            ):
                return entry
            entry = self._load(path, signature, entry)
            self._entries[path] = entry
            return entry

    def _load(
        self, path: str, signature: tuple[int, int, int, int], previous: _Loaded[T] | None
    ) -> _Loaded[T]:
        """Read and parse ``path``; errors are logged here, hence once per file version.

        Bytes identical to ``previous`` (a ``touch``, or a racy re-check) reuse its result.
        """
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            error = f"cannot read {path}: {exc.strerror}"
            log.error("%s %s", self._what, error)
            return _Loaded(signature, None, None, error)
        if previous is not None and raw == previous.raw:
            previous.signature, previous.read_at = signature, time.time()
            return previous
        try:
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                line = raw[: exc.start].count(b"\n") + 1
                raise PolicyError(path, line, "not valid UTF-8 text") from None
            value = self._parse(text, path)
        except PolicyError as exc:
            log.error("%s %s is invalid, denying the requests it governs: %s",
                      self._what, path, exc)
            return _Loaded(signature, raw, None, str(exc))
        log.info("%s %s loaded", self._what, path)
        return _Loaded(signature, raw, value, None)


# --------------------------------------------------------------------------- settings

#: This plugin's settings section: ``plugins: {actionpolicy: {…}}``.
SECTION = "actionpolicy"


@dataclass(frozen=True)
class ActionPolicySettings:
    """Where the policy files are and what to decide without one. The keys were orch's own
    settings before plugins declared theirs, so the old top-level names still work."""

    policy_dir: str | None = setting(
        None, convert.optional_path,
        "Server: directory of `<agent>.policy` files, `default.policy` and `groups`. Without "
        "it every request is allowed (warned at start).", aliases=("policy_dir",))
    policy_default: str = setting(
        "deny", convert.choice("allow", "deny"),
        "Server: `allow` or `deny` for an agent with no policy file and no `default.policy`.",
        aliases=("policy_default",))


@hookimpl
def orch_settings() -> Mapping[str, type]:
    """Declare the ``actionpolicy`` section."""
    return {SECTION: ActionPolicySettings}


# --------------------------------------------------------------------------- authorizer


class ActionPolicyAuthorizer:
    """Authorizes requests with ``<policy_dir>/<agent>.policy`` files.

    Lookup order for a request to agent ``puppet``: ``puppet.policy``, else
    ``default.policy``, else the ``policy_default`` setting. Without a ``policy_dir`` every
    request is allowed (the server warns about that at start), so a fresh install works
    before any policy is written.
    """

    name = "actionpolicy"

    def __init__(self, settings: Settings) -> None:
        section = settings.section(SECTION, ActionPolicySettings)
        self._dir = section.policy_dir
        self._policy_default = section.policy_default
        if self._dir is None:
            log.warning("node=%s no policy_dir set: every authenticated caller may run "
                        "every action", settings.identity)
        #: The server's filter engine, from the first request: policies parse with it.
        self._filters: FilterEngine | None = None
        self._policies: _FileCache[Policy] = _FileCache(
            self._parse, "policy")
        self._groups: _FileCache[dict[str, frozenset[str]]] = _FileCache(
            parse_groups, "groups file"
        )
        self._warned: set[tuple[str, int, str]] = set()
        self._warned_lock = threading.Lock()
        if self._dir is not None and not os.path.isdir(self._dir):
            log.warning(
                "policy_dir %s is not a directory: no policy file will be found, so every "
                "request gets policy_default=%s", self._dir, self._policy_default,
            )

    def _parse(self, text: str, path: str) -> Policy:
        if self._filters is None:  # _decide sets it before any file is read
            raise PolicyError(path, 1, "no filter engine to parse the policy with")
        return parse_policy(text, path, self._filters)

    def authorize(
        self, request: Request, caller: str, node: NodeView, filters: FilterEngine
    ) -> Decision:
        """Decide by the first matching rule; never raises (any failure denies).

        The reason ends with the agent, action and caller, so the "denied by policy …"
        reply a caller sees and the audit record are clear on their own.
        """
        try:
            allowed, why = self._decide(request, caller, node, filters)
            return Decision(allowed, f"{why} ({_context(request, caller)})")
        except Exception as exc:  # the Authorizer contract: a failure denies, never raises
            log.exception("actionpolicy failed on request %s", getattr(request, "id", "?"))
            return Decision(False, f"denied: authorization failed ({type(exc).__name__})")

    def _decide(
        self, request: Request, caller: str, node: NodeView, filters: FilterEngine
    ) -> tuple[bool, str]:
        if self._dir is None:
            return True, "no policy_dir configured"
        self._filters = filters
        agent, action = request.agent, request.action
        if not valid_name(agent) or not valid_name(action):
            # The agent name becomes a file name: never let it leave policy_dir.
            return False, "denied: invalid agent or action name"
        loaded = self._policies.get(os.path.join(self._dir, f"{agent}.policy"))
        if loaded is None:
            loaded = self._policies.get(os.path.join(self._dir, DEFAULT_POLICY_NAME))
        if loaded is None:
            allowed = self._policy_default == "allow"
            verdict = "allowed" if allowed else "denied"
            return allowed, (
                f"no policy for agent {agent}: {verdict} (policy_default={self._policy_default})"
            )
        if loaded.value is None:
            return False, f"denied: policy file unusable, fix it: {loaded.error}"
        policy = loaded.value
        for rule in policy.rules:
            try:
                matched = self._matches(rule, caller, action, node, filters)
            except _GroupsUnavailable as exc:
                return False, f"denied: policy {policy.source} line {rule.line} needs {exc}"
            except FilterSyntaxError as exc:
                problem = _first_line(str(exc))
                if not rule.allow:
                    # It might have matched: denying is the only safe reading of a deny.
                    return False, (
                        f"denied: policy {policy.source} line {rule.line} cannot be "
                        f"evaluated: {problem}"
                    )
                # Had it matched it would allow, so skipping it can only be stricter.
                self._warn_once(policy.source, rule.line, problem)
                continue
            if matched:
                verdict = "allowed" if rule.allow else "denied"
                return rule.allow, f"{verdict} by policy {policy.source} line {rule.line}"
        verdict = "allowed" if policy.default else "denied"
        return policy.default, f"{verdict} by default policy of {policy.source}"

    def _matches(
        self, rule: Rule, caller: str, action: str, node: NodeView, filters: FilterEngine
    ) -> bool:
        """Callers, then actions, then facts, then classes: cheapest checks first."""
        if rule.callers is not None and not self._caller_matches(rule.callers, caller):
            return False
        if rule.actions is not None and action not in rule.actions:
            return False
        if rule.facts is not None and not filters.matches(rule.facts, node):
            return False
        return rule.classes is None or filters.matches({"class": list(rule.classes)}, node)

    def _warn_once(self, source: str, line: int, problem: str) -> None:
        """Log an allow rule skipped because it cannot be evaluated, once per problem."""
        key = (source, line, problem)
        with self._warned_lock:
            if key in self._warned:
                return
            if len(self._warned) >= _MAX_WARNINGS_REMEMBERED:
                self._warned.clear()
            self._warned.add(key)
        log.warning("policy %s line %d cannot be evaluated on this node, rule skipped: %s",
                    source, line, problem)

    def _caller_matches(self, callers: tuple[str, ...], caller: str) -> bool:
        for token in callers:
            if token == caller:
                return True
            if is_regex_pattern(token):
                if compile_pattern(token[1:-1]).search(caller) is not None:
                    return True
            elif "=" not in token and caller in self._group(token):
                return True
        return False

    def _group(self, name: str) -> frozenset[str]:
        """Members of a group; an unreadable or invalid groups file fails the request."""
        assert self._dir is not None
        loaded = self._groups.get(os.path.join(self._dir, GROUPS_FILE_NAME))
        if loaded is None:
            return frozenset()
        if loaded.value is None:
            raise _GroupsUnavailable(f"group {name} but the groups file is unusable: "
                                     f"{loaded.error}")
        return loaded.value.get(name, frozenset())


class _GroupsUnavailable(Exception):
    """A rule names a group and the groups file cannot be used: the request is denied."""


def _context(request: Request, caller: str) -> str:
    """``agent puppet, action restart, caller 'cert=bob'`` for the end of a reason."""
    return (
        f"agent {_safe_name(request.agent)}, action {_safe_name(request.action)}, "
        f"caller {_quote(str(caller))}"
    )


def _safe_name(value: object) -> str:
    """A name for a reason: as is when valid, quoted when it could mislead a reader."""
    return value if isinstance(value, str) and valid_name(value) else _quote(str(value))


# --------------------------------------------------------------------------- hook


@hookimpl
def orch_authorizers() -> Mapping[str, Callable[[Settings], Authorizer]]:
    """Register this engine as ``authorization: actionpolicy`` (the default setting)."""
    return {"actionpolicy": ActionPolicyAuthorizer}
