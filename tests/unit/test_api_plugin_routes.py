"""A plugin adds a route to ``orch api`` through the ``orch_api_routes`` hook, like a third
party would (orch-puppet's fleet summary, say): the route is served behind the same token
check, signs as the caller's certificate, and is listed in ``/openapi.json``."""

from __future__ import annotations

import types
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from orch.api.app import create_app
from orch.api.context import ApiContext, context_of, token_of
from orch.api.tokens import TokenStore
from orch.core.plugins import PluginRegistry
from orch.plugin import hookimpl

TOKEN = "unit-test-token-0123456789"


async def pong_count(request: Request) -> JSONResponse:
    """How many nodes answer a ping (an example plugin route)."""
    from starlette.concurrency import run_in_threadpool

    context, token = context_of(request), token_of(request)

    def ping() -> int:
        with context.client(token) as client:
            return len(client.ping().replies)

    return JSONResponse({"token": token.name, "nodes": await run_in_threadpool(ping)})


@hookimpl
def orch_api_routes() -> list[Any]:
    return [Route("/api/v1/example/pongs", pong_count, methods=["GET"])]


def test_a_plugin_route_is_served_authenticated_and_documented(orch_fleet: Any) -> None:
    fleet = orch_fleet({"web1": {"role": "web"}, "db1": {"role": "db"}})
    registry = PluginRegistry.from_entry_points()
    plugin = types.ModuleType("example_api_plugin")
    plugin.orch_api_routes = orch_api_routes  # type: ignore[attr-defined]
    assert registry.register(plugin, "example-api", "example"), registry.infos
    tokens = TokenStore.from_data({"tokens": [{
        "name": "unit", "token": TOKEN, "tls_cert": fleet.settings.tls_cert,
        "tls_key": fleet.settings.tls_key}]})
    app = create_app(ApiContext(fleet.settings, tokens, registry))
    with TestClient(app) as http:
        assert http.get("/api/v1/example/pongs").status_code == 401
        answer = http.get("/api/v1/example/pongs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.json() == {"token": "unit", "nodes": 2}
        documented = http.get("/openapi.json").json()["paths"]["/api/v1/example/pongs"]
        assert documented["get"]["summary"] == "How many nodes answer a ping (an example " \
                                               "plugin route)."
