"""Calling part of a fleet, or all of it a few nodes at a time (mco's ``--limit``/``--batch``).

An operator restarting a service fleet-wide wants it on a tenth of the nodes first
(``--limit 10%``), or on five at a time with a pause between (``--batch 5 --batch-sleep
10``). Both act on the list of discovered nodes, before anything is sent, so every command
(plugin commands included) gets them by calling :func:`call_nodes` instead of
:meth:`Client.call`::

    result = call_nodes(client, "service", "restart", {"service": "nginx"},
                        filter=f, plan=CallPlan(limit=Limit.parse("10%"), batch=5))

Ctrl-C in any batch raises :class:`~orch.core.errors.CallInterrupted` whose result holds
the replies of every batch so far and names every node not yet answered — those of the
batches never sent included.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orch.core.client import CallResult, Client, ReplyCallback
from orch.core.discovery import Discovered
from orch.core.errors import ArgumentError, CallInterrupted

_LIMIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")
LIMIT_METHODS = ("random", "first")


@dataclass(frozen=True)
class Limit:
    """At most ``count`` nodes, or ``percent`` of them; chosen at random (``seed`` makes the
    choice repeatable) or the first ones in name order."""

    count: int | None = None
    percent: float | None = None
    method: str = "random"
    seed: int | None = None

    @classmethod
    def parse(cls, text: str, method: str = "random", seed: int | None = None) -> Limit:
        """``"5"`` or ``"10%"``; ArgumentError saying what is accepted otherwise."""
        match = _LIMIT.match(text)
        if match is None or (not match.group(2) and "." in match.group(1)):
            raise ArgumentError(f"--limit {text!r}: give a number of nodes (5) or a "
                                "percentage (10%)")
        if method not in LIMIT_METHODS:
            raise ArgumentError(f"limit method {method!r}: use one of {', '.join(LIMIT_METHODS)}")
        value = float(match.group(1))
        if match.group(2):
            if not 0 < value <= 100:
                raise ArgumentError(f"--limit {text!r}: a percentage is above 0 and at most 100")
            return cls(percent=value, method=method, seed=seed)
        if value < 1:
            raise ArgumentError(f"--limit {text!r}: at least 1 node")
        return cls(count=int(value), method=method, seed=seed)

    def size(self, total: int) -> int:
        """How many of ``total`` nodes the limit keeps (a percentage keeps at least one)."""
        if self.count is not None:
            return min(self.count, total)
        assert self.percent is not None
        return min(total, max(1, round(total * self.percent / 100))) if total else 0

    def apply(self, nodes: Sequence[str]) -> list[str]:
        """The chosen nodes, sorted."""
        ordered = sorted(nodes)
        keep = self.size(len(ordered))
        if self.method == "first":
            return ordered[:keep]
        return sorted(random.Random(self.seed).sample(ordered, keep))


@dataclass(frozen=True)
class CallPlan:
    """Which of the discovered nodes to call and how many at a time."""

    limit: Limit | None = None
    #: Nodes per batch (None: all at once).
    batch: int | None = None
    #: Seconds to wait between batches.
    batch_sleep: float = 0.0

    def __post_init__(self) -> None:
        if self.batch is not None and self.batch < 1:
            raise ArgumentError(f"--batch {self.batch}: at least 1 node per batch")
        if self.batch_sleep < 0:
            raise ArgumentError(f"--batch-sleep {self.batch_sleep}: not negative")

    def batches(self, nodes: Sequence[str]) -> list[list[str]]:
        chosen = self.limit.apply(nodes) if self.limit is not None else sorted(nodes)
        size = self.batch or max(len(chosen), 1)
        return [chosen[i:i + size] for i in range(0, len(chosen), size)]


#: Called before each batch is sent: ``(index from 1, number of batches, its nodes)``.
BatchCallback = Callable[[int, int, list[str]], None]


def merge(agent: str, action: str, results: Sequence[CallResult],
          expected: Sequence[str]) -> CallResult:
    """One result for several batches: every reply, every node expected in any batch."""
    merged = CallResult(agent, action, results[0].request_id if results else "",
                        sorted(expected))
    for result in results:
        merged.replies.update(result.replies)
        merged.rtt.update(result.rtt)
        merged.rejected.extend(result.rejected)
        merged.warnings.update(result.warnings)
        merged.elapsed += result.elapsed
        merged.error = merged.error or result.error
    if not merged.replies:
        merged.hint = next((result.hint for result in results if result.hint), None)
    return merged


def call_nodes(
    client: Client,
    agent: str,
    action: str,
    data: Mapping[str, Any] | None = None,
    *,
    filter: Mapping[str, Sequence[Any]] | None = None,
    nodes: Sequence[str] | None = None,
    plan: CallPlan | None = None,
    on_discovered: Callable[[list[str]], None] | None = None,
    on_batch: BatchCallback | None = None,
    on_reply: ReplyCallback | None = None,
    stop: threading.Event | None = None,
    timeout: float | None = None,
) -> CallResult:
    """:meth:`Client.call` on the nodes ``plan`` picks from the discovered (or listed) ones.

    ``on_discovered`` gets the nodes that will be called (after the limit). ``stop`` ends
    the wait between batches early (the remaining batches are not sent). ``timeout``: as
    :meth:`Client.call`'s, for each batch. The batches are one job for the client's
    observers (:meth:`Client.one_job`): one entry in the job history, every reply in it.
    """
    plan = plan or CallPlan()
    if plan.limit is None and plan.batch is None:
        return client.call(agent, action, data, filter=filter, nodes=nodes,
                           on_discovered=on_discovered, on_reply=on_reply, timeout=timeout)
    client.action_ddl(agent, action)  # an unknown action is refused before discovery
    discovered = client.discover(filter, agent) if nodes is None else None
    batches = plan.batches(discovered if discovered is not None else nodes or [])
    chosen = [name for batch in batches for name in batch]
    if on_discovered is not None:
        on_discovered(chosen)
    results: list[CallResult] = []

    def finish() -> CallResult:
        return _finish(agent, action, results, chosen, discovered)

    with client.one_job(chosen) as job:
        try:
            for index, batch in enumerate(batches, 1):
                if index > 1 and plan.batch_sleep and (stop or threading.Event()).wait(
                        plan.batch_sleep):
                    break
                if on_batch is not None:
                    on_batch(index, len(batches), batch)
                results.append(client.call(agent, action, data, filter=filter, nodes=batch,
                                           on_reply=on_reply, timeout=timeout))
        except CallInterrupted as exc:
            results.append(exc.result)
            job.result = finish()
            raise CallInterrupted(job.result) from None
        except KeyboardInterrupt:  # between batches: what the earlier batches brought is kept
            job.result = finish()
            raise CallInterrupted(job.result) from None
        if not batches:
            results.append(client.call(agent, action, data, filter=filter, nodes=[],
                                       timeout=timeout))
        job.result = finish()
    return job.result


def _finish(agent: str, action: str, results: Sequence[CallResult], chosen: list[str],
            discovered: Discovered | None) -> CallResult:
    merged = merge(agent, action, results, chosen)
    if discovered is not None:
        discovered.mark(merged)
    return merged
