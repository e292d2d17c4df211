"""Registration publishing: the ``orch server`` side, run as a server service.

The publisher registers its node once the daemon consumes requests (so a node found in the
inventory can already answer), again whenever the node's facts, classes or agents change
(SIGHUP, or an agent calling ``node.refresh()``; the view is compared every
:data:`CHECK_INTERVAL` seconds, which costs an identity test), and on a jittered interval
so a registry can tell a live node from a gone one. It publishes from a thread of its own
through :meth:`~orch.core.transport.Transport.publish`, over the connection the daemon's
replies use — a node costs the broker no connection for registering — so the request
path never waits for it; a broker that is away only delays the next registration
(retried with backoff, every wait bounded).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from orch.core.errors import OrchError
from orch.inventory import registration
from orch.inventory.settings import InventorySettings

if TYPE_CHECKING:
    from orch.core.filter import NodeView
    from orch.core.server import Node
    from orch.core.transport import Transport

log = logging.getLogger(__name__)

#: How often the node's view is checked for a change (seconds).
CHECK_INTERVAL = 0.5
#: How long stopping waits for a publish in progress (seconds; a publish connects with a
#: 5 s timeout, retried once).
JOIN_TIMEOUT = 12.0
#: The longest wait between attempts while the broker is unreachable (seconds).
MAX_BACKOFF = 30.0
#: Registrations expire on the broker after this long if no registry takes them.
TTL = registration.MAX_AGE


class RegistrationPublisher:
    """One node's registrations, from ``start`` to ``stop``."""

    def __init__(self, settings: InventorySettings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._thread: threading.Thread | None = None
        #: Registrations published so far (for tests and the log).
        self.published = 0

    def start(self, node: Node, transport: Transport, ready: threading.Event) -> None:
        self._thread = threading.Thread(target=self._run, args=(node, transport, ready),
                                        name="orch-registration", daemon=True)
        self._thread.start()

    def reloaded(self) -> None:
        self._poke.set()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        if self._thread is not None:
            self._thread.join(timeout=JOIN_TIMEOUT)

    def _next_interval(self) -> float:
        interval = self.settings.registration_interval
        if interval <= 0:
            return float("inf")
        return interval * (1 - random.uniform(0, self.settings.registration_jitter))

    def _run(self, node: Node, transport: Transport, ready: threading.Event) -> None:
        while not ready.wait(CHECK_INTERVAL):
            if self._stop.is_set():
                return
        view: NodeView | None = None
        published: dict[str, Any] | None = None
        due = time.monotonic()
        retry_at, backoff = 0.0, 1.0
        while not self._stop.is_set():
            current = node.view()
            data = published
            if current is not view:
                view = current
                data = registration.registration_data(
                    node.identity, node.collective, current.facts, current.classes,
                    current.agents, node.statistics()["starttime"])
            now = time.monotonic()
            if (data != published or now >= due) and now >= retry_at:
                assert data is not None
                if self._publish(node, transport, data):
                    published, retry_at, backoff = data, 0.0, 1.0
                    due = now + self._next_interval()
                else:
                    retry_at, backoff = now + backoff, min(backoff * 2, MAX_BACKOFF)
            self._poke.wait(min(CHECK_INTERVAL, max(due - time.monotonic(), 0.0)))
            self._poke.clear()

    def _publish(self, node: Node, transport: Transport, data: dict[str, Any]) -> bool:
        try:
            transport.publish(node.collective, registration.ROUTE,
                              registration.seal(data, node.security), TTL)
        except OrchError as exc:
            log.warning("node=%s registration not published: %s", node.identity, exc)
            return False
        self.published += 1
        log.info("node=%s registered (%d)", node.identity, self.published)
        return True
