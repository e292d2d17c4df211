"""Run one action on a node list in batches, as one result.

Why: an operator restarting a service on 2,000 nodes wants at most N at a time, as
``mco rpc --batch`` did. Each batch is an ordinary direct call on the same client; their
results are merged into one :class:`~orch.core.client.CallResult` (every node expected,
every reply kept, the first broker error reported), so the API's final document and event
stream look the same with or without batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from orch.core.client import CallResult, Client, ReplyCallback


def call_in_batches(
    client: Client, agent: str, action: str, arguments: Mapping[str, Any], *,
    filter: Mapping[str, Sequence[Any]], nodes: Sequence[str] | None, batch: int,
    on_discovered: Callable[[list[str]], None], on_reply: ReplyCallback,
    timeout: float | None,
) -> CallResult:
    """``agent.action`` on ``nodes`` (discovered with ``filter`` when None), ``batch`` at a
    time; each batch starts when the one before has finished."""
    discovery_seconds = 0.0
    cut_short = None
    if nodes is None:
        started = time.monotonic()
        found = client.discover(filter, agent)
        discovery_seconds = time.monotonic() - started
        cut_short = found.cut_short
        nodes = list(found)
    targets = sorted(nodes)
    on_discovered(targets)
    merged: CallResult | None = None
    for start in range(0, len(targets), batch):
        part = client.call(agent, action, dict(arguments), filter=filter,
                           nodes=targets[start:start + batch], on_reply=on_reply,
                           timeout=timeout)
        if merged is None:
            merged = CallResult(agent, action, part.request_id, targets)
        merged.replies.update(part.replies)
        merged.rtt.update(part.rtt)
        merged.rejected.extend(part.rejected)
        merged.warnings.update(part.warnings)
        merged.elapsed += part.elapsed
        if part.error is not None:
            merged.error = part.error
            break  # the broker failed: later batches would fail the same way
    if merged is None:
        merged = CallResult(agent, action, "", [])
    merged.discovery_seconds = discovery_seconds
    merged.cut_short = cut_short
    return merged
