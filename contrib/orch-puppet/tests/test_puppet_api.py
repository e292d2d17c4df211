"""orch-puppet's ``orch api`` routes over simulated nodes (memory broker): the summary's
counts, and bad input answered with a JSON error saying what is wrong. runall's report is
tested end to end in the console's browser test (tests/integration/test_console.py), on
``orch demo --api``'s simulated Puppet fleet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from orch.core.client import Client
from simfleet import SimulatedFleet
from test_puppet_cli import small_fleet

pytest.importorskip("starlette")

from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from orch_puppet.api import routes


class WithClient:
    """What ``orch api`` does for plugin routes: ``scope["orch.client"]``, a client factory."""

    def __init__(self, app: ASGIApp, make: Any) -> None:
        self.app, self.make = app, make

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.make is not None:
            scope["orch.client"] = self.make
        await self.app(scope, receive, send)


def http(make: Any) -> TestClient:
    app = Starlette(routes=routes())
    app.add_middleware(WithClient, make=make)
    return TestClient(app)


@pytest.fixture
def api(sim: SimulatedFleet) -> Iterator[TestClient]:
    small_fleet(sim)
    with http(lambda: Client(sim.settings)) as client:
        yield client


def test_summary_counts_states_failures_and_stale_nodes(api: TestClient) -> None:
    document = api.get("/api/v1/puppet/summary", params={"stale": 3600}).json()
    assert document["states"] == {"enabled": 3, "disabled": 1, "applying": 0, "idle": 4,
                                  "stale": 2}
    assert document["failed_resources_total"] == 3 and document["failed_last_runs"] == 1
    assert document["failed_resources"] == {"web2": 3}
    assert document["stale"] == ["new1", "web2"]  # orch puppet summary --json's fields too
    assert any(a["output"] == "enabled" for a in document["aggregates"])


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("get", "/api/v1/puppet/summary?stale=abc", None, 400, "number of seconds"),
    ("get", "/api/v1/puppet/summary?stale=0", None, 400, "between 1"),
    ("post", "/api/v1/puppet/runall", {"concurrency": 0}, 422, "1 or more"),
    ("post", "/api/v1/puppet/runall", {"concurrency": "4"}, 422, "integer"),
    ("post", "/api/v1/puppet/runall", {"concurrency": 2, "max_time": 9999}, 422, "at most"),
    ("post", "/api/v1/puppet/runall", {"concurrency": 2, "other": 1}, 422, "the body must"),
    ("post", "/api/v1/puppet/runall", "[", 422, "not JSON"),
])
def test_bad_input_is_a_json_error(method: str, path: str, body: Any, status: int,
                                   message: str) -> None:
    with http(lambda: pytest.fail("no call may be made for bad input")) as client:
        if method == "get":
            response = client.get(path)
        elif isinstance(body, str):
            response = client.post(path, content=body)
        else:
            response = client.post(path, json=body)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


def test_without_a_caller_the_routes_refuse() -> None:
    with http(None) as client:
        assert client.get("/api/v1/puppet/summary").status_code == 401
        assert client.post("/api/v1/puppet/runall", json={"concurrency": 1}).status_code == 401
