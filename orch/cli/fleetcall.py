"""One action over the chosen nodes, asking the operator first with the real node count.

Which nodes, how many and how many at a time are orch's shared options (``--nodes``/``-I``
names or discovery, ``--limit N|N%``, ``-1``, ``--batch``, ``--batch-sleep``), applied by
:meth:`ClientContext.call` like for every other command. A command whose action is
destructive needs one thing more before anything is sent: the number of nodes that will be
addressed (after ``--limit``), so that "stop nginx on 240 nodes?" is asked with the true
count, and afterwards how many matching nodes ``--limit`` left out. orch-service and
orch-package both need exactly that, so it lives here rather than copied in each plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import click

from orch.cli.options import ClientContext, OrchCommandError
from orch.core.client import CallResult, Client
from orch.core.discovery import Discovered

__all__ = ["FleetCall", "ask_above", "call_fleet", "confirm", "needs_confirmation"]


@dataclass
class FleetCall:
    """What :func:`call_fleet` returns: the call's result and what ``--limit`` left out."""

    result: CallResult
    #: How many matching nodes --limit left out (0 when no limit, or not known).
    left_out: int = 0


def needs_confirmation(destructive: bool, count: int, threshold: int, yes: bool) -> bool:
    """Ask before a destructive action on more than ``threshold`` nodes, unless ``yes``."""
    return destructive and not yes and count > threshold


def confirm(question: str) -> None:
    """Ask ``question`` on the terminal; no answer (no terminal, end of input) is a no, which
    stops the command with a message saying how to skip the question."""
    try:
        agreed = click.confirm(question, default=False, err=True)
    except click.Abort:
        agreed = False
    if not agreed:
        raise OrchCommandError("nothing done: not confirmed (pass --yes to skip the question)")


def ask_above(threshold: int, question: Callable[[int], str]) -> Callable[[int], None]:
    """The ``ask`` of :func:`call_fleet` for "ask above N nodes": :func:`confirm` with
    ``question(count)`` when more than ``threshold`` nodes will be addressed."""
    def ask(count: int) -> None:
        if count > threshold:
            confirm(question(count))

    return ask


def call_fleet(orch: ClientContext, client: Client, agent: str, action: str,
               data: Mapping[str, Any], ask: Callable[[int], None] | None = None) -> FleetCall:
    """Call ``agent.action`` through ``orch.call`` (so the shared options apply).

    ``ask(count)``, when given, is called with the number of nodes that will be addressed
    before anything is sent, and stops the call by raising. When it is given or ``--limit``
    is, the nodes are found here first (one discovery, the same nodes are then called).
    No node hosting the agent is an :class:`OrchCommandError` saying so, not an empty result.
    """
    nodes = orch.known_nodes()
    limit = orch.plan.limit
    discovered: Discovered | None = None
    if nodes is None and (ask is not None or limit is not None):
        discovered = client.discover(orch.filter, agent)
        nodes = sorted(discovered)
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
        discovered.mark(result)
    return FleetCall(result, left_out)


def _nobody(agent: str) -> OrchCommandError:
    return OrchCommandError(f"No request sent: no node matching the filter hosts the "
                            f"{agent} agent")
