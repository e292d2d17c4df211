"""Shared fixtures of orch-service's tests: simulated fleets (orch.testing) hosting the
simulated service agent (their CLI runs through ``OrchFleet.run_cli``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from orch.testing import FleetFactory, OrchFleet

SIMULATED = {"provider": "simulated", "allow": ["cron", "nginx"]}


def service_settings(**section: Any) -> dict[str, Any]:
    return {"plugins": {"service": {**SIMULATED, **section}}}


@pytest.fixture
def service_fleet(orch_fleet: FleetFactory) -> Callable[..., OrchFleet]:
    """``service_fleet(nodes, classes, **plugins.service)``: a simulated fleet."""

    def start(nodes: Any = None, classes: Any = None, **section: Any) -> OrchFleet:
        return orch_fleet(nodes, classes, agents=["service"],
                          settings=service_settings(**section))

    return start
