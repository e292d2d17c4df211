"""What the thin client and the session share: the socket's place, the frames, the facts.

Both sides import this module, and the thin side runs before every ``orch`` command, so it
imports only what a bare interpreter has at hand (``os``, ``sys``, ``json``, ``socket``).

**Where.** One session per user and Python installation: the socket is
``session-<key>.sock`` in ``$ORCH_SESSION_DIR``, else ``$XDG_RUNTIME_DIR/orch``, else
``/tmp/orch-<uid>``; ``<key>`` names the interpreter, so two virtualenvs never share one.
The directory must belong to the user and be closed to everyone else (like tmux's
``/tmp/tmux-<uid>``): a command's arguments and environment may hold secrets, so neither side
uses a directory or a socket another user could have made or can reach.

**Frames.** A 4-byte big-endian length, then that many bytes of JSON (an object). The first
frame of a command carries its standard streams as file descriptors (``SCM_RIGHTS``). A frame
larger than :data:`MAX_FRAME` ends the connection.

**Facts.** A forked child inherits the session's interpreter, its ``sys.path`` and flags and
its namespaces, not the command's; :func:`facts` lists what must therefore be equal for the
child to behave as the command would have. Any difference, and the command runs by itself.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import zlib
from typing import Any

#: ``ORCH_SESSION=off`` (or ``0``, ``no``, ``false``) makes every command run by itself.
SESSION_ENV = "ORCH_SESSION"
DIR_ENV = "ORCH_SESSION_DIR"
#: A command's frame holds its arguments and environment; nothing legitimate comes near this.
MAX_FRAME = 4 * 1024 * 1024
#: Standard input, output and error: what a command hands over.
STREAMS = (0, 1, 2)
_NAMESPACES = ("net", "mnt", "pid", "user", "uts", "ipc")


class WireError(OSError):
    """The peer closed the connection, sent a bad frame, or is not who it must be."""


def disabled(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return environ.get(SESSION_ENV, "").strip().lower() in ("off", "0", "no", "false")


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
    """The session socket for this interpreter."""
    key = zlib.crc32(f"{_interpreter()}\0{sys.prefix}".encode()) & 0xFFFFFFFF
    return os.path.join(directory or session_dir(), f"session-{key:08x}.sock")


def _interpreter() -> str:
    """The interpreter's file: ``python`` and ``python3`` in one virtualenv are the same."""
    return os.path.realpath(sys.executable)


def private(info: os.stat_result) -> bool:
    """Owned by this user and closed to group and others."""
    return info.st_uid == os.geteuid() and not info.st_mode & 0o077


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
    return {
        "executable": _interpreter(), "prefix": sys.prefix, "version": sys.version,
        "path": list(sys.path), "flags": flags, "warnoptions": list(sys.warnoptions),
        "xoptions": {str(k): str(v) for k, v in sys._xoptions.items()},
        "fsencoding": sys.getfilesystemencoding(), "namespaces": namespaces,
        "uid": os.geteuid(), "gid": os.getegid(), "groups": sorted(os.getgroups()),
    }


def peer_uid(sock: socket.socket) -> int:
    """The effective user id of the process at the other end (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[4:8], sys.byteorder)


def send_frame(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None
               ) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_FRAME:
        raise WireError(f"frame of {len(data)} bytes is over the {MAX_FRAME}-byte limit")
    data = len(data).to_bytes(4, "big") + data
    sent = socket.send_fds(sock, [data], fds) if fds else 0
    sock.sendall(data[sent:])


def _read(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise WireError("the connection closed in the middle of a frame")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """The next frame and the descriptors that came with it.

    Raises :class:`WireError` at a clean end of the connection, an oversized or malformed
    frame; ``socket.timeout`` when the socket has a timeout and the peer is silent.
    """
    if max_fds:
        head, fds, _flags, _addr = socket.recv_fds(sock, 4, max_fds)
    else:
        head, fds = sock.recv(4), []
    try:
        if not head:
            raise WireError("the connection closed")
        head += _read(sock, 4 - len(head))
        size = int.from_bytes(head, "big")
        if size > MAX_FRAME:
            raise WireError(f"frame of {size} bytes is over the {MAX_FRAME}-byte limit")
        try:
            message = json.loads(_read(sock, size))
        except ValueError as exc:
            raise WireError(f"not a JSON frame: {exc}") from None
        if not isinstance(message, dict):
            raise WireError("a frame must be a JSON object")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return message, list(fds)
