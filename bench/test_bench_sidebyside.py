"""orch against the real MCollective 2.12 (ActiveMQ) and Salt, 50 nodes each (sidebyside.py).

    python -m pytest bench/test_bench_sidebyside.py --benchmark-only -p no:cacheprovider -s

It starts ActiveMQ (a JVM) and 50 ``mcollectived``, and a salt-master with 50 minions,
through the anchors' ``run.sh`` scripts and takes several minutes, so a plain ``pytest
bench`` skips it: name this file on the command line, or set ``ORCH_BENCH_SIDEBYSIDE=1``.
The figures go to ``extra_info`` (and ``--benchmark-json``) and to the terminal; the test
fails only when a command failed or a reply count was wrong, never because of a figure.
"""

from __future__ import annotations

import os
import shutil

import pytest
import sidebyside
from pytest_benchmark.fixture import BenchmarkFixture


def _selected(config: pytest.Config) -> bool:
    return os.environ.get("ORCH_BENCH_SIDEBYSIDE") == "1" or any(
        "test_bench_sidebyside" in str(arg) for arg in config.args)


@pytest.mark.benchmark(group="side-by-side-mcollective-salt")
def test_side_by_side_with_mcollective(benchmark: BenchmarkFixture,
                                       request: pytest.FixtureRequest,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    if not _selected(request.config):
        pytest.skip("heavy (ActiveMQ + 50 mcollectived): name this file or set "
                    "ORCH_BENCH_SIDEBYSIDE=1")
    if os.geteuid() != 0 and not shutil.which("mco"):
        pytest.skip("MCollective is not installed and installing it needs root")
    nodes = int(os.environ.get("ORCH_BENCH_SIDEBYSIDE_NODES", "50"))
    rounds = int(os.environ.get("ORCH_BENCH_SIDEBYSIDE_ROUNDS", "9"))
    results: dict[str, object] = {}
    with capsys.disabled():  # progress (several minutes) and the table go to the terminal
        print()
        benchmark.pedantic(lambda: results.update(sidebyside.run(nodes, rounds)), rounds=1,
                           iterations=1)
        print("\n" + sidebyside.table(results))
    benchmark.extra_info.update(results)
