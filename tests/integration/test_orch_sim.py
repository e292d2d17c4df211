"""``orch sim`` on RabbitMQ: 200 simulated nodes in two worker processes, driven by the
real CLI with the client settings the simulation wrote, then stopped with SIGTERM."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from orch_integration import (
    BROKERS,
    CLI_TIMEOUT,
    DISCOVERY_WINDOW,
    CliResult,
    clean_environment,
    new_collective,
    orch_argv,
    run_orch,
)

from orch.sim.facts import node_specs
from orch.testing import SimProcess, purge_collective

pytestmark = pytest.mark.integration

NODES = 200


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    state = tmp_path_factory.mktemp("orch-sim")
    collective = new_collective("sim")
    process = SimProcess.start(orch_argv(), NODES, BROKERS["rabbitmq"], state,
                               "--workers", "2", "--collective", collective,
                               env=clean_environment())
    try:
        yield process
    finally:
        problems = process.stop()
        purge_collective(BROKERS["rabbitmq"], collective)
    assert problems == []


def _orch(sim: SimProcess, *args: str, timeout: float = CLI_TIMEOUT) -> CliResult:
    """``orch ARGS`` with ORCH_CONFIG: broker, collective and certificates must all come
    from the settings file the simulation wrote. Broadcast discovery waits the suite's
    :data:`DISCOVERY_WINDOW` after the latest reply, as every CLI run of the suite does:
    with orch's 0.2 s, a simulation worker descheduled that long on a busy machine had
    87 of its nodes "not found" by a broadcast (seen with two test workers)."""
    started = time.monotonic()
    env = clean_environment({"ORCH_CONFIG": str(sim.client_config),
                             "ORCH_DISCOVERY_WINDOW": str(DISCOVERY_WINDOW)})
    proc = subprocess.run([*orch_argv(), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    return CliResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def test_ping_gets_a_signed_reply_from_every_simulated_node(sim: SimProcess,
                                                            tmp_path: Path) -> None:
    identities = sorted(spec.identity for spec in node_specs(NODES))
    nodes_file = tmp_path / "nodes.txt"
    nodes_file.write_text("\n".join(identities) + "\n")
    result = _orch(sim, "ping", "--json", "--nodes", str(nodes_file))
    assert result.rc == 0, result.describe()
    data = result.json()
    assert sorted(reply["sender"] for reply in data["replies"]) == identities
    assert data["missing"] == [] and data["rejected"] == []
    assert len(sim.worker_pids) == 2
    # The nodes run with the simulation's explicit policy: no warning naming this machine.
    assert not [line for line in sim.output if "policy_dir" in line], sim.output

    broadcast = _orch(sim, "ping", "--json")
    assert broadcast.rc == 0, broadcast.describe()
    assert sorted(r["sender"] for r in broadcast.json()["replies"]) == identities


def test_rpc_get_fact_answers_from_the_simulated_facts(sim: SimProcess) -> None:
    specs = {spec.identity: spec for spec in node_specs(NODES)}
    chosen = sorted(specs)[:3]
    args = [arg for name in chosen for arg in ("-I", name)]
    result = _orch(sim, "rpc", "rpcutil", "get_fact", "fact=os.name", "--json", *args)
    assert result.rc == 0, result.describe()
    values = {reply["sender"]: reply["data"]["value"] for reply in result.json()["replies"]}
    assert values == {name: specs[name].facts["os"]["name"] for name in chosen}


def test_simulated_nodes_host_only_agents_safe_to_simulate(sim: SimProcess) -> None:
    """rpcutil, and the installed agents that offer a simulation (orch-puppet's, when it
    is installed): nothing that could act on this machine."""
    from orch.core.config import load_settings
    from orch.core.plugins import default_registry
    from orch.sim.worker import simulated_agents

    name = node_specs(NODES)[0].identity
    result = _orch(sim, "rpc", "rpcutil", "agent_inventory", "-I", name, "--json")
    assert result.rc == 0, result.describe()
    (reply,) = result.json()["replies"]
    hosted = [agent["agent"] for agent in reply["data"]["agents"]]
    assert "rpcutil" in hosted
    assert hosted == simulated_agents(default_registry(), load_settings(environ={}))


def test_sigterm_stops_every_worker(tmp_path: Path) -> None:
    collective = new_collective("simstop")
    process = SimProcess.start(orch_argv(), 20, BROKERS["rabbitmq"], tmp_path / "state",
                               "--workers", "2", "--collective", collective,
                               env=clean_environment())
    assert len(process.worker_pids) == 2
    try:
        assert process.stop() == []  # SIGTERM; no worker outlives the simulation
        assert process.process.returncode == 0
    finally:
        purge_collective(BROKERS["rabbitmq"], collective)


def test_unreachable_broker_is_a_usage_error(tmp_path: Path) -> None:
    result = run_orch("sim", "--nodes", "5", "--broker", "amqp://guest:guest@127.0.0.1:1//",
                      "--state-dir", str(tmp_path), timeout=30)
    assert result.rc == 2, result.describe()
    assert "127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr
