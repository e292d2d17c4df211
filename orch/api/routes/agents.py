"""``/api/v1/agents``: the agents installed with the API, and each one's DDL.

The DDL served is the one the API validates arguments with, compiled to the same JSON
Schemas the client and the nodes apply, so a program can build a valid call from it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orch.api.context import context_of
from orch.api.errors import ApiError
from orch.ddl.compile import input_schema, output_schema
from orch.ddl.model import AgentDDL


def agent_document(ddl: AgentDDL) -> dict[str, Any]:
    return {
        "name": ddl.name, "description": ddl.description, "version": ddl.version,
        "author": ddl.author, "license": ddl.license, "url": ddl.url, "timeout": ddl.timeout,
        "actions": {
            name: {
                "description": action.description, "display": action.display,
                "input": input_schema(action), "output": output_schema(action),
                "defaults": {k: v.default for k, v in action.inputs.items()
                             if v.default is not None},
                "labels": {k: v.label for k, v in action.outputs.items()},
            }
            for name, action in sorted(ddl.actions.items())
        },
    }


async def list_agents(request: Request) -> JSONResponse:
    context = context_of(request)
    agents = context.registry.agents(context.settings)
    return JSONResponse({"agents": [
        {"name": name, "description": cls.ddl().description, "version": cls.ddl().version,
         "actions": sorted(cls.ddl().actions)}
        for name, cls in sorted(agents.items())]})


async def show_agent(request: Request) -> JSONResponse:
    context = context_of(request)
    name = request.path_params["agent"]
    cls = context.registry.agents(context.settings).get(name)
    if cls is None:
        raise ApiError(404, f"no agent {name!r} is installed with the API")
    return JSONResponse(agent_document(cls.ddl()))


routes = [
    Route("/api/v1/agents", list_agents, methods=["GET"]),
    Route("/api/v1/agents/{agent}", show_agent, methods=["GET"]),
]
