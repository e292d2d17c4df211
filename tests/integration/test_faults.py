"""Faults a fleet must live through: a dropped connection, a killed node on Redis, and nodes
killed in the middle of a call (issue 11)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest
from orch_integration import (
    BROKERS,
    DEFAULT_NODES,
    FleetFactory,
    NodeSpec,
    clean_environment,
    client_security,
    client_security_settings,
    identity_args,
    orch_argv,
)
from private_brokers import PrivateRabbitMQ

from orch.testing import wait_until
from orch.transports.kombu import node_queue_name, request_exchange_name

pytestmark = pytest.mark.integration


def _client(broker: str, collective: str) -> object:
    from orch.core.client import Client
    from orch.core.config import load_settings

    settings = load_settings(None, {"broker": broker, "collective": collective,
                                    **client_security_settings()}, environ={})
    return Client(settings)


def _queues(broker: PrivateRabbitMQ) -> dict[str, tuple[int, int]]:
    """``{queue: (messages, consumers)}`` as the broker reports them."""
    listing = broker.ctl("list_queues", "-q", "name", "messages", "consumers").stdout
    rows = (line.split("\t") for line in listing.splitlines())
    return {row[0]: (int(row[1]), int(row[2])) for row in rows
            if len(row) == 3 and row[1].isdigit() and row[2].isdigit()}


def test_node_queue_survives_a_dropped_connection(
    private_rabbitmq: PrivateRabbitMQ, fleet_factory: FleetFactory
) -> None:
    """A request sent while a daemon is disconnected waits in its queue and is answered
    when the daemon reconnects (the queue was auto-deleted before: lost with the request)."""
    from orch.core.client import Client

    broker = private_rabbitmq
    fleet = fleet_factory(broker.url, DEFAULT_NODES[:1], label="requeue")
    [daemon] = fleet.daemons.values()
    queue = node_queue_name(fleet.collective, daemon.identity)
    consuming = daemon.log().count("consuming for")

    os.kill(daemon.pid, signal.SIGSTOP)  # it cannot reconnect until SIGCONT
    try:
        closed = broker.ctl("close_all_connections", "fault injection")
        assert closed.returncode == 0, closed.stderr
        wait_until(lambda: _queues(broker).get(queue) == (0, 0), 20,
                 "the node queue to be left, empty, without a consumer")
        with _client(broker.url, fleet.collective) as client:
            assert isinstance(client, Client)
            request, payloads = client.addressed(
                client.new_request("rpcutil", "ping"), [daemon.identity])
            started = time.monotonic()
            for targets, payload in payloads:
                for identity in targets:
                    client.channel.direct(identity, payload, request.ttl)
            wait_until(lambda: _queues(broker).get(queue) == (1, 0), 20,
                     "the request to wait in the queue of the disconnected daemon")
            os.kill(daemon.pid, signal.SIGCONT)
            result = client.collect(request, [daemon.identity], 30, started=started)
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    assert set(result.replies) == {daemon.identity}, (result.missing, result.error,
                                                      daemon.log())
    assert result.replies[daemon.identity].ok
    wait_until(lambda: daemon.log().count("consuming for") > consuming, 10,
             "the daemon to log its reconnect")
    print(f"\nqueued request answered {time.monotonic() - started:.2f}s after it was "
          "sent to a disconnected daemon")


def test_redis_sweeps_the_queue_of_a_killed_node(fleet_factory: FleetFactory) -> None:
    """A node killed without a clean shutdown stops collecting broadcasts once its liveness
    key lapsed and a peer swept it (issue 11, item 7)."""
    import redis

    url = BROKERS["redis"]
    expiry = 2.0
    specs = [NodeSpec(f"sweep{i}-{uuid.uuid4().hex[:4]}", {"role": "web"}) for i in range(2)]
    fleet = fleet_factory(url, specs, label="sweep",
                          env={"ORCH_QUEUE_EXPIRY": str(expiry)})
    victim, survivor = (fleet.daemons[s.identity] for s in specs)
    victim.kill()
    queue = node_queue_name(fleet.collective, victim.identity)
    table = f"_kombu.binding.{request_exchange_name(fleet.collective)}"
    client = redis.Redis.from_url(url)
    try:
        def bound() -> bool:
            return any(queue in m.decode() for m in client.smembers(table))

        assert bound(), "the killed node's binding should still be there right after"
        killed = time.monotonic()
        # Broadcasts go on while nobody serves the victim; it must stop collecting them.
        wait_until(lambda: fleet.run_orch("ping", timeout=30).rc == 0 and not bound(),
                 10 * expiry + 30, "the killed node's binding to be swept")
        swept_after = time.monotonic() - killed
        for _ in range(3):
            result = fleet.run_orch("ping", "--json", timeout=30)
            assert result.rc == 0, result.describe()
            assert {r["sender"] for r in result.json()["replies"]} == {survivor.identity}
        assert client.llen(queue) == 0, "broadcasts still pile up for the killed node"
    finally:
        client.close()
    print(f"\nkilled node's queue swept {swept_after:.1f}s after the kill "
          f"(queue_expiry {expiry:g}s)")


def test_nodes_killed_during_a_call_are_reported_missing(
    fleet_factory: FleetFactory,
) -> None:
    """10% of the daemons die in the middle of an RPC: they are listed as no response, the
    others succeed, and the call ends within its timeout."""
    specs = [NodeSpec(f"loss{i:02d}", {"role": "web"}) for i in range(10)]
    fleet = fleet_factory(BROKERS["rabbitmq"], specs, label="loss", log_level="debug")
    victims = [fleet.daemons["loss03"]]
    for victim in victims:  # cannot answer before the kill: the kill lands mid-call
        os.kill(victim.pid, signal.SIGSTOP)
    timeout = 8.0
    proc = subprocess.Popen(
        [*orch_argv(), "rpc", "rpcutil", "ping", *identity_args(sorted(fleet.daemons)),
         "--json", "--timeout", str(timeout)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env=clean_environment({**client_security(), "ORCH_BROKER": fleet.broker,
                               "ORCH_COLLECTIVE": fleet.collective}))
    try:
        # The others' replies come first: the call is under way when the victims die.
        wait_until(lambda: all("running rpcutil.ping" in d.log() or d in victims
                             for d in fleet.daemons.values()) or proc.poll() is not None,
                 20, "the live daemons to run the ping", interval=0.05)
        for victim in victims:
            victim.kill()
        stdout, stderr = proc.communicate(timeout=timeout + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    import json

    document = json.loads(stdout)
    report = f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert proc.returncode == 1, report
    assert document["missing"] == [v.identity for v in victims], report
    answered = {r["sender"] for r in document["replies"]}
    assert answered == set(fleet.daemons) - {v.identity for v in victims}, report
    assert all(r["status"] == "ok" for r in document["replies"]), report
    assert document["error"] is None, report
