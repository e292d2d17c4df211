"""Calls running in the background, and their replies as a stream of events.

Why jobs: a call on 10,000 nodes takes seconds; an HTTP client should get an id at once,
watch replies arrive (Server-Sent Events) and fetch the final document later. A job runs the
ordinary :meth:`orch.core.client.Client.call` in a worker thread; its callbacks append events
(``discovered``, ``reply``, ``done``) to the job, and each listener (an SSE stream) is woken
through its own event loop — the worker thread never touches asyncio objects directly.

Jobs are kept in memory, the most recent :data:`KEEP_JOBS` of them; when an inventory store
is configured the routes add the store's job history (:mod:`orch.api.history`), which
survives a restart and holds the CLI's jobs too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from orch.core.client import CallResult
from orch.core.protocol import Reply

log = logging.getLogger(__name__)

#: Finished and running jobs kept for ``GET /api/v1/jobs``.
KEEP_JOBS = 200
#: Calls running at the same time; more wait in the executor's queue.
JOB_WORKERS = 8

#: What a job runs: given callbacks for the discovered list and each reply, the whole result.
JobBody = Callable[[Callable[[list[str]], None], Callable[[Reply, CallResult], None]],
                   dict[str, Any]]


def reply_event(reply: Reply, result: CallResult) -> dict[str, Any]:
    """One reply as the API shows it (the same fields as ``orch rpc --json``)."""
    return {
        "sender": reply.sender,
        "status": reply.statuscode.label,
        "statuscode": int(reply.statuscode),
        "statusmsg": reply.statusmsg,
        "data": dict(reply.data),
        "rtt_ms": round(result.rtt.get(reply.sender, 0.0) * 1000, 3),
    }


@dataclass
class Job:
    """One call: who asked for what, its events so far, and its final document when done."""

    id: str
    token: str
    agent: str
    action: str
    request: dict[str, Any]
    created: float = field(default_factory=time.time)
    state: str = "queued"  # queued, running, done, failed
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    document: dict[str, Any] | None = None
    error: str | None = None
    finished: float | None = None
    #: "api" (started by this process) or "history" (read from the inventory store).
    source: str = "api"
    #: Who made the call, as recorded (``api=TOKEN``, ``user=alice``).
    caller: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(
        default_factory=list, repr=False)
    done_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def summary(self) -> dict[str, Any]:
        replies = sum(1 for kind, _ in self.events if kind == "reply")
        return {"id": self.id, "token": self.token, "agent": self.agent,
                "action": self.action, "state": self.state, "created": self.created,
                "finished": self.finished, "replies": replies, "error": self.error,
                "request": self.request, "source": self.source,
                "caller": self.caller or f"api={self.token}"}

    # -- producing (worker thread) ----------------------------------------------------------

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            self.events.append((kind, data))
            listeners = list(self._listeners)
        for loop, event in listeners:
            with contextlib.suppress(RuntimeError):  # a closed loop: its listener is gone
                loop.call_soon_threadsafe(event.set)

    def finish(self, state: str, document: dict[str, Any] | None, error: str | None) -> None:
        self.document, self.error, self.finished = document, error, time.time()
        self.state = state
        self.emit("done", {"state": state, "error": error})
        self.done_event.set()

    # -- consuming (event loop) -------------------------------------------------------------

    async def stream(self, start: int = 0, heartbeat: float = 15.0
                     ) -> Any:
        """Yield ``(index, kind, data)`` from event ``start`` on, until ``done``.

        Waits at most ``heartbeat`` seconds at a time, yielding ``(index, "", {})`` so the
        caller can send a keep-alive and notice a client that went away.
        """
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._listeners.append(entry)
        try:
            index = start
            while True:
                event.clear()
                with self._lock:
                    fresh = self.events[index:]
                for kind, data in fresh:
                    yield index, kind, data
                    index += 1
                    if kind == "done":
                        return
                if not fresh:
                    try:
                        await asyncio.wait_for(event.wait(), heartbeat)
                    except TimeoutError:
                        yield index, "", {}
        finally:
            with self._lock:
                self._listeners.remove(entry)


class JobStore:
    """The recent jobs of one API process, and the threads that run them."""

    def __init__(self, keep: int = KEEP_JOBS, workers: int = JOB_WORKERS) -> None:
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="orch-api-job")

    def start(self, token: str, agent: str, action: str, request: dict[str, Any],
              body: JobBody) -> Job:
        job = Job(uuid.uuid4().hex, token, agent, action, request)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                self._jobs.popitem(last=False)
        self._executor.submit(self._run, job, body)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))

    def close(self) -> None:
        """Stop taking jobs; running calls end by their own timeouts."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _run(job: Job, body: JobBody) -> None:
        job.state = "running"

        def discovered(nodes: list[str]) -> None:
            job.emit("discovered", {"count": len(nodes), "nodes": nodes})

        def replied(reply: Reply, result: CallResult) -> None:
            job.emit("reply", reply_event(reply, result))

        try:
            document = body(discovered, replied)
        except Exception as exc:  # reported in the job; the worker must survive any call
            log.warning("job %s (%s.%s) failed: %s", job.id, job.agent, job.action, exc)
            job.finish("failed", None, str(exc) or type(exc).__name__)
            return
        job.finish("done", document, document.get("error"))
