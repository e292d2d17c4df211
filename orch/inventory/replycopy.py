"""Copies of a node's replies for the registry, so job history outlives the client.

A client records each reply it receives; a client killed after sending receives nothing
more, and its private reply queue dies with it. With ``reply_copies: true`` in the
servers' ``inventory`` section, each server also publishes a copy of every reply it sends
— the same signed envelope — on the routing name :data:`ROUTE`, which registries bind and
record into the job history (verified like any reply). It doubles the reply traffic on the
broker, which is why it is off by default.

The request path only puts the payload on a bounded queue (:data:`QUEUE_LIMIT`; beyond
it copies are dropped and counted); a thread of this service publishes them through
:meth:`~orch.core.transport.Transport.publish`, over the connection the replies themselves
use (no broker connection of its own).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from typing import TYPE_CHECKING

from orch.core.errors import OrchError

if TYPE_CHECKING:
    from orch.core.server import Node
    from orch.core.transport import Transport

log = logging.getLogger(__name__)

ROUTE = "orch_job_replies"
QUEUE_LIMIT = 10_000
#: How long stopping waits to queue its end and for the thread (seconds).
STOP_TIMEOUT = 5.0
JOIN_TIMEOUT = 12.0
#: Copies expire on the broker after this long if no registry takes them (seconds).
TTL = 600.0


class ReplyCopier:
    """Publishes copies of one node's replies for registries, from start to stop."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def start(self, node: Node, transport: Transport, ready: threading.Event) -> None:
        node.services.reply_listeners.append(self._copy)
        self._thread = threading.Thread(target=self._run, args=(transport,),
                                        name="orch-reply-copies", daemon=True)
        self._thread.start()

    def reloaded(self) -> None:
        pass

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=STOP_TIMEOUT)
        if self._thread is not None:
            self._thread.join(timeout=JOIN_TIMEOUT)

    def _copy(self, collective: str, payload: bytes) -> None:
        try:
            self._queue.put_nowait((collective, payload))
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("reply copies: %d dropped (registry path behind)", self.dropped)

    def _run(self, transport: Transport) -> None:
        while (item := self._queue.get()) is not None:
            collective, payload = item
            try:
                transport.publish(collective, ROUTE, payload, TTL)
            except OrchError as exc:
                log.warning("reply copy not published: %s", exc)
