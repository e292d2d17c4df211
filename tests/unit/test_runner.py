"""ActionRunner: a bounded pool where every job reports exactly one outcome, result or timeout."""

from __future__ import annotations

import functools
import operator
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from orch.core.runner import ActionRunner

WAIT = 5.0  # generous upper bound for anything that should happen "soon"


@pytest.fixture
def runner() -> Iterator[ActionRunner]:
    runner = ActionRunner(workers=4)
    yield runner
    runner.shutdown(wait=1.0)


class Outcomes:
    """Collects callbacks per job and lets a test wait for a number of them."""

    def __init__(self) -> None:
        self.results: list[tuple[Any, Any]] = []
        self.timeouts: list[Any] = []
        self._cond = threading.Condition()

    def on_result(self, key: Any) -> Callable[[Any], None]:
        def record(value: Any) -> None:
            with self._cond:
                self.results.append((key, value))
                self._cond.notify_all()
        return record

    def on_timeout(self, key: Any) -> Callable[[], None]:
        def record() -> None:
            with self._cond:
                self.timeouts.append(key)
                self._cond.notify_all()
        return record

    def wait_for(self, count: int, timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: len(self.results) + len(self.timeouts) >= count, timeout)


def soon(seconds: float) -> float:
    return time.monotonic() + seconds


def test_result_is_reported(runner: ActionRunner) -> None:
    outcomes = Outcomes()
    runner.submit(lambda: {"answer": 42}, soon(WAIT), outcomes.on_result("a"),
                  outcomes.on_timeout("a"))
    assert outcomes.wait_for(1)
    assert outcomes.results == [("a", {"answer": 42})]
    assert outcomes.timeouts == []


def test_result_callback_runs_off_the_caller_thread(runner: ActionRunner) -> None:
    threads: list[str] = []
    done = threading.Event()

    def on_result(_: Any) -> None:
        threads.append(threading.current_thread().name)
        done.set()

    runner.submit(lambda: None, soon(WAIT), on_result, lambda: None)
    assert done.wait(WAIT)
    assert threads[0].startswith("orch-action")


def test_slow_job_times_out_once_and_late_result_is_discarded() -> None:
    runner = ActionRunner(workers=1)
    try:
        outcomes = Outcomes()
        release = threading.Event()
        timeout_threads: list[str] = []

        def slow() -> str:
            release.wait(WAIT)
            return "late"

        fired_at: list[float] = []

        def on_timeout() -> None:
            fired_at.append(time.monotonic())
            timeout_threads.append(threading.current_thread().name)
            outcomes.on_timeout("slow")()

        deadline = soon(0.1)
        runner.submit(slow, deadline, outcomes.on_result("slow"), on_timeout)
        assert outcomes.wait_for(1)
        assert fired_at[0] >= deadline  # never before its deadline (ordering, not a timing)
        assert outcomes.timeouts == ["slow"]
        assert timeout_threads == ["orch-deadlines"]

        release.set()
        # One worker: once the next job has reported, the slow job's worker has finished.
        runner.submit(lambda: "next", soon(WAIT), outcomes.on_result("next"),
                      outcomes.on_timeout("next"))
        assert outcomes.wait_for(2)
        runner.shutdown(wait=WAIT)  # barrier: every submitted job has finished
        assert outcomes.results == [("next", "next")]
        assert outcomes.timeouts == ["slow"]
    finally:
        release.set()
        runner.shutdown(wait=1.0)


def test_timeouts_fire_in_deadline_order_not_submission_order(runner: ActionRunner) -> None:
    outcomes = Outcomes()
    release = threading.Event()
    try:
        runner.submit(lambda: release.wait(WAIT), soon(0.6), outcomes.on_result("late"),
                      outcomes.on_timeout("late"))
        runner.submit(lambda: release.wait(WAIT), soon(0.1), outcomes.on_result("early"),
                      outcomes.on_timeout("early"))
        assert outcomes.wait_for(2)
        assert outcomes.timeouts == ["early", "late"]
    finally:
        release.set()


def test_job_queued_behind_busy_workers_still_times_out_at_its_deadline() -> None:
    runner = ActionRunner(workers=1)
    release = threading.Event()
    try:
        outcomes = Outcomes()
        runner.submit(lambda: release.wait(WAIT), soon(WAIT), outcomes.on_result("busy"),
                      outcomes.on_timeout("busy"))
        runner.submit(lambda: "queued", soon(0.1), outcomes.on_result("queued"),
                      outcomes.on_timeout("queued"))
        assert outcomes.wait_for(1)
        assert outcomes.timeouts == ["queued"]
    finally:
        release.set()
        runner.shutdown(wait=1.0)


def test_many_jobs_all_complete(runner: ActionRunner) -> None:
    outcomes = Outcomes()
    count = 500
    for index in range(count):
        runner.submit(functools.partial(operator.mul, index, 2), soon(WAIT * 2),
                      outcomes.on_result(index), outcomes.on_timeout(index))
    assert outcomes.wait_for(count)
    assert sorted(outcomes.results) == [(i, i * 2) for i in range(count)]
    assert outcomes.timeouts == []


def test_every_job_reports_exactly_one_outcome_when_deadlines_race() -> None:
    runner = ActionRunner(workers=8)
    rng = random.Random(1234)
    outcomes = Outcomes()
    count = 300
    try:
        for index in range(count):
            work_time = rng.uniform(0, 0.004)
            deadline = soon(rng.uniform(-0.001, 0.004))
            runner.submit(functools.partial(time.sleep, work_time), deadline,
                          outcomes.on_result(index), outcomes.on_timeout(index))
        assert outcomes.wait_for(count)
        # Barrier: once shutdown returns every job has finished, so a second outcome for
        # any of them would show now.
        assert runner.shutdown(wait=WAIT) == 0
        per_job = Counter([key for key, _ in outcomes.results] + outcomes.timeouts)
        assert set(per_job) == set(range(count))
        assert set(per_job.values()) == {1}
    finally:
        runner.shutdown(wait=1.0)


def test_failing_timeout_handler_does_not_stop_the_watcher(runner: ActionRunner) -> None:
    outcomes = Outcomes()
    release = threading.Event()

    def broken() -> None:
        raise RuntimeError("handler bug")

    try:
        runner.submit(lambda: release.wait(WAIT), soon(0.05), outcomes.on_result("x"), broken)
        runner.submit(lambda: release.wait(WAIT), soon(0.15), outcomes.on_result("y"),
                      outcomes.on_timeout("y"))
        assert outcomes.wait_for(1)
        assert outcomes.timeouts == ["y"]
    finally:
        release.set()


def test_shutdown_stops_the_watcher() -> None:
    runner = ActionRunner(workers=2)
    watcher = runner._watcher
    assert watcher.is_alive()
    runner.shutdown(wait=2.0)
    assert not watcher.is_alive()


def test_shutdown_with_pending_deadlines_stops_the_watcher() -> None:
    runner = ActionRunner(workers=1)
    release = threading.Event()
    outcomes = Outcomes()
    runner.submit(lambda: release.wait(WAIT), soon(30), outcomes.on_result("a"),
                  outcomes.on_timeout("a"))
    try:
        runner.shutdown(wait=2.0)
        assert not runner._watcher.is_alive()
    finally:
        release.set()


def test_shutdown_waits_for_running_actions() -> None:
    """``shutdown(wait)`` is documented to wait up to ``wait`` seconds for running actions.

    ``orch server`` relies on it on SIGTERM: an action already running should get to send
    its reply before the transport is closed.
    """
    runner = ActionRunner(workers=1)
    outcomes = Outcomes()
    started = threading.Event()

    def work() -> str:
        started.set()
        time.sleep(0.3)
        return "finished"

    runner.submit(work, soon(WAIT), outcomes.on_result("a"), outcomes.on_timeout("a"))
    assert started.wait(WAIT)
    runner.shutdown(wait=3.0)
    assert outcomes.results == [("a", "finished")]


# --------------------------------------------------------------------- admission limit


def drained(runner: ActionRunner) -> bool:
    """Wait (bounded) until every admitted action's thread has returned."""
    deadline = time.monotonic() + WAIT
    while runner.admitted() and time.monotonic() < deadline:
        time.sleep(0.01)
    return runner.admitted() == 0


def test_limit_refuses_the_excess_and_frees_slots_as_actions_return() -> None:
    runner = ActionRunner(workers=1, limit=2)
    release = threading.Event()
    outcomes = Outcomes()
    try:
        for key in ("a", "b"):  # one running, one waiting for the worker: both admitted
            assert runner.submit(lambda: release.wait(WAIT), soon(WAIT),
                                 outcomes.on_result(key), outcomes.on_timeout(key))
        assert runner.admitted() == 2
        assert not runner.submit(lambda: 1, soon(WAIT), outcomes.on_result("c"),
                                 outcomes.on_timeout("c"))
        runner.limit = 3  # SIGHUP may raise it while running
        assert runner.submit(lambda: release.wait(WAIT), soon(WAIT),
                             outcomes.on_result("d"), outcomes.on_timeout("d"))
        release.set()
        assert outcomes.wait_for(3)
        assert sorted(key for key, _ in outcomes.results) == ["a", "b", "d"]
        assert drained(runner)  # the slot is freed once the callback has returned
    finally:
        release.set()
        runner.shutdown(wait=1.0)


def test_a_timed_out_action_holds_its_slot_until_its_thread_returns() -> None:
    runner = ActionRunner(workers=1, limit=1)
    release = threading.Event()
    outcomes = Outcomes()
    try:
        assert runner.submit(lambda: release.wait(WAIT), soon(0.01),
                             outcomes.on_result("slow"), outcomes.on_timeout("slow"))
        assert outcomes.wait_for(1)
        assert outcomes.timeouts == ["slow"]
        # The worker is still busy with it: admitting more would only queue behind it.
        assert not runner.submit(lambda: 1, soon(WAIT), outcomes.on_result("next"),
                                 outcomes.on_timeout("next"))
    finally:
        release.set()
        runner.shutdown(wait=1.0)


def test_shutdown_abandons_what_is_still_running_once() -> None:
    runner = ActionRunner(workers=1, limit=4)
    release = threading.Event()
    outcomes = Outcomes()
    abandoned: list[str] = []
    assert runner.submit(lambda: release.wait(WAIT), soon(WAIT), outcomes.on_result("held"),
                         outcomes.on_timeout("held"), on_abandon=lambda: abandoned.append("x"))
    assert runner.shutdown(wait=0.0) == 1
    assert abandoned == ["x"] and runner.closing
    assert not runner.submit(lambda: 1, soon(WAIT), outcomes.on_result("late"),
                             outcomes.on_timeout("late"))
    release.set()
    assert drained(runner)  # its thread returned (the barrier): its result was dropped
    assert outcomes.results == [] and outcomes.timeouts == []
