"""The simulated fleet's building blocks: node specs, their distribution, slicing, agents,
and ``orch sim``'s refusals of bad arguments. Serving is tested on RabbitMQ
(tests/integration/test_orch_sim.py) and through ``orch demo`` (test_cli_memory.py)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orch.agents.rpcutil import Rpcutil
from orch.cli.main import cli
from orch.core.agent import Agent
from orch.core.config import load_settings
from orch.core.filter import FilterEngine
from orch.core.plugins import default_registry
from orch.core.protocol import valid_name
from orch.security.actionpolicy import ActionPolicySettings
from orch.security.policyfile import parse_policy
from orch.sim import SimConfig, SimError, Simulation
from orch.sim.facts import (
    DATACENTERS,
    ENVIRONMENTS,
    ROLES,
    identity_width,
    node_spec,
    node_specs,
    partition,
)
from orch.sim.policy import with_explicit_policy
from orch.sim.worker import simulated_agents


def test_a_node_is_a_function_of_seed_and_index() -> None:
    assert node_spec(42, seed=7) == node_spec(42, seed=7)
    assert node_spec(42, seed=7) != node_spec(42, seed=8)
    assert node_spec(42, seed=7) != node_spec(43, seed=7)


def test_slices_built_apart_make_the_whole_fleet() -> None:
    whole = node_specs(1001, seed=3)
    pieces = [spec for first, last in partition(1001, 4)
              for spec in node_specs(1001, 3, first, last)]
    assert pieces == whole


def test_identities_are_unique_valid_and_padded_to_the_fleet_size() -> None:
    specs = node_specs(10_000)
    identities = [spec.identity for spec in specs]
    assert len(set(identities)) == 10_000
    assert all(valid_name(identity) for identity in identities)
    assert identity_width(10_000) == 5
    assert specs[0].identity.split(".")[0].endswith("-00001")
    assert node_specs(5)[4].identity.split(".")[0].endswith("-005")


def test_facts_follow_the_declared_distribution() -> None:
    specs = node_specs(10_000, seed=11)
    for fact, table in (("role", ROLES), ("environment", ENVIRONMENTS),
                        ("datacenter", DATACENTERS)):
        counts = Counter(spec.facts[fact] for spec in specs)
        shares = {name: (value if isinstance(value, int) else value[0])
                  for name, value in table.items()}
        total = sum(shares.values())
        for name, share in shares.items():
            expected = 10_000 * share / total
            # 10,000 draws: the standard deviation of a 5 % share is about 22 nodes.
            assert abs(counts[name] - expected) < 150, (fact, name, counts[name], expected)


def test_facts_are_consistent_within_a_node() -> None:
    for spec in node_specs(500, seed=5):
        facts: dict[str, Any] = dict(spec.facts)
        role = facts["role"]
        assert spec.identity == f"{facts['hostname']}.{facts['datacenter']}"
        assert facts["fqdn"].startswith(spec.identity + ".")
        assert facts["processorcount"] in ROLES[role][2]
        assert facts["memorysize_mb"] in ROLES[role][3]
        assert {"profile::base", f"role::{role}", *ROLES[role][1]} == set(spec.classes)
        assert facts["os"]["family"] == ("RedHat" if facts["os"]["name"] == "RedHat"
                                         else "Debian")
        assert facts["is_virtual"] == (facts["virtual"] != "physical")


@pytest.mark.parametrize(("count", "parts"), [(10, 3), (200, 2), (3, 8), (10_000, 7), (1, 1)])
def test_partition_covers_every_node_once_in_near_equal_slices(count: int, parts: int) -> None:
    slices = partition(count, parts)
    assert len(slices) == min(count, parts)
    numbers = [n for first, last in slices for n in range(first, last + 1)]
    assert numbers == list(range(1, count + 1))
    sizes = [last - first + 1 for first, last in slices]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("call", [lambda: node_specs(0), lambda: node_spec(0),
                                  lambda: node_specs(10, 7, 5, 11), lambda: partition(0, 2)])
def test_impossible_fleets_are_refused(call: Any) -> None:
    with pytest.raises(ValueError):
        call()


class _Unsafe(Agent):
    name = "unsafe"


class _Registry:
    def agents(self, settings: object) -> dict[str, type[Agent]]:
        return {"rpcutil": Rpcutil, "unsafe": _Unsafe}


def test_only_agents_safe_to_simulate_are_hosted() -> None:
    assert Rpcutil.simulation_safe and not _Unsafe.simulation_safe
    assert simulated_agents(_Registry(), None) == ["rpcutil"]  # type: ignore[arg-type]


def test_a_simulation_refuses_impossible_configurations(tmp_path: Path) -> None:
    with pytest.raises(SimError, match="at least 1"):
        Simulation(SimConfig(nodes=0, broker="memory://", state_dir=tmp_path))
    with pytest.raises(SimError, match="0 or more"):
        Simulation(SimConfig(nodes=5, broker="memory://", state_dir=tmp_path, workers=-1))
    with pytest.raises(SimError, match="one process"):
        Simulation(SimConfig(nodes=5, broker="memory://", state_dir=tmp_path, workers=2))


def test_an_in_process_simulation_writes_client_settings_and_serves(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from orch.core.client import Client

    caplog.set_level(logging.WARNING)
    config = SimConfig(nodes=12, broker="memory://", state_dir=tmp_path / "state",
                       collective="simunit", workers=0)
    with Simulation(config) as simulation:
        text = simulation.client_config.read_text()
        assert "security: \"x509\"" in text and "collective: \"simunit\"" in text
        settings = load_settings(str(simulation.client_config), environ={})
        client = Client(settings)
        try:
            result = client.ping(nodes=[spec.identity for spec in node_specs(12)])
        finally:
            client.close()
        assert sorted(result.ok) == sorted(spec.identity for spec in node_specs(12))
        assert not result.rejected
        fleet = simulation.fleet()
        assert fleet is not None
        assert {node.identity for node in fleet.nodes} == set(result.ok)
        # rpcutil, and simulations (orch-puppet's when installed): never a real agent.
        assert all("rpcutil" in node.view().agents for node in fleet.nodes)
        assert all(cls.simulation_safe for cls in fleet.agents.values())
    assert (tmp_path / "state" / "client" / "sim.operator.key").stat().st_mode & 0o077 == 0
    # The nodes' services run with an explicit policy: no warning naming this machine as a
    # node without one.
    assert not [r.getMessage() for r in caplog.records if "policy_dir" in r.getMessage()]


def _sim(*args: str) -> Any:
    return CliRunner().invoke(cli, ["sim", *args], catch_exceptions=False)


@pytest.mark.parametrize("nodes", ["0", "-5"])
def test_orch_sim_refuses_no_nodes(nodes: str, tmp_path: Path) -> None:
    result = _sim("--nodes", nodes, "--broker", "amqp://127.0.0.1:1//",
                  "--state-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "--nodes must be at least 1" in result.output


def test_orch_sim_refuses_an_unwritable_state_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # Under a regular file nothing can be created, whoever runs the test (even root).
    result = _sim("--nodes", "5", "--broker", "amqp://127.0.0.1:1//",
                  "--state-dir", str(blocker / "state"))
    assert result.exit_code == 2
    assert "is not writable" in result.output and "--state-dir" in result.output


def test_orch_sim_refuses_memory_broker_and_zero_workers(tmp_path: Path) -> None:
    result = _sim("--nodes", "5", "--broker", "memory://", "--state-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "memory://" in result.output and "orch demo" in result.output
    result = _sim("--nodes", "5", "--broker", "amqp://127.0.0.1:1//", "--workers", "0",
                  "--state-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "--workers must be at least 1" in result.output


def test_orch_sim_refuses_a_missing_ca(tmp_path: Path) -> None:
    result = _sim("--nodes", "5", "--broker", "amqp://127.0.0.1:1//", "--ca",
                  str(tmp_path / "no-ca"), "--state-dir", str(tmp_path / "state"))
    assert result.exit_code == 2
    assert "no CA in" in result.output


def test_issued_certificates_are_kept_for_the_next_start(tmp_path: Path) -> None:
    import datetime as dt

    from orch.security import pki
    from orch.sim.pki import SimCA, load_issued, store_issued
    from orch.sim.worker import issue_all

    ca = SimCA.open(tmp_path / "ca", create=True)
    specs = node_specs(4)
    cache = tmp_path / "issued" / "slice.json"
    first = issue_all(ca, specs, cache=cache)
    again = issue_all(ca, specs, cache=cache)
    assert [p.certificate.serial_number for p in first.values()] == \
        [p.certificate.serial_number for p in again.values()]  # type: ignore[attr-defined]
    assert cache.stat().st_mode & 0o077 == 0

    # Another CA's certificates, and ones about to expire, are issued anew.
    other = SimCA.open(tmp_path / "other", create=True)
    assert load_issued(cache, other) == {}
    ca_cert, ca_key = pki.load_ca(tmp_path / "ca")
    now = dt.datetime.now(dt.UTC)
    expiring = pki.issue_certificate(ca_cert, ca_key, "web-001.ams1", pki.ROLE_NODE,
                                     valid_until=now + dt.timedelta(hours=1))
    store_issued(cache, ca, {"web-001.ams1": expiring})
    assert load_issued(cache, ca) == {}
    cache.write_text("not json")
    assert load_issued(cache, ca) == {}


def test_orch_sim_refuses_a_bad_config_file(tmp_path: Path) -> None:
    missing = _sim("--nodes", "5", "--broker", "amqp://127.0.0.1:1//", "--config",
                   str(tmp_path / "none.yaml"), "--state-dir", str(tmp_path / "state"))
    assert missing.exit_code == 2 and "cannot read config file" in missing.output
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    result = _sim("--nodes", "5", "--broker", "amqp://127.0.0.1:1//", "--config", str(listed),
                  "--state-dir", str(tmp_path / "state"))
    assert result.exit_code == 2 and "must be a mapping" in result.output


def test_every_password_of_a_broker_list_is_masked(tmp_path: Path) -> None:
    """A cluster's comma-separated list: kombu masks only the first URL of such a string."""
    urls = "amqp://u:secret1@mq1//,amqp://u:secret2@mq2//,amqp://u:secret3@mq3//"
    shown = Simulation(SimConfig(nodes=1, broker=urls, state_dir=tmp_path)).display_url
    assert "secret" not in shown
    assert shown.count("amqp://u:**@") == 3


def test_simulated_nodes_get_an_explicit_policy_unless_the_config_names_one(
        tmp_path: Path) -> None:
    settings = with_explicit_policy({"plugins": {"actionpolicy": {"policy_default": "deny"},
                                                 "other": {"x": 1}}}, tmp_path)
    section = settings["plugins"]["actionpolicy"]
    assert section["policy_default"] == "deny" and settings["plugins"]["other"] == {"x": 1}
    policy = Path(section["policy_dir"]) / "default.policy"
    # A valid policy file that allows every caller, where the plugin will look for it.
    loaded = load_settings(overrides=settings, environ={})
    parsed = parse_policy(policy.read_text(), str(policy),
                          FilterEngine.for_registry(default_registry(), loaded))
    assert parsed.default is True and parsed.rules == ()
    assert loaded.section("actionpolicy", ActionPolicySettings).policy_dir == str(policy.parent)

    mine = {"plugins": {"actionpolicy": {"policy_dir": "/srv/policies"}}}
    assert with_explicit_policy(mine, tmp_path / "b") == mine
    assert with_explicit_policy({"policy_dir": "/srv/p"}, tmp_path / "c") == {
        "policy_dir": "/srv/p"}
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
