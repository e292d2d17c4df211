"""Run one function in a short-lived forked child and take back its (pickled) result.

Why: what a daemon does rarely — parse its own certificate and key at start and on SIGHUP,
check a peer certificate it has never seen (the x509 provider), build the plugin index by
importing every plugin (:meth:`orch.core.plugins.PluginRegistry.from_entry_points`) —
leaves modules resident once imported (``cryptography`` alone is about 11 MB). Done in a
forked child, they cost the daemon a few tens of milliseconds each time and no memory
afterwards. A fork starts with everything the caller has in memory (settings, anchors), so
nothing is pickled on the way in; only the result comes back, from a child running this
process's own code.

The child may run while other threads of the caller exist: it only computes and writes one
pipe, never logs or touches shared objects, and ends with ``os._exit``. Every wait is bounded:
a child that has not answered after ``timeout`` seconds is killed and :class:`ForkError`
raised (callers fail closed: no credentials loaded, the message rejected).
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: A result larger than this is refused (a CRL of a million serials pickles to ~10 MB).
MAX_RESULT = 64 * 1024 * 1024


class ForkError(RuntimeError):
    """The child could not run, answer in time, or be understood."""


def available() -> bool:
    return hasattr(os, "fork")


def run(func: Callable[..., T], *args: Any, timeout: float = 30.0) -> T:
    """``func(*args)`` computed in a forked child; its exception is re-raised here."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; coverage cannot follow os._exit
        code = 0
        try:
            os.close(read_fd)
            try:
                outcome: tuple[bool, Any] = (True, func(*args))
            except BaseException as exc:  # handed to the parent as it is
                outcome = (False, exc)
            try:
                data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                data = pickle.dumps((False, ForkError(f"unpicklable result: {exc!r}")))
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view):]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        data = _read_all(read_fd, time.monotonic() + timeout)
    except ForkError:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(read_fd)
        _reap(pid)
    try:
        ok, value = pickle.loads(data)
    except Exception as exc:
        raise ForkError(f"the child process gave no usable answer ({exc!r})") from None
    if ok:
        return value  # type: ignore[no-any-return,unused-ignore]
    raise value


def _read_all(fd: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ForkError("the child process did not answer in time")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_RESULT:
            raise ForkError("the child process's answer is too large")
        chunks.append(chunk)


def _reap(pid: int) -> None:
    """Wait for the child (it has written everything, or was killed): at most 5 s."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
