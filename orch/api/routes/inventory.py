"""``GET /api/v1/inventory``: what the inventory store says about the fleet's freshness.

Why a route of its own: the overview shows how many nodes stopped registering (stale: not
registered within the store's ``stale_after``) and when each was last seen, without
asking the fleet anything. Without a configured store the answer says so
(``configured: false``) and the console hides the section.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orch.api.context import context_of, int_param, token_of
from orch.core.inventory import InventoryStore

#: The most stale nodes listed by name in one answer (the count is always complete).
MAX_STALE_LISTED = 1000


async def inventory_summary(request: Request) -> JSONResponse:
    context = context_of(request)
    token_of(request)
    limit = int_param(request, "limit", 100, 0, MAX_STALE_LISTED)
    inventory = context.inventory
    if inventory is None:
        return JSONResponse({"configured": False})
    collective = context.settings.collective

    def read(store: InventoryStore) -> dict[str, Any]:
        now = time.time()
        nodes = store.nodes(collective)
        stale = sorted((node for node in nodes if inventory.is_stale(node, now)),
                       key=lambda node: node.last_seen)
        return {"configured": True, "collective": collective,
                "stale_after": inventory.stale_after, "nodes": len(nodes),
                "stale": len(stale),
                "stale_nodes": [{"identity": node.identity, "last_seen": node.last_seen}
                                for node in stale[:limit]]}

    return JSONResponse(await run_in_threadpool(inventory.read, read))


routes = [Route("/api/v1/inventory", inventory_summary, methods=["GET"])]
