"""Fixtures of the integration tests: the real Puppet stack and real ``orch server``s.

* ``puppet_stack`` (session) — a private ``puppetserver`` from Debian's packages on
  127.0.0.1 (own port, CA, code and logs under a temporary directory; small heap), started
  once (it takes 15-45 s) and stopped by PID at the end. Skipped, with the reason, when the
  Puppet packages are not installed (``tests/install-puppet.sh`` installs them).
* ``puppet_fleet`` (session) — four nodes ``p1..p4.localhost``: each a Puppet agent with its
  own confdir/vardir/ssldir and certname (bootstrapped against the server), and beside it
  an ``orch server`` process whose ``plugins.puppet.confdir`` points at that agent, signing
  with an x509 certificate from ``orch ca`` on a real broker (Redis by default).
* ``fleet.orch(...)`` runs the ``orch`` CLI as a subprocess with the client certificate.
* ``puppetdb`` (session) — a private PuppetDB from Debian's ``puppetdb`` package on
  127.0.0.1 (own port, config and logs; HTTPS with the puppetserver's CA; a database of its
  own on the shared PostgreSQL, dropped at the end), and ``puppet_stack``'s server
  reloaded to store facts and catalogs in it (so agent runs of any test after it store
  there too; ``test_puppetdb_real.py`` sorts after the other files here). Skipped, with the
  reason, when PuppetDB or PostgreSQL is not there.

Everything started here is stopped by PID; the broker keys of the test's collective are
deleted at the end. A failed test's report carries the fleet's logs (the ``orch.testing``
plugin reads every fixture's ``failure_logs()``).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from orch.testing import broker_problem, purge_collective
from orch.testing.servers import orch_argv
from puppet_fleet import (
    BROKER,
    NODES,
    UNREACHABLE,
    PuppetFleet,
    run,
)
from puppet_stack import PuppetStack, free_port, puppet_installed, throwaway_agent
from puppetdb_stack import PuppetDB, connect_puppetserver, postgres_problem, puppetdb_installed

log = logging.getLogger(__name__)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def puppet_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PuppetStack]:
    problem = puppet_installed()
    if problem is not None:
        pytest.skip(f"the real Puppet stack is not available: {problem}")
    stack = PuppetStack(tmp_path_factory.mktemp("puppet"))
    try:
        stack.start()
    except RuntimeError as exc:
        pytest.fail(f"puppetserver did not start: {exc}")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def puppetdb(puppet_stack: PuppetStack,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[PuppetDB]:
    problem = puppetdb_installed() or postgres_problem()
    if problem is not None:
        pytest.skip(f"a real PuppetDB cannot run here: {problem}")
    pdb = PuppetDB(tmp_path_factory.mktemp("puppetdb"), puppet_stack)
    try:
        try:
            # The puppetserver reload overlaps PuppetDB's start (both take a while).
            pdb.launch()
            started = time.monotonic()
            connect_puppetserver(puppet_stack, pdb)
            reloaded = time.monotonic() - started
            pdb.wait_ready()
            log.info("PuppetDB ready in %.1f s; puppetserver reloaded for it in %.1f s "
                     "meanwhile", pdb.ready_after, reloaded)
        except RuntimeError as exc:
            pytest.fail(f"PuppetDB did not start: {exc}")
        yield pdb
    finally:
        pdb.stop()


@contextlib.contextmanager
def orch_fleet_for(stack: PuppetStack | None,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[PuppetFleet]:
    """A CA, a client certificate and a collective of its own on the broker; every
    ``orch server`` started in it is stopped, and its broker keys deleted, at the end."""
    problem = broker_problem(BROKER)
    if problem is not None:
        pytest.fail(f"broker {BROKER} is not reachable ({problem}); set "
                    "ORCH_PUPPET_TEST_BROKER or start it (the project's run-tests does)")
    workdir = tmp_path_factory.mktemp("orch")
    ca_dir = workdir / "ca"
    orch = orch_argv()
    run([*orch, "ca", "init", "--dir", str(ca_dir)])
    run([*orch, "ca", "issue", "--dir", str(ca_dir), "--client", "tester"])
    fleet = PuppetFleet(stack, workdir, BROKER, f"pup{uuid.uuid4().hex[:10]}", ca_dir)
    try:
        yield fleet
    finally:
        for node in fleet.nodes.values():
            node.stop()
        with contextlib.suppress(Exception):
            purge_collective(BROKER, fleet.collective)


@pytest.fixture(scope="session")
def puppet_fleet(puppet_stack: PuppetStack,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[PuppetFleet]:
    with orch_fleet_for(puppet_stack, tmp_path_factory) as fleet:
        for name in NODES:
            agent = puppet_stack.add_agent(name)
            fleet.start_node(name, agent, resource_types_allow=["file", "notify"],
                             facts_enabled=True, facts_refresh_interval=60)
        fleet.wait_answering(NODES)
        yield fleet


@pytest.fixture(scope="module")
def unreachable_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PuppetFleet]:
    """Two real Puppet agents whose certificates come from a throw-away CA and whose
    server does not exist (a closed port on 127.0.0.1): every run they make fails without
    a catalog. No puppetserver is started."""
    problem = puppet_installed()
    if problem is not None:
        pytest.skip(f"the real Puppet agent is not available: {problem}")
    root = tmp_path_factory.mktemp("unreachable")
    with orch_fleet_for(None, tmp_path_factory) as fleet:
        for name in UNREACHABLE:
            fleet.start_node(name, throwaway_agent(root, name, free_port()))
        fleet.wait_answering(UNREACHABLE)
        yield fleet
