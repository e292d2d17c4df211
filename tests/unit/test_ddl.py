"""The DDL end to end: loading against the meta-schema, types and validators, validation on
the client and on the server, reply checks, generated help and ``--name value`` arguments.

Fixtures live in ``tests/unit/ddl_samples/``: ``good/`` holds DDLs that must load (the
``ddltest`` agent used throughout, and a Choria-layout ``choria_util``), ``broken/`` one
mistake per file. The in-process fleets run on ``memory://`` with ``security="insecure"`` set
explicitly, each in a collective of its own.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner, Result

import orch.core.plugins
from orch.core.agent import ActionReply, ActionRequest, Agent, action
from orch.core.client import Client
from orch.core.config import Settings, load_settings
from orch.core.errors import ArgumentError
from orch.core.filter import FilterEngine
from orch.core.fleet import Fleet, NodeSpec
from orch.core.hookspecs import hookimpl
from orch.core.plugins import PluginRegistry, default_registry
from orch.core.protocol import Envelope, Reply, Request, Status
from orch.core.runner import ActionRunner
from orch.core.server import Node, NodeServices
from orch.ddl import compile as ddl_compile
from orch.ddl.arguments import parse_arguments
from orch.ddl.builtin import SHELL_UNSAFE, VALIDATORS
from orch.ddl.help import action_help, agent_help
from orch.ddl.model import AgentDDL, DDLError, InputDDL, load_ddl, meta_schema, parse_ddl
from orch.security.insecure import InsecureProvider

SAMPLES = Path(__file__).resolve().parent / "ddl_samples"
GOOD = SAMPLES / "good"
BROKEN = SAMPLES / "broken"
DDLTEST = load_ddl(GOOD / "ddltest.json")
EXECUTE = DDLTEST.actions["execute"]
WAIT = 5.0


def error_kind(exc: BaseException) -> str | None:
    return getattr(exc, "kind", None)


# =========================================================================== test plugins


class DDLTestAgent(Agent):
    """Implements ``ddltest`` (``ddl_samples/good/ddltest.json``); records every run."""

    name = "ddltest"
    runs: ClassVar[list[ActionRequest]] = []

    @classmethod
    def ddl(cls) -> AgentDDL:
        return DDLTEST

    @action
    def execute(self, request: ActionRequest, reply: ActionReply) -> None:
        DDLTestAgent.runs.append(request)
        reply["arguments"] = dict(request.data)
        reply["exitcode"] = 0

    @action
    def report(self, request: ActionRequest, reply: ActionReply) -> None:
        """Replies with the ``reply`` argument (failing if it holds ``__fail__``): lets tests
        break the DDL's outputs."""
        DDLTestAgent.runs.append(request)
        data = dict(request.data["reply"])
        failure = data.pop("__fail__", None)
        for key, value in data.items():
            reply[key] = value
        if failure:
            reply.fail(str(failure))

    @action
    def lookup(self, request: ActionRequest, reply: ActionReply) -> None:
        DDLTestAgent.runs.append(request)
        reply["host"] = request.data["host"]


class DDLTestPlugin:
    """Offers the ``ddltest`` agent, as an installed plugin would."""

    @hookimpl
    def orch_agents(self) -> list[type[Agent]]:
        return [DDLTestAgent]


FQDN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
                  re.IGNORECASE)


def fqdn(value: Any) -> bool:
    """A plugin validator: leave non-strings to the type check, as the built-ins do."""
    return not isinstance(value, str) or bool(FQDN.match(value))


class FqdnValidatorPlugin:
    """Adds the ``fqdn`` validator that ``ddltest.lookup`` names."""

    @hookimpl
    def orch_validators(self) -> Mapping[str, Callable[[Any], bool]]:
        return {"fqdn": fqdn}


def make_registry(*extra: tuple[object, str]) -> PluginRegistry:
    registry = PluginRegistry.from_entry_points()
    for plugin, name in ((DDLTestPlugin(), "ddltest"), *extra):
        assert registry.register(plugin, name), registry.infos[name].error
    return registry


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    DDLTestAgent.runs.clear()


# =========================================================================== loading


def test_meta_schema_is_a_valid_draft_2020_12_schema() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(meta_schema())


@pytest.mark.parametrize("path", [
    GOOD / "ddltest.json",
    GOOD / "choria_util.json",
    Path(orch.__file__).parent / "agents" / "rpcutil.json",
    Path(__file__).resolve().parent / "ddl" / "echo.json",
], ids=lambda p: p.name)
def test_good_ddls_load(path: Path) -> None:
    ddl = load_ddl(path)
    assert ddl.source == str(path)
    assert ddl.actions
    assert ddl.timeout > 0


def test_ddltest_sample_is_read_completely() -> None:
    assert (DDLTEST.name, DDLTEST.version, DDLTEST.author, DDLTEST.license, DDLTEST.timeout) \
        == ("ddltest", "1.2.3", "orch tests", "Apache-2.0", 5.0)
    assert DDLTEST.url == "https://example.invalid/ddltest"
    assert list(DDLTEST.actions) == ["execute", "report", "lookup"]
    command = EXECUTE.inputs["command"]
    assert (command.type, command.optional, command.validation, command.maxlength) == \
        ("string", False, "shellsafe", 64)
    assert command.named_validator == "shellsafe"
    assert EXECUTE.inputs["name"].named_validator is None  # a regex
    assert EXECUTE.inputs["mode"].values == ("fast", "safe")
    assert {n: i.type for n, i in EXECUTE.inputs.items()} == {
        "command": "string", "address": "string", "name": "string", "count": "integer",
        "ratio": "number", "scale": "float", "loud": "boolean", "mode": "list",
        "options": "hash", "tags": "array", "extra": "any"}
    assert EXECUTE.outputs["exitcode"].label == "Exit Code"
    assert EXECUTE.display == "always"
    report = DDLTEST.actions["report"]
    assert [(a.function, a.output, a.args) for a in report.aggregate] == [
        ("summary", "status", ()),
        ("boolean_summary", "enabled", ({"true": "enabled", "false": "disabled"},)),
        ("average", "load", ({"format": "%.2f"},)),
        ("sum", "load", ()),
        ("histogram", "load", ({"bins": 4},)),
    ]


def test_choria_layout_loads_unchanged() -> None:
    """``$schema``, ``provider``/``service`` metadata, untyped outputs with ``"default": null``,
    inputs with ``"default": null``, aggregate ``format`` arguments and the old type
    spellings (``int``, ``Hash``, ``Array``, ``""``) are all Choria's and must load."""
    ddl = load_ddl(GOOD / "choria_util.json")
    assert ddl.name == "choria_util" and ddl.timeout == 2.0
    info = ddl.actions["info"]
    assert all(out.type == "any" and out.default is None for out in info.outputs.values())
    assert info.outputs["connected_server"].label == "Connected Broker"
    assert info.aggregate[0].args == ({"format": "%s"},)
    assert info.aggregate[2].args == ({"true": "encrypted", "false": "plain"},)
    transition = ddl.actions["machine_transition"]
    assert transition.inputs["transition"].optional is False
    assert transition.inputs["instance"].default is None
    # A ``"default": null`` is no default: nothing is filled in.
    assert transition.check_arguments({"transition": "stop"}, VALIDATORS) == {"transition": "stop"}
    with pytest.raises(ArgumentError, match="argument 'transition' is required"):
        transition.check_arguments({}, VALIDATORS)
    with pytest.raises(ArgumentError, match=r"argument 'version' has an invalid value '1.2' "
                                            r"\(Version: Machine Version; see"):
        transition.check_arguments({"transition": "stop", "version": "1.2"}, VALIDATORS)
    legacy = ddl.actions["legacy_types"]
    assert {n: i.type for n, i in legacy.inputs.items()} == {
        "port": "integer", "labels": "hash", "hosts": "array", "blob": "any"}
    assert legacy.inputs["port"].maxlength is None  # Choria's 0 means "no limit"
    assert legacy.check_arguments({}, VALIDATORS) == {"port": 8080}
    # Untyped outputs accept anything, typed ones with a null default accept null too.
    assert info.check_reply({"security": "choria", "client_stats": {"a": 1}}) == []
    assert ddl.actions["machine_states"].check_reply({"machine_names": None}) == []


BROKEN_CASES: list[tuple[str, list[str]]] = [
    ("missing_metadata_fields.json",
     ["metadata: ", "'author' is a required property", "1 more problem"]),
    ("missing_actions.json", ["top level: ", "'actions' is a required property"]),
    ("bad_agent_name.json", ["metadata.name: ", "'my agent' does not match"]),
    ("bad_timeout.json", ["metadata.timeout: ", "'ten' is not of type 'number'"]),
    ("bad_action_name.json", ["actions[0].action: ", "'go now!' does not match"]),
    ("bad_display.json", ["actions[0].display: ", "'sometimes' is not one of"]),
    ("unknown_input_type.json", ["actions[0].input.target.type: ", "'strng' is not one of"]),
    ("input_without_type.json",
     ["actions[0].input.target: ", "'type' is a required property"]),
    ("list_without_values.json",
     ["actions[0].input.target.list: ", "a list input needs the list of allowed values"]),
    ("list_with_empty_values.json", ["actions[0].input.target.list: ", "non-empty"]),
    ("bad_regex_validation.json",
     ["actions[0].input.target.validation: ", "'^[a-z+$' is not a valid regular expression"]),
    ("duplicate_action.json", ["actions[1].action: ", "action 'go' is defined twice"]),
    ("aggregate_undeclared_output.json",
     ["actions[0].aggregate[1].args[0]: ", "output 'runtime' is not declared",
      "outputs: result"]),
    ("not_json.json", ["not valid JSON", "line 4"]),
    ("ruby_ddl.json", ["not valid JSON", "line 1 column 1"]),
]


@pytest.mark.parametrize(("name", "fragments"), BROKEN_CASES, ids=[c[0] for c in BROKEN_CASES])
def test_broken_ddl_is_refused_naming_file_and_field(name: str, fragments: list[str]) -> None:
    path = BROKEN / name
    with pytest.raises(DDLError) as caught:
        load_ddl(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_every_broken_sample_has_a_case() -> None:
    assert sorted(p.name for p in BROKEN.iterdir()) == sorted(c[0] for c in BROKEN_CASES)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nosuch.json"
    with pytest.raises(DDLError, match=re.escape(f"{path}: cannot read DDL: No such file")):
        load_ddl(path)


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    """A directory where the file should be cannot be read, even by root."""
    path = tmp_path / "agent.json"
    path.mkdir()
    with pytest.raises(DDLError, match=re.escape(f"{path}: cannot read DDL: Is a directory")):
        load_ddl(path)


def test_file_without_read_permission_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text((GOOD / "ddltest.json").read_text())
    path.chmod(0)
    try:
        try:
            path.read_text()
        except PermissionError:
            pass
        else:
            pytest.skip("running as root: file permissions do not stop reads")
        with pytest.raises(DDLError, match=re.escape(f"{path}: cannot read DDL: Permission")):
            load_ddl(path)
    finally:
        path.chmod(0o600)


def test_binary_file_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(DDLError, match=re.escape(f"{path}: not valid JSON")):
        load_ddl(path)


def test_text_is_parsed_under_the_given_source_name() -> None:
    with pytest.raises(DDLError, match=r"^inline\.json: not valid JSON"):
        load_ddl("inline.json", "{")
    ddl = load_ddl("inline.json", (GOOD / "ddltest.json").read_text())
    assert ddl.source == "inline.json" and ddl.name == "ddltest"


@pytest.mark.parametrize("raw", [[], "agent", 3, None])
def test_parse_ddl_refuses_non_objects(raw: Any) -> None:
    with pytest.raises(DDLError, match=r"^src: top level: "):
        parse_ddl(raw, "src")


def test_integral_float_default_for_integer_input_is_delivered_as_int() -> None:
    raw = json.loads((GOOD / "ddltest.json").read_text())
    raw["actions"][0]["input"]["count"]["default"] = 2.0
    ddl = parse_ddl(raw, "inline")
    count = ddl.actions["execute"].check_arguments({"command": "ls"}, VALIDATORS)["count"]
    assert count == 2 and type(count) is int


# =========================================================================== types


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("command", "ls -l /tmp", "ls -l /tmp"),
    ("command", "x" * 64, "x" * 64),
    ("command", "", ""),
    ("name", "web_1-a", "web_1-a"),
    ("count", 0, 0),
    ("count", -3, -3),
    ("count", 3.0, 3),            # JSON Schema's integer; the action gets an int
    ("count", 10**20, 10**20),
    ("ratio", 1, 1),
    ("ratio", 0.5, 0.5),
    ("scale", 2, 2),
    ("scale", -1.25, -1.25),
    ("loud", True, True),
    ("loud", False, False),
    ("mode", "fast", "fast"),
    ("mode", "safe", "safe"),
    ("options", {}, {}),
    ("options", {"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}),
    ("tags", [], []),
    ("tags", ["a", 1, None], ["a", 1, None]),
    ("extra", None, None),
    ("extra", "text", "text"),
    ("extra", [1], [1]),
    ("extra", {"k": True}, {"k": True}),
])
def test_good_values(name: str, value: Any, expected: Any) -> None:
    data = {"command": "ls", name: value}
    checked = EXECUTE.check_arguments(data, VALIDATORS)
    assert checked[name] == expected
    assert type(checked[name]) is type(expected)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("command", 5, "argument 'command' must be of type string, got 5"),
    ("command", None, "argument 'command' must be of type string, got None"),
    ("command", "x" * 65, "argument 'command' is longer than 64 characters"),
    ("name", "x" * 17, "argument 'name' is longer than 16 characters"),
    ("count", True, "argument 'count' must be of type integer, got True"),
    ("count", False, "argument 'count' must be of type integer, got False"),
    ("count", 3.5, "argument 'count' must be of type integer, got 3.5"),
    ("count", "3", "argument 'count' must be of type integer, got '3'"),
    ("ratio", True, "argument 'ratio' must be of type number, got True"),
    ("ratio", "0.5", "argument 'ratio' must be of type number, got '0.5'"),
    ("scale", "1.5", "argument 'scale' must be of type float, got '1.5'"),
    ("scale", None, "argument 'scale' must be of type float, got None"),
    ("loud", 1, "argument 'loud' must be of type boolean, got 1"),
    ("loud", "true", "argument 'loud' must be of type boolean, got 'true'"),
    ("mode", "slow", "argument 'mode' must be one of fast, safe"),
    ("mode", "FAST", "argument 'mode' must be one of fast, safe"),
    ("mode", 1, "argument 'mode' must be of type list, got 1"),
    ("options", [], "argument 'options' must be of type hash, got []"),
    ("options", "a=1", "argument 'options' must be of type hash, got 'a=1'"),
    ("tags", {}, "argument 'tags' must be of type array, got {}"),
    ("tags", "a,b", "argument 'tags' must be of type array, got 'a,b'"),
])
def test_bad_values(name: str, value: Any, message: str) -> None:
    with pytest.raises(ArgumentError) as caught:
        EXECUTE.check_arguments({"command": "ls", name: value}, VALIDATORS)
    assert str(caught.value) == message
    assert error_kind(caught.value) == "invalid"


def test_missing_required_argument() -> None:
    with pytest.raises(ArgumentError) as caught:
        EXECUTE.check_arguments({"count": 1}, VALIDATORS)
    assert str(caught.value) == "argument 'command' is required"
    assert error_kind(caught.value) == "missing"


def test_missing_is_reported_before_other_problems() -> None:
    with pytest.raises(ArgumentError) as caught:
        EXECUTE.check_arguments({"count": "x", "bogus": 1}, VALIDATORS)
    assert error_kind(caught.value) == "missing"


def test_unknown_argument() -> None:
    with pytest.raises(ArgumentError) as caught:
        EXECUTE.check_arguments({"command": "ls", "colour": "red"}, VALIDATORS)
    assert str(caught.value).startswith(
        "unknown argument(s) colour for execute; it takes command, ")
    assert error_kind(caught.value) == "invalid"


def test_defaults_are_applied_without_mutating_the_input() -> None:
    data = {"command": "ls"}
    assert EXECUTE.check_arguments(data, VALIDATORS) == {"command": "ls", "count": 2, "loud": False,
                                         "mode": "safe"}
    assert data == {"command": "ls"}
    given = {"command": "ls", "count": 9, "loud": True, "mode": "fast"}
    assert EXECUTE.check_arguments(given, VALIDATORS) == given


# =========================================================================== validators


@pytest.mark.parametrize("value", [
    "ls -l /tmp", "a b c", "", "name_with-dashes.and.dots", "path/to/file", "100%", "~user",
    "a*b?c", "(x)", "{a,b}", "#comment", "tab\there", "ünïcödé", "a=b", "user@host",
])
def test_shellsafe_accepts(value: str) -> None:
    assert EXECUTE.check_arguments({"command": value}, VALIDATORS)["command"] == value


@pytest.mark.parametrize("char", sorted(SHELL_UNSAFE))
def test_shellsafe_refuses_every_unsafe_character(char: str) -> None:
    with pytest.raises(ArgumentError) as caught:
        EXECUTE.check_arguments({"command": f"ls{char}id"}, VALIDATORS)
    assert str(caught.value) == "argument 'command' is not a valid shellsafe value"
    assert error_kind(caught.value) == "invalid"


@pytest.mark.parametrize("value", [
    "ls; rm -rf /", "echo `id`", "echo $(id)", "a && b", "a || b", "cat < /etc/shadow",
    "echo > /etc/passwd", "a | b", "line\nbreak", "cr\rhere", 'say "hi"', "it's", "back\\slash",
    "$HOME",
])
def test_shellsafe_refuses_injections(value: str) -> None:
    with pytest.raises(ArgumentError, match="argument 'command' is not a valid shellsafe"):
        EXECUTE.check_arguments({"command": value}, VALIDATORS)


IPV4_GOOD = ["0.0.0.0", "127.0.0.1", "10.1.2.3", "255.255.255.255"]
IPV4_BAD = ["256.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", " 1.2.3.4", "1.2.3.4 ",
            "1.2.3.4/24", "a.b.c.d", "", "::1", "localhost"]
IPV6_GOOD = ["::1", "::", "fe80::1", "2001:db8::8a2e:370:7334",
             "2001:0db8:0000:0000:0000:ff00:0042:8329", "::ffff:192.0.2.1"]
IPV6_BAD = ["1.2.3.4", ":::", "2001:db8::g", "fe80::1/64", "", "12345::", "localhost"]


def _validation(kind: str) -> InputDDL:
    return InputDDL("value", "string", optional=False, validation=kind)


def _check(kind: str, value: Any) -> dict[str, Any]:
    from orch.ddl.model import ActionDDL

    return ActionDDL("act", inputs={"value": _validation(kind)}).check_arguments(
        {"value": value}, VALIDATORS)


@pytest.mark.parametrize(("kind", "value"), [
    *[("ipv4address", v) for v in IPV4_GOOD],
    *[("ipv6address", v) for v in IPV6_GOOD],
    *[("ipaddress", v) for v in IPV4_GOOD + IPV6_GOOD],
])
def test_ip_validators_accept(kind: str, value: str) -> None:
    assert _check(kind, value) == {"value": value}


@pytest.mark.parametrize(("kind", "value"), [
    *[("ipv4address", v) for v in IPV4_BAD],
    *[("ipv6address", v) for v in IPV6_BAD],
    *[("ipaddress", v) for v in ["999.1.1.1", "1.2.3", ":::", "fe80::1/64", "", "web1",
                                 "1.2.3.4 "]],
])
def test_ip_validators_refuse(kind: str, value: str) -> None:
    with pytest.raises(ArgumentError) as caught:
        _check(kind, value)
    assert str(caught.value) == f"argument 'value' is not a valid {kind} value"
    assert error_kind(caught.value) == "invalid"


@pytest.mark.parametrize("kind", ["ipv6address", "ipaddress"])
@pytest.mark.parametrize("value", ["fe80::1%$(reboot)", "::1%`id`", "fe80::1%x\ny"])
def test_ip_validators_refuse_zone_ids(kind: str, value: str) -> None:
    """BUG: Python's ``ipaddress`` accepts an IPv6 scope id after ``%`` made of anything
    but ``/`` and ``%``, so ``ipv6address`` and ``ipaddress`` let ``::1%`id``` and
    ``fe80::1%$(reboot)`` through to an agent that trusts them in a command line. Choria
    (Go's ``net.ParseIP``) refuses zones; orch's validators must too."""
    assert ipaddress.ip_address(value.split("%")[0])  # the address part itself is fine
    with pytest.raises(ArgumentError, match=f"is not a valid {kind} value"):
        _check(kind, value)


def test_ip_validators_leave_non_strings_to_the_type_check() -> None:
    for name in ("ipv4address", "ipv6address", "ipaddress", "shellsafe"):
        assert VALIDATORS[name](5) is True
    with pytest.raises(ArgumentError, match="argument 'address' must be of type string"):
        EXECUTE.check_arguments({"command": "ls", "address": 10}, VALIDATORS)


@pytest.mark.parametrize(("value", "ok"), [
    ("web", True), ("w", True), ("web-01_a", True),
    ("Web", False), ("1web", False), ("web 1", False), ("web.1", False), ("", False),
])
def test_regex_validation(value: str, ok: bool) -> None:
    data = {"command": "ls", "name": value}
    if ok:
        assert EXECUTE.check_arguments(data, VALIDATORS)["name"] == value
    else:
        with pytest.raises(ArgumentError) as caught:
            EXECUTE.check_arguments(data, VALIDATORS)
        # The operator reads what the input is (its DDL prompt and description), not the
        # regex behind it.
        assert str(caught.value) == (f"argument 'name' has an invalid value {value!r} (Name: A "
                                     "lower-case name; see the action's --help)")
        assert "[a-z]" not in str(caught.value)


def test_unanchored_regex_matches_anywhere() -> None:
    """As in Choria, a regex validation is a search: anchor it to match the whole value."""
    from orch.ddl.model import ActionDDL

    act = ActionDDL("act", inputs={"v": InputDDL("v", "string", validation=r"\d+")})
    assert act.check_arguments({"v": "abc123def"}, VALIDATORS) == {"v": "abc123def"}
    with pytest.raises(ArgumentError, match=r"does not match \\d\+"):
        act.check_arguments({"v": "abc"}, VALIDATORS)


@pytest.mark.parametrize("value", ["web\n", "os.family\n"])
def test_anchored_regex_refuses_a_trailing_newline(value: str) -> None:
    """BUG: validation uses JSON Schema ``pattern``, which jsonschema checks with Python's
    ``re.search``; there ``$`` also matches *before a final newline*, so ``^[a-z]+$``
    accepts ``"web\\n"`` and rpcutil's ``^[\\w\\-\\.]+$`` accepts ``"os.family\\n"``.
    JSON Schema (ECMA-262) and Choria (Go's RE2) match ``$`` only at the end of the value."""
    with pytest.raises(ArgumentError, match="has an invalid value"):
        EXECUTE.check_arguments({"command": "ls", "name": value}, VALIDATORS)
    get_fact = default_registry().agents()["rpcutil"].ddl().actions["get_fact"]
    with pytest.raises(ArgumentError, match="argument 'fact' has an invalid value"):
        get_fact.check_arguments({"fact": value}, VALIDATORS)


def test_named_validator_that_is_not_installed_is_a_clear_error() -> None:
    lookup = DDLTEST.actions["lookup"]
    with pytest.raises(ArgumentError) as caught:
        lookup.check_arguments({"host": "web1.example.com"})
    assert str(caught.value) == ("argument 'host' uses validator 'fqdn', which is not "
                                 "installed here")
    assert error_kind(caught.value) == "invalid"
    # Missing is still reported as missing.
    with pytest.raises(ArgumentError, match="argument 'host' is required") as caught:
        lookup.check_arguments({})
    assert error_kind(caught.value) == "missing"


def test_plugin_validator_from_the_hook() -> None:
    registry = make_registry((FqdnValidatorPlugin(), "fqdn"))
    validators = registry.validators()
    assert {"shellsafe", "ipv4address", "ipv6address", "ipaddress", "fqdn"} <= set(validators)
    lookup = DDLTEST.actions["lookup"]
    assert lookup.check_arguments({"host": "web1.example.com"}, validators) == {
        "host": "web1.example.com"}
    with pytest.raises(ArgumentError) as caught:
        lookup.check_arguments({"host": "not a host"}, validators)
    assert str(caught.value) == "argument 'host' is not a valid fqdn value"


def test_validator_sets_do_not_leak_into_each_other() -> None:
    """The compiled schema is cached per validator set: one with ``fqdn`` must not make the
    built-in set accept it."""
    lookup = DDLTEST.actions["lookup"]
    lookup.check_arguments({"host": "a.example.com"}, {**VALIDATORS, "fqdn": fqdn})
    with pytest.raises(ArgumentError, match="not installed here"):
        lookup.check_arguments({"host": "a.example.com"})


# =========================================================================== in-process fleet

SPECS = [NodeSpec("n1", {"role": "web"}), NodeSpec("n2", {"role": "db"})]
NODES = ["n1", "n2"]
_stopping: list[threading.Thread] = []


def fleet_settings(collective: str, **overrides: Any) -> Settings:
    values = {"broker": "memory://", "collective": collective, "security": "insecure",
              "discovery_timeout": 0.6, "discovery_window": 0.2, "timeout": 4.0, **overrides}
    return load_settings(overrides=values, environ={})


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    """Every installed plugin plus the ``ddltest`` agent (no ``fqdn`` validator)."""
    return make_registry()


@pytest.fixture(scope="module")
def settings() -> Settings:
    return fleet_settings(f"ddl{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def fleet(settings: Settings, registry: PluginRegistry) -> Iterator[Fleet]:
    fleet = Fleet(settings, SPECS, registry=registry).start()
    yield fleet
    thread = threading.Thread(target=fleet.stop, name="stop-ddl-fleet", daemon=True)
    thread.start()
    _stopping.append(thread)


@pytest.fixture(scope="module", autouse=True)
def _join_stopping_fleets() -> Iterator[None]:
    yield
    for thread in _stopping:
        thread.join(15)


@pytest.fixture
def client(settings: Settings, registry: PluginRegistry, fleet: Fleet) -> Iterator[Client]:
    assert settings.security == "insecure"
    with Client(settings, registry, caller="user=ddltester") as client:
        yield client


def received(fleet: Fleet) -> int:
    return sum(node.statistics()["total"] for node in fleet.nodes)


def after_barrier(client: Client, fleet: Fleet) -> int:
    """:func:`received` once a broadcast ping and a direct ping to :data:`NODES` were
    answered, less those two: every request sent before them (by either path) has then
    been handled, so a count unchanged by then is one that will not change."""
    assert sorted(client.ping().replies) == sorted(node.identity for node in fleet.nodes)
    assert sorted(client.call("rpcutil", "ping", nodes=NODES).replies) == NODES
    return received(fleet) - len(fleet.nodes) - len(NODES)


def bypass(client: Client, agent: str, action_name: str, data: Mapping[str, Any],
           nodes: list[str]) -> dict[str, Reply]:
    """A hand-built request sent on the client's channel: no client-side DDL check."""
    request = client.new_request(agent, action_name, data)
    result = client.send_direct(request, nodes, timeout=WAIT)
    assert sorted(result.replies) == sorted(nodes), result
    return result.replies


# ----------------------------------------------------------------- client side


@pytest.mark.parametrize(("data", "kind", "message"), [
    ({}, "missing", "argument 'command' is required"),
    ({"command": "ls; reboot"}, "invalid", "argument 'command' is not a valid shellsafe value"),
    ({"command": "ls", "count": "3"}, "invalid", "argument 'count' must be of type integer"),
    ({"command": "ls", "mode": "slow"}, "invalid", "argument 'mode' must be one of fast, safe"),
    ({"command": "ls", "address": "1.2.3"}, "invalid", "not a valid ipv4address value"),
    ({"command": "ls", "bogus": 1}, "invalid", "unknown argument(s) bogus"),
])
@pytest.mark.parametrize("addressing", ["direct", "discovery"])
def test_client_refuses_before_sending(client: Client, fleet: Fleet, data: dict[str, Any],
                                       kind: str, message: str, addressing: str) -> None:
    before = received(fleet)
    nodes = NODES if addressing == "direct" else None
    with pytest.raises(ArgumentError) as caught:
        client.call("ddltest", "execute", data, nodes=nodes)
    assert message in str(caught.value)
    assert error_kind(caught.value) == kind
    assert after_barrier(client, fleet) == before, "a request (or a discovery ping) was sent"
    assert DDLTestAgent.runs == []


def test_client_sends_checked_arguments_with_defaults(client: Client) -> None:
    result = client.call("ddltest", "execute", {"command": "ls", "count": 3.0}, nodes=NODES)
    assert result.succeeded, result
    for reply in result.replies.values():
        assert reply.data["arguments"] == {"command": "ls", "count": 3, "loud": False,
                                           "mode": "safe"}
    assert result.warnings == {}
    assert all(type(run.data["count"]) is int for run in DDLTestAgent.runs)


def test_client_with_validator_the_server_lacks(settings: Settings, fleet: Fleet) -> None:
    """The client has the ``fqdn`` plugin, the nodes do not: the client's check passes
    and the nodes refuse with INVALID_DATA rather than run an unchecked value."""
    with Client(settings, make_registry((FqdnValidatorPlugin(), "fqdn"))) as client:
        with pytest.raises(ArgumentError, match="not a valid fqdn value"):
            client.call("ddltest", "lookup", {"host": "bad host"}, nodes=NODES)
        result = client.call("ddltest", "lookup", {"host": "web1.example.com"}, nodes=NODES)
    assert {n: r.statuscode for n, r in result.replies.items()} == {
        "n1": Status.INVALID_DATA, "n2": Status.INVALID_DATA}
    assert all("validator 'fqdn', which is not installed here" in r.statusmsg
               for r in result.replies.values())
    assert DDLTestAgent.runs == []


# ----------------------------------------------------------------- server side


@pytest.mark.parametrize(("data", "status", "message"), [
    ({}, Status.MISSING_DATA, "argument 'command' is required"),
    ({"count": 1}, Status.MISSING_DATA, "argument 'command' is required"),
    ({"command": "ls `id`"}, Status.INVALID_DATA,
     "argument 'command' is not a valid shellsafe value"),
    ({"command": "x" * 65}, Status.INVALID_DATA,
     "argument 'command' is longer than 64 characters"),
    ({"command": "ls", "count": True}, Status.INVALID_DATA,
     "argument 'count' must be of type integer, got True"),
    ({"command": "ls", "loud": "yes"}, Status.INVALID_DATA,
     "argument 'loud' must be of type boolean, got 'yes'"),
    ({"command": "ls", "mode": "slow"}, Status.INVALID_DATA,
     "argument 'mode' must be one of fast, safe"),
    ({"command": "ls", "name": "Bad Name"}, Status.INVALID_DATA,
     "argument 'name' has an invalid value 'Bad Name' (Name: A lower-case name; see the "
     "action's --help)"),
    ({"command": "ls", "address": "::1"}, Status.INVALID_DATA,
     "argument 'address' is not a valid ipv4address value"),
    ({"command": "ls", "options": [1]}, Status.INVALID_DATA,
     "argument 'options' must be of type hash, got [1]"),
    ({"command": "ls", "tags": "a"}, Status.INVALID_DATA,
     "argument 'tags' must be of type array, got 'a'"),
    ({"command": "ls", "rm": "-rf"}, Status.INVALID_DATA, "unknown argument(s) rm for execute"),
])
def test_server_refuses_requests_that_bypass_the_client(
        client: Client, data: dict[str, Any], status: Status, message: str) -> None:
    replies = bypass(client, "ddltest", "execute", data, NODES)
    for reply in replies.values():
        assert reply.statuscode is status, reply
        assert reply.statusmsg.startswith(message), reply.statusmsg
        assert reply.data == {}
    assert DDLTestAgent.runs == [], "the action ran although its arguments were refused"


def test_server_applies_defaults_to_requests_that_bypass_the_client(client: Client) -> None:
    replies = bypass(client, "ddltest", "execute", {"command": "ls", "count": 4.0}, NODES)
    for reply in replies.values():
        assert reply.ok, reply
        assert reply.data["arguments"] == {"command": "ls", "count": 4, "loud": False,
                                           "mode": "safe"}
    assert len(DDLTestAgent.runs) == 2
    assert all(type(run.data["count"]) is int for run in DDLTestAgent.runs)


def test_server_refuses_rpcutil_without_its_argument(client: Client) -> None:
    replies = bypass(client, "rpcutil", "get_fact", {}, ["n1"])
    assert replies["n1"].statuscode is Status.MISSING_DATA
    assert replies["n1"].statusmsg == "argument 'fact' is required"
    replies = bypass(client, "rpcutil", "get_fact", {"fact": "role; id"}, ["n1"])
    assert replies["n1"].statuscode is Status.INVALID_DATA
    assert "argument 'fact' has an invalid value 'role; id'" in replies["n1"].statusmsg


def test_client_without_the_ddl_sends_unchecked(settings: Settings, fleet: Fleet) -> None:
    """A client whose registry lacks ``ddltest`` cannot check; the nodes still do."""
    with Client(settings, PluginRegistry.from_entry_points()) as client:
        assert client.action_ddl("ddltest", "execute") is None
        result = client.call("ddltest", "execute", {"command": "a|b"}, nodes=NODES)
    assert {r.statuscode for r in result.replies.values()} == {Status.INVALID_DATA}
    assert DDLTestAgent.runs == []


# A Node built directly, as in tests/unit/test_node.py: raw bytes in, replies captured.


class Sent:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self._cond = threading.Condition()

    def __call__(self, collective: str, reply_to: str, payload: bytes, ttl: float) -> None:
        with self._cond:
            self.payloads.append(payload)
            self._cond.notify_all()

    def wait_for(self, count: int) -> list[Reply]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.payloads) >= count, WAIT)
            payloads = list(self.payloads)
        return [Reply.decode(Envelope.decode(p).body) for p in payloads]


@pytest.fixture
def runner() -> Iterator[ActionRunner]:
    runner = ActionRunner(workers=2)
    yield runner
    runner.shutdown(wait=1.0)


def make_node(runner: ActionRunner, sent: Sent,
              validators: Mapping[str, Callable[[Any], bool]],
              agents: Mapping[str, type[Agent]] | None = None) -> Node:
    registry = default_registry()
    services = NodeServices(
        settings=Settings(), security=InsecureProvider(), runner=runner, send=sent,
        filters=FilterEngine(registry.filter_kinds(), registry.filter_functions()),
        validators=validators,
    )
    return Node("node1", "ddlnode", agents or {"ddltest": DDLTestAgent}, dict, frozenset(),
                services)


def ask(node: Node, sent: Sent, action_name: str, data: Mapping[str, Any],
        agent: str = "ddltest") -> Reply:
    request = Request(agent=agent, action=action_name, collective="ddlnode",
                      sender="test", caller="user=test", reply_to="r", data=dict(data))
    before = len(sent.payloads)
    node.handle(Envelope("request", request.encode(), {}).encode())
    replies = sent.wait_for(before + 1)
    assert len(replies) == before + 1, "no reply"
    return replies[-1]


def test_node_validates_with_its_own_validators(runner: ActionRunner) -> None:
    sent = Sent()
    node = make_node(runner, sent, default_registry().validators())
    reply = ask(node, sent, "lookup", {"host": "web1.example.com"})
    assert reply.statuscode is Status.INVALID_DATA
    assert reply.statusmsg == ("argument 'host' uses validator 'fqdn', which is not "
                               "installed here")
    reply = ask(node, sent, "lookup", {})
    assert (reply.statuscode, reply.statusmsg) == (Status.MISSING_DATA,
                                                   "argument 'host' is required")
    assert DDLTestAgent.runs == []

    sent = Sent()
    node = make_node(runner, sent, {**VALIDATORS, "fqdn": fqdn})
    reply = ask(node, sent, "lookup", {"host": "nope"})
    assert (reply.statuscode, reply.statusmsg) == (
        Status.INVALID_DATA, "argument 'host' is not a valid fqdn value")
    assert DDLTestAgent.runs == []
    reply = ask(node, sent, "lookup", {"host": "web1.example.com"})
    assert reply.ok and reply.data == {"host": "web1.example.com"}
    assert len(DDLTestAgent.runs) == 1


SHELL_DDL = parse_ddl({
    "metadata": {"name": "shell", "description": "Like Choria's shell agent", "author": "t",
                 "license": "MIT", "version": "1", "timeout": 1},
    "actions": [{"action": "run", "description": "Run a command",
                 "input": {"command": {"type": "string", "optional": False,
                                       "validation": "shellsafe"}},
                 "output": {"stdout": {"type": "string"}}}],
}, "shell.json")


def test_an_action_may_be_called_run(runner: ActionRunner) -> None:
    """BUG: actions are methods of the agent class, and the server calls
    ``Agent.run(request)`` to dispatch. An action named ``run`` (Choria's ``shell`` agent
    has one) replaces that method: the server calls it with one argument, the TypeError
    disappears inside the runner's future (``ActionRunner._run`` does not catch or log),
    and the caller gets "did not finish within 1s" after the whole timeout. Either such an
    action works, or defining it is refused with an error naming it."""
    try:
        class Shell(Agent):
            name = "shell"

            @classmethod
            def ddl(cls) -> AgentDDL:
                return SHELL_DDL

            @action
            def run(self, request: ActionRequest, reply: ActionReply) -> None:  # type: ignore[override]
                reply["stdout"] = f"ran {request.data['command']}"
    except Exception as exc:  # refused at definition: acceptable if it says why
        assert "run" in str(exc)
        return
    sent = Sent()
    node = make_node(runner, sent, VALIDATORS, {"shell": Shell})
    reply = ask(node, sent, "run", {"command": "uptime"}, agent="shell")
    # OK with the action's data, not "did not finish within 1s": the action itself ran.
    assert (reply.statuscode, reply.statusmsg, dict(reply.data)) == (
        Status.OK, "OK", {"stdout": "ran uptime"})


# ----------------------------------------------------------------- replies against outputs


def test_conforming_reply_has_no_warnings(client: Client) -> None:
    data = {"status": "running", "enabled": True, "load": 0.5}
    result = client.call("ddltest", "report", {"reply": data}, nodes=NODES)
    assert result.succeeded and result.warnings == {}
    assert all(r.data == data for r in result.replies.values())


def test_undeclared_output_is_flagged_by_client_and_node(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    result = client.call("ddltest", "report",
                         {"reply": {"status": "up", "secret_sauce": 1, "extra": 2}},
                         nodes=NODES)
    assert result.ok == NODES  # flagged, still results
    assert result.warnings == {name: ["undeclared output(s) extra, secret_sauce"]
                               for name in NODES}
    server_lines = [r.getMessage() for r in caplog.records if r.name == "orch.core.server"]
    for name in NODES:
        assert any(f"node={name} " in line and "ddltest.report reply does not match its DDL"
                   in line and "secret_sauce" in line for line in server_lines), server_lines
    client_lines = [r.getMessage() for r in caplog.records if r.name == "orch.core.client"]
    assert any("secret_sauce" in line for line in client_lines)


def test_wrongly_typed_output_is_flagged_by_client_and_node(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    result = client.call("ddltest", "report", {"reply": {"load": "high", "enabled": "yes"}},
                         nodes=["n1"])
    problems = result.warnings["n1"]
    assert len(problems) == 2
    assert any(p.startswith("output 'load'") for p in problems), problems
    assert any(p.startswith("output 'enabled'") for p in problems), problems
    server_lines = [r.getMessage() for r in caplog.records if r.name == "orch.core.server"]
    assert any("output 'load'" in line and "output 'enabled'" in line
               for line in server_lines), server_lines


def test_wrong_type_warning_says_which_type_was_declared() -> None:
    """BUG (minor): a typed output without a default compiles to ``anyOf [type, null]``, so
    the warning reads "'high' is not valid under any of the given schemas" without saying
    that a number was expected. It should name the declared type."""
    problems = DDLTEST.actions["report"].check_reply({"load": "high"})
    assert len(problems) == 1
    assert problems[0].startswith("output 'load'")
    assert "number" in problems[0], problems


def test_failed_replies_are_not_flagged_by_the_client(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    """A failed reply's partial data is shown as is; only the node logs the mismatch."""
    caplog.set_level(logging.WARNING)
    result = client.call("ddltest", "report",
                         {"reply": {"partial": 1, "__fail__": "gave up"}}, nodes=["n1"])
    reply = result.replies["n1"]
    assert (reply.statuscode, reply.statusmsg, dict(reply.data)) == (
        Status.ABORTED, "gave up", {"partial": 1})
    assert result.warnings == {}
    assert any(r.name == "orch.core.server" and "undeclared output(s) partial" in r.getMessage()
               for r in caplog.records)


def test_null_is_accepted_for_typed_outputs_without_default() -> None:
    report = DDLTEST.actions["report"]
    assert report.check_reply({"status": None, "enabled": None, "load": None}) == []
    execute = DDLTEST.actions["execute"]
    assert execute.check_reply({"arguments": None}) == []
    problems = execute.check_reply({"exitcode": None})  # declared default 0: null is wrong
    assert len(problems) == 1 and problems[0].startswith("output 'exitcode'")


def test_reply_checks_reuse_one_compiled_schema() -> None:
    """BUG: ``check_reply`` calls ``_validator(action, {}, "output")`` with a new ``{}`` each
    time; the cache is keyed on ``id(validators)`` and keeps that dict alive, so every reply
    checked (once per reply on the server and again on the client) compiles a new
    validator and adds a cache entry that is never freed — unbounded growth in a
    long-running ``orch server``."""
    report = DDLTEST.actions["report"]
    report.check_reply({"status": "up"})
    before = len(ddl_compile._cache)
    for _ in range(50):
        report.check_reply({"status": "up"})
    assert len(ddl_compile._cache) == before


def test_argument_checks_reuse_one_compiled_schema() -> None:
    validators = default_registry().validators()
    EXECUTE.check_arguments({"command": "ls"}, validators)
    before = len(ddl_compile._cache)
    for _ in range(50):
        EXECUTE.check_arguments({"command": "ls"}, validators)
    assert len(ddl_compile._cache) == before


# =========================================================================== help


def test_action_help_shows_inputs_outputs_and_summaries() -> None:
    text = action_help(DDLTEST, EXECUTE)
    lines = text.splitlines()
    assert lines[0].startswith("Usage: orch rpc ddltest execute command=VALUE [address=VALUE]")
    assert "Run a command; echoes the arguments it received" in text

    def line(name: str) -> str:
        found = [entry for entry in lines if entry.startswith(f"  {name} (")]
        assert len(found) == 1, text
        return found[0]

    assert line("command") == "  command (string, required, validation shellsafe, " \
                              "max length 64)"
    assert line("address") == "  address (string, optional, validation ipv4address)"
    assert line("name") == "  name (string, optional, validation ^[a-z][a-z0-9_-]*$, " \
                           "max length 16)"
    assert line("count") == "  count (integer, optional, default 2)"
    assert line("ratio") == "  ratio (number, optional)"
    assert line("scale") == "  scale (float, optional)"
    assert line("loud").lower() == "  loud (boolean, optional, default false)"
    assert line("options") == "  options (hash, optional)"
    assert line("tags") == "  tags (array, optional)"
    assert line("extra") == "  extra (any, optional)"
    assert "      The command to run" in lines
    assert "  arguments [Arguments] (hash): The arguments the action received" in lines
    assert "  exitcode [Exit Code] (integer): The exit code" in lines
    assert "  summary(exitcode)" in lines
    assert "Timeout: 5s   Display: always" in text


def test_action_help_lists_the_choices_of_a_list_input() -> None:
    """BUG: for a ``list`` (enumeration) input the help prints ``mode (list, optional,
    default 'safe')`` — the allowed values, which are its whole validation, are missing."""
    text = action_help(DDLTEST, EXECUTE)
    [mode] = [entry for entry in text.splitlines() if entry.startswith("  mode (")]
    assert "fast" in mode and "safe" in mode, mode


def test_action_help_summaries_show_their_arguments() -> None:
    text = action_help(DDLTEST, DDLTEST.actions["report"])
    assert "  summary(status)" in text
    assert "  boolean_summary(enabled, {'true': 'enabled', 'false': 'disabled'})" in text
    assert "  average(load, {'format': '%.2f'})" in text
    assert "  sum(load)" in text
    assert "  histogram(load, {'bins': 4})" in text
    assert "Display: failed" in text


def test_action_help_without_inputs_or_outputs() -> None:
    from orch.ddl.model import ActionDDL

    text = action_help(DDLTEST, ActionDDL("noop", description="Nothing"))
    assert re.match(r"Usage: orch rpc ddltest noop +\[FILTERS\] \[OPTIONS\]\n", text)
    assert "Inputs: none" in text and "Outputs: none" in text
    assert "Summaries" not in text


def test_usage_line_of_an_action_without_inputs_has_single_spaces() -> None:
    """BUG (cosmetic): ``action_help`` joins ``f"... {action.name} {usage} [FILTERS]"`` with
    an empty ``usage``, so ``orch rpc rpcutil ping --help`` prints
    ``Usage: orch rpc rpcutil ping  [FILTERS] [OPTIONS]`` (two spaces)."""
    rpcutil = default_registry().agents()["rpcutil"].ddl()
    first = action_help(rpcutil, rpcutil.actions["ping"]).splitlines()[0]
    assert first == "Usage: orch rpc rpcutil ping [FILTERS] [OPTIONS]"


def test_agent_help_lists_metadata_and_actions() -> None:
    text = agent_help(DDLTEST)
    assert text.startswith("ddltest: Test agent exercising every DDL input type")
    for fragment in ("Author   orch tests", "Version  1.2.3", "License  Apache-2.0",
                     "Timeout  5s", "orch rpc ddltest ACTION --help"):
        assert fragment in text
    assert re.search(r"^  lookup +Look a host up", text, re.M)
    assert re.search(r"^  execute +Run a command", text, re.M)


# =========================================================================== --name value


@pytest.mark.parametrize(("tokens", "expected"), [
    (["--command", "ls -l"], {"command": "ls -l"}),
    (["--command=ls -l"], {"command": "ls -l"}),
    (["command=ls -l"], {"command": "ls -l"}),
    (["--command", "a=b"], {"command": "a=b"}),
    (["--count", "3"], {"count": 3}),
    (["--count=-3"], {"count": -3}),
    (["--ratio", "0.5", "--scale", "2"], {"ratio": 0.5, "scale": 2}),
    (["--loud"], {"loud": True}),
    (["--no-loud"], {"loud": False}),
    (["--loud=no"], {"loud": False}),
    (["--loud", "--count", "1"], {"loud": True, "count": 1}),
    (["--mode", "fast"], {"mode": "fast"}),
    (["--options", '{"a": [1]}'], {"options": {"a": [1]}}),
    (["--tags", "[1, 2]"], {"tags": [1, 2]}),
    (["--extra", "7", "--name", "007"], {"extra": 7, "name": "007"}),
    (["--command", "--loud"], {"command": "--loud"}),
])
def test_option_style_arguments(tokens: list[str], expected: dict[str, Any]) -> None:
    parsed = parse_arguments(tokens, EXECUTE)
    assert parsed == expected
    assert {k: type(v) for k, v in parsed.items()} == {k: type(v) for k, v in expected.items()}


def test_dashes_in_option_names_become_underscores() -> None:
    from orch.ddl.model import ActionDDL

    act = ActionDDL("act", inputs={"dry_run": InputDDL("dry_run", "boolean"),
                                   "max_age": InputDDL("max_age", "integer")})
    assert parse_arguments(["--dry-run", "--max-age", "5"], act) == {"dry_run": True,
                                                                      "max_age": 5}
    assert parse_arguments(["--no-dry-run"], act) == {"dry_run": False}


@pytest.mark.parametrize(("tokens", "message"), [
    (["--count"], "option --count needs a value"),
    (["--count", "many"], "argument 'count': 'many' is not a valid integer"),
    (["--loud=maybe"], "argument 'loud': 'maybe' is not a valid boolean"),
    (["--options", "[1]"], "argument 'options': '[1]' is not a valid hash"),
    (["--tags", "x"], "argument 'tags': 'x' is not a valid array"),
])
def test_option_style_errors(tokens: list[str], message: str) -> None:
    with pytest.raises(ArgumentError) as caught:
        parse_arguments(tokens, EXECUTE)
    assert message in str(caught.value)


@pytest.mark.parametrize("tokens", [["--no-command"], ["--no-count"], ["--no-mode"]])
def test_negation_is_only_for_boolean_inputs(tokens: list[str]) -> None:
    """BUG: ``--no-NAME`` is turned into ``NAME=false`` for *any* declared input, so
    ``--no-command`` silently sends the string ``"false"`` as the command (and
    ``--no-count`` fails with a confusing "'false' is not a valid integer"). Only boolean
    inputs can be negated; anything else should be a usage error naming the option."""
    with pytest.raises(ArgumentError) as caught:
        parse_arguments(tokens, EXECUTE)
    assert tokens[0] in str(caught.value)


# =========================================================================== the CLI


@pytest.fixture
def cli_registry(registry: PluginRegistry, monkeypatch: pytest.MonkeyPatch,
                 fleet: Fleet) -> Iterator[PluginRegistry]:
    """Make the CLI (in-process, via CliRunner) see the ``ddltest`` agent."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield registry
    root.handlers[:] = handlers
    root.setLevel(level)


def run_cli(settings: Settings, registry: PluginRegistry, *args: str) -> Result:
    import os

    from orch.cli.main import cli

    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ORCH_")}
    env.update({"ORCH_BROKER": "memory://", "ORCH_COLLECTIVE": settings.collective,
                "ORCH_SECURITY": "insecure", "ORCH_DISCOVERY_TIMEOUT": "0.6",
                "ORCH_LOG_LEVEL": "error"})
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False, obj=registry)


def test_cli_action_help(settings: Settings, cli_registry: PluginRegistry) -> None:
    result = run_cli(settings, cli_registry, "rpc", "ddltest", "execute", "--help")
    assert result.exit_code == 0, result.output
    help_text, _, options = result.stdout.partition("\nInput options (or name=VALUE):\n")
    assert help_text.strip() == action_help(DDLTEST, EXECUTE).strip()
    for name in EXECUTE.inputs:
        assert f"--{name.replace('_', '-')}" in options
    result = run_cli(settings, cli_registry, "rpc", "ddltest", "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == agent_help(DDLTEST).strip()


def test_cli_plugin_doc(settings: Settings, cli_registry: PluginRegistry) -> None:
    """``orch plugin doc AGENT``: the agent's help, then every action's, from the DDL."""
    result = run_cli(settings, cli_registry, "plugin", "doc", "ddltest")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(agent_help(DDLTEST))
    for name, act in DDLTEST.actions.items():
        assert f"ddltest.{name}\n\n" + action_help(DDLTEST, act) in out
    assert out.index("ddltest.execute") < out.index("ddltest.lookup") < out.index(
        "ddltest.report")


def test_cli_option_style_arguments_reach_the_agent(settings: Settings,
                                                    cli_registry: PluginRegistry) -> None:
    result = run_cli(settings, cli_registry, "rpc", "ddltest", "execute", "--command", "uptime",
                     "--count", "3", "--loud", "--mode", "fast", "--tags", '["a"]', "-I", "n1",
                     "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    [reply] = document["replies"]
    assert reply["status"] == "ok"
    assert reply["data"]["arguments"] == {"command": "uptime", "count": 3, "loud": True,
                                          "mode": "fast", "tags": ["a"]}
    assert document["warnings"] == {}
    assert document["aggregates"] == [{"function": "summary", "output": "exitcode",
                                       "result": {"counts": {"0": 1}}}]


def test_cli_refuses_invalid_arguments_before_sending(settings: Settings, fleet: Fleet,
                                                      cli_registry: PluginRegistry,
                                                      client: Client) -> None:
    before = received(fleet)
    result = run_cli(settings, cli_registry, "rpc", "ddltest", "execute", "--command", "ls;id",
                     "-I", "n1")
    assert result.exit_code == 2, result.output
    assert "argument 'command' is not a valid shellsafe value" in result.output
    result = run_cli(settings, cli_registry, "rpc", "ddltest", "execute", "--no-loud", "-I", "n1")
    assert result.exit_code == 2, result.output
    assert "argument 'command' is required" in result.output
    assert after_barrier(client, fleet) == before
    assert DDLTestAgent.runs == []


def test_cli_shows_reply_warnings_and_summaries_in_json(settings: Settings,
                                                        cli_registry: PluginRegistry) -> None:
    reply = json.dumps({"status": "up", "enabled": True, "load": 1.5, "junk": 1})
    result = run_cli(settings, cli_registry, "rpc", "ddltest", "report", "--reply", reply,
                     "-I", "n1", "-I", "n2", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["warnings"] == {"n1": ["undeclared output(s) junk"],
                                    "n2": ["undeclared output(s) junk"]}
    aggregates = {a["function"]: a for a in document["aggregates"]}
    assert aggregates["summary"]["result"] == {"counts": {"up": 2}}
    assert aggregates["boolean_summary"]["result"] == {"counts": {"enabled": 2}}
    # average, sum and histogram all summarize "load": one summary per output, the last.
    assert "average" not in aggregates and "sum" not in aggregates
    assert sum(b["count"] for b in aggregates["histogram"]["result"]["buckets"]) == 2
    assert [a["output"] for a in document["aggregates"]] == ["status", "enabled", "load"]


# =========================================================================== cost


def test_validation_compiles_each_action_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """check_arguments on rpcutil get_fact with a warm cache builds no schema: the compiled
    validator is reused. (What a request costs is measured in bench/test_bench_security.py;
    a cache that stopped working shows here as a schema built per call.)"""
    from orch.ddl import compile as ddl_compile

    registry = default_registry()
    get_fact = registry.agents()["rpcutil"].ddl().actions["get_fact"]
    validators = registry.validators()
    data = {"fact": "os.family"}
    get_fact.check_arguments(data, validators)
    built: list[str] = []
    schema = ddl_compile.input_schema
    monkeypatch.setattr(ddl_compile, "input_schema",
                        lambda action: built.append(action.name) or schema(action))
    for _ in range(100):
        get_fact.check_arguments(data, validators)
    assert built == []


@pytest.mark.parametrize("pattern", [r"^(a+)+$", r"^(a|aa)+$", r"^(\w+\s?)*$", r"^(.+)+X$"])
def test_catastrophic_validation_patterns_refuse_hostile_arguments(pattern: str) -> None:
    """Issue 18: a DDL validation is applied to arguments from the network, before
    authorization. A pattern that backtracks exponentially under Python's ``re`` (which
    jsonschema's ``pattern`` uses by default) is matched by RE2 instead: the hostile value
    is simply refused."""
    from orch.ddl.model import ActionDDL

    act = ActionDDL("act", inputs={"v": InputDDL("v", "string", validation=pattern)})
    for hostile in ("a" * 64 + "!", "word " * 2000 + "!"):
        with pytest.raises(ArgumentError, match="does not match"):
            act.check_arguments({"v": hostile}, VALIDATORS)


@pytest.mark.parametrize(("validation", "why"), [
    (r"^(?=a)\w+$", "lookaround"),
    (r"^(a)\1$", "backreference"),
    (r"^a{100000}{100000}$", "at most 1000 repetitions"),
])
def test_validation_the_bounded_engine_cannot_run_fails_to_load(validation: str, why: str) -> None:
    raw = {"metadata": {"name": "bounded", "description": "d", "author": "a", "license": "l",
                        "version": "1", "url": "https://example.com", "timeout": 5},
           "actions": [{"action": "go", "description": "d", "display": "always",
                        "input": {"v": {"prompt": "V", "description": "v", "type": "string",
                                        "validation": validation, "optional": False,
                                        "maxlength": 0}},
                        "output": {}}]}
    with pytest.raises(DDLError, match=f"is not a valid regular expression .*{why}"):
        parse_ddl(raw, "bounded.json")


WARNED = SAMPLES / "warned"
WARNED_CASES = [
    ("default_wrong_type.json", "retries",
     ["actions[0].input.retries.default: ", "'three'", "is not of type 'integer'"]),
    ("default_not_in_list.json", "mode",
     ["actions[0].input.mode.default: ", "'slow'", "is not one of ['fast', 'safe']"]),
    ("default_fails_validation.json", "token",
     ["actions[0].input.token.default: ", "''", "does not match"]),
]


@pytest.mark.parametrize(("name", "field", "fragments"), WARNED_CASES,
                         ids=[c[0] for c in WARNED_CASES])
def test_a_default_failing_its_own_validation_is_warned_not_refused(
        name: str, field: str, fragments: list[str], caplog: pytest.LogCaptureFixture,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Choria never checks defaults (go-choria's choria_provision.json has a default ""
    that fails its input's pattern): orch loads every such DDL, warns, and a call that
    leaves the input out is not refused for the author's default."""
    monkeypatch.setenv("ORCH_CACHE_DIR", str(tmp_path))  # the warning comes from a full check
    with caplog.at_level("WARNING"):
        ddl = load_ddl(WARNED / name)
    for fragment in fragments:
        assert fragment in caplog.text
    action = ddl.actions["go"]
    given = {k: "x" for k, spec in action.inputs.items() if not spec.optional}
    checked = action.check_arguments(given, VALIDATORS)
    assert checked[field] == action.inputs[field].default
    assert sorted(p.name for p in WARNED.iterdir()) == sorted(c[0] for c in WARNED_CASES)
