"""Fixtures: fleets of real ``orch server`` processes on RabbitMQ and Redis, the CLI, and a
private RabbitMQ node that tests may stop and start.

* ``fleet`` — five daemons (:data:`orch_integration.DEFAULT_NODES`) in a collective of
  their own, once per broker ("rabbitmq", "redis") for the whole session;
* ``run_orch`` — ``run_orch(*args, env=..., input=..., timeout=...)`` for that fleet;
* ``fleet_factory`` — ``fleet_factory(broker_url, nodes, log_level=...)`` for tests that need
  daemons of their own; stopped (and checked) at the end of the test;
* ``private_rabbitmq`` — a started :class:`private_brokers.PrivateRabbitMQ`;
* ``rabbitmq_cluster`` — a started three-node :class:`private_brokers.PrivateRabbitMQCluster`;
* ``clean_install`` — the built wheels installed into a fresh virtualenv (session-wide).

On failure, the report gets one section per daemon with its log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from install_support import CleanInstall, build_and_install
from orch_integration import BROKERS, DEFAULT_NODES, CliResult, Fleet, FleetFactory, new_collective
from private_brokers import PrivateRabbitMQ, PrivateRabbitMQCluster, rabbitmq_tools

from orch.testing import broker_problem, purge_collective


def _finish(fleets: Sequence[Fleet]) -> None:
    """Stop the daemons, purge the broker, and fail if any daemon did not stop cleanly."""
    problems: list[str] = []
    for fleet in fleets:
        for problem in fleet.stop():
            problems.append(f"{problem}\n{fleet.logs([problem.split()[0]])}")
        with contextlib.suppress(Exception):  # the broker may be down (outage tests)
            purge_collective(fleet.broker, fleet.collective)
    assert not problems, "orch server shutdown problems:\n" + "\n".join(problems)


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
        _finish([fleet])


@pytest.fixture
def run_orch(fleet: Fleet) -> Callable[..., CliResult]:
    """``run_orch(*args, env=None, input=None, timeout=60)`` → ``(rc, stdout, stderr)``."""
    return fleet.run_orch


@pytest.fixture
def fleet_factory(tmp_path: Path) -> Iterator[FleetFactory]:
    factory = FleetFactory(tmp_path)
    try:
        yield factory
    finally:
        _finish(factory.fleets)


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
    broker = PrivateRabbitMQ(tools[0], tools[1], tmp_path / "rabbitmq")
    try:
        broker.start()
        yield broker
    finally:
        broker.cleanup()


@pytest.fixture
def rabbitmq_cluster(tmp_path: Path) -> Iterator[PrivateRabbitMQCluster]:
    """Three RabbitMQ nodes of this test only, clustered; always cleaned up."""
    tools = rabbitmq_tools()
    if tools is None:
        pytest.skip("rabbitmq-server / rabbitmqctl are not installed: cannot run a private "
                    "RabbitMQ cluster")
    cluster = PrivateRabbitMQCluster(tools[0], tools[1], tmp_path / "cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach every daemon's (and the private broker's) log to a failed test's report."""
    report = yield
    if report.failed:
        funcargs: dict[str, Any] = getattr(item, "funcargs", {})
        for value in funcargs.values():
            logs = getattr(value, "failure_logs", None)
            if callable(logs):
                for title, text in logs():
                    report.sections.append((f"log of {title}", text or "(empty)"))
    return report
