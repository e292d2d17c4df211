"""The SysV provider against a real init script driven by the real service(8).

A throw-away script (a unique name, ``orch-test-<random>``) is installed in /etc/init.d
for the test and removed after; it starts a ``sleep`` daemon whose PID file lives in the
test's temporary directory, and the test stops it whatever happens. Needs root and
service(8); skipped otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from orch.testing import FleetFactory, assert_all_ok

from orch_service.config import ServicePluginConfig
from orch_service.providers import SysVProvider, choose

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("service") is None,
                       reason="needs root and service(8)"),
]

SCRIPT = """#!/bin/sh
### BEGIN INIT INFO
# Provides:          {name}
# Required-Start:
# Required-Stop:
# Default-Start:
# Default-Stop:
# Short-Description: orch-service test daemon (removed after the test)
### END INIT INFO
PIDFILE={pidfile}
running() {{ [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }}
case "$1" in
  start) running && exit 0
         sleep 3600 >/dev/null 2>&1 </dev/null & echo $! > "$PIDFILE"; echo started ;;
  stop)  running && kill "$(cat "$PIDFILE")"; rm -f "$PIDFILE"; echo stopped ;;
  restart) "$0" stop; "$0" start ;;
  reload) running || {{ echo "not running" >&2; exit 7; }}; echo reloaded ;;
  status) running && {{ echo running; exit 0; }}; echo "not running"; exit 3 ;;
  *) echo "usage: $0 start|stop|restart|reload|status" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def init_script(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    name = f"orch-test-{uuid.uuid4().hex[:10]}"
    pidfile = tmp_path / "daemon.pid"
    script = Path("/etc/init.d") / name
    script.write_text(SCRIPT.format(name=name, pidfile=pidfile))
    script.chmod(0o755)
    try:
        yield name, pidfile
    finally:
        script.unlink(missing_ok=True)
        if pidfile.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)


def provider() -> SysVProvider:
    chosen = choose(ServicePluginConfig.from_section({"provider": "sysv"}))
    assert isinstance(chosen, SysVProvider)
    return chosen


def test_start_status_restart_stop(init_script: tuple[str, Path]) -> None:
    name, pidfile = init_script
    sysv = provider()
    assert sysv.state(name) == "stopped"
    started = sysv.act(name, "start")
    assert started.ok, started.output
    assert sysv.state(name) == "running"
    first = int(pidfile.read_text())
    restarted = sysv.act(name, "restart")
    assert restarted.ok and sysv.state(name) == "running"
    assert int(pidfile.read_text()) != first
    assert sysv.act(name, "reload").ok
    stopped = sysv.act(name, "stop")
    assert stopped.ok and sysv.state(name) == "stopped"
    failed = sysv.act(name, "reload")
    assert failed.returncode == 7 and "not running" in failed.output


def test_unknown_service(init_script: tuple[str, Path]) -> None:
    assert provider().state(f"orch-test-absent-{uuid.uuid4().hex[:8]}") == "unknown"


def test_a_daemon_holding_stdout_does_not_hang_the_action(tmp_path: Path) -> None:
    """An init script whose daemon keeps the inherited stdout open still returns."""
    name = f"orch-test-{uuid.uuid4().hex[:10]}"
    script = Path("/etc/init.d") / name
    pidfile = tmp_path / "pid"
    script.write_text(f"#!/bin/sh\nsleep 3600 & echo $! > {pidfile}\necho started\n")
    script.chmod(0o755)
    try:
        result = provider().act(name, "start")
        assert result.ok and "started" in result.output
    finally:
        script.unlink(missing_ok=True)
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


def test_the_agent_on_a_real_node_drives_service8(init_script: tuple[str, Path],
                                                   orch_fleet: FleetFactory) -> None:
    """The real agent (not the simulation) in a one-node fleet: restart, stop, status."""
    name, _ = init_script
    fleet = orch_fleet({"n1": {}}, agents=["service"], settings={
        "plugins": {"service": {"provider": "sysv", "allow": [name]}}})
    restarted = fleet.call("service", "restart", service=name)
    assert_all_ok(restarted)
    data = restarted.replies["n1"].data
    assert (data["provider"], data["previous"], data["status"]) == ("sysv", "stopped",
                                                                    "running")
    assert fleet.call("service", "status", service=name).replies["n1"].data["status"] == \
        "running"
    stopped = fleet.call("service", "stop", service=name)
    assert_all_ok(stopped)
    assert stopped.replies["n1"].data["status"] == "stopped"
    unknown = fleet.call("service", "status", service="orch-test-absent")
    assert unknown.failed == ["n1"]


def test_a_command_past_its_deadline_is_killed_and_reported(orch_fleet: FleetFactory,
                                                            tmp_path: Path) -> None:
    name = f"orch-test-{uuid.uuid4().hex[:10]}"
    script = Path("/etc/init.d") / name
    script.write_text('#!/bin/sh\n[ "$1" = status ] && exit 3\nexec sleep 30\n')
    script.chmod(0o755)
    try:
        fleet = orch_fleet({"n1": {}}, agents=["service"], settings={
            "plugins": {"service": {"provider": "sysv", "allow": [name],
                                    "command_timeout": 1}}})
        result = fleet.call("service", "start", service=name)
        assert result.failed == ["n1"]
        assert "did not finish within 1s and was killed" in result.replies["n1"].statusmsg
    finally:
        script.unlink(missing_ok=True)
