"""What the thin client and the session share: the socket's place, the frames, the facts.

Both sides import this module, and the thin side runs before every ``orch`` command, so it
imports only modules written in C or already loaded at start-up: ``_socket`` rather than
``socket``, ``marshal`` rather than ``json``. The friendly modules import ``enum``, ``re``
and ``typing``: 17 ms on the two-core machine of issue 13, more than a tenth of what a
handed-over command takes in all.

**Where.** One session per user, Python installation and control group: the socket is
``session-<key>.sock`` in ``$ORCH_SESSION_DIR``, else ``$XDG_RUNTIME_DIR/orch``, else
``/tmp/orch-<uid>``; ``<key>`` names the interpreter and the control group, so two
virtualenvs, or two ssh logins, never share one.
The directory must belong to the user and be closed to everyone else (like tmux's
``/tmp/tmux-<uid>``): a command's arguments and environment may hold secrets, so neither side
uses a directory or a socket another user could have made or can reach.

**Frames.** A 4-byte big-endian length, then that many bytes of a ``marshal``-ed dict of
plain values (str, int, bool, None, lists and dicts of them). The first frame of a command
carries its standard streams as file descriptors (``SCM_RIGHTS``). A frame larger than
:data:`MAX_FRAME`, or one that is not such a dict, ends the connection. ``marshal`` is not
meant for data from strangers, and none reaches it: both ends have checked that the other
is the same user (who could as well attach a debugger to the session), the directory is
closed to everyone else, and both ends run the same interpreter file.

**Facts.** A forked child inherits the session's interpreter, its ``sys.path`` and flags, its
namespaces, control group and resource limits, not the command's; :func:`facts` lists what
must therefore be equal for the child to behave as the command would have. Any difference,
and the command runs by itself: a service manager's command (its own cgroup) is never run
outside its unit, a shell with another ``ulimit`` keeps its limits.
"""

from __future__ import annotations

import _socket
import marshal
import os
import resource
import stat
import sys
import zlib

TYPE_CHECKING = False  # not typing's: importing typing is 9 ms of a bare interpreter's 10
if TYPE_CHECKING:
    from typing import Any

#: ``ORCH_SESSION``: unset, or ``auto`` (or any other value), a command that finds no session
#: runs by itself and starts one for the commands after it; ``on``, commands use a session
#: that runs but never start one (``orch session start`` does); ``off`` (or ``0``, ``no``,
#: ``false``), every command runs by itself.
SESSION_ENV = "ORCH_SESSION"
_OFF = ("off", "0", "no", "false")
_KNOWN = ("auto", "on", *_OFF)
#: Seconds without a command after which a session stops by itself.
DEFAULT_IDLE = 900.0
DIR_ENV = "ORCH_SESSION_DIR"
#: A command's frame holds its arguments and environment; nothing legitimate comes near this.
MAX_FRAME = 4 * 1024 * 1024
#: Standard input, output and error: what a command hands over.
STREAMS = (0, 1, 2)
_NAMESPACES = ("net", "mnt", "pid", "user", "uts", "ipc")
#: The resource limits a child would otherwise take from the session (``ulimit``).
_LIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
           "RLIMIT_MEMLOCK", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_STACK")
_FD_SIZE = 4  # a descriptor in SCM_RIGHTS data is a C int


class WireError(OSError):
    """The peer closed the connection, sent a bad frame, or is not who it must be."""


def mode(environ: Any = os.environ) -> str:
    """What ``ORCH_SESSION`` asks for: ``"off"``, ``"on"`` or ``"auto"`` (the default).

    Sessions start by themselves unless told otherwise, as Ansible's persistent SSH
    connections and Gradle's daemon do: half of a short command's time is Python importing
    what an earlier command already imported (issue 13). A value this does not know means
    the default rather than an error (:func:`unknown_mode` names it, for a line on stderr):
    this runs before the command line is parsed, where no error can end a command as its
    own errors do.
    """
    value = str(environ.get(SESSION_ENV, "")).strip().lower()
    if value in _OFF:
        return "off"
    return "on" if value == "on" else "auto"


def unknown_mode(environ: Any = os.environ) -> str | None:
    """The ``ORCH_SESSION`` value, when it is none of those :func:`mode` knows."""
    value = str(environ.get(SESSION_ENV, "")).strip()
    return value if value and value.lower() not in _KNOWN else None


def disabled(environ: Any = os.environ) -> bool:
    """``ORCH_SESSION=off``: every command runs by itself."""
    return mode(environ) == "off"


def automatic(environ: Any = os.environ) -> bool:
    """A command that finds no session starts one (and runs itself): unless ``ORCH_SESSION``
    is ``on`` or ``off``."""
    return mode(environ) == "auto"


def companion_path(socket: str, suffix: str) -> str:
    """The session's log (``.log``) or lock (``.lock``) file, beside its socket."""
    return os.path.splitext(socket)[0] + suffix


def session_argv(idle: float, *extra: str) -> list[str]:
    """The command that runs a session for this interpreter: ``python -P`` (no current
    directory on its path) with ``sys.path[0]``, the ``orch`` script's directory, given
    back to it, so that later commands run from that script have the same facts."""
    return [sys.executable, "-P", "-m", "orch.resident.session", "--script-dir", sys.path[0],
            "--idle", str(idle), *extra]


def session_dir() -> str:
    """The directory the socket lives in (it may not exist yet)."""
    chosen = os.environ.get(DIR_ENV)
    if chosen:
        return chosen
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "orch")
    return f"/tmp/orch-{os.geteuid()}"


def socket_path(directory: str | None = None) -> str:
    """The session socket for this interpreter and control group.

    The control group is in the name because a session never runs a command from another
    one (:func:`facts`): with one socket per interpreter, the first ssh login's session
    would answer every other login's commands with a refusal, and no other login could
    have a session of its own while it lived. A session started by a command, or by
    ``orch session start``, is in that command's group.
    """
    identity = f"{_interpreter()}\0{sys.prefix}\0{_cgroup() or ''}"
    key = zlib.crc32(identity.encode()) & 0xFFFFFFFF
    return os.path.join(directory or session_dir(), f"session-{key:08x}.sock")


def _interpreter() -> str:
    """The interpreter's file: ``python`` and ``python3`` in one virtualenv are the same."""
    return os.path.realpath(sys.executable)


def private(info: os.stat_result) -> bool:
    """Owned by this user and closed to group and others."""
    return info.st_uid == os.geteuid() and not info.st_mode & 0o077


def prepare_directory(directory: str) -> str | None:
    """Create ``directory`` (mode 0700) if need be; why it cannot hold a session socket,
    or None when it can."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        return (f"cannot create {directory}: {exc.strerror}; set {DIR_ENV} to a directory "
                "of yours")
    return check_directory(directory)


def check_directory(directory: str) -> str | None:
    """Why ``directory`` cannot hold a session socket, or None when it can."""
    try:
        info = os.lstat(directory)
    except OSError as exc:
        return f"{directory}: {exc.strerror}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{directory} is not a directory"
    if not private(info):
        return (f"{directory} must belong to you and be closed to everyone else "
                f"(chmod 700 {directory})")
    return None


def facts() -> dict[str, Any]:
    """What a forked child shares with the session and must share with the command."""
    flags = {name: getattr(sys.flags, name) for name in dir(sys.flags)
             if not name.startswith("_") and name not in ("count", "index", "safe_path")}
    namespaces: dict[str, str | None] = {}
    for name in _NAMESPACES:
        try:
            namespaces[name] = os.readlink(f"/proc/self/ns/{name}")
        except OSError:
            namespaces[name] = None
    limits = {name: resource.getrlimit(getattr(resource, name)) for name in _LIMITS
              if hasattr(resource, name)}
    return {
        "cgroup": _cgroup(), "limits": limits,
        "executable": _interpreter(), "prefix": sys.prefix, "version": sys.version,
        "path": list(sys.path), "flags": flags, "warnoptions": list(sys.warnoptions),
        "xoptions": {str(k): str(v) for k, v in sys._xoptions.items()},
        "fsencoding": sys.getfilesystemencoding(), "namespaces": namespaces,
        "uid": os.geteuid(), "gid": os.getegid(), "groups": sorted(os.getgroups()),
    }


def _cgroup() -> str | None:
    """This process's control groups, as the kernel lists them (None: no /proc)."""
    return _file_text("/proc/self/cgroup")


def _file_text(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(65536).decode("utf-8", "replace")
    except OSError:
        return None


def peer_uid(sock: _socket.socket) -> int:
    """The effective user id of the process at the other end (``SO_PEERCRED``)."""
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[4:8], sys.byteorder)


def connect(path: str, timeout: float) -> _socket.socket | None:
    """A connection to the session at ``path``, checked to be this user's own; None when no
    session listens there (no socket file, or one a killed session left behind).

    Raises :class:`WireError` when what is there is not this user's (a file, a socket in a
    directory others can reach, another user's process), OSError when it cannot be reached.
    """
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(info.st_mode) or not private(info):
        raise WireError(f"{path} is not a socket of yours: remove it")
    problem = check_directory(os.path.dirname(path))
    if problem is not None:
        raise WireError(problem)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        if peer_uid(sock) != os.geteuid():
            raise WireError(f"the process at {path} is not yours: remove the socket")
    except (ConnectionRefusedError, FileNotFoundError):
        sock.close()
        return None
    except BaseException:
        sock.close()
        raise
    return sock


def send_frame(sock: _socket.socket, message: dict[str, Any], fds: list[int] | None = None
               ) -> None:
    try:
        data = marshal.dumps(message)
    except ValueError as exc:
        raise WireError(f"cannot send {message!r}: {exc}") from None
    if len(data) > MAX_FRAME:
        raise WireError(f"frame of {len(data)} bytes is over the {MAX_FRAME}-byte limit")
    data = len(data).to_bytes(4, "big") + data
    sent = 0
    if fds:
        rights = b"".join(fd.to_bytes(_FD_SIZE, sys.byteorder, signed=True) for fd in fds)
        sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
    sock.sendall(data[sent:])


def _read(sock: _socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise WireError("the connection closed in the middle of a frame")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _descriptors(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            whole = len(data) - len(data) % _FD_SIZE
            fds += [int.from_bytes(data[i:i + _FD_SIZE], sys.byteorder, signed=True)
                    for i in range(0, whole, _FD_SIZE)]
    return fds


def recv_frame(sock: _socket.socket, max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """The next frame and the descriptors that came with it.

    Raises :class:`WireError` at a clean end of the connection, an oversized or malformed
    frame; ``TimeoutError`` when the socket has a timeout and the peer is silent.
    """
    fds: list[int] = []
    if max_fds:
        head, ancillary, _flags, _address = sock.recvmsg(
            4, _socket.CMSG_SPACE(max_fds * _FD_SIZE))
        fds = _descriptors(ancillary)
    else:
        head = sock.recv(4)
    try:
        if not head:
            raise WireError("the connection closed")
        head += _read(sock, 4 - len(head))
        size = int.from_bytes(head, "big")
        if size > MAX_FRAME:
            raise WireError(f"frame of {size} bytes is over the {MAX_FRAME}-byte limit")
        try:
            message = marshal.loads(_read(sock, size))
        except (EOFError, ValueError, TypeError) as exc:
            raise WireError(f"not a frame: {exc}") from None
        if not isinstance(message, dict):
            raise WireError("a frame must be a dict")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return message, fds
