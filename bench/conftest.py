"""Session fixtures for the benchmarks (helpers are in ``bench_support.py``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from bench_support import (
    DAEMONS,
    SECURITY,
    Daemons,
    bytecode_cached,
    delete_exchanges,
    new_collective,
    orch_executable,
    start_daemons,
    stop_daemons,
)


@pytest.fixture(scope="session")
def orch_exe() -> str:
    return orch_executable()


@pytest.fixture(scope="session")
def daemons50(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemons]:
    """50 separate ``orch server`` processes on RabbitMQ, one unique collective."""
    started = time.monotonic()
    daemons = start_daemons(tmp_path_factory.mktemp("daemons50"), new_collective(), DAEMONS)
    ready = time.monotonic() - started
    print(f"\n{DAEMONS} daemons answering after {ready:.1f}s (collective {daemons.collective})")
    try:
        yield daemons
    finally:
        stop_daemons(daemons.processes)
        delete_exchanges(daemons.collective, daemons.broker)


@pytest.fixture(autouse=True)
def _record_conditions(request: pytest.FixtureRequest) -> Iterator[None]:
    """Note the machine's load around each benchmark: other work on 2 cores is noise."""
    if "benchmark" not in request.fixturenames:
        yield
        return
    extra = request.getfixturevalue("benchmark").extra_info
    extra["cpus"] = os.cpu_count()
    extra["bytecode_cached"] = bytecode_cached()
    extra["security"] = SECURITY
    extra["loadavg_1m_before"] = round(os.getloadavg()[0], 2)
    yield
    extra["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
