"""``Agent.simulation()``: how a plugin gives simulated nodes an agent that acts on memory.

An agent that acts on the machine (runs commands, writes files) offers a class with the
same name and DDL whose actions only touch state kept per node; simulated fleets (``orch
demo``, ``orch sim``, ``orch_fleet(simulated=True)``) host that instead, and leave out an
agent that offers none.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from orch.agents.rpcutil import Rpcutil
from orch.core.agent import ActionReply, ActionRequest, Agent, action, simulated_agents
from orch.sim.simulation import SimError
from orch.sim.worker import build_fleet
from orch.testing import FleetFactory, assert_all_ok, data_by_node

pytest_plugins = ["orch.testing"]

DDL = {
    "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
    "metadata": {"name": "touchy", "description": "acts on the machine", "author": "tests",
                 "license": "Apache-2.0", "version": "1.0.0", "timeout": 2},
    "actions": [{"action": "touch", "description": "Touch a file", "display": "always",
                 "input": {},
                 "output": {"where": {"description": "what was touched",
                                      "type": "string"}}}],
}


@pytest.fixture(scope="module")
def ddl_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("touchy") / "touchy.json"
    path.write_text(json.dumps(DDL))
    return str(path)


def touchy_classes(ddl: str) -> tuple[type[Agent], type[Agent]]:
    """A real agent that would write to the disk and its in-memory simulation."""

    class SimulatedTouchy(Agent):
        name = "touchy"
        ddl_file = ddl
        simulation_safe = True

        def __init__(self, node: Any) -> None:
            super().__init__(node)
            self.touched = 0  # per node: each node has its own instance

        @action
        def touch(self, request: ActionRequest, reply: ActionReply) -> None:
            self.touched += 1
            reply["where"] = f"memory of {self.node.identity} ({self.touched})"

    class Touchy(Agent):
        name = "touchy"
        ddl_file = ddl

        @classmethod
        def simulation(cls) -> type[Agent] | None:
            return SimulatedTouchy

        @action
        def touch(self, request: ActionRequest, reply: ActionReply) -> None:
            raise AssertionError("a simulated node ran the real agent")

    return Touchy, SimulatedTouchy


class _NoSimulation(Agent):
    name = "nosim"


def test_the_default_simulation_is_the_agent_itself_only_when_safe() -> None:
    assert Rpcutil.simulation() is Rpcutil
    assert _NoSimulation.simulation() is None


def test_simulated_agents_maps_and_leaves_out(ddl_path: str) -> None:
    touchy, simulated = touchy_classes(ddl_path)
    hosted = simulated_agents({"rpcutil": Rpcutil, "touchy": touchy, "nosim": _NoSimulation})
    assert hosted == {"rpcutil": Rpcutil, "touchy": simulated}


@pytest.mark.parametrize("broken", ["unsafe", "renamed", "not a class"])
def test_a_wrong_simulation_is_refused_naming_the_agent(broken: str) -> None:
    class Unsafe(Agent):
        name = "bad"

    class Renamed(Agent):
        name = "other"
        simulation_safe = True

    answer: Any = {"unsafe": Unsafe, "renamed": Renamed, "not a class": "x"}[broken]

    class Bad(Agent):
        name = "bad"

        @classmethod
        def simulation(cls) -> type[Agent] | None:
            return answer  # type: ignore[no-any-return]

    with pytest.raises(TypeError, match=r"agent 'bad'.*simulation_safe = True"):
        simulated_agents({"bad": Bad})


def test_a_simulated_fleet_hosts_the_simulation_per_node(orch_fleet: FleetFactory,
                                                         ddl_path: str) -> None:
    touchy, _ = touchy_classes(ddl_path)
    fleet = orch_fleet(["n1", "n2"], agents=[touchy], simulated=True)
    assert fleet.agents == ["rpcutil", "touchy"]
    assert_all_ok(fleet.call("touchy", "touch"), expected=["n1", "n2"])
    result = fleet.call("touchy", "touch", nodes=["n1"])
    assert data_by_node(result) == {"n1": {"where": "memory of n1 (2)"}}
    assert data_by_node(fleet.call("touchy", "touch", nodes=["n2"])) == {
        "n2": {"where": "memory of n2 (2)"}}


def test_a_simulated_fleet_leaves_out_agents_without_simulation(
        orch_fleet: FleetFactory) -> None:
    fleet = orch_fleet(["n1"], agents=[_NoSimulation], simulated=True)
    assert fleet.agents == ["rpcutil"]
    real = orch_fleet(["n1"], agents=[_NoSimulation])
    assert real.agents == ["nosim", "rpcutil"]  # without simulated=True: the agent itself


def test_orch_sim_refuses_a_broken_simulation(ddl_path: str, monkeypatch: Any) -> None:
    touchy, _ = touchy_classes(ddl_path)
    monkeypatch.setattr(touchy, "simulation", classmethod(lambda cls: _NoSimulation))

    class Registry:
        def agents_for(self, settings: Any) -> dict[str, type[Agent]]:
            return {"touchy": touchy}

    with pytest.raises(SimError, match="agent 'touchy'"):
        build_fleet({"broker": "memory://"}, [], None, Registry())  # type: ignore[arg-type]


def test_orch_sim_hosts_simulations(ddl_path: str) -> None:
    from orch.core.hookspecs import hookimpl
    from orch.core.plugins import PluginRegistry

    touchy, simulated = touchy_classes(ddl_path)

    class Plugin:
        @hookimpl
        def orch_agents(self) -> list[type[Agent]]:
            return [touchy]

    registry = PluginRegistry.from_entry_points()
    assert registry.register(Plugin(), "touchy plugin", "tests")
    fleet = build_fleet({"broker": "memory://", "security": "insecure",
                         "agents": ["rpcutil", "touchy"]}, [], None, registry)
    try:
        assert fleet.agents == {"rpcutil": Rpcutil, "touchy": simulated}
    finally:
        fleet.services.close()
        fleet.transport.close()


def test_a_simulation_can_host_fewer_agents(tmp_path: Any) -> None:
    from orch.sim import SimConfig, SimError, Simulation

    def config(agents: tuple[str, ...]) -> SimConfig:
        return SimConfig(nodes=2, broker="memory://", state_dir=tmp_path, workers=0,
                         secure=False, agents=agents)

    simulation = Simulation(config(()))
    simulation.prepare()
    assert simulation.node_settings()["agents"] == ["rpcutil"]
    with pytest.raises(SimError, match=r"agent\(s\) nosuch cannot be simulated"):
        Simulation(config(("nosuch",))).prepare()
