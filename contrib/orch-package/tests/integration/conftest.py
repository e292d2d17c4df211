"""Integration fixtures: real ``orch server`` processes on RabbitMQ, from orch's own
integration support module (``tests/integration/orch_integration.py`` of the orch
checkout this plugin is tested against; skipped when orch is not a source checkout)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import orch
import pytest
from orch.testing import purge_collective

SUPPORT = Path(orch.__file__).resolve().parent.parent / "tests" / "integration"
if (SUPPORT / "orch_integration.py").is_file() and str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def server_fleets(tmp_path: Path) -> Iterator[object]:
    """An ``orch_integration.FleetFactory``; every daemon stopped, the broker purged."""
    try:
        from orch_integration import FleetFactory
    except ImportError:
        pytest.skip("orch's integration support module is not available (not a checkout)")
    factory = FleetFactory(tmp_path)
    try:
        yield factory
    finally:
        problems = []
        for fleet in factory.fleets:
            problems += fleet.stop()
            with contextlib.suppress(Exception):
                purge_collective(fleet.broker, fleet.collective)
        assert not problems, problems
