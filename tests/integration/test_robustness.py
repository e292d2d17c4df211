"""Daemons that die, and garbage on the request exchange, on RabbitMQ and on Redis."""

from __future__ import annotations

import functools
import json
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from orch_integration import (
    BROKERS,
    Fleet,
    FleetFactory,
    NodeSpec,
    client_security_settings,
    identity_args,
)

from orch.core.protocol import PROTOCOL_VERSION
from orch.testing import wait_until
from orch.transports.kombu import node_queue_name

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- a dead node


def test_killed_node_is_reported_missing(fleet: Fleet) -> None:
    victim_name = f"victim-{uuid.uuid4().hex[:6]}"
    [victim] = fleet.add([NodeSpec(victim_name, {"role": "web", "env": "prod"}, ("base",))])
    victim.kill()
    others = fleet.alive()
    everyone = [*others, victim_name]

    result = fleet.run_orch("rpc", "rpcutil", "ping", *identity_args(everyone), "--json",
                            "--timeout", "2")
    assert result.rc == 1, result.describe()
    document = result.json()
    replies = {reply["sender"]: reply for reply in document["replies"]}
    assert set(replies) == set(others)
    assert all(reply["status"] == "ok" for reply in replies.values())
    assert document["missing"] == [victim_name]
    assert sorted(document["expected"]) == sorted(everyone)
    assert document["stats"]["missing"] == 1
    assert document["error"] is None


def test_killed_node_text_report(fleet: Fleet, tmp_path: Path) -> None:
    victim_name = f"victim-{uuid.uuid4().hex[:6]}"
    [victim] = fleet.add([NodeSpec(victim_name, {"role": "db"}, ())])
    victim.kill()
    nodes = tmp_path / "nodes.txt"
    nodes.write_text("\n".join([*fleet.alive(), victim_name]) + "\n")

    rc, stdout, stderr = fleet.run_orch("rpc", "rpcutil", "ping", "--nodes", str(nodes),
                                        "--timeout", "2")
    assert rc == 1, stderr
    assert f"Finished processing {len(fleet.alive())} / {len(fleet.alive()) + 1} hosts" \
        in stdout
    missing_block = stdout.split("No response from 1 node(s):", 1)
    assert len(missing_block) == 2, stdout
    assert missing_block[1].split() == [victim_name]

    rc, stdout, _ = fleet.run_orch("ping", "--nodes", str(nodes))
    assert rc == 1
    answered = {line.split()[0] for line in stdout.splitlines() if "time=" in line}
    assert answered == set(fleet.alive())
    assert stdout.split("No response from 1 node(s):", 1)[1].split() == [victim_name]


# --------------------------------------------------------------------------- reload


@pytest.mark.parametrize("broker", sorted(BROKERS))
def test_sighup_reloads_facts_and_classes(fleet_factory: FleetFactory, broker: str) -> None:
    fleet = fleet_factory(BROKERS[broker], [NodeSpec("reloader", {"role": "old"}, ("before",))],
                          label="reload")
    daemon = fleet.daemons["reloader"]
    rc, stdout, _ = fleet.run_orch("find", "-F", "role=old", "-C", "before")
    assert (rc, stdout.split()) == (0, ["reloader"])

    daemon.facts_file.write_text("role: new\n")
    daemon.classes_file.write_text("after\n")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)

    def reloaded() -> bool:
        rc, stdout, _ = fleet.run_orch("find", "-F", "role=new", "-C", "after")
        return rc == 0 and stdout.split() == ["reloader"]

    wait_until(reloaded, 20, "the daemon to serve its new facts after SIGHUP")
    assert daemon.running()
    rc, stdout, _ = fleet.run_orch("find", "-C", "before", "--discovery-timeout", "1")
    assert (rc, stdout.strip()) == (1, "")
    result = fleet.run_orch("inventory", "reloader", "--json")
    assert result.rc == 0, result.describe()
    data = result.json()["replies"][0]["data"]
    assert data["facts"]["role"] == "new"
    assert data["classes"] == ["after"]


# --------------------------------------------------------------------------- garbage


@dataclass(frozen=True)
class Garbage:
    """One hostile message and the counter it must move on each node that receives it."""

    name: str
    payload: bytes
    counter: str  # "dropped", "ttlexpired" or "filtered"


def _request(collective: str, **changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "v": PROTOCOL_VERSION, "agent": "rpcutil", "action": "ping", "collective": collective,
        "sender": "integration-test", "caller": "user=integration", "reply_to":
        f"orch.{collective}.reply.nobody-listens", "data": {}, "filter": {}, "targets": None,
        "ttl": 60, "time": time.time(), "id": uuid.uuid4().hex,
    }
    request.update(changes)
    return request


@functools.cache
def _signer() -> Any:
    """The session's client certificate, so hostile-but-signed messages reach the checks
    after the signature (time window, replay, filter), as an insider's would."""
    from orch.core.config import load_settings
    from orch.core.plugins import default_registry

    settings = load_settings(None, client_security_settings(), environ={})
    return default_registry().security_for(settings)


def _envelope(body: Any, /, **changes: Any) -> bytes:
    text = body if isinstance(body, str) else json.dumps(body)
    envelope: dict[str, Any] = {"v": PROTOCOL_VERSION, "kind": "request", "body": text,
                                "security": dict(_signer().seal("request", text))}
    envelope.update(changes)
    return json.dumps(envelope).encode()


def garbage(collective: str) -> list[Garbage]:
    req = _request
    no_match = {"fact": "role", "operator": "==", "value": "no-such-role"}
    replayed = _envelope(req(collective, filter={"fact": [no_match]}))
    return [
        Garbage("binary", b"\x00\xff\xfe not json at all \x80", "dropped"),
        Garbage("empty", b"", "dropped"),
        Garbage("json-array", b"[1, 2, 3]", "dropped"),
        Garbage("json-string", b'"a request, honest"', "dropped"),
        Garbage("deep-json", b"[" * 100_000 + b"]" * 100_000, "dropped"),
        Garbage("envelope-version-1", _envelope(req(collective), v=1), "dropped"),
        Garbage("envelope-version-3", _envelope(req(collective), v=3), "dropped"),
        Garbage("body-version-1", _envelope(req(collective, v=1)), "dropped"),
        Garbage("envelope-no-version", json.dumps(
            {"kind": "request", "body": json.dumps(req(collective))}).encode(), "dropped"),
        Garbage("envelope-kind-reply", _envelope(req(collective), kind="reply"), "dropped"),
        Garbage("envelope-body-object", _envelope("x", body={"agent": "rpcutil"}), "dropped"),
        Garbage("envelope-security-list", _envelope(req(collective), security=[]), "dropped"),
        Garbage("unsigned", _envelope(req(collective), security={}), "dropped"),
        Garbage("signature-of-another-body", _envelope(req(collective), body=json.dumps(
            req(collective, agent="rpcutil", action="daemon_stats"))), "dropped"),
        Garbage("body-not-json", _envelope("this is no request"), "dropped"),
        Garbage("body-json-list", _envelope("[]"), "dropped"),
        Garbage("body-missing-fields", _envelope({"v": PROTOCOL_VERSION, "agent": "rpcutil"}),
                "dropped"),
        Garbage("body-targets-missing", _envelope({
            k: v for k, v in req(collective).items() if k != "targets"}), "dropped"),
        Garbage("body-targets-empty", _envelope(req(collective, targets=[])), "dropped"),
        Garbage("body-targets-not-names", _envelope(req(collective, targets=[{"a": 1}])),
                "dropped"),
        Garbage("direct-for-another-node", _envelope(req(collective, targets=["no-such-node"])),
                "dropped"),
        Garbage("direct-for-many-others", _envelope(req(
            collective, targets=[f"node{i}" for i in range(10_000)])), "dropped"),
        Garbage("body-bad-agent-name", _envelope(req(collective, agent="../../etc")),
                "dropped"),
        Garbage("body-filter-not-object", _envelope(req(collective, filter=["x"])), "dropped"),
        Garbage("body-filter-terms-not-list",
                _envelope(req(collective, filter={"fact": "role=web"})), "dropped"),
        Garbage("body-ttl-negative", _envelope(req(collective, ttl=-5)), "dropped"),
        Garbage("body-ttl-bool", _envelope(req(collective, ttl=True)), "dropped"),
        Garbage("wrong-collective", _envelope(req(collective + "-other")), "dropped"),
        Garbage("from-the-future", _envelope(req(collective, time=time.time() + 3600)),
                "dropped"),
        Garbage("expired", _envelope(req(collective, time=time.time() - 3600, ttl=60)),
                "ttlexpired"),
        # Over the filter budget (issue 18): refused unevaluated, counted as dropped.
        Garbage("huge-filter", _envelope(req(collective, filter={"fact": [no_match] * 20_000})),
                "dropped"),
        Garbage("deep-compound", _envelope(req(
            collective, filter={"compound": ["(" * 5_000 + "role=web" + ")" * 5_000]})),
                "filtered"),
        Garbage("unknown-filter-kind", _envelope(req(collective, filter={"astrology": ["leo"]})),
                "filtered"),
        Garbage("malformed-fact-term", _envelope(req(
            collective, filter={"fact": [{"fact": "role", "operator": "~~", "value": 1}]})),
                "filtered"),
        # The same request id twice: the first is judged normally (filtered out here), the
        # copy is a replay.
        Garbage("replay-original", replayed, "filtered"),
        Garbage("replay-copy", replayed, "dropped"),
    ]


COUNTERS = ("dropped", "ttlexpired", "filtered")


def daemon_stats(fleet: Fleet, names: list[str]) -> dict[str, dict[str, Any]]:
    result = fleet.run_orch("rpc", "rpcutil", "daemon_stats", *identity_args(names), "--json",
                            "--timeout", "10")
    assert result.rc == 0, result.describe()
    return {reply["sender"]: reply["data"] for reply in result.json()["replies"]}


def publish(fleet: Fleet, messages: list[tuple[str, bytes]]) -> None:
    """Publish raw bytes with kombu, as anyone could: ``agent.*`` keys on the collective's
    request exchange (broadcasts), anything else to that queue by name (direct requests)."""
    from kombu import Connection, Exchange, Producer

    exchange = Exchange(f"orch.{fleet.collective}.requests", type="topic", durable=False)
    with Connection(fleet.broker, connect_timeout=5) as conn:
        producer = Producer(conn.channel())
        for routing_key, payload in messages:
            target = exchange if routing_key.startswith("agent.") else ""
            producer.publish(payload, exchange=target, routing_key=routing_key,
                             content_type="application/octet-stream",
                             content_encoding="binary", declare=[exchange])


def test_garbage_on_the_request_exchange(fleet: Fleet) -> None:
    names = fleet.alive()
    target = "db2"
    before = daemon_stats(fleet, names)
    messages = garbage(fleet.collective)
    direct = garbage(fleet.collective)  # fresh request ids: not replays of the broadcast ones
    publish(fleet, [("agent.rpcutil", g.payload) for g in messages]
            + [(node_queue_name(fleet.collective, target), g.payload) for g in direct])

    # Every daemon still answers, to a broadcast and to a direct request.
    result = fleet.run_orch("ping", "--json")
    assert result.rc == 0, result.describe()
    assert {reply["sender"] for reply in result.json()["replies"]} == set(names)
    after = daemon_stats(fleet, names)
    assert set(after) == set(names)

    for name in names:
        assert fleet.daemons[name].running(), f"{name} died"
        copies = 2 if name == target else 1
        assert after[name]["pid"] == before[name]["pid"]
        for counter in COUNTERS:
            sent = sum(copies for g in messages if g.counter == counter)
            grown = after[name][counter] - before[name][counter]
            assert grown == sent, (
                f"{name}: {counter} grew by {grown}, expected {sent} "
                f"(before {before[name][counter]}, after {after[name][counter]})")
        assert after[name]["total"] - before[name]["total"] >= copies * len(messages)
        assert after[name]["failed"] == before[name]["failed"]
