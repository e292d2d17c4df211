"""Hostile input on every orch exchange and queue while a normal workload runs (issue 11).

Random bytes (hypothesis) and mutations of real signed requests (a seeded generator, some
re-signed with a valid client certificate, as an insider's would be) are published for
longer than two heartbeat intervals to the collective's request exchange, to every node's
queue and to the workload client's own reply queue — with odd AMQP properties too. Meanwhile
a client pings every node directly and by broadcast. Every daemon must keep its one
connection, and every workload call must be exact: all nodes, once, OK.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from orch_integration import (
    BROKERS,
    Fleet,
    FleetFactory,
    NodeSpec,
    client_security_settings,
)

from orch.testing import wait_until
from orch.transports.kombu import node_queue_name, request_exchange_name

pytestmark = pytest.mark.integration

HEARTBEAT = 1.0
#: Hostile traffic lasts at least this long: more than two heartbeat intervals.
HOSTILE_SECONDS = 3 * HEARTBEAT + 2
SEED = 20261130

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=5),
    max_leaves=20)
ODD_NUMBERS = [float("inf"), float("-inf"), float("nan"), 1e308, -1e308, 10**30, -1, 0,
               2**63, True, "60", None, [], {}]


def _client(fleet: Fleet) -> Any:
    from orch.core.client import Client
    from orch.core.config import load_settings

    return Client(load_settings(None, {"broker": fleet.broker, "collective": fleet.collective,
                                       "timeout": 10.0, **client_security_settings()},
                                environ={}))


class Hostile:
    """Publishes hostile messages to every orch destination of one collective."""

    def __init__(self, fleet: Fleet, reply_queue: str) -> None:
        from kombu import Connection, Exchange, Producer

        self.fleet = fleet
        self.exchange = Exchange(request_exchange_name(fleet.collective), type="topic",
                                 durable=False)
        self.conn = Connection(fleet.broker, connect_timeout=5)
        self.producer = Producer(self.conn.channel())
        self.destinations: list[tuple[Any, str]] = [
            (self.exchange, "agent.rpcutil"), (self.exchange, "agent.no-such-agent"),
            (self.exchange, "#"), ("", reply_queue),
            *(("", node_queue_name(fleet.collective, name)) for name in fleet.alive())]
        self.sent = 0
        self.random = random.Random(SEED)
        self.client = _client(fleet)
        template = self.client.new_request("rpcutil", "ping")
        self.template = json.loads(template.encode())
        self.template["reply_to"] = f"orch.{fleet.collective}.reply.hostile-nobody"

    def close(self) -> None:
        self.client.close()
        self.conn.release()

    def publish(self, payload: bytes, properties: dict[str, Any] | None = None) -> None:
        exchange, key = self.random.choice(self.destinations)
        options: dict[str, Any] = {"content_type": "application/octet-stream",
                                   "content_encoding": "binary"}
        options.update(properties or {})
        self.producer.publish(payload, exchange=exchange, routing_key=key, **options)
        self.sent += 1

    # -- the seeded generator --------------------------------------------------------------

    def mutated(self) -> tuple[bytes, dict[str, Any]]:
        """One mutation of a real request: its JSON, its bytes, or its AMQP properties."""
        rnd = self.random
        body = dict(self.template, id=f"{rnd.getrandbits(64):016x}", time=time.time())
        kind = rnd.randrange(6)
        if kind == 0:  # a field replaced by an odd value, re-signed (an insider)
            body[rnd.choice(sorted(body))] = rnd.choice(ODD_NUMBERS)
        elif kind == 1:  # a field removed, re-signed
            del body[rnd.choice(sorted(body))]
        elif kind == 2:  # a nested bomb in data or filter
            body[rnd.choice(["data", "filter"])] = {"x": [[[[{"y": [1] * 1000}]]]] * 50}
        text = json.dumps(body, allow_nan=True)
        seal = dict(self.client.security.seal("request", text))
        envelope = json.dumps({"v": body.get("v", 2), "kind": "request", "body": text,
                               "security": seal}).encode()
        properties: dict[str, Any] = {}
        if kind == 3:  # bytes flipped: the signature no longer matches
            data = bytearray(envelope)
            for _ in range(rnd.randint(1, 8)):
                data[rnd.randrange(len(data))] = rnd.randrange(256)
            envelope = bytes(data)
        elif kind == 4:  # truncated
            envelope = envelope[:rnd.randrange(len(envelope))]
        elif kind == 5:  # a valid message with hostile properties
            properties = rnd.choice([
                {"headers": {"compression": "application/x-gzip"}},
                {"headers": {"compression": "no-such-codec"}},
                {"content_type": "application/x-python-serialize", "content_encoding": "binary"},
                {"headers": {f"h{i}": "v" * 100 for i in range(200)}},
                {"expiration": 0.001},
            ])
        return envelope, properties


def _workload(fleet: Fleet, stop: threading.Event, problems: list[str],
              calls: list[int], holder: list[Any]) -> None:
    """Direct pings and broadcast pings, each checked to be exact."""
    expected = set(fleet.alive())
    client = _client(fleet)
    try:
        holder.append(client.channel.reply_to)
        while not stop.is_set():
            for result in (client.ping(nodes=sorted(expected)),
                           client.call("rpcutil", "ping", nodes=sorted(expected))):
                replies = set(result.replies)
                if replies != expected or result.failed or result.error or result.unexpected:
                    problems.append(f"inexact: replies {sorted(replies)}, failed "
                                    f"{result.failed}, error {result.error}")
                calls[0] += 1
    except Exception as exc:
        problems.append(f"workload died: {type(exc).__name__}: {exc}")
    finally:
        client.close()


@pytest.fixture(params=sorted(BROKERS))
def hostile_fleet(request: pytest.FixtureRequest,
                  fleet_factory: FleetFactory) -> Iterator[Fleet]:
    specs = [NodeSpec(f"hostile{i}", {"role": "web"}) for i in range(3)]
    yield fleet_factory(BROKERS[request.param], specs, label="hostile",
                        env={"ORCH_HEARTBEAT": str(HEARTBEAT)})


def test_hostile_messages_everywhere_while_a_workload_runs(hostile_fleet: Fleet) -> None:
    fleet = hostile_fleet
    consuming = {name: d.log().count("consuming for") for name, d in fleet.daemons.items()}
    stop = threading.Event()
    problems: list[str] = []
    calls = [0]
    holder: list[Any] = []
    worker = threading.Thread(target=_workload, args=(fleet, stop, problems, calls, holder),
                              daemon=True)
    worker.start()
    wait_until(lambda: holder or not worker.is_alive(), 30, "the workload's first client")
    assert holder, problems
    hostile = Hostile(fleet, holder[0])
    started = time.monotonic()
    try:
        @settings(max_examples=300, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(payload=st.binary(max_size=2048) | JSON_VALUES.map(
            lambda v: json.dumps(v, allow_nan=True).encode()))
        def random_messages(payload: bytes) -> None:
            hostile.publish(payload)

        random_messages()
        hypothesis_sent = hostile.sent
        while time.monotonic() - started < HOSTILE_SECONDS or hostile.sent < 2000:
            hostile.publish(*hostile.mutated())
            if hostile.sent % 50 == 0:
                time.sleep(0.01)  # a steady rate, not one burst
    finally:
        hostile_seconds = time.monotonic() - started
        stop.set()
        worker.join(60)
        hostile.close()
    assert not worker.is_alive(), "the workload hung"
    assert not problems, problems[:5]
    assert calls[0] > 0
    for name, daemon in fleet.daemons.items():
        log = daemon.log()
        assert daemon.running(), f"{name} died:\n{log}"
        assert log.count("consuming for") == consuming[name], f"{name} reconnected:\n{log}"
        assert "Traceback" not in log and "unavailable" not in log, log
    print(f"\nhostile input: {hostile.sent} messages ({hypothesis_sent} from hypothesis, "
          f"{hostile.sent - hypothesis_sent} seeded mutations) over {hostile_seconds:.1f}s "
          f"(heartbeat {HEARTBEAT:g}s); {calls[0]} workload calls, all exact")
