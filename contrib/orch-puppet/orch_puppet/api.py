"""orch-puppet's routes for ``orch api``: the fleet's Puppet health, and runall.

``GET /api/v1/puppet/summary`` and ``POST /api/v1/puppet/runall``.

Added through ``orch_api_routes``, so it is imported only when the API runs (Starlette is
imported here, never by ``orch puppet``). The numbers are ``orch puppet summary``'s —
:class:`~orch_puppet.summary.FleetSummary` over the ``status`` and ``last_run_summary``
replies — plus the ``status`` DDL's aggregate summaries, computed by orch's own
``summarize``. The call signs as the caller's API token (``request.scope["orch.client"]``),
so the nodes' policies apply to the application exactly as to a person.

``runall`` is :class:`~orch_puppet.runall.RunAll`, the scheduler of ``orch puppet runall``:
at most ``concurrency`` runs in flight, a new one started as one ends. It answers when
every node is done, so it is bounded by ``max_time`` (at most :data:`RUNALL_MAX_TIME`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from orch.plugin import Client, OrchError

from orch_puppet.ddlsummary import ddl_summaries
from orch_puppet.runall import OrchPuppetFleet, RunAll
from orch_puppet.summary import FleetSummary

AGENT = "puppet"
#: Default and bounds of ``?stale=SECONDS`` (a node whose last run is older is stale).
STALE_DEFAULT, STALE_MAX = 3600.0, 365 * 86400.0
#: Reply timeout of the two calls (seconds): both actions only read local files.
TIMEOUT = 10.0
#: The longest a runall request may run, seconds (the HTTP request waits for it).
RUNALL_MAX_TIME = 600.0


def fleet_summary(client: Client, stale_after: float) -> dict[str, Any]:
    """The summary document: the console's counts first, then ``orch puppet summary --json``."""
    statuses = client.call(AGENT, "status", timeout=TIMEOUT)
    nodes = sorted(statuses.replies)
    summaries = (client.call(AGENT, "last_run_summary", nodes=nodes, timeout=TIMEOUT)
                 if nodes else None)
    ok_status: Mapping[str, Mapping[str, Any]] = {
        n: r.data for n, r in statuses.replies.items() if r.ok}
    ok_summaries: Mapping[str, Mapping[str, Any]] = {
        n: r.data for n, r in (summaries.replies if summaries else {}).items() if r.ok}
    fleet = FleetSummary.of(ok_status, ok_summaries, stale_after)
    counts = fleet.counts
    problems = sorted(set(statuses.failed + statuses.missing
                          + (summaries.failed + summaries.missing if summaries else [])))
    return {
        "states": {"enabled": counts.enabled, "disabled": counts.disabled,
                   "applying": counts.applying, "idle": counts.total - counts.applying,
                   "stale": len(fleet.stale)},
        "failed_last_runs": len(fleet.failed_runs),
        "failed_resources_total": sum(fleet.failed.values()),
        "aggregates": [s.to_json() for s in ddl_summaries(client, AGENT, "status", statuses)],
        **fleet.to_json(),
        "unreachable_or_failed": problems,
        "error": statuses.error or (summaries.error if summaries else None),
    }


def run_all(client: Client, concurrency: int, max_time: float) -> dict[str, Any]:
    """One run on every node hosting the agent, ``concurrency`` at a time (the report)."""
    nodes = list(client.discover({}, AGENT))
    report = RunAll(OrchPuppetFleet(client), nodes, concurrency, max_time=max_time).run()
    return {**report.to_json(), "ok": report.ok}


def _runall_body(body: Any) -> tuple[int, float] | str:
    """``(concurrency, max_time)`` from a request body, or what is wrong with it."""
    if not isinstance(body, dict) or set(body) - {"concurrency", "max_time"}:
        return "the body must be {\"concurrency\": N, \"max_time\": SECONDS}"
    concurrency = body.get("concurrency")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        return "'concurrency' must be an integer of 1 or more"
    max_time = body.get("max_time", RUNALL_MAX_TIME)
    if (isinstance(max_time, bool) or not isinstance(max_time, int | float)
            or not 0 < max_time <= RUNALL_MAX_TIME):
        return f"'max_time' must be a number of seconds above 0, at most {RUNALL_MAX_TIME:g}"
    return concurrency, float(max_time)


def routes() -> list[Any]:
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"status": status, "message": message}},
                            status_code=status)

    async def summary(request: Request) -> JSONResponse:
        """The fleet's Puppet health: states, stale nodes, failed runs and resources."""
        raw = request.query_params.get("stale", str(STALE_DEFAULT))
        try:
            stale_after = float(raw)
        except ValueError:
            return error(400, "query parameter 'stale' must be a number of seconds")
        if not 1 <= stale_after <= STALE_MAX:
            return error(400, f"query parameter 'stale' must be between 1 and {STALE_MAX:g}")
        make_client = request.scope.get("orch.client")
        if make_client is None:
            return error(401, "a valid bearer token is required")

        def work() -> dict[str, Any]:
            with make_client() as client:
                return fleet_summary(client, stale_after)

        try:
            return JSONResponse(await run_in_threadpool(work))
        except OrchError as exc:
            return error(502, f"puppet summary: {exc}")

    async def runall(request: Request) -> JSONResponse:
        """Run Puppet on every node, at most ``concurrency`` at a time; answers when done."""
        make_client = request.scope.get("orch.client")
        if make_client is None:
            return error(401, "a valid bearer token is required")
        raw = await request.body()
        if len(raw) > 4096:
            return error(413, "request body too large")
        try:
            checked = _runall_body(json.loads(raw or b"null"))
        except ValueError:
            checked = "the body is not JSON"
        if isinstance(checked, str):
            return error(422, checked)
        concurrency, max_time = checked

        def work() -> dict[str, Any]:
            with make_client() as client:
                return run_all(client, concurrency, max_time)

        try:
            return JSONResponse(await run_in_threadpool(work))
        except OrchError as exc:
            return error(502, f"puppet runall: {exc}")

    return [Route("/api/v1/puppet/summary", summary, methods=["GET"]),
            Route("/api/v1/puppet/runall", runall, methods=["POST"])]
