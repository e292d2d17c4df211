"""The API's routes, one module per resource; plugins add theirs through ``orch_api_routes``."""

from __future__ import annotations

from starlette.routing import BaseRoute

from orch.api.routes import agents, inventory, jobs, nodes, run


def builtin_routes() -> list[BaseRoute]:
    return [*nodes.routes, *agents.routes, *run.routes, *jobs.routes,
            *inventory.routes]
