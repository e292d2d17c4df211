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

Everything started here is stopped by PID; the broker keys of the test's collective are
deleted at the end.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from puppet_fleet import (
    BROKER,
    NODES,
    READY_TIMEOUT,
    OrchNode,
    PuppetFleet,
    broker_problem,
    orch_executable,
    purge,
    run,
)
from puppet_stack import PuppetStack, puppet_installed


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
def puppet_fleet(puppet_stack: PuppetStack,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[PuppetFleet]:
    problem = broker_problem(BROKER)
    if problem is not None:
        pytest.fail(f"broker {BROKER} is not reachable ({problem}); set "
                    "ORCH_PUPPET_TEST_BROKER or start it (the project's run-tests does)")
    workdir = tmp_path_factory.mktemp("orch")
    ca_dir = workdir / "ca"
    orch = orch_executable()
    run([*orch, "ca", "init", "--dir", str(ca_dir)])
    run([*orch, "ca", "issue", "--dir", str(ca_dir), "--client", "tester"])
    fleet = PuppetFleet(puppet_stack, workdir, BROKER,
                        f"pup{uuid.uuid4().hex[:10]}", ca_dir)
    try:
        for name in NODES:
            agent = puppet_stack.add_agent(name)
            run([*orch, "ca", "issue", "--dir", str(ca_dir), "--node", name])
            config = workdir / f"{name}.yaml"
            issued = ca_dir / "issued" / "node"
            config.write_text(yaml.safe_dump({
                "identity": name, "collective": fleet.collective, "broker": BROKER,
                "security": "x509", "tls_cert": str(issued / f"{name}.pem"),
                "tls_key": str(issued / f"{name}.key"), "tls_ca": str(ca_dir / "ca.pem"),
                "classes": str(agent.classfile), "log_level": "info",
                "plugins": {"puppet": {
                    "confdir": str(agent.confdir),
                    "resource_types_allow": ["file", "notify"],
                    "facts_enabled": True, "facts_refresh_interval": 60,
                }},
            }))
            node = OrchNode(name, agent, config, workdir / f"{name}.log")
            with node.log.open("ab") as log:
                node.proc = subprocess.Popen(
                    [*orch, "server", "--config", str(config)], stdout=log,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={k: v for k, v in os.environ.items() if not k.startswith("ORCH_")},
                    start_new_session=True)
            fleet.nodes[name] = node
        deadline = time.monotonic() + READY_TIMEOUT
        pending = set(NODES)
        while pending:
            dead = [n for n in pending if not fleet.nodes[n].running()]
            assert not dead, f"orch server {dead} exited:\n{fleet.logs(dead[0])}"
            result = fleet.orch("ping", "--json", *[a for n in sorted(pending)
                                                    for a in ("-I", n)], timeout=30)
            if result.rc in (0, 1) and result.stdout.strip():
                pending -= {r["sender"] for r in result.json()["replies"]}
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"orch servers {sorted(pending)} not answering:\n"
                                     + "\n".join(fleet.logs(n) for n in pending))
            if pending:
                time.sleep(0.5)
        yield fleet
    finally:
        for node in fleet.nodes.values():
            node.stop()
        with contextlib.suppress(Exception):
            purge(BROKER, fleet.collective)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Attach the orch servers', runs' and puppetserver's logs to a failed test."""
    report = yield
    if report.failed:
        fleet = getattr(item, "funcargs", {}).get("puppet_fleet")
        if fleet is not None:
            for title, text in fleet.failure_logs():
                report.sections.append((f"log of {title}", text or "(empty)"))
    return report
