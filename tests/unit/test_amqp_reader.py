"""The buffered py-amqp reader: whole frames, whatever pieces the socket delivers them in.

The reader runs on one end of a socket pair; the test writes AMQP frames (or damaged ones)
on the other. The real broker path is exercised by every RabbitMQ integration test, which
connects through it.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from amqp.exceptions import UnexpectedFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orch.transports import amqp_reader
from orch.transports.amqp_reader import BufferedTCPTransport


def frame(frame_type: int, channel: int, payload: bytes, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + bytes([end])


@pytest.fixture
def pair() -> Iterator[tuple[BufferedTCPTransport, socket.socket]]:
    ours, theirs = socket.socketpair()
    transport = BufferedTCPTransport("127.0.0.1:5672")
    transport.sock = ours
    transport.connected = True
    transport._setup_transport()
    try:
        yield transport, theirs
    finally:
        ours.close()
        theirs.close()


def read(transport: BufferedTCPTransport, timeout: float = 5.0) -> tuple[int, int, bytes]:
    with transport.having_timeout(timeout):
        return transport.read_frame()


FRAMES = st.lists(st.tuples(st.integers(1, 8), st.integers(0, 65_535),
                            st.binary(max_size=3_000)), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=FRAMES, cuts=st.lists(st.integers(1, 4_000), max_size=20))
def test_frames_come_back_whole_however_the_bytes_are_cut(
        pair: tuple[BufferedTCPTransport, socket.socket],
        frames: list[tuple[int, int, bytes]], cuts: list[int]) -> None:
    transport, peer = pair
    wire = b"".join(frame(*f) for f in frames)
    got: list[tuple[int, int, bytes]] = []
    position = 0
    for cut in [*cuts, len(wire)]:
        piece, position = wire[position:position + cut], position + cut
        if piece:
            peer.sendall(piece)
        # Read every frame that is whole by now; the next read would wait for more.
        while len(got) < len(frames) and sum(
                len(frame(*f)) for f in frames[:len(got) + 1]) <= min(position, len(wire)):
            got.append(read(transport))
    assert got == frames


def test_a_timeout_consumes_nothing(pair: tuple[BufferedTCPTransport, socket.socket]) -> None:
    transport, peer = pair
    whole = frame(3, 1, b"x" * 100)
    peer.sendall(whole[:50])
    with pytest.raises(socket.timeout):
        read(transport, timeout=0.01)
    peer.sendall(whole[50:])
    assert read(transport) == (3, 1, b"x" * 100)


def test_a_buffered_frame_is_read_without_touching_the_socket(
        pair: tuple[BufferedTCPTransport, socket.socket]) -> None:
    transport, peer = pair
    peer.sendall(frame(1, 0, b"a") + frame(2, 0, b"b") + frame(3, 0, b"cc")[:4])
    assert read(transport) == (1, 0, b"a")  # one recv took all three
    assert transport.frame_buffered()
    connection = amqp_reader.BufferedConnection(host="127.0.0.1:1")
    connection._transport = transport
    frames: list[tuple[int, int, bytes]] = []
    connection.on_inbound_frame = frames.append
    transport.sock.close()  # any further use of the socket would fail
    connection.blocking_read(timeout=1.0)
    assert frames == [(2, 0, b"b")]
    assert not transport.frame_buffered()  # the third is not whole


@pytest.mark.parametrize(("wire", "peer_closes", "error", "message"), [
    pytest.param(frame(1, 0, b"abc", end=0x00), False, UnexpectedFrame, "frame_end 0x00",
                 id="wrong frame end"),
    pytest.param(struct.pack(">BHI", 3, 1, amqp_reader.MAX_FRAME_BYTES + 1), False,
                 UnexpectedFrame, "over the", id="oversized frame, refused before buffering"),
    pytest.param(frame(3, 1, b"y" * 10)[:5], True, OSError, "unexpectedly closed",
                 id="peer closing mid-frame: an error, not a hang"),
])
def test_a_broken_stream_ends_the_connection(
        pair: tuple[BufferedTCPTransport, socket.socket], wire: bytes, peer_closes: bool,
        error: type[Exception], message: str) -> None:
    transport, peer = pair
    peer.sendall(wire)
    if peer_closes:
        peer.close()
    with pytest.raises(error, match=message):
        read(transport)
    assert transport.connected is False


def test_exact_reads_share_the_buffer_with_frames(
        pair: tuple[BufferedTCPTransport, socket.socket]) -> None:
    transport, peer = pair
    peer.sendall(b"AMQP" + frame(1, 0, b"z"))
    with transport.having_timeout(5.0):
        assert transport._read(4, initial=True) == b"AMQP"
    assert read(transport) == (1, 0, b"z")


def test_the_buffer_is_compacted_between_frames(
        pair: tuple[BufferedTCPTransport, socket.socket],
        monkeypatch: pytest.MonkeyPatch) -> None:
    transport, peer = pair
    monkeypatch.setattr(amqp_reader, "COMPACT_BYTES", 64)
    frames = [(3, 1, bytes([i]) * 40) for i in range(30)]
    peer.sendall(b"".join(frame(*f) for f in frames))
    assert [read(transport) for _ in frames] == frames
    assert len(transport._rx) < 64 + amqp_reader.RECV_BYTES


def test_tls_connections_keep_py_amqps_reader() -> None:
    connection = amqp_reader.BufferedConnection(host="127.0.0.1:1", connect_timeout=0.1)
    plain = connection.Transport("127.0.0.1:1", 0.1)
    secure = connection.Transport("127.0.0.1:1", 0.1, ssl={"cert_reqs": 0})
    assert isinstance(plain, BufferedTCPTransport)
    assert not isinstance(secure, BufferedTCPTransport)


def test_kombu_connections_to_rabbitmq_use_the_buffered_transport() -> None:
    import kombu.transport.pyamqp

    plain = amqp_reader.Connection("amqp://guest:guest@127.0.0.1:1//")
    assert plain.get_transport_cls() is amqp_reader.BufferedAMQPTransport
    # kombu re-reads the transport from the URL on failover: still buffered
    plain.switch("amqp://guest:guest@127.0.0.2:1//")
    assert plain.get_transport_cls() is amqp_reader.BufferedAMQPTransport
    secure = amqp_reader.Connection("amqps://guest:guest@127.0.0.1:1//")
    assert secure.get_transport_cls() is kombu.transport.pyamqp.SSLTransport
    other = amqp_reader.Connection("memory://localhost/")
    assert other.get_transport_cls() is not amqp_reader.BufferedAMQPTransport


# -- whole deliveries handed straight to a consumer -------------------------------------


def deliveries(*messages: tuple[str, bytes, dict[str, object] | None],
               channel: int = 1, frame_max: int = 131_072) -> bytes:
    """``basic.deliver`` messages as py-amqp's own frame writer puts them on the wire."""
    import types

    import amqp
    from amqp.method_framing import frame_writer
    from amqp.serialization import dumps

    wire = bytearray()
    sink = types.SimpleNamespace(write=lambda data: wire.extend(data))
    write = frame_writer(types.SimpleNamespace(frame_max=frame_max, bytes_sent=0), sink)
    for tag, body, headers in messages:
        message = amqp.Message(body, content_type="application/json",
                               content_encoding="utf-8", application_headers=headers)
        write(1, channel, (60, 60), dumps("sLbss", [tag, 7, False, "", "reply.q"]), message)
    return bytes(wire)


def taker(got: list[bytes], tag: str = "reply.1") -> Callable[[int, str], Any]:
    """A receiver giving ``got.append`` for ``tag`` on channel 1, nothing for the rest."""
    def receiver(channel: int, consumer_tag: str) -> Any:
        return got.append if (channel, consumer_tag) == (1, tag) else None

    return receiver


def test_a_whole_delivery_goes_straight_to_its_consumer(
        pair: tuple[BufferedTCPTransport, socket.socket]) -> None:
    transport, peer = pair
    peer.sendall(deliveries(("reply.1", b'{"a": 1}', {})) + frame(8, 0, b""))
    transport._fill()
    got: list[bytes] = []
    assert transport.take_delivery(taker(got)) == 3
    assert got == [b'{"a": 1}']
    assert read(transport) == (8, 0, b"")  # the heartbeat after it is untouched


@pytest.mark.parametrize("case", ["other consumer", "headers", "incomplete"])
def test_deliveries_the_fast_path_leaves_to_py_amqp_or_waits_for(
        pair: tuple[BufferedTCPTransport, socket.socket], case: str) -> None:
    transport, peer = pair
    tag = "reply.2" if case == "other consumer" else "reply.1"
    headers: dict[str, object] = {"compression": "application/x-gzip"} if case == "headers" \
        else {}
    wire = deliveries((tag, b"payload", headers))
    peer.sendall(wire[:-1] if case == "incomplete" else wire)
    transport._fill()
    got: list[bytes] = []
    expected = amqp_reader.INCOMPLETE if case == "incomplete" else 0
    assert transport.take_delivery(taker(got)) == expected
    assert got == []
    assert transport._rx_pos == 0  # nothing consumed
    if case == "incomplete":  # its last byte arrives: now it is whole
        peer.sendall(wire[-1:])
        transport._fill()
        assert transport.take_delivery(taker(got)) == 3
        assert got == [b"payload"]


@pytest.mark.parametrize("cut", [40, 60, 4_200, 8_300])  # in the header, in the body
def test_a_body_too_large_to_wait_for_is_left_to_py_amqp(
        pair: tuple[BufferedTCPTransport, socket.socket], cut: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    transport, peer = pair
    monkeypatch.setattr(amqp_reader, "MAX_AWAITED_BODY", 10_000)
    wire = deliveries(("reply.1", b"b" * 10_001, None), frame_max=4_096)
    method_and_header = len(deliveries(("reply.1", b"", None)))
    peer.sendall(wire[:cut])
    transport._fill()
    got: list[bytes] = []
    # Until the header is here the body's size is unknown: wait; then leave it.
    waits = cut < method_and_header
    assert transport.take_delivery(taker(got)) == (amqp_reader.INCOMPLETE if waits else 0)
    assert got == []


def test_a_body_over_several_frames_is_joined(
        pair: tuple[BufferedTCPTransport, socket.socket]) -> None:
    transport, peer = pair
    body = bytes(range(256)) * 40  # 10,240 bytes in frames of at most 4,088
    wire = deliveries(("reply.1", body, None), frame_max=4_096)
    peer.sendall(wire)
    while len(transport._rx) < len(wire):
        transport._fill()
    got: list[bytes] = []
    assert transport.take_delivery(taker(got)) == 5  # method, header, three body frames
    assert got == [body]
    assert len(transport._rx) == 0


def body_connection(transport: BufferedTCPTransport, got: list[bytes],
                    frames: list[tuple[int, int, bytes]]) -> Any:
    """A BufferedConnection over ``transport`` whose consumer ``reply.1`` on channel 1
    takes bodies into ``got``; frames py-amqp would handle go to ``frames``."""
    connection = amqp_reader.BufferedConnection(host="127.0.0.1:1")
    connection._transport = transport
    connection.channels = {1: type("Channel", (), {"callbacks": {"reply.1": None}})()}
    connection.deliver_bodies(1, "reply.1", got.append)
    connection.on_inbound_frame = frames.append
    return connection


def test_a_message_arriving_during_a_wait_goes_straight_to_its_consumer(
        pair: tuple[BufferedTCPTransport, socket.socket]) -> None:
    """An idle daemon or client waits with an empty buffer: the wait fills it, and the
    message that came takes the direct path, not py-amqp's frame by frame."""
    transport, peer = pair
    got: list[bytes] = []
    frames: list[tuple[int, int, bytes]] = []
    connection = body_connection(transport, got, frames)
    with pytest.raises(TimeoutError):
        connection.blocking_read(timeout=0.01)  # nothing came: nothing consumed
    peer.sendall(deliveries(("reply.1", b"request", {})) + frame(8, 0, b""))
    assert not transport.frame_buffered()
    connection.blocking_read(timeout=5.0)
    assert got == [b"request"]
    assert frames == []
    connection.blocking_read(timeout=5.0)
    assert frames == [(8, 0, b"")]  # a heartbeat still goes to py-amqp


def test_one_read_takes_a_bounded_burst_of_whole_deliveries(
        pair: tuple[BufferedTCPTransport, socket.socket]) -> None:
    """A burst already buffered is handed over in one pass through the drain layers, at
    most MAX_TAKEN_PER_READ messages of it, stopping at the first one it cannot take."""
    transport, peer = pair
    count = amqp_reader.MAX_TAKEN_PER_READ + 6
    bodies = [b"%d" % i for i in range(count)]
    wire = deliveries(*(("reply.1", body, {}) for body in bodies),
                      ("reply.1", b"with headers", {"h": 1}), ("reply.1", b"after", {}))
    peer.sendall(wire)
    while len(transport._rx) < len(wire):
        transport._fill()
    got: list[bytes] = []
    frames: list[tuple[int, int, bytes]] = []
    connection = body_connection(transport, got, frames)
    transport.sock.close()  # everything is buffered: no read may touch the socket
    connection.blocking_read(timeout=1.0)
    assert got == bodies[:amqp_reader.MAX_TAKEN_PER_READ]
    connection.blocking_read(timeout=1.0)
    assert got == bodies  # the rest, up to the message py-amqp must read
    assert frames == []
    connection.blocking_read(timeout=1.0)
    assert [kind for kind, _, _ in frames] == [1]  # its method frame, through py-amqp
    assert got == bodies


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(st.tuples(st.binary(min_size=1, max_size=9_000), st.booleans()),
                         min_size=1, max_size=6),
       cut=st.integers(0, 30_000), piece=st.integers(1, 6_000))
def test_every_delivery_arrives_once_by_one_path_or_the_other(
        pair: tuple[BufferedTCPTransport, socket.socket],
        messages: list[tuple[bytes, bool]], cut: int, piece: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever is buffered when a read happens, each body reaches the consumer once, in
    order: by the fast path (waiting for the rest of a message whose frames are not all
    here), or through py-amqp's frames for a message with headers."""
    from amqp.method_framing import frame_handler

    transport, peer = pair
    bodies = [body for body, _ in messages]
    wire = deliveries(*(("reply.1", body, {"h": 1} if slow else {})
                        for body, slow in messages), frame_max=4_096)
    got: list[bytes] = []
    connection = body_connection(transport, got, [])
    connection.on_inbound_frame = frame_handler(
        connection, lambda channel, method, args, message: got.append(message.body))
    peer.sendall(wire[:cut])
    sent = min(cut, len(wire))
    fill = transport._fill

    def network_delivers_a_piece_when_read() -> None:
        nonlocal sent
        if sent < len(wire):
            peer.sendall(wire[sent:sent + piece])
            sent += piece
        fill()

    monkeypatch.setattr(transport, "_fill", network_delivers_a_piece_when_read)
    while len(got) < len(bodies):
        connection.blocking_read(timeout=5.0)
    assert got == bodies
