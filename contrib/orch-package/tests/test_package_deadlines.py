"""The package agent's deadline and one-at-a-time rule, with a stand-in apt-get.

The real agent runs in an in-process fleet with its apt-get replaced by a script that
announces itself (a marker file) and then sleeps: nothing is installed. ``dpkg-query``
is the machine's own and only reads; the tests are skipped where it is missing.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from orch.testing import FleetFactory, OrchFleet, wait_until

from orch_package import agent as agent_module
from orch_package.config import PackagePluginConfig
from orch_package.providers import AptProvider

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg-query")
PACKAGE = "orch-test-never-installed"


def fake_fleet(orch_fleet: FleetFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               **section: object) -> tuple[OrchFleet, Path]:
    marker = tmp_path / "started"
    fake = tmp_path / "apt-get"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexec sleep 30\n")
    fake.chmod(0o755)

    def choose(config: PackagePluginConfig) -> AptProvider:
        return AptProvider(config, str(fake), "apt-cache", str(shutil.which("dpkg-query")))

    monkeypatch.setattr(agent_module, "choose", choose)
    fleet = orch_fleet({"n1": {}}, agents=["package"], settings={"plugins": {"package": {
        "provider": "apt", "allow": [PACKAGE], "lock_files": [], **section}}})
    return fleet, marker


def test_apt_past_command_timeout_is_stopped_and_reported(
        orch_fleet: FleetFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, _ = fake_fleet(orch_fleet, tmp_path, monkeypatch, command_timeout=1)
    result = fleet.call("package", "install", package=PACKAGE)
    assert result.failed == ["n1"]
    message = result.replies["n1"].statusmsg
    assert f"install {PACKAGE} did not finish within 1s and was stopped" in message
    assert "is now absent" in message and "dpkg --configure -a" in message


def test_a_second_operation_on_the_node_answers_busy(
        orch_fleet: FleetFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, marker = fake_fleet(orch_fleet, tmp_path, monkeypatch, command_timeout=8,
                               lock_wait=0.2)
    first: list[object] = []
    worker = threading.Thread(target=lambda: first.append(
        fleet.call("package", "install", package=PACKAGE)))
    worker.start()
    wait_until(marker.exists, 20, "the first install to start apt-get")
    other = fleet.client_for("second.caller")  # a client is used by one thread at a time
    second = other.call("package", "uninstall", {"package": PACKAGE}, nodes=["n1"])
    assert second.failed == ["n1"]
    assert second.replies["n1"].statusmsg.startswith(
        "busy: another orch package action is running on this node")
    assert second.replies["n1"].data["busy"] is True
    status = other.call("package", "status", {"package": PACKAGE}, nodes=["n1"])  # no lock
    assert status.ok == ["n1"]
    worker.join(40)
    assert not worker.is_alive()
