"""Running actions: a bounded thread pool, with a deadline for every job.

Python threads cannot be killed, so a deadline here means the caller gets an ``aborted``
reply when the time is up and the late result is discarded; the thread finishes in the
background. Agents that may hang forever should be external agents (a child process the
runner can kill) — see the DDL issue.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
R = TypeVar("R")


class _Job(Generic[R]):
    __slots__ = ("done", "lock", "on_abandon", "on_result", "on_timeout")

    def __init__(self, on_result: Callable[[R], None], on_timeout: Callable[[], None],
                 on_abandon: Callable[[], None] | None = None) -> None:
        self.on_result, self.on_timeout = on_result, on_timeout
        self.on_abandon = on_abandon or on_timeout
        self.lock = threading.Lock()
        self.done = False

    def finish(self) -> bool:
        """Claim the job's single outcome; False if the other outcome already won."""
        with self.lock:
            if self.done:
                return False
            self.done = True
            return True


class ActionRunner:
    """Runs callables on ``workers`` threads; exactly one of result or timeout is reported.

    At most ``limit`` actions are admitted at once — running, or waiting for a worker —
    so a flood of requests cannot queue without bound behind slow actions: :meth:`submit`
    refuses the excess and the caller says "busy". An action whose deadline passed still
    counts until its thread returns, because it still holds a worker.
    """

    #: Most actions admitted at once (None: no limit).
    limit: int | None = None
    #: True once :meth:`shutdown` began: nothing new is admitted.
    closing = False

    def __init__(self, workers: int, limit: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="orch-action")
        self.limit = limit  # may be changed while running (SIGHUP)
        self._jobs: set[_Job[Any]] = set()
        self._deadlines: list[tuple[float, int, _Job[Any]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._running: set[Future[None]] = set()
        self._watcher = threading.Thread(target=self._watch, name="orch-deadlines", daemon=True)
        self._watcher.start()

    def submit(
        self,
        work: Callable[[], R],
        deadline: float,
        on_result: Callable[[R], None],
        on_timeout: Callable[[], None],
        on_abandon: Callable[[], None] | None = None,
    ) -> bool:
        """Run ``work``; call ``on_result`` with its value, or ``on_timeout`` at ``deadline``
        — or ``on_abandon`` (default: ``on_timeout``) if :meth:`shutdown` gives up on it.

        Returns False, and runs nothing, when ``limit`` actions are already admitted or the
        runner is shut down. ``work`` must not raise (wrap it); the callbacks run on a
        worker or the watcher.
        """
        job: _Job[R] = _Job(on_result, on_timeout, on_abandon)
        with self._cond:  # before the pool may run it, so _run always finds it here
            if self.limit is not None and len(self._jobs) >= self.limit:
                return False
            self._jobs.add(job)
        try:
            future = self._pool.submit(self._run, work, job)
        except RuntimeError:  # shut down: a stopping daemon takes no new work
            job.finish()
            with self._cond:
                self._jobs.discard(job)
            return False
        with self._cond:
            entry: tuple[float, int, _Job[Any]] = (deadline, next(self._counter), job)
            heapq.heappush(self._deadlines, entry)
            if self._deadlines[0] is entry:  # the watcher sleeps until the earliest one
                self._cond.notify()
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return True

    def _run(self, work: Callable[[], R], job: _Job[R]) -> None:
        try:
            try:
                result = work()
            except Exception:  # work must not raise; say so instead of a silent hang
                log.exception("action failed outside the agent's own error handling")
                return
            if job.finish():
                job.on_result(result)
        finally:
            with self._cond:
                self._jobs.discard(job)

    def admitted(self) -> int:
        """Actions admitted and not yet returned (running, or waiting for a worker)."""
        with self._cond:
            return len(self._jobs)

    def _watch(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                while self._deadlines and (self._deadlines[0][2].done
                                           or self._deadlines[0][0] <= now):
                    _, _, job = heapq.heappop(self._deadlines)
                    if job.finish():
                        self._cond.release()
                        try:
                            job.on_timeout()
                        except Exception:
                            log.exception("timeout handler failed")
                        finally:
                            self._cond.acquire()
                wait = self._deadlines[0][0] - now if self._deadlines else None
                self._cond.wait(timeout=wait if wait is None else min(wait, 1.0))

    def shutdown(self, wait: float = 5.0) -> int:
        """Stop accepting work; wait up to ``wait`` seconds for submitted actions to finish
        (their replies are still sent), then stop the deadline watcher.

        Actions still running then are abandoned: their late result is discarded and their
        ``on_abandon`` is called now, so each caller hears back. Returns how many were
        abandoned (their threads may still be running: Python cannot stop them).
        """
        started = time.monotonic()
        self.closing = True
        self._pool.shutdown(wait=False, cancel_futures=False)
        wait_for(list(self._running), timeout=wait)
        with self._cond:
            self._stopped = True
            self._cond.notify()
            left = [job for job in self._jobs if not job.done]
        abandoned = 0
        for job in left:
            if job.finish():
                abandoned += 1
                try:
                    job.on_abandon()
                except Exception:
                    log.exception("timeout handler failed")
        self._watcher.join(timeout=max(wait - (time.monotonic() - started), 0.1))
        return abandoned


class WorkQueue:
    """A few threads and a bounded backlog for short jobs that must not run on the caller.

    The server hands each request that passed the cheap checks here, so the thread that
    reads the broker goes back to reading at once. Unlike :class:`ActionRunner` there are no
    deadlines (a job bounds itself: see the filter budget) and a full backlog refuses new
    work instead of growing without limit — memory is bounded, and the caller decides what
    a refusal means.
    """

    def __init__(self, workers: int, backlog: int, name: str = "orch-work") -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(backlog)
        self._pending: set[Future[None]] = set()

    def submit(self, work: Callable[[], None]) -> bool:
        """Queue ``work`` (which must not raise); False when the backlog is full or closed."""
        if not self._slots.acquire(blocking=False):
            return False
        try:
            future = self._pool.submit(self._run, work)
        except RuntimeError:  # shut down
            self._slots.release()
            return False
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return True

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:
            log.exception("queued work failed outside its own error handling")
        finally:
            self._slots.release()

    def shutdown(self, wait: float = 5.0) -> None:
        """Refuse new work; give queued and running jobs up to ``wait`` seconds to finish."""
        self._pool.shutdown(wait=False)
        wait_for(list(self._pending), timeout=wait)


class InlineRunner(ActionRunner):
    """Runs each action at once in the calling thread: no pool, no deadline watcher.

    For simulated nodes only (:class:`orch.core.fleet.Fleet` with ``inline_actions``), which
    host nothing but agents that read the node's own view (``Agent.simulation_safe``) and
    finish in microseconds. Handing such an action to a thread costs more than the action
    itself — about a third of a simulated node's CPU per request — and a deadline can never
    fire before the action returns, so ``on_timeout`` is never called.
    """

    def __init__(self) -> None:  # no pool and no watcher thread: nothing to set up
        pass

    def submit(
        self,
        work: Callable[[], R],
        deadline: float,
        on_result: Callable[[R], None],
        on_timeout: Callable[[], None],
        on_abandon: Callable[[], None] | None = None,
    ) -> bool:
        try:
            result = work()
        except Exception:  # the same rule as ActionRunner: work must not raise
            log.exception("action failed outside the agent's own error handling")
            return True
        on_result(result)
        return True

    def admitted(self) -> int:
        """Nothing is ever waiting: each action finished before :meth:`submit` returned."""
        return 0

    def shutdown(self, wait: float = 5.0) -> int:
        """Nothing runs in the background."""
        return 0
