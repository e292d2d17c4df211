"""Simulated Puppet nodes served by a real in-process orch fleet (memory broker).

Used by the unit tests' ``sim`` fixture (``conftest.py``) and the figures script.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakepuppet import plugin_section, puppet_like_process
from orch.core.client import Client
from orch.core.config import Settings, load_settings
from orch.core.fleet import Fleet, NodeSpec
from orch.core.plugins import default_registry


@dataclass
class SimulatedFleet:
    """Simulated Puppet nodes under ``root`` and the orch fleet serving them."""

    root: Path
    fake_puppet: Path
    settings: Settings
    fleet: Fleet | None = None
    client: Client | None = None
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def cli_args(self) -> list[str]:
        return ["--broker", "memory://", "-T", self.settings.collective,
                "--security", "insecure"]

    def start(self, identities: list[str], specs: list[NodeSpec] | None = None,
              **fleet_kwargs: Any) -> Client:
        self.fleet = Fleet(self.settings, specs or [NodeSpec(i) for i in identities],
                           default_registry(), **fleet_kwargs).start()
        self.client = Client(self.settings)
        return self.client

    def puppet_process(self) -> int:
        """A live process whose command line says puppet (a run or a daemon holding a lock)."""
        proc = puppet_like_process(self.root.parent / "bin")
        self.helpers.append(proc)
        return proc.pid

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.fleet is not None:
            self.fleet.stop()
        for proc in self.helpers:
            proc.kill()
            proc.wait(timeout=10)


def simulated_settings(root: Path, fake: Path, **section: Any) -> Settings:
    return load_settings(overrides={
        "broker": "memory://", "collective": f"pt{uuid.uuid4().hex[:8]}",
        "security": "insecure", "discovery_window": 0.2,
        "plugins": {"puppet": plugin_section(root, fake, **section)},
    }, environ={})
