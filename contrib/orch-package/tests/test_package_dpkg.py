"""The package agent against the real dpkg and apt, with packages built in the test.

Runs as root on a Debian-like machine (skipped elsewhere). Only ``orch-test-<random>``
packages are ever installed, from a private file repository through a private apt
configuration (see ``debrepo.py``), and purged afterwards; the dpkg database is the
machine's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from debrepo import LocalRepo
from orch.testing import FleetFactory, OrchFleet, assert_all_ok

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or not all(
        shutil.which(tool) for tool in ("dpkg", "dpkg-deb", "apt-get", "apt-cache")),
        reason="needs root, dpkg and apt"),
]

HOLD_LOCK = """
import fcntl, sys
fd = open(sys.argv[1], "a")
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[LocalRepo]:
    local = LocalRepo(tmp_path / "apt")
    try:
        yield local
    finally:
        local.purge()


def fleet_for(orch_fleet: FleetFactory, repo: LocalRepo, **section: object) -> OrchFleet:
    return orch_fleet({"n1": {}}, agents=["package"], settings={"plugins": {"package": {
        "provider": "apt", "allow": [repo.name], "apt_options": repo.apt_options,
        **section}}})


def data(fleet: OrchFleet, action: str, **args: object) -> dict[str, object]:
    result = fleet.call("package", action, **args)
    assert_all_ok(result)
    return dict(result.replies["n1"].data)


def test_install_outdated_update_status_uninstall(orch_fleet: FleetFactory,
                                                  repo: LocalRepo) -> None:
    repo.publish("1.0-1", "2.0-1")
    fleet = fleet_for(orch_fleet, repo)
    name = repo.name
    assert data(fleet, "status", package=name)["ensure"] == "absent"

    installed = data(fleet, "install", package=name, version="1.0-1")
    assert (installed["previous"], installed["ensure"], installed["changed"]) == \
        ("absent", "1.0-1", True)
    assert Path(f"/usr/share/doc/{name}/README").read_text().startswith(f"{name} 1.0-1")

    outdated = data(fleet, "outdated", package=name)
    assert outdated["candidate"] == "2.0-1"
    assert outdated["outdated"] == [{"package": name, "installed": "1.0-1",
                                     "candidate": "2.0-1"}]
    everything = data(fleet, "outdated")
    assert {"package": name, "installed": "1.0-1", "candidate": "2.0-1"} in \
        everything["outdated"]

    before = data(fleet, "md5")
    updated = data(fleet, "update", package=name)
    assert (updated["previous"], updated["ensure"]) == ("1.0-1", "2.0-1")
    after = data(fleet, "md5")
    assert before["md5"] != after["md5"] and before["count"] == after["count"]

    status = data(fleet, "status", package=name)
    assert (status["ensure"], status["arch"], status["db_status"]) == ("2.0-1", "all",
                                                                       "installed")
    assert data(fleet, "outdated", package=name)["candidate"] == ""

    again = data(fleet, "install", package=name)
    assert again["changed"] is False and "already 2.0-1" in str(again["message"])

    removed = data(fleet, "uninstall", package=name)
    assert (removed["previous"], removed["ensure"]) == ("2.0-1", "absent")
    assert not Path(f"/usr/share/doc/{name}/README").exists()


def test_a_version_the_repository_lacks_fails_and_says_why(orch_fleet: FleetFactory,
                                                            repo: LocalRepo) -> None:
    repo.publish("1.0-1")
    fleet = fleet_for(orch_fleet, repo)
    result = fleet.call("package", "install", package=repo.name, version="9.9-9")
    assert result.failed == ["n1"]
    message = result.replies["n1"].statusmsg
    assert "install" in message and "9.9-9" in message and "is absent" in message


def test_lock_held_by_another_process_is_busy(orch_fleet: FleetFactory,
                                              repo: LocalRepo) -> None:
    repo.publish("1.0-1")
    fleet = fleet_for(orch_fleet, repo)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, "/var/lib/dpkg/lock-frontend"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = fleet.call("package", "install", package=repo.name)
        assert result.failed == ["n1"]
        reply = result.replies["n1"]
        assert reply.statusmsg.startswith("busy: /var/lib/dpkg/lock-frontend is held by PID "
                                          f"{holder.pid}")
        assert reply.data["busy"] is True
        # Read-only actions do not need the lock.
        assert data(fleet, "status", package=repo.name)["ensure"] == "absent"
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert data(fleet, "install", package=repo.name)["ensure"] == "1.0-1"
