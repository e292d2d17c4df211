"""Test fixtures for orch plugins: a signed in-memory fleet, a client, and reply assertions.

This module is a pytest plugin. Installing orch registers it through pytest's ``pytest11``
entry point, so its fixtures are available in every test of a project whose environment has
orch — the tests ``orch plugin new`` scaffolds rely on exactly that::

    from orch.testing import assert_all_ok

    def test_greet(orch_fleet):
        fleet = orch_fleet({"web1": {"role": "web"}, "db1": {"role": "db"}})
        result = fleet.call("hello", "greet", name="world", filter="role=web")
        assert_all_ok(result, expected=["web1"])
        assert result.replies["web1"].data["message"] == "hello world, from web1"

Why it looks like this:

* Every fleet is a real :class:`orch.core.fleet.Fleet` — each simulated node runs the same
  request path as ``orch server`` (filters, DDL validation of arguments and replies,
  authorization, the worker pool with the DDL timeout) — on the in-process ``memory://``
  broker, so no broker needs to run. Each fleet gets a collective of its own, so fleets of
  one test, and of tests running one after the other, never see each other's requests.
* Every fleet is secured like production: a throw-away CA (:class:`orch.demo.DemoPKI`, one
  per test session) gives the client a certificate and each node its own, so requests and
  replies are signed and verified with ``security: x509``. An agent that passes these tests
  was not helped by a shortcut that production lacks.
* A call without a filter addresses every node directly (no discovery), so it returns as
  soon as the last node answered and ``missing`` names any node that did not. A call with a
  filter discovers first, exactly as ``orch rpc`` does.
* Nothing happens at import time: orch's own modules are imported when a fixture is first
  used, so having orch installed costs other projects' test runs nothing.

The fixtures:

``orch_fleet``
    A factory: ``orch_fleet(nodes=None, classes=None, agents=None, broker="memory://",
    settings=None)`` starts a fleet and returns an :class:`OrchFleet`; every fleet a test
    started is stopped after it.
``orch_client``
    The :class:`orch.core.client.Client` of a fleet of :data:`DEFAULT_NODES`.
``orch_pki``
    The session's throw-away CA (:class:`orch.demo.DemoPKI`).
``orch_servers``
    A factory of fleets of real ``orch server`` processes on a real broker:
    ``orch_servers(broker_url, nodes=SERVER_NODES, label="own", log_level="info",
    env=None)`` returns a :class:`ServerFleet` whose daemons all answer; after the test
    each gets SIGTERM and must obey (:mod:`orch.testing.servers`). A failed test's report
    carries every daemon's log.

Outside pytest, :meth:`OrchFleet.start` gives the same fleet as a context manager.

PYTEST_DONT_REWRITE — the assertion helpers write their own messages, so this module needs
no assertion rewriting; the marker also spares a warning when a test module imports it
before pytest loads it as a plugin (``pytest_plugins = ["orch.testing"]``).
"""


from __future__ import annotations

from orch.installcheck import check_fresh_install
from orch.testing.assertions import (
    assert_all_failed,
    assert_all_ok,
    data_by_node,
    describe_result,
    wait_until,
)
from orch.testing.brokers import broker_problem, purge_collective
from orch.testing.fixtures import (
    FleetFactory,
    _orch_fleet_stopper,  # noqa: F401 (a fixture orch_fleet needs, registered by the plugin)
    orch_client,
    orch_fleet,
    orch_pki,
    orch_servers,
    pytest_configure,  # noqa: F401 (the plugin's hook: children hear Ctrl-C)
    pytest_runtest_makereport,  # noqa: F401 (the plugin's hook: daemon logs on failure)
)
from orch.testing.fleet import DEFAULT_CLASSES, DEFAULT_NODES, OrchFleet, node_specs
from orch.testing.servers import (
    SERVER_NODES,
    SUITE_ENVIRONMENT,
    CliResult,
    ServerDaemon,
    ServerFleet,
    ServerFleetFactory,
    ServerNode,
    bare_environment,
    run_orch,
    stop_fleets,
)
from orch.testing.sim import SimProcess

__all__ = [
    "DEFAULT_CLASSES",
    "DEFAULT_NODES",
    "SERVER_NODES",
    "SUITE_ENVIRONMENT",
    "CliResult",
    "FleetFactory",
    "OrchFleet",
    "ServerDaemon",
    "ServerFleet",
    "ServerFleetFactory",
    "ServerNode",
    "SimProcess",
    "assert_all_failed",
    "assert_all_ok",
    "bare_environment",
    "broker_problem",
    "check_fresh_install",
    "data_by_node",
    "describe_result",
    "node_specs",
    "orch_client",
    "orch_fleet",
    "orch_pki",
    "orch_servers",
    "purge_collective",
    "run_orch",
    "stop_fleets",
    "wait_until",
]
