"""Shared fixtures of orch-package's tests: simulated fleets (orch.testing) hosting the
simulated package agent, and the CLI driven in-process against them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result
from orch.cli.main import cli
from orch.testing import FleetFactory, OrchFleet

SIMULATED = {"provider": "simulated", "allow": ["openssl", "nginx", "htop"]}


@pytest.fixture
def package_fleet(orch_fleet: FleetFactory) -> Callable[..., OrchFleet]:
    """``package_fleet(nodes, classes, **plugins.package)``: a simulated fleet."""

    def start(nodes: Any = None, classes: Any = None, **section: Any) -> OrchFleet:
        return orch_fleet(nodes, classes, agents=["package"],
                          settings={"plugins": {"package": {**SIMULATED, **section}}})

    return start


def run_cli(fleet: OrchFleet, *args: str, input: str | None = None) -> Result:
    """``orch ARGS`` in this process against ``fleet`` (memory broker, the fleet's CA)."""
    settings = fleet.settings
    argv = [*args, "--broker", "memory://", "-T", settings.collective, "--security", "x509",
            "--tls-cert", str(settings.tls_cert), "--tls-key", str(settings.tls_key),
            "--tls-ca", str(settings.tls_ca), "--discovery-timeout", "1"]
    result = CliRunner().invoke(cli, argv, input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result
