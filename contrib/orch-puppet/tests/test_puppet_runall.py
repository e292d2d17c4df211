"""The runall scheduler against a simulated fleet on a fake clock: no processes, no sleeps.

The fake fleet keeps the truth (which node is really applying at every instant of fake
time) independently of what the scheduler believes, so "never more than N" is checked
against reality, not against the scheduler's own bookkeeping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orch_puppet.runall import NodeStatus, RunAll, StartResult


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.listeners: list[FakeFleet] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        # Advance in small steps so that the fleet can record every overlap exactly.
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + 0.05)
            for fleet in self.listeners:
                fleet.tick(self.now)


@dataclass
class FakeNode:
    duration: float = 3.0
    enabled: bool = True
    disable_message: str = ""
    #: Fake-time interval of the current run: [start, end).
    run: tuple[float, float] | None = None
    lastrun: int = 0
    answers: bool = True
    answers_runonce: bool = True
    #: A run that never starts (puppet died before taking the lock).
    dud: bool = False
    runs_started: int = 0
    #: Its runs fail (no catalog): what status says after one ended.
    fails: str = ""
    installed: bool = True


@dataclass
class FakeFleet:
    clock: FakeClock
    nodes: dict[str, FakeNode]
    #: (time, sorted names applying) whenever the set changes.
    history: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    status_calls: int = 0

    def __post_init__(self) -> None:
        self.clock.listeners.append(self)
        self.tick(self.clock.now)

    def applying(self, now: float) -> tuple[str, ...]:
        return tuple(sorted(n for n, node in self.nodes.items()
                            if node.run is not None and node.run[0] <= now < node.run[1]))

    def tick(self, now: float) -> None:
        for node in self.nodes.values():
            if node.run is not None and now >= node.run[1]:
                node.lastrun = int(node.run[1]) + 1  # whole seconds, after initiated_at
                node.run = None
        current = self.applying(now)
        if not self.history or self.history[-1][1] != current:
            self.history.append((now, current))

    @property
    def max_concurrent(self) -> int:
        return max((len(names) for _, names in self.history), default=0)

    # -- the PuppetFleet protocol ------------------------------------------------------------

    def status(self, nodes: Sequence[str]) -> Mapping[str, NodeStatus]:
        self.status_calls += 1
        now = self.clock.now
        return {name: NodeStatus(applying=name in self.applying(now),
                                 enabled=self.nodes[name].enabled,
                                 lastrun=self.nodes[name].lastrun,
                                 disable_message=self.nodes[name].disable_message,
                                 installed=self.nodes[name].installed,
                                 last_run_failure=self.nodes[name].fails
                                 if self.nodes[name].lastrun else "")
                for name in nodes if self.nodes[name].answers}

    def runonce(self, nodes: Sequence[str]) -> Mapping[str, StartResult]:
        now = self.clock.now
        out = {}
        for name in nodes:
            node = self.nodes[name]
            if not node.answers:
                continue
            if not node.enabled:
                out[name] = StartResult(False, f"Puppet is disabled ({node.disable_message})")
                continue
            if name in self.applying(now):
                out[name] = StartResult(False, "Puppet is already applying a catalog")
                continue
            node.runs_started += 1
            if not node.dud:
                node.run = (now, now + node.duration)
            if node.answers_runonce:
                out[name] = StartResult(True, "started", int(now))
        self.tick(now)
        return out


def fleet_of(clock: FakeClock, **nodes: FakeNode) -> FakeFleet:
    return FakeFleet(clock, dict(nodes))


def run(fleet: FakeFleet, concurrency: int, **kwargs: float) -> RunAll:
    scheduler = RunAll(fleet, sorted(fleet.nodes), concurrency, clock=fleet.clock,
                       poll_interval=kwargs.pop("poll_interval", 0.5), **kwargs)
    scheduler.run()
    return scheduler


def test_never_more_than_n_and_every_node_runs() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, **{f"n{i}": FakeNode(duration=2 + i % 3) for i in range(9)})
    report = run(fleet, 3).report
    assert fleet.max_concurrent == 3  # the limit was used, and never exceeded
    assert report.tally()["finished"] == 9 and report.ok
    assert all(node.runs_started == 1 for node in fleet.nodes.values())
    assert report.max_applying <= 3 and report.max_in_flight <= 3
    assert report.max_started == 3


def test_a_new_run_starts_in_the_poll_that_sees_one_finish() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode(duration=2), b=FakeNode(duration=2))
    report = run(fleet, 1, poll_interval=0.5).report
    finished_a = next(e for e in report.events if e.kind == "finished" and e.node == "a")
    started_b = next(e for e in report.events if e.kind == "started" and e.node == "b")
    assert started_b.at == finished_a.at


def test_concurrency_one_serialises() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, **{f"n{i}": FakeNode(duration=1) for i in range(4)})
    run(fleet, 1)
    assert fleet.max_concurrent == 1
    starts = [start for _, names in fleet.history for start in names]
    assert sorted(set(starts)) == ["n0", "n1", "n2", "n3"]


def test_disabled_nodes_are_skipped_and_said_so() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode(), b=FakeNode(enabled=False,
                                                    disable_message="maintenance"))
    report = run(fleet, 2).report
    assert report.outcomes == {"a": "finished", "b": "skipped_disabled"}
    skipped = next(e for e in report.events if e.node == "b")
    assert "maintenance" in skipped.message
    assert fleet.nodes["b"].runs_started == 0
    assert report.ok  # skipping a disabled node is not a failure


def test_a_daemon_run_counts_against_the_limit() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode(), b=FakeNode(), c=FakeNode())
    fleet.nodes["a"].run = (clock.now, clock.now + 5)  # its own daemon is applying
    fleet.tick(clock.now)
    report = run(fleet, 2).report
    assert fleet.max_concurrent == 2
    first = report.timeline[0]
    assert first.applying == ("a",) and len(first.in_flight) == 2  # only one slot was free
    # a still gets a run of its own after its daemon's run.
    assert fleet.nodes["a"].runs_started == 1 and report.outcomes["a"] == "finished"


class DaemonFleet(FakeFleet):
    """Node ``d``'s own daemon starts a scheduled run at fake time 1001.0, whatever runall
    is doing (as a simulated node's daemon does, by the wall clock)."""

    def tick(self, now: float) -> None:
        node = self.nodes.get("d")
        if node is not None and node.run is None and not node.lastrun and now >= 1001.0:
            node.run = (now, now + 3)
        super().tick(now)


def test_a_daemon_run_starting_when_every_slot_is_taken() -> None:
    """runall cannot stop a node's daemon: the fleet has 3 applying at once, runall's own
    runs never exceed 2, and the report tells the two apart."""
    clock = FakeClock()
    fleet = DaemonFleet(clock, {name: FakeNode() for name in "abcd"})
    report = run(fleet, 2).report
    assert fleet.max_concurrent == 3  # the daemon's run on top of runall's two
    assert report.max_in_flight == 3 and report.max_started == 2
    assert all(len(sample.started) <= 2 for sample in report.timeline)
    assert report.to_json()["max_started"] == 2
    assert report.tally()["finished"] == 4


def test_a_node_that_disappears_is_reported_not_waited_for() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode(duration=1000), b=FakeNode(duration=1))
    scheduler = RunAll(fleet, ["a", "b"], 2, clock=clock, poll_interval=1, lost_after=10)
    original = fleet.runonce

    def vanish_after_start(nodes: Sequence[str]) -> Mapping[str, StartResult]:
        result = original(nodes)
        fleet.nodes["a"].answers = False  # a goes silent mid-run
        return result

    fleet.runonce = vanish_after_start  # type: ignore[method-assign]
    report = scheduler.run()
    assert report.outcomes == {"a": "lost", "b": "finished"}
    assert report.elapsed < 15  # lost after ~10 s, not after its 1000 s run
    lost = next(e for e in report.events if e.kind == "lost")
    assert "never seen" in lost.message


def test_a_silent_queued_node_is_lost_and_the_rest_proceed() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode(answers=False), b=FakeNode(duration=1))
    report = run(fleet, 1, lost_after=5).report
    assert report.outcomes == {"a": "lost", "b": "finished"}
    assert not report.ok


def test_no_reply_to_runonce_counts_as_in_flight() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode(duration=3, answers_runonce=False), b=FakeNode())
    report = run(fleet, 1).report
    assert fleet.max_concurrent == 1  # b waited for a although a never confirmed
    assert report.outcomes == {"a": "finished", "b": "finished"}


def test_a_run_that_never_shows_up_is_given_up() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode(dud=True), b=FakeNode(duration=1))
    report = run(fleet, 1, start_timeout=20).report
    assert report.outcomes == {"a": "unconfirmed", "b": "finished"}
    assert report.elapsed < 30


def test_already_applying_reply_requeues() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode(duration=2))
    original = fleet.status
    calls = {"n": 0}

    def stale_status(nodes: Sequence[str]) -> Mapping[str, NodeStatus]:
        # The first poll misses a daemon run that starts right after it.
        calls["n"] += 1
        result = original(nodes)
        if calls["n"] == 1:
            fleet.nodes["a"].run = (clock.now, clock.now + 2)
            fleet.tick(clock.now)
        return result

    fleet.status = stale_status  # type: ignore[method-assign]
    report = run(fleet, 1).report
    assert [e.kind for e in report.events if e.node == "a"][:1] == ["requeued"]
    assert report.outcomes == {"a": "finished"} and fleet.nodes["a"].runs_started == 1


def test_max_time_bounds_everything() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode(duration=500), b=FakeNode(duration=500))
    report = run(fleet, 1, max_time=30).report
    assert report.outcomes == {"a": "timeout", "b": "timeout"}
    assert report.elapsed <= 31


def test_status_failures_fail_the_node() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode())
    fleet.status = lambda nodes: {"a": NodeStatus(False, True, error="puppet is not "  # type: ignore[method-assign]
                                                  "installed")}
    report = run(fleet, 1).report
    assert report.outcomes == {"a": "failed"}
    assert "not installed" in report.events[0].message


def test_json_document() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode(duration=1), b=FakeNode(enabled=False))
    document = run(fleet, 2).report.to_json()
    assert document["tally"]["finished"] == 1 and document["tally"]["skipped_disabled"] == 1
    assert document["nodes"]["skipped_disabled"] == ["b"]
    assert document["timeline"] and {"at", "applying", "in_flight"} <= set(
        document["timeline"][0])


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RunAll(fleet_of(FakeClock()), [], 0)


@settings(max_examples=60, deadline=None)
@given(durations=st.lists(st.floats(min_value=0.2, max_value=20), min_size=1, max_size=25),
       concurrency=st.integers(min_value=1, max_value=6),
       poll=st.sampled_from([0.25, 0.5, 1.0, 2.0]),
       daemon_busy=st.lists(st.booleans(), min_size=25, max_size=25))
def test_invariants_hold_for_any_fleet(durations: list[float], concurrency: int, poll: float,
                                       daemon_busy: list[bool]) -> None:
    """Whatever the run times, poll interval and daemons: ≤ N at once, each node once."""
    clock = FakeClock()
    nodes = {f"n{i:02d}": FakeNode(duration=d) for i, d in enumerate(durations)}
    fleet = FakeFleet(clock, nodes)
    busy = [name for name, flag in zip(sorted(nodes), daemon_busy, strict=False) if flag]
    for name in busy[:concurrency]:  # daemons may only use slots that exist
        nodes[name].run = (clock.now, clock.now + 1.5)
    fleet.tick(clock.now)
    report = run(fleet, concurrency, poll_interval=poll).report
    assert fleet.max_concurrent <= concurrency
    assert report.tally()["finished"] == len(nodes)
    assert all(e.done + e.in_flight + e.queued == e.total == len(nodes)
               for e in report.events)
    assert all(node.runs_started == 1 for node in nodes.values())
    # Scheduling was not needlessly slow: it never sat with a free slot and a runnable node
    # for more than one poll interval (+ the run itself).
    assert report.elapsed <= sum(durations) + (len(durations) + 3) * (poll + 0.1) + 2


def test_a_failed_run_is_not_finished() -> None:
    """Issue 8, item 14: a run that got no catalog ends, and fails runall."""
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode(), b=FakeNode(fails="no catalog"))
    report = run(fleet, 2).report
    assert report.outcomes == {"a": "finished", "b": "run_failed"}
    failed = next(e for e in report.events if e.node == "b" and e.kind == "run_failed")
    assert failed.message == "run FAILED: no catalog"
    assert not report.ok and report.tally()["run_failed"] == 1


def test_a_node_without_puppet_fails_without_a_run() -> None:
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode(), b=FakeNode(installed=False))
    report = run(fleet, 1).report
    assert report.outcomes == {"a": "finished", "b": "failed"}
    assert fleet.nodes["b"].runs_started == 0 and not report.ok


def test_a_disabled_node_is_skipped_at_once() -> None:
    """Not when its turn comes: in the first poll, even at the end of a long queue."""
    clock = FakeClock()
    nodes = {f"n{i}": FakeNode(duration=5) for i in range(4)}
    nodes["z"] = FakeNode(enabled=False, disable_message="db upgrade")
    report = run(fleet_of(clock, **nodes), 1).report
    skipped = next(e for e in report.events if e.node == "z")
    assert skipped.kind == "skipped_disabled" and skipped.at == 0
    assert (skipped.done, skipped.in_flight, skipped.queued, skipped.total) == (1, 0, 4, 5)


def test_progress_counts_add_up() -> None:
    clock = FakeClock()
    nodes = {f"n{i}": FakeNode(duration=1 + i) for i in range(5)}
    nodes["off"] = FakeNode(enabled=False)
    report = run(fleet_of(clock, **nodes), 2).report
    assert all(e.done + e.in_flight + e.queued == e.total == 6 for e in report.events)
    assert report.events[-1].done == 6
    started = [e for e in report.events if e.kind == "started"]
    assert started[0].counts() == "1 done, 1 in flight, 4 queued of 6"


def test_already_started_runs_are_only_watched() -> None:
    """runonce --wait: the runs were started by runonce; RunAll only waits for them."""
    clock = FakeClock()
    fleet = fleet_of(clock, a=FakeNode(duration=2), b=FakeNode(duration=3, fails="no catalog"))
    for node in fleet.nodes.values():
        node.run = (clock.now, clock.now + node.duration)
    fleet.tick(clock.now)
    scheduler = RunAll(fleet, [], 2, clock=clock, poll_interval=0.5,
                       started={"a": int(clock.now), "b": int(clock.now)})
    report = scheduler.run()
    assert report.outcomes == {"a": "finished", "b": "run_failed"}
    assert all(node.runs_started == 0 for node in fleet.nodes.values())
