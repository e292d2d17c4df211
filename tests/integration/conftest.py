"""Fixtures: fleets of real ``orch server`` processes on RabbitMQ and Redis, the CLI, and a
private RabbitMQ node that tests may stop and start.

* ``fleet`` — five daemons (:data:`orch_integration.DEFAULT_NODES`) in a collective of
  their own, once per broker ("rabbitmq", "redis") for the whole session;
* ``run_orch`` — ``run_orch(*args, env=..., input=..., timeout=...)`` for that fleet;
* ``fleet_factory`` — ``fleet_factory(broker_url, nodes, log_level=...)`` for tests that need
  daemons of their own; stopped (and checked) at the end of the test;
* ``private_rabbitmq`` — a started :class:`private_brokers.PrivateRabbitMQ`;
* ``private_redis`` — a started :class:`private_brokers.PrivateRedis`, and
  ``private_tls_redis`` its TLS-only :class:`private_brokers.PrivateTLSRedis`;
* ``rabbitmq_cluster`` — a started three-node :class:`private_brokers.PrivateRabbitMQCluster`;
* ``clean_install`` — the built wheels installed into a fresh virtualenv (session-wide).

On failure, the report gets one section per daemon with its log (the ``orch.testing``
plugin's hook reads every fixture value's ``failure_logs()``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
from install_support import CleanInstall, build_and_install
from orch_integration import BROKERS, DEFAULT_NODES, CliResult, Fleet, FleetFactory, new_collective
from private_brokers import (
    PrivateRabbitMQ,
    PrivateRabbitMQCluster,
    PrivateRedis,
    PrivateTLSRedis,
    rabbitmq_tools,
)

from orch.testing import SUITE_ENVIRONMENT, broker_problem, stop_fleets

# No daemon of this suite runs a puppet action, but orch-puppet, installed beside orch for its
# own suite, would start `puppet config print` (about a second of Ruby) in every one of the
# hundreds of daemons this suite starts; deferred, it runs only for a first puppet action.
SUITE_ENVIRONMENT["ORCH_PUPPET_DISCOVER_AT_START"] = "0"


class _Server(Protocol):
    """A broker a test starts for itself (``private_brokers``)."""

    def start(self) -> None: ...

    def cleanup(self) -> None: ...


ServerT = TypeVar("ServerT", bound=_Server)


def _running(server: ServerT) -> Iterator[ServerT]:
    """Start ``server`` for one test; clean it up afterwards, whatever happened."""
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session", params=sorted(BROKERS), ids=sorted(BROKERS))
def fleet(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Five daemons with different facts and classes, on the parametrized broker."""
    name = request.param
    url = BROKERS[name]
    problem = broker_problem(url)
    if problem is not None:
        pytest.fail(f"{name} broker {url} is not reachable: {problem}")
    fleet = Fleet(url, new_collective(name), tmp_path_factory.mktemp(f"fleet-{name}"))
    try:
        fleet.add(DEFAULT_NODES)
        yield fleet
    finally:
        stop_fleets([fleet])


@pytest.fixture
def run_orch(fleet: Fleet) -> Callable[..., CliResult]:
    """``run_orch(*args, env=None, input=None, timeout=60)`` → ``(rc, stdout, stderr)``."""
    return fleet.run_orch


@pytest.fixture
def fleet_factory(orch_servers: FleetFactory) -> FleetFactory:
    """This suite's name for :func:`orch.testing.orch_servers` (stopped and checked after
    the test, the broker purged, the daemons' logs on a failed test's report)."""
    return orch_servers


@pytest.fixture(scope="session")
def clean_install(tmp_path_factory: pytest.TempPathFactory) -> CleanInstall:
    """The built wheels of orch and every contrib distribution, installed into a fresh
    virtualenv at ``<root>/opt/orch`` (once per session: the build is the slow part)."""
    return build_and_install(tmp_path_factory.mktemp("clean-install"))


@pytest.fixture
def private_rabbitmq(tmp_path: Path) -> Iterator[PrivateRabbitMQ]:
    """A RabbitMQ node of this test only (own ports, data, logs); always cleaned up."""
    tools = rabbitmq_tools()
    if tools is None:
        pytest.skip("rabbitmq-server / rabbitmqctl are not installed: cannot run a private "
                    "RabbitMQ node for the broker outage tests")
    yield from _running(PrivateRabbitMQ(tools[0], tools[1], tmp_path / "rabbitmq"))


@pytest.fixture
def rabbitmq_cluster(tmp_path: Path) -> Iterator[PrivateRabbitMQCluster]:
    """Three RabbitMQ nodes of this test only, clustered; always cleaned up."""
    tools = rabbitmq_tools()
    if tools is None:
        pytest.skip("rabbitmq-server / rabbitmqctl are not installed: cannot run a private "
                    "RabbitMQ cluster")
    yield from _running(PrivateRabbitMQCluster(tools[0], tools[1], tmp_path / "cluster"))


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis server of this test only (own port); always stopped, thawed first."""
    yield from _running(PrivateRedis(tmp_path / "redis"))


@pytest.fixture
def private_tls_redis(tmp_path: Path) -> Iterator[PrivateTLSRedis]:
    """A TLS-only Redis server of this test only, requiring a client certificate of the
    session CA; always stopped."""
    yield from _running(PrivateTLSRedis(tmp_path / "redis-tls"))
