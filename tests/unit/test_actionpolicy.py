"""Tests of the actionpolicy authorizer: the policy file format, lookup, caching, decisions."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orch.core.authorization import Authorizer
from orch.core.config import Settings
from orch.core.errors import ConfigError
from orch.core.filter import FilterEngine, NodeView
from orch.core.plugins import PluginRegistry, default_registry
from orch.core.protocol import Request
from orch.security import actionpolicy
from orch.security.actionpolicy import (
    ActionPolicyAuthorizer,
    PolicyError,
    parse_groups,
    parse_policy,
)

NODE = NodeView(
    "web1.example.com",
    {"customer": "acme", "environment": "production", "cpus": 8, "os": {"family": "Debian"}},
    frozenset({"acme::devserver", "webserver"}),
    frozenset({"puppet", "rpcutil"}),
)


#: The installed filter kinds, which a server parses its policies with.
ENGINE = FilterEngine(default_registry().filter_kinds(), default_registry().filter_functions())


def parse(text: str, source: str = "<policy>") -> actionpolicy.Policy:
    """:func:`parse_policy` with the installed filter kinds."""
    return parse_policy(text, source, ENGINE)


@pytest.fixture(scope="module")
def engine() -> FilterEngine:
    return ENGINE


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    return directory


def write(directory: Path, name: str, *lines: str) -> Path:
    path = directory / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def authorizer(directory: Path | None, default: str = "deny") -> ActionPolicyAuthorizer:
    return ActionPolicyAuthorizer(
        Settings().with_values({"policy_dir": None if directory is None else str(directory),
                                "policy_default": default}, "test")
    )


def ask(
    authz: Authorizer,
    engine: FilterEngine,
    caller: str = "cert=alice",
    action: str = "status",
    agent: str = "puppet",
    node: NodeView = NODE,
) -> tuple[bool, str]:
    request = Request(agent=agent, action=action, collective="c", sender="s", caller=caller,
                      reply_to="r")
    decision = authz.authorize(request, caller, node, engine)
    return decision.allowed, decision.reason


def allowed(directory: Path, engine: FilterEngine, *lines: str, **request: Any) -> bool:
    """Write ``puppet.policy`` with ``lines`` and ask once."""
    write(directory, "puppet.policy", *lines)
    return ask(authorizer(directory), engine, **request)[0]


# --------------------------------------------------------------------------- callers


def test_caller_list(policies: Path, engine: FilterEngine) -> None:
    lines = ("policy default deny", "allow\tcert=alice cert=bob\t*\t*\t*")
    assert allowed(policies, engine, *lines, caller="cert=alice")
    assert allowed(policies, engine, *lines, caller="cert=bob")
    assert not allowed(policies, engine, *lines, caller="cert=carol")


def test_caller_the_policy_does_not_allow(policies: Path, engine: FilterEngine) -> None:
    write(policies, "puppet.policy", "policy default deny", "allow\tcert=alice\t*\t*\t*")
    ok, reason = ask(authorizer(policies), engine, caller="cert=mallory", action="restart")
    assert not ok
    assert reason.startswith(f"denied by default policy of {policies / 'puppet.policy'}")
    assert "agent puppet" in reason and "action restart" in reason
    assert "'cert=mallory'" in reason


def test_caller_match_is_exact_not_substring(policies: Path, engine: FilterEngine) -> None:
    # MCollective matched callers by substring, so uid=50 matched a rule for uid=500.
    lines = ("allow\tuid=500\t*",)
    assert not allowed(policies, engine, *lines, caller="uid=50")
    assert not allowed(policies, engine, *lines, caller="uid=5000")
    assert allowed(policies, engine, *lines, caller="uid=500")


def test_caller_regex(policies: Path, engine: FilterEngine) -> None:
    lines = ("allow\t/^cert=.*\\.admins$/\t*",)
    assert allowed(policies, engine, *lines, caller="cert=alice.admins")
    assert not allowed(policies, engine, *lines, caller="cert=alice.users")


def test_caller_group(policies: Path, engine: FilterEngine) -> None:
    write(policies, "groups", "# who is who", "admins cert=alice cert=bob", "ops  cert=carol")
    lines = ("deny\tops\trestart", "allow\tadmins ops\t*")
    assert allowed(policies, engine, *lines, caller="cert=bob", action="restart")
    assert allowed(policies, engine, *lines, caller="cert=carol", action="status")
    assert not allowed(policies, engine, *lines, caller="cert=carol", action="restart")
    assert not allowed(policies, engine, *lines, caller="cert=dave")


def test_undefined_group_matches_nobody(policies: Path, engine: FilterEngine) -> None:
    assert not allowed(policies, engine, "allow\tadmins\t*", caller="cert=alice")


def test_broken_groups_file_denies_rules_that_need_it(
    policies: Path, engine: FilterEngine
) -> None:
    write(policies, "groups", "admins")
    write(policies, "puppet.policy", "allow\tcert=bob\tstatus", "allow\tadmins\t*")
    authz = authorizer(policies)
    assert ask(authz, engine, caller="cert=bob")[0]  # decided before any group is needed
    ok, reason = ask(authz, engine, caller="cert=alice")
    assert not ok
    assert f"{policies / 'groups'}:1:" in reason and "has no members" in reason


def test_groups_file_errors() -> None:
    assert parse_groups("a x\n\n# c\nb y z\n") == {"a": {"x"}, "b": {"y", "z"}}
    with pytest.raises(PolicyError, match=r"^g:2: group a is already defined on line 1"):
        parse_groups("a x\na y\n", "g")
    with pytest.raises(PolicyError, match=r"^g:1: group name 'a/b'"):
        parse_groups("a/b x\n", "g")


# --------------------------------------------------------------------- actions, facts, classes


def test_action_list(policies: Path, engine: FilterEngine) -> None:
    lines = ("allow\t*\tstatus enable disable\t*\t*",)
    assert allowed(policies, engine, *lines, action="enable")
    assert allowed(policies, engine, *lines, action="status")
    assert not allowed(policies, engine, *lines, action="runonce")


def test_fact_list_every_term_must_match(policies: Path, engine: FilterEngine) -> None:
    assert allowed(policies, engine, "allow\t*\t*\tcustomer=acme environment=production\t*")
    assert not allowed(policies, engine, "allow\t*\t*\tcustomer=acme environment=dev\t*")
    assert allowed(policies, engine, "allow\t*\t*\tcpus>=4 os.family=/^Deb/\t*")
    assert not allowed(policies, engine, "allow\t*\t*\tcpus>8\t*")


def test_class_list_every_class_must_be_present(policies: Path, engine: FilterEngine) -> None:
    assert allowed(policies, engine, "allow\t*\t*\t*\tacme::devserver webserver")
    assert not allowed(policies, engine, "allow\t*\t*\t*\tacme::devserver dbserver")
    assert allowed(policies, engine, "allow\t*\t*\t*\t/^acme::/")


def test_compound_expression(policies: Path, engine: FilterEngine) -> None:
    rule = (
        "allow\tcert=alice\trestart\t"
        "(environment=production and has_class('webserver')) or environment=development"
    )
    assert allowed(policies, engine, rule, action="restart")
    dev = NodeView("d", {"environment": "development"}, frozenset(), frozenset())
    staging = NodeView("s", {"environment": "staging"}, frozenset({"webserver"}), frozenset())
    assert allowed(policies, engine, rule, action="restart", node=dev)
    assert not allowed(policies, engine, rule, action="restart", node=staging)
    assert parse(rule + "\n").rules[0].facts == {"compound": [rule.split("\t")[3]]}


def test_compound_with_classes_field(policies: Path, engine: FilterEngine) -> None:
    assert allowed(policies, engine, "allow\t*\t*\tnot environment=dev\twebserver")
    assert not allowed(policies, engine, "allow\t*\t*\t!customer=acme\twebserver")


def test_compound_that_cannot_be_evaluated(policies: Path, engine: FilterEngine) -> None:
    # puppet() is an MCollective data plugin, not an orch filter function.
    broken = "puppet().enabled=false"
    # An allow rule that cannot be evaluated is skipped: the later rules decide.
    assert allowed(policies, engine, f"allow\t*\t*\t{broken}", "allow\tcert=alice\t*")
    assert not allowed(policies, engine, f"allow\t*\t*\t{broken}")
    # A deny rule that cannot be evaluated denies: it might have matched.
    write(policies, "puppet.policy", f"deny\t*\t*\t{broken}", "allow\t*\t*")
    ok, reason = ask(authorizer(policies), engine)
    assert not ok
    assert "line 1 cannot be evaluated" in reason and "unknown function puppet()" in reason


# --------------------------------------------------------------------------- defaults


def test_default_allow(policies: Path, engine: FilterEngine) -> None:
    write(policies, "puppet.policy", "policy default allow", "deny\tcert=bob\t*")
    authz = authorizer(policies)
    ok, reason = ask(authz, engine, caller="cert=alice")
    assert ok
    assert reason.startswith(f"allowed by default policy of {policies / 'puppet.policy'}")
    assert not ask(authz, engine, caller="cert=bob")[0]


def test_default_deny(policies: Path, engine: FilterEngine) -> None:
    write(policies, "puppet.policy", "policy default deny", "allow\tcert=bob\t*")
    ok, reason = ask(authorizer(policies), engine, caller="cert=alice")
    assert not ok
    assert reason.startswith(f"denied by default policy of {policies / 'puppet.policy'}")


def test_no_policy_default_line_means_deny(policies: Path, engine: FilterEngine) -> None:
    assert parse("allow\tcert=bob\t*\n").default is False
    assert not allowed(policies, engine, "allow\tcert=bob\t*", caller="cert=alice")
    # Even when unconfigured agents are allowed: the file exists, so it governs.
    write(policies, "puppet.policy", "allow\tcert=bob\t*")
    assert not ask(authorizer(policies, default="allow"), engine)[0]


def test_policy_default_line_may_come_anywhere(policies: Path, engine: FilterEngine) -> None:
    assert allowed(policies, engine, "deny\tcert=bob\t*", "policy default allow")
    assert parse("allow\t*\t*\npolicy  default\tallow\n").default_line == 2


def test_default_policy_file_used_when_agent_has_none(
    policies: Path, engine: FilterEngine
) -> None:
    write(policies, "default.policy", "policy default deny", "allow\tcert=alice\t*")
    authz = authorizer(policies, default="allow")
    ok, reason = ask(authz, engine, agent="package", caller="cert=alice")
    assert ok and f"by policy {policies / 'default.policy'} line 2" in reason
    assert not ask(authz, engine, agent="package", caller="cert=bob")[0]


def test_agent_policy_wins_over_default_policy(policies: Path, engine: FilterEngine) -> None:
    write(policies, "default.policy", "policy default deny")
    write(policies, "puppet.policy", "policy default allow")
    authz = authorizer(policies)
    assert ask(authz, engine, agent="puppet")[0]
    assert not ask(authz, engine, agent="package")[0]


def test_unconfigured_agent_allowed_by_policy_default(
    policies: Path, engine: FilterEngine
) -> None:
    ok, reason = ask(authorizer(policies, default="allow"), engine)
    assert ok
    assert reason.startswith("no policy for agent puppet: allowed (policy_default=allow)")


def test_unconfigured_agent_denied_by_policy_default(
    policies: Path, engine: FilterEngine
) -> None:
    ok, reason = ask(authorizer(policies, default="deny"), engine, action="restart")
    assert not ok
    assert reason.startswith("no policy for agent puppet: denied (policy_default=deny)")
    assert "action restart" in reason


def test_missing_policy_dir_uses_policy_default(
    tmp_path: Path, engine: FilterEngine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        authz = authorizer(tmp_path / "nope", default="deny")
    assert "is not a directory" in caplog.text
    assert not ask(authz, engine)[0]


def test_no_policy_dir_allows_everything(engine: FilterEngine) -> None:
    ok, reason = ask(authorizer(None), engine, caller="cert=anyone", action="restart")
    assert ok
    assert reason.startswith("no policy_dir configured")


# --------------------------------------------------------------------------- evaluation order


def test_first_matching_line_wins_allow_before_deny(policies: Path, engine: FilterEngine) -> None:
    write(policies, "puppet.policy", "allow\tcert=alice\t*", "deny\tcert=alice\t*")
    ok, reason = ask(authorizer(policies), engine)
    assert ok
    assert reason.startswith(f"allowed by policy {policies / 'puppet.policy'} line 1")


def test_first_matching_line_wins_deny_before_allow(policies: Path, engine: FilterEngine) -> None:
    write(policies, "puppet.policy", "policy default allow",
          "deny\tcert=alice\trestart", "allow\t*\t*")
    authz = authorizer(policies)
    ok, reason = ask(authz, engine, action="restart")
    assert not ok
    assert reason.startswith(f"denied by policy {policies / 'puppet.policy'} line 2")
    assert "agent puppet, action restart, caller 'cert=alice'" in reason
    ok, reason = ask(authz, engine, action="status")
    assert ok and "line 3" in reason


def test_comments_and_blank_lines(policies: Path, engine: FilterEngine) -> None:
    lines = ("# puppet policy", "", "   ", "\t# indented comment", "policy default deny",
             "", "allow\tcert=alice\t*\t*\t*")
    policy = parse("\n".join(lines))
    assert [rule.line for rule in policy.rules] == [7]
    assert policy.default_line == 5
    assert allowed(policies, engine, *lines)


def test_omitted_trailing_fields(policies: Path, engine: FilterEngine) -> None:
    two, three = parse("allow\tcert=alice\tstatus\ndeny\t*\t*\trole=db\n").rules
    assert (two.facts, two.classes) == (None, None)
    assert three.facts is not None and three.classes is None
    assert allowed(policies, engine, "allow\tcert=alice\tstatus")
    assert not allowed(policies, engine, "allow\tcert=alice\tstatus", action="restart")


def test_runs_of_tabs_spaces_beside_tabs_and_crlf(policies: Path, engine: FilterEngine) -> None:
    rule = parse("allow\t\t\tcert=alice  cert=bob \t\t status\t *\r\n").rules[0]
    assert rule.callers == ("cert=alice", "cert=bob")
    assert rule.actions == ("status",)
    assert allowed(policies, engine, "\ufeffpolicy default deny\r", "allow\t\tcert=alice\t\t*\r")


def test_parsed_rule_model() -> None:
    policy = parse(
        "policy default allow\n"
        "deny\tcert=a /^cert=b/ ops\tstop start\tcustomer=acme cpus>2\tweb /^db/\n",
        "x.policy",
    )
    assert policy.default is True and policy.source == "x.policy"
    (rule,) = policy.rules
    assert rule.allow is False and rule.line == 2
    assert rule.callers == ("cert=a", "/^cert=b/", "ops")
    assert rule.actions == ("stop", "start")
    assert rule.facts == {"fact": [
        {"fact": "customer", "operator": "==", "value": "acme"},
        {"fact": "cpus", "operator": ">", "value": "2"},
    ]}
    assert rule.classes == ("web", "/^db/")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("allow cert=alice *\t*", "separate the fields of a rule with tabs"),
        ("allow    cert=alice    *    *    *", "separate the fields of a rule with tabs"),
        ("allow\tcert=alice", "needs at least a callers and an actions field"),
        ("allow", "needs at least a callers and an actions field"),
        ("allow\t*\t*\t*\t*\t# note", "too many fields (5)"),
        ("allow\t*\t \t*", "the actions field is empty"),
        ("Allow\t*\t*", "write 'allow' in lower case"),
        ("permit\t*\t*", "expected a rule (allow or deny)"),
        ("policy default maybe", "expected 'policy default allow' or 'policy default deny'"),
        ("policy deny", "expected 'policy default allow' or 'policy default deny'"),
        ("allow\t* cert=alice\t*", "'*' must stand alone in the callers field"),
        ("allow\tcert=\t*", "must look like cert=alice"),
        ("allow\talice@example\t*", "neither a caller id"),
        ("allow\t/(/\t*", "caller pattern '/(/'"),
        ("allow\t*\tstatus,restart", "not a valid action name; separate actions with spaces"),
        ("allow\t*\t*\twebserver", "fact term 'webserver' has no operator"),
        ("allow\t*\t*\trole=/(/", "invalid regex"),
        ("allow\t*\t*\trole=web and", "expected a term after 'and'"),
        ("allow\t*\t*\t(role=web", "unbalanced parentheses"),
        ("allow\t*\t*\t*\trole=web", "looks like a fact term"),
        ("allow\t*\t*\t*\tnot web", "compound expression belongs in the facts field"),
        ("allow\t*\t*\t*\t/(/", "invalid regex"),
    ],
)
def test_syntax_errors_name_file_and_line(line: str, problem: str) -> None:
    text = f"# header\npolicy default deny\n\n{line}\n"
    with pytest.raises(PolicyError) as caught:
        parse(text, "/etc/orch/policies/puppet.policy")
    error = caught.value
    assert str(error).startswith("/etc/orch/policies/puppet.policy:4: ")
    assert problem in str(error)
    assert (error.source, error.line) == ("/etc/orch/policies/puppet.policy", 4)
    assert isinstance(error, ConfigError)


def test_second_policy_default_line_is_an_error() -> None:
    with pytest.raises(PolicyError, match=r"^p:3: a second 'policy default' line .*line 1"):
        parse("policy default deny\nallow\t*\t*\npolicy default allow\n", "p")


def test_broken_file_fails_closed_and_is_logged_once(
    policies: Path, engine: FilterEngine, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(policies, "puppet.policy", "policy default allow", "allow cert=alice *")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # old: no racy re-reads
    authz = authorizer(policies, default="allow")
    with caplog.at_level(logging.ERROR, logger="orch.security.actionpolicy"):
        for _ in range(3):
            ok, reason = ask(authz, engine)
            assert not ok
            assert f"{path}:2: separate the fields" in reason
            assert reason.startswith("denied: policy file unusable")
    assert len([r for r in caplog.records if "is invalid" in r.getMessage()]) == 1
    # The default policy file is not a fallback for a broken agent policy.
    write(policies, "default.policy", "policy default allow")
    assert not ask(authz, engine)[0]


def test_invalid_utf8_fails_closed_naming_the_line(policies: Path, engine: FilterEngine) -> None:
    (policies / "puppet.policy").write_bytes(b"policy default allow\n# caf\xe9\n")
    ok, reason = ask(authorizer(policies), engine)
    assert not ok
    assert f"{policies / 'puppet.policy'}:2: not valid UTF-8" in reason


def test_unreadable_policy_fails_closed(policies: Path, engine: FilterEngine) -> None:
    (policies / "puppet.policy").mkdir()  # exists but cannot be read as a file
    write(policies, "default.policy", "policy default allow")
    ok, reason = ask(authorizer(policies, default="allow"), engine)
    assert not ok and "cannot read" in reason


def test_invalid_agent_name_is_denied(policies: Path, engine: FilterEngine) -> None:
    write(policies, "default.policy", "policy default allow")
    ok, reason = ask(authorizer(policies), engine, agent="../default")
    assert not ok and "invalid agent or action name" in reason


def test_authorize_never_raises(policies: Path, engine: FilterEngine) -> None:
    write(policies, "puppet.policy", "allow\t*\t*\trole=web")

    class Exploding(FilterEngine):
        def matches(self, filter: object, node: NodeView) -> bool:
            raise RuntimeError("boom")

    ok, reason = ask(authorizer(policies), Exploding(engine.kinds, engine.functions))
    assert not ok and "authorization failed (RuntimeError)" in reason


def test_policy_parses_with_the_servers_filter_engine(policies: Path) -> None:
    """The filter fields mean what the node's filter kinds say: without a fact kind, a
    fact rule cannot be understood, so the file is unusable and the request denied."""
    write(policies, "puppet.policy", "allow\t*\t*\trole=web")
    ok, reason = ask(authorizer(policies), FilterEngine({}))
    assert not ok and "unknown filter kind 'fact'" in reason


# --------------------------------------------------------------------------- reloading


def test_file_edit_is_picked_up(policies: Path, engine: FilterEngine) -> None:
    path = write(policies, "puppet.policy", "policy default deny")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    authz = authorizer(policies)
    assert not ask(authz, engine)[0]
    write(policies, "puppet.policy", "policy default allow")
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))
    ok, reason = ask(authz, engine)
    assert ok and "allowed by default policy" in reason


def test_same_size_edit_within_one_clock_tick_is_picked_up(
    policies: Path, engine: FilterEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(policies, "puppet.policy", "policy default deny ")
    authz = authorizer(policies)
    assert not ask(authz, engine)[0]
    # A coarse file-system clock: the rewrite leaves mtime, ctime, size and inode alone.
    frozen = path.stat()
    real_stat = os.stat
    monkeypatch.setattr(
        actionpolicy.os, "stat", lambda p: frozen if str(p) == str(path) else real_stat(p)
    )
    path.write_text("policy default allow\n")
    assert ask(authz, engine)[0]


def test_unchanged_file_is_not_reparsed(policies: Path, engine: FilterEngine) -> None:
    path = write(policies, "puppet.policy", "allow\tcert=alice\t*")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # old: no racy re-reads
    calls: list[str] = []

    def counting(text: str, source: str = "<policy>") -> actionpolicy.Policy:
        calls.append(source)
        return parse(text, source)

    authz = authorizer(policies)
    authz._policies._parse = counting
    for _ in range(5):
        assert ask(authz, engine)[0]
    assert calls == [str(path)]


def test_fixed_unreadable_policy_is_read_again(policies: Path, engine: FilterEngine) -> None:
    directory = policies / "puppet.policy"
    directory.mkdir()
    authz = authorizer(policies)
    assert "cannot read" in ask(authz, engine)[1]
    directory.rmdir()
    (policies / "puppet.policy").write_text("")  # readable now, and empty
    ok, reason = ask(authz, engine)
    assert not ok and reason.startswith("denied by default policy of")


def test_deleted_policy_falls_back(policies: Path, engine: FilterEngine) -> None:
    path = write(policies, "puppet.policy", "policy default allow")
    authz = authorizer(policies, default="deny")
    assert ask(authz, engine)[0]
    path.unlink()
    ok, reason = ask(authz, engine)
    assert not ok and reason.startswith("no policy for agent puppet")


# --------------------------------------------------------------------------- the guide


def _guide_blocks() -> list[str]:
    guide = Path(__file__).resolve().parents[2] / "docs" / "actionpolicy.md"
    return guide.read_text().split("```")[1::2]


def test_guide_examples_parse() -> None:
    policies = [b for b in _guide_blocks() if "\tstatus" in b or "admins  cert" in b]
    assert len(policies) == 3
    example, compound_examples, groups = policies
    policy = parse(example.removeprefix("\n"), "guide")
    assert policy.default is False and len(policy.rules) == 6
    assert len(parse(compound_examples).rules) == 3
    assert parse_groups(groups)["admins"] == {"cert=alice", "cert=bob"}


def test_guide_example_decisions(policies: Path, engine: FilterEngine) -> None:
    example = next(b for b in _guide_blocks() if b.startswith("\n# /etc/orch/policies/"))
    (policies / "puppet.policy").write_text(example)
    write(policies, "groups", "admins cert=dave")
    authz = authorizer(policies)
    assert ask(authz, engine, caller="cert=bob", action="restart")[0]
    assert ask(authz, engine, caller="cert=carol", action="enable")[0]
    assert not ask(authz, engine, caller="cert=carol", action="restart")[0]
    assert not ask(authz, engine, caller="cert=eve.contractors", action="status")[0]
    assert ask(authz, engine, caller="cert=eve", action="status")[0]
    canary = NodeView("c", {"environment": "production"}, frozenset({"canary"}), frozenset())
    assert ask(authz, engine, caller="cert=dave", action="restart", node=canary)[0]
    assert not ask(authz, engine, caller="cert=dave", action="restart")[0]


# --------------------------------------------------------------------------- plugin


def test_registered_through_the_authorizers_hook(policies: Path, engine: FilterEngine) -> None:
    registry = PluginRegistry()
    assert registry.register(actionpolicy, "actionpolicy")
    factory = registry.authorizers()["actionpolicy"]
    write(policies, "puppet.policy", "allow\tcert=alice\t*")
    authz = factory(Settings().with_values({"actionpolicy.policy_dir": str(policies)}, "test"))
    assert ask(authz, engine)[0]


# --------------------------------------------------------------------------- properties


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_arbitrary_text_raises_only_policy_error(text: str) -> None:
    try:
        parse(text, "fuzz.policy")
    except PolicyError as exc:
        assert str(exc).startswith("fuzz.policy:")


_PIECES = st.sampled_from([
    "allow", "deny", "policy", "default", "*", "cert=alice", "/^c/", "/(/", "admins", "status",
    "a,b", "role=web", "cpus>=4", "x=~/(/", "(", ")", "and", "or", "not", "!", "has_class('x')",
    "fact('a').b=1", "web", "/^w/", "'", '"', "=", "#", "\ufeff", "\r", "é",
])
_LINES = st.lists(
    st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=8).map(
        lambda parts: "".join(p + s for p, s in zip(parts, ["\t", " ", ""] * 3, strict=False))
    ),
    max_size=6,
)


@settings(max_examples=500, deadline=None)
@given(_LINES)
def test_policy_shaped_text_raises_only_policy_error(lines: list[str]) -> None:
    text = "\n".join(lines)
    try:
        parse(text, "fuzz.policy")
    except PolicyError as exc:
        assert exc.source == "fuzz.policy" and 1 <= exc.line <= text.count("\n") + 1


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_arbitrary_groups_text_raises_only_policy_error(text: str) -> None:
    with contextlib.suppress(PolicyError):
        parse_groups(text, "groups")


@pytest.mark.parametrize("pattern", [r"^(.+)+X$", r"^(a|aa)+$", r"(x+x+)+y"])
def test_catastrophic_patterns_in_every_policy_field_are_decided(
    policies: Path, engine: FilterEngine, pattern: str
) -> None:
    """Issue 18: caller, fact, compound and class patterns of a policy run on the bounded
    engine, against a caller id and facts as long as anyone likes."""
    hostile = "a" * 80 + "!"
    node = NodeView(hostile, {"customer": hostile}, frozenset({hostile}), frozenset())
    write(policies, "puppet.policy",
          f"deny\t/{pattern}/\t*",
          f"deny\t*\t*\tcustomer=~/{pattern}/",
          f"deny\t*\t*\tcustomer=~/{pattern}/ or /{pattern}/",
          f"deny\t*\t*\t*\t/{pattern}/",
          "allow\t*\t*")
    ok, reason = ask(authorizer(policies), engine, caller=f"cert={hostile}", node=node)
    assert ok and "line 5" in reason


@pytest.mark.parametrize(("field", "line"), [
    ("callers", "allow\t/(?=alice)/\t*"),
    ("facts", "allow\t*\t*\tcustomer=~/(a)\\1/"),
    ("compound facts", "allow\t*\t*\tcustomer=~/a{100000}{100000}/ and cpus>1"),
    ("classes", "allow\t*\t*\t*\t/(?<!x)web/"),
])
def test_patterns_the_bounded_engine_cannot_run_make_the_policy_invalid(
    field: str, line: str
) -> None:
    with pytest.raises(PolicyError, match="invalid regex"):
        parse(line, "puppet.policy")
