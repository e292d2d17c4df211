"""Seeding a registry that starts after the fleet: ask the live fleet once.

Servers register on start, on change and every ``registration_interval`` (300 s by
default). A registry started (or restarted) later would otherwise know a node only at its
next interval. On start it therefore broadcasts one ``rpcutil inventory`` as a client —
the replies are verified like any call's — and stores each answering node's identity,
facts, classes, agents and version. Broadcast ends as discovery does (the
``discovery_window`` after the last reply, at most ``discovery_timeout``). The registry's
client identity needs ``rpcutil inventory`` in the nodes' policies; when it is refused, or
the broker is away, the registry says so and relies on registrations alone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from orch.core.client import Client
from orch.core.config import Settings
from orch.core.errors import OrchError
from orch.core.inventory import NodeRecord
from orch.core.plugins import PluginRegistry
from orch.core.protocol import Reply

log = logging.getLogger(__name__)


def record_from_inventory(reply: Reply, collective: str, now: float) -> NodeRecord | None:
    """The node record an ``rpcutil inventory`` reply describes, or None if malformed."""
    data: Any = reply.data
    facts, classes, agents = data.get("facts"), data.get("classes"), data.get("agents")
    stats = data.get("stats")
    version = data.get("version")
    started = stats.get("starttime") if isinstance(stats, dict) else None
    if (not isinstance(facts, dict) or not isinstance(version, str)
            or not all(isinstance(names, list) and all(isinstance(n, str) for n in names)
                       for names in (classes, agents))
            or isinstance(started, bool) or not isinstance(started, int | float)):
        log.warning("seed: the inventory reply of %s is malformed; skipped", reply.sender)
        return None
    assert isinstance(classes, list) and isinstance(agents, list)
    return NodeRecord(reply.sender, collective, facts, tuple(classes), tuple(agents),
                      version[:100], float(started), now)


def seed(settings: Settings, plugins: PluginRegistry) -> list[NodeRecord]:
    """Every node that answers ``rpcutil inventory`` now, as records (empty on failure)."""
    try:
        with Client(settings, plugins, caller=None) as client:
            # The registry has threads of its own (broker, writer): forking reply checkers
            # beside them is unsafe (see orch.core.checkpool), so replies are checked here.
            client.verify_workers = 0
            result = client.broadcast(
                "rpcutil", "inventory", timeout=settings.discovery_timeout,
                quiet=settings.discovery_window, label="the registry's seeding",
                observe=False)
    except OrchError as exc:
        log.warning("seed: could not ask the fleet (%s); waiting for registrations", exc)
        return []
    now = time.time()
    records = [record for reply in result.replies.values() if reply.ok
               for record in [record_from_inventory(reply, settings.collective, now)]
               if record is not None]
    refused = len(result.failed)
    log.info("seed: %d node(s) from the live fleet%s", len(records),
             f"; {refused} refused rpcutil inventory" if refused else "")
    return records
