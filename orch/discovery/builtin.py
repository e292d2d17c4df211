"""``broadcast`` discovery: ask the live fleet, and stop as soon as replies stop coming.

The request is a ``rpcutil ping`` routed to the nodes hosting the target agent and carrying
the filter; every node that answers at all (even with an error) is alive and selected.
Collection ends ``discovery_window`` seconds after the last reply, or at
``discovery_timeout`` — never after a fixed sleep. Ended by the timeout while replies were
still arriving, the list it returns says it is incomplete. Nodes that answered the same
discovery before are waited for, and named when they stay silent (``discovery_memory``,
:mod:`orch.core.answered`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orch.core.discovery import Discovered
from orch.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from orch.core.client import Client
    from orch.core.discovery import DiscoveryMethod


class BroadcastDiscovery:
    def discover(
        self, client: Client, filter: Mapping[str, Sequence[Any]], agent: str
    ) -> Discovered:
        result = client.broadcast(
            "rpcutil", "ping", filter=filter, route_agent=agent,
            timeout=client.settings.discovery_timeout,
            quiet=client.settings.discovery_window, label="discovery", observe=False,
            remember=True,
        )
        cut_short = None
        if result.cut_short is not None:
            cut_short = (f"{result.cut_short}; raise --discovery-timeout "
                         "(discovery_timeout) to wait longer")
        return Discovered(sorted(result.replies), cut_short, absent=result.absent)


@hookimpl
def orch_discovery_methods() -> Mapping[str, DiscoveryMethod]:
    return {"broadcast": BroadcastDiscovery()}
