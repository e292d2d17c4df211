"""The OpenAPI 3.1 document, generated from the routes and the installed agents' DDLs.

Why generated and never written by hand: each action's run path carries that action's input
schema, compiled from its DDL by :mod:`orch.ddl.compile` — the very schema the client and
the nodes validate with — so the documentation cannot drift from what is accepted. Routes
that plugins add through ``orch_api_routes`` are listed too (with their docstring), so the
document always matches the routes the app serves.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, Route

import orch
from orch.api.routes.run import run_body_schema
from orch.ddl.compile import input_schema
from orch.ddl.model import AgentDDL

ERROR = {"$ref": "#/components/schemas/Error"}
JSON_OBJECT = {"type": "object"}
FILTER_PARAMS = [
    {"name": kind, "in": "query", "required": False,
     "description": f"CLI-syntax {kind} filter term (repeatable)",
     "schema": {"type": "array", "items": {"type": "string"}}, "style": "form", "explode": True}
    for kind in ("fact", "class", "identity", "agent", "compound", "with")
]


def _response(description: str, schema: Any = JSON_OBJECT) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _response("error", ERROR) for code in (401, *codes)}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _builtin_paths() -> dict[str, Any]:
    page = [{"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}]
    return {
        "/api/v1/nodes": {"get": {
            "summary": "Nodes matching a filter (CLI filter language), paginated",
            "parameters": FILTER_PARAMS + page,
            "responses": {"200": _response("a page of node identities"), **_errors(400, 502)}}},
        "/api/v1/nodes/{identity}": {"get": {
            "summary": "One node's facts, classes, agents and when it was last seen",
            "parameters": [_path_param("identity")],
            "responses": {"200": _response("the node"), **_errors(400, 403, 404, 502)}}},
        "/api/v1/agents": {"get": {
            "summary": "Agents installed with the API",
            "responses": {"200": _response("agents"), **_errors()}}},
        "/api/v1/agents/{agent}": {"get": {
            "summary": "One agent's DDL, with each action's input and output JSON Schemas",
            "parameters": [_path_param("agent")],
            "responses": {"200": _response("the DDL"), **_errors(404)}}},
        "/api/v1/jobs": {"get": {
            "summary": "Recent jobs of this token, and the inventory's job history",
            "description": "Newest first. A page holds at most `limit` jobs; when more "
                           "follow, `next` is the cursor to pass as `before` for the next "
                           "page (and `links.next` the whole URL), else null.",
            "parameters": [{"name": "limit", "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
                           {"name": "before", "in": "query",
                            "description": "a page's `next` cursor: list the jobs after it",
                            "schema": {"type": "string", "maxLength": 300}}],
            "responses": {"200": _response("a page of jobs"), **_errors(400, 502)}}},
        "/api/v1/inventory": {"get": {
            "summary": "Stale nodes and when each was last seen (needs an inventory store)",
            "parameters": [{"name": "limit", "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 1000}}],
            "responses": {"200": _response("counts and stale nodes"), **_errors(400, 502)}}},
        "/api/v1/jobs/{job}": {"get": {
            "summary": "One job and, once done, its final document",
            "parameters": [_path_param("job")],
            "responses": {"200": _response("the job"), **_errors(404, 502)}}},
        "/api/v1/jobs/{job}/events": {"get": {
            "summary": "The job's events (discovered, reply, done) as Server-Sent Events",
            "parameters": [_path_param("job")],
            "responses": {"200": {"description": "event stream",
                                  "content": {"text/event-stream": {"schema":
                                                                    {"type": "string"}}}},
                          **_errors(404)}}},
    }


def _run_path(ddl: AgentDDL, action: str) -> dict[str, Any]:
    spec = ddl.actions[action]
    return {"post": {
        "summary": f"Run {ddl.name}.{action}: {spec.description}",
        "operationId": f"run_{ddl.name}_{action}",
        "tags": [ddl.name],
        "parameters": [{"name": "wait", "in": "query", "required": False,
                        "description": "true: wait for the job and answer its final document",
                        "schema": {"type": "boolean"}}],
        "requestBody": {"required": False, "content": {"application/json": {
            "schema": run_body_schema(input_schema(spec))}}},
        "responses": {"200": _response("the final document (wait=true)"),
                      "202": _response("the job id and its links"),
                      **_errors(400, 404, 413, 422, 504)},
    }}


def _plugin_path(route: Route) -> dict[str, Any]:
    doc = inspect.getdoc(route.endpoint) or route.path
    params = [_path_param(name) for name in route.param_convertors]
    return {method.lower(): {"summary": doc.splitlines()[0], "parameters": params,
                             # a plugin's handler answers the API's JSON errors too
                             "responses": {"200": _response("result"),
                                           **_errors(400, 403, 404, 413, 422, 502)}}
            for method in sorted((route.methods or {"GET"}) - {"HEAD"})}


def openapi_document(agents: Iterable[AgentDDL], plugin_routes: Iterable[BaseRoute]
                     ) -> dict[str, Any]:
    paths = _builtin_paths()
    for ddl in sorted(agents, key=lambda d: d.name):
        for action in sorted(ddl.actions):
            paths[f"/api/v1/run/{ddl.name}/{action}"] = _run_path(ddl, action)
    for route in plugin_routes:
        if isinstance(route, Route) and route.path.startswith("/api/"):
            paths.setdefault(route.path, _plugin_path(route))
    return {
        "openapi": "3.1.0",
        "info": {"title": "orch API", "version": orch.__version__,
                 "description": "Run orch actions on a fleet; each token signs as its own "
                                "client certificate, so node policies apply."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "object", "required": ["status", "message"], "properties": {
                    "status": {"type": "integer"}, "message": {"type": "string"}}}}}},
        },
        "security": [{"bearer": []}],
    }
