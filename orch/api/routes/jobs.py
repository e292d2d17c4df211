"""``/api/v1/jobs``: recent jobs, one job's document, and its replies as Server-Sent Events.

Two sources combine: the jobs this API process started (in memory, the latest 200), and,
when an inventory store is configured, the store's job history — the CLI's jobs and the
API's own, surviving a restart. The list is paged by a cursor (``next``, passed back as
``before``), newest first. Each application sees the jobs it started (its token) and
the jobs people and programs made outside the API; never another token's. A job in both
sources is listed once, from memory (it has live events). The event stream replays from the
start (or from ``Last-Event-ID``), so a listener that connects after the job began still
sees every reply; a history job's stream is its recorded replies and ``done``.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from orch.api.context import context_of, int_param, token_of
from orch.api.errors import ApiError
from orch.api.history import HISTORY_LIMIT, history_job, visible
from orch.api.jobs import Job
from orch.api.routes.run import job_document
from orch.core.inventory import InventoryStore


async def _job(request: Request) -> Job:
    context, token = context_of(request), token_of(request)
    job_id = request.path_params["job"]
    job = context.jobs.get(job_id)
    if job is not None and job.token == token.name:
        return job
    inventory = context.inventory
    if job is None and inventory is not None and 0 < len(job_id) <= 255:
        def read(store: InventoryStore) -> Job | None:
            record = store.job(job_id)
            if record is None or record.request_id != job_id:  # no prefixes here
                return None
            return history_job(record) if visible(record, token.name) else None

        found = await run_in_threadpool(inventory.read, read)
        if found is not None:
            return found
    raise ApiError(404, f"no job {job_id!r}")


def _cursor(request: Request) -> tuple[float, str] | None:
    """``?before=CREATED:ID`` (a page's ``next``): the job the page starts after."""
    raw = request.query_params.get("before")
    if raw is None:
        return None
    created, _, job_id = raw.partition(":")
    try:
        when = float(created)
    except ValueError:
        when = math.nan
    if not math.isfinite(when) or not job_id or len(job_id) > 255:
        raise ApiError(400, "query parameter 'before' must be a page's 'next' cursor")
    return when, job_id


def _key(summary: dict[str, Any]) -> tuple[float, str]:
    return float(summary["created"]), str(summary["id"])


async def list_jobs(request: Request) -> JSONResponse:
    """A page of jobs, newest first: ``limit`` of them after the cursor ``before``.

    Why a cursor and not the nodes list's offset: jobs arrive at the head of the list while
    someone pages through it, so an offset would shift under them (a job shown twice, or
    never); the cursor — the last job's ``created`` and id — does not move."""
    context, token = context_of(request), token_of(request)
    limit = int_param(request, "limit", HISTORY_LIMIT, 1, HISTORY_LIMIT)
    before = _cursor(request)
    mine = [job for job in context.jobs.recent() if job.token == token.name]
    summaries: list[dict[str, Any]] = [
        summary for summary in (job.summary() for job in mine)
        if before is None or _key(summary) < before]
    inventory = context.inventory
    if inventory is not None:
        known = {job.id for job in mine} | {
            str(job.document.get("request_id")) for job in mine if job.document}
        # enough rows that the page is full after dropping the jobs listed from memory
        wanted = limit + len(known) + 1
        records = await run_in_threadpool(
            inventory.read, lambda store: store.jobs(wanted, before=before))
        summaries += [history_job(record).summary() for record in records
                      if visible(record, token.name) and record.request_id not in known]
    summaries.sort(key=_key, reverse=True)
    page = summaries[:limit]
    more = len(summaries) > limit
    cursor = f"{page[-1]['created']!r}:{page[-1]['id']}" if more and page else None
    return JSONResponse({
        "jobs": page, "history": inventory is not None, "limit": limit, "next": cursor,
        "links": {"next": None if cursor is None
                  else f"/api/v1/jobs?{urlencode({'limit': limit, 'before': cursor})}"}})


async def show_job(request: Request) -> JSONResponse:
    job = await _job(request)
    document = job_document(job)
    if job.document is None:  # still running: the replies so far
        document["replies_so_far"] = [data for kind, data in list(job.events)
                                      if kind == "reply"]
    return JSONResponse(document)


async def job_events(request: Request) -> StreamingResponse:
    job = await _job(request)
    last = request.headers.get("last-event-id", "")
    start = int(last) + 1 if last.isdigit() else 0

    async def events() -> AsyncIterator[str]:
        async for index, kind, data in job.stream(start):
            if not kind:
                yield ": keep-alive\n\n"
                continue
            yield f"id: {index}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


routes = [
    Route("/api/v1/jobs", list_jobs, methods=["GET"]),
    Route("/api/v1/jobs/{job}", show_job, methods=["GET"]),
    Route("/api/v1/jobs/{job}/events", job_events, methods=["GET"]),
]
