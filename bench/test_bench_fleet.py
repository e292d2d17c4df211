"""Ping across 1,000 simulated nodes (:class:`orch.core.fleet.Fleet`) from an in-process Client.

The fleet serves ``demo_specs(1000)`` in this process on one shared broker connection; the
client is a separate connection in the same process. Measured: one ``client.ping`` call,
from publishing to the 1,000th reply (no interpreter start-up, no output formatting).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from bench_support import (
    AMQP_URL,
    SECURITY,
    IdleGate,
    client_settings,
    delete_exchanges,
    new_collective,
)
from pytest_benchmark.fixture import BenchmarkFixture

from orch.core.client import CallResult, Client
from orch.core.fleet import Fleet, NodeSpec
from orch.core.plugins import default_registry
from orch.core.security import SecurityProvider
from orch.demo import demo_specs

FLEET_SIZE = 1000
DISCOVERY_WINDOW = client_settings("x").discovery_window
ROUNDS = 10


@dataclass
class FleetUnderTest:
    broker: str
    fleet: Fleet
    client: Client
    identities: list[str]
    start_seconds: float


@pytest.fixture(scope="module", params=[AMQP_URL, "memory://"], ids=["rabbitmq", "memory"])
def fleet1000(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetUnderTest]:
    broker: str = request.param
    specs = demo_specs(FLEET_SIZE)
    if SECURITY == "x509":
        from orch.demo import DemoPKI

        pki = DemoPKI.create(tmp_path_factory.mktemp("fleet-ca"), "bench.user")
        settings = client_settings(new_collective(), broker, **pki.client_settings)
        security_for: Callable[[NodeSpec], SecurityProvider] | None = pki.node_security
    else:
        settings = client_settings(new_collective(), broker)
        security_for = None
    started = time.monotonic()
    fleet = Fleet(settings, specs, default_registry(), security_for=security_for).start(timeout=120)
    start_seconds = time.monotonic() - started
    client = Client(settings)
    try:
        yield FleetUnderTest(broker, fleet, client, sorted(s.identity for s in specs),
                             start_seconds)
    finally:
        client.close()
        fleet.stop()
        delete_exchanges(settings.collective, broker)


def measure(benchmark: BenchmarkFixture, under_test: FleetUnderTest,
            *, known: bool) -> list[CallResult]:
    results: list[CallResult] = []
    nodes = under_test.identities if known else None

    def ping() -> None:
        results.append(under_test.client.ping(nodes=nodes))

    gate = IdleGate()
    benchmark.pedantic(ping, setup=gate, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    gate.record(benchmark.extra_info)
    benchmark.extra_info["broker"] = under_test.broker.split(":", 1)[0]
    benchmark.extra_info["nodes"] = FLEET_SIZE
    benchmark.extra_info["fleet_start_s"] = round(under_test.start_seconds, 2)
    last = sorted(max(r.rtt.values()) * 1000 for r in results if r.rtt)
    if last:
        benchmark.extra_info["last_reply_ms_median"] = round(last[len(last) // 2], 1)
    return results


def check(results: list[CallResult], identities: list[str]) -> None:
    """Every round (warm-up included) got exactly the 1,000 nodes, with no error."""
    short = [r for r in results if len(r.replies) != FLEET_SIZE]
    for result in results:
        assert result.error is None, result.error
        assert not result.rejected, result.rejected[:3]
        assert all(reply.ok for reply in result.replies.values())
    assert not short, (
        f"{len(short)} of {len(results)} rounds got fewer than {FLEET_SIZE} replies "
        f"({sorted(len(r.replies) for r in short)}), e.g. missing "
        f"{sorted(set(identities) - set(short[0].replies))[:5]}; for a broadcast this means "
        f"a pause of more than discovery_window ({DISCOVERY_WINDOW}s) between two replies"
    )


@pytest.mark.benchmark(group="fleet-1000-known")
def test_ping_1000_known_list(benchmark: BenchmarkFixture,
                              fleet1000: FleetUnderTest) -> None:
    """``client.ping(nodes=all 1,000)``: 1,000 direct publishes, ends at the 1,000th reply."""
    results = measure(benchmark, fleet1000, known=True)
    check(results, fleet1000.identities)


@pytest.mark.benchmark(group="fleet-1000-broadcast")
def test_ping_1000_broadcast(benchmark: BenchmarkFixture, fleet1000: FleetUnderTest) -> None:
    """``client.ping()``: one broadcast, ends ``discovery_window`` after the last reply."""
    results = measure(benchmark, fleet1000, known=False)
    check(results, fleet1000.identities)
