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
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orch.core import convert
from orch.core.authorization import Decision
from orch.core.filter import FilterEngine, FilterSyntaxError, NodeView
from orch.core.hookspecs import hookimpl
from orch.core.patterns import compile_pattern
from orch.core.patterns import is_slashed as is_regex_pattern
from orch.core.protocol import Request, valid_name
from orch.core.sections import setting
from orch.security.policycache import FileCache
from orch.security.policyfile import (
    DEFAULT_POLICY_NAME,
    GROUPS_FILE_NAME,
    Policy,
    PolicyError,
    Rule,
    first_line,
    parse_groups,
    parse_policy,
    quote,
)

if TYPE_CHECKING:
    from orch.core.authorization import Authorizer
    from orch.core.config import Settings

log = logging.getLogger(__name__)

#: The policy file format lives in :mod:`orch.security.policyfile` and the file cache in
#: :mod:`orch.security.policycache`; these names stay importable from here.
__all__ = ["DEFAULT_POLICY_NAME", "GROUPS_FILE_NAME", "SECTION", "ActionPolicyAuthorizer",
           "ActionPolicySettings", "Policy", "PolicyError", "Rule", "parse_groups",
           "parse_policy"]

# Distinct "rule skipped" warnings remembered so that each is logged once.
_MAX_WARNINGS_REMEMBERED = 1000


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
        self._policies: FileCache[Policy] = FileCache(
            self._parse, "policy")
        self._groups: FileCache[dict[str, frozenset[str]]] = FileCache(
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
                problem = first_line(str(exc))
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
        f"caller {quote(str(caller))}"
    )


def _safe_name(value: object) -> str:
    """A name for a reason: as is when valid, quoted when it could mislead a reader."""
    return value if isinstance(value, str) and valid_name(value) else quote(str(value))


# --------------------------------------------------------------------------- hook


@hookimpl
def orch_authorizers() -> Mapping[str, Callable[[Settings], Authorizer]]:
    """Register this engine as ``authorization: actionpolicy`` (the default setting)."""
    return {"actionpolicy": ActionPolicyAuthorizer}
