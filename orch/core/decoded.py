"""Request messages decoded once for the many nodes of one process that receive them.

Why: a simulated fleet serves thousands of nodes in a few processes, and every node of a
process receives a copy of the same bytes — each broadcast, and each signed part of a
known-list request (about 40 nodes a part, :func:`~orch.core.protocol.split_targets`).
Decoding the envelope and the request again for every copy cost about 17 µs a node and
request, 7 % of a simulated node's whole cost, for work a real fleet does on other machines.
Nodes that share :class:`DecodedRequests` decode each message once; each still checks the
signature itself (:meth:`~orch.core.server.Node.handle`) and applies every later check.

Only a fleet of simulated nodes shares one (:class:`~orch.core.fleet.Fleet` with
``simulated``): the decoded request, its ``data`` and ``filter`` mappings included, is then
the same object for all of them, which is safe for simulations, which only read it, and not
promised of every third-party agent. Only messages that decoded and passed a node's
signature check are kept, at most :data:`SIZE` of at most :data:`MAX_BYTES` each, the oldest
dropped first.
"""

from __future__ import annotations

import threading

from orch.core.protocol import Envelope, Request

#: Messages kept: enough for the parts of a known-list request in flight at once.
SIZE = 64
#: Larger messages are not kept (each node decodes its own): requests are a few KB, and
#: :data:`SIZE` messages of ``max_message_bytes`` each would pin hundreds of MB.
MAX_BYTES = 64 * 1024


class DecodedRequests:
    """The last :data:`SIZE` request messages that decoded, by their bytes."""

    def __init__(self, size: int = SIZE) -> None:
        self._size = size
        self._entries: dict[bytes, tuple[Envelope, Request]] = {}
        self._lock = threading.Lock()

    def get(self, raw: bytes) -> tuple[Envelope, Request] | None:
        with self._lock:
            return self._entries.get(raw)

    def put(self, raw: bytes, envelope: Envelope, request: Request) -> None:
        if len(raw) > MAX_BYTES:
            return
        with self._lock:
            if raw not in self._entries and len(self._entries) >= self._size:
                del self._entries[next(iter(self._entries))]
            self._entries[raw] = (envelope, request)
