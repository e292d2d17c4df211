"""A clean install, as a new user makes it: the built wheels in a fresh virtualenv.

Issue 15: ``pip install orch`` without the test extras could not use ``redis://`` (kombu's
Redis transport imports ``packaging``, which only pytest happened to bring into the test
environment). Every other integration test runs orch from the development environment, where
the test extras hide such a gap; this module builds the wheels of orch and of each
``contrib/`` distribution, installs them into one fresh virtualenv (no system site-packages,
no test extras: pip resolves the runtime requirements from the package index), and drives
the *installed* ``orch`` entry point: ``orch server`` with ``orch ping`` and ``orch rpc`` on
RabbitMQ and Redis, ``orch demo`` on ``memory://``, ``orch plugins`` and ``orch puppet``.

The daemons run signed with the session's CA, like the rest of the integration suite
(:func:`orch_integration.node_security_flags`); the readiness probe is the shared in-process
one, every command under test is the virtualenv's. The build and install are the
session's ``clean_install`` fixture (:mod:`install_support`), shared with
``test_install_layout.py``.
"""

from __future__ import annotations

import pytest
from install_support import CleanInstall, distributions
from orch_integration import BROKERS, FleetFactory, NodeSpec

from orch.cli.demo import TOUR
from orch.transports.kombu import SCHEMES

pytestmark = pytest.mark.integration

#: The ``orch`` entry point each contrib distribution registers, and a command it adds.
CONTRIB_PLUGINS = {"orch-puppet": ("puppet", "puppet"), "orch-service": ("service", "service"),
                   "orch-package": ("package", "package")}
#: Distributions only the test (or lint) extras bring; none may be in the clean install.
TEST_ONLY = {"pytest", "pytest-benchmark", "pytest-xdist", "hypothesis", "psutil", "ruff", "mypy"}
NODE = NodeSpec("clean1", {"role": "clean", "os": {"family": "Debian"}}, ("base",))


def test_the_install_has_no_test_extras(clean_install: CleanInstall) -> None:
    """Otherwise this module would prove nothing the rest of the suite does not."""
    installed = clean_install.distributions()
    assert {"orch", *distributions()} <= installed
    assert not installed & TEST_ONLY, installed & TEST_ONLY
    version = clean_install.run("--version")
    assert version.rc == 0 and version.stdout.startswith("orch "), version.describe()


@pytest.mark.parametrize("broker", sorted(BROKERS))
def test_server_ping_and_rpc_on_a_real_broker(clean_install: CleanInstall,
                                              fleet_factory: FleetFactory, broker: str) -> None:
    fleet = fleet_factory(BROKERS[broker], [NODE], label=f"clean-{broker}",
                         orch=clean_install.orch)
    assert fleet.daemons[NODE.identity].orch == clean_install.orch
    ping = fleet.run_orch("ping", "-I", NODE.identity, "--json")
    assert ping.rc == 0, ping.describe()
    assert [r["sender"] for r in ping.json()["replies"]] == [NODE.identity]
    rpc = fleet.run_orch("rpc", "rpcutil", "ping", "-F", "role=clean", "--json")
    assert rpc.rc == 0, rpc.describe()
    document = rpc.json()
    assert [(r["sender"], r["statuscode"]) for r in document["replies"]] == [(NODE.identity, 0)]
    assert document["missing"] == [] and document["error"] is None
    assert "Traceback" not in fleet.daemons[NODE.identity].log()


def test_demo_on_memory(clean_install: CleanInstall) -> None:
    """The whole tour on the default fleet, every step answered (none prints an error)."""
    demo = clean_install.run("demo", "--no-interactive")
    assert demo.rc == 0, demo.describe()
    assert demo.stdout.startswith("orch demo: 50 simulated nodes serving on memory://")
    assert "signed with a throw-away CA" in demo.stdout
    assert demo.stdout.count("\n$ orch ") == len(TOUR), demo.stdout
    assert demo.stdout.count(" time=") == 50, demo.stdout  # the tour's ping: every node
    assert "Error" not in demo.stdout + demo.stderr
    assert "Traceback" not in demo.stdout + demo.stderr


def test_orch_plugins_lists_contrib_and_every_scheme_available(
        clean_install: CleanInstall) -> None:
    listed = clean_install.run("plugins", "--json")
    assert listed.rc == 0, listed.describe()
    by_name = {entry["name"]: entry for entry in listed.json()}
    assert not [e for e in by_name.values() if e["error"]], by_name
    for distribution, (entry_point, _) in CONTRIB_PLUGINS.items():
        assert by_name[entry_point]["distribution"] == distribution
    schemes = {t["scheme"]: t for t in by_name["kombu"]["transports"]}
    assert set(schemes) == set(SCHEMES)
    assert {scheme for scheme, t in schemes.items() if not t["available"]} == set()


@pytest.mark.parametrize("distribution", sorted(CONTRIB_PLUGINS))
def test_contrib_command_help_needs_nothing_else(clean_install: CleanInstall,
                                                 distribution: str) -> None:
    """With only the venv on PATH (no Puppet, no system tools), the help still shows."""
    _, command = CONTRIB_PLUGINS[distribution]
    shown = clean_install.run(command, "--help", env={"PATH": str(clean_install.venv / "bin")})
    assert shown.rc == 0, shown.describe()
    assert shown.stdout.startswith(f"Usage: orch {command} [OPTIONS] "), shown.stdout
    assert shown.stderr == "", shown.stderr
