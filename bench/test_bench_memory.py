"""Idle ``orch server`` memory: RSS (and USS/PSS) of one daemon after it answered and idled.

The measured function is the psutil read itself (cheap); the figure that matters is in
``extra_info`` and printed: ``rss_mb`` of the daemon process plus any children.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psutil
import pytest
from bench_support import Daemons, delete_exchanges, new_collective, start_daemons, stop_daemons
from pytest_benchmark.fixture import BenchmarkFixture

IDLE_SECONDS = 3.0
MB = 1024 * 1024


@pytest.fixture(scope="module")
def one_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemons]:
    daemons = start_daemons(tmp_path_factory.mktemp("idle"), new_collective(), 1)
    try:
        yield daemons
    finally:
        stop_daemons(daemons.processes)
        delete_exchanges(daemons.collective, daemons.broker)


def tree_memory(pid: int) -> dict[str, float]:
    """RSS, USS and PSS in MB of ``pid`` and all its descendants, and the process count."""
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    rss = uss = pss = 0
    for process in processes:
        info = process.memory_full_info()
        rss += info.rss
        uss += info.uss
        pss += getattr(info, "pss", 0)
    return {"rss_mb": rss / MB, "uss_mb": uss / MB, "pss_mb": pss / MB,
            "processes": len(processes)}


@pytest.mark.benchmark(group="idle-daemon-memory")
def test_idle_daemon_rss(benchmark: BenchmarkFixture, one_daemon: Daemons,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """One daemon that has answered a ping, then idled ~3 s; target <= 30 MB RSS."""
    time.sleep(IDLE_SECONDS)
    pid = one_daemon.pids[0]
    readings: list[dict[str, float]] = []
    benchmark.pedantic(lambda: readings.append(tree_memory(pid)), rounds=5, iterations=1)
    final = readings[-1]
    for key, value in final.items():
        benchmark.extra_info[key] = round(value, 1)
    assert one_daemon.processes[0].poll() is None, "the daemon exited while idle"
    with capsys.disabled():
        print(f"\nidle orch server pid {pid}: RSS {final['rss_mb']:.1f} MB, "
              f"USS {final['uss_mb']:.1f} MB, PSS {final['pss_mb']:.1f} MB "
              f"({final['processes']:.0f} process(es)); target <= 30 MB RSS")
