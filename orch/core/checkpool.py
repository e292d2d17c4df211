"""Checking received messages on every core when they arrive faster than one core checks them.

Why: a client collecting replies from thousands of nodes spends most of its time verifying
signatures, one after the other, while the machine's other cores idle. Threads do not help:
libsodium releases the GIL while it verifies, but decoding and the checks around it hold it,
and measured on 2 cores (5,000 injected replies, median of 5) threads gave 8,167 replies/s
against 8,099 in one thread, at 30-60 % more CPU per reply. Worker *processes* gave 12,082:
the calling process keeps only the broker's framing (about 50 us per reply) and the workers
decode and verify.

:class:`CheckedReceiver` sits between a :class:`~orch.core.transport.ClientChannel` and the
code that collects replies. It hands back ``(raw, outcome)`` pairs in the order the messages
arrived, where ``outcome`` is what ``check(raw)`` returned or the
:class:`~orch.core.errors.ProtocolError` it raised. Only the calling process touches the
channel; the workers run ``check`` alone, on raw bytes sent to them through a pipe.

The workers are forked from the caller on the first backlog, so they start in milliseconds
with ``check`` and everything it uses already in memory (nothing is pickled but the messages
and the outcomes). The caller must not be using ``check``'s objects from another thread while
the pool starts. Where ``fork`` does not exist (Windows) everything is checked in the calling
thread. A message that arrives on its own is checked at once in the calling thread, exactly as
without a pool, and so is a short backlog: the workers start only once ``POOL_BACKLOG`` looks
in a row each found a message already waiting — a 50-node call never pays for forking them
(nor for importing :mod:`multiprocessing`, imported on first use). ``carry`` lets a worker
hand back what it learnt (the x509 provider's newly verified certificates) so that the caller
can keep it (its disk cache).

The pool is bounded (``workers`` processes, at most ``MAX_BATCH`` messages per hand-over,
``MAX_IN_FLIGHT`` hand-overs and ``MAX_IN_FLIGHT_BYTES`` outstanding) and stopped by
:meth:`CheckedReceiver.close`. A hand-over unanswered after ``BATCH_TIMEOUT`` (a worker that
died or hangs) ends the pool: its messages, and every later one, are checked in the calling
thread, so nothing is lost and no wait outlives its bound.

Forking is only safe where no other thread holds a lock the check needs: a caller in a
process with threads of its own (a daemon, a web server) passes ``workers=0``.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
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
#: the checks, small enough that the first results come back quickly (256 take a checker
#: about 17 ms on a fast day). Measured with 5,000 injected replies, runs alternating: 64
#: gave 14,053 / 14,252 / 13,408 verified replies/s with 53-55 µs of the collecting
#: process's CPU per reply, 256 gave 15,424 / 15,720 / 15,221 with 45-47 µs.
MAX_BATCH = 256
#: Batches handed over and not yet collected: bounds memory when checking falls behind.
MAX_IN_FLIGHT = 16
#: Bytes of messages handed over and not yet collected: the bound in bytes, whatever the
#: size of each message (a reply is about 1 KB; a hostile one may be megabytes).
MAX_IN_FLIGHT_BYTES = 32 * 1024 * 1024
#: Seconds :meth:`CheckedReceiver.close` waits for the workers to end.
STOP_TIMEOUT = 5.0
#: Seconds a hand-over may stay unanswered before its checker is presumed dead or stuck (a
#: batch takes milliseconds). ``multiprocessing.Pool`` never completes the task of a worker
#: that died, so without this bound one lost worker would hold every later reply forever.
BATCH_TIMEOUT = 10.0
#: Looks in a row that found a message already waiting before the workers are started: checking that
#: many here takes a few milliseconds, less than starting the pool (measured: 2 workers,
#: about 10 ms of imports and forks), so only a call that keeps falling behind pays for it.
POOL_BACKLOG = 64

#: ``(take, keep)``: ``take()`` runs in a worker after each batch and returns what it learnt;
#: ``keep(value)`` receives it in the calling process.
Carry = tuple[Callable[[], Any], Callable[[Any], None]]

_worker_check: Callable[[bytes], Any] | None = None
_worker_take: Callable[[], Any] | None = None


def default_workers() -> int:
    """Worker processes: one per core available to this process, at most 4; 0 on 1 core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(cores, 4)


def _guarded(check: Callable[[bytes], T], raw: bytes) -> T | ProtocolError:
    try:
        return check(raw)
    except ProtocolError as exc:
        return exc
    except Exception as exc:  # a bug in check must not lose the rest of the batch
        log.exception("checking a message failed")
        return ProtocolError(f"message could not be checked: {exc!r}")


def _init_worker(check: Callable[[bytes], Any], take: Callable[[], Any] | None) -> None:
    """Runs in each forked worker: remember what to run (inherited, never pickled).

    Ctrl-C reaches the whole process group; the caller handles it and stops the pool, so a
    worker ignores it rather than print a traceback.
    """
    global _worker_check, _worker_take
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_check, _worker_take = check, take


def _check_batch(raws: list[bytes]) -> tuple[list[Any], Any]:
    assert _worker_check is not None
    outcomes = [_guarded(_worker_check, raw) for raw in raws]
    return outcomes, (_worker_take() if _worker_take is not None else None)


class _Batch:
    __slots__ = ("due", "raws", "result", "size")

    def __init__(self, raws: list[bytes], result: Any) -> None:
        self.raws = raws
        self.size = sum(len(raw) for raw in raws)
        self.result = result  # a multiprocessing AsyncResult
        #: When an unanswered hand-over means its checker is lost (monotonic seconds).
        self.due = time.monotonic() + BATCH_TIMEOUT


class CheckedReceiver(Generic[T]):
    """Receive from ``channel`` and ``check`` every message, in ``workers`` processes if needed.

    ``workers`` None picks :func:`default_workers`; 0 or 1 checks everything in the calling
    thread (no pool).
    """

    def __init__(self, channel: ClientChannel, check: Callable[[bytes], T],
                 workers: int | None = None, carry: Carry | None = None) -> None:
        self._channel = channel
        self._check = check
        self._carry = carry
        self._workers = default_workers() if workers is None else workers
        if self._workers > 1 and not hasattr(os, "fork"):
            self._workers = 0
        self._pool: Any = None
        self._in_flight: deque[_Batch] = deque()
        self._ready: deque[tuple[bytes, T | ProtocolError]] = deque()
        self._closed = False
        #: Looks in a row that found a message already waiting (see :data:`POOL_BACKLOG`).
        self._streak = 0
        #: Seconds the caller spent checking messages, or waiting for the checkers: the
        #: client's own work, which a caller may keep from counting against a deadline.
        self.check_seconds = 0.0
        #: A channel failure, raised once everything received before it is handed back.
        self._failure: TransportError | None = None

    @property
    def channel(self) -> ClientChannel:
        """The channel this receiver reads."""
        return self._channel

    @property
    def backlog(self) -> bool:
        """True while messages already received are waiting for (or done with) a check."""
        return bool(self._ready or self._in_flight)

    @property
    def pooled(self) -> bool:
        """True once worker processes were started (a backlog was seen)."""
        return self._pool is not None

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
                self._wait_oldest(STOP_TIMEOUT)
                continue
            remaining = deadline - time.monotonic()
            if self._in_flight:
                # Nothing new: wait for the oldest batch (bounded by the deadline).
                if (not self._fill() and not self._wait_oldest(max(remaining, 0.0))
                        and remaining <= 0):
                    return None
                continue
            # With no time left this is still one look, without waiting, for a message
            # already there: the caller's last look before it decides replies stopped.
            raw = self._channel.receive(max(remaining, 0.0))
            if raw is None:
                return None
            if self._workers <= 1 or self._closed:
                return raw, self._checked(raw)
            try:
                more = self._channel.receive(0.0)
            except TransportError as exc:
                self._failure = exc
                more = None
            self._streak = 0 if more is None else self._streak + 1
            # The first message is always checked here: at once when it came alone (no
            # backlog), and before the workers fork, so that they inherit whatever it
            # loaded (the x509 provider's disk cache) instead of each loading it again.
            outcome = self._checked(raw)
            if more is None or self._streak < POOL_BACKLOG or not self._start_pool():
                if more is not None:
                    self._ready.append((more, self._checked(more)))
                return raw, outcome
            self._submit([more])
            self._fill()
            return raw, outcome

    def _fill(self) -> bool:
        """Hand over whatever the channel has now, in batches; True if anything came."""
        batch: list[bytes] = []
        size = self._in_flight_bytes()
        got = False
        while (len(self._in_flight) < MAX_IN_FLIGHT and self._failure is None
               and size < MAX_IN_FLIGHT_BYTES):
            try:
                raw = self._channel.receive(0.0)
            except TransportError as exc:
                self._failure = exc
                break
            if raw is None:
                break
            got = True
            batch.append(raw)
            size += len(raw)
            if len(batch) >= MAX_BATCH:
                self._submit(batch)
                batch = []
                self._harvest()
                size = self._in_flight_bytes()
        if batch:
            self._submit(batch)
        return got

    def _submit(self, raws: list[bytes]) -> None:
        self._in_flight.append(_Batch(raws, self._pool.apply_async(_check_batch, (raws,))))

    def _in_flight_bytes(self) -> int:
        return sum(batch.size for batch in self._in_flight)

    def _checked(self, raw: bytes) -> T | ProtocolError:
        """Check ``raw`` here, counting the time in :attr:`check_seconds`."""
        began = time.monotonic()
        try:
            return _guarded(self._check, raw)
        finally:
            self.check_seconds += time.monotonic() - began

    def _wait_oldest(self, timeout: float) -> bool:
        """Wait for the oldest batch; the wait is the checkers' work, so it is counted in
        :attr:`check_seconds` too."""
        oldest = self._in_flight[0]
        began = time.monotonic()
        oldest.result.wait(max(min(timeout, oldest.due - began), 0.0))
        self.check_seconds += time.monotonic() - began
        return bool(oldest.result.ready())

    def _harvest(self) -> None:
        if (self._in_flight and not self._in_flight[0].result.ready()
                and time.monotonic() >= self._in_flight[0].due):
            self._abandon_pool()
            return
        while self._in_flight and self._in_flight[0].result.ready():
            batch = self._in_flight.popleft()
            try:
                outcomes, learnt = batch.result.get(0)
            except Exception as exc:  # a worker died: reject its batch, never hang
                log.error("a reply checker process failed: %r", exc)
                error = ProtocolError(f"message could not be checked: {exc!r}")
                outcomes, learnt = [error] * len(batch.raws), None
            if learnt is not None and self._carry is not None:
                self._carry[1](learnt)
            self._ready.extend(zip(batch.raws, outcomes, strict=True))

    def _abandon_pool(self) -> None:
        """The oldest hand-over went unanswered past its bound: stop using the pool.

        Its messages and every later unanswered one are checked here instead, in arrival
        order (answers already back are kept); the workers are stopped in the background, as
        a stuck worker could hold up a pool's orderly end.
        """
        log.error("a reply checker process did not answer within %.0f s; checking the "
                  "remaining replies in this process", BATCH_TIMEOUT)
        batches, self._in_flight = list(self._in_flight), deque()
        for batch in batches:
            outcomes = None
            if batch.result.ready():
                try:
                    outcomes, learnt = batch.result.get(0)
                    if learnt is not None and self._carry is not None:
                        self._carry[1](learnt)
                except Exception:
                    outcomes = None
            if outcomes is None:
                outcomes = [self._checked(raw) for raw in batch.raws]
            self._ready.extend(zip(batch.raws, outcomes, strict=True))
        self._workers = 0
        pool, self._pool = self._pool, None
        if pool is not None:
            threading.Thread(target=pool.terminate, name="orch-checkers-stop",
                             daemon=True).start()

    def _start_pool(self) -> bool:
        if self._pool is not None:
            return True
        take = self._carry[0] if self._carry is not None else None
        # The workers' garbage collector would walk (and so copy) every object they
        # inherited: freeze them while forking, as the gc documentation advises.
        import multiprocessing

        gc.freeze()
        try:
            self._pool = multiprocessing.get_context("fork").Pool(
                self._workers, initializer=_init_worker, initargs=(self._check, take))
        except OSError as exc:  # out of processes or memory: check here instead
            log.warning("cannot start reply checker processes (%s); checking in one", exc)
            self._workers = 0
            return False
        finally:
            gc.unfreeze()
        log.debug("checking replies in %d processes", self._workers)
        return True

    def close(self) -> None:
        """Stop the worker processes (bounded: they are terminated, not awaited)."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            self._harvest()  # keep what finished batches learnt
            pool.terminate()
            pool.join()
        self._in_flight.clear()

    def __enter__(self) -> CheckedReceiver[T]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
