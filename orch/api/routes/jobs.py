"""``/api/v1/jobs``: recent jobs, one job's document, and its replies as Server-Sent Events.

Each application sees its own jobs only (the token that started them). The event stream
replays from the start (or from ``Last-Event-ID``), so a listener that connects after the
job began still sees every reply.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from orch.api.context import context_of, token_of
from orch.api.errors import ApiError
from orch.api.jobs import Job
from orch.api.routes.run import job_document


def _job(request: Request) -> Job:
    context, token = context_of(request), token_of(request)
    job = context.jobs.get(request.path_params["job"])
    if job is None or job.token != token.name:
        raise ApiError(404, f"no job {request.path_params['job']!r}")
    return job


async def list_jobs(request: Request) -> JSONResponse:
    context, token = context_of(request), token_of(request)
    return JSONResponse({"jobs": [job.summary() for job in context.jobs.recent()
                                  if job.token == token.name]})


async def show_job(request: Request) -> JSONResponse:
    job = _job(request)
    document = job_document(job)
    if job.document is None:  # still running: the replies so far
        document["replies_so_far"] = [data for kind, data in list(job.events)
                                      if kind == "reply"]
    return JSONResponse(document)


async def job_events(request: Request) -> StreamingResponse:
    job = _job(request)
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
