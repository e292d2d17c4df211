"""A client's reply queue on the real RabbitMQ, read through orch's buffered AMQP reader.

Replies whose message is whole in the read buffer go straight to the reply queue's list
(:meth:`orch.transports.amqp_reader.BufferedConnection.deliver_bodies`); the others, and
any with message headers, go through py-amqp and kombu as before. Either way every body
must arrive once, unchanged and in order.
"""

from __future__ import annotations

import pytest
from orch_integration import BROKERS, new_collective

from orch.core.config import load_settings
from orch.transports.kombu import CONNECT_TIMEOUT, KombuTransport
from orch.transports.kombu_client import KombuClientChannel

pytestmark = pytest.mark.integration

BROKER = BROKERS["rabbitmq"]


def test_every_reply_arrives_once_and_unchanged_by_either_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import kombu

    kombu_path: list[bytes] = []
    original = KombuClientChannel._on_message

    def counted(self: KombuClientChannel, message: object) -> None:
        kombu_path.append(b"")
        original(self, message)

    monkeypatch.setattr(KombuClientChannel, "_on_message", counted)
    transport = KombuTransport([BROKER], load_settings(None, {}, environ={}))
    channel = transport.open_client(new_collective("reader"), CONNECT_TIMEOUT)
    try:
        assert isinstance(channel, KombuClientChannel)
        # Small replies, one over RabbitMQ's frame size (several body frames), and some
        # with message headers, which always take kombu's path.
        bodies = [f'{{"n": {i}, "pad": "{"x" * (i % 7 * 300)}"}}'.encode()
                  for i in range(400)]
        bodies[123] = b"y" * 300_000
        with_headers = set(range(5, 400, 50))
        with kombu.Connection(BROKER, connect_timeout=CONNECT_TIMEOUT) as conn:
            producer = conn.Producer()
            for index, body in enumerate(bodies):
                producer.publish(body, routing_key=channel.reply_to, retry=False,
                                 headers={"x-test": index} if index in with_headers else None)
            producer.publish(b"barrier", routing_key=channel.reply_to, retry=False)
        got = []
        while not got or got[-1] != b"barrier":
            raw = channel.receive(CONNECT_TIMEOUT)
            assert raw is not None, f"only {len(got)} of {len(bodies)} replies arrived"
            got.append(raw)
        assert got[:-1] == bodies  # the barrier came last: nothing twice, nothing lost
        # Every reply with headers came through kombu, and most of the others did not.
        assert len(with_headers) <= len(kombu_path) <= len(with_headers) + len(bodies) // 2
    finally:
        channel.close()
