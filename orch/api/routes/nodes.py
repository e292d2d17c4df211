"""``/api/v1/nodes``: find nodes with the CLI's filter language, and look at one node.

Nodes are found by the configured discovery method (broadcast by default), so the list is the
live fleet; an inventory-backed discovery method (``discovery_method: auto`` with a store)
makes it instant without any change here. One node is asked directly; with an inventory
store configured, ``last_seen`` and ``stale`` come from its last registration, and a node
that does not answer but is in the store is shown as recorded (``answered: false``).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orch.api.context import MAX_PAGE, context_of, int_param, query_filter, token_of
from orch.api.errors import ApiError
from orch.core import protocol
from orch.core.errors import OrchError
from orch.core.inventory import InventoryStore


async def list_nodes(request: Request) -> JSONResponse:
    context, token = context_of(request), token_of(request)
    terms = query_filter(request)
    offset = int_param(request, "offset", 0, 0, 10**9)
    limit = int_param(request, "limit", 100, 1, MAX_PAGE)

    def discover() -> dict[str, Any]:
        with context.client(token) as client:
            found = client.discover(context.filter(client, terms))
        names = list(found)
        return {"total": len(names), "offset": offset, "limit": limit,
                "nodes": names[offset:offset + limit],
                "cut_short": getattr(found, "cut_short", None),
                "absent": list(getattr(found, "absent", ()))}

    return JSONResponse(await run_in_threadpool(_bounded, discover))


async def show_node(request: Request) -> JSONResponse:
    context, token = context_of(request), token_of(request)
    identity = request.path_params["identity"]
    if protocol.invalid_names([identity]):
        raise ApiError(400, f"{identity!r} is not a valid node identity")

    store = context.inventory
    collective = context.settings.collective

    def recorded() -> dict[str, Any] | None:
        if store is None:
            return None

        def read(opened: InventoryStore) -> dict[str, Any] | None:
            for node in opened.nodes(collective):
                if node.identity == identity:
                    return {"identity": identity, "facts": dict(node.facts),
                            "classes": list(node.classes), "agents": list(node.agents),
                            "version": node.version, "collective": node.collective,
                            "last_seen": node.last_seen, "stale": store.is_stale(node)}
            return None

        return store.read(read)

    def inventory() -> dict[str, Any]:
        with context.client(token) as client:
            result = client.call("rpcutil", "inventory", nodes=[identity])
        reply = result.replies.get(identity)
        if reply is None:
            known = recorded()
            if known is not None:
                return {**known, "answered": False, "registered": True}
            raise ApiError(404, f"no reply from node {identity!r}"
                           + (f": {result.error}" if result.error else ""))
        if not reply.ok:
            raise ApiError(403 if "denied" in reply.statusmsg else 502,
                           f"{identity}: {reply.statuscode.label}: {reply.statusmsg}")
        data = reply.data
        known = recorded()
        return {"identity": identity, "facts": data.get("facts", {}),
                "classes": data.get("classes", []), "agents": data.get("agents", []),
                "version": data.get("version"), "collective": data.get("main_collective"),
                "last_seen": known["last_seen"] if known else time.time(),
                "stale": known["stale"] if known else False, "answered": True,
                "registered": known is not None}

    return JSONResponse(await run_in_threadpool(_bounded, inventory))


def _bounded(work: Any) -> Any:
    """Run ``work``, turning the client library's errors into JSON errors."""
    try:
        return work()
    except OrchError as exc:
        raise ApiError(502 if "broker" in str(exc).lower() else 400, str(exc)) from None


routes = [
    Route("/api/v1/nodes", list_nodes, methods=["GET"]),
    Route("/api/v1/nodes/{identity}", show_node, methods=["GET"]),
]
