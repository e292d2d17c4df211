"""A network partition (issue 11): daemons in a network namespace lose their link to the
broker. A call during the cut reports them missing within its timeout while the others
answer; after the heal they reconnect and answer again, and the time that took is reported.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from orch_integration import DEFAULT_NODES, Daemon, FleetFactory, identity_args, orch_argv
from private_brokers import NetworkNamespace, PrivateRabbitMQ, rabbitmq_tools

from orch.testing import wait_until

pytestmark = pytest.mark.integration

HEARTBEAT = 2.0
TIMEOUT = 3.0


@pytest.fixture
def namespace() -> Iterator[NetworkNamespace]:
    problem = NetworkNamespace.available()
    if problem is not None:
        pytest.skip(f"no network namespaces here: {problem}")
    ns = NetworkNamespace()
    try:
        ns.create()
        yield ns
    finally:
        ns.cleanup()


@pytest.fixture
def reachable_rabbitmq(namespace: NetworkNamespace,
                       tmp_path: Path) -> Iterator[PrivateRabbitMQ]:
    """A private RabbitMQ listening on loopback and on the host side of the veth link."""
    tools = rabbitmq_tools()
    if tools is None:
        pytest.skip("rabbitmq-server / rabbitmqctl are not installed")
    broker = PrivateRabbitMQ(tools[0], tools[1], tmp_path / "rabbitmq")
    broker.extra_config = f"listeners.tcp.2 = {namespace.HOST_ADDRESS}:{broker.port}\n"
    try:
        broker.start()
        yield broker
    finally:
        broker.cleanup()


def test_partitioned_nodes_are_missing_then_answer_after_the_heal(
    namespace: NetworkNamespace, reachable_rabbitmq: PrivateRabbitMQ,
    fleet_factory: FleetFactory,
) -> None:
    broker = reachable_rabbitmq
    env = {"ORCH_HEARTBEAT": str(HEARTBEAT)}
    fleet = fleet_factory(broker.url, DEFAULT_NODES[:2], label="partition", env=env)
    inside_url = broker.url.replace("127.0.0.1", namespace.HOST_ADDRESS)
    behind = []
    for spec in DEFAULT_NODES[2:4]:
        daemon = Daemon(spec, inside_url, fleet.collective, fleet.workdir,
                        orch=[*namespace.prefix(), *(fleet.orch or orch_argv())], env=env)
        daemon.start()
        fleet.daemons[spec.identity] = daemon
        behind.append(spec.identity)
    fleet.wait_ready(behind)
    everyone = fleet.alive()
    outside = sorted(set(everyone) - set(behind))

    namespace.cut()
    cut_at = time.monotonic()
    try:
        result = fleet.run_orch("rpc", "rpcutil", "ping", *identity_args(everyone), "--json",
                                "--timeout", str(TIMEOUT), timeout=60)
        assert result.rc == 1, result.describe()
        document = result.json()
        assert document["missing"] == sorted(behind), result.describe()
        assert sorted(r["sender"] for r in document["replies"]) == outside
        assert result.elapsed < TIMEOUT + 10, f"the call took {result.elapsed:.1f}s"
        # The daemons behind the cut notice it by their heartbeats.
        wait_until(lambda: all("unavailable" in fleet.daemons[n].log() for n in behind),
                 6 * HEARTBEAT + 20, "the partitioned daemons to notice the cut")
    finally:
        namespace.heal()
    healed = time.monotonic()

    def all_answer() -> bool:
        ping = fleet.run_orch("rpc", "rpcutil", "ping", *identity_args(everyone), "--json",
                              "--timeout", str(TIMEOUT), timeout=60)
        return ping.rc == 0 and sorted(r["sender"] for r in ping.json()["replies"]) == everyone

    wait_until(all_answer, 60, "the partitioned daemons to answer again after the heal",
             interval=0.2)
    again = time.monotonic() - healed
    for name in everyone:
        assert fleet.daemons[name].running(), fleet.logs([name])
    print(f"\npartition: {len(behind)} nodes cut off for {healed - cut_at:.1f}s, reported "
          f"missing within the {TIMEOUT:g}s timeout, answering again {again:.1f}s after the "
          "heal")

