"""Start, stop and ask the user's session: what ``orch session`` does, as a library."""

from __future__ import annotations

import os
import select
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from orch.core.errors import OrchError
from orch.resident import wire

#: How long a new session may take to listen and import what commands need.
START_TIMEOUT = 30.0
ASK_TIMEOUT = 5.0


class SessionError(OrchError):
    """A session could not be started or asked; the message says what to do."""


@dataclass(frozen=True)
class SessionStatus:
    pid: int
    socket: str
    started: float
    served: int
    running: int
    idle: float
    modules: int
    python: str
    stopping: str | None

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> SessionStatus:
        try:
            return cls(int(message["pid"]), str(message["socket"]), float(message["started"]),
                       int(message["served"]), int(message["running"]),
                       float(message["idle"]), int(message["modules"]),
                       str(message["python"]), message.get("stopping"))
        except (KeyError, TypeError, ValueError):
            raise SessionError(f"the session sent an unexpected answer: {message!r}") from None

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "socket": self.socket, "started": self.started,
                "served": self.served, "running": self.running, "idle": self.idle,
                "modules": self.modules, "python": self.python, "stopping": self.stopping,
                "log": log_path(self.socket)}


def log_path(socket_path: str | None = None) -> str:
    """Where the session writes what it did (beside its socket)."""
    return wire.companion_path(socket_path or wire.socket_path(), ".log")


def ask(op: str, path: str | None = None) -> dict[str, Any] | None:
    """The session's answer to ``op``, or None when no session listens at ``path``."""
    path = path or wire.socket_path()
    try:
        sock = wire.connect(path, ASK_TIMEOUT)
    except wire.WireError as exc:
        raise SessionError(str(exc)) from None
    except OSError as exc:
        raise SessionError(f"cannot reach the session at {path}: {exc}") from None
    if sock is None:
        return None
    try:
        wire.send_frame(sock, {"op": op})
        answer, _ = wire.recv_frame(sock)
    except OSError as exc:
        raise SessionError(f"the session at {path} did not answer: {exc}") from None
    finally:
        sock.close()
    return answer


def status(path: str | None = None) -> SessionStatus | None:
    answer = ask("status", path)
    return None if answer is None else SessionStatus.from_message(answer)


def stop(path: str | None = None) -> SessionStatus | None:
    """Ask the session to stop: it takes no more commands and ends after the running ones."""
    answer = ask("stop", path)
    return None if answer is None else SessionStatus.from_message(answer)


def _prepare_directory() -> str:
    directory = wire.session_dir()
    problem = wire.prepare_directory(directory)
    if problem:
        raise SessionError(problem)
    return directory


def start(idle: float = wire.DEFAULT_IDLE, timeout: float = START_TIMEOUT
          ) -> tuple[SessionStatus, bool]:
    """Start the session for this interpreter; its status and whether it is new.

    The session runs :func:`orch.resident.wire.session_argv` with this process's
    environment.
    """
    if wire.disabled():
        raise SessionError(f"{wire.SESSION_ENV} turns sessions off in this environment; "
                           "unset it to start one")
    directory = _prepare_directory()
    current = status()
    if current is not None and not current.stopping:
        return current, False
    path = wire.socket_path(directory)  # a dead session's socket: the new one replaces it
    read_end, write_end = os.pipe()
    log_fd = os.open(log_path(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        process = subprocess.Popen(
            wire.session_argv(idle, "--ready-fd", str(write_end)),
            stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, pass_fds=(write_end,),
            start_new_session=True, cwd="/")
    finally:
        os.close(write_end)
        os.close(log_fd)
    try:
        line = _read_line(read_end, timeout)
    finally:
        os.close(read_end)
    if line.startswith("ready "):
        process.returncode = 0  # it runs on by design; nothing here will wait for it
        answered = status(path)
        if answered is not None:
            return answered, True
        line = "error it stopped right after starting"
    if process.poll() is None:
        process.kill()
        process.wait(5)
    if line.startswith("error another session"):  # started meanwhile by another command
        raced = status(path)
        if raced is not None:
            return raced, False
    why = line.removeprefix("error ") if line else (
        f"it did not start within {timeout:g} s" if process.returncode in (None, -9)
        else f"it exited with status {process.returncode}")
    raise SessionError(f"the session did not start: {why}; see {log_path(path)}")


def _read_line(fd: int, timeout: float) -> str:
    """The first line written to ``fd`` within ``timeout`` seconds ('' at EOF or timeout)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data and len(data) < 4096:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode("utf-8", "replace")
