"""One action over the chosen nodes, with the safety question the CLI asks, and its summary.

The library half of ``orch package``. Which nodes, how many and how many at a time are
orch's shared options (``--nodes``/``-I`` names or discovery, ``--limit N|N%``, ``-1``,
``--batch``, ``--batch-sleep``), applied by :meth:`ClientContext.call` like for every other
command. This module adds only what is the plugin's own: before a destructive action it
finds the nodes first, so that the operator is asked with the real count (after
``--limit``) before anything is sent, and it says how many matching nodes ``--limit`` left
out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orch_package.orchapi import CallResult, Client, ClientContext, OrchCommandError

#: Names listed after a count before the list is cut ("... and 12 more").
NAMES_SHOWN = 10


@dataclass
class FleetCall:
    result: CallResult
    #: How many matching nodes --limit left out (0 when no limit, or not known).
    left_out: int = 0


def needs_confirmation(destructive: bool, count: int, threshold: int, yes: bool) -> bool:
    """Ask before a destructive action on more than ``threshold`` nodes, unless ``yes``."""
    return destructive and not yes and count > threshold


def call_fleet(orch: ClientContext, client: Client, agent: str, action: str,
               data: Mapping[str, Any], ask: Callable[[int], None] | None = None) -> FleetCall:
    """Call ``agent.action`` through ``orch.call`` (so the shared options apply).

    ``ask(count)``, when given, is called with the number of nodes that will be addressed
    before anything is sent, and stops the call by raising. When it is given or ``--limit``
    is, the nodes are found here first (one discovery, the same nodes are then called).
    """
    nodes = orch.known_nodes()
    limit = orch.plan.limit
    discovered: tuple[float, str | None] | None = None
    if nodes is None and (ask is not None or limit is not None):
        started = time.monotonic()
        found = client.discover(orch.filter, agent)
        discovered = (time.monotonic() - started, found.cut_short)
        nodes = sorted(found)
    left_out = 0
    if nodes is not None:
        if not nodes:
            raise _nobody(agent)
        count = limit.size(len(nodes)) if limit is not None else len(nodes)
        left_out = len(nodes) - count
        if ask is not None:
            ask(count)
    result = orch.call(agent, action, dict(data), progress=orch.new_progress(), nodes=nodes,
                       client=client)
    if not result.expected:
        raise _nobody(agent)
    if discovered is not None:
        result.discovery_seconds, result.cut_short = discovered
    return FleetCall(result, left_out)


def _nobody(agent: str) -> OrchCommandError:
    return OrchCommandError(f"No request sent: no node matching the filter hosts the "
                            f"{agent} agent")


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
