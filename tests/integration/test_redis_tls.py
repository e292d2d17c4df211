"""The core flow on Redis over TLS (``rediss://``), on a private TLS redis-server that
requires client certificates (issue 11): discovery, ping, rpc, facts, and a killed node
reported missing."""

from __future__ import annotations

import pytest
from orch_integration import DEFAULT_NODES, FleetFactory, identity_args
from private_brokers import PrivateTLSRedis

pytestmark = pytest.mark.integration


def test_core_flow_on_rediss(private_tls_redis: PrivateTLSRedis,
                             fleet_factory: FleetFactory) -> None:
    fleet = fleet_factory(private_tls_redis.url, DEFAULT_NODES[:3], label="rediss")
    names = fleet.alive()

    found = fleet.run_orch("find")
    assert found.rc == 0, found.describe()
    assert found.stdout.split() == names

    ping = fleet.run_orch("ping", "--json")
    assert ping.rc == 0, ping.describe()
    assert sorted(r["sender"] for r in ping.json()["replies"]) == names

    fact = fleet.run_orch("rpc", "rpcutil", "get_fact", "fact=role", "-F", "role=web",
                          "--json")
    assert fact.rc == 0, fact.describe()
    values = {r["sender"]: r["data"]["value"] for r in fact.json()["replies"]}
    assert values == {n: "web" for n in names if fleet.spec(n).fact("role") == "web"}

    facts = fleet.run_orch("facts", "env")
    assert facts.rc == 0, facts.describe()

    victim = fleet.daemons[names[0]]
    victim.kill()
    result = fleet.run_orch("rpc", "rpcutil", "ping", *identity_args(names), "--json",
                            "--timeout", "3")
    assert result.rc == 1, result.describe()
    assert result.json()["missing"] == [victim.identity]
    assert sorted(r["sender"] for r in result.json()["replies"]) == names[1:]


def test_plain_redis_client_is_refused_by_the_tls_port(private_tls_redis: PrivateTLSRedis,
                                                      fleet_factory: FleetFactory) -> None:
    """The same port without TLS: a clear, prompt error naming the broker."""
    from orch_integration import new_collective, run_orch

    plain = private_tls_redis.url.replace("rediss://", "redis://")
    result = run_orch("ping", broker=plain, collective=new_collective("plain"), timeout=60)
    assert result.rc != 0, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert f"127.0.0.1:{private_tls_redis.port}" in result.stderr, result.describe()
