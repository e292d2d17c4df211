"""A three-node RabbitMQ cluster started by the test: a member dies while 500 simulated nodes
are being pinged, then comes back (issue 11, broker clusters).

Every ping — before, during and after the failure — must account for all 500 nodes exactly
once (a reply or "no response", never both, never twice), and end within its timeout. After
the failover the whole fleet answers again; after the restart the member is in the cluster
and a client connected only to it reaches every node.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from orch_integration import clean_environment, new_collective, orch_argv
from private_brokers import PrivateRabbitMQCluster

from orch.sim.facts import node_specs
from orch.testing import SimProcess, wait_until

pytestmark = pytest.mark.integration

NODES = 500
PING_TIMEOUT = 5.0
#: A call may overrun its timeout by this much (verifying, a failover's connect, the exit).
OVERRUN = 8.0


@dataclass
class PingLog:
    """Every ping a background loop made, and what each accounted for."""

    calls: int = 0
    complete: list[float] = field(default_factory=list)  # monotonic end of each full ping
    problems: list[str] = field(default_factory=list)
    failovers: int = 0
    partial: int = 0
    reconnect: float = 0.0
    #: What the latest incomplete ping lacked, for the failure message.
    last_partial: str = ""


def _client(sim: SimProcess, broker: str | None = None) -> object:
    from orch.core.client import Client
    from orch.core.config import load_settings

    overrides = {"timeout": PING_TIMEOUT, **({"broker": broker} if broker else {})}
    return Client(load_settings(str(sim.client_config), overrides, environ={}))


def _check(result: object, identities: list[str], log: PingLog, elapsed: float) -> None:
    from orch.core.client import CallResult

    assert isinstance(result, CallResult)
    log.calls += 1
    answered, missing = set(result.replies), set(result.missing)
    if answered & missing:
        log.problems.append(f"both replied and missing: {sorted(answered & missing)[:5]}")
    if answered | missing != set(identities):
        log.problems.append(f"not accounted for: {len(set(identities) - answered - missing)}")
    if elapsed > PING_TIMEOUT + OVERRUN:
        log.problems.append(f"a ping took {elapsed:.1f}s (timeout {PING_TIMEOUT:g}s)")
    if len(answered) == len(identities) and not result.failed and result.error is None:
        log.complete.append(time.monotonic())
    else:
        log.partial += 1
        log.last_partial = (f"{len(answered)} replied, {len(missing)} missing (e.g. "
                            f"{sorted(missing)[:3]}), failed {len(result.failed)}, "
                            f"error {result.error}")


def _ping_loop(sim: SimProcess, identities: list[str], stop: threading.Event,
               log: PingLog, opened: threading.Event, holder: list[object]) -> None:
    from orch.core.client import Client

    client = _client(sim)
    assert isinstance(client, Client)
    try:
        _ = client.channel
        holder.append(client)
        opened.set()
        while not stop.is_set():
            started = time.monotonic()
            result = client.ping(nodes=identities)
            _check(result, identities, log, time.monotonic() - started)
        log.failovers = int(getattr(client.channel, "failovers", 0))
        log.reconnect = float(getattr(client.channel, "last_failover_seconds", 0.0))
    except Exception as exc:  # reported by the test, never a silent thread death
        log.problems.append(f"ping loop died: {type(exc).__name__}: {exc}")
        opened.set()
    finally:
        client.close()


@pytest.fixture
def sim(rabbitmq_cluster: PrivateRabbitMQCluster, tmp_path: Path) -> Iterator[SimProcess]:
    process = SimProcess.start(orch_argv(), NODES, rabbitmq_cluster.broker, tmp_path / "sim",
                               "--workers", "2", "--collective", new_collective("cluster"),
                               env=clean_environment({"ORCH_HEARTBEAT": "2"}))
    try:
        yield process
    finally:
        assert process.stop() == []


def test_member_dies_during_a_ping_of_500_nodes(
    rabbitmq_cluster: PrivateRabbitMQCluster, sim: SimProcess
) -> None:
    from orch.core.client import Client

    cluster = rabbitmq_cluster
    identities = sorted(spec.identity for spec in node_specs(NODES))
    stop, opened = threading.Event(), threading.Event()
    log = PingLog()
    holder: list[object] = []
    loop = threading.Thread(target=_ping_loop, args=(sim, identities, stop, log, opened,
                                                     holder), daemon=True)
    loop.start()
    assert opened.wait(30), "the ping loop did not connect"
    assert not log.problems, log.problems
    wait_until(lambda: log.complete, 60, "a first complete ping of every simulated node")

    # The member the pinging client is connected to dies: its reply queue dies with it.
    client = holder[0]
    assert isinstance(client, Client)
    port = client.channel._conn.as_uri().rsplit(":", 1)[1].split("/")[0]  # type: ignore[attr-defined]
    victim = next(i for i, m in enumerate(cluster.members) if str(m.port) == port)
    calls_before = log.calls
    killed = time.monotonic()
    cluster.members[victim].kill()
    try:
        try:
            wait_until(lambda: any(t > killed for t in log.complete)
                     and log.calls > calls_before,
                     90, "a complete ping of all 500 nodes after the member died")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {log.calls - calls_before} pings since, the last "
                                 f"incomplete: {log.last_partial}; problems {log.problems}; "
                                 f"sim output:\n" + "\n".join(sim.output[-30:])) from None
        failover = min(t for t in log.complete if t > killed) - killed
        # Traffic goes on through the survivors.
        wait_until(lambda: len([t for t in log.complete if t > killed]) >= 3, 60,
                 "three complete pings after the failover")
    finally:
        stop.set()
        loop.join(PING_TIMEOUT + OVERRUN + 10)
    assert not loop.is_alive(), "the ping loop hung"
    assert not log.problems, log.problems
    assert log.failovers >= 1, "the client never failed over (was it on the victim?)"

    # The member comes back and rejoins; a client that knows only it reaches everyone.
    restarted = time.monotonic()
    cluster.members[victim].start()
    wait_until(lambda: cluster.running_nodes() == {m.node for m in cluster.members}, 60,
             "the restarted member to rejoin the cluster")
    rejoined = time.monotonic() - restarted
    only = _client(sim, cluster.members[victim].url)
    assert isinstance(only, Client)
    with only:
        result = only.ping(nodes=identities)
    assert sorted(result.replies) == identities, (len(result.replies), result.error)
    print(f"\ncluster: {log.calls} pings of {NODES} nodes, {log.partial} partial (all "
          f"accounted for), client reconnected in {log.reconnect:.2f}s, a full answer "
          f"again {failover:.1f}s after the kill, member rejoined "
          f"{rejoined:.1f}s after restart")
