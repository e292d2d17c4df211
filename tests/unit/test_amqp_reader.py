"""The buffered py-amqp reader: whole frames, whatever pieces the socket delivers them in.

The reader runs on one end of a socket pair; the test writes AMQP frames (or damaged ones)
on the other. The real broker path is exercised by every RabbitMQ integration test, which
connects through it.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

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


def test_a_wrong_frame_end_ends_the_connection(
        pair: tuple[BufferedTCPTransport, socket.socket]) -> None:
    transport, peer = pair
    peer.sendall(frame(1, 0, b"abc", end=0x00))
    with pytest.raises(UnexpectedFrame, match="frame_end 0x00"):
        read(transport)
    assert transport.connected is False


def test_an_oversized_frame_is_refused_before_it_is_buffered(
        pair: tuple[BufferedTCPTransport, socket.socket]) -> None:
    transport, peer = pair
    peer.sendall(struct.pack(">BHI", 3, 1, amqp_reader.MAX_FRAME_BYTES + 1))
    with pytest.raises(UnexpectedFrame, match="over the"):
        read(transport)
    assert transport.connected is False


def test_the_peer_closing_mid_frame_is_an_error_not_a_hang(
        pair: tuple[BufferedTCPTransport, socket.socket]) -> None:
    transport, peer = pair
    peer.sendall(frame(3, 1, b"y" * 10)[:5])
    peer.close()
    with pytest.raises(OSError, match="unexpectedly closed"):
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
