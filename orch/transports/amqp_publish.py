"""py-amqp publishing a message as one write of frames built from cached parts.

Why: a daemon, and every simulated node of ``orch sim``, publishes one reply per request,
and py-amqp's ``basic_publish`` spends 45-55 µs of CPU on each (measured on this project's
2-core machine, 1 KB replies to RabbitMQ): it serializes the method arguments and the
message properties in Python for every message, and before each one switches the socket to
non-blocking mode, looks for a frame from the broker, and switches it back (``drain_events``
with a zero timeout: four system calls and an exception). A reply to the same queue with the
same properties has the same method frame and the same properties as the one before it, so
:class:`FramePublisher` builds those once and then writes each message in 3-4 µs. At 10,000
simulated nodes that was about a fifth of the fleet's CPU per request (issue 13).

What goes on the wire is byte for byte what py-amqp would send (the cached parts are made
by py-amqp's own serializers, and tests compare the two), and what the broker sends is read
exactly as before a publish whenever there is any: a zero-timeout ``poll`` (one system
call) replaces the blind drain, so a ``connection.blocked``, a heartbeat or a closed channel
is still seen before the next message goes out. A body larger than a frame is cut into
body frames as py-amqp cuts it. :meth:`FramePublisher.send` writes the frames of several
messages at once: :class:`orch.transports.kombu.KombuTransport` holds the replies to a
burst of requests and writes them together, one write (and one read by the broker) for up
to 32 replies.

The caller serializes publishes on a connection, as py-amqp requires of any use of one
connection from several threads (:class:`orch.transports.kombu.KombuTransport` holds its
reply lock).
"""

from __future__ import annotations

import contextlib
import select
import struct
from collections.abc import Mapping
from typing import Any

from amqp import spec
from amqp.basic_message import Message
from amqp.channel import Channel
from amqp.exceptions import RecoverableConnectionError
from amqp.serialization import dumps

#: Frame type, channel and payload size (then the payload and the end octet).
_FRAME = struct.Struct(">BHI")
#: A content header frame up to its properties: the frame header, then class (basic),
#: weight (0) and body size.
_CONTENT_HEADER = struct.Struct(">BHIHHQ")
_FRAME_END = b"\xce"
_METHOD_FRAME, _HEADER_FRAME, _BODY_FRAME = 1, 2, 3
#: Frame header and end octet: what a frame adds to its payload.
_FRAME_OVERHEAD = 8
#: ``basic.publish``'s argument signature, as py-amqp's ``Channel._basic_publish`` has it.
_PUBLISH_ARGS = "Bssbb"
#: Cached method frames (one per exchange and routing key) and property blocks: a daemon
#: answering many clients meets a new reply queue per command, so both are bounded and
#: start afresh when full.
MAX_CACHED = 256

_Properties = tuple[str, str, tuple[tuple[str, Any], ...]]


class FramePublisher:
    """Publishes on one py-amqp channel; make a new one for a new channel or connection."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._connection = channel.connection
        self._channel_id: int = channel.channel_id
        self._methods: dict[tuple[str, str], bytes] = {}
        self._properties: dict[_Properties, bytes] = {}
        self._poll = select.poll()
        self._poll.register(self._connection.sock, select.POLLIN)

    @classmethod
    def for_channel(cls, channel: Any) -> FramePublisher | None:
        """A publisher for ``channel`` if it is a py-amqp channel (kombu's ``amqp://`` and
        ``amqps://``), else None: other kombu transports publish their own way."""
        if not isinstance(channel, Channel) or channel.connection is None:
            return None
        try:
            return cls(channel)
        except (AttributeError, OSError, ValueError):  # no socket to watch: not connected
            return None

    def publish(self, body: bytes, exchange: str, routing_key: str, content_type: str,
                content_encoding: str, properties: Mapping[str, Any]) -> None:
        """Publish ``body`` as py-amqp's ``basic_publish`` would, with ``properties``
        (``delivery_mode``, ``expiration``…) besides the content type and encoding.

        Raises py-amqp's errors: :class:`~amqp.exceptions.RecoverableConnectionError` on a
        closed channel, the broker's error when it closed the channel or connection, the
        socket's on a failed write.
        """
        self.send(self.frames(body, exchange, routing_key, content_type, content_encoding,
                              properties))

    def frames(self, body: bytes, exchange: str, routing_key: str, content_type: str,
               content_encoding: str, properties: Mapping[str, Any]) -> bytes:
        """The frames of one message, for :meth:`send` (alone or after others).

        ValueError when the method or the properties do not fit in one frame, which takes
        an exchange name, routing key or property far over AMQP's own limits.
        """
        connection = self._connection
        method = self._method(exchange, routing_key)
        props = self._property_block(content_type, content_encoding, properties)
        chunk = connection.frame_max - _FRAME_OVERHEAD
        if len(method) > connection.frame_max or len(props) + 12 > chunk:
            raise ValueError("message method or properties larger than a frame")
        cid = self._channel_id
        size = len(body)
        parts = [method, _CONTENT_HEADER.pack(_HEADER_FRAME, cid, 12 + len(props), 60, 0,
                                              size), props, _FRAME_END]
        for start in range(0, size, chunk):
            piece = body[start:start + chunk]
            parts += (_FRAME.pack(_BODY_FRAME, cid, len(piece)), piece, _FRAME_END)
        return b"".join(parts)

    def send(self, frames: bytes, messages: int = 1) -> None:
        """Write ``frames`` (of ``messages`` messages, from :meth:`frames`) in one write,
        once whatever the broker sent has been read (see :meth:`publish` for errors)."""
        channel, connection = self._channel, self._connection
        if not channel.is_open or channel.connection is None or connection.transport is None:
            raise RecoverableConnectionError("basic_publish: channel closed")
        if self._inbound():  # what py-amqp reads before every publish, read when it is there
            with contextlib.suppress(TimeoutError):
                connection.drain_events(timeout=0)
        connection.transport.write(frames)
        connection.bytes_sent += messages  # as py-amqp counts: once per message

    def _inbound(self) -> bool:
        """Whether the broker sent something not read yet (buffered here or by TLS, or
        waiting in the socket)."""
        transport = self._connection.transport
        unread = getattr(transport, "unread", None)
        if unread is not None and unread():
            return True
        pending = getattr(transport.sock, "pending", None)
        if pending is not None and pending():
            return True
        return bool(self._poll.poll(0))

    def _method(self, exchange: str, routing_key: str) -> bytes:
        key = (exchange, routing_key)
        frame = self._methods.get(key)
        if frame is None:
            payload = (struct.pack(">HH", *spec.Basic.Publish)
                       + dumps(_PUBLISH_ARGS, (0, exchange, routing_key, False, False)))
            frame = (_FRAME.pack(_METHOD_FRAME, self._channel_id, len(payload)) + payload
                     + _FRAME_END)
            if len(self._methods) >= MAX_CACHED:
                self._methods.clear()
            self._methods[key] = frame
        return frame

    def _property_block(self, content_type: str, content_encoding: str,
                        properties: Mapping[str, Any]) -> bytes:
        key = (content_type, content_encoding, tuple(sorted(properties.items())))
        block = self._properties.get(key)
        if block is None:
            block = Message(b"", content_type=content_type, content_encoding=content_encoding,
                            **properties)._serialize_properties()
            if len(self._properties) >= MAX_CACHED:
                self._properties.clear()
            self._properties[key] = block
        return block
