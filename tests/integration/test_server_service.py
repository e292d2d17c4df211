"""``orch server --pidfile`` beside systemd readiness (issue 8 habits)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from orch_integration import (
    BROKERS,
    Daemon,
    NodeSpec,
    clean_environment,
    new_collective,
    orch_argv,
)

from orch.testing import wait_until

pytestmark = pytest.mark.integration


class ServiceDaemon(Daemon):
    """A daemon started with ``--pidfile`` and systemd's ``NOTIFY_SOCKET``."""

    def __init__(self, *args: object, pidfile: Path, notify: Path, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.pidfile, self.notify = pidfile, notify

    def extra_flags(self) -> list[str]:
        return ["--pidfile", str(self.pidfile)]

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "NOTIFY_SOCKET": str(self.notify)}


def test_pidfile_readiness_and_systemd_notification(tmp_path: Path) -> None:
    notify = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(30)
    pidfile = tmp_path / "run" / "orch.pid"
    daemon = ServiceDaemon(NodeSpec("svc1", {"role": "svc"}), BROKERS["rabbitmq"],
                           new_collective("svc"), tmp_path, pidfile=pidfile, notify=notify)
    daemon.start()
    try:
        message = listener.recv(4096).decode()
        assert "READY=1" in message
        assert pidfile.read_text().strip() == str(daemon.pid)
        wait_until(lambda: "node=svc1 ready" in daemon.log(), 10, "the ready log line")
        second = subprocess.run(
            [*orch_argv(), "server", "--identity", "svc2", "--broker", BROKERS["rabbitmq"],
             "--security", "insecure", "--pidfile", str(pidfile)],
            env=clean_environment(), capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL)
        assert second.returncode == 2, second.stderr
        assert f"names process {daemon.pid}, which is running" in second.stderr
        daemon.terminate()
        daemon.wait_stopped()
    finally:
        daemon.kill()
        listener.close()
    assert not pidfile.exists()
