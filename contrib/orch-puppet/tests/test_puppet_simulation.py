"""Simulated Puppet (``SimulatedPuppet``): what ``orch demo`` and ``orch sim`` nodes host.

Driven through a real simulated fleet (``orch_fleet(simulated=True)``, signed, in memory)
on a fake clock, so runs "finish" without waiting. The host must never be touched: every
test here runs with ``subprocess.Popen`` replaced by a recorder and ``puppet``/``facter``/
``ruby`` shims first on PATH.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from orch.core.agent import simulated_agents
from orch.testing import FleetFactory, OrchFleet, assert_all_ok, data_by_node

from orch_puppet import simulation
from orch_puppet.agent import PuppetAgent
from orch_puppet.simulation import RUNINTERVAL, SimulatedNode, SimulatedPuppet

NODES = {f"web{i}": {"role": "web"} for i in range(1, 9)} | {"db1": {"role": "db"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(simulation, "clock", fake)
    return fake


@pytest.fixture
def host_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Record any process start and any PATH lookup of Puppet's commands."""
    started: list[Any] = []
    shims = tmp_path / "shims"
    shims.mkdir()
    log = tmp_path / "shims.log"
    for name in ("puppet", "facter", "ruby"):
        shim = shims / name
        shim.write_text(f"#!/bin/sh\necho {name} \"$@\" >> {log}\nexit 1\n")
        shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ.get('PATH', '')}")

    class Recorder:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            started.append(args[0] if args else kwargs.get("args"))
            raise AssertionError(f"a simulated node started a process: {started[-1]}")

    monkeypatch.setattr(subprocess, "Popen", Recorder)
    yield started
    assert started == [] and not log.exists(), (started, log.exists() and log.read_text())


def fleet_of(orch_fleet: FleetFactory, nodes: Any = None) -> OrchFleet:
    return orch_fleet(NODES if nodes is None else nodes, agents=["puppet"], simulated=True)


def test_puppet_offers_its_simulation() -> None:
    assert PuppetAgent.simulation() is SimulatedPuppet
    assert simulated_agents({"puppet": PuppetAgent}) == {"puppet": SimulatedPuppet}


def test_a_run_applies_then_leaves_a_summary(orch_fleet: FleetFactory, clock: Clock,
                                             host_untouched: list[Any]) -> None:
    fleet = fleet_of(orch_fleet)
    node = "web3"
    before = data_by_node(fleet.call("puppet", "status", nodes=[node]))[node]
    if before["applying"]:  # its daemon happens to be running: let that run end first
        clock.now += 120
    started = fleet.call("puppet", "runonce", nodes=[node], force=True)
    assert_all_ok(started, expected=[node])
    initiated = data_by_node(started)[node]["initiated_at"]
    status = data_by_node(fleet.call("puppet", "status", nodes=[node]))[node]
    assert status["applying"] and status["status"] == "applying"
    again = fleet.call("puppet", "runonce", nodes=[node])
    assert "already applying" in again.replies[node].statusmsg
    clock.now += 120  # longer than any simulated run
    status = data_by_node(fleet.call("puppet", "status", nodes=[node]))[node]
    assert not status["applying"] and status["lastrun"] > initiated
    summary = data_by_node(fleet.call("puppet", "last_run_summary", nodes=[node]))[node]
    assert summary["lastrun"] == status["lastrun"] and summary["since_lastrun"] >= 0
    assert summary["run_status"] in ("changed", "unchanged", "failed")
    assert sum(summary["type_distribution"].values()) > 0
    assert summary["summary"]["resources"]["total"] == summary["total_resources"]


def test_locks_are_per_node(orch_fleet: FleetFactory, clock: Clock,
                            host_untouched: list[Any]) -> None:
    fleet = fleet_of(orch_fleet)
    enabled = [n for n, d in data_by_node(fleet.call("puppet", "status")).items()
               if d["enabled"]]
    first, second = enabled[:2]
    result = fleet.call("puppet", "disable", nodes=[first], message="kernel patching")
    assert data_by_node(result)[first]["status"] == "Disabled the Puppet agent: kernel patching"
    states = data_by_node(fleet.call("puppet", "status", nodes=[first, second]))
    assert states[first]["status"] == "disabled"
    assert states[first]["disable_message"] == "kernel patching"
    assert states[second]["enabled"]
    refused = fleet.call("puppet", "runonce", nodes=[first])
    assert refused.replies[first].statusmsg == (
        "Puppet is disabled (kernel patching); not starting a run: enable it first")
    again = fleet.call("puppet", "disable", nodes=[first])
    assert "already disabled (kernel patching)" in again.replies[first].statusmsg
    # A disabled daemon skips its scheduled runs.
    lastrun = states[first]["lastrun"]
    clock.now += 3 * RUNINTERVAL
    assert data_by_node(fleet.call("puppet", "status", nodes=[first]))[first]["lastrun"] == \
        lastrun
    assert_all_ok(fleet.call("puppet", "enable", nodes=[first]), expected=[first])
    assert "already enabled" in fleet.call("puppet", "enable",
                                           nodes=[first]).replies[first].statusmsg


def test_the_same_identity_starts_the_same(clock: Clock) -> None:
    one, two = (SimulatedNode("web-0042.fra1", "web", clock.now) for _ in range(2))
    assert one.summary == two.summary and one.disabled == two.disabled
    assert one.total == two.total and one.daemon == two.daemon


def test_a_fleet_looks_like_a_fleet(clock: Clock) -> None:
    """Over many nodes: most healthy, a few disabled, some runs failed, some never ran."""
    nodes = [SimulatedNode(f"node{i:04d}", "web", clock.now) for i in range(2000)]
    outcomes = [simulation.state.run_outcome(n.summary, n.report) for n in nodes]
    failed = sum(o.failed for o in outcomes)
    no_catalog = sum("no catalog" in o.failure for o in outcomes)
    assert 0 < no_catalog < failed < 0.15 * len(nodes)
    assert 0 < sum(n.disabled is not None for n in nodes) < 0.06 * len(nodes)
    assert 0 < sum(not n.summary for n in nodes) < 0.05 * len(nodes)
    assert sum(n.current is not None for n in nodes) < 0.05 * len(nodes)


def test_daemons_run_on_their_schedule(clock: Clock) -> None:
    node = next(n for i in range(50)
                if (n := SimulatedNode(f"d{i}", "db", clock.now)).daemon
                and n.disabled is None and n.summary)
    runs = node.runs
    clock.now += 2 * RUNINTERVAL + 300
    node.advance(clock.now)
    assert node.runs == runs + 2
    assert clock.now - simulation.state.last_run(node.summary) < RUNINTERVAL + 300


def test_resource_refused_as_on_a_real_node(orch_fleet: FleetFactory, clock: Clock,
                                            host_untouched: list[Any]) -> None:
    fleet = fleet_of(orch_fleet, ["n1"])
    result = fleet.call("puppet", "resource", nodes=["n1"], type="Service", name="nginx",
                        properties={"ensure": "running"})
    assert "allows no resource types" in result.replies["n1"].statusmsg


def test_invalid_input_is_refused(orch_fleet: FleetFactory, clock: Clock,
                                  host_untouched: list[Any]) -> None:
    fleet = fleet_of(orch_fleet, ["n1"])
    refused = fleet.call("puppet", "runonce", nodes=["n1"], splaylimit=0)
    assert "splaylimit" in refused.replies["n1"].statusmsg
