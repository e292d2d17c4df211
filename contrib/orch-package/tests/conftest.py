"""Shared fixtures of orch-package's tests: simulated fleets (orch.testing) hosting the
simulated package agent (their CLI runs through ``OrchFleet.run_cli``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from orch.testing import FleetFactory, OrchFleet

SIMULATED = {"provider": "simulated", "allow": ["openssl", "nginx", "htop"]}


@pytest.fixture
def package_fleet(orch_fleet: FleetFactory) -> Callable[..., OrchFleet]:
    """``package_fleet(nodes, classes, **plugins.package)``: a simulated fleet."""

    def start(nodes: Any = None, classes: Any = None, **section: Any) -> OrchFleet:
        return orch_fleet(nodes, classes, agents=["package"],
                          settings={"plugins": {"package": {**SIMULATED, **section}}})

    return start
