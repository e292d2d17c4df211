"""Registering costs a node no broker connection: ``orch server`` publishes its
registrations over the connection its replies use.

Before, each server registered over a client channel of its own — a third connection per
node (heartbeat 0) plus an exclusive reply queue, 10,000 extra connections for 10,000
nodes, even when no registry ran. A private RabbitMQ node lets the test list exactly the
connections of one daemon: those present after it started, less the registry's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from api_support import RegistryDaemon, inventory_config
from orch_integration import BROKERS, DEFAULT_NODES, READY_TIMEOUT, FleetFactory
from private_brokers import PrivateRabbitMQ

from orch.core.config import load_settings
from orch.core.plugins import default_registry
from orch.testing import wait_until

pytestmark = pytest.mark.integration

HEARTBEAT = 4


def registrations_seen(url: str, identity: str) -> float | None:
    """When the registry last stored ``identity`` (None: not yet)."""
    store = default_registry().inventory_store(url, load_settings(overrides={}))
    try:
        return next((r.last_seen for r in store.nodes() if r.identity == identity), None)
    finally:
        store.close()


def test_a_registering_daemon_holds_no_connection_for_it(
        private_rabbitmq: PrivateRabbitMQ, fleet_factory: FleetFactory,
        tmp_path: Path) -> None:
    broker = private_rabbitmq
    store = f"sqlite:///{tmp_path}/inventory.db"
    config = inventory_config(tmp_path / "registry.yaml", store, seed=False)
    fleet = fleet_factory(broker.url, [], label="regconn",
                          env={"ORCH_HEARTBEAT": str(HEARTBEAT),
                               "ORCH_INVENTORY_REGISTRATION": "true",
                               "ORCH_INVENTORY_REGISTRATION_INTERVAL": "1",
                               "ORCH_INVENTORY_REGISTRATION_JITTER": "0"})
    registry = RegistryDaemon(broker.url, fleet.collective, store, tmp_path,
                              config=config).start()
    try:
        theirs = set(broker.connections())
        (daemon,) = fleet.add(DEFAULT_NODES[:1])
        identity = daemon.spec.identity
        wait_until(lambda: registrations_seen(store, identity) is not None, READY_TIMEOUT,
                   "the node's first registration stored")
        first = registrations_seen(store, identity)
        # Re-registrations (every second) keep reaching the registry over the same path.
        wait_until(lambda: (registrations_seen(store, identity) or 0) > (first or 0),
                   READY_TIMEOUT, "a re-registration stored")

        def daemons() -> list[float]:
            """Heartbeats of the connections the registry does not hold (the readiness
            ping's client, heartbeat 0, may take a moment to leave the broker's list)."""
            return sorted(timeout for pid, timeout in broker.connections().items()
                          if pid not in theirs)

        # The consumer and the reply publisher, both with the daemon's heartbeat: the
        # registrations went over the latter. A client channel of their own would stay
        # as a third connection, without heartbeat.
        wait_until(lambda: daemons() == [HEARTBEAT, HEARTBEAT], READY_TIMEOUT,
                   "the daemon to hold its two connections only")
        assert "registration not published" not in daemon.log(), daemon.log()
    finally:
        assert registry.stop() == 0, registry.log()


def test_registrations_reach_a_registry_over_redis(fleet_factory: FleetFactory,
                                                   tmp_path: Path) -> None:
    """The same publish path on a virtual transport (kombu's Redis): the request exchange is
    declared on the reply connection before the first registration."""
    store = f"sqlite:///{tmp_path}/inventory.db"
    config = inventory_config(tmp_path / "registry.yaml", store, seed=False)
    fleet = fleet_factory(BROKERS["redis"], [], label="regredis")
    registry = RegistryDaemon(BROKERS["redis"], fleet.collective, store, tmp_path,
                              config=config).start()
    try:
        (daemon,) = fleet.add(DEFAULT_NODES[:1])
        wait_until(lambda: registrations_seen(store, daemon.spec.identity) is not None,
                   READY_TIMEOUT, "the node's registration stored")
        assert "registration not published" not in daemon.log(), daemon.log()
    finally:
        assert registry.stop() == 0, registry.log()
