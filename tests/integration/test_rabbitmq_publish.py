"""Replies published as prebuilt frames (:mod:`orch.transports.amqp_publish`), on the real
RabbitMQ: every body and property arrives as sent, and a channel the broker closed is
noticed before the next reply, which a new connection then delivers."""

from __future__ import annotations

import select
import threading
from collections.abc import Iterator

import kombu
import pytest
from orch_integration import BROKERS, new_collective

from orch.core.config import load_settings
from orch.core.transport import NodeBinding
from orch.testing import wait_until
from orch.transports import amqp_publish
from orch.transports.kombu import (
    CONNECT_TIMEOUT,
    KombuTransport,
    node_queue_name,
    reply_queue_prefix,
)

pytestmark = pytest.mark.integration

BROKER = BROKERS["rabbitmq"]


@pytest.fixture
def reply_queue() -> Iterator[tuple[str, str]]:
    collective = new_collective("publish")
    name = f"{reply_queue_prefix(collective)}test"
    with kombu.Connection(BROKER, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.default_channel.queue_declare(name, auto_delete=False,
                                           arguments={"x-expires": 60_000})
        try:
            yield collective, name
        finally:
            conn.default_channel.queue_delete(name)


def body(message: kombu.Message) -> bytes:
    """A message's body as sent (py-amqp hands a text body over decoded)."""
    return message.body if isinstance(message.body, bytes) else message.body.encode()


def drain(name: str, until: bytes) -> list[kombu.Message]:
    """The queue's messages up to and including the one whose body is ``until``."""
    got: list[kombu.Message] = []
    with (kombu.Connection(BROKER, connect_timeout=CONNECT_TIMEOUT) as conn,
          conn.Consumer(kombu.Queue(name, no_declare=True), on_message=got.append,
                        no_ack=True)):
        while not got or body(got[-1]) != until:
            conn.drain_events(timeout=CONNECT_TIMEOUT)
    return got


def test_replies_arrive_whole_with_their_properties(reply_queue: tuple[str, str]) -> None:
    collective, name = reply_queue
    transport = KombuTransport([BROKER], load_settings(None, {}, environ={}))
    # Small ones, and one of several body frames (RabbitMQ's frame_max is 128 KiB).
    bodies = [f'{{"n": {i}, "pad": "{"x" * (i % 5 * 700)}"}}'.encode() for i in range(300)]
    bodies[77] = b"z" * 400_000
    try:
        for index, payload in enumerate(bodies):
            transport.send_reply(collective, name, payload, ttl=30.0 + index % 2)
        transport.send_reply(collective, name, b"barrier", ttl=30.0)
        assert transport._reply_publisher is not None  # the frames path was taken
    finally:
        transport.close()
    got = drain(name, b"barrier")
    assert [body(message) for message in got[:-1]] == bodies  # in order, nothing twice
    for index, message in enumerate(got[:-1]):
        assert message.content_type == "application/json"
        assert message.content_encoding == "utf-8"
        assert message.properties["delivery_mode"] == 1
        assert message.properties["expiration"] == str(30_000 + index % 2 * 1000)


def test_a_channel_the_broker_closed_is_noticed_before_the_next_reply(
        reply_queue: tuple[str, str]) -> None:
    collective, name = reply_queue
    transport = KombuTransport([BROKER], load_settings(None, {}, environ={}))
    try:
        transport.send_reply(collective, name, b"first", ttl=30.0)
        publisher = transport._reply_publisher
        assert publisher is not None
        # Publishing to an exchange that does not exist makes RabbitMQ close the channel.
        publisher.publish(b"lost", "orch-no-such-exchange", "x", "application/json",
                          "utf-8", {})
        sock = transport._reply_conn.connection.sock  # type: ignore[union-attr]
        readable, _, _ = select.select([sock], [], [], CONNECT_TIMEOUT)
        assert readable, "RabbitMQ did not close the channel"
        # The close is read before this reply goes out: the reply goes on a new connection.
        transport.send_reply(collective, name, b"second", ttl=30.0)
        assert transport._reply_publisher is not publisher
    finally:
        transport.close()
    assert [body(message) for message in drain(name, b"second")] == [b"first", b"second"]


def test_replies_to_a_burst_of_requests_go_out_together_and_all_arrive(
        reply_queue: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    collective, name = reply_queue
    writes: list[int] = []
    original_send = amqp_publish.FramePublisher.send

    def counted(self: amqp_publish.FramePublisher, frames: bytes, messages: int = 1) -> None:
        writes.append(messages)
        original_send(self, frames, messages)

    monkeypatch.setattr(amqp_publish.FramePublisher, "send", counted)
    transport = KombuTransport([BROKER], load_settings(None, {}, environ={}))
    first_request = threading.Event()
    go_on = threading.Event()

    def handler(request: bytes) -> None:  # a node echoing each request to the reply queue
        if request == b"0":
            first_request.set()
            go_on.wait(CONNECT_TIMEOUT)  # the others pile up in the socket meanwhile
        transport.send_reply(collective, name, request, ttl=30.0)

    stop, ready = threading.Event(), threading.Event()
    binding = NodeBinding(collective, "burst-node", ("rpcutil",), handler)
    consumer = threading.Thread(target=transport.serve, args=([binding], stop, ready),
                                daemon=True)
    consumer.start()
    requests = [str(i).encode() for i in range(300)]
    try:
        assert ready.wait(CONNECT_TIMEOUT)
        with kombu.Connection(BROKER, connect_timeout=CONNECT_TIMEOUT) as conn:
            producer = conn.Producer()
            queue = node_queue_name(collective, "burst-node")
            producer.publish(requests[0], routing_key=queue, retry=False)
            assert first_request.wait(CONNECT_TIMEOUT)
            for request in requests[1:]:
                producer.publish(request, routing_key=queue, retry=False)
            # Every request has left the queue for the consumer's socket (no_ack).
            wait_until(lambda: not conn.default_channel.queue_declare(
                queue, passive=True).message_count, CONNECT_TIMEOUT,
                "the requests to leave the queue for the consumer")
        go_on.set()
        got = drain(name, requests[-1])
    finally:
        go_on.set()
        stop.set()
        consumer.join(CONNECT_TIMEOUT)
        transport.close()
    assert [body(message) for message in got] == requests  # in order, each once
    assert sum(writes) == len(requests)
    assert max(writes) > 1 and len(writes) < len(requests) // 4, writes
