"""The transport seam: how requests reach nodes and replies come back.

A transport plugin maps broker URL schemes to factories returning a :class:`Transport`. The
contract every transport keeps, whatever its broker:

* a *broadcast* request for agent ``A`` in collective ``C`` reaches every node of ``C`` that
  hosts ``A``, once;
* a *direct* request for identity ``N`` reaches node ``N`` only;
* replies go to the reply destination the client named, which only that client consumes;
* requests carry their time-to-live to the broker where it can expire them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

#: Called with the raw bytes of each request received for a node; must not raise.
RequestHandler = Callable[[bytes], None]


@dataclass(frozen=True)
class NodeBinding:
    """What one node wants to receive: its own direct requests and its agents' broadcasts."""

    collective: str
    identity: str
    agents: tuple[str, ...]
    handler: RequestHandler


class ClientChannel(Protocol):
    """A client's side of one broker session: publish requests, receive replies."""

    #: The reply destination to put in requests so that replies reach this channel.
    reply_to: str

    def broadcast(self, agent: str, payload: bytes, ttl: float) -> None:
        """Publish a request to every node of the collective hosting ``agent``."""
        ...

    def direct(self, identity: str, payload: bytes, ttl: float) -> None:
        """Publish a request to the single node ``identity``.

        A channel may also define ``direct_many(identities, payload, ttl)``, publishing the
        same request to each of several nodes at once (the kombu transport: one publish on
        RabbitMQ); the client uses it when present, else calls this once per node.
        """
        ...

    def receive(self, timeout: float) -> bytes | None:
        """Return the next reply, or None if none arrived within ``timeout`` seconds."""
        ...

    def close(self) -> None:
        """Release the reply destination and the connection."""
        ...


class Transport(Protocol):
    """A connection to one broker (or a failover list of them)."""

    #: The URLs this transport was created for, passwords masked, for messages and logs.
    display_url: str
    #: Optional (read with ``getattr``, default False): True when the broker lives in this
    #: process (``memory://``), so that another process's "same" broker is another fleet.
    #: A client then keeps what it learns of the fleet (who answered a broadcast,
    #: :mod:`orch.core.answered`) to this process.
    process_local: bool

    def serve(
        self,
        bindings: Sequence[NodeBinding],
        stop: threading.Event,
        ready: threading.Event | None = None,
    ) -> None:
        """Consume requests for ``bindings`` until ``stop`` is set.

        Runs in the calling thread; reconnects forever (with backoff) while the broker is
        away and sets ``ready`` each time consumption (re)starts. Handlers run in this thread
        and must hand real work to a pool.
        """
        ...

    def send_reply(self, collective: str, reply_to: str, payload: bytes, ttl: float) -> None:
        """Publish one reply. Safe to call from any thread."""
        ...

    def publish(self, collective: str, agent: str, payload: bytes, ttl: float) -> None:
        """Publish one message from the daemon's side to every queue bound for ``agent``
        in ``collective`` (what a client's broadcast reaches), over the connection replies
        use: a server service (registration, reply copies) costs the broker no connection
        of its own. Safe to call from any thread.

        Raises :class:`~orch.core.errors.TransportError` when the message could not be
        published (the broker is away), so the caller can retry later.
        """
        ...

    def open_client(self, collective: str, connect_timeout: float) -> ClientChannel:
        """Connect and create a private reply destination.

        Raises :class:`~orch.core.errors.TransportError` naming the broker when it cannot
        be reached within ``connect_timeout`` seconds.
        """
        ...

    def close(self) -> None:
        """Close every connection this transport opened."""
        ...
