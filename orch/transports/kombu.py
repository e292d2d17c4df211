"""The kombu transport: RabbitMQ (``amqp://``), Redis (``redis://``) and ``memory://``.

Topology, per collective ``C`` (identical on every kombu broker):

* ``orch.C.requests`` — a topic exchange. Each node has one queue, ``orch.C.node.<identity>``,
  bound with ``agent.<name>`` for every agent it hosts, so a broadcast for an agent is
  published once with routing key ``agent.<name>``.
* A direct request is published to the default exchange with the node's queue name as the
  routing key, and a reply likewise to the client's exclusive, auto-deleted queue
  ``orch.C.reply.<uuid>`` (the request's ``reply_to``): routing by queue name costs the same
  whatever the fleet's size, where a topic lookup is matched against every binding.

A node's queue is transient but *not* auto-deleted: it outlives its consumer by
``queue_expiry`` seconds (RabbitMQ's ``x-expires``), so a daemon whose connection drops for a
moment finds the requests sent meanwhile when it re-consumes, and answers those still valid.
Requests carry a per-message expiration, so nothing older than its time-to-live is kept, and
a node that goes away for good leaves nothing behind once the expiry has passed. Redis and
``memory://`` have no message TTL; there the server drops requests older than their
time-to-live before running them, and on Redis the daemons sweep the queues of nodes nobody
serves any more (:mod:`orch.transports.redis_liveness`).

With several broker URLs (a RabbitMQ cluster), each process starts at a random member and
moves round-robin to the next when one fails; daemons re-declare and re-consume their
queues on the member they reach, clients their reply queue (see
:mod:`orch.transports.kombu_client`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orch.core.errors import TransportError
from orch.core.hookspecs import hookimpl
from orch.core.transport import ClientChannel, NodeBinding, RequestHandler, Transport
from orch.transports.kombu_import import prepare as prepare_kombu_import
from orch.transports.redis_liveness import RedisLiveness

if TYPE_CHECKING:
    import kombu

    from orch.core.config import Settings
    from orch.core.requirements import Requirement
    from orch.transports import amqp_publish

log = logging.getLogger(__name__)

#: A message for the reply connection: exchange, routing key, body and time-to-live.
_Outgoing = tuple[str, str, bytes, float]

prepare_kombu_import()  # before anything imports kombu: no importlib.metadata (issue 13)

#: The URL schemes kombu serves with py-amqp, and with redis-py.
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
REDIS_SCHEMES = ("redis", "rediss")
SCHEMES = (*AMQP_SCHEMES, *REDIS_SCHEMES, "memory")
#: Seconds to establish one broker connection (TCP, TLS and the protocol's handshake).
CONNECT_TIMEOUT = 5.0
#: The least time one member of a broker list gets to accept a connection and answer the
#: AMQP handshake before the next member is tried (see :func:`attempt_timeout`).
MIN_ATTEMPT = 1.5
#: Polling interval for virtual transports that poll (memory); kombu's default is 1 s.
MEMORY_POLLING_INTERVAL = 0.005
#: How long one drain waits before the loop checks its stop flag and the heartbeat.
DRAIN_SLICE = 0.5
#: Channels a daemon declares its nodes' queues on: RabbitMQ works on channels in parallel.
DECLARE_CHANNELS = 4
#: Replies the consuming thread holds while requests wait in its read buffer (see
#: KombuTransport.send_reply), and their bytes: a burst is written in writes of at most
#: this many, so the first reply of a burst waits for 31 others at most (a few ms).
MAX_HELD = 32
MAX_HELD_BYTES = 256 * 1024
#: The heartbeat (seconds) of a daemon's connections when no settings are given.
HEARTBEAT = 10.0
#: Heartbeats sent per negotiated interval (kombu's ``rate``): py-amqp sends one when
#: nothing else went out for ``heartbeat / HEARTBEAT_RATE`` seconds.
HEARTBEAT_RATE = 2
#: Seconds a node's queue outlives its consumer when no settings are given.
QUEUE_EXPIRY = 120.0
RETRY_POLICY = {"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5, "interval_max": 2}
#: The longest one read or write on an AMQP connection may block (seconds) when nothing
#: else bounds it. py-amqp waits for a broker's answer (channel open, declare, consume,
#: close) without a timeout of its own, so a hung broker, or a link that drops every packet
#: without a reset, would hold the waiting thread for ever. A live broker answers in
#: milliseconds, and sends a heartbeat at least every half interval on a daemon's
#: connections, so the bound is the larger of this and the heartbeat.
BROKER_WAIT = 10.0
#: How long closing a connection waits for the broker's close-ok before it drops the socket:
#: a client's exit and a daemon's SIGTERM must not wait on a broker that stopped answering.
CLOSE_WAIT = 2.0


def attempt_timeout(members: int) -> float:
    """How long one connection attempt may take with ``members`` broker URLs.

    One URL gets the whole :data:`CONNECT_TIMEOUT`. A list gives each attempt a share of it
    (at least :data:`MIN_ATTEMPT`): a hung member — it accepts the TCP connection but never
    answers, as a frozen or overloaded broker does — would otherwise use up the whole time
    of a client that could reach a healthy member (measured: with one of two members
    frozen, 5 of 6 commands failed with "cannot reach the broker … timed out").
    """
    return CONNECT_TIMEOUT if members <= 1 else max(CONNECT_TIMEOUT / members, MIN_ATTEMPT)


def request_exchange_name(collective: str) -> str:
    return f"orch.{collective}.requests"


def node_queue_name(collective: str, identity: str) -> str:
    """The queue of one node; direct requests are published to it by name."""
    return f"orch.{collective}.node.{identity}"


def reply_queue_prefix(collective: str) -> str:
    """Every client reply queue of ``collective`` starts with this."""
    return f"orch.{collective}.reply."


class KombuTransport:
    """A :class:`~orch.core.transport.Transport` over any kombu broker URL list."""

    def __init__(self, urls: Sequence[str], settings: Settings | None = None) -> None:
        if not urls:
            raise TransportError("no broker URL given; set --broker or ORCH_BROKER")
        # Each process starts at a random member of a cluster, so daemons and clients spread
        # over it, and goes round-robin from there when one fails.
        start = random.randrange(len(urls))
        self.urls = [*urls[start:], *urls[:start]]
        self._tls = _tls_options(self.urls[0], settings)
        self._reply_conn: kombu.Connection | None = None
        self._reply_channel: Any = None
        #: Writes replies on ``_reply_channel`` when it is py-amqp's (see amqp_publish).
        self._reply_publisher: amqp_publish.FramePublisher | None = None
        #: A consuming thread's held replies (``replies``, ``size``; see send_reply).
        self._holding = threading.local()
        self._reply_lock = threading.Lock()
        #: Exchanges declared on the reply connection (for :meth:`publish`).
        self._reply_exchanges: set[str] = set()
        self.heartbeat = settings.heartbeat if settings is not None else HEARTBEAT
        self.queue_expiry = settings.queue_expiry if settings is not None else QUEUE_EXPIRY
        self.display_url = ", ".join(_display(url) for url in urls)
        #: kombu's memory transport is one process's: see :class:`orch.core.transport.Transport`.
        self.process_local = all(url.split(":", 1)[0] == "memory" for url in urls)

    # -- connections -------------------------------------------------------------------

    def _connection_for(self, url: str | list[str], heartbeat: float = 0) -> kombu.Connection:
        import kombu

        options: dict[str, Any] = {}
        urls = [url] if isinstance(url, str) else url
        scheme = urls[0].split(":", 1)[0]
        if scheme in AMQP_SCHEMES:
            # py-amqp's own socket timeouts, so even a wait kombu starts on our behalf
            # (a lazy reconnect, a channel's close) ends on a broker that stopped answering.
            options["read_timeout"] = options["write_timeout"] = max(BROKER_WAIT, heartbeat)
        elif scheme in REDIS_SCHEMES:
            # redis-py's, for the same reason: without them a publish to a Redis that stopped
            # answering waits for ever. A live Redis answers every command at once, BRPOP
            # (kombu's, 1 s) included.
            options["socket_timeout"] = BROKER_WAIT
            options["socket_connect_timeout"] = CONNECT_TIMEOUT
        if scheme == "memory":
            options["polling_interval"] = MEMORY_POLLING_INTERVAL
            # kombu warns about a missing host name for bare memory:// URLs.
            urls = [u if u.rstrip("/") != "memory:" else "memory://localhost/" for u in urls]
        url = urls[0] if len(urls) == 1 else urls
        connection_class = kombu.Connection
        if scheme in AMQP_SCHEMES:
            from orch.transports import amqp_reader  # imports py-amqp: only for RabbitMQ

            connection_class = amqp_reader.Connection
        return connection_class(
            url,
            failover_strategy="round-robin",
            transport_options=options,
            heartbeat=heartbeat,
            connect_timeout=attempt_timeout(len(urls)),
            **_fresh(self._tls),
        )

    def connection(self, heartbeat: float = 0) -> kombu.Connection:
        """A new, unconnected kombu connection over the whole failover list."""
        return self._connection_for(self.urls, heartbeat=heartbeat)

    # -- server side -------------------------------------------------------------------

    def serve(
        self,
        bindings: Sequence[NodeBinding],
        stop: threading.Event,
        ready: threading.Event | None = None,
    ) -> None:
        backoff = _Backoff()
        while not stop.is_set():
            conn = self.connection(heartbeat=self.heartbeat)
            try:
                # Every member of the list is tried (twice) before this counts as a failure.
                conn.ensure_connection(
                    errback=_log_retry, max_retries=2 * len(self.urls), interval_start=0.2,
                    interval_step=0.5, interval_max=1,
                )
                self._consume(conn, bindings, stop, ready)
                backoff.reset()
            except Exception as exc:  # kombu raises many library- and socket-level types
                if ready is not None:
                    ready.clear()
                if stop.is_set():
                    break
                delay = backoff.next()
                if credentials_refused(exc):
                    log.error("broker %s refused the credentials (%s): check the user and "
                              "password in the broker URL; retrying in %.1fs",
                              self.display_url, exc, delay)
                else:
                    log.warning("broker %s unavailable (%s); retrying in %.1fs",
                                self.display_url, exc, delay)
                stop.wait(delay)
            finally:
                _close_quietly(conn)

    def _consume(
        self,
        conn: kombu.Connection,
        bindings: Sequence[NodeBinding],
        stop: threading.Event,
        ready: threading.Event | None,
    ) -> None:
        # No round trip per node: each node's queue, bindings and consumer are sent without
        # waiting for the broker's answer (a round trip each made re-declaring 10,000 nodes
        # take ~37 s), spread over a few channels the broker works on in parallel. It handles
        # a channel's commands in order, so the answer to each channel's last consume comes
        # after all of them, and a failure of any closes the channel and surfaces there.
        channels = [conn.channel() for _ in range(max(1, min(DECLARE_CHANNELS, len(bindings))))]
        exchanges: set[str] = set()
        expiry = self.queue_expiry if _is_amqp(conn) else None
        for index, b in enumerate(bindings):
            channel = channels[index % len(channels)]
            queue = _node_queue(b, expiry)(channel)
            for key in queue.bindings:
                if key.exchange.name not in exchanges:  # once, and waited for
                    key.exchange(channels[0]).declare()
                    exchanges.add(key.exchange.name)
            queue.queue_declare(nowait=True)
            for key in queue.bindings:
                key.bind(queue, nowait=True)
            # A queue's name is unique on its channel, so it is the consumer tag.
            on_body = _guarded(b.handler)
            queue.consume(consumer_tag=queue.name, callback=_from_message(on_body),
                          no_ack=True, nowait=index < len(bindings) - len(channels))
            deliver_bodies(conn, channel, queue.name, on_body)
        liveness = None
        if conn.transport.driver_type == "redis":
            liveness = RedisLiveness(channels[0], bindings, self.queue_expiry,
                                     lambda b: request_exchange_name(b.collective),
                                     lambda b: node_queue_name(b.collective, b.identity))
            liveness.tick()
        log.info("consuming for %d node(s) on %s", len(bindings), _display(conn.as_uri()))
        if ready is not None:
            ready.set()
        # Heartbeats are checked on a clock of their own, after every drain: a drain that
        # returns a message (steady traffic) must serve them as well as one that timed out,
        # or the broker drops a busy daemon and its auto-deleted queue with it.
        interval = _check_interval(conn)
        drain = min(DRAIN_SLICE, interval) if interval else DRAIN_SLICE
        next_check = time.monotonic() + (interval or 0.0)
        # The socket keeps the drain's timeout: py-amqp sets a wait's timeout on the socket
        # and puts the old one back around every frame it reads (two system calls each,
        # six a request), unless the socket already has it. This connection writes nothing
        # but heartbeats, which never wait on a broker that reads.
        _bound_socket(conn, drain)
        # Replies this thread sends while requests are already waiting in the read buffer
        # are held and written together once it runs dry (see send_reply).
        buffered = _frames_buffered(conn)
        if buffered is not None:
            self._holding.replies, self._holding.size = [], 0
        try:
            self._drain(conn, stop, drain, interval, next_check, liveness, buffered)
        finally:
            self._flush_held()
            self._holding.replies = None

    def _drain(self, conn: kombu.Connection, stop: threading.Event, drain: float,
               interval: float, next_check: float, liveness: RedisLiveness | None,
               buffered: Callable[[], bool] | None) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=drain)
            if buffered is not None and not buffered():
                self._flush_held()
            if interval and time.monotonic() >= next_check:
                conn.heartbeat_check(rate=HEARTBEAT_RATE)
                self._reply_heartbeat()
                next_check = time.monotonic() + interval
            if liveness is not None:
                liveness.tick()

    def _reply_heartbeat(self) -> None:
        """Serve the reply connection's heartbeats from the consumer's thread.

        Nothing else reads that connection, so the broker's heartbeats are read here (else
        py-amqp counts them missed); a connection found dead is dropped and the next reply
        opens a new one. Skipped while a worker holds the lock: it is publishing, which is
        traffic enough, and the consumer must never wait behind a slow publish.
        """
        if not self._reply_lock.acquire(blocking=False):
            return
        try:
            conn = self._reply_conn
            if conn is None or not conn.connected:
                return
            try:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0)
                conn.heartbeat_check(rate=HEARTBEAT_RATE)
            except Exception as exc:
                log.warning("reply connection to %s lost (%s); the next reply reconnects",
                            self.display_url, exc)
                _close_quietly(conn)
                self._reply_conn = None
        finally:
            self._reply_lock.release()

    def send_reply(self, collective: str, reply_to: str, payload: bytes, ttl: float) -> None:
        if not reply_to.startswith(reply_queue_prefix(collective)):
            log.warning("reply to %r refused: not a reply queue of collective %s",
                        reply_to, collective)
            return
        held = getattr(self._holding, "replies", None)
        if held is not None:
            # The consuming thread, answering a request while more may wait in its buffer:
            # the replies go out together when it has read them all, one write for many.
            held.append(("", reply_to, payload, ttl))
            self._holding.size += len(payload)
            if len(held) >= MAX_HELD or self._holding.size >= MAX_HELD_BYTES:
                self._flush_held()
            return
        error = self._publish_on_reply_connection([("", reply_to, payload, ttl)])
        if error is not None:
            log.error("reply to %s lost, broker %s: %s", reply_to, self.display_url, error)

    def _flush_held(self) -> None:
        """Publish the replies this thread holds (one write on RabbitMQ)."""
        held = getattr(self._holding, "replies", None)
        if not held:
            return
        self._holding.replies, self._holding.size = [], 0
        error = self._publish_on_reply_connection(held)
        if error is not None:
            log.error("%d repl%s to %s lost, broker %s: %s", len(held),
                      "y" if len(held) == 1 else "ies",
                      ", ".join(sorted({reply_to for _, reply_to, _, _ in held})),
                      self.display_url, error)

    def publish(self, collective: str, agent: str, payload: bytes, ttl: float) -> None:
        """A broadcast from the daemon (registration, reply copies) over its reply
        connection: no connection, channel or reply queue of its own, and the heartbeats
        the consumer's thread already serves on that connection."""
        error = self._publish_on_reply_connection([(request_exchange_name(collective),
                                                   f"agent.{agent}", payload, ttl)])
        if error is not None:
            raise TransportError(f"publishing {agent} to broker {self.display_url} "
                                 f"failed: {error}")

    def _publish_on_reply_connection(self, messages: Sequence[_Outgoing]) -> Exception | None:
        """Publish ``messages`` (exchange, routing key, body, ttl) on the reply connection
        (opened on first use), with one reconnect and retry on error; the error of the
        second attempt, or None once published."""
        # kombu's Producer works out serializer, compression, headers and retries for every
        # message (50-60 µs a reply here), py-amqp's basic_publish serializes the same
        # method and properties again for each (45-55 µs): a reply needs none of that, so
        # on py-amqp it is written as frames built once (3-4 µs, amqp_publish), elsewhere
        # it goes to the channel as it is.
        error: Exception | None = None
        with self._reply_lock:
            for _attempt in (1, 2):
                if self._reply_conn is None:
                    self._reply_conn = self.connection(heartbeat=self.heartbeat)
                    self._reply_channel = None
                    self._reply_exchanges = set()
                conn = self._reply_conn
                try:
                    if self._reply_channel is None:  # kombu checks the connection on
                        self._reply_channel = conn.default_channel  # every access
                        self._reply_publisher = _frame_publisher(self._reply_channel)
                    self._publish_all(self._reply_channel, self._reply_publisher, messages)
                    return None
                except Exception as exc:
                    _close_quietly(conn)
                    self._reply_conn = None
                    error = exc
        return error

    def _publish_all(self, channel: Any, publisher: amqp_publish.FramePublisher | None,
                     messages: Sequence[_Outgoing]) -> None:
        frames: list[bytes] = []
        for exchange, routing_key, payload, ttl in messages:
            if exchange and exchange not in self._reply_exchanges:
                # Declared once per connection (as the consumers declare it): an AMQP
                # publish to a missing exchange would close the channel.
                _request_exchange(exchange)(channel).declare()
                self._reply_exchanges.add(exchange)
            properties = {"delivery_mode": 1, "expiration": str(max(int(ttl * 1000), 1))}
            # Replies go through the default exchange, which routes by queue name: O(1)
            # on every broker.
            if publisher is not None:
                frames.append(publisher.frames(payload, exchange, routing_key,
                                               "application/json", "utf-8", properties))
                continue
            message = channel.prepare_message(payload, None, "application/json", "utf-8",
                                              None, properties)
            channel.basic_publish(message, exchange=exchange, routing_key=routing_key)
        if publisher is not None and frames:
            publisher.send(b"".join(frames), len(frames))

    # -- client side -------------------------------------------------------------------

    def open_client(self, collective: str, connect_timeout: float) -> ClientChannel:
        from orch.transports.kombu_client import KombuClientChannel

        return KombuClientChannel(self, collective, connect_timeout)

    def close(self) -> None:
        with self._reply_lock:
            if self._reply_conn is not None:
                _close_quietly(self._reply_conn)
                self._reply_conn = None


def _frame_publisher(channel: Any) -> amqp_publish.FramePublisher | None:
    """A frame publisher for a py-amqp channel, else None. A channel can only be py-amqp's
    once py-amqp is imported: a Redis or memory broker never imports it here."""
    if "amqp.channel" not in sys.modules:
        return None
    from orch.transports.amqp_publish import FramePublisher

    return FramePublisher.for_channel(channel)


def _frames_buffered(conn: kombu.Connection) -> Callable[[], bool] | None:
    """Whether a whole frame waits in ``conn``'s read buffer, as a function; None when its
    transport reads frame by frame (it cannot tell, so replies are never held)."""
    transport = getattr(getattr(conn, "connection", None), "transport", None)
    return getattr(transport, "frame_buffered", None)


class _Backoff:
    """Exponential reconnect delays: 0.5 s doubling to 10 s, reset after a good connection."""

    def __init__(self, first: float = 0.5, cap: float = 10.0) -> None:
        self.first, self.cap, self.current = first, cap, first

    def next(self) -> float:
        delay, self.current = self.current, min(self.current * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.current = self.first


def _tls_options(url: str, settings: Settings | None) -> dict[str, Any]:
    """kombu ``ssl``/``login_method`` arguments for ``amqps://`` and ``rediss://`` URLs.

    The certificate, key and CA come from the tls_* settings (or a Puppet ssldir). An
    ``amqps://`` URL without a user name authenticates with the certificate itself
    (RabbitMQ's EXTERNAL mechanism, from its rabbitmq_auth_mechanism_ssl plugin).
    """
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("amqps", "rediss"):
        return {}
    if settings is None:
        raise TransportError(f"{parts.scheme}:// needs tls_cert, tls_key and tls_ca settings")
    from orch.core.credentials import resolve_credential_paths
    from orch.core.errors import ConfigError

    try:
        paths = resolve_credential_paths(settings)
    except ConfigError:
        raise ConfigError(
            f"the broker {_display(url)} uses TLS and needs this process's certificate: set "
            "tls_cert, tls_key and tls_ca (--tls-cert/--tls-key/--tls-ca or ORCH_TLS_*), or "
            "ssldir; `orch ca issue` creates them") from None
    cert, key, ca = str(paths.cert), str(paths.key), str(paths.ca)
    for path in (cert, key, ca):
        if not os.path.exists(path):
            raise TransportError(f"TLS file {path} does not exist (from {paths.source}); "
                                 "`orch ca issue` creates certificates")
    if parts.scheme == "rediss":
        return {"ssl": {"ssl_certfile": cert, "ssl_keyfile": key, "ssl_ca_certs": ca,
                        "ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}}
    # server_hostname None: kombu fills in the broker's host, and py-amqp then checks the
    # broker's certificate names it (without it, any certificate of the CA would do).
    options: dict[str, Any] = {"ssl": {"certfile": cert, "keyfile": key, "ca_certs": ca,
                                       "cert_reqs": ssl.CERT_REQUIRED,
                                       "server_hostname": None}}
    if not parts.username:
        options["login_method"] = "EXTERNAL"
    return options


def _fresh(options: dict[str, Any]) -> dict[str, Any]:
    """A copy per connection: kombu writes the broker's host name into the ``ssl`` dict."""
    return {key: dict(value) if isinstance(value, dict) else value
            for key, value in options.items()}


def _display(url: str) -> str:
    """The URL with its password masked and no user invented where it has none."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


def _is_amqp(conn: kombu.Connection) -> bool:
    return bool(conn.transport.driver_type == "amqp")


def _request_exchange(name: str) -> kombu.Exchange:
    """A collective's request exchange, declared alike by every side that uses it."""
    from kombu import Exchange

    return Exchange(name, type="topic", durable=False)


def _node_queue(binding: NodeBinding, expiry: float | None = None) -> kombu.Queue:
    """A node's queue; with ``expiry`` (AMQP) it outlives its consumer that long, where an
    auto-deleted queue would vanish on the first dropped connection with every request in
    it. Without it (Redis, memory) the queue is auto-deleted by kombu on a clean stop."""
    from kombu import Queue
    from kombu import binding as kombu_binding

    exchange = _request_exchange(request_exchange_name(binding.collective))
    keys = [f"agent.{agent}" for agent in binding.agents]
    return Queue(
        node_queue_name(binding.collective, binding.identity),
        bindings=[kombu_binding(exchange, routing_key=key) for key in keys],
        durable=False,
        auto_delete=expiry is None,
        expires=expiry,
    )


def _raw_body(message: Any) -> bytes:
    body = message.body
    return body if isinstance(body, bytes) else str(body).encode()


def _guarded(handler: RequestHandler) -> Callable[[bytes], None]:
    def on_body(body: bytes) -> None:
        try:
            handler(body)
        except Exception:  # a handler bug must never stop consumption for the other nodes
            log.exception("request handler failed")

    return on_body


def _from_message(on_body: Callable[[bytes], None]) -> Callable[[Any], None]:
    return lambda message: on_body(_raw_body(message))


def deliver_bodies(conn: kombu.Connection, channel: Any, consumer_tag: str,
                   on_body: Callable[[bytes], None]) -> None:
    """On RabbitMQ, give the bodies of ``consumer_tag``'s whole messages to ``on_body``
    without building message objects (:mod:`orch.transports.amqp_reader`); the consumer's
    own callback must do the same with the others. Other brokers: nothing changes."""
    if not _is_amqp(conn):
        return
    from orch.transports.amqp_reader import BufferedConnection

    connection = conn.connection
    if isinstance(connection, BufferedConnection):
        connection.deliver_bodies(channel.channel_id, consumer_tag, on_body)


def _check_interval(conn: kombu.Connection) -> float:
    """Seconds between heartbeat checks: a quarter of the negotiated heartbeat, so one
    is sent every half interval at the latest; 0 when the connection has none."""
    try:
        negotiated = float(conn.get_heartbeat_interval() or 0)
    except Exception:  # transports without heartbeats
        return 0.0
    return negotiated / (2 * HEARTBEAT_RATE) if negotiated > 0 else 0.0


def _log_retry(exc: Exception, interval: float) -> None:
    log.debug("broker connection failed (%s); retrying in %.1fs", exc, interval)


def _close_quietly(conn: kombu.Connection) -> None:
    """Close ``conn``, waiting at most :data:`CLOSE_WAIT` for the broker's answer."""
    _bound_socket(conn, CLOSE_WAIT)
    try:
        conn.release()
    except Exception as exc:
        log.debug("error closing broker connection: %s", exc)


def _drop(conn: kombu.Connection) -> None:
    """Let go of ``conn`` without a word to the broker (no close handshake to wait for):
    for a connection given up on because the broker stopped answering."""
    try:
        conn.collect()
    except Exception as exc:
        log.debug("error dropping broker connection: %r", exc)


def _bound_socket(conn: kombu.Connection, seconds: float | None) -> None:
    """Make every later blocking read or write of a connected py-amqp ``conn`` end after
    ``seconds`` (None: block again, with py-amqp's own socket timeouts); other transports,
    and a connection never made, are left as they are."""
    try:
        if not conn.connected or not _is_amqp(conn):  # conn.connection would connect
            return
        sock = conn.connection.transport.sock
        if sock is not None:
            sock.settimeout(seconds)
    except Exception as exc:  # the connection or its socket is already gone
        log.debug("cannot bound the broker connection's waits: %r", exc)


def _factory(urls: list[str], settings: Settings) -> Transport:
    return KombuTransport(urls, settings)


@hookimpl
def orch_transports() -> Mapping[str, Callable[[list[str], Settings], Transport]]:
    return dict.fromkeys(SCHEMES, _factory)


@hookimpl
def orch_transport_requirements() -> Mapping[str, Sequence[Requirement]]:
    """What kombu imports for each scheme, checked before a connection is made.

    The kombu transport module is named (not only its library) because importing it is what
    fails when one of *its* imports is missing: kombu 5.7's ``kombu.transport.redis`` imports
    ``packaging``, which kombu lists only under its ``redis`` extra. orch's setup.cfg
    declares all of them, so these only fail in a damaged or hand-pruned environment.
    """
    from orch.core.requirements import Requirement

    amqp = (Requirement("amqp", "amqp"), Requirement("kombu.transport.pyamqp", "kombu"))
    redis = (Requirement("redis", "redis"), Requirement("packaging", "packaging"),
             Requirement("kombu.transport.redis", "kombu[redis]"))
    memory = (Requirement("kombu.transport.memory", "kombu"),)
    by_family = {"amqp": amqp, "amqps": amqp, "pyamqp": amqp,
                 "redis": redis, "rediss": redis, "memory": memory}
    return {scheme: by_family[scheme] for scheme in SCHEMES}


#: What brokers answer to a wrong user or password: AMQP's ACCESS_REFUSED (403) and
#: Redis's WRONGPASS / NOAUTH / "invalid password" errors.
_REFUSAL_WORDS = ("ACCESS_REFUSED", "WRONGPASS", "NOAUTH", "invalid password",
                  "invalid username-password", "Authentication required")


def credentials_refused(exc: BaseException) -> bool:
    """True when ``exc`` says the broker refused the credentials rather than being away."""
    if getattr(exc, "code", None) == 403 or type(exc).__name__ in ("AccessRefused",
                                                                   "AuthenticationError"):
        return True
    text = str(exc)
    return any(word.lower() in text.lower() for word in _REFUSAL_WORDS)


def connect_error(display_url: str, exc: BaseException) -> TransportError:
    """The operator's message for a failed connection: refused credentials or no broker."""
    if credentials_refused(exc):
        return TransportError(
            f"the broker at {display_url} refused the credentials: {str(exc).rstrip('.')}. "
            "Check the user and "
            "password in --broker (ORCH_BROKER), e.g. amqp://USER:PASSWORD@HOST:5672//, or, "
            "logging in with a TLS client certificate, that the broker has a user of the "
            "certificate's name")
    # A socket timeout says nothing ("" or "timed out"); say which wait ended.
    reason = str(exc).rstrip(".") or ("timed out" if isinstance(exc, TimeoutError)
                                      else type(exc).__name__)
    return TransportError(
        f"cannot reach the broker at {display_url}: {reason}. "
        "Check that it is running and that --broker (ORCH_BROKER) is right.")
