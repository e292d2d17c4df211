"""``/api/v1/nodes``: find nodes with the CLI's filter language, and look at one node.

Nodes are found by the configured discovery method (broadcast by default), so the list is the
live fleet; an inventory-backed discovery method, once installed and chosen with the
``discovery_method`` setting, makes it instant without any change here.
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
                "cut_short": getattr(found, "cut_short", None)}

    return JSONResponse(await run_in_threadpool(_bounded, discover))


async def show_node(request: Request) -> JSONResponse:
    context, token = context_of(request), token_of(request)
    identity = request.path_params["identity"]
    if protocol.invalid_names([identity]):
        raise ApiError(400, f"{identity!r} is not a valid node identity")

    def inventory() -> dict[str, Any]:
        with context.client(token) as client:
            result = client.call("rpcutil", "inventory", nodes=[identity])
        reply = result.replies.get(identity)
        if reply is None:
            raise ApiError(404, f"no reply from node {identity!r}"
                           + (f": {result.error}" if result.error else ""))
        if not reply.ok:
            raise ApiError(403 if "denied" in reply.statusmsg else 502,
                           f"{identity}: {reply.statuscode.label}: {reply.statusmsg}")
        data = reply.data
        return {"identity": identity, "facts": data.get("facts", {}),
                "classes": data.get("classes", []), "agents": data.get("agents", []),
                "version": data.get("version"), "collective": data.get("main_collective"),
                "last_seen": time.time()}

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
