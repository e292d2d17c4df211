"""What simulated Puppet costs a simulated node (``orch demo``/``orch sim`` host it).

Measured in-process, without the request path: building one node's Puppet state (done on
its first puppet request) and one ``status`` reading. ``pytest contrib/orch-puppet/bench``.
"""

from __future__ import annotations

import itertools

from pytest_benchmark.fixture import BenchmarkFixture

from orch_puppet.simulation import SimulatedNode

NOW = 1_800_000_000.0


def test_build_one_node(benchmark: BenchmarkFixture) -> None:
    names = (f"web-{i:05d}.fra1" for i in itertools.count())
    benchmark(lambda: SimulatedNode(next(names), "web", NOW))


def test_status_of_one_node(benchmark: BenchmarkFixture) -> None:
    node = SimulatedNode("web-00042.fra1", "web", NOW)
    moments = (NOW + i for i in itertools.count())

    def status() -> None:
        now = next(moments)
        node.advance(now)
        node.state(now).outputs()

    benchmark(status)
