"""The session process: warm imports, one forked child per command.

Started by :func:`orch.resident.control.start` as ``python -P -m orch.resident.session``, in a
new session with no terminal. It listens on the socket :mod:`orch.resident.wire` names, with
one thread (forking is only safe then), and a selector over the socket, each running
command's connection and pidfd, and a wake-up pipe for signals.

A command is run only when it comes from this user (``SO_PEERCRED``) with the same
:func:`~orch.resident.wire.facts` as the session, and the code the session imported is
unchanged on disk; otherwise it is refused and runs by itself (a stale session also stops).
The child starts a new process group, takes the command's streams as 0, 1 and 2, its working
directory, umask, environment and arguments, rebuilds ``sys.stdin``/``stdout``/``stderr``
with its encodings, resets logging and signals, and runs :func:`orch.cli.main.run`. Before it
exits it reports which modules it imported, and the session imports them too, so the second
command of a kind starts as warm as the first one ended.

Signals the command's process receives are relayed to the child's process group; a command
whose process disappears gets SIGHUP, as from a closed terminal. The session stops on SIGTERM,
``orch session stop``, after ``idle`` seconds without a command, or when stale — but only
after the commands it runs have finished, so each still gets its exit status.
"""

from __future__ import annotations

import argparse
import atexit
import codecs
import contextlib
import fcntl
import importlib
import io
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from orch.core.errors import interrupted
from orch.resident import wire

log = logging.getLogger("orch.resident")

#: A connected command must have sent its frame by then.
REQUEST_TIMEOUT = 5.0
#: Commands running at once; one more is refused and runs by itself.
MAX_RUNNING = 64
#: Bytes of module names a child reports: below a pipe's buffer, so the write never blocks.
REPORT_LIMIT = 60_000
#: Imported before the first command: what every client command needs.
WARM = ("orch.cli.group", "orch.cli.commands", "orch.core.client", "orch.core.plugins")
RELAYED = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT})


@dataclass
class Running:
    """A command's child, the connection its exit status goes back on, its module report."""

    conn: socket.socket
    pid: int
    pidfd: int
    report: int


class Session:
    def __init__(self, path: str, idle: float = wire.DEFAULT_IDLE) -> None:
        self.path = path
        self.idle = idle
        self.started = time.time()
        self.served = 0
        self.running: dict[int, Running] = {}
        self.stopping: str | None = None
        self._stamps: dict[str, int | None] = {}
        self._facts: dict[str, Any] = {}
        self._last = time.monotonic()
        self._selector = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._wake_r, self._wake_w = os.pipe()
        self._identity: int | None = None  # the socket file's inode once bound

    # -- start ---------------------------------------------------------------------------

    def bind(self) -> None:
        """Listen on the socket, readable and writable by this user only."""
        mask = os.umask(0o077)
        try:
            self._listener.bind(self.path)
        finally:
            os.umask(mask)
        self._listener.listen(64)
        self._listener.setblocking(False)
        self._identity = os.lstat(self.path).st_ino

    def warm(self, modules: tuple[str, ...] = WARM) -> None:
        """Import what commands need, then record what must not change under them."""
        for name in modules:
            self._import(name)
        self._facts = wire.facts()
        self._stamp()

    # -- the loop ------------------------------------------------------------------------

    def serve(self) -> None:
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while self.running or not self.stopping:
                timeout = None
                if not self.running and not self.stopping and self.idle > 0:
                    timeout = max(0.0, self._last + self.idle - time.monotonic())
                events = self._selector.select(timeout)
                if not events and timeout is not None and not self.running:
                    self._stop(f"idle for {self.idle:g} s")
                for key, _mask in events:
                    self._dispatch(key.data)
        finally:
            self.close()
        log.info("session stopped: %s; served %d command(s)", self.stopping, self.served)

    def close(self) -> None:
        """Release the socket (removing its file), the selector and the wake-up pipe."""
        self._close_listener()
        self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = self.stopping or f"signal {signal.Signals(signum).name}"

    def _dispatch(self, data: Any) -> None:
        if data == "accept":
            self._accept()
        elif data == "wake":
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)
            if self.stopping:
                self._close_listener()
        elif data[1] in self.running:  # else already reaped in this round of events
            running = self.running[data[1]]
            if data[0] == "conn":
                self._from_command(running)
            else:
                self._reap(running)

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        fds: list[int] = []
        try:
            conn.settimeout(REQUEST_TIMEOUT)
            if wire.peer_uid(conn) != os.geteuid():
                log.warning("refused a connection from another user")
                conn.close()
                return
            message, fds = wire.recv_frame(conn, max_fds=len(wire.STREAMS))
            self._handle(conn, message, fds)
        except (OSError, ValueError) as exc:
            log.info("dropped a connection: %s", exc)
            conn.close()
        finally:
            for fd in fds:
                os.close(fd)

    def _handle(self, conn: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
        op = message.get("op")
        if op == "status":
            wire.send_frame(conn, self.status())
            conn.close()
        elif op == "stop":
            self._stop("asked to stop")
            wire.send_frame(conn, self.status())
            conn.close()
        elif op == "run":
            if threading.active_count() > 1:
                self._stop("a thread runs in the session (a fork would not be safe)")
            reason = self._refusal(message, fds)
            if reason is not None:
                log.info("declined a command: %s", reason)
                wire.send_frame(conn, {"refused": reason})
                conn.close()
            else:
                self._start(conn, message, fds)
        else:
            wire.send_frame(conn, {"refused": f"unknown operation {op!r}"})
            conn.close()

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "socket": self.path, "started": self.started,
                "served": self.served, "running": len(self.running), "idle": self.idle,
                "modules": len(sys.modules), "python": sys.executable,
                "stopping": self.stopping}

    # -- one command ---------------------------------------------------------------------

    def _refusal(self, message: dict[str, Any], fds: list[int]) -> str | None:
        """Why this command must run by itself, or None."""
        if self.stopping:
            return f"the session is stopping ({self.stopping})"
        if len(self.running) >= MAX_RUNNING:
            return f"the session already runs {MAX_RUNNING} commands"
        problem = _malformed(message, fds)
        if problem:
            return problem
        if message["facts"] != self._facts:
            differs = sorted(k for k in self._facts if message["facts"].get(k) != self._facts[k])
            return f"different {', '.join(differs or ['facts'])} from the session's"
        stale = self.stale()
        if stale:
            self._stop(f"stale: {stale}")
            return f"the session is stale ({stale}); it stops"
        return None

    def _start(self, conn: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
        wire.send_frame(conn, {"accepted": True})  # before the fork: else the command may
        report_r, report_w = os.pipe()              # run twice (here and by itself)
        # A signal relayed at once must wait until the child can take it: blocked across
        # the fork (the child unblocks it when the command starts), and the child's process
        # group set from here too, so that killpg finds it whichever process runs first.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, RELAYED)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child ends in os._exit; its effects are tested
            code = 70
            try:
                os.close(report_r)
                code = self._child(conn, message, fds, report_w)
            except BaseException:
                traceback.print_exc()  # onto the command's stderr once it is in place
            finally:
                os._exit(code)
        with contextlib.suppress(OSError):  # the child may have done it, or be gone
            os.setpgid(pid, pid)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(report_w)
        # Lets the command hang its child up if we die; if it is gone, _from_command does.
        with contextlib.suppress(OSError):
            wire.send_frame(conn, {"started": pid})
        pidfd = os.pidfd_open(pid)
        running = Running(conn, pid, pidfd, report_r)
        self.running[pid] = running
        conn.setblocking(False)
        self._selector.register(conn, selectors.EVENT_READ, ("conn", pid))
        self._selector.register(pidfd, selectors.EVENT_READ, ("exit", pid))

    def _from_command(self, running: Running) -> None:
        """A signal to relay, or the command's process gone (SIGHUP, as a terminal would)."""
        try:
            running.conn.settimeout(REQUEST_TIMEOUT)
            message, _ = wire.recv_frame(running.conn)
            signum = message.get("signal")
        except (OSError, ValueError):
            self._selector.unregister(running.conn)
            running.conn.close()
            signum = signal.SIGHUP
        if signum in RELAYED:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(running.pid, signum)

    def _reap(self, running: Running) -> None:
        _pid, status = os.waitpid(running.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        self._selector.unregister(running.pidfd)
        os.close(running.pidfd)
        del self.running[running.pid]
        self.served += 1
        self._last = time.monotonic()
        if running.conn.fileno() != -1:
            self._selector.unregister(running.conn)
            try:
                running.conn.settimeout(REQUEST_TIMEOUT)
                wire.send_frame(running.conn, {"exit": code} if code >= 0 else {"signal": -code})
            except OSError:
                pass
            running.conn.close()
        self._learn(running.report)

    # -- staying warm and current --------------------------------------------------------

    def _learn(self, report: int) -> None:
        """Import what a child imported, so the next command finds it ready."""
        try:
            data = b""
            while chunk := os.read(report, REPORT_LIMIT):
                data += chunk
                if len(data) > REPORT_LIMIT:
                    break
        finally:
            os.close(report)
        names = [n for n in data.decode("utf-8", "replace").split("\n")[:5000]
                 if n and n not in sys.modules and all(p.isidentifier() for p in n.split("."))]
        for name in names:
            self._import(name)
        if names:
            self._stamp()

    def _import(self, name: str) -> None:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # a module that fails here fails in the child too
            if isinstance(exc, KeyboardInterrupt):
                raise
            log.debug("could not import %s ahead: %s", name, exc)

    def _stamp(self) -> None:
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str) and path not in self._stamps:
                self._stamps[path] = _mtime(path)

    def stale(self) -> str | None:
        """A file the session's code came from that changed since, or None."""
        if list(sys.path) != self._facts["path"]:
            return "sys.path changed"
        for path, mtime in self._stamps.items():
            if _mtime(path) != mtime:
                return f"{path} changed"
        return None

    # -- stopping ------------------------------------------------------------------------

    def _stop(self, why: str) -> None:
        if not self.stopping:
            self.stopping = why
        self._close_listener()

    def _close_listener(self) -> None:
        """No new commands: the socket goes away now (if it is still ours)."""
        if self._listener.fileno() == -1:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._listener)
        self._listener.close()
        with contextlib.suppress(OSError):
            if self._identity is not None and os.lstat(self.path).st_ino == self._identity:
                os.unlink(self.path)  # not a socket another session has put there since
        _release_lock()  # a new session may start while the running commands finish

    # -- in the child --------------------------------------------------------------------

    def _child(self, conn: socket.socket, message: dict[str, Any], fds: list[int],
               report: int) -> int:  # pragma: no cover - runs in the forked child
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        conn.close()
        self._listener.close()
        self._selector.close()
        for other in self.running.values():
            other.conn.close()
            os.close(other.pidfd)
            os.close(other.report)
        os.close(self._wake_r)
        os.close(self._wake_w)
        _release_lock()  # a command outliving a killed session must not hold it
        for target, fd in zip(message["fds"], fds, strict=True):
            os.dup2(fd, target)
            if fd != target:
                os.close(fd)
        os.chdir(message["cwd"])
        os.umask(message["umask"])
        os.environ.clear()
        os.environ.update(message["env"])
        sys.argv = [message["argv0"], *message["argv"]]
        _reopen_streams(message["streams"], set(message["fds"]))
        for handler in logging.root.handlers[:]:
            handler.close()
            logging.root.removeHandler(handler)
        logging.root.setLevel(logging.WARNING)
        before = set(sys.modules)
        code = _run(message["argv"])
        try:
            new = "\n".join(sorted(set(sys.modules) - before)).encode()[:REPORT_LIMIT]
            os.write(report, new[:new.rfind(b"\n")] if len(new) == REPORT_LIMIT else new)
        except OSError:
            pass
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        return code


def _malformed(message: dict[str, Any], fds: list[int]) -> str | None:
    """What is wrong with a ``run`` frame's shape, or None."""
    def strings(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    env = message.get("env")
    if not (strings(message.get("argv")) and isinstance(message.get("argv0"), str)
            and isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in env.items())
            and isinstance(message.get("cwd"), str) and isinstance(message.get("umask"), int)
            and isinstance(message.get("facts"), dict)
            and isinstance(message.get("streams"), list) and len(message["streams"]) == 3):
        return "a malformed command"
    passed = message.get("fds")
    if (not isinstance(passed, list) or len(passed) != len(fds)
            or not all(fd in wire.STREAMS for fd in passed) or len(set(passed)) != len(passed)):
        return "the standard streams did not arrive"
    return None


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _reopen_streams(streams: list[Any], passed: set[int]) -> None:  # pragma: no cover
    """``sys.stdin``/``stdout``/``stderr`` on the command's descriptors and encodings."""
    for fd, name, spec in zip(wire.STREAMS, ("stdin", "stdout", "stderr"), streams,
                                 strict=True):
        if fd not in passed:
            setattr(sys, name, None)
            continue
        encoding, errors, unbuffered = (spec if isinstance(spec, list) and len(spec) == 3
                                        else (None, None, False))
        try:
            codecs.lookup(encoding or "utf-8")
        except (LookupError, TypeError):
            encoding = "utf-8"
        tty = os.isatty(fd)
        binary: Any = open(fd, "rb" if fd == 0 else "wb", closefd=False)  # noqa: SIM115
        stream = io.TextIOWrapper(binary, encoding=encoding or "utf-8",
                                  errors=errors if isinstance(errors, str) else "strict",
                                  line_buffering=fd == 2 or (tty and fd == 1),
                                  write_through=unbuffered is True and fd != 0)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _run(argv: list[str]) -> int:  # pragma: no cover - runs in the forked child
    """Run the command as ``orch`` would; its exit status."""
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED)  # blocked since the fork
        from orch.cli.main import run

        run(argv)
        return 0
    except SystemExit as exc:
        return _exit_status(exc.code)
    except BaseException as exc:
        if interrupted(exc):  # Ctrl-C before click could report it (in an import)
            return 128 + signal.SIGINT
        traceback.print_exc()
        return 1


def _exit_status(code: object) -> int:
    """What the interpreter would exit with for ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _hold_lock(path: str) -> int | None:
    """Take the lock file beside ``path`` while this process listens (the descriptor stays
    open until the socket is gone, and commands never keep it: :meth:`Session._child`
    closes it); None when another session holds it. Two sessions started at once
    (by commands run at once that found none) thus end with one listening, and neither
    removes the other's socket."""
    global _LOCK_FD
    fd = os.open(wire.companion_path(path, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    _LOCK_FD = fd
    return fd


def _release_lock() -> None:
    global _LOCK_FD
    if _LOCK_FD >= 0:
        os.close(_LOCK_FD)
        _LOCK_FD = -1


#: The lock :func:`_hold_lock` took (-1: none in this process).
_LOCK_FD = -1


def main(argv: list[str] | None = None) -> int:
    """``python -P -m orch.resident.session``: what :func:`orch.resident.control.start` runs."""
    parser = argparse.ArgumentParser(prog="orch.resident.session")
    parser.add_argument("--script-dir", required=True,
                        help="the directory of the orch script: sys.path[0] of a command")
    parser.add_argument("--idle", type=float, default=wire.DEFAULT_IDLE)
    parser.add_argument("--ready-fd", type=int, default=-1)
    options = parser.parse_args(argv)
    sys.path.insert(0, options.script_dir)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ready = os.fdopen(options.ready_fd, "w") if options.ready_fd >= 0 else None

    def tell(text: str) -> None:
        if text.startswith("error "):
            log.error("%s", text.removeprefix("error "))  # the log, for a start nobody awaits
        if ready is not None:
            ready.write(text + "\n")
            ready.flush()

    path = wire.socket_path()
    if _hold_lock(path) is None:
        tell(f"error another session is starting or running on {path}")
        return 1
    session = Session(path, options.idle)
    try:
        # Whoever served a socket left here no longer holds the lock: it is a dead
        # session's, and nobody else can be putting one there now.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        session.bind()
    except OSError as exc:
        tell(f"error cannot listen on {path}: {exc.strerror or exc}")
        return 1
    session.warm()
    log.info("session %d listening on %s (idle stop after %g s)", os.getpid(), path,
             options.idle)
    tell(f"ready {os.getpid()}")
    if ready is not None:
        ready.close()
    session.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
