"""Checking received messages on every core when they arrive faster than one core checks them.

Why: a client collecting replies from thousands of nodes spends most of its time verifying
signatures, one after the other, while the machine's other cores idle. libsodium (and
``cryptography``) release the GIL while they verify, so a few threads verify side by side.

:class:`CheckedReceiver` sits between a :class:`~orch.core.transport.ClientChannel` and the
code that collects replies. It hands back ``(raw, outcome)`` pairs in the order the messages
arrived, where ``outcome`` is what ``check(raw)`` returned or the
:class:`~orch.core.errors.ProtocolError` it raised. Only the calling thread touches the
channel (kombu connections are not thread-safe); the worker threads run ``check`` alone.

It only uses its threads when there is a backlog: a message that arrives on its own (a
50-node call) is checked at once in the calling thread, exactly as without a pool, and the
threads are created on the first backlog. The pool is bounded (``workers`` threads, at most
``MAX_BATCH`` messages per hand-over and ``MAX_IN_FLIGHT`` hand-overs outstanding) and
stopped by :meth:`CheckedReceiver.close`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from orch.core.errors import ProtocolError, TransportError
from orch.core.transport import ClientChannel

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Messages handed to a worker at once: large enough that the hand-over is cheap against
#: the checks, small enough that the first results come back quickly.
MAX_BATCH = 64
#: Batches handed over and not yet collected: bounds memory when checking falls behind.
MAX_IN_FLIGHT = 16
#: How long the calling thread waits for more messages before handing over a partial batch.
POLL = 0.0005


def default_workers() -> int:
    """Threads that check messages: one per core, at least 1, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


class _Batch(Generic[T]):
    __slots__ = ("done", "outcomes", "raws")

    def __init__(self, raws: list[bytes]) -> None:
        self.raws = raws
        self.outcomes: list[T | ProtocolError] = []
        self.done = threading.Event()


class CheckedReceiver(Generic[T]):
    """Receive from ``channel`` and ``check`` every message, on ``workers`` threads if needed.

    ``workers`` 0 or 1 checks everything in the calling thread (no pool).
    """

    def __init__(self, channel: ClientChannel, check: Callable[[bytes], T],
                 workers: int | None = None) -> None:
        self._channel = channel
        self._check = check
        self._workers = default_workers() if workers is None else workers
        self._threads: list[threading.Thread] = []
        self._work: queue.SimpleQueue[_Batch[T] | None] = queue.SimpleQueue()
        self._in_flight: deque[_Batch[T]] = deque()
        self._ready: deque[tuple[bytes, T | ProtocolError]] = deque()
        self._closed = False
        #: A channel failure, raised once everything received before it is handed back.
        self._failure: TransportError | None = None

    @property
    def pooled(self) -> bool:
        """True once worker threads were started (a backlog was seen)."""
        return bool(self._threads)

    def _checked(self, raw: bytes) -> T | ProtocolError:
        try:
            return self._check(raw)
        except ProtocolError as exc:
            return exc

    def receive(self, timeout: float) -> tuple[bytes, T | ProtocolError] | None:
        """The next message and its outcome, in arrival order; None after ``timeout``.

        Raises :class:`~orch.core.errors.TransportError` from the channel only once every
        message received before the failure has been handed back.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self._ready:
                return self._ready.popleft()
            self._harvest()
            if self._ready:
                return self._ready.popleft()
            if self._failure is not None:
                if not self._in_flight:
                    failure, self._failure = self._failure, None
                    raise failure
                self._in_flight[0].done.wait()  # workers always finish a batch
                continue
            remaining = deadline - time.monotonic()
            if self._in_flight:
                if not self._fill(0.0):
                    # Nothing new: wait for the oldest batch (bounded by the deadline).
                    self._in_flight[0].done.wait(max(remaining, 0.0))
                    if remaining <= 0 and not self._in_flight[0].done.is_set():
                        return None
                continue
            if remaining <= 0:
                return None
            raw = self._channel.receive(remaining)
            if raw is None:
                return None
            if self._workers <= 1:
                return raw, self._checked(raw)
            try:
                more = self._channel.receive(0.0)
            except TransportError as exc:
                self._failure = exc
                more = None
            if more is None:  # no backlog: check it here, at once
                return raw, self._checked(raw)
            self._start_pool()
            self._submit([raw, more])
            self._fill(0.0)

    def _fill(self, wait: float) -> bool:
        """Hand over whatever the channel has now, in batches; True if anything came."""
        batch: list[bytes] = []
        got = False
        while len(self._in_flight) < MAX_IN_FLIGHT and self._failure is None:
            try:
                raw = self._channel.receive(wait if not batch else 0.0)
            except TransportError as exc:
                self._failure = exc
                break
            if raw is None:
                break
            got = True
            batch.append(raw)
            if len(batch) >= MAX_BATCH:
                self._submit(batch)
                batch = []
            self._harvest()
        if batch:
            self._submit(batch)
        return got

    def _submit(self, raws: list[bytes]) -> None:
        batch: _Batch[T] = _Batch(raws)
        self._in_flight.append(batch)
        self._work.put(batch)

    def _harvest(self) -> None:
        while self._in_flight and self._in_flight[0].done.is_set():
            batch = self._in_flight.popleft()
            self._ready.extend(zip(batch.raws, batch.outcomes, strict=True))

    def _start_pool(self) -> None:
        if self._threads or self._closed:
            return
        for index in range(self._workers):
            thread = threading.Thread(target=self._run, name=f"orch-check-{index}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        log.debug("checking replies on %d threads", self._workers)

    def _run(self) -> None:
        while True:
            batch = self._work.get()
            if batch is None:
                return
            try:
                batch.outcomes = [self._guarded(raw) for raw in batch.raws]
            finally:
                batch.done.set()  # whatever happened, never leave the caller waiting

    def _guarded(self, raw: bytes) -> T | ProtocolError:
        try:
            return self._check(raw)
        except ProtocolError as exc:
            return exc
        except Exception as exc:  # a bug in check must not lose the rest of the batch
            log.exception("checking a message failed")
            return ProtocolError(f"message could not be checked: {exc!r}")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker threads (waiting at most ``timeout`` seconds for them)."""
        self._closed = True
        for _ in self._threads:
            self._work.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        self._threads = []

    def __enter__(self) -> CheckedReceiver[T]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
