"""py-amqp reading whole socket buffers instead of each part of each frame on its own.

Why: py-amqp reads an AMQP frame in three ``recv`` calls of exactly the size it wants next
(the 7-byte header, the payload, the end octet), and a message is three frames (method,
header, body). With a timeout on the wait — orch always has one — CPython also polls the
socket before every ``recv`` and py-amqp switches the socket to non-blocking mode and back
around every frame. A client collecting 5,000 replies made about 30 system calls per reply,
and profiling the collecting process put py-amqp's frame reading at most of its 60-80 µs of
CPU per reply (issue 13: the client must keep up with 15,000 replies a second on two cores).

:class:`BufferedTCPTransport` keeps py-amqp's frame format, errors and timeouts, and reads
what the socket holds, up to :data:`RECV_BYTES` at a time, into one buffer that whole frames
are cut from; :class:`BufferedConnection` reads a frame already buffered without touching
the socket or its timeout, and hands whole messages of consumers that only need the body
straight to them — every whole one in the buffer, up to :data:`MAX_TAKEN_PER_READ`, in one
read. A wait that times out consumes nothing, so the next read starts on the same frame
boundary. :class:`BufferedAMQPTransport` is kombu's py-amqp transport with
this reader, and :class:`Connection` a ``kombu.Connection`` that uses it wherever kombu would
use its plain py-amqp transport, also after a failover to another URL;
:mod:`orch.transports.kombu` makes its ``amqp://`` and ``pyamqp://`` connections with it.
TLS keeps py-amqp's own reader: the TLS layer already buffers whole records.

Nothing here changes what a frame may be: py-amqp's frame-end check and the broker's
negotiated ``frame_max`` still hold, and a frame whose header announces more than
:data:`MAX_FRAME_BYTES` ends the connection instead of being buffered.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import kombu
from amqp import transport as amqp_transport
from amqp.exceptions import UnexpectedFrame
from kombu.transport import pyamqp

#: Bytes asked of the socket at once: about 50 replies of 1 KB, one system call.
RECV_BYTES = 65_536
#: The buffer is compacted (consumed bytes dropped) once this much of it has been read.
COMPACT_BYTES = 262_144
#: The largest frame accepted. RabbitMQ's ``frame_max`` is at most 1 MiB (128 KiB by
#: default) and py-amqp asks for 128 KiB; a header announcing more is not an AMQP peer.
MAX_FRAME_BYTES = 16 * 1024 * 1024
#: :meth:`BufferedTCPTransport.take_delivery`'s answer for a message of a body receiver
#: whose header or body frames are still on their way.
INCOMPLETE = -1
#: The largest body the fast path waits for when its frames are not all buffered yet;
#: py-amqp reads a larger one frame by frame (it need not all be in memory twice).
MAX_AWAITED_BODY = 1024 * 1024
#: Whole messages one read hands to their receivers at most: with a burst in the buffer, one
#: pass through kombu's and py-amqp's drain layers serves many messages, while the caller
#: still gets control back (heartbeats, stop requests) after a bounded amount of work.
MAX_TAKEN_PER_READ = 64
#: Frame type, channel and payload size; then the payload and the end octet.
_HEADER = struct.Struct(">BHI")
_FRAME_END = 0xCE
#: A method frame's class and method: ``basic.deliver`` is (60, 60).
_METHOD = struct.Struct(">HH")
_BASIC_DELIVER = (60, 60)
#: A content header: class, weight (0), body size, property flags.
_CONTENT_HEADER = struct.Struct(">HxxQH")
_CONTENT_TYPE, _CONTENT_ENCODING, _HEADERS, _CONTINUED = 0x8000, 0x4000, 0x2000, 0x0001


class BufferedTCPTransport(amqp_transport.TCPTransport):
    """py-amqp's plain TCP transport, reading into a buffer that whole frames are cut from."""

    def _setup_transport(self) -> None:
        super()._setup_transport()
        self._rx = bytearray()
        self._rx_pos = 0

    def unread(self) -> bool:
        """True when bytes from the broker wait in the buffer: a publisher reads them
        before it writes (:mod:`orch.transports.amqp_publish`), as py-amqp does."""
        return self._rx_pos < len(self._rx)

    def frame_buffered(self) -> bool:
        """True when a whole frame is already in the buffer: reading it cannot wait."""
        return not self._short(self._rx_pos)

    def _fill(self) -> None:
        """Append what the socket has, waiting (under the socket's timeout) for a byte at
        least. Raises ``TimeoutError`` when nothing came, having consumed nothing."""
        try:
            data = self.sock.recv(RECV_BYTES)
        except TimeoutError:
            raise
        except BlockingIOError:  # EAGAIN: SO_RCVTIMEO ran out, or a non-blocking socket
            raise TimeoutError() from None
        except OSError:
            self.connected = False
            raise
        if not data:
            self.connected = False
            raise OSError("Server unexpectedly closed connection")
        self._rx += data

    def fill_within(self, timeout: float | None) -> None:
        """:meth:`_fill` under the read's ``timeout`` (None: the socket's own)."""
        with self.having_timeout(timeout):
            self._fill()

    def _compact(self) -> None:
        """Drop the bytes already read, once there are many (never inside a frame's read:
        the offsets computed there would move)."""
        if self._rx_pos >= COMPACT_BYTES:
            del self._rx[:self._rx_pos]
            self._rx_pos = 0

    def _read(self, n: int, initial: bool = False) -> bytes:
        """Exactly ``n`` bytes (py-amqp's contract), from the buffer first. ``initial``
        (py-amqp's: a signal at a frame's start is a timeout) has no use here: CPython
        retries a read a signal interrupted."""
        self._compact()
        while len(self._rx) - self._rx_pos < n:
            self._fill()
        start = self._rx_pos
        self._rx_pos = start + n
        return bytes(self._rx[start:start + n])

    def read_frame(self, unpack: Any = None) -> tuple[int, int, bytes]:
        """The next ``(frame type, channel, payload)``, read only when whole."""
        self._compact()
        while len(self._rx) - self._rx_pos < _HEADER.size:
            self._fill()
        frame_type, channel, size = _HEADER.unpack_from(self._rx, self._rx_pos)
        if size > MAX_FRAME_BYTES:
            self.connected = False
            raise UnexpectedFrame(f"Received frame of {size} bytes: over the "
                                  f"{MAX_FRAME_BYTES}-byte limit")
        start = self._rx_pos + _HEADER.size
        end = start + size
        while len(self._rx) <= end:
            self._fill()
        if self._rx[end] != _FRAME_END:
            self.connected = False
            raise UnexpectedFrame(f"Received frame_end {self._rx[end]:#04x} while "
                                  f"expecting 0xce")
        payload = bytes(self._rx[start:end])
        self._consumed(end + 1)
        return frame_type, channel, payload

    def _consumed(self, position: int) -> None:
        """Everything before ``position`` has been read."""
        self._rx_pos = position
        if position == len(self._rx):
            self._rx.clear()
            self._rx_pos = 0

    def _whole_frame(self, position: int, frame_type: int,
                     channel: int | None = None) -> tuple[int, int, int] | None:
        """``(channel, payload start, payload end)`` of the frame at ``position`` if it is
        whole in the buffer, of ``frame_type`` (and on ``channel``), with its end octet."""
        rx = self._rx
        if len(rx) - position < _HEADER.size:
            return None
        kind, on, size = _HEADER.unpack_from(rx, position)
        start = position + _HEADER.size
        end = start + size
        if (kind != frame_type or (channel is not None and on != channel)
                or end >= len(rx) or rx[end] != _FRAME_END):
            return None
        return on, start, end

    def _short(self, position: int) -> bool:
        """True when the frame at ``position`` is not all in the buffer yet."""
        rx = self._rx
        if len(rx) - position < _HEADER.size:
            return True
        return position + _HEADER.size + _HEADER.unpack_from(rx, position)[2] >= len(rx)

    def take_delivery(self, receiver: Callable[[int, str], Callable[[bytes], None] | None]
                      ) -> int:
        """Hand over the body of the ``basic.deliver`` at the head of the buffer, if it is
        whole (method, header and body frames) and ``receiver(channel, consumer tag)``
        names a function for it; returns the number of frames taken (0: none, the frames
        are left for py-amqp). A message with any header (``compression``...) is left too.
        :data:`INCOMPLETE` when the message is for a receiver but not all here yet: read
        more (:meth:`_fill`) and ask again.
        """
        self._compact()
        rx = self._rx
        method = self._whole_frame(self._rx_pos, 1)
        if method is None:
            return 0
        channel, start, end = method
        if end - start < 5 or _METHOD.unpack_from(rx, start) != _BASIC_DELIVER:
            return 0
        tag_end = start + 5 + rx[start + 4]
        if tag_end > end:
            return 0
        on_body = receiver(channel, rx[start + 5:tag_end].decode("utf-8", "replace"))
        if on_body is None:
            return 0
        header = self._whole_frame(end + 1, 2, channel)
        if header is None:
            return INCOMPLETE if self._short(end + 1) else 0
        if header[2] - header[1] < _CONTENT_HEADER.size:
            return 0
        _, start, end = header
        _, body_size, flags = _CONTENT_HEADER.unpack_from(rx, start)
        if body_size == 0 or flags & _CONTINUED or not _no_headers(rx, start, end, flags):
            return 0
        parts: list[tuple[int, int]] = []
        received = 0
        position = end + 1
        while received < body_size:
            body = self._whole_frame(position, 3, channel)
            if body is None:
                return (INCOMPLETE if body_size <= MAX_AWAITED_BODY and self._short(position)
                        else 0)
            parts.append(body[1:])
            received += body[2] - body[1]
            position = body[2] + 1
        if received != body_size:
            return 0  # more than announced: py-amqp's own path reports it
        data = b"".join(bytes(rx[a:b]) for a, b in parts) if len(parts) > 1 else bytes(
            rx[parts[0][0]:parts[0][1]])
        self._consumed(position)
        on_body(data)
        return 2 + len(parts)


def _no_headers(rx: bytearray, start: int, end: int, flags: int) -> bool:
    """True when the content header's properties carry no ``headers`` table, or an empty
    one (kombu sends ``{}``). Only the two properties before it need skipping."""
    if not flags & _HEADERS:
        return True
    position = start + _CONTENT_HEADER.size
    for flag in (_CONTENT_TYPE, _CONTENT_ENCODING):
        if flags & flag:
            if position >= end:
                return False
            position += 1 + rx[position]
    return position + 4 <= end and rx[position:position + 4] == b"\0\0\0\0"


class BufferedConnection(pyamqp.Connection):
    """kombu's py-amqp connection, over :class:`BufferedTCPTransport` unless it is TLS."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._body_receivers: dict[tuple[int, str], Callable[[bytes], None]] = {}

    def deliver_bodies(self, channel_id: int, consumer_tag: str,
                       on_body: Callable[[bytes], None]) -> None:
        """Give the bodies of this consumer's deliveries to ``on_body``, without building
        py-amqp's and kombu's message objects, whenever a whole message is buffered.

        Only for a consumer that does not acknowledge (``no_ack``) and reads nothing but the
        body: it still gets the messages that do not take this path through its own
        callback, so ``on_body`` must do what that callback does with the body. A message
        is taken this way only while py-amqp's channel has the consumer.
        """
        self._body_receivers[(channel_id, consumer_tag)] = on_body

    def _body_receiver(self, channel_id: int, consumer_tag: str
                       ) -> Callable[[bytes], None] | None:
        on_body = self._body_receivers.get((channel_id, consumer_tag))
        if on_body is None:
            return None
        channel = (self.channels or {}).get(channel_id)
        if channel is None or consumer_tag not in channel.callbacks:
            del self._body_receivers[(channel_id, consumer_tag)]  # cancelled or closed
            return None
        return on_body

    def blocking_read(self, timeout: float | None = None) -> Any:
        """py-amqp's, except that a frame already buffered is read without setting up a
        wait: the socket's timeout is set (two ``fcntl`` calls) and restored (two more)
        around each read that may have to wait, not around every frame. And a whole
        message for a consumer of :meth:`deliver_bodies` goes straight to it — also the
        one an idle connection was waiting for: the wait fills the buffer first (a timeout
        consumes nothing), so a message arriving whole takes the direct path too, not
        py-amqp's frame by frame."""
        transport = self.transport
        if not isinstance(transport, BufferedTCPTransport):
            return super().blocking_read(timeout)
        if self._body_receivers and not transport.frame_buffered():
            transport.fill_within(timeout)
        if not transport.frame_buffered():
            return super().blocking_read(timeout)
        if self._body_receivers:
            frames = transport.take_delivery(self._body_receiver)
            while frames == INCOMPLETE:
                # The rest of the message is on its way (the broker sends a message's
                # frames together): wait for it, under this read's timeout, rather than
                # take it frame by frame through py-amqp. A timeout consumes nothing.
                transport.fill_within(timeout)
                frames = transport.take_delivery(self._body_receiver)
            if frames:
                self.bytes_recv += frames  # what py-amqp counts for heartbeats
                self._take_buffered(transport)
                return True
        return self.on_inbound_frame(transport.read_frame())

    def _take_buffered(self, transport: BufferedTCPTransport) -> None:
        """After one message, the whole ones right behind it in the buffer (at most
        :data:`MAX_TAKEN_PER_READ` in all): a partial one is left for the next read."""
        for _ in range(MAX_TAKEN_PER_READ - 1):
            if not transport.frame_buffered():
                return
            frames = transport.take_delivery(self._body_receiver)
            if frames <= 0:  # not a delivery for a receiver, or INCOMPLETE: not waited for
                return
            self.bytes_recv += frames

    def Transport(self, host: str, connect_timeout: float | None, ssl: Any = False,
                  read_timeout: float | None = None, write_timeout: float | None = None,
                  socket_settings: Any = None, **kwargs: Any) -> Any:
        if ssl:
            return super().Transport(host, connect_timeout, ssl=ssl,
                                     read_timeout=read_timeout, write_timeout=write_timeout,
                                     socket_settings=socket_settings, **kwargs)
        return BufferedTCPTransport(host, connect_timeout=connect_timeout,
                                    read_timeout=read_timeout, write_timeout=write_timeout,
                                    socket_settings=socket_settings, **kwargs)


class BufferedAMQPTransport(pyamqp.Transport):
    """kombu's ``pyamqp`` transport with :class:`BufferedConnection`."""

    Connection = BufferedConnection


class Connection(kombu.Connection):
    """``kombu.Connection``, with :class:`BufferedAMQPTransport` in place of kombu's plain
    py-amqp transport (whatever URL it is on: kombu re-reads the transport from the URL when
    it fails over to the next one). Other transports, TLS ones included, are kombu's."""

    def get_transport_cls(self) -> Any:
        transport_cls = super().get_transport_cls()
        return BufferedAMQPTransport if transport_cls is pyamqp.Transport else transport_cls
