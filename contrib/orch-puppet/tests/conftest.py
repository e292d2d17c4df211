"""Shared fixtures of orch-puppet's unit tests: simulated Puppet nodes served by a real
in-process orch fleet (``orch.core.fleet.Fleet``) on the ``memory://`` broker.

Security is not the subject of these tests, so they say ``security: insecure`` explicitly
(never relying on orch's default); ``test_agent.py`` has one test signed end to end with a
throw-away CA (``orch.demo.DemoPKI``). The integration tests (``-m integration``) have
their own fixtures in ``integration/``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakepuppet import install_fake_puppet
from simfleet import SimulatedFleet, simulated_settings


@pytest.fixture
def sim(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SimulatedFleet]:
    """Call ``sim.start([...])`` after laying out the nodes with ``fakepuppet.make_node``.

    ``@pytest.mark.plugin_settings(key=value)`` adds to ``plugins.puppet``.
    """
    marker = request.node.get_closest_marker("plugin_settings")
    extra = dict(marker.kwargs) if marker else {}
    root = tmp_path / "nodes"
    fake = install_fake_puppet(tmp_path / "bin")
    simulated = SimulatedFleet(root, fake, simulated_settings(root, fake, **extra))
    logging.getLogger("orch.security.insecure").setLevel(logging.ERROR)
    try:
        yield simulated
    finally:
        simulated.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "plugin_settings(**kw): extra plugins.puppet settings")
