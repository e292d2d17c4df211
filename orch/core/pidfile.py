"""``orch server --pidfile``: which process is the daemon, for init scripts and monitors.

(Readiness — the ``ready`` log line and systemd's ``READY=1`` — is :mod:`orch.core.sdnotify`
and the daemon's own.)
"""

from __future__ import annotations

import logging
import os
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
