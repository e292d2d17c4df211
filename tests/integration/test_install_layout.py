"""The documented install (docs/install.md), under a temporary root standing in for ``/``.

The session's ``clean_install`` is the built wheels in a fresh virtualenv at
``<root>/opt/orch``. This test lays out the rest as docs/install.md says — the shipped
``server.yaml`` (from the wheel's ``share/orch``) in ``<root>/etc/orch`` with the node's
key and a policy, ``<root>/var/log/orch`` for the audit log, ``<root>/var/cache/orch`` —
and starts the daemon with the shipped unit's own ``ExecStart`` and ``Environment``
lines (the unit's paths moved under the root), with ``$NOTIFY_SOCKET`` set as systemd
does for ``Type=notify``. Then, with the installed ``orch`` client: ping and rpc answered,
the audit log written with safe permissions, ``SIGHUP`` reported as reloading then ready,
``SIGTERM`` as stopping, exit 0. No systemd runs here; the unit itself is checked by
``systemd-analyze verify`` against the installed entry point.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from install_support import CleanInstall, isolated_environment
from orch_integration import (
    BROKERS,
    READY_TIMEOUT,
    STOP_TIMEOUT,
    new_collective,
    run_orch,
    session_ca,
)

from orch.testing import purge_collective

pytestmark = pytest.mark.integration

IDENTITY = "installed1"


class Layout:
    """``<root>/etc/orch``, ``<root>/var/log/orch`` … as docs/install.md makes them."""

    def __init__(self, install: CleanInstall, root: Path) -> None:
        self.install = install
        self.root = root
        self.etc = root / "etc" / "orch"
        self.logs = root / "var" / "log" / "orch"
        self.cache = root / "var" / "cache" / "orch"
        self.unit = install.share / "systemd" / "orch-server.service"

    def moved(self, text: str) -> str:
        """The shipped absolute paths, moved under the root."""
        for path in ("/opt/orch", "/etc/orch", "/var/log/orch", "/var/cache/orch"):
            text = text.replace(path, f"{self.root}{path}")
        return text

    def lay_out(self) -> None:
        (self.etc / "ssl").mkdir(parents=True)
        (self.etc / "policies").mkdir()
        self.etc.chmod(0o750)
        config = self.etc / "server.yaml"
        config.write_text(self.moved((self.install.share / "server.yaml").read_text()))
        config.chmod(0o640)
        ca = session_ca()
        from orch.security import pki

        cert = ca / "issued" / "node" / f"{IDENTITY}.pem"
        if not cert.exists():
            pki.issue(ca, IDENTITY, pki.ROLE_NODE)
        shutil.copy(ca / "ca.pem", self.etc / "ssl" / "ca.pem")
        shutil.copy(cert, self.etc / "ssl" / "node.pem")
        shutil.copy(cert.with_suffix(".key"), self.etc / "ssl" / "node.key")
        (self.etc / "ssl" / "node.key").chmod(0o600)
        (self.etc / "policies" / "rpcutil.policy").write_text("policy default allow\n")
        self.logs.mkdir(parents=True, mode=0o750)
        self.cache.mkdir(parents=True, mode=0o700)

    def service(self) -> configparser.SectionProxy:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(self.moved(self.unit.read_text()))
        return parser["Service"]

    def command(self) -> list[str]:
        return shlex.split(self.service()["ExecStart"])

    def environment(self) -> dict[str, str]:
        # One Environment= line is kept by configparser (the last); read them all.
        values = {}
        for line in self.moved(self.unit.read_text()).splitlines():
            if line.startswith("Environment="):
                key, _, value = line[len("Environment="):].partition("=")
                values[key] = value
        return values


class Notifications:
    """The ``$NOTIFY_SOCKET`` systemd would listen on: collects what the daemon sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(READY_TIMEOUT)
        self.received: list[str] = []

    def wait_for(self, state: str) -> None:
        """Read datagrams until one holds ``state`` (each read bounded by the timeout)."""
        while not any(state in message.splitlines() for message in self.received):
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                raise AssertionError(f"no {state} from the daemon within {READY_TIMEOUT:g}s; "
                                     f"got {self.received}") from None

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def layout(clean_install: CleanInstall, tmp_path: Path) -> Layout:
    # The venv lives under the session's root; the rest of / under this test's own.
    root = tmp_path / "root"
    (root / "opt").mkdir(parents=True)
    (root / "opt" / "orch").symlink_to(clean_install.venv)
    made = Layout(clean_install, root)
    made.lay_out()
    return made


@pytest.fixture
def notifications(tmp_path: Path) -> Iterator[Notifications]:
    listener = Notifications(tmp_path / "notify")
    yield listener
    listener.close()


def test_the_wheel_ships_the_deployment_files(clean_install: CleanInstall) -> None:
    for name in ("server.yaml", "systemd/orch-server.service",
                 "systemd/orch-server-privileged.conf", "logrotate/orch"):
        assert (clean_install.share / name).is_file(), name


def test_installed_unit_passes_systemd_analyze_verify(layout: Layout, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    unit = tmp_path / layout.unit.name
    unit.write_text(layout.moved(layout.unit.read_text()))
    checked = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert unit.name not in checked.stdout + checked.stderr


def test_daemon_and_client_from_the_installed_entry_points(
        layout: Layout, notifications: Notifications, tmp_path: Path) -> None:
    broker, collective = BROKERS["rabbitmq"], new_collective("layout")
    command = layout.command()
    assert command[0] == str(layout.root / "opt" / "orch" / "bin" / "orch")
    env = {**isolated_environment(), **layout.environment(), "ORCH_BROKER": broker,
           "ORCH_COLLECTIVE": collective, "ORCH_IDENTITY": IDENTITY,
           "NOTIFY_SOCKET": str(notifications.path)}
    log_file = tmp_path / "daemon.log"
    with log_file.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd="/")
    try:
        notifications.wait_for("READY=1")
        ping = run_orch("ping", "-I", IDENTITY, "--json", broker=broker,
                        collective=collective, orch=layout.install.orch)
        assert ping.rc == 0, ping.describe() + log_file.read_text()
        assert [r["sender"] for r in ping.json()["replies"]] == [IDENTITY]
        inventory = run_orch("rpc", "rpcutil", "inventory", "-I", IDENTITY, "--json",
                             broker=broker, collective=collective, orch=layout.install.orch)
        assert inventory.rc == 0, inventory.describe()
        assert inventory.json()["replies"][0]["statuscode"] == 0

        audit = layout.logs / "audit.log"
        assert stat.S_IMODE(audit.stat().st_mode) == 0o600
        records = [json.loads(line) for line in audit.read_text().splitlines()]
        assert {(r["agent"], r["action"], r["decision"]) for r in records} >= {
            ("rpcutil", "inventory", "allowed")}

        notifications.received.clear()
        proc.send_signal(signal.SIGHUP)
        notifications.wait_for("RELOADING=1")
        notifications.wait_for("READY=1")
        proc.send_signal(signal.SIGTERM)
        notifications.wait_for("STOPPING=1")
        assert proc.wait(STOP_TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
        purge_collective(broker, collective)
    text = log_file.read_text()
    assert "Traceback" not in text and f"node={IDENTITY} stopped" in text, text
    assert os.stat(layout.cache).st_mode & 0o077 == 0
