"""Publishing with prebuilt frames: byte for byte what py-amqp's own ``basic_publish`` sends.

py-amqp's frame writer is the reference: both write into a recorder for the same message,
and the bytes must be equal, whatever the body's size against the frame size. What the
broker sends is read before a publish exactly when there is something to read. The real
broker path is in tests/integration/test_rabbitmq_publish.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from amqp import spec
from amqp.basic_message import Message
from amqp.exceptions import RecoverableConnectionError
from amqp.method_framing import frame_writer
from amqp.serialization import dumps
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orch.transports import amqp_publish
from orch.transports.amqp_publish import FramePublisher


class Recorder:
    """A transport that keeps what is written, on a real socket (the publisher polls it)."""

    def __init__(self, sock: socket.socket, unread: bool = False) -> None:
        self.sock = sock
        self.written = bytearray()
        self._unread = unread

    def write(self, data: Any) -> None:
        self.written += data

    def unread(self) -> bool:
        return self._unread


class FakeConnection(SimpleNamespace):
    def drain_events(self, timeout: float | None = None) -> None:
        self.drains.append(timeout)
        raise TimeoutError()


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


def publisher_on(sock: socket.socket, frame_max: int = 131072, channel_id: int = 1,
                 unread: bool = False) -> tuple[FramePublisher, FakeConnection]:
    transport = Recorder(sock, unread)
    connection = FakeConnection(transport=transport, sock=sock, frame_max=frame_max,
                                bytes_sent=0, drains=[])
    channel = SimpleNamespace(connection=connection, channel_id=channel_id, is_open=True)
    return FramePublisher(channel), connection  # type: ignore[arg-type]


def py_amqp_bytes(body: bytes, exchange: str, routing_key: str, frame_max: int,
                  channel_id: int, properties: dict[str, Any]) -> bytes:
    """What py-amqp's ``basic_publish`` writes for the same message."""
    sink = SimpleNamespace(written=bytearray())
    sink.write = sink.written.extend
    connection = SimpleNamespace(frame_max=frame_max, bytes_sent=0)
    write = frame_writer(connection, sink)
    message = Message(body, content_type="application/json", content_encoding="utf-8",
                      **properties)
    write(1, channel_id, spec.Basic.Publish,
          dumps("Bssbb", (0, exchange, routing_key, False, False)), message)
    return bytes(sink.written)


names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), max_size=60)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=300),
                      st.integers(0, 3 * 4096 + 17).map(lambda n: bytes(range(256)) * (n // 256)
                                                        + b"x" * (n % 256))),
       exchange=names, routing_key=names,
       frame_max=st.sampled_from([4096, 4097, 8192, 131072]),
       channel_id=st.integers(1, 65535),
       properties=st.fixed_dictionaries({}, optional={
           "delivery_mode": st.sampled_from([1, 2]),
           "expiration": st.integers(1, 10**9).map(str),
           "priority": st.integers(0, 9)}))
def test_the_bytes_are_py_amqps(sockets: tuple[socket.socket, socket.socket], body: bytes,
                                exchange: str, routing_key: str, frame_max: int,
                                channel_id: int, properties: dict[str, Any]) -> None:
    publisher, connection = publisher_on(sockets[0], frame_max, channel_id)
    publisher.publish(body, exchange, routing_key, "application/json", "utf-8", properties)
    # Twice: the second message is built from the cached method frame and properties.
    publisher.publish(body, exchange, routing_key, "application/json", "utf-8", properties)
    expected = py_amqp_bytes(body, exchange, routing_key, frame_max, channel_id, properties)
    assert bytes(connection.transport.written) == expected * 2
    assert connection.bytes_sent == 2


def test_the_broker_is_read_before_a_publish_only_when_it_sent_something(
        sockets: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = sockets
    publisher, connection = publisher_on(ours)
    publisher.publish(b"one", "", "q", "application/json", "utf-8", {})
    assert connection.drains == []
    theirs.sendall(b"\x08\x00\x00\x00\x00\x00\x00\xce")  # a heartbeat, not read yet
    publisher.publish(b"two", "", "q", "application/json", "utf-8", {})
    assert connection.drains == [0]
    assert connection.transport.written.endswith(b"two\xce")  # still published


def test_bytes_already_buffered_are_read_first(
        sockets: tuple[socket.socket, socket.socket]) -> None:
    publisher, connection = publisher_on(sockets[0], unread=True)
    publisher.publish(b"one", "", "q", "application/json", "utf-8", {})
    assert connection.drains == [0]


def test_a_closed_channel_raises_and_writes_nothing(
        sockets: tuple[socket.socket, socket.socket]) -> None:
    publisher, connection = publisher_on(sockets[0])
    publisher._channel.is_open = False
    with pytest.raises(RecoverableConnectionError):
        publisher.publish(b"one", "", "q", "application/json", "utf-8", {})
    assert connection.transport.written == b""


def test_the_caches_are_bounded(sockets: tuple[socket.socket, socket.socket]) -> None:
    publisher, _ = publisher_on(sockets[0])
    for index in range(amqp_publish.MAX_CACHED * 3):
        publisher.publish(b"x", "", f"orch.c.reply.{index}", "application/json", "utf-8",
                          {"expiration": str(index + 1)})
    assert len(publisher._methods) <= amqp_publish.MAX_CACHED
    assert len(publisher._properties) <= amqp_publish.MAX_CACHED


def test_only_py_amqp_channels_get_one() -> None:
    import kombu

    with kombu.Connection("memory://") as conn:
        assert FramePublisher.for_channel(conn.default_channel) is None
    assert FramePublisher.for_channel(object()) is None
