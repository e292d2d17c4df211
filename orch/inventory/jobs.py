"""Job history: every request a client sends and every reply it receives, in the store.

:class:`JobRecorder` is a call observer (``orch_call_observers``). It never writes on the
client's reply path: each event is put on a bounded queue and one writer thread of its
own stores it (the job as soon as it is sent, replies in batches). If the store is slow the
queue absorbs it; if it is full, events are dropped and counted, never waited for. When
the client closes, the writer gets :data:`FLUSH_TIMEOUT` seconds to store what is queued.
A client killed after sending leaves its job recorded (it is written while replies are
awaited) with the replies stored before it died. Arguments named in ``audit_redact`` are
stored as ``"[redacted]"``, as in the audit log.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from orch.core.audit import REDACTED
from orch.core.inventory import InventoryStore, JobRecord, ReplyRecord

if TYPE_CHECKING:
    from orch.core.client import CallResult
    from orch.core.protocol import Reply, Request

log = logging.getLogger(__name__)

QUEUE_LIMIT = 100_000
FLUSH_TIMEOUT = 5.0
BATCH_SECONDS = 0.05
_STOP = ("stop",)


class JobRecorder:
    """Records calls into the store ``open_store()`` returns (opened in the writer)."""

    def __init__(self, open_store: Any, redact: Iterable[str] = ()) -> None:
        self._open_store = open_store
        #: Argument names whose values are stored as "[redacted]" (``audit_redact``).
        self._redact = frozenset(redact)
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0

    # -- CallObserver (the client's threads: only queue) ------------------------------

    def sent(self, request: Request, expected: Sequence[str] | None) -> None:
        job = JobRecord(request.id, request.caller, request.collective, request.agent,
                        request.action,
                        {k: (REDACTED if k in self._redact else v)
                         for k, v in request.data.items()},
                        dict(request.filter),
                        None if expected is None else tuple(expected), request.time)
        self._put(("job", job))

    def replied(self, request: Request, reply: Reply) -> None:
        self._put(("reply", request.id, ReplyRecord(
            reply.sender, int(reply.statuscode), reply.statusmsg, dict(reply.data),
            time.time())))

    def finished(self, result: CallResult) -> None:
        self._put(("finished", result.request_id, time.time()))

    def close(self) -> None:
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=FLUSH_TIMEOUT)
        thread.join(timeout=FLUSH_TIMEOUT)
        if thread.is_alive():
            log.warning("job history: %d event(s) not stored in %.0f s; given up",
                        self._queue.qsize(), FLUSH_TIMEOUT)

    # -- the writer ------------------------------------------------------------------

    def _put(self, event: tuple[Any, ...]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="orch-job-history",
                                                daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("job history is behind; %d event(s) dropped", self.dropped)

    def _run(self) -> None:
        try:
            store: InventoryStore = self._open_store()
        except Exception as exc:
            log.error("job history disabled: cannot open the store: %s", exc)
            self._discard()
            return
        try:
            while True:
                events = [self._queue.get()]
                deadline = time.monotonic() + BATCH_SECONDS
                while events[-1] is not _STOP:
                    try:
                        events.append(self._queue.get(
                            timeout=max(deadline - time.monotonic(), 0)))
                    except queue.Empty:
                        break
                try:
                    _store(store, events)
                except Exception as exc:  # an outage loses history, never a call
                    log.error("job history: %d event(s) not stored: %s", len(events), exc)
                if events[-1] is _STOP:
                    return
        finally:
            store.close()

    def _discard(self) -> None:
        while self._queue.get() is not _STOP:
            pass


def _store(store: InventoryStore, events: list[tuple[Any, ...]]) -> None:
    replies: dict[str, list[ReplyRecord]] = {}
    for event in events:
        if event[0] == "job":
            _flush(store, replies)
            store.record_job(event[1])
        elif event[0] == "reply":
            replies.setdefault(event[1], []).append(event[2])
        elif event[0] == "finished":
            _flush(store, replies)
            store.finish_job(event[1], event[2])
    _flush(store, replies)


def _flush(store: InventoryStore, replies: dict[str, list[ReplyRecord]]) -> None:
    for request_id, records in replies.items():
        store.record_replies(request_id, records)
    replies.clear()

