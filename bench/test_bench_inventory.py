"""The inventory's figures (issue 12): discovery from the store over 1,000 and 10,000
registered nodes, registry ingest (registrations per second) on SQLite and PostgreSQL,
and the time from ``orch server`` start to discoverable.

Run: ``python -m pytest bench/test_bench_inventory.py --benchmark-only -p no:cacheprovider``.
Needs PostgreSQL on 127.0.0.1:5432 (trust, database ``test``; each run uses a schema of its
own and drops it) and RabbitMQ for the start-to-discoverable and broadcast figures. Nodes
are drawn from ``orch.sim.facts`` (7 roles, 3 environments, 3 datacenters, ~20 facts each).

After loading a PostgreSQL store the benchmark runs ``VACUUM ANALYZE`` on its tables, as
autovacuum does on a store in service: without it (right after 250,000 rows are inserted)
every index-only scan also reads the table's pages and the figures describe a store no
registry leaves behind. For comparison, broadcast discovery (the core's, asking the live
fleet) is measured with the same filters over 1,000 simulated nodes served in this process
(:class:`orch.core.fleet.Fleet`) on RabbitMQ.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from bench_support import (
    AMQP_URL,
    client_settings,
    delete_exchanges,
    new_collective,
    orch_env,
    orch_executable,
)

from orch.core.client import Client
from orch.core.config import load_settings
from orch.core.fleet import Fleet
from orch.core.inventory import NodeRecord
from orch.core.plugins import default_registry
from orch.inventory import registration
from orch.inventory.discovery import InventoryDiscovery
from orch.inventory.registry import Registry
from orch.sim.facts import node_specs

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
STORES = ("sqlite", "postgresql")
FILTERS: dict[str, tuple[str, str] | None] = {
    "none": None,
    "fact": ("fact", "role=web"),
    "class": ("class", "role::db"),
    "fact-regex": ("fact", "os.family=~/^Deb/"),
    "identity": ("identity", "/^db-/"),
    "compound": ("compound", "role=web and datacenter=ams1"),
}


def records(count: int, collective: str = "orch") -> list[NodeRecord]:
    now = time.time()
    return [NodeRecord(spec.identity, collective, spec.facts, tuple(sorted(spec.classes)),
                       ("rpcutil",), "0.1", now, now) for spec in node_specs(count)]


@pytest.fixture(scope="module", params=STORES)
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tempfile.mkdtemp(prefix='orch-bench-inv-')}/inventory.db"
        return
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{POSTGRES}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def vacuum(url: str) -> None:
    """What autovacuum does to a store in service: statistics and the visibility map."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("orch_nodes", "orch_node_values", "orch_distinct_values"):
            conn.execute(f"VACUUM ANALYZE {table}")


def client_for(url: str, collective: str = "orch") -> Client:
    return Client(load_settings(overrides={
        "broker": "memory://", "security": "insecure", "collective": collective,
        "plugins": {"inventory": {"store": url}}}, environ={}))


@pytest.mark.parametrize("count", [1_000, 10_000])
@pytest.mark.parametrize("kind", sorted(FILTERS))
def test_discovery_from_the_store(benchmark: Any, store_url: str, count: int,
                                  kind: str) -> None:
    collective = f"c{count}"
    store = default_registry().inventory_store(store_url, load_settings(environ={}))
    if not store.fresh(collective, 0):
        store.upsert_nodes(records(count, collective))
        if store_url.startswith("postgresql"):
            vacuum(store_url)
    store.close()
    with client_for(store_url, collective) as client:
        spec = FILTERS[kind]
        filter = {spec[0]: [client.filters.parse(*spec)]} if spec else {}
        method = InventoryDiscovery()
        found = benchmark.pedantic(method.discover, (client, filter, "rpcutil"),
                                   rounds=10, warmup_rounds=1)
    assert found, "the filter selected nobody: not a measurement of a real discovery"
    benchmark.extra_info.update(nodes=count, selected=len(found), store=store_url[:10],
                                loadavg=os.getloadavg())


@pytest.fixture(scope="module")
def fleet1000() -> Iterator[Client]:
    """1,000 simulated nodes (the store's own ``node_specs``) answering on RabbitMQ."""
    settings = client_settings(new_collective(), AMQP_URL)
    fleet = Fleet(settings, node_specs(1_000)).start(timeout=180)
    client = Client(settings)
    try:
        yield client
    finally:
        client.close()
        fleet.stop()
        delete_exchanges(settings.collective, AMQP_URL)


@pytest.mark.parametrize("kind", sorted(FILTERS))
def test_broadcast_discovery_for_comparison(benchmark: Any, fleet1000: Client,
                                            kind: str) -> None:
    """The same filters by broadcast over 1,000 live nodes: publish, then wait for replies
    until ``discovery_window`` passes without one (the core's adaptive discovery)."""
    client = fleet1000
    spec = FILTERS[kind]
    filter = {spec[0]: [client.filters.parse(*spec)]} if spec else {}
    method = client.registry.discovery_methods()["broadcast"]
    found = benchmark.pedantic(method.discover, (client, filter, "rpcutil"), rounds=3,
                               warmup_rounds=1)
    assert found, "the filter selected nobody: not a measurement of a real discovery"
    benchmark.extra_info.update(nodes=1_000, selected=len(found), method="broadcast",
                                loadavg=os.getloadavg())


@pytest.mark.parametrize("mode", ["new", "unchanged"])
def test_registry_ingest(benchmark: Any, store_url: str, mode: str) -> None:
    """1,000 registrations through the registry's writer (verify, batch, upsert): of nodes
    the store has never seen (``new``), or re-registering as they were (``unchanged``,
    the steady state of a fleet on its interval). Security ``insecure``: the store's
    cost, not signature checks (see test_bench_security.py for those)."""
    collective = f"ingest{uuid.uuid4().hex[:6]}"
    settings = load_settings(overrides={
        "broker": "memory://", "security": "insecure", "collective": collective,
        "plugins": {"inventory": {"store": store_url}}}, environ={})
    registry = Registry(settings, default_registry(), identity="bench")
    specs = records(1_000)

    def batch(prefix: str) -> list[bytes]:
        return [registration.seal(registration.registration_data(
            f"{prefix}{r.identity}", collective, r.facts, frozenset(r.classes),
            frozenset(r.agents), 1.0), registry.security) for r in specs]

    rounds = iter(range(100))
    same = batch("")

    def setup() -> tuple[tuple[list[bytes]], dict[str, Any]]:
        return (same if mode == "unchanged" else batch(f"r{next(rounds)}-"),), {}

    try:
        benchmark.pedantic(registry._store, setup=setup, rounds=5, warmup_rounds=1)
    finally:
        registry.store.close()
        registry.transport.close()
    assert registry.rejected == 0
    benchmark.extra_info.update(
        registrations=len(same), mode=mode,
        per_second=round(len(same) / benchmark.stats.stats.mean),
        loadavg=os.getloadavg())


def test_server_start_to_discoverable(benchmark: Any, tmp_path: Path) -> None:
    """From starting an ``orch server`` process to the node being found by inventory
    discovery, with an ``orch registry`` (in this process) on RabbitMQ and SQLite."""
    store = f"sqlite:///{tmp_path}/inventory.db"
    collective = new_collective()
    settings = load_settings(overrides={
        "broker": AMQP_URL, "security": "insecure", "collective": collective,
        "plugins": {"inventory": {"store": store}}}, environ={})
    registry = Registry(settings, default_registry(), identity=f"bench-{collective}")
    thread = threading.Thread(target=registry.run, daemon=True)
    thread.start()
    assert registry.ready.wait(30)
    config = tmp_path / "inventory.yaml"
    config.write_text(yaml.safe_dump({"plugins": {"inventory": {"store": store}}}))
    env = {**orch_env(collective, AMQP_URL, {"security": "insecure"}), "ORCH_CONFIG": str(config)}
    started: list[subprocess.Popen[bytes]] = []
    client = client_for(store, collective)

    def start_and_find() -> float:
        identity = f"n{uuid.uuid4().hex[:8]}"
        begun = time.monotonic()
        proc = subprocess.Popen([orch_executable(), "server", "--identity", identity,
                                 "--log-level", "warning"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        filter = {"identity": [identity]}
        deadline = begun + 60
        while identity not in InventoryDiscovery().discover(client, filter, "rpcutil"):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        return time.monotonic() - begun

    try:
        benchmark.pedantic(start_and_find, rounds=3)
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            proc.wait(timeout=15)
        registry.stop()
        thread.join(timeout=15)
        client.close()
    benchmark.extra_info.update(loadavg=os.getloadavg())
