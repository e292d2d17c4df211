"""Package operations one at a time, and dpkg's own lock respected.

Two things can collide with a package action: another orch request on the same node (the
agent runs requests in a worker pool) and another package manager (an operator's apt-get,
unattended-upgrades). The first waits its turn on :data:`NODE_LOCK` for a bounded time;
the second is detected without disturbing it — ``F_GETLK`` asks who holds dpkg's lock files
instead of taking them — and answered "busy" at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import threading
from collections.abc import Iterable, Iterator

#: One package operation per process: a real node runs one orch server.
NODE_LOCK = threading.Lock()
#: ``struct flock`` on Linux (64-bit off_t): type, whence, start, len, pid, padding.
_FLOCK = "hhqqi4x"


class Busy(Exception):
    """The package manager (or another orch package action) is busy; try again later."""


@contextlib.contextmanager
def one_at_a_time(lock: threading.Lock, wait: float) -> Iterator[None]:
    if not lock.acquire(timeout=wait):
        raise Busy(f"busy: another orch package action is running on this node (waited "
                   f"{wait:g}s); try again later")
    try:
        yield
    finally:
        lock.release()


def holder(path: str) -> int | None:
    """The PID holding a write lock on ``path`` (-1: an open-file-description lock), or
    None when it is free or does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        kind, _, _, _, pid = struct.unpack(_FLOCK, answer)
        return None if kind == fcntl.F_UNLCK else pid
    except OSError:
        return None
    finally:
        os.close(fd)


def check_free(paths: Iterable[str]) -> None:
    """Raise :class:`Busy` naming the lock and its holder when any of ``paths`` is held."""
    for path in paths:
        pid = holder(path)
        if pid is not None:
            who = f" by PID {pid}" if pid > 0 else ""
            raise Busy(f"busy: {path} is held{who} (another package manager is running); "
                       "try again later")


#: What apt-get says when it lost the race for the lock after our check.
LOCK_MESSAGES = ("Could not get lock", "Unable to acquire the dpkg frontend lock",
                 "Unable to lock the administration directory")
