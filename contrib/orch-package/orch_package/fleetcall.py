"""One action over the chosen nodes, in batches, with the safety questions the CLI asks.

The library half of ``orch package``: who is addressed (``--nodes``/``-I`` names, else
discovery of nodes hosting the agent; ``--limit`` keeps the first N), whether to ask before
a destructive action, and the batches (``--batch N``, ``--batch-sleep``) merged into one
:class:`CallResult` so the summary and ``--json`` read as one call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orch_package.orchapi import CallResult, Client, ClientContext, OrchCommandError

#: Names listed after a count before the list is cut ("... and 12 more").
NAMES_SHOWN = 10


@dataclass
class Targets:
    nodes: list[str]
    #: Why discovery may have missed nodes (None: complete, or no discovery).
    cut_short: str | None = None
    #: How many nodes --limit left out.
    left_out: int = 0


def targets(orch: ClientContext, client: Client, agent: str, limit: int | None) -> Targets:
    """The nodes to address: the known list, else discovery; at most ``limit`` of them."""
    known = orch.known_nodes()
    cut_short = None
    if known is None:
        discovered = client.discover(orch.filter, agent)
        cut_short = discovered.cut_short
        known = list(discovered)
    nodes = sorted(known)
    if not nodes:
        raise OrchCommandError(f"No request sent: no node matching the filter hosts the "
                               f"{agent} agent")
    left_out = 0
    if limit is not None and len(nodes) > limit:
        left_out = len(nodes) - limit
        nodes = nodes[:limit]
    return Targets(nodes, cut_short, left_out)


def needs_confirmation(destructive: bool, count: int, threshold: int, yes: bool) -> bool:
    """Ask before a destructive action on more than ``threshold`` nodes, unless ``yes``."""
    return destructive and not yes and count > threshold


@dataclass
class BatchPlan:
    size: int | None = None
    sleep: float = 0.0
    on_batch: Callable[[int, list[str]], None] | None = field(default=None, repr=False)


def call_in_batches(client: Client, agent: str, action: str, data: Mapping[str, Any],
                    nodes: Sequence[str], plan: BatchPlan,
                    on_reply: Callable[..., None] | None = None) -> CallResult:
    """Call ``nodes`` ``plan.size`` at a time; one :class:`CallResult` for all batches."""
    size = plan.size or len(nodes)
    merged: CallResult | None = None
    for number, first in enumerate(range(0, len(nodes), size), 1):
        if first and plan.sleep:
            time.sleep(plan.sleep)
        chunk = list(nodes[first:first + size])
        if plan.on_batch is not None and plan.size is not None:
            plan.on_batch(number, chunk)
        result = client.call(agent, action, dict(data), nodes=chunk, on_reply=on_reply)
        merged = result if merged is None else _merge(merged, result)
        if result.error is not None:  # the broker went away: later batches cannot go
            break
    assert merged is not None, "nodes is never empty here"
    merged.expected = list(nodes)
    return merged


def _merge(into: CallResult, more: CallResult) -> CallResult:
    into.replies.update(more.replies)
    into.rtt.update(more.rtt)
    into.rejected.extend(more.rejected)
    into.warnings.update(more.warnings)
    into.elapsed += more.elapsed
    into.error = into.error or more.error
    return into


def groups(result: CallResult, key: str) -> dict[str, list[str]]:
    """``{value: [nodes]}`` of one output over every reply that carries it, failed or not."""
    out: dict[str, list[str]] = {}
    for name, reply in sorted(result.replies.items()):
        value = reply.data.get(key)
        if value in (None, ""):
            continue
        out.setdefault(str(value), []).append(name)
    return out


def summary_line(grouped: Mapping[str, list[str]], name_all_but_largest: bool = True,
                 unit: str = "") -> str:
    """``running: 48, stopped: 2 (web-07, web-19)``: largest group first; the others name
    their nodes (up to :data:`NAMES_SHOWN`)."""
    ordered = sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    parts = []
    for index, (value, names) in enumerate(ordered):
        text = f"{value}: {len(names)}{unit}"
        if name_all_but_largest and index > 0:
            shown = ", ".join(names[:NAMES_SHOWN])
            more = f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
            text += f" ({shown}{more})"
        parts.append(text)
    return ", ".join(parts)
