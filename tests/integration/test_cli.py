"""The client commands against five real daemons, on RabbitMQ and on Redis.

Every expectation is computed from the fact and class files the daemons were started with
(:data:`orch_integration.DEFAULT_NODES`), never copied from orch's own output.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from orch_integration import (
    BROKERS,
    CliResult,
    Fleet,
    FleetFactory,
    NodeSpec,
    client_security_settings,
    identity_args,
)

pytestmark = pytest.mark.integration

#: A filter no node matches; nobody will answer, so discovery need not wait its full 2 s.
NO_MATCH = ["-F", "role=nosuchrole", "--discovery-timeout", "1"]


def replies_by_sender(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    senders = [reply["sender"] for reply in document["replies"]]
    assert len(senders) == len(set(senders)), f"duplicate replies: {senders}"
    return {reply["sender"]: reply for reply in document["replies"]}


# --------------------------------------------------------------------------- ping


def test_ping_finds_every_node(fleet: Fleet, run_orch: Callable[..., CliResult]) -> None:
    result = run_orch("ping", "--json")
    assert result.rc == 0, result.describe()
    document = result.json()
    replies = replies_by_sender(document)
    assert set(replies) == set(fleet.alive())
    for reply in replies.values():
        assert reply["status"] == "ok"
        assert reply["statuscode"] == 0
        assert reply["rtt_ms"] > 0
        assert abs(reply["data"]["pong"] - time.time()) < 60
    assert document["missing"] == []
    assert document["error"] is None and document["cut_short"] is None
    assert document["stats"]["responses"] == len(fleet.alive())


def test_ping_text_lists_every_node(fleet: Fleet, run_orch: Callable[..., CliResult]) -> None:
    rc, stdout, stderr = run_orch("ping")
    assert rc == 0, stderr
    named = {line.split()[0] for line in stdout.splitlines() if "time=" in line}
    assert named == set(fleet.alive())
    assert f"{len(fleet.alive())} replies max:" in stdout
    assert "Traceback" not in stderr


def test_a_node_that_answered_before_and_is_gone_is_named(
        fleet_factory: FleetFactory) -> None:
    # Real daemons on RabbitMQ: a broadcast remembers who answered; after one daemon is
    # killed, the next identical ping, discovery and `find` name it (and still exit 0: a
    # broadcast cannot know it should have answered), then it is forgotten.
    # Each command asks its own question (a ping and a discovery without a filter are the
    # same broadcast, and share what they remember).
    specs = [NodeSpec(f"absent{i}-{uuid.uuid4().hex[:4]}", {"role": "web", "tier": "front"})
             for i in range(3)]
    fleet = fleet_factory(BROKERS["rabbitmq"], specs, label="absent")
    victim = specs[2].identity
    commands = (("ping", "--json"), ("rpc", "rpcutil", "ping", "-F", "role=web", "--json"),
                ("find", "-F", "tier=front", "--json"))
    for command in commands:
        result = fleet.run_orch(*command)
        assert result.rc == 0, result.describe()
        assert result.json()["absent"] == []
    fleet.daemons[victim].kill()
    for command in commands:
        result = fleet.run_orch(*command)
        assert result.rc == 0, result.describe()
        document = result.json()
        assert document["absent"] == [victim], command
        answered = (document["nodes"] if command[0] == "find"
                    else [reply["sender"] for reply in document["replies"]])
        assert sorted(answered) == sorted(spec.identity for spec in specs[:2])
    rc, stdout, stderr = fleet.run_orch("ping")
    assert rc == 0 and "did not answer now" not in stdout + stderr


def test_ping_nobody_matches_exits_1(fleet: Fleet) -> None:
    rc, stdout, _ = fleet.run_orch("ping", *NO_MATCH)
    assert rc == 1
    assert "No responses received" in stdout


def test_ping_known_identities(fleet: Fleet) -> None:
    result = fleet.run_orch("ping", "-I", "web1", "-I", "db2", "--json")
    assert result.rc == 0, result.describe()
    document = result.json()
    assert set(replies_by_sender(document)) == {"web1", "db2"}
    assert document["expected"] == ["db2", "web1"]
    assert document["missing"] == []
    assert document["stats"]["discovery_ms"] == 0  # addressed directly, no discovery


def test_ping_honours_timeout(fleet: Fleet) -> None:
    result = fleet.run_orch("ping", "-I", "web1", "-I", "ghost-node", "--timeout", "4")
    assert result.rc == 1
    assert result.elapsed >= 4, f"gave up on ghost-node after {result.elapsed:.1f}s, not 4s"


def test_ping_nodes_file(fleet: Fleet, tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.txt"
    nodes.write_text("# the databases\ndb1\n\ndb2   # second one\ncache1\n")
    result = fleet.run_orch("ping", "--nodes", str(nodes), "--json")
    assert result.rc == 0, result.describe()
    document = result.json()
    assert set(replies_by_sender(document)) == {"db1", "db2", "cache1"}
    assert document["expected"] == ["cache1", "db1", "db2"]


def test_ping_nodes_stdin(fleet: Fleet) -> None:
    result = fleet.run_orch("ping", "--nodes", "-", "--json", input="web2\ncache1\n")
    assert result.rc == 0, result.describe()
    assert set(replies_by_sender(result.json())) == {"web2", "cache1"}


def test_nodes_file_cannot_be_combined_with_a_filter(fleet: Fleet) -> None:
    rc, _, stderr = fleet.run_orch("ping", "--nodes", "-", "-F", "role=web", input="web1\n")
    assert rc == 2
    assert "--nodes" in stderr


# --------------------------------------------------------------------------- filters

Predicate = Callable[[NodeSpec], bool]

FILTER_CASES: list[tuple[str, list[str], Predicate]] = [
    ("fact-equal", ["-F", "role=web"], lambda n: n.fact("role") == "web"),
    ("fact-numeric", ["-F", "cores>4"], lambda n: n.fact("cores") > 4),
    ("fact-numeric-le", ["-F", "cores<=6"], lambda n: n.fact("cores") <= 6),
    ("fact-nested", ["-F", "os.family=Debian"], lambda n: n.fact("os.family") == "Debian"),
    ("fact-regex", ["-F", "role=/^we/"], lambda n: n.fact("role").startswith("we")),
    ("fact-not-equal", ["-F", "role!=db"], lambda n: n.fact("role") != "db"),
    ("facts-and", ["-F", "env=prod", "-F", "datacenter=ams"],
     lambda n: n.fact("env") == "prod" and n.fact("datacenter") == "ams"),
    ("class", ["-C", "monitoring"], lambda n: "monitoring" in n.classes),
    ("class-regex", ["-C", "/^role::(db|cache)$/"],
     lambda n: "role::db" in n.classes or "role::cache" in n.classes),
    ("identity", ["-I", "db1"], lambda n: n.identity == "db1"),
    ("identity-regex", ["-I", "/^web/"], lambda n: n.identity.startswith("web")),
    ("identity-any-of", ["-I", "/^web/", "-I", "cache1"],
     lambda n: n.identity.startswith("web") or n.identity == "cache1"),
    ("agent", ["-A", "rpcutil"], lambda n: True),
    ("with", ["-W", "role=web monitoring"],
     lambda n: n.fact("role") == "web" and "monitoring" in n.classes),
    ("compound", ["-S", "(role=web or role=db) and not env=dev"],
     lambda n: n.fact("role") in ("web", "db") and n.fact("env") != "dev"),
    ("compound-functions", ["-S", "cores >= 6 and has_class('monitoring') and not role=db"],
     lambda n: n.fact("cores") >= 6 and "monitoring" in n.classes and n.fact("role") != "db"),
    ("mixed-kinds", ["-F", "env=prod", "-C", "/^role::/", "-I", "/^(web|db)/"],
     lambda n: n.fact("env") == "prod" and n.identity.startswith(("web", "db"))),
]


@pytest.mark.parametrize(("args", "predicate"), [c[1:] for c in FILTER_CASES],
                         ids=[c[0] for c in FILTER_CASES])
def test_rpc_filter_selects_expected_nodes(
    fleet: Fleet, args: list[str], predicate: Predicate
) -> None:
    expected = fleet.select(predicate)
    assert expected, "a filter case must select someone"
    assert expected != set(fleet.alive()) or args == ["-A", "rpcutil"], \
        "a filter case must leave someone out"
    result = fleet.run_orch("rpc", "rpcutil", "get_fact", "fact=role", *args, "--json")
    assert result.rc == 0, result.describe()
    document = result.json()
    replies = replies_by_sender(document)
    assert set(replies) == expected
    for name, reply in replies.items():
        assert reply["status"] == "ok"
        assert reply["data"] == {"fact": "role", "value": fleet.spec(name).fact("role")}
    assert sorted(document["expected"]) == sorted(expected)
    assert document["missing"] == []
    assert document["stats"]["discovered"] == len(expected)


def test_rpc_nothing_matches(fleet: Fleet) -> None:
    rc, _, stderr = fleet.run_orch("rpc", "rpcutil", "ping", *NO_MATCH)
    assert rc == 1
    assert "no node matching the filter hosts agent 'rpcutil'" in stderr.lower()


@pytest.mark.parametrize("command", [
    pytest.param(["rpc", "rpcutil", "ping", "--json"], id="rpc-json"),
    pytest.param(["facts", "role"], id="facts"),
    pytest.param(["facts", "role", "--json"], id="facts-json"),
    pytest.param(["find", "--json"], id="find-json"),
    pytest.param(["ping", "--json"], id="ping-json"),
])
def test_nothing_matches_exits_1_in_every_form(fleet: Fleet, command: list[str]) -> None:
    """The exit code must not depend on the command or on --json: no node matched is 1."""
    result = fleet.run_orch(*command, *NO_MATCH)
    assert "Traceback" not in result.stderr
    if "--json" in command:
        document = result.json()
        assert not document.get("replies") and not document.get("nodes") \
            and not document.get("values")
    assert result.rc == 1, result.describe()


@pytest.mark.parametrize("bad", ["role=/[unclosed/", "noop", "=web"])
def test_bad_fact_filter_is_a_usage_error(fleet: Fleet, bad: str) -> None:
    rc, _, stderr = fleet.run_orch("find", "-F", bad)
    assert rc == 2
    assert bad in stderr
    assert "Traceback" not in stderr


def test_bad_compound_filter_is_a_usage_error(fleet: Fleet) -> None:
    rc, _, stderr = fleet.run_orch("find", "-S", "(role=web or")
    assert rc == 2
    assert "role=web or" in stderr
    assert "Traceback" not in stderr


# --------------------------------------------------------------------------- find


def test_find_prints_matching_identities(fleet: Fleet) -> None:
    rc, stdout, stderr = fleet.run_orch("find", "-F", "os.family=Debian")
    assert rc == 0, stderr
    expected = fleet.select(lambda n: n.fact("os.family") == "Debian")
    assert stdout.splitlines() == sorted(expected)


def test_find_json(fleet: Fleet) -> None:
    result = fleet.run_orch("find", "-C", "postgresql", "--json")
    assert result.rc == 0, result.describe()
    assert result.json() == {"nodes": sorted(fleet.select(lambda n: "postgresql" in n.classes)),
                             "cut_short": None, "absent": []}


def test_find_everything(fleet: Fleet) -> None:
    rc, stdout, _ = fleet.run_orch("find")
    assert rc == 0
    assert stdout.splitlines() == fleet.alive()


def test_find_by_identity_checks_the_node_exists(fleet: Fleet) -> None:
    rc, stdout, _ = fleet.run_orch("find", "-I", "web1", "-I", "nosuchnode")
    assert stdout.splitlines() == ["web1"]
    assert rc == 0
    rc, stdout, _ = fleet.run_orch("find", "-I", "nosuchnode")
    assert stdout.strip() == ""
    assert rc == 1


def test_find_nothing_exits_1(fleet: Fleet) -> None:
    rc, stdout, _ = fleet.run_orch("find", "-F", "datacenter=nowhere", "--discovery-timeout", "1")
    assert rc == 1
    assert stdout.strip() == ""


# --------------------------------------------------------------------------- facts


def expected_fact_groups(fleet: Fleet, fact: str) -> dict[Any, list[str]]:
    groups: dict[Any, list[str]] = {}
    for name in fleet.alive():
        groups.setdefault(fleet.spec(name).fact(fact), []).append(name)
    return groups


def test_facts_text_counts(fleet: Fleet) -> None:
    rc, stdout, stderr = fleet.run_orch("facts", "role")
    assert rc == 0, stderr
    assert "Report for fact: role" in stdout
    counts = {m.group(1): int(m.group(2))
              for m in re.finditer(r"^\s+(\S+)\s+found (\d+) times$", stdout, re.M)}
    assert counts == {value: len(names)
                      for value, names in expected_fact_groups(fleet, "role").items()}
    assert f"Finished processing {len(fleet.alive())} / {len(fleet.alive())} hosts" in stdout


def test_facts_verbose_lists_nodes(fleet: Fleet) -> None:
    rc, stdout, stderr = fleet.run_orch("facts", "role", "-v")
    assert rc == 0, stderr
    listed: dict[str, list[str]] = {}
    current = ""
    for line in stdout.splitlines():
        found = re.match(r"^\s+(\S+)\s+found \d+ times$", line)
        if found:
            current = found.group(1)
            listed[current] = []
        elif current and re.match(r"^ {12}\S+$", line):
            listed[current].append(line.strip())
        elif not line.strip():
            current = ""
    assert listed == {value: sorted(names)
                      for value, names in expected_fact_groups(fleet, "role").items()}


def test_facts_json_nested_fact(fleet: Fleet) -> None:
    result = fleet.run_orch("facts", "os.family", "--json")
    assert result.rc == 0, result.describe()
    document = result.json()
    assert document["fact"] == "os.family"
    got = {v["value"]: (v["count"], sorted(v["nodes"])) for v in document["values"]}
    assert got == {value: (len(names), sorted(names))
                   for value, names in expected_fact_groups(fleet, "os.family").items()}
    counts = [v["count"] for v in document["values"]]
    assert counts == sorted(counts, reverse=True)
    assert document["missing"] == [] and document["failed"] == []
    assert document["error"] is None


def test_facts_json_numeric_values_stay_numbers(fleet: Fleet) -> None:
    result = fleet.run_orch("facts", "cores", "--json", "-F", "role=db")
    assert result.rc == 0, result.describe()
    got = {v["value"]: v["nodes"] for v in result.json()["values"]}
    assert got == {fleet.spec("db1").fact("cores"): ["db1"],
                   fleet.spec("db2").fact("cores"): ["db2"]}


# --------------------------------------------------------------------------- inventory


def test_inventory_text(fleet: Fleet) -> None:
    spec = fleet.spec("db1")
    rc, stdout, stderr = fleet.run_orch("inventory", "db1")
    assert rc == 0, stderr
    assert "Inventory for db1:" in stdout
    assert f"collective:   {fleet.collective}" in stdout
    lines = [line.strip() for line in stdout.splitlines()]
    agents = lines[lines.index("Agents:") + 1:lines.index("Classes:")]
    assert "rpcutil" in agents
    classes = lines[lines.index("Classes:") + 1:lines.index("Facts:")]
    assert [c for c in classes if c] == sorted(spec.classes)
    for fact in ("role", "env", "datacenter", "cores", "os.family"):
        assert f"{fact} => {spec.fact(fact)}" in lines


def test_inventory_json(fleet: Fleet) -> None:
    spec = fleet.spec("cache1")
    result = fleet.run_orch("inventory", "cache1", "--json")
    assert result.rc == 0, result.describe()
    replies = replies_by_sender(result.json())
    assert set(replies) == {"cache1"}
    data = replies["cache1"]["data"]
    assert "rpcutil" in data["agents"]
    assert data["classes"] == sorted(spec.classes)
    for key, value in spec.facts.items():
        assert data["facts"][key] == value
    assert data["main_collective"] == fleet.collective
    assert data["stats"]["pid"] == fleet.daemons["cache1"].pid


def test_inventory_of_unknown_node(fleet: Fleet) -> None:
    rc, _, stderr = fleet.run_orch("inventory", "nosuchnode", "--timeout", "1")
    assert rc == 1
    assert "nosuchnode" in stderr
    assert "Traceback" not in stderr


# --------------------------------------------------------------------------- rpc


def test_rpc_ping_json(fleet: Fleet) -> None:
    result = fleet.run_orch("rpc", "rpcutil", "ping", "--json")
    assert result.rc == 0, result.describe()
    document = result.json()
    replies = replies_by_sender(document)
    assert set(replies) == set(fleet.alive())
    assert all(r["status"] == "ok" and isinstance(r["data"]["pong"], float)
               for r in replies.values())
    assert document["agent"] == "rpcutil" and document["action"] == "ping"
    assert document["stats"]["ok"] == len(fleet.alive())
    assert document["stats"]["failed"] == 0


def test_rpc_text_output(fleet: Fleet) -> None:
    rc, stdout, stderr = fleet.run_orch("rpc", "rpcutil", "get_fact", "fact=datacenter",
                                        *identity_args(["web1", "web2"]))
    assert rc == 0, stderr
    assert re.search(r"^web1\n\s+Fact: datacenter\n\s+Value: ams$", stdout, re.M), stdout
    assert re.search(r"^web2\n\s+Fact: datacenter\n\s+Value: fra$", stdout, re.M), stdout
    assert "Finished processing 2 / 2 hosts" in stdout


def test_rpc_daemon_stats(fleet: Fleet) -> None:
    result = fleet.run_orch("rpc", "rpcutil", "daemon_stats", "--json")
    assert result.rc == 0, result.describe()
    replies = replies_by_sender(result.json())
    assert set(replies) == set(fleet.alive())
    for name, reply in replies.items():
        stats = reply["data"]
        assert stats["pid"] == fleet.daemons[name].pid
        for counter in ("total", "passed", "filtered", "replies", "failed", "dropped",
                        "ttlexpired"):
            assert isinstance(stats[counter], int) and stats[counter] >= 0, counter
        # This very request was received and passed the filter; readiness pings were
        # answered before it.
        assert stats["total"] >= stats["passed"] >= 2
        assert stats["replies"] >= 1
        assert stats["agents"]["rpcutil"] >= 2
        assert stats["uptime"] > 0


def test_rpc_unknown_action(fleet: Fleet) -> None:
    rc, _, stderr = fleet.run_orch("rpc", "rpcutil", "nosuchaction")
    assert rc == 2
    assert "nosuchaction" in stderr
    assert "Traceback" not in stderr


def test_rpc_unknown_argument(fleet: Fleet) -> None:
    rc, _, stderr = fleet.run_orch("rpc", "rpcutil", "get_fact", "fact=role", "colour=blue")
    assert rc == 2
    assert "colour" in stderr
    assert "Traceback" not in stderr


def test_rpc_missing_required_argument(fleet: Fleet) -> None:
    rc, _, stderr = fleet.run_orch("rpc", "rpcutil", "get_fact")
    assert rc == 2
    assert "'fact'" in stderr
    assert "Traceback" not in stderr


def test_rpc_argument_without_value(fleet: Fleet) -> None:
    rc, _, stderr = fleet.run_orch("rpc", "rpcutil", "get_fact", "fact")
    assert rc == 2
    assert "name=value" in stderr


def test_rpc_argument_too_long(fleet: Fleet) -> None:
    rc, _, stderr = fleet.run_orch("rpc", "rpcutil", "get_fact", "fact=" + "x" * 201)
    assert rc == 2
    assert "'fact'" in stderr


def test_rpc_argument_fails_ddl_validation(fleet: Fleet) -> None:
    """rpcutil's DDL says ``fact`` must match ``^[\\w\\-\\.]+$``; "a b;c" does not."""
    rc, _, stderr = fleet.run_orch("rpc", "rpcutil", "get_fact", "fact=a b;c", "-I", "web1")
    assert rc == 2, stderr
    assert "'fact'" in stderr


@pytest.mark.parametrize(
    ("action", "data", "status", "named"),
    [
        ("get_fact", {"fact": 123}, 4, "'fact'"),            # wrong type: invalid data
        ("get_fact", {}, 3, "'fact'"),                       # required input missing
        ("get_fact", {"fact": "role", "extra": 1}, 4, "extra"),  # unknown input
        ("get_fact", {"fact": "a b;c"}, 4, "'fact'"),        # fails the DDL validation
        ("no_such_action", {}, 2, "no_such_action"),         # unknown action
    ],
    ids=["wrong-type", "missing", "unknown-input", "invalid", "unknown-action"],
)
def test_server_checks_requests_the_client_did_not(
    fleet: Fleet, action: str, data: dict[str, Any], status: int, named: str
) -> None:
    """A client without rpcutil's DDL sends whatever it is given; the node still refuses it."""
    from orch.core.client import Client
    from orch.core.config import load_settings

    settings = load_settings(None, {"broker": fleet.broker, "collective": fleet.collective,
                                    **client_security_settings()}, environ={})
    with Client(settings) as client:
        request = client.new_request("rpcutil", action, data)
        result = client.send_direct(request, ["web1"], timeout=10)
    assert result.error is None
    assert set(result.replies) == {"web1"}, result
    reply = result.replies["web1"]
    assert int(reply.statuscode) == status, reply
    assert named in reply.statusmsg
    assert dict(reply.data) == {}


def test_a_direct_request_is_one_publish_on_rabbitmq_and_one_per_node_elsewhere(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RabbitMQ copies one publish to every named node's queue (its BCC header); Redis gets
    one publish per node. Either way every node answers exactly once."""
    from orch.core.client import Client
    from orch.core.config import load_settings
    from orch.transports import kombu_client
    from orch.transports.kombu import node_queue_name

    published: list[tuple[str, tuple[str, ...]]] = []
    send = kombu_client.KombuClientChannel._send

    def counted(self: kombu_client.KombuClientChannel, sent: Any) -> None:
        published.append((sent.routing_key, sent.copies))
        send(self, sent)

    monkeypatch.setattr(kombu_client.KombuClientChannel, "_send", counted)
    nodes = sorted(fleet.alive())
    settings = load_settings(None, {"broker": fleet.broker, "collective": fleet.collective,
                                    **client_security_settings()}, environ={})
    with Client(settings) as client:
        result = client.ping(nodes=nodes)
    assert sorted(result.replies) == nodes and not result.missing
    prefix = node_queue_name(fleet.collective, "")
    named = sorted(queue.removeprefix(prefix) for key, copies in published
                   for queue in (key, *copies))
    assert named == nodes  # every node named once, none twice
    rabbitmq = fleet.broker.startswith("amqp")
    assert len(published) == (1 if rabbitmq else len(nodes))
