"""Fleet scale: 1,000 / 5,000 / 10,000 simulated nodes on RabbitMQ, started by ``orch sim``.

Each size starts its own ``orch sim --nodes N`` (worker processes, one per core, every node
with its own queue, certificate and facts; every request verified and every reply signed),
then times ``orch ping --nodes FILE --json`` — the whole command, as an operator runs it,
with the client settings the simulation wrote — for :data:`ROUNDS` rounds, once with the
client's default timeout and once with ``ORCH_TIMEOUT`` = :data:`LONG_TIMEOUT`; and
``orch ping --json``, a broadcast with every default (``test_broadcast_ping``).

Recorded in ``extra_info`` (and printed):

* ``start_s`` — the simulation's own start time (fork to every node consuming) and
  ``start_wall_s`` — from running ``orch sim`` to its ready line;
* ``sim_rss_mb`` — RSS of the simulation (parent and workers) after the runs;
* ``p50_s`` / ``max_s`` — wall time of the ping command over the rounds;
* ``complete_runs`` — rounds in which all N nodes answered and the command exited 0;
* ``replies_per_s`` — median over rounds of replies / time of the last reply (the client's
  own ``rtt_ms``), i.e. the rate at which the client took in verified replies;
* ``fleet_cpu_ms_per_request`` — user + system CPU of the workers during the rounds,
  divided by rounds x N: what one node costs per request;
* ``cpu_us_per_request_{fleet,broker,client}`` and ``cpu_floor_s`` — where each round's CPU
  went (the simulation's workers, RabbitMQ, the ``orch ping`` command with its checker
  processes), per node, and the shortest a round could take if that CPU were spread over
  every core with nothing else running: the p50 read against this machine's limit.

Unlike the other benchmarks this one does not fail on an incomplete round: at 10,000
nodes a known-list ping may not complete yet, and that is a figure to report.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bench_support import (
    AMQP_URL,
    CPUBudget,
    IdleGate,
    base_env,
    broker_pids,
    cpu_seconds,
    delete_exchanges,
    delete_node_queues,
    new_collective,
    reaped_cpu_seconds,
    rss_mb,
)
from pytest_benchmark.fixture import BenchmarkFixture

from orch.core.plugins import default_registry
from orch.sim.facts import node_specs
from orch.testing import SimProcess

SIZES = (1000, 5000, 10000)
ROUNDS = 5
#: Seconds a ping command may take before the round counts as hung.
COMMAND_TIMEOUT = 180.0
#: The client ``timeout`` of the second series. With orch's default (the 2 s
#: ``discovery_timeout``, counted from before the first publish) a large known list may be
#: cut short; with this one every round ends when the last reply arrives.
LONG_TIMEOUT = 60.0


@dataclass
class Round:
    seconds: float
    rc: int
    responses: int
    last_reply_s: float


@dataclass
class SimUnderTest:
    nodes: int
    sim: SimProcess
    nodes_file: Path
    start_wall_s: float
    rounds: list[Round] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = base_env()
        env["ORCH_CONFIG"] = str(self.sim.client_config)
        return env


@pytest.fixture(scope="module", params=SIZES, ids=[f"{n}nodes" for n in SIZES])
def simulated(request: pytest.FixtureRequest, orch_exe: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimUnderTest]:
    nodes: int = request.param
    collective = new_collective()
    tmp_path = tmp_path_factory.mktemp(f"scale{nodes}")
    nodes_file = tmp_path / "nodes.txt"
    nodes_file.write_text("\n".join(spec.identity for spec in node_specs(nodes)) + "\n")
    started = time.monotonic()
    sim = SimProcess.start([orch_exe], nodes, AMQP_URL, tmp_path / "state",
                           "--collective", collective, env=base_env(), timeout=300)
    under_test = SimUnderTest(nodes, sim, nodes_file, time.monotonic() - started)
    try:
        yield under_test
    finally:
        problems = sim.stop()
        delete_node_queues(collective, (spec.identity for spec in node_specs(nodes)))
        delete_exchanges(collective)
    assert problems == [], problems


@pytest.mark.parametrize("timeout", [None, LONG_TIMEOUT], ids=["default-timeout",
                                                            f"timeout{LONG_TIMEOUT:g}"])
def test_known_list_ping(benchmark: BenchmarkFixture, simulated: SimUnderTest,
                         timeout: float | None) -> None:
    env = simulated.env
    if timeout is not None:
        env["ORCH_TIMEOUT"] = f"{timeout:g}"
    measure(benchmark, simulated, ["ping", "--json", "--nodes", str(simulated.nodes_file)],
            env, "default" if timeout is None else timeout)


def test_broadcast_ping(benchmark: BenchmarkFixture, simulated: SimUnderTest) -> None:
    """``orch ping --json`` with defaults: nobody lists the nodes. The warm-up round is the
    first broadcast of its question (nothing remembered: at 10,000 nodes the 2 s
    ``discovery_timeout`` may cut it short, and it says so); the timed rounds remember who
    answered before (``orch/core/answered.py``)."""
    measure(benchmark, simulated, ["ping", "--json"], simulated.env, "default",
            broadcast=True)


def measure(benchmark: BenchmarkFixture, simulated: SimUnderTest, args: list[str],
            env: dict[str, str], client_timeout: str | float, broadcast: bool = False) -> None:
    """Time ``orch ARGS`` (a ping printing JSON) over the simulation: a warm-up round, then
    :data:`ROUNDS`; record the figures of the module's docstring in ``extra_info``."""
    sim = simulated.sim
    pids = [sim.process.pid, *sim.worker_pids]
    argv = [str(sim.process.args[0]), *args]  # type: ignore[index]
    simulated.rounds.clear()
    workers, broker = list(sim.worker_pids), broker_pids()
    budget = CPUBudget({"fleet": lambda: cpu_seconds(workers),
                        "broker": lambda: cpu_seconds(broker),
                        "client": reaped_cpu_seconds})  # the orch ping and its checkers

    def run() -> None:
        started = time.monotonic()
        with budget.span():
            proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
        seconds = time.monotonic() - started
        try:
            document = json.loads(proc.stdout)
            replies = document["replies"]
        except (ValueError, KeyError):
            replies = []
        last = max((reply["rtt_ms"] for reply in replies), default=0.0) / 1000
        simulated.rounds.append(Round(seconds, proc.returncode, len(replies), last))

    gate = IdleGate()
    run()  # warm-up: every node parses the client's certificate once
    warm_up = simulated.rounds[0]
    simulated.rounds.clear()
    budget.reset()
    benchmark.pedantic(run, setup=gate, rounds=ROUNDS, iterations=1)
    rounds = simulated.rounds
    seconds = [r.seconds for r in rounds]
    extra = benchmark.extra_info
    extra.update({
        "security": "x509",  # orch sim always signs and verifies
        "nodes": simulated.nodes,
        "addressing": "broadcast" if broadcast else "known list",
        "client_timeout": client_timeout,
        "workers": len(sim.worker_pids),
        "start_s": sim.start_seconds,
        "start_wall_s": round(simulated.start_wall_s, 2),
        "sim_rss_mb": round(rss_mb(pids), 1),
        "p50_s": round(statistics.median(seconds), 3),
        "max_s": round(max(seconds), 3),
        "complete_runs": f"{sum(r.rc == 0 and r.responses == simulated.nodes for r in rounds)}"
                         f"/{len(rounds)}",
        "responses": [r.responses for r in rounds],
        "replies_per_s": round(statistics.median(
            r.responses / r.last_reply_s if r.last_reply_s else 0.0 for r in rounds)),
        "fleet_cpu_ms_per_request": round(budget.per_span_s()["fleet"] * 1000
                                          / simulated.nodes, 3),
    })
    if broadcast:
        # The first broadcast, with nothing remembered: its exit code says whether it was
        # cut short (1) or complete (0).
        extra["first_run"] = {"exit": warm_up.rc, "responses": warm_up.responses,
                              "seconds": round(warm_up.seconds, 3)}
    gate.record(extra)
    line = budget.record(extra, "request", simulated.nodes)
    print(f"\n{simulated.nodes} nodes: " + ", ".join(f"{k}={v}" for k, v in extra.items()
                                                     if k not in ("responses",))
          + f"\n  {line} (p50 {extra['p50_s']} s)")
    assert sim.process.poll() is None, "the simulation died during the rounds"


def test_node_request_cpu(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    """CPU of one simulated node handling one signed ``rpcutil ping``, no broker.

    1,000 nodes built as ``orch sim`` builds them (own certificates, inline actions) each
    handle the same signed request bytes; replies go to a counter instead of the broker.
    Timed: one round over all nodes; ``cpu_us_per_request`` is process CPU per node.
    """
    from orch.core.protocol import Envelope, Request
    from orch.sim.pki import SimCA
    from orch.sim.worker import build_fleet, issue_all

    nodes = 1000
    ca = SimCA.open(tmp_path / "ca", create=True)
    cert, key = ca.write_client(tmp_path / "client")
    settings = {"broker": "memory://", "collective": "benchnode", "security": "x509",
                "tls_cert": str(cert), "tls_key": str(key), "tls_ca": str(ca.ca_file),
                "agents": ["rpcutil"]}
    specs = node_specs(nodes)
    providers = issue_all(ca, specs)
    fleet = build_fleet(settings, specs, lambda spec: providers[spec.identity],
                        default_registry())
    sent: list[int] = []
    fleet.services.send = lambda collective, reply_to, payload, ttl: sent.append(1)
    client = fleet.services.security  # the client certificate signs the requests

    def request() -> bytes:
        body = Request("rpcutil", "ping", "benchnode", "bench", "sim.operator",
                       "orch.benchnode.reply.bench", ttl=60.0).encode()
        return Envelope("request", body, client.seal("request", body)).encode()

    def run(raw: bytes) -> None:
        for node in fleet.nodes:
            node.handle(raw)

    run(request())  # warm-up: each node parses the client's certificate once
    sent.clear()
    cpu = time.process_time()
    benchmark.pedantic(run, setup=lambda: ((request(),), {}), rounds=ROUNDS, iterations=1)
    cpu = time.process_time() - cpu
    fleet.services.close()
    assert len(sent) == ROUNDS * nodes, "every node must have replied"
    benchmark.extra_info.update({
        "security": "x509", "nodes": nodes,
        "cpu_us_per_request": round(cpu * 1e6 / (ROUNDS * nodes), 1)})
    print(f"\none node, one signed request: {benchmark.extra_info['cpu_us_per_request']} µs CPU")
