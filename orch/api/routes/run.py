"""``POST /api/v1/run/{agent}/{action}``: run an action on a filter, as a job.

Returns the job id at once (202); the replies stream from ``/api/v1/jobs/{id}/events`` and
the final document (the same as ``orch rpc --json``) is at ``/api/v1/jobs/{id}``. With
``?wait=true`` the call is synchronous and answers with the final document — meant for
small calls. Arguments are checked against the action's DDL before anything is sent, so a
bad call is a 422 with the DDL's own message, not a failed job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orch.api.context import FILTER_KINDS, ApiContext, context_of, token_of
from orch.api.errors import ApiError, read_json
from orch.api.jobs import Job
from orch.api.tokens import ApiToken
from orch.core.batch import CallPlan, call_nodes
from orch.core.client import CallResult
from orch.core.errors import ArgumentError, OrchError
from orch.core.protocol import Reply

#: The longest ``timeout`` a run request may ask for, seconds. ``orch api`` waits for the
#: calls still running when it stops, so this also bounds how long stopping can take.
MAX_CALL_TIMEOUT = 600

#: The longest a synchronous call (``?wait=true``) may wait for its job, seconds.
MAX_SYNC_WAIT = 120.0


def run_body_schema(arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON Schema of a run request (``arguments``: the action's input schema)."""
    terms = {"type": "array", "maxItems": 100, "items": {"type": "string", "maxLength": 1000}}
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "arguments": arguments or {"type": "object"},
            "filter": {"type": "object", "additionalProperties": False,
                       "properties": {kind: terms for kind in FILTER_KINDS}},
            "nodes": {"type": "array", "maxItems": 10000,
                      "items": {"type": "string", "minLength": 1, "maxLength": 255}},
            "limit": {"type": "integer", "minimum": 1},
            "batch": {"type": "integer", "minimum": 1},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_CALL_TIMEOUT},
        },
    }


async def run_action(request: Request) -> JSONResponse:
    context, token = context_of(request), token_of(request)
    agent, action = request.path_params["agent"], request.path_params["action"]
    cls = context.registry.agents(context.settings).get(agent)
    if cls is None:
        raise ApiError(404, f"no agent {agent!r} is installed with the API")
    ddl = cls.ddl().action(action)
    if ddl is None:
        raise ApiError(404, f"agent {agent!r} has no action {action!r}")
    wait = request.query_params.get("wait", "false").lower()
    if wait not in ("true", "false", "1", "0"):
        raise ApiError(400, "query parameter 'wait' must be true or false")
    body = await read_json(request, run_body_schema(), context.max_body)
    try:
        arguments = ddl.check_arguments(body.get("arguments", {}), context.registry.validators())
    except ArgumentError as exc:
        raise ApiError(422, f"invalid arguments for {agent}.{action}: {exc}") from None
    job = context.jobs.start(token.name, agent, action, body,
                             _call(context, token, agent, action, arguments, body))
    if wait in ("true", "1"):
        finished = await asyncio.to_thread(job.done_event.wait, MAX_SYNC_WAIT)
        if not finished:
            raise ApiError(504, f"job {job.id} still running after {MAX_SYNC_WAIT:g}s",
                           job=job.id)
        return JSONResponse(job_document(job))
    return JSONResponse({"job": job.id, "state": job.state,
                         "links": {"self": f"/api/v1/jobs/{job.id}",
                                   "events": f"/api/v1/jobs/{job.id}/events"}},
                        status_code=202)


def job_document(job: Job) -> dict[str, Any]:
    return {**job.summary(), "result": job.document}


def _call(context: ApiContext, token: ApiToken, agent: str, action: str,
          arguments: dict[str, Any], body: dict[str, Any]) -> Any:
    def body_(discovered: Callable[[list[str]], None],
              replied: Callable[[Reply, CallResult], None]) -> dict[str, Any]:
        from orch.cli.output import result_document
        from orch.ddl.aggregate import summarize

        with context.client(token) as client:
            nodes = body.get("nodes")
            limit = body.get("limit")
            filter = context.filter(client, body.get("filter", {}))
            absent: list[str] = []
            if nodes is None and limit is not None:
                found = client.discover(filter, agent)
                nodes, absent = list(found)[:limit], found.absent
            elif nodes is not None and limit is not None:
                nodes = sorted(nodes)[:limit]
            try:
                if body.get("batch"):
                    # one job for the history too: Client.one_job inside call_nodes
                    result = call_nodes(
                        client, agent, action, arguments, filter=filter, nodes=nodes,
                        plan=CallPlan(batch=body["batch"]), on_discovered=discovered,
                        on_reply=replied, timeout=body.get("timeout"))
                else:
                    result = client.call(agent, action, arguments, filter=filter,
                                         nodes=nodes, on_discovered=discovered,
                                         on_reply=replied, timeout=body.get("timeout"))
            except OrchError as exc:
                raise RuntimeError(str(exc)) from None
            if absent:  # discovered here, for the limit: the call did not see them
                result.absent = absent
            ddl = client.action_ddl(agent, action)
            summaries = (summarize(ddl, result.replies.values(),
                                   client.registry.aggregate_functions()) if ddl else [])
            return result_document(result, summaries)

    return body_


routes = [Route("/api/v1/run/{agent}/{action}", run_action, methods=["POST"])]
