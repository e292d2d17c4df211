"""Simulated fleets as ``orch sim``/``orch demo`` build them host the simulated service
agent (orch asks ``ServiceAgent.simulation()``), never the real one; node settings given
to the simulation (``--config``) reach it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orch.core.client import Client
from orch.core.config import load_settings
from orch.sim import SimConfig, Simulation
from orch.sim.facts import node_specs


def restart_cron(tmp_path: Path, collective: str, extra: dict[str, Any]) -> Any:
    config = SimConfig(nodes=3, broker="memory://", state_dir=tmp_path / collective,
                       workers=0, collective=collective, extra_settings=extra)
    with Simulation(config) as simulation:
        fleet = simulation.fleet()
        assert fleet is not None
        assert {type(a).__name__ for node in fleet.nodes
                for name, a in node._agents.items() if name == "service"} == {
            "SimulatedServiceAgent"}
        client = Client(load_settings(str(simulation.client_config), environ={}))
        try:
            return client.call("service", "restart", {"service": "cron"},
                               nodes=[spec.identity for spec in node_specs(3)])
        finally:
            client.close()


def test_a_simulation_hosts_the_simulation_and_passes_it_settings(tmp_path: Path) -> None:
    refused = restart_cron(tmp_path, "svcsim1", {})
    assert len(refused.failed) == 3  # no allow list: changing actions refused
    assert "plugins.service.allow" in next(iter(refused.replies.values())).statusmsg
    allowed = restart_cron(tmp_path, "svcsim2", {"plugins": {"service": {"allow": ["cron"]}}})
    assert len(allowed.ok) == 3
    assert {r.data["provider"] for r in allowed.replies.values()} == {"simulated"}
