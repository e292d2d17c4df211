"""Supervising one child process: its output read (and capped), its deadline enforced on
its whole process group, its reply file watched for size, and nothing left behind.

Why a process group: Python threads cannot be killed, so an agent that hangs would hold a
worker forever. A child in its own process group can be: at the deadline the group gets
SIGTERM, then SIGKILL after the grace period.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from orch.agents.external.settings import Limits
from orch.core.processes import signal_group

#: One logger for the whole plugin, so the daemon log names it as before the split.
log = logging.getLogger("orch.agents.external")

#: How often a running agent's reply file size is checked (seconds).
_CHECK_INTERVAL = 0.1
#: Exit polling interval where pidfds are unavailable (not Linux).
_POLL_INTERVAL = 0.01
#: How long to keep reading output after the agent exited (a grandchild may hold the pipe).
_DRAIN_GRACE = 0.2
_READ_CHUNK = 65536





@dataclass
class _Capture:
    """Up to ``limit`` bytes of one output stream; the rest is read and counted."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def feed(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.dropped += max(len(chunk) - max(room, 0), 0)


@dataclass
class _Outcome:
    """What running the executable once produced."""

    stdout: _Capture
    stderr: _Capture
    returncode: int | None = None
    spawn_error: str | None = None
    timed_out: bool = False
    reply_too_large: bool = False
    reply: bytes | None = None
    reply_error: str | None = None
    elapsed: float = 0.0



def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with open(fd, "wb") as handle:
        handle.write(data)



def _open_pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), else None."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return int(pidfd_open(pid))
    except OSError:
        return None


def _has_exited(proc: subprocess.Popen[bytes]) -> bool:
    """True once ``proc`` has exited, without reaping it where the OS allows.

    An unreaped (zombie) leader keeps its process-group id reserved, so the group can
    still be signalled without any risk of hitting a recycled id.
    """
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return proc.poll() is not None
    try:
        return waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


class _Supervisor:
    """Watches one child: reads its output, enforces the deadline and the reply cap."""

    def __init__(self, proc: subprocess.Popen[bytes], reply_path: Path, limits: Limits,
                 outcome: _Outcome) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.proc, self.reply_path, self.limits, self.outcome = proc, reply_path, limits, outcome
        self.selector = selectors.DefaultSelector()
        self.captures = {proc.stdout.fileno(): outcome.stdout,
                         proc.stderr.fileno(): outcome.stderr}
        for fd in self.captures:
            self.selector.register(fd, selectors.EVENT_READ)
        self.pidfd = _open_pidfd(proc.pid)
        if self.pidfd is not None:
            self.selector.register(self.pidfd, selectors.EVENT_READ)
        self.exited = False
        self._checked = time.monotonic()

    def __enter__(self) -> _Supervisor:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Whatever happened, leave no process and no descriptor behind."""
        if self.proc.returncode is None:
            self._signal_group(signal.SIGKILL)
            try:
                self.outcome.returncode = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.error("external agent process %d did not die after SIGKILL",
                          self.proc.pid)
        self.selector.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def run(self, deadline: float) -> None:
        if not self._pump(deadline):
            self.outcome.timed_out = not self.outcome.reply_too_large
            self._signal_group(signal.SIGTERM)
            self._pump(time.monotonic() + self.limits.kill_grace)
        # The leader is gone (or ignored SIGTERM) but is not reaped yet, so the group id
        # is still ours: kill whatever it left behind, then reap.
        self._signal_group(signal.SIGKILL)
        self._drain(time.monotonic() + _DRAIN_GRACE)
        try:
            self.outcome.returncode = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # stuck in the kernel; __exit__ tries again
            log.error("external agent process %d did not die after SIGKILL", self.proc.pid)

    def _signal_group(self, signum: signal.Signals) -> None:
        signal_group(self.proc.pid, signum)

    def _read(self, fd: int) -> None:
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except OSError:
            chunk = b""
        if chunk:
            self.captures[fd].feed(chunk)
        else:
            self.selector.unregister(fd)

    def _reply_too_large(self) -> bool:
        now = time.monotonic()
        if now - self._checked < _CHECK_INTERVAL:
            return False
        self._checked = now
        try:
            size = self.reply_path.stat().st_size
        except OSError:
            return False
        return size > self.limits.max_reply_bytes

    def _pump(self, until: float) -> bool:
        """Read output until the leader exits (True) or ``until`` passes (False).

        Also stops early (False) when the reply file grows past the cap.
        """
        while not self.exited:
            now = time.monotonic()
            if now >= until:
                return False
            interval = _CHECK_INTERVAL if self.pidfd is not None else _POLL_INTERVAL
            for key, _ in self.selector.select(min(until - now, interval)):
                if key.fd == self.pidfd:
                    self.exited = True
                    self.selector.unregister(key.fd)
                else:
                    self._read(key.fd)
            if not self.exited and self.pidfd is None:
                self.exited = _has_exited(self.proc)
            if not self.outcome.reply_too_large and self._reply_too_large():
                self.outcome.reply_too_large = True
                return False
        return True

    def _drain(self, until: float) -> None:
        """Collect what is left in the pipes; a writer that escaped the process group
        (setsid) may keep them open, so this gives up at ``until``."""
        if self.pidfd is not None and self.pidfd in self.selector.get_map():
            self.selector.unregister(self.pidfd)
        while self.selector.get_map():
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            for key, _ in self.selector.select(remaining):
                self._read(key.fd)
