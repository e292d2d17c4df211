"""The thin side: hand this ``orch`` command to the user's session, or say it must run here.

:func:`delegate` runs before click or any other part of orch is imported. When there is no
session it costs one ``lstat``, and by default a double fork that starts one for the
commands after this one (``ORCH_SESSION``, :func:`orch.resident.wire.mode`). When there is
one, it checks that the socket and its directory are the user's own and that the process
listening is the user's (``SO_PEERCRED``), sends the command — arguments, environment,
working directory, umask, the encodings of the standard streams,
:func:`orch.resident.wire.facts` — with the standard streams themselves as file
descriptors, and waits for the session's answer:

- ``refused`` (the session is stopping, stale, full, or runs another interpreter, path,
  namespace or user): the command runs here, as if there were no session;
- ``accepted``: the command now runs in a child of the session, reading and writing this
  process's own terminal, pipes or files. From then on it is never run here as well: this
  process forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to it, and ends with its exit status
  (killed by a signal, this process kills itself with the same signal). If the session
  disappears first, this hangs the command up (SIGHUP, through a pidfd taken when it
  started), says its outcome is unknown, and exits 1.

Every wait before ``accepted`` is bounded by :data:`CONNECT_TIMEOUT`; after it, the wait lasts
as long as the command does, and ends when the session's connection does.
"""

from __future__ import annotations

import _signal  # the C modules under signal and socket: see wire
import _socket
import os
import sys

from orch.resident import wire

TYPE_CHECKING = False  # importing typing is most of a bare interpreter's start-up
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

#: Commands that always run in their own process: the session's own commands, the daemon (a
#: service manager starts it; its pid, pid file and lifetime are its own), and the other
#: long-running ones, which a warm start does not speed up (the demo's prompt, a simulated
#: fleet, the API server, the inventory's registration listener).
OWN_PROCESS = frozenset({"session", "server", "demo", "sim", "api", "registry"})
CONNECT_TIMEOUT = 5.0
FORWARDED: tuple[int, ...] = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP,
                              _signal.SIGQUIT)
EXIT_LOST = 1


def delegate(args: list[str]) -> int | None:
    """The exit status of ``orch ARGS`` run by the session, or None to run it here."""
    unknown = wire.unknown_mode()
    if unknown is not None:
        sys.stderr.write(f"orch: {wire.SESSION_ENV}={unknown} is not auto, on or off; "
                         "taking auto, the default\n")
    if OWN_PROCESS.intersection(args[:3]) or wire.disabled():
        return None
    path = wire.socket_path()
    try:
        sock = wire.connect(path, CONNECT_TIMEOUT)
    except OSError as exc:
        _debug(f"not using the session at {path}: {exc}")
        return None
    if sock is None:
        if wire.automatic():
            _start_for_later(path)
        return None
    # Held until it is known who runs the command: then forwarded, or taken here as usual.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, FORWARDED)
    try:
        answer = _offer(sock, args)
    except (OSError, ValueError) as exc:
        _debug(f"the session at {path} did not take the command ({exc}); running it here")
        answer = None
    if answer is None or answer.get("accepted") is not True:
        if answer is not None:
            _debug(f"the session declined: {answer.get('refused', answer)}; running it here")
        sock.close()
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARDED)
        return None
    sock.settimeout(None)
    return _follow(sock)


def _start_for_later(path: str) -> None:
    """No session, and ``ORCH_SESSION`` neither ``on`` nor ``off``: start one, detached,
    for the commands after this one, which runs here at once without waiting for it.

    What ``orch session start`` runs, from a grandchild in a new session (so it is nobody's
    child and no terminal's). Two commands doing this at once start one session: the
    second finds the first's lock and exits (its line in the session log says so). A
    directory that is not the user's own is left alone, as ``orch session start`` would
    refuse it.
    """
    problem = wire.prepare_directory(os.path.dirname(path))
    if problem:
        _debug(f"not starting a session: {problem}")
        return
    try:
        log = os.open(wire.companion_path(path, ".log"),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        _debug(f"not starting a session: {exc}")
        return
    argv = wire.session_argv(wire.DEFAULT_IDLE)
    try:
        child = os.fork()
    except OSError as exc:
        os.close(log)
        _debug(f"not starting a session: {exc}")
        return
    if child == 0:  # pragma: no cover - replaced by exec or ended at once
        code = 1
        try:
            if os.fork() == 0:
                os.setsid()
                os.chdir("/")
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                os.execv(sys.executable, argv)
            code = 0
        finally:
            os._exit(code)
    os.close(log)
    os.waitpid(child, 0)  # the middle process ends at once: no zombie, no wait
    _debug(f"started a session at {path} for the next commands (ORCH_SESSION=on uses one "
           "without starting it, off runs every command by itself)")


def _offer(sock: _socket.socket, args: list[str]) -> dict[str, Any]:
    fds = [fd for fd in wire.STREAMS if _is_open(fd)]
    umask = os.umask(0o077)
    os.umask(umask)
    streams = [[getattr(s, "encoding", None), getattr(s, "errors", None),
                bool(getattr(s, "write_through", False))] if s else None
               for s in (sys.stdin, sys.stdout, sys.stderr)]
    wire.send_frame(sock, {
        "op": "run", "argv0": sys.argv[0], "argv": list(args), "env": dict(os.environ),
        "cwd": os.getcwd(), "umask": umask, "fds": fds, "streams": streams,
        "facts": wire.facts(),
    }, fds)
    answer, _ = wire.recv_frame(sock)
    return answer


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _follow(sock: _socket.socket) -> int:
    """Forward signals until the session reports how the command ended."""
    sending = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal sending
        if sending:
            return  # a signal inside another's send: the first one is on its way
        sending = True
        try:
            wire.send_frame(sock, {"signal": signum})
        except OSError:
            pass
        finally:
            sending = False

    previous = {signum: _signal.signal(signum, forward) for signum in FORWARDED}
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARDED)  # held ones are forwarded now
    child: int | None = None  # a pidfd: names the command's process even after it is gone
    try:
        while True:
            try:
                message, _ = wire.recv_frame(sock)
                if isinstance(message.get("started"), int) and child is None:
                    child = _pidfd(message["started"])
                elif "exit" in message:
                    return int(message["exit"])
                elif "signal" in message:
                    return _die_like(int(message["signal"]), previous)
            except (OSError, TypeError, ValueError):
                stopped = child is not None and _hang_up(child)
                sys.stderr.write(
                    "orch: the session ended before this command did"
                    + (", so the command was stopped" if stopped else "")
                    + "; its outcome is unknown. `orch session status` says whether a "
                    "session runs; ORCH_SESSION=off runs commands by themselves.\n")
                return EXIT_LOST
    finally:
        for signum, handler in previous.items():
            _signal.signal(signum, handler)
        if child is not None:
            os.close(child)
        sock.close()


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None  # already ended


def _hang_up(pidfd: int) -> bool:
    """Stop the command as a closed terminal would; whether it was still running."""
    try:
        _signal.pidfd_send_signal(pidfd, _signal.SIGHUP)
    except OSError:
        return False
    return True


def _die_like(signum: int, previous: dict[int, Any]) -> int:
    """End as the command did: killed by ``signum`` (the shell then sees the same)."""
    for restored, handler in previous.items():
        _signal.signal(restored, handler)
    _signal.signal(signum, _signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return 128 + signum  # only if the signal does not end this process (SIGCHLD, say)


def _debug(text: str) -> None:
    """A note on stderr at ``--log-level debug`` (logging is not set up this early)."""
    if os.environ.get("ORCH_LOG_LEVEL", "").lower() == "debug" or "debug" in sys.argv[1:3]:
        sys.stderr.write(f"orch: {text}\n")
