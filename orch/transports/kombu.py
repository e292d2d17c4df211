"""The kombu transport: RabbitMQ (``amqp://``), Redis (``redis://``) and ``memory://``.

Topology, per collective ``C`` (identical on every kombu broker):

* ``orch.C.requests`` — a topic exchange. Each node has one queue, ``orch.C.node.<identity>``,
  bound with ``agent.<name>`` for every agent it hosts, so a broadcast for an agent is
  published once with routing key ``agent.<name>``.
* A direct request is published to the default exchange with the node's queue name as the
  routing key, and a reply likewise to the client's exclusive, auto-deleted queue
  ``orch.C.reply.<uuid>`` (the request's ``reply_to``): routing by queue name costs the same
  whatever the fleet's size, where a topic lookup is matched against every binding.

Queues are transient and auto-deleted, and requests carry a per-message expiration, so a node
that goes away leaves nothing behind on RabbitMQ. Redis and ``memory://`` have no message
TTL; there the server drops requests older than their time-to-live before running them.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orch.core.errors import TransportError
from orch.core.hookspecs import hookimpl
from orch.core.transport import ClientChannel, NodeBinding, RequestHandler, Transport

if TYPE_CHECKING:
    import kombu

    from orch.core.config import Settings

log = logging.getLogger(__name__)

SCHEMES = ("amqp", "amqps", "pyamqp", "redis", "rediss", "memory")
#: Polling interval for virtual transports that poll (memory); kombu's default is 1 s.
MEMORY_POLLING_INTERVAL = 0.005
#: How long one drain waits before the loop checks its stop flag and the heartbeat.
DRAIN_SLICE = 0.5
HEARTBEAT = 10
RETRY_POLICY = {"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5, "interval_max": 2}


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
        self.urls = list(urls)
        self._tls = _tls_options(self.urls[0], settings)
        self._reply_conn: kombu.Connection | None = None
        self._reply_publish: Callable[..., Any] | None = None
        self._reply_lock = threading.Lock()
        self.display_url = ", ".join(_display(url) for url in self.urls)

    # -- connections -------------------------------------------------------------------

    def _connection_for(self, url: str | list[str], heartbeat: float = 0) -> kombu.Connection:
        import kombu

        options: dict[str, Any] = {}
        urls = [url] if isinstance(url, str) else url
        if urls[0].startswith("memory:"):
            options["polling_interval"] = MEMORY_POLLING_INTERVAL
            # kombu warns about a missing host name for bare memory:// URLs.
            urls = [u if u.rstrip("/") != "memory:" else "memory://localhost/" for u in urls]
        url = urls[0] if len(urls) == 1 else urls
        return kombu.Connection(
            url,
            failover_strategy="round-robin",
            transport_options=options,
            heartbeat=heartbeat,
            connect_timeout=5,
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
            conn = self.connection(heartbeat=HEARTBEAT)
            try:
                conn.ensure_connection(
                    errback=_log_retry, max_retries=2, interval_start=0.2, interval_step=0.5,
                    interval_max=1,
                )
                self._consume(conn, bindings, stop, ready)
                backoff.reset()
            except Exception as exc:  # kombu raises many library- and socket-level types
                if ready is not None:
                    ready.clear()
                if stop.is_set():
                    break
                delay = backoff.next()
                log.warning(
                    "broker %s unavailable (%s); retrying in %.1fs", self.display_url, exc, delay
                )
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
        from kombu import Consumer

        channel = conn.channel()
        for b in bindings:
            consumer = Consumer(
                channel,
                queues=[_node_queue(b)],
                on_message=_deliver_to(b.handler),
                no_ack=True,
                accept=[],
            )
            consumer.consume()
        log.info("consuming for %d node(s) on %s", len(bindings), self.display_url)
        if ready is not None:
            ready.set()
        while not stop.is_set():
            try:
                conn.drain_events(timeout=DRAIN_SLICE)
            except TimeoutError:
                conn.heartbeat_check()

    def send_reply(self, collective: str, reply_to: str, payload: bytes, ttl: float) -> None:
        from kombu import Producer

        if not reply_to.startswith(reply_queue_prefix(collective)):
            log.warning("reply to %r refused: not a reply queue of collective %s",
                        reply_to, collective)
            return
        with self._reply_lock:
            if self._reply_conn is None:
                self._reply_conn = self.connection()
                self._reply_publish = None
            conn = self._reply_conn
            try:
                if self._reply_publish is None:
                    producer = Producer(conn.default_channel)
                    self._reply_publish = conn.ensure(producer, producer.publish,
                                                      **RETRY_POLICY)
                # The default exchange routes by queue name: O(1) on every broker.
                self._reply_publish(
                    payload, exchange="", routing_key=reply_to, expiration=ttl,
                    content_type="application/json", content_encoding="utf-8",
                    delivery_mode=1,
                )
            except Exception as exc:
                log.error("reply to %s lost, broker %s: %s", reply_to, self.display_url, exc)
                _close_quietly(conn)
                self._reply_conn = None

    # -- client side -------------------------------------------------------------------

    def open_client(self, collective: str, connect_timeout: float) -> ClientChannel:
        return KombuClientChannel(self, collective, connect_timeout)

    def close(self) -> None:
        with self._reply_lock:
            if self._reply_conn is not None:
                _close_quietly(self._reply_conn)
                self._reply_conn = None


class KombuClientChannel:
    """One client session: a private reply queue plus a producer on the same connection."""

    def __init__(self, transport: KombuTransport, collective: str, connect_timeout: float):
        from kombu import Consumer, Exchange, Producer, Queue

        self._transport = transport
        self._collective = collective
        self.reply_to = f"{reply_queue_prefix(collective)}{uuid.uuid4().hex}"
        self._requests = Exchange(request_exchange_name(collective), type="topic", durable=False)
        self._received: deque[bytes] = deque()
        self._conn = transport.connection()
        try:
            self._conn.ensure_connection(
                max_retries=1, interval_start=0.2, timeout=connect_timeout
            )
            channel = self._conn.channel()
            self._producer = Producer(channel)  # exchange given per publish
            self._requests.declare(channel=channel)
            queue = Queue(self.reply_to, durable=False, auto_delete=True, exclusive=True)
            self._consumer = Consumer(
                channel, queues=[queue], on_message=self._on_message, no_ack=True, accept=[]
            )
            self._consumer.consume()
            _buffer_reads(self._conn)
        except Exception as exc:
            _close_quietly(self._conn)
            raise TransportError(
                f"cannot reach the broker at {transport.display_url}: {exc}. "
                "Check that it is running and that --broker (ORCH_BROKER) is right."
            ) from None

    def _on_message(self, message: Any) -> None:
        self._received.append(_raw_body(message))

    def _publish(self, routing_key: str, payload: bytes, ttl: float,
                 exchange: Any = None) -> None:
        try:
            self._producer.publish(
                payload, routing_key=routing_key, expiration=ttl,
                exchange=self._requests if exchange is None else exchange,
                content_type="application/json", content_encoding="utf-8", delivery_mode=1,
            )
        except Exception as exc:
            raise TransportError(
                f"publishing to {self._transport.display_url} failed: {exc}"
            ) from None

    def broadcast(self, agent: str, payload: bytes, ttl: float) -> None:
        self._publish(f"agent.{agent}", payload, ttl)

    def direct(self, identity: str, payload: bytes, ttl: float) -> None:
        # The default exchange routes by queue name: O(1) on every broker, where a topic
        # lookup costs a match against every node's binding.
        self._publish(node_queue_name(self._collective, identity), payload, ttl, exchange="")

    def receive(self, timeout: float) -> bytes | None:
        if not self._received:
            try:
                self._conn.drain_events(timeout=max(timeout, 0.0001))
            except TimeoutError:
                return None
            except Exception as exc:
                raise TransportError(
                    f"lost the broker connection to {self._transport.display_url}: {exc}"
                ) from None
        return self._received.popleft() if self._received else None

    def close(self) -> None:
        _close_quietly(self._conn)


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
    from orch.core.errors import ConfigError
    from orch.security.pki import resolve_credential_paths

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


def _node_queue(binding: NodeBinding) -> kombu.Queue:
    from kombu import Exchange, Queue
    from kombu import binding as kombu_binding

    exchange = Exchange(request_exchange_name(binding.collective), type="topic", durable=False)
    keys = [f"agent.{agent}" for agent in binding.agents]
    return Queue(
        node_queue_name(binding.collective, binding.identity),
        bindings=[kombu_binding(exchange, routing_key=key) for key in keys],
        durable=False,
        auto_delete=True,
    )


def _raw_body(message: Any) -> bytes:
    body = message.body
    return body if isinstance(body, bytes) else str(body).encode()


def _deliver_to(handler: RequestHandler) -> Callable[[Any], None]:
    def on_message(message: Any) -> None:
        try:
            handler(_raw_body(message))
        except Exception:  # a handler bug must never stop consumption for the other nodes
            log.exception("request handler failed")

    return on_message


#: Bytes asked of the socket at once when replies are read (see :func:`_buffer_reads`).
READ_CHUNK = 65_536


def _buffer_reads(conn: kombu.Connection) -> bool:
    """Let a client's plain-TCP AMQP connection read the socket in large chunks.

    py-amqp reads every frame with three ``recv`` calls of exactly the size it needs — nine
    system calls for one reply, about a fifth of the client's receiving cost when thousands
    of replies pour in. This reads up to :data:`READ_CHUNK` bytes at once and serves the
    frames from that buffer, keeping py-amqp's ``_read_buffer`` contract (bytes it puts
    back after a timeout are read first). Only an exact ``amqp.transport.TCPTransport`` is
    changed; TLS (already buffered by the SSL layer), Redis and memory are left alone.
    Returns whether it was installed.
    """
    import errno

    try:
        from amqp.transport import TCPTransport

        transport = conn.connection.transport
    except (ImportError, AttributeError):
        return False
    if type(transport) is not TCPTransport or not hasattr(transport, "_read_buffer"):
        return False
    sock = transport.sock
    buffered = [b"", 0]  # bytes received, and how many of them were handed out

    def read(n: int, initial: bool = False,
             _errnos: tuple[int, ...] = (errno.EAGAIN, errno.EINTR)) -> bytes:
        buf, off = buffered
        assert isinstance(buf, bytes) and isinstance(off, int)
        if transport._read_buffer:  # put back by read_frame after a timeout
            buf, off = transport._read_buffer + buf[off:], 0
            transport._read_buffer = b""
        if len(buf) - off < n:
            buf, off = buf[off:], 0
            try:
                while len(buf) < n:
                    try:
                        chunk = sock.recv(max(n - len(buf), READ_CHUNK))
                    except OSError as exc:
                        if exc.errno in _errnos:
                            if initial and transport.raise_on_initial_eintr:
                                raise TimeoutError() from None
                            continue
                        raise
                    if not chunk:
                        raise OSError("Server unexpectedly closed connection")
                    buf += chunk
            except BaseException:
                transport._read_buffer = buf
                buffered[:] = [b"", 0]
                raise
        buffered[:] = [buf, off + n]
        return buf[off:off + n]

    transport._read = read
    return True


def _log_retry(exc: Exception, interval: float) -> None:
    log.debug("broker connection failed (%s); retrying in %.1fs", exc, interval)


def _close_quietly(conn: kombu.Connection) -> None:
    try:
        conn.release()
    except Exception as exc:
        log.debug("error closing broker connection: %s", exc)


def _factory(urls: list[str], settings: Settings) -> Transport:
    return KombuTransport(urls, settings)


@hookimpl
def orch_transports() -> Mapping[str, Callable[[list[str], Settings], Transport]]:
    return dict.fromkeys(SCHEMES, _factory)
