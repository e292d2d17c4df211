"""Heartbeats are served whatever the message rate: a daemon held under a steady stream of
requests for several heartbeat intervals, then left idle as long, keeps its broker
connections and its queue.

Before, the consumer sent heartbeats only after a drain that timed out, so a steadily busy
daemon went silent towards RabbitMQ, was dropped for missed heartbeats, and its auto-deleted
queue vanished with it. A private RabbitMQ node lets the test list exactly the connections
of this daemon and its client.
"""

from __future__ import annotations

import time

import pytest
from orch_integration import DEFAULT_NODES, FleetFactory, client_security_settings
from private_brokers import PrivateRabbitMQ

pytestmark = pytest.mark.integration

HEARTBEAT = 2
#: The stream lasts this many heartbeat intervals (RabbitMQ drops a connection after two).
INTERVALS = 5
#: Requests are sent this often: far below the consumer's 0.5 s drain slice, so its drain
#: never times out — the case that used to starve the heartbeat.
PACE = 0.05


def test_a_steadily_busy_daemon_keeps_its_connections(
    private_rabbitmq: PrivateRabbitMQ, fleet_factory: FleetFactory
) -> None:
    from orch.core.client import Client
    from orch.core.config import load_settings

    broker = private_rabbitmq
    fleet = fleet_factory(broker.url, DEFAULT_NODES[:1], label="heartbeat",
                          env={"ORCH_HEARTBEAT": str(HEARTBEAT)})
    (identity,) = fleet.alive()
    daemon = fleet.daemons[identity]
    settings = load_settings(None, {"broker": broker.url, "collective": fleet.collective,
                                    **client_security_settings()}, environ={})
    sent = answered = 0
    with Client(settings) as client:
        # The readiness ping opened the daemon's reply connection; this one opens ours.
        assert client.ping(nodes=[identity]).replies
        before = broker.connections()
        daemon_connections = {pid for pid, timeout in before.items() if timeout == HEARTBEAT}
        # The daemon's request consumer and its reply publisher both asked for HEARTBEAT;
        # this client asked for none, and the broker agreed to both. The daemon registers
        # (on by default) over its reply connection: no third connection.
        assert len(daemon_connections) == 2, before
        assert sorted(before.values()).count(0) == 1, before

        end = time.monotonic() + INTERVALS * HEARTBEAT
        while time.monotonic() < end:
            result = client.ping(nodes=[identity])
            sent += 1
            answered += identity in result.replies
            time.sleep(PACE)
        # Then idle for as long: the consumer's drains time out, and the reply connection,
        # which nobody else reads, must still answer and send heartbeats.
        time.sleep(INTERVALS * HEARTBEAT)
        result = client.ping(nodes=[identity])
        sent += 1
        answered += identity in result.replies
        after = broker.connections()

    assert sent > INTERVALS * HEARTBEAT / (PACE + 0.5), f"only {sent} requests were sent"
    assert answered == sent, f"{sent - answered} of {sent} requests were not answered"
    assert daemon_connections <= set(after), (
        f"the daemon's connections changed: before {before}, after {after}\n{daemon.log()}")
    log = daemon.log()
    assert log.count("consuming for") == 1, log
    assert "unavailable" not in log and "lost" not in log, log
