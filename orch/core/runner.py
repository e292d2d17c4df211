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
    __slots__ = ("done", "lock", "on_result", "on_timeout")

    def __init__(self, on_result: Callable[[R], None], on_timeout: Callable[[], None]) -> None:
        self.on_result, self.on_timeout = on_result, on_timeout
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
    """Runs callables on ``workers`` threads; exactly one of result or timeout is reported."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="orch-action")
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
    ) -> None:
        """Run ``work``; call ``on_result`` with its value, or ``on_timeout`` at ``deadline``.

        ``work`` must not raise (wrap it); the callbacks run on a worker or the watcher.
        """
        job: _Job[R] = _Job(on_result, on_timeout)
        with self._cond:
            entry: tuple[float, int, _Job[Any]] = (deadline, next(self._counter), job)
            heapq.heappush(self._deadlines, entry)
            if self._deadlines[0] is entry:  # the watcher sleeps until the earliest one
                self._cond.notify()
        future = self._pool.submit(self._run, work, job)
        self._running.add(future)
        future.add_done_callback(self._running.discard)

    @staticmethod
    def _run(work: Callable[[], R], job: _Job[R]) -> None:
        try:
            result = work()
        except Exception:  # work must not raise; if it does, say so instead of a silent hang
            log.exception("action failed outside the agent's own error handling")
            return
        if job.finish():
            job.on_result(result)

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

    def shutdown(self, wait: float = 5.0) -> None:
        """Stop accepting work; wait up to ``wait`` seconds for submitted actions to finish
        (their replies are still sent), then stop the deadline watcher."""
        started = time.monotonic()
        self._pool.shutdown(wait=False)
        wait_for(list(self._running), timeout=wait)
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._watcher.join(timeout=max(wait - (time.monotonic() - started), 0.1))


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
    ) -> None:
        try:
            result = work()
        except Exception:  # the same rule as ActionRunner: work must not raise
            log.exception("action failed outside the agent's own error handling")
            return
        on_result(result)

    def shutdown(self, wait: float = 5.0) -> None:
        """Nothing runs in the background."""
