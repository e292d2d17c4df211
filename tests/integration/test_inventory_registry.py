"""Registration through real ``orch server`` processes on RabbitMQ into real stores, read
back by ``orch nodes``, ``orch find --discovery-method inventory`` and ``orch jobs``."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from api_support import RegistryDaemon, inventory_config, postgres_schema
from orch_integration import (
    BROKERS,
    DEFAULT_NODES,
    READY_TIMEOUT,
    Fleet,
    FleetFactory,
    NodeSpec,
    clean_environment,
    client_security,
    orch_argv,
)

from orch.core.config import load_settings
from orch.core.inventory import InventoryStore, JobRecord
from orch.core.plugins import default_registry
from orch.testing import wait_until

BROKER = BROKERS["rabbitmq"]


def open_store(url: str) -> InventoryStore:
    return default_registry().inventory_store(url, load_settings(overrides={}))


def stored(url: str) -> dict[str, dict]:
    store = open_store(url)
    try:
        return {r.identity: {"facts": r.facts, "classes": r.classes, "agents": r.agents,
                             "stale": r.stale} for r in store.nodes()}
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/inventory.db"
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture
def registered_fleet(fleet_factory: FleetFactory, store_url: str,
                     tmp_path: Path) -> Iterator[tuple[Fleet, str, Path]]:
    """The default fleet on RabbitMQ, registering into ``store_url`` through one registry
    (and copying replies to it, for job history)."""
    config = inventory_config(tmp_path / "inventory.yaml", store_url, reply_copies=True)
    fleet = fleet_factory(BROKER, [], label="inv", env={"ORCH_CONFIG": str(config)})
    registry = RegistryDaemon(BROKER, fleet.collective, store_url, tmp_path).start()
    try:
        fleet.add(DEFAULT_NODES)
        wait_until(lambda: len(stored(store_url)) == len(DEFAULT_NODES), READY_TIMEOUT,
                 "every node registered")
        yield fleet, store_url, config
    finally:
        assert registry.stop() == 0, registry.log()


def test_nodes_register_on_start_and_again_when_facts_change(
        registered_fleet: tuple[Fleet, str, Path]) -> None:
    fleet, url, config = registered_fleet
    records = stored(url)
    assert records["db1"]["facts"]["role"] == "db"
    assert "postgresql" in records["db1"]["classes"]
    assert "rpcutil" in records["db1"]["agents"]

    daemon = fleet.daemons["web1"]
    daemon.facts_file.write_text(yaml.safe_dump({**fleet.spec("web1").facts, "role": "edge"}))
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: stored(url)["web1"]["facts"]["role"] == "edge", READY_TIMEOUT,
             "web1's new facts in the store")

    result = fleet.run_orch("nodes", "-F", "role=edge", "--fact", "datacenter", "--json",
                            env={"ORCH_CONFIG": str(config)})
    assert result.rc == 0, result.describe()
    assert [(n["identity"], n["facts"]) for n in result.json()["nodes"]] == \
        [("web1", {"datacenter": "ams"})]
    full = fleet.run_orch("nodes", "-I", "db1", "--full", env={"ORCH_CONFIG": str(config)})
    assert full.rc == 0, full.describe()
    assert "Inventory for db1 (from the store" in full.stdout
    assert "os.family => Debian" in full.stdout and "role::db" in full.stdout


FILTERS = [
    ["-F", "role=web"],
    ["-F", "cores>4"],
    ["-F", "os.family=/deb/i"],
    ["-C", "role::db"],
    ["-C", "/^role::(web|cache)$/"],
    ["-I", "/^web/"],
    ["-A", "rpcutil", "-F", "env=prod"],
    ["-W", "env=prod monitoring"],
    ["-S", "(role=web or role=db) and not env=dev"],
    ["-S", "datacenter=ams and monitoring"],
    ["-F", "role=nosuch"],
]


def test_inventory_discovery_agrees_with_broadcast_for_every_filter_kind(
        registered_fleet: tuple[Fleet, str, Path]) -> None:
    fleet, _, config = registered_fleet
    env = {"ORCH_CONFIG": str(config)}
    for args in FILTERS:
        answers = {}
        for method in ("broadcast", "inventory", "auto"):
            result = fleet.run_orch("find", *args, "--discovery-method", method, "--json",
                                    env=env)
            assert result.rc in (0, 1), result.describe()
            answers[method] = result.json()["nodes"]
        assert answers["inventory"] == answers["broadcast"] == answers["auto"], (args, answers)


def test_jobs_are_recorded_listed_and_shown(registered_fleet: tuple[Fleet, str, Path]) -> None:
    fleet, _, config = registered_fleet
    env = {"ORCH_CONFIG": str(config)}
    rpc = fleet.run_orch("rpc", "rpcutil", "get_fact", "fact=role", "-F", "env=prod",
                         "--discovery-method", "inventory", "--json", env=env)
    assert rpc.rc == 0, rpc.describe()
    request_id = rpc.json()["request_id"]
    listed = fleet.run_orch("jobs", "--json", env=env)
    assert listed.rc == 0, listed.describe()
    job = next(j for j in listed.json()["jobs"] if j["request_id"] == request_id)
    assert (job["agent"], job["action"], job["ok"], job["no_response"]) == \
        ("rpcutil", "get_fact", 3, 0)
    shown = fleet.run_orch("jobs", "show", request_id[:10], "--json", env=env)
    assert shown.rc == 0, shown.describe()
    document = shown.json()
    assert {r["sender"]: r["data"]["value"] for r in document["replies"]} == \
        {r["sender"]: r["data"]["value"] for r in rpc.json()["replies"]}
    text = fleet.run_orch("jobs", "show", request_id, env=env)
    assert "Finished processing 3 / 3 hosts" in text.stdout, text.describe()
    unknown = fleet.run_orch("jobs", "show", "nosuchjob", env=env)
    assert unknown.rc == 1 and "no job 'nosuchjob'" in unknown.stderr


def test_a_job_survives_its_client_being_killed(
        registered_fleet: tuple[Fleet, str, Path]) -> None:
    """The client records the job and web1's reply, is killed while web2 (stopped) has not
    answered; web2 then answers to nobody, and the registry records its reply copy."""
    fleet, url, config = registered_fleet
    env = {**client_security(), "ORCH_CONFIG": str(config), "ORCH_BROKER": fleet.broker,
           "ORCH_COLLECTIVE": fleet.collective}
    web2 = fleet.daemons["web2"].proc
    assert web2 is not None
    web2.send_signal(signal.SIGSTOP)
    try:
        client = subprocess.Popen(
            [*orch_argv(), "rpc", "rpcutil", "ping", "-I", "web1", "-I", "web2",
             "--timeout", "60"],
            env=clean_environment(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def replied_by(*senders: str) -> Callable[[], list[JobRecord]]:
                def check() -> list[JobRecord]:
                    store = open_store(url)
                    try:
                        jobs = [j for j in store.jobs() if j.action == "ping"]
                        got = {r.sender for r in jobs[0].replies} if jobs else set()
                        return jobs if got >= set(senders) else []
                    finally:
                        store.close()
                return check

            wait_until(replied_by("web1"), READY_TIMEOUT, "the job and web1's reply stored")
        finally:
            client.kill()
            client.wait(timeout=10)
    finally:
        web2.send_signal(signal.SIGCONT)
    job = wait_until(replied_by("web1", "web2"), READY_TIMEOUT,
                   "web2's late reply recorded by the registry")[0]
    shown = fleet.run_orch("jobs", "show", job.request_id, "--json",
                           env={"ORCH_CONFIG": str(config)})
    document = shown.json()
    assert [r["sender"] for r in document["replies"]] == ["web1", "web2"]
    assert document["missing"] == []
    assert "stopped before it finished" in document["error"]


def test_two_registries_share_one_postgresql(fleet_factory: FleetFactory,
                                             tmp_path: Path) -> None:
    with postgres_schema("two") as url:
        config = inventory_config(tmp_path / "inventory.yaml", url)
        fleet = fleet_factory(BROKER, [], label="inv2", env={"ORCH_CONFIG": str(config)})
        first = RegistryDaemon(BROKER, fleet.collective, url, tmp_path, "first").start()
        second = RegistryDaemon(BROKER, fleet.collective, url, tmp_path, "second").start()
        try:
            fleet.add(DEFAULT_NODES[:2])
            wait_until(lambda: len(stored(url)) == 2, READY_TIMEOUT, "two nodes registered")
            assert first.stop() == 0, first.log()
            fleet.add([NodeSpec("late1", {"role": "late"}, ("base",))])
            wait_until(lambda: "late1" in stored(url), READY_TIMEOUT,
                     "a node registered through the remaining registry")
            assert "stored" in second.log()
        finally:
            first.stop()
            assert second.stop() == 0, second.log()
        both = first.log() + second.log()
        assert "registration rejected" not in both, both


def test_registry_without_a_store_is_a_usage_error() -> None:
    result = subprocess.run([*orch_argv(), "registry", "--broker", BROKER],
                            env=clean_environment(client_security()), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "needs a store" in result.stderr, result.stderr




def test_a_silent_node_the_inventory_names_is_reported_with_its_last_seen_time(
        registered_fleet: tuple[Fleet, str, Path]) -> None:
    fleet, _, config = registered_fleet
    fleet.daemons["web2"].kill()
    result = fleet.run_orch("rpc", "rpcutil", "ping", "-F", "role=web", "--timeout", "3",
                            "--discovery-method", "inventory", env={"ORCH_CONFIG": str(config)})
    assert result.rc == 1, result.describe()
    assert "No response from 1 node(s)" in result.stdout, result.describe()
    assert "web2 (last seen 20" in result.stdout, result.describe()
    # --json carries the same note (issue 12).
    result = fleet.run_orch("rpc", "rpcutil", "ping", "-F", "role=web", "--timeout", "3",
                            "--discovery-method", "inventory", "--json",
                            env={"ORCH_CONFIG": str(config)})
    document = result.json()
    assert document["missing"] == ["web2"], result.describe()
    assert document["notes"]["web2"].startswith("last seen 20"), result.describe()
    assert set(document["notes"]) == {"web2"}, result.describe()


def test_a_new_node_is_discoverable_from_the_inventory(
        registered_fleet: tuple[Fleet, str, Path]) -> None:
    """Presence only; how soon is measured in bench/test_bench_inventory.py."""
    fleet, _, config = registered_fleet
    fleet.add([NodeSpec("fresh1", {"role": "new"}, ("base",))])

    def found() -> bool:
        result = fleet.run_orch("find", "-F", "role=new", "--discovery-method", "inventory",
                                "--json", env={"ORCH_CONFIG": str(config)})
        return bool(result.rc == 0 and result.json()["nodes"] == ["fresh1"])

    wait_until(found, READY_TIMEOUT, "fresh1 found by inventory discovery")


def test_a_registry_started_after_the_fleet_knows_it_at_once(
        fleet_factory: FleetFactory, tmp_path: Path) -> None:
    """The nodes registered before any registry listened (and re-register only every
    300 s): the registry's seeding asks the live fleet when it starts."""
    store = f"sqlite:///{tmp_path}/inventory.db"
    config = inventory_config(tmp_path / "inventory.yaml", store)
    fleet = fleet_factory(BROKER, DEFAULT_NODES[:3], label="seed",
                          env={"ORCH_CONFIG": str(config)})
    registry = RegistryDaemon(BROKER, fleet.collective, store, tmp_path).start()
    try:
        wait_until(lambda: sorted(stored(store)) == sorted(fleet.alive()), READY_TIMEOUT,
                 "the fleet seeded into the store")
        assert stored(store)["db1"]["facts"]["role"] == "db"
    finally:
        assert registry.stop() == 0, registry.log()
    assert "seed: 3 node(s) from the live fleet" in registry.log(), registry.log()


def test_orch_inventory_reads_the_store_without_asking_the_node(
        registered_fleet: tuple[Fleet, str, Path]) -> None:
    """``orch inventory --from-inventory``: a node that is gone is still described, as it
    last registered, with where that came from and how old it is."""
    fleet, _, config = registered_fleet
    fleet.daemons["db1"].kill()
    env = {"ORCH_CONFIG": str(config)}
    result = fleet.run_orch("inventory", "--from-inventory", "db1", env=env)
    assert result.rc == 0, result.describe()
    assert "Inventory for db1 (from the inventory store, registered 20" in result.stdout, (
        result.describe())
    assert "postgresql" in result.stdout and "role => db" in result.stdout, result.describe()
    # Named nodes and a filter: the named nodes the filter selects (as without the flag).
    listed = fleet.run_orch("inventory", "--from-inventory", "db1", "web1", "-F", "role=db",
                            "--json", env=env)
    assert listed.rc == 0, listed.describe()
    document = listed.json()
    assert document["source"] == "inventory", document
    (node,) = document["nodes"]
    assert node["identity"] == "db1" and node["data"]["facts"]["role"] == "db", document
    assert node["age_seconds"] >= 0 and node["stale"] is False, document
    assert document["missing"] == [], document
