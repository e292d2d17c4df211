"""The ``orch`` command line (click's CliRunner) against an in-process fleet on memory://.

The memory:// broker is global to the process, so the fleet of this module gets its own
collective and every command is pointed at it with ``ORCH_BROKER``/``ORCH_COLLECTIVE``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import orch
from orch.cli.demo import TOUR
from orch.cli.main import cli
from orch.core.config import load_settings
from orch.core.fleet import Fleet, NodeSpec
from orch.core.plugins import default_registry
from orch.demo import DemoPKI, demo_specs

SPECS = [
    NodeSpec("web1", {"role": "web", "env": "prod", "os": {"family": "Debian"}},
             frozenset({"nginx"})),
    NodeSpec("web2", {"role": "web", "env": "dev", "os": {"family": "Debian"}},
             frozenset({"nginx"})),
    NodeSpec("db1", {"role": "db", "env": "prod", "os": {"family": "RedHat"}},
             frozenset({"postgresql"})),
]
ALL = ["db1", "web1", "web2"]
COLLECTIVE = f"cli{uuid.uuid4().hex[:12]}"
DOCUMENT_KEYS = {"agent", "action", "request_id", "replies", "expected", "missing", "rejected",
                 "unexpected", "error", "cut_short", "warnings", "aggregates", "stats",
                 "hint", "notes", "absent"}
REPLY_KEYS = {"sender", "status", "statuscode", "statusmsg", "data", "rtt_ms"}
STATS_KEYS = {"discovered", "responses", "ok", "failed", "missing", "discovery_ms",
              "elapsed_ms"}


@functools.cache
def pki() -> DemoPKI:
    """A throw-away CA: the fleet and every command run signed, as in production."""
    return DemoPKI.create(Path(tempfile.mkdtemp(prefix="orch-cli-test-")) / "ca")


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    # Host only rpcutil, whatever other agent plugins are installed in this environment.
    settings = load_settings(overrides={"broker": "memory://", "collective": COLLECTIVE,
                                        "agents": ["rpcutil"], **pki().client_settings},
                             environ={})
    with Fleet(settings, SPECS, default_registry(), security_for=pki().node_security) as fleet:
        yield fleet


def environment(**extra: str | None) -> dict[str, str | None]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ORCH_")}
    env.update({"ORCH_BROKER": "memory://", "ORCH_COLLECTIVE": COLLECTIVE,
                "ORCH_DISCOVERY_TIMEOUT": "0.6", "ORCH_LOG_LEVEL": "error",
                **{f"ORCH_{k.upper()}": v for k, v in pki().client_settings.items()}})
    env.update(extra)
    return env


def run(*args: str, input: str | None = None, env: Mapping[str, str | None] | None = None,
        ) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, env=dict(env or environment()),
                              catch_exceptions=False)


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def check_document(document: dict[str, Any]) -> None:
    """The documented ``--json`` shape of a call (docs/cli.md)."""
    assert set(document) == DOCUMENT_KEYS
    assert set(document["stats"]) == STATS_KEYS
    for reply in document["replies"]:
        assert set(reply) == REPLY_KEYS
        assert isinstance(reply["rtt_ms"], int | float) and reply["rtt_ms"] >= 0
        assert isinstance(reply["statuscode"], int)
    assert [r["sender"] for r in document["replies"]] == sorted(
        r["sender"] for r in document["replies"])


# --------------------------------------------------------------------- version & help


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"orch {orch.__version__}"


def test_top_level_help_lists_plugin_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("ping", "rpc", "find", "facts", "inventory", "plugins", "server", "demo"):
        assert re.search(rf"^\s+{command}\b", result.stdout, re.M), command


def test_unknown_command_is_usage_error() -> None:
    result = run("pnig")
    assert result.exit_code == 2


# --------------------------------------------------------------------- ping


def test_ping(fleet: Fleet) -> None:
    result = run("ping")
    assert result.exit_code == 0, result.output
    for name in ALL:
        assert re.search(rf"^{name}\s+time=\d+\.\d+ ms$", result.stdout, re.M), result.stdout
    assert "---- ping statistics ----" in result.stdout
    assert "3 replies max:" in result.stdout


def test_ping_json(fleet: Fleet) -> None:
    result = run("ping", "--json", "-F", "role=web")
    assert result.exit_code == 0, result.output
    document = as_json(result)
    check_document(document)
    assert (document["agent"], document["action"]) == ("rpcutil", "ping")
    assert document["expected"] is None
    assert [r["sender"] for r in document["replies"]] == ["web1", "web2"]


def test_ping_nobody_exits_1(fleet: Fleet) -> None:
    result = run("ping", "-F", "role=nothing")
    assert result.exit_code == 1
    assert "No responses received" in result.stdout


# --------------------------------------------------------------------- rpc


def test_rpc_json_document(fleet: Fleet) -> None:
    result = run("rpc", "rpcutil", "get_fact", "fact=role", "--json")
    assert result.exit_code == 0, result.output
    document = as_json(result)
    check_document(document)
    assert (document["agent"], document["action"]) == ("rpcutil", "get_fact")
    assert re.fullmatch(r"[0-9a-f]{32}", document["request_id"])
    assert document["expected"] == ALL
    assert document["missing"] == [] and document["rejected"] == []
    assert document["error"] is None
    by_sender = {r["sender"]: r for r in document["replies"]}
    assert by_sender["db1"] == {**by_sender["db1"], "status": "ok", "statuscode": 0,
                                "statusmsg": "OK", "data": {"fact": "role", "value": "db"}}
    stats = document["stats"]
    assert (stats["discovered"], stats["responses"], stats["ok"], stats["failed"],
            stats["missing"]) == (3, 3, 3, 0, 0)
    assert isinstance(stats["discovery_ms"], int | float)  # discovery ran (its length is
    assert isinstance(stats["elapsed_ms"], int | float)    # no unit test's business)


def test_rpc_text_output(fleet: Fleet) -> None:
    result = run("rpc", "rpcutil", "get_fact", "fact=os.family", "-F", "env=prod")
    assert result.exit_code == 0, result.output
    assert re.search(r"^db1\n\s+Fact: os.family\n\s+Value: RedHat$", result.stdout, re.M)
    assert "web2" not in result.stdout
    assert "Finished processing 2 / 2 hosts" in result.stdout


def test_rpc_with_nodes_from_stdin(fleet: Fleet) -> None:
    listing = "web1\n# a comment line\ndb1   # trailing comment\n\n"
    result = run("rpc", "rpcutil", "ping", "--nodes", "-", "--json", input=listing)
    assert result.exit_code == 0, result.output
    document = as_json(result)
    assert document["expected"] == ["db1", "web1"]
    assert [r["sender"] for r in document["replies"]] == ["db1", "web1"]
    assert document["stats"]["discovery_ms"] == 0


def test_rpc_with_nodes_file_and_missing_node(fleet: Fleet, tmp_path: Any) -> None:
    listing = tmp_path / "nodes.txt"
    listing.write_text("web2\nghost\n")
    result = run("rpc", "rpcutil", "ping", "--nodes", str(listing), "--timeout", "0.5")
    assert result.exit_code == 1
    assert "Finished processing 1 / 2 hosts" in result.stdout
    assert re.search(r"No response from 1 node\(s\):\n\s+ghost", result.stdout)


def test_rpc_failed_replies_exit_1(fleet: Fleet) -> None:
    result = run("rpc", "notinstalled", "act", "-I", "web1", "--json")
    assert result.exit_code == 1
    document = as_json(result)
    assert document["replies"][0]["status"] == "unknown action"
    assert document["stats"]["failed"] == 1


def test_rpc_agent_help_lists_actions() -> None:
    result = run("rpc", "rpcutil", "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("rpcutil: ")
    for action in ("ping", "inventory", "get_fact", "get_facts", "agent_inventory",
                   "daemon_stats", "collective_info"):
        assert re.search(rf"^\s+{action}\s+\S", result.stdout, re.M), action
    assert "orch rpc rpcutil ACTION --help" in result.stdout


def test_rpc_action_help_shows_inputs_and_outputs() -> None:
    result = run("rpc", "rpcutil", "get_fact", "--help")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Usage: orch rpc rpcutil get_fact fact=VALUE" in out
    assert "Inputs:" in out and "Outputs:" in out
    assert re.search(r"fact \(string, required, .*max length 200\)", out)
    assert "The fact to retrieve" in out
    assert "fact [Fact] (string)" in out
    assert "value [Value] (any)" in out
    assert "summary(value)" in out


def test_rpc_help_without_agent_lists_installed_agents() -> None:
    result = run("rpc", "--help")
    assert result.exit_code == 0
    assert "Installed agents:" in result.stdout and "rpcutil" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["rpc"], "AGENT and ACTION are required"),
    (["rpc", "rpcutil"], "AGENT and ACTION are required"),
    (["rpc", "rpcutil", "nosuch"], "no action 'nosuch'"),
    (["rpc", "rpcutil", "nosuch", "--help"], "no action 'nosuch'"),
    (["rpc", "nosuchagent", "--help"], "no DDL for agent 'nosuchagent'"),
    (["rpc", "rpcutil", "get_fact", "factrole"], "must look like name=value"),
    (["rpc", "rpcutil", "get_fact", "=role"], "must look like name=value"),
    (["rpc", "rpcutil", "get_fact"], "argument 'fact' is required"),
    (["rpc", "rpcutil", "get_fact", "fact=role", "extra=1"], "unknown argument(s) extra"),
    (["rpc", "rpcutil", "ping", "-S", "(a"], ""),
    (["rpc", "rpcutil", "ping", "-S", "role=web and"], ""),
    (["rpc", "rpcutil", "ping", "-F", "role"], ""),
    (["rpc", "rpcutil", "ping", "-I", "/[unclosed/"], ""),
    (["rpc", "rpcutil", "ping", "--display", "some"], ""),
    (["rpc", "rpcutil", "ping", "--timeout", "soon"], ""),
])
def test_rpc_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert message in result.output


def test_bad_configuration_is_a_usage_error() -> None:
    result = run("rpc", "rpcutil", "ping", env=environment(ORCH_WORKERS="lots"))
    assert result.exit_code == 2
    assert "environment: bad value 'lots' for 'workers'" in result.output


def test_unknown_broker_scheme_is_a_usage_error() -> None:
    result = run("ping", env=environment(ORCH_BROKER="carrier-pigeon://coop"))
    assert result.exit_code == 2
    assert "no transport for broker URL" in result.output


# --------------------------------------------------------------------- --nodes


def test_nodes_combined_with_filter_is_usage_error(fleet: Fleet) -> None:
    result = run("ping", "--nodes", "-", "-F", "role=web", input="web1\n")
    assert result.exit_code == 2
    assert "--nodes cannot be combined with filters" in result.output


def test_nodes_combined_with_identity_is_usage_error(fleet: Fleet) -> None:
    result = run("find", "--nodes", "-", "-I", "web1", input="web1\n")
    assert result.exit_code == 2


def test_nodes_file_that_does_not_exist(tmp_path: Any) -> None:
    result = run("ping", "--nodes", str(tmp_path / "absent.txt"))
    assert result.exit_code == 2
    assert "cannot read" in result.output


@pytest.mark.parametrize("command", [["ping"], ["rpc", "rpcutil", "ping"]])
def test_nodes_list_with_an_impossible_identity_is_usage_error(fleet: Fleet,
                                                               command: list[str]) -> None:
    """A name no node can have would be signed into the target list of every node of its
    part: refused before anything is sent, naming it."""
    result = run(*command, "--nodes", "-", input="web1\nweb 2\n")
    assert result.exit_code == 2, result.output
    assert "'web 2' is not a valid node identity" in result.output
    assert "Traceback" not in result.output


def test_ping_nodes_from_stdin(fleet: Fleet) -> None:
    result = run("ping", "--nodes", "-", input="web2\nweb1\n")
    assert result.exit_code == 0, result.output
    assert "2 replies" in result.stdout


# --------------------------------------------------------------------- find, facts, inventory


@pytest.mark.parametrize(("args", "expected"), [
    ([], ALL),
    (["-F", "role=web"], ["web1", "web2"]),
    (["-F", "role=web", "-F", "env=prod"], ["web1"]),
    (["-C", "postgresql"], ["db1"]),
    (["-W", "env=prod nginx"], ["web1"]),
    (["-S", "role=db or env=dev"], ["db1", "web2"]),
    (["-I", "/^web/"], ["web1", "web2"]),
    (["-A", "rpcutil"], ALL),
])
def test_find(fleet: Fleet, args: list[str], expected: list[str]) -> None:
    result = run("find", *args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == expected


def test_find_json(fleet: Fleet) -> None:
    result = run("find", "--json", "-F", "os.family=Debian")
    assert result.exit_code == 0
    assert as_json(result) == {"nodes": ["web1", "web2"], "cut_short": None,
                               "absent": []}


def test_find_nothing_exits_1(fleet: Fleet) -> None:
    result = run("find", "-F", "role=nothing")
    assert result.exit_code == 1
    assert result.stdout == ""


def test_facts_verbose(fleet: Fleet) -> None:
    result = run("facts", "role", "-v")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Report for fact: role\n")
    assert re.search(r"^\s+web\s+found 2 times\n\s+web1\n\s+web2$", out, re.M), out
    assert re.search(r"^\s+db\s+found 1 times\n\s+db1$", out, re.M), out
    # Most frequent value first.
    assert out.index("web ") < out.index("db ")
    assert "Finished processing 3 / 3 hosts" in out


def test_facts_nested_json(fleet: Fleet) -> None:
    result = run("facts", "os.family", "--json")
    assert result.exit_code == 0, result.output
    document = as_json(result)
    assert document["fact"] == "os.family"
    assert document["values"] == [
        {"value": "Debian", "count": 2, "nodes": ["web1", "web2"]},
        {"value": "RedHat", "count": 1, "nodes": ["db1"]},
    ]
    assert document["failed"] == [] and document["missing"] == []
    assert document["cut_short"] is None
    assert set(document["stats"]) == STATS_KEYS


def test_inventory(fleet: Fleet) -> None:
    result = run("inventory", "web1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Inventory for web1:")
    assert f"orch version: {orch.__version__}" in out
    assert f"collective:   {COLLECTIVE}" in out
    assert re.search(r"Agents:\n\s+rpcutil", out)
    assert re.search(r"Classes:\n\s+nginx", out)
    assert re.search(r"^\s+role => web$", out, re.M)
    assert re.search(r"^\s+os\.family => Debian$", out, re.M)


def test_inventory_json(fleet: Fleet) -> None:
    result = run("inventory", "db1", "--json")
    assert result.exit_code == 0, result.output
    document = as_json(result)
    check_document(document)
    assert document["replies"][0]["data"]["facts"]["role"] == "db"


def test_inventory_of_missing_node(fleet: Fleet) -> None:
    result = run("inventory", "ghost", "--timeout", "0.3")
    assert result.exit_code == 1
    assert "no response from ghost" in result.output


# --------------------------------------------------------------------- demo


def test_demo_tour(monkeypatch: pytest.MonkeyPatch) -> None:
    collective = f"demo{uuid.uuid4().hex[:10]}"
    before = {k: v for k, v in os.environ.items() if k.startswith("ORCH_")}
    result = run("demo", "--no-interactive", "-n", "5", "--collective", collective,
                 env=environment(ORCH_COLLECTIVE=collective, ORCH_LOG_LEVEL="warning"))
    assert result.exit_code == 0, result.output
    # The tour's commands get the fleet's settings through the click context; the
    # process's environment is left alone.
    assert {k: v for k, v in os.environ.items() if k.startswith("ORCH_")} == before
    out = result.stdout
    specs = demo_specs(5, 7)
    first = specs[0].identity
    assert "orch demo: 5 simulated nodes serving on memory://" in out
    # The nodes run with the demo's explicit policy: no warning names this machine as a
    # node without one (it used to be the demo's first line).
    assert "WARNING" not in result.output

    # Every step is announced, in order, with its explanation and command line.
    positions = [out.index(f"# {explanation}\n$ orch {command.format(first=first)}\n")
                 for explanation, command in TOUR]
    assert positions == sorted(positions)
    sections = [out[start:end].split("\n", 2)[2]
                for start, end in zip(positions, [*positions[1:], len(out)], strict=True)]
    ping, find, rpc, facts, inventory = sections

    # ping: every node answered.
    for spec in specs:
        assert spec.identity in ping
    assert "5 replies max:" in ping

    # find -F role=web -F environment=production
    wanted = sorted(s.identity for s in specs if s.facts["role"] == "web"
                    and s.facts["environment"] == "production")
    assert [line for line in find.splitlines() if line.strip()] == wanted

    # rpc on a compound selection: replies and a summary, or the no-match message.
    selected = sorted(s.identity for s in specs if s.facts["role"] == "db"
                      and s.facts["datacenter"] in ("ams1", "fra1"))
    if selected:
        assert f"Finished processing {len(selected)} / {len(selected)} hosts" in rpc
        for name in selected:
            assert name in rpc
    else:
        assert "No request sent: no node matching the filter" in result.output

    # facts os.name: each value with its count.
    assert "Report for fact: os.name" in facts
    names: dict[str, int] = {}
    for spec in specs:
        names[spec.facts["os"]["name"]] = names.get(spec.facts["os"]["name"], 0) + 1
    for name, count in names.items():
        assert re.search(rf"^\s+{name}\s+found {count} times$", facts, re.M), facts

    # inventory of the first node.
    assert f"Inventory for {first}:" in inventory
    assert re.search(rf"^\s+role => {specs[0].facts['role']}$", inventory, re.M)


# --------------------------------------------------------------------- bounded filters


@pytest.mark.parametrize(("args", "message"), [
    (["find", "-F", "os_description=~/a{100000}{100000}/"], "at most 1000 repetitions"),
    (["find", "-F", "role=/(?=web)w/"], "lookaround is not supported"),
    (["ping", "-C", "/(a)\\1/"], "backreferences are not supported"),
    (["find", "-I", "/(?<!x)web/"], "identity filter '/(?<!x)web/'"),
    (["rpc", "rpcutil", "ping", "-S", "role=~/a{5000}/ and env=prod"], "invalid regex"),
    (["find", "-S", " or ".join(f"role=r{n}" for n in range(101))], "filter_max_terms"),
    (["find", "-F", "role=" + "w" * 20000], "filter_max_bytes"),
    (["find", "-S", "(" * 40 + "role=web" + " or x)" * 40], "filter_max_depth"),
    # Issue 8: a function nobody installed made every node silent; now the client says so.
    (["find", "-S", "with_class('nginx')"],
     "calls unknown function with_class(); available: fact(), has_agent(), has_class()"),
    (["rpc", "rpcutil", "ping", "-S", "role=web and not nope(1) or has_class('x')"],
     "calls unknown function nope()"),
])
def test_filters_the_fleet_would_refuse_are_usage_errors(args: list[str], message: str) -> None:
    """Issue 18: an operator's mistake is exit 2 naming the term, before anything is sent."""
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert message in result.output


def test_filter_budget_is_a_setting(fleet: Fleet) -> None:
    result = run("find", "-F", "role=web", "-F", "env=prod",
                 env=environment(ORCH_FILTER_MAX_TERMS="1"))
    assert result.exit_code == 2
    assert "more than 1 (filter_max_terms)" in result.output
    result = run("find", "-F", "role=web", "-F", "env=prod")
    assert result.exit_code == 0 and result.stdout.split() == ["web1"]


def test_demo_refuses_an_unreadable_config_file(tmp_path: Path) -> None:
    result = run("demo", "--no-interactive", "--no-tour", "-n", "2", "--config",
                 str(tmp_path / "missing.yaml"))
    assert result.exit_code == 2 and "cannot read config file" in result.output
