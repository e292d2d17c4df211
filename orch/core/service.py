"""Running ``orch server`` under a service manager: a pid file, and saying when it is ready.

systemd (``Type=notify``) and init scripts want to know two things: which process is the
daemon (``--pidfile``), and when it actually serves — consuming from the broker, not merely
started. :class:`ReadinessReporter` logs ``ready`` at info level each time the node starts
consuming (again after a broker outage) and, under systemd, sends ``READY=1`` to
``$NOTIFY_SOCKET`` the first time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

from orch.core.errors import ConfigError

log = logging.getLogger(__name__)


class PidFile:
    """Writes this process's pid to ``path`` for the daemon's life; removes it at exit.

    A pid file naming a live process refuses the start (two daemons with one identity would
    split the node's requests); a stale one is replaced.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def __enter__(self) -> PidFile:
        try:
            existing = int(self.path.read_text().strip() or "0")
        except (OSError, ValueError):
            existing = 0
        if existing and existing != os.getpid() and _alive(existing):
            raise ConfigError(f"pid file {self.path} names process {existing}, which is "
                              "running: is another orch server using it?")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            temporary.write_text(f"{os.getpid()}\n")
            temporary.replace(self.path)
        except OSError as exc:
            raise ConfigError(f"cannot write pid file {self.path}: {exc.strerror}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.path.read_text().strip() == str(os.getpid()):
                self.path.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def notify_systemd(state: str) -> bool:
    """Send ``state`` (``READY=1``) to systemd's ``$NOTIFY_SOCKET``; False without one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.sendto(state.encode(), address)
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", os.environ["NOTIFY_SOCKET"], exc)
        return False
    return True


class ReadinessReporter:
    """Watches a ready event: logs each time the daemon becomes ready, tells systemd once."""

    def __init__(self, ready: threading.Event, stop: threading.Event, describe: str) -> None:
        self._ready, self._stop, self._describe = ready, stop, describe
        self._thread = threading.Thread(target=self._watch, name="orch-readiness",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        notified = False
        while not self._stop.is_set():
            if not self._ready.wait(0.2):
                continue
            log.info("%s ready: consuming requests (pid %d)", self._describe, os.getpid())
            if not notified:
                notify_systemd(f"READY=1\nMAINPID={os.getpid()}")
                notified = True
            while self._ready.is_set() and not self._stop.wait(0.2):
                pass  # ready until the broker goes away (the transport clears the event)

    def join(self, timeout: float = 1.0) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)
