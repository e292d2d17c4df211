"""Bounding what a dead node collects on Redis.

RabbitMQ drops a node's queue once nobody consumed it for ``queue_expiry`` seconds (its
``x-expires``). kombu's Redis transport has no such thing for a queue somebody publishes to:
a node killed without a clean shutdown leaves its binding in the exchange's binding table,
and every broadcast afterwards is pushed onto its list until it returns — unbounded.

So on Redis each daemon keeps a liveness key per node it serves
(``orch.<collective>.alive.<identity>``, expiring after ``queue_expiry``, refreshed every
third of that), and every daemon sweeps now and then: a node queue bound to the collective's
request exchange whose liveness key is gone loses its bindings and its list. A dead node
therefore collects broadcasts for at most ``queue_expiry`` plus one sweep interval. A node
that was only stalled (its key lapsed and a peer swept it) re-adds its bindings on its next
refresh, so it never stays deaf.

This leans on two attributes of kombu's Redis channel, ``keyprefix_queue`` and ``sep``: how
kombu stores a binding (``routing_key<sep>pattern<sep>queue`` in the set
``keyprefix_queue % exchange``). kombu has kept that layout since 3.x.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from typing import Any

from orch.core.transport import NodeBinding

log = logging.getLogger(__name__)

#: Most members inspected per sweep: a sweep's cost stays bounded on a huge collective.
SWEEP_LIMIT = 10_000


def alive_key(collective: str, identity: str) -> str:
    """The key whose presence says a daemon still serves ``identity``."""
    return f"orch.{collective}.alive.{identity}"


class RedisLiveness:
    """Liveness keys for the nodes one daemon serves, and the sweep of dead peers."""

    def __init__(self, channel: Any, bindings: Sequence[NodeBinding], expiry: float,
                 exchange_for: Any, queue_for: Any) -> None:
        self._channel = channel
        self._bindings = list(bindings)
        self.expiry = max(float(expiry), 1.0)
        self._exchange_for = exchange_for
        self._queue_for = queue_for
        self._next_refresh = 0.0
        # Jittered, so a fleet started together does not sweep in step.
        self._next_sweep = time.monotonic() + self.expiry * random.uniform(0.5, 1.0)

    def tick(self, now: float | None = None) -> None:
        """Refresh and sweep when due; called from the consuming loop. Never raises."""
        now = time.monotonic() if now is None else now
        try:
            if now >= self._next_refresh:
                self.refresh()
                self._next_refresh = now + self.expiry / 3
            if now >= self._next_sweep:
                self.sweep()
                self._next_sweep = now + self.expiry * random.uniform(0.75, 1.25)
        except Exception as exc:  # the consuming loop notices a dead connection itself
            log.warning("redis liveness upkeep failed: %s", exc)

    def _members(self, binding: NodeBinding) -> list[str]:
        """The binding-table entries kombu wrote for ``binding`` (its own encoding)."""
        queue = self._queue_for(binding)
        exchange = self._exchange_for(binding)
        kind = self._channel.typeof(exchange)
        members = []
        for agent in binding.agents:
            key, pattern, _ = kind.prepare_bind(queue, exchange, f"agent.{agent}", None)
            members.append(self._channel.sep.join([key or "", pattern or "", queue]))
        return members

    def refresh(self) -> None:
        """Mark every served node alive and (re-)add its bindings: a peer may have swept them
        while this process was stalled for longer than ``queue_expiry``."""
        milliseconds = int(self.expiry * 1000)
        # A pooled client, as kombu's own publishes use: the channel's ``client`` is the
        # connection its consumer blocks on.
        with self._channel.conn_or_acquire() as client, \
                client.pipeline(transaction=False) as pipe:
            for binding in self._bindings:
                pipe.set(alive_key(binding.collective, binding.identity), b"1", px=milliseconds)
                members = self._members(binding)
                if members:
                    table = self._channel.keyprefix_queue % self._exchange_for(binding)
                    pipe.sadd(table, *members)
            pipe.execute()

    def sweep(self) -> int:
        """Remove the bindings and lists of nodes nobody keeps alive; return how many."""
        with self._channel.conn_or_acquire() as client:
            return self._sweep(client)

    def _sweep(self, client: Any) -> int:
        sep = self._channel.sep
        removed = 0
        for collective, exchange in sorted({(b.collective, self._exchange_for(b))
                                            for b in self._bindings}):
            table = self._channel.keyprefix_queue % exchange
            prefix = self._queue_for(NodeBinding(collective, "", (), lambda _: None))
            members = [m.decode() if isinstance(m, bytes) else str(m)
                       for m in client.srandmember(table, SWEEP_LIMIT) or []]
            queues: dict[str, list[str]] = {}
            for member in members:
                queue = member.split(sep)[-1]
                if queue.startswith(prefix):
                    queues.setdefault(queue, []).append(member)
            if not queues:
                continue
            names = sorted(queues)
            with client.pipeline(transaction=False) as pipe:
                for queue in names:
                    pipe.exists(alive_key(collective, queue[len(prefix):]))
                alive = pipe.execute()
            dead = [queue for queue, up in zip(names, alive, strict=True) if not up]
            if not dead:
                continue
            with client.pipeline(transaction=False) as pipe:
                for queue in dead:
                    pipe.srem(table, *queues[queue])
                    pipe.delete(queue, *(f"{queue}{sep}{step}" for step in
                                         getattr(self._channel, "priority_steps", [0])
                                         if step))
                pipe.execute()
            removed += len(dead)
            log.info("collective %s: removed the queues of %d node(s) nobody serves any "
                     "more (%s)", collective, len(dead),
                     ", ".join(q[len(prefix):] for q in dead[:5])
                     + (", …" if len(dead) > 5 else ""))
        return removed
