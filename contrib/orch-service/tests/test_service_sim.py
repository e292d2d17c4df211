"""Simulated fleets as ``orch sim``/``orch demo`` build them host the simulated service
agent when the node settings select it, and never the real one."""

from __future__ import annotations

from pathlib import Path

from orch.core.client import Client
from orch.core.config import load_settings
from orch.sim import SimConfig, Simulation
from orch.sim.facts import node_specs


def test_a_simulation_hosts_the_simulated_agent_only_when_selected(tmp_path: Path) -> None:
    plain = SimConfig(nodes=3, broker="memory://", state_dir=tmp_path / "a", workers=0,
                      collective="svcsim1")
    with Simulation(plain) as simulation:
        fleet = simulation.fleet()
        assert fleet is not None
        assert all("service" not in node.view().agents for node in fleet.nodes)

    selected = SimConfig(nodes=3, broker="memory://", state_dir=tmp_path / "b", workers=0,
                         collective="svcsim2", extra_settings={"plugins": {"service": {
                             "provider": "simulated", "allow": ["cron"]}}})
    with Simulation(selected) as simulation:
        client = Client(load_settings(str(simulation.client_config), environ={}))
        try:
            names = [spec.identity for spec in node_specs(3)]
            restarted = client.call("service", "restart", {"service": "cron"}, nodes=names)
        finally:
            client.close()
        assert sorted(restarted.ok) == sorted(names)
        assert {r.data["provider"] for r in restarted.replies.values()} == {"simulated"}
