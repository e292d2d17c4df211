"""Probing and cleaning a real broker for integration tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


# ----------------------------------------------------------------------------- brokers


def broker_problem(url: str, timeout: float = 3.0) -> str | None:
    """None if the broker at ``url`` (RabbitMQ or Redis) accepts a connection, else why not.

    For integration suites that need a real broker: fail (or skip) with this reason up
    front instead of every test timing out on its own.
    """
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # any reason the broker cannot be used is the answer
        return f"{type(exc).__name__}: {exc}"
    return None


def purge_collective(broker: str, collective: str) -> None:
    """Remove what ``collective`` left on a real broker: its request exchange on RabbitMQ
    (queues expire on their own), every key naming it on Redis.

    Test sessions use new collectives; without this each run would leave exchanges (or
    keys) behind until the broker restarts. Errors are the caller's to suppress.
    """
    if broker.startswith(("redis", "rediss")):
        import redis

        client = redis.Redis.from_url(broker)
        try:
            keys = list(client.scan_iter(match=f"*{collective}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
        return
    from kombu import Connection

    from orch.transports.kombu import request_exchange_name

    with Connection(broker, connect_timeout=5) as conn:
        conn.channel().exchange_delete(request_exchange_name(collective))


