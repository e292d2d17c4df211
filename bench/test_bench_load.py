"""Load (issue 11): 20 concurrent clients, each running RPCs over 1,000 simulated nodes for a
bounded minute, on RabbitMQ.

Each client is its own process (as 20 operators or programs would be) calling
``rpcutil ping`` on the whole known list again and again until its minute is up. It counts
every reply, every node that did not answer (lost) and every reply that arrived twice for
the same call (the client logs and drops those: counted from its log). The run is a success
only with zero lost and zero duplicated replies, the simulation and the broker still up, and
the simulation's memory at the end within a margin of its memory after the first minute's
warm-up, plus what its nodes' replay caches hold for the requests they ran: figures, not
timings, are what it records.

Run: ``pytest bench/test_bench_load.py --benchmark-only -s`` (about two minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from bench_support import (
    AMQP_URL,
    base_env,
    broker_pids,
    delete_exchanges,
    delete_node_queues,
    new_collective,
    rss_mb,
)
from pytest_benchmark.fixture import BenchmarkFixture

from orch.sim.facts import node_specs
from orch.testing import SimProcess

NODES = 1000
CLIENTS = 20
DURATION = 60.0
CALL_TIMEOUT = 60.0
#: The simulation's RSS at the end may exceed its RSS after warm-up by this share at most,
#: beside what its replay caches hold (below).
RSS_MARGIN = 0.25
#: Bytes a node's replay cache holds per request it ran: an id (32 hex characters) and its
#: expiry in an OrderedDict, 195 bytes measured with tracemalloc, rounded up for
#: allocator slack. Ids are kept until the request's ttl and the clock skew allowance have
#: passed (about 2 minutes, longer than the run), so the fleet's memory grows with the
#: requests it served: 34 calls a minute cost about 7 MB, 186 calls about 45 MB. A leak
#: comes on top of that.
REPLAY_ENTRY_BYTES = 250

#: One client: calls until its minute is up, then prints its counts as JSON.
CLIENT = r"""
import json, logging, sys, time
from orch.core.client import Client
from orch.core.config import load_settings

config, nodes_file = sys.argv[1], sys.argv[2]
duration, timeout = float(sys.argv[3]), float(sys.argv[4])
nodes = open(nodes_file).read().split()
duplicates = 0

class Count(logging.Handler):
    def emit(self, record):
        global duplicates
        if "duplicate reply" in record.getMessage():
            duplicates += 1

logging.getLogger("orch").addHandler(Count())
logging.getLogger("orch").setLevel(logging.WARNING)
counts = {"calls": 0, "replies": 0, "lost": 0, "failed": 0, "errors": 0, "unexpected": 0}
with Client(load_settings(config, {"timeout": timeout}, environ={})) as client:
    end = time.monotonic() + duration
    while time.monotonic() < end:
        result = client.call("rpcutil", "ping", nodes=nodes)
        counts["calls"] += 1
        counts["replies"] += len(result.replies)
        counts["lost"] += len(result.missing)
        counts["failed"] += len(result.failed)
        counts["unexpected"] += len(result.unexpected)
        counts["errors"] += result.error is not None
counts["duplicates"] = duplicates
print(json.dumps(counts))
"""


@pytest.fixture(scope="module")
def sim(orch_exe: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    collective = new_collective()
    tmp_path = tmp_path_factory.mktemp("load")
    process = SimProcess.start([orch_exe], NODES, AMQP_URL, tmp_path / "state",
                               "--collective", collective, env=base_env(), timeout=300)
    try:
        yield process
    finally:
        problems = process.stop()
        delete_node_queues(collective, (spec.identity for spec in node_specs(NODES)))
        delete_exchanges(collective)
    assert problems == [], problems


def test_twenty_clients_for_a_minute(benchmark: BenchmarkFixture, sim: SimProcess,
                                     tmp_path: Path) -> None:
    nodes_file = tmp_path / "nodes.txt"
    nodes_file.write_text("\n".join(spec.identity for spec in node_specs(NODES)) + "\n")
    env = {**base_env(), "PYTHONPATH": os.pathsep.join(sys.path)}
    workers = list(sim.worker_pids)
    totals: dict[str, int] = {}
    samples: dict[str, float] = {}

    def warm_up() -> None:
        argv = [sys.executable, "-c", CLIENT, str(sim.client_config), str(nodes_file), "0.1",
                str(CALL_TIMEOUT)]
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=300)
        samples["rss_after_warmup_mb"] = rss_mb(workers)

    def run() -> None:
        argv = [sys.executable, "-c", CLIENT, str(sim.client_config), str(nodes_file),
                str(DURATION), str(CALL_TIMEOUT)]
        procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for _ in range(CLIENTS)]
        peak = 0.0
        deadline = time.monotonic() + DURATION + CALL_TIMEOUT + 120
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            peak = max(peak, rss_mb(workers))
            time.sleep(1.0)
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            assert proc.returncode == 0, err[-2000:]
            for key, value in json.loads(out.strip().splitlines()[-1]).items():
                totals[key] = totals.get(key, 0) + int(value)
        samples["rss_peak_mb"] = peak
        samples["rss_end_mb"] = rss_mb(workers)

    warm_up()
    broker_before = rss_mb(broker_pids())
    benchmark.pedantic(run, rounds=1, iterations=1)
    extra = benchmark.extra_info
    extra.update({"nodes": NODES, "clients": CLIENTS, "duration_s": DURATION, **totals,
                  "requests": totals.get("calls", 0) * NODES,
                  **{k: round(v, 1) for k, v in samples.items()},
                  "broker_rss_before_mb": round(broker_before, 1),
                  "broker_rss_end_mb": round(rss_mb(broker_pids()), 1)})
    print("\nload: " + ", ".join(f"{k}={v}" for k, v in extra.items()))
    assert sim.process.poll() is None, "the simulation died under load"
    assert all(psutil.pid_exists(pid) for pid in workers), "a simulation worker died"
    assert broker_pids(), "the broker died"
    assert totals["calls"] >= CLIENTS
    assert totals["lost"] == 0 and totals["duplicates"] == 0, totals
    assert totals["errors"] == 0 and totals["failed"] == 0, totals
    assert totals["replies"] == totals["calls"] * NODES, totals
    remembered_mb = totals["calls"] * NODES * REPLAY_ENTRY_BYTES / 1e6
    assert (samples["rss_end_mb"]
            <= samples["rss_after_warmup_mb"] * (1 + RSS_MARGIN) + remembered_mb), samples
