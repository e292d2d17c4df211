"""Integration tests: real ``orch server`` processes on RabbitMQ, started by the
``orch_servers`` fixture of :mod:`orch.testing` (the fleet orch's own suite uses)."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
