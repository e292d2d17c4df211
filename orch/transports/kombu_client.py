"""The client's side of the kombu transport: a reply queue, a producer, and failover.

A client whose broker connection fails mid-call (the cluster member it used died) does not
give up: it connects to the next URL of the list under a reply queue of a new name, which
later requests name as ``reply_to``, and publishes again every request of its calls still
within their time-to-live. Those name the old queue (their signature covers it), so it is
declared again beside the new one, as far as the broker lets it. Sending a request twice is
safe: a node that already ran it drops the copy as a replayed id (the replay cache is what
makes a resend at-most-once), and a node that had not received it — its queue lived on the
dead member — runs it now. The client counts one reply per node whatever arrives.

Why a new name: right after a member dies, the survivors delete the queues it hosted by
name, a moment after listing them. A reply queue declared again under its old name in that
moment was deleted with them, while its consumer kept waiting: replies to it went nowhere,
call after call (seen once in the cluster test, under load). A new name cannot be on that
list; only the replies of the calls in flight can meet the race, and they are reported as
no response, as replies lost with the old queue always were.

What cannot be recovered is reported, not waited for: a reply that sat in the old reply
queue is gone with it, and its node does not answer the copy, so it ends among the nodes
that gave no response. A failover that finds no member within the connect timeout ends the
call with an error naming the brokers, keeping the replies received.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orch.core.errors import TransportError

if TYPE_CHECKING:
    import kombu

    from orch.transports.kombu import KombuTransport

log = logging.getLogger(__name__)

#: The most publishes a client keeps for a resend after failover (the oldest go first).
RESEND_LIMIT = 100_000
#: The most queues one publish names (RabbitMQ's BCC header; see ``direct_many``).
MAX_COPIES = 500
#: The longest a failover inside :meth:`KombuClientChannel.receive` may take (seconds).
FAILOVER_TIMEOUT = 5.0


@dataclass(frozen=True)
class _Sent:
    """One publish, kept until its time-to-live ends so a failover can repeat it."""

    expires: float  # time.monotonic()
    exchange: str
    routing_key: str
    payload: bytes
    ttl: float
    #: More queues the broker copies this publish to (RabbitMQ's ``BCC`` header).
    copies: tuple[str, ...] = ()
    #: The reply queue when it was published (the one its request names, in general).
    reply_to: str = ""


class KombuClientChannel:
    """One client session: a private reply queue plus a producer on the same connection.

    Its connection asks for no heartbeat, so the broker never expects one from it (RabbitMQ
    disables them when the client asks for 0): every wait of a call has its own deadline,
    so heartbeats would detect nothing a call does not, and a client idle between calls
    (the demo's prompt, a program holding a Client) has no thread to send them.
    """

    def __init__(self, transport: KombuTransport, collective: str, connect_timeout: float):
        from orch.transports.kombu import reply_queue_prefix, request_exchange_name

        self._transport = transport
        self._collective = collective
        self._reply_prefix = reply_queue_prefix(collective)
        self.reply_to = self._new_reply_queue()
        self._exchange_name = request_exchange_name(collective)
        self._received: deque[bytes] = deque()
        self._sent: deque[_Sent] = deque()
        #: How many times this channel moved to another broker connection.
        self.failovers = 0
        #: How long the latest failover took to reconnect (seconds).
        self.last_failover_seconds = 0.0
        self._conn: kombu.Connection | None = None
        self._connect(connect_timeout)

    # -- connection ----------------------------------------------------------------------

    def _connect(self, timeout: float, earlier: Sequence[str] = ()) -> None:
        """Connect to a member of the list and set the session up, all within ``timeout``
        (at least one attempt's share per member).

        The setup after the handshake (channel, exchange, reply queue, consumer) has the
        same deadline: a member that completes the handshake and then stops answering
        (overloaded, or frozen mid-way) would otherwise hold each step for the socket's
        :data:`~orch.transports.kombu.BROKER_WAIT`, and a failover for several times its
        :data:`FAILOVER_TIMEOUT`. Such a member is dropped and the next one tried.
        """
        from orch.transports.kombu import _close_quietly, _drop, attempt_timeout, connect_error

        members = len(self._transport.urls)
        share = attempt_timeout(members)
        deadline = time.monotonic() + max(timeout, share * members)
        conn = self._transport.connection()
        error: Exception = TimeoutError("timed out")
        for _ in range(members):
            try:
                # Time for one attempt per member, whatever the share (kombu checks its
                # timeout only between attempts, and tries every member itself).
                conn.ensure_connection(max_retries=2 * members, interval_start=0.2,
                                       timeout=max(deadline - time.monotonic(), 0.1))
            except Exception as exc:
                error = exc
                break
            try:
                self._set_up(conn, min(time.monotonic() + share, deadline), earlier)
            except Exception as exc:
                log.debug("setting up the session on %s failed: %r", self._where(conn), exc)
                error = exc
                # A member that stopped answering gets no close handshake to wait for.
                (_drop if isinstance(exc, TimeoutError) else _close_quietly)(conn)
                if time.monotonic() >= deadline:
                    break
                conn.maybe_switch_next()
                continue
            self._conn = conn
            return
        log.debug("connecting to %s failed: %r", self._transport.display_url, error)
        _drop(conn)
        raise connect_error(self._transport.display_url, error) from None

    def _new_reply_queue(self) -> str:
        return f"{self._reply_prefix}{uuid.uuid4().hex}"

    def _consume(self, conn: kombu.Connection, channel: Any, name: str) -> Any:
        """Declare the reply queue ``name`` on ``channel`` and consume it into the replies."""
        from kombu import Consumer, Queue

        from orch.transports.kombu import deliver_bodies

        tag_prefix = f"{name}."
        consumer = Consumer(
            channel, queues=[Queue(name, durable=False, auto_delete=True, exclusive=True)],
            on_message=self._on_message, no_ack=True, accept=[],
            on_decode_error=self._on_decode_error, tag_prefix=tag_prefix,
        )
        consumer.consume()
        # kombu names the consumer: find it to have its replies appended directly
        tags = [t for t in getattr(channel, "callbacks", {}) if t.startswith(tag_prefix)]
        if len(tags) == 1:
            deliver_bodies(conn, channel, tags[0], self._received.append)
        return consumer

    def _set_up(self, conn: kombu.Connection, deadline: float,
                earlier: Sequence[str] = ()) -> None:
        """Open the session's channel, producer and reply-queue consumer on a connected
        ``conn`` (and consumers of the ``earlier`` reply queues that requests in flight
        name), each wait for the broker's answer ending at ``deadline`` (monotonic)."""
        from kombu import Exchange, Producer

        from orch.transports.kombu import _bound_socket

        def bound() -> None:
            _bound_socket(conn, max(deadline - time.monotonic(), 0.05))

        try:
            bound()
            channel = conn.channel()
            self._producer = Producer(channel)  # exchange given per publish
            self._requests = Exchange(self._exchange_name, type="topic", durable=False)
            bound()
            self._requests.declare(channel=channel)
            bound()  # the consumer declares its queue
            self._consumer = self._consume(conn, channel, self.reply_to)
            for name in earlier:
                # Best effort, each on a channel of its own: a refusal (the survivors still
                # hold the dead connection's queue) closes only that channel.
                bound()
                try:
                    self._consume(conn, conn.channel(), name)
                except Exception as exc:
                    if not conn.connected:
                        raise
                    log.debug("reply queue %s of the calls in flight not taken over (%r); "
                              "their replies to it are lost", name, exc)
        finally:
            # Back to blocking reads and writes; py-amqp's own socket timeouts
            # (``read_timeout``, ``write_timeout``) stay.
            _bound_socket(conn, None)

    def _failover(self, cause: Exception) -> None:
        """Reconnect (next member first) under a new reply queue, take over the ones the
        requests in flight name, publish those again."""
        from orch.transports.kombu import _close_quietly

        if self._conn is not None:
            _close_quietly(self._conn)
            self._conn = None
        earlier = sorted({sent.reply_to for sent in self._unexpired() if sent.reply_to})
        self.reply_to = self._new_reply_queue()
        started = time.monotonic()
        deadline = started + FAILOVER_TIMEOUT
        delay = 0.05
        while True:
            # Right after a member died the survivors may refuse or drop a set-up for a
            # moment: try again until the failover's time is up.
            try:
                self._connect(max(deadline - time.monotonic(), 0.5), earlier)
                break
            except TransportError:
                if time.monotonic() + delay >= deadline:
                    raise TransportError(
                        f"lost the broker connection to {self._transport.display_url}: "
                        f"{cause}; no broker of the list answered within "
                        f"{FAILOVER_TIMEOUT:g}s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        self.failovers += 1
        self.last_failover_seconds = time.monotonic() - started
        pending = self._unexpired()
        for sent in pending:
            self._send(sent)
        log.warning("broker connection lost (%s); reconnected to %s in %.2fs and published "
                    "%d request(s) again", cause, self._where(), time.monotonic() - started,
                    len(pending))

    def _where(self, conn: kombu.Connection | None = None) -> str:
        from orch.transports.kombu import _display

        conn = conn if conn is not None else self._conn
        return _display(conn.as_uri()) if conn is not None else "?"

    def _unexpired(self) -> list[_Sent]:
        now = time.monotonic()
        return [sent for sent in self._sent if sent.expires > now]

    # -- publishing ----------------------------------------------------------------------

    def _send(self, sent: _Sent) -> None:
        self._producer.publish(
            sent.payload, routing_key=sent.routing_key, expiration=sent.ttl,
            exchange=self._requests if sent.exchange else "",
            content_type="application/json", content_encoding="utf-8", delivery_mode=1,
            headers={"BCC": list(sent.copies)} if sent.copies else None,
        )

    def _publish(self, exchange: str, routing_key: str, payload: bytes, ttl: float,
                 copies: tuple[str, ...] = ()) -> None:
        now = time.monotonic()
        sent = _Sent(now + ttl, exchange, routing_key, payload, ttl, copies, self.reply_to)
        while self._sent and (self._sent[0].expires <= now or len(self._sent) >= RESEND_LIMIT):
            self._sent.popleft()
        self._sent.append(sent)
        try:
            self._send(sent)
        except Exception as exc:
            # _failover publishes everything unexpired again, this request included.
            try:
                self._failover(exc)
            except TransportError as lost:
                raise TransportError(f"publishing failed: {lost}") from None

    def broadcast(self, agent: str, payload: bytes, ttl: float) -> None:
        self._publish(self._exchange_name, f"agent.{agent}", payload, ttl)

    def direct(self, identity: str, payload: bytes, ttl: float) -> None:
        from orch.transports.kombu import node_queue_name

        # The default exchange routes by queue name: O(1) on every broker, where a topic
        # lookup costs a match against every node's binding.
        self._publish("", node_queue_name(self._collective, identity), payload, ttl)

    def direct_many(self, identities: Sequence[str], payload: bytes, ttl: float) -> None:
        """Publish one request to each of ``identities``.

        On RabbitMQ it is one publish per :data:`MAX_COPIES` nodes: the broker copies it to
        every queue its ``BCC`` header names (sender-selected distribution) and removes the
        header before delivery, so each node receives exactly what :meth:`direct` sends it.
        A 50-node call costs one publish instead of 50 (about 0.4 ms of client CPU each).
        Other brokers, which may ignore the header, get one publish per node.
        """
        from orch.transports.kombu import node_queue_name

        queues = [node_queue_name(self._collective, identity) for identity in identities]
        if not self._copies_supported():
            for queue in queues:
                self._publish("", queue, payload, ttl)
            return
        for start in range(0, len(queues), MAX_COPIES):
            chunk = queues[start:start + MAX_COPIES]
            self._publish("", chunk[0], payload, ttl, tuple(chunk[1:]))

    def _copies_supported(self) -> bool:
        """True when the broker is RabbitMQ, which honours the ``BCC`` header."""
        try:
            properties = self._conn.connection.server_properties  # type: ignore[union-attr]
        except Exception:  # not py-amqp (redis://, memory://) or not connected
            return False
        product = properties.get("product") if isinstance(properties, dict) else None
        if isinstance(product, bytes):
            product = product.decode("utf-8", "replace")
        return product == "RabbitMQ"

    # -- receiving -----------------------------------------------------------------------

    def _on_message(self, message: Any) -> None:
        from orch.transports.kombu import _raw_body

        self._received.append(_raw_body(message))

    def _on_decode_error(self, message: Any, exc: Exception) -> None:
        """A message kombu could not prepare (a ``compression`` header over bytes that do not
        decompress): its bytes are judged like any reply's, never raised out of a call."""
        log.debug("reply with properties kombu cannot decode (%s); checking its bytes", exc)
        self._on_message(message)

    def receive(self, timeout: float) -> bytes | None:
        if not self._received:
            if self._conn is None:
                raise TransportError(f"not connected to {self._transport.display_url}")
            try:
                self._conn.drain_events(timeout=max(timeout, 0.0001))
            except TimeoutError:
                return None
            except Exception as exc:
                self._failover(exc)  # raises TransportError when no member answers
                return None
        return self._received.popleft() if self._received else None

    def close(self) -> None:
        from orch.transports.kombu import _close_quietly

        self._sent.clear()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                _close_quietly(self._conn)
            self._conn = None

