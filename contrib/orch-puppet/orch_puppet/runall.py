"""``orch puppet runall N``: run Puppet on every node, never more than N at once.

The scheduler is a library class, independent of orch's client, the clock and the output,
so that its promises are tested with a fake fleet and a fake clock:

* a run is started only into a free slot: at most ``concurrency`` runs in flight across
  the fleet — a run counts from the moment we start it until a status poll shows it
  finished, and any node the poll shows applying (its own daemon's run included) counts
  too. The runs runall started never exceed ``concurrency`` (``max_started``); a node's
  own daemon may still start a scheduled run while every slot is taken, which runall
  cannot prevent, so the fleet may briefly have more applying (``max_in_flight``);
* a new run starts in the same poll that sees one finish;
* a disabled node is skipped, and said so; a node that is applying on its own stays queued
  (it is counted as in flight) and gets its own run afterwards;
* a node that stops answering is reported lost after ``lost_after`` seconds and never
  waited for again; a run that never shows up (no applying, no newer ``lastrun``) is given
  up after ``start_timeout``; everything ends by ``max_time`` if one is set.

A run is finished when the node is not applying and either we saw it applying or its
``lastrun`` is newer than the ``initiated_at`` its runonce reply gave (both are node clock
times, so client/node clock skew does not matter).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

QUEUED, RUNNING, DONE = "queued", "running", "done"

#: Outcomes of a node, in the order the tally lists them. ``run_failed``: the run ended
#: but failed (no catalog, failed resources); ``failed``: the node could not get a run.
OUTCOMES = ("finished", "skipped_disabled", "run_failed", "failed", "lost", "unconfirmed",
            "timeout")


@dataclass(frozen=True)
class NodeStatus:
    """What the scheduler needs from one ``puppet status`` reply."""

    applying: bool
    enabled: bool
    lastrun: int = 0
    disable_message: str = ""
    #: Set when the node answered but its status action failed.
    error: str | None = None
    installed: bool = True
    #: Why the last run failed ("" when it did not, or never ran).
    last_run_failure: str = ""

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> NodeStatus:
        lastrun = data.get("lastrun")
        failure = str(data.get("last_run_failure") or "")
        if not failure and data.get("last_run_status") == "failed":
            failure = "the run failed"
        return cls(applying=bool(data.get("applying")),
                   enabled=bool(data.get("enabled", True)),
                   lastrun=int(lastrun) if isinstance(lastrun, int | float) else 0,
                   disable_message=str(data.get("disable_message") or ""),
                   installed=data.get("installed", True) is not False,
                   last_run_failure=failure)


@dataclass(frozen=True)
class StartResult:
    """What one ``puppet runonce`` reply said."""

    ok: bool
    message: str = ""
    initiated_at: int | None = None


class PuppetFleet(Protocol):
    """The two calls the scheduler makes; nodes that did not answer are left out."""

    def status(self, nodes: Sequence[str]) -> Mapping[str, NodeStatus]:
        ...

    def runonce(self, nodes: Sequence[str]) -> Mapping[str, StartResult]:
        ...


class Clock(Protocol):
    def monotonic(self) -> float:
        ...

    def sleep(self, seconds: float) -> None:
        ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class Event:
    """Something happened to a node (``kind`` is an outcome, ``started`` or ``requeued``).

    The counts are taken after the event and always add up: ``done + in_flight + queued
    == total`` (in flight: runs started and not yet seen to end; queued: everything else
    still to do, nodes applying on their own included)."""

    at: float
    kind: str
    node: str
    message: str
    in_flight: int
    queued: int
    done: int = 0
    total: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"at": round(self.at, 3), "kind": self.kind, "node": self.node,
                "message": self.message, "in_flight": self.in_flight, "queued": self.queued,
                "done": self.done, "total": self.total}

    def counts(self) -> str:
        return (f"{self.done} done, {self.in_flight} in flight, {self.queued} queued "
                f"of {self.total}")


@dataclass(frozen=True)
class Sample:
    """One status poll: who was applying, what the scheduler counted in flight, and which
    of those are runs it started itself (the others: nodes' own scheduled runs)."""

    at: float
    applying: tuple[str, ...]
    in_flight: tuple[str, ...]
    started: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"at": round(self.at, 3), "applying": list(self.applying),
                "in_flight": list(self.in_flight), "started": list(self.started)}


@dataclass
class _Node:
    name: str
    state: str = QUEUED
    outcome: str | None = None
    initiated_at: int | None = None
    started: float = 0.0
    seen_applying: bool = False
    last_answer: float = 0.0
    #: Silent for lost_after: no longer polled.
    gone: bool = False


@dataclass
class RunAllReport:
    """Everything ``runall`` did: per-node outcomes, the events and the status timeline."""

    concurrency: int
    outcomes: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    timeline: list[Sample] = field(default_factory=list)
    elapsed: float = 0.0
    polls: int = 0
    #: CPU-bound seconds the scheduler itself spent deciding (fleet calls and sleeping
    #: excluded): the scheduling overhead docs/puppet.md reports per node.
    scheduling_seconds: float = 0.0

    def nodes(self, outcome: str) -> list[str]:
        return sorted(n for n, o in self.outcomes.items() if o == outcome)

    @property
    def max_applying(self) -> int:
        return max((len(s.applying) for s in self.timeline), default=0)

    @property
    def max_in_flight(self) -> int:
        """The most runs in flight at once, nodes' own scheduled runs included."""
        return max((len(s.in_flight) for s in self.timeline), default=0)

    @property
    def max_started(self) -> int:
        """The most runs runall itself had in flight at once: never above concurrency."""
        return max((len(s.started) for s in self.timeline), default=0)

    def tally(self) -> dict[str, int]:
        return {outcome: len(self.nodes(outcome)) for outcome in OUTCOMES}

    @property
    def ok(self) -> bool:
        """Every node got a run that did not fail (disabled nodes skipped on purpose do not
        count against)."""
        return all(o in ("finished", "skipped_disabled") for o in self.outcomes.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "tally": self.tally(),
            "nodes": {outcome: self.nodes(outcome) for outcome in OUTCOMES},
            "max_applying": self.max_applying,
            "max_in_flight": self.max_in_flight,
            "max_started": self.max_started,
            "elapsed_s": round(self.elapsed, 3),
            "polls": self.polls,
            "scheduling_ms": round(self.scheduling_seconds * 1000, 3),
            "events": [e.to_json() for e in self.events],
            "timeline": [s.to_json() for s in self.timeline],
        }


class RunAll:
    """Schedules one Puppet run per node with at most ``concurrency`` in flight."""

    def __init__(
        self,
        fleet: PuppetFleet,
        nodes: Sequence[str],
        concurrency: int,
        *,
        poll_interval: float = 1.0,
        lost_after: float = 60.0,
        start_timeout: float = 120.0,
        max_time: float | None = None,
        clock: Clock | None = None,
        on_event: Callable[[Event], None] | None = None,
        started: Mapping[str, int | None] | None = None,
    ) -> None:
        """``started``: nodes whose run was already started (``{node: initiated_at}``, from
        their runonce replies), only watched until it ends — ``runonce --wait``."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.fleet = fleet
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.lost_after = lost_after
        self.start_timeout = start_timeout
        self.max_time = max_time
        self.clock = clock or RealClock()
        self.on_event = on_event
        self._nodes = {name: _Node(name) for name in sorted(set(nodes) | set(started or ()))}
        for name, initiated_at in (started or {}).items():
            self._nodes[name].state = RUNNING
            self._nodes[name].initiated_at = initiated_at
        self._queue: deque[str] = deque(n for n, node in self._nodes.items()
                                        if node.state == QUEUED)
        self.report = RunAllReport(concurrency)
        self._began = 0.0
        #: Seconds spent inside fleet.runonce (kept out of scheduling_seconds).
        self._call_seconds = 0.0

    # -- bookkeeping -----------------------------------------------------------------------

    def _running(self) -> set[str]:
        return {n.name for n in self._nodes.values() if n.state == RUNNING}

    def _event(self, kind: str, node: str, message: str, in_flight: int = 0) -> None:
        """Record and report an event; the counts come from the nodes' states, so they add
        up (``in_flight`` is accepted for callers' symmetry but not trusted)."""
        done = sum(1 for n in self._nodes.values() if n.state == DONE)
        running = sum(1 for n in self._nodes.values() if n.state == RUNNING)
        total = len(self._nodes)
        event = Event(self.clock.monotonic() - self._began, kind, node, message, running,
                      total - done - running, done, total)
        self.report.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _finish(self, node: _Node, outcome: str, message: str, in_flight: int) -> None:
        node.state, node.outcome = DONE, outcome
        if node.name in self._queue:
            self._queue.remove(node.name)
        self.report.outcomes[node.name] = outcome
        self._event(outcome, node.name, message, in_flight)

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> RunAllReport:
        """Run to completion (bounded by lost_after, start_timeout and max_time)."""
        self._began = self.clock.monotonic()
        for node in self._nodes.values():
            node.last_answer = node.started = self._began
        while True:
            polled = sorted(n.name for n in self._nodes.values() if not n.gone)
            statuses = self.fleet.status(polled) if polled else {}
            self.report.polls += 1
            tick, calls = time.perf_counter(), self._call_seconds
            self._step(polled, statuses)
            self.report.scheduling_seconds += (time.perf_counter() - tick
                                               - (self._call_seconds - calls))
            if not self._queue and not self._running():
                break
            if self.max_time is not None and \
                    self.clock.monotonic() - self._began >= self.max_time:
                self._give_up()
                break
            self.clock.sleep(self.poll_interval)
        self.report.elapsed = self.clock.monotonic() - self._began
        return self.report

    def _step(self, polled: Sequence[str], statuses: Mapping[str, NodeStatus]) -> None:
        now = self.clock.monotonic()
        for name in statuses:
            if name in self._nodes:
                self._nodes[name].last_answer = now
        applying = {n for n, s in statuses.items() if s.applying and s.error is None}
        # Silent nodes: lost after lost_after, whatever they were doing.
        for name in polled:
            node = self._nodes[name]
            if name in statuses or now - node.last_answer < self.lost_after:
                continue
            node.gone = True  # never polled again
            if node.state == DONE:
                continue  # its outcome stands; it just no longer counts as in flight
            was = ("its run's end was never seen" if node.state == RUNNING
                   else "it never got a run")
            self._finish(node, "lost", f"no answer for {now - node.last_answer:.0f}s; {was}",
                         len(applying | self._running()) - (node.state == RUNNING))
        # Runs in flight: finished?
        for name in sorted(self._running()):
            node = self._nodes[name]
            status = statuses.get(name)
            if status is None or status.error is not None:
                continue
            if status.applying:
                node.seen_applying = True
                continue
            newer = node.initiated_at is not None and status.lastrun > node.initiated_at
            if (node.seen_applying or newer) and status.last_run_failure:
                self._finish(node, "run_failed", f"run FAILED: {status.last_run_failure}",
                             len(applying | self._running()) - 1)
            elif node.seen_applying or newer:
                self._finish(node, "finished", "run finished",
                             len(applying | self._running()) - 1)
            elif now - node.started >= self.start_timeout:
                self._finish(node, "unconfirmed",
                             f"no run seen within {self.start_timeout:g}s of starting it",
                             len(applying | self._running()) - 1)
        in_flight = applying | self._running()
        # Nodes that cannot get a run leave the queue at once, wherever they are in it: a
        # disabled node is said to be skipped in the first poll, not when its turn comes.
        for name in list(self._queue):
            status = statuses.get(name)
            if status is None:
                continue  # not answering right now: keep it queued (lost_after decides)
            node = self._nodes[name]
            if status.error is not None:
                self._finish(node, "failed", f"status failed: {status.error}", len(in_flight))
            elif not status.installed:
                self._finish(node, "failed", "puppet is not installed", len(in_flight))
            elif not status.enabled:
                self._finish(node, "skipped_disabled",
                             f"disabled: {status.disable_message or 'no reason given'}",
                             len(in_flight))
        # Start runs into the free slots, in queue order.
        to_start: list[str] = []
        for name in list(self._queue):
            if len(in_flight) + len(to_start) >= self.concurrency:
                break
            status = statuses.get(name)
            if status is not None and not status.applying:
                to_start.append(name)
        if to_start:
            for name in to_start:
                self._queue.remove(name)
            call = time.perf_counter()
            results = self.fleet.runonce(to_start)
            self._call_seconds += time.perf_counter() - call
            started_at = self.clock.monotonic()
            for name in to_start:
                self._started(self._nodes[name], results.get(name), started_at, in_flight)
        running = self._running()
        self.report.timeline.append(Sample(
            now - self._began, tuple(sorted(applying)), tuple(sorted(applying | running)),
            tuple(sorted(running))))

    def _started(self, node: _Node, result: StartResult | None, started_at: float,
                 in_flight: set[str]) -> None:
        if result is None:
            # No reply: it may have started. Count it in flight; polls will tell.
            node.state, node.started = RUNNING, started_at
            in_flight.add(node.name)
            self._event("started", node.name, "no reply to runonce; counting it as started",
                        len(in_flight))
            return
        if result.ok:
            node.state, node.started, node.initiated_at = RUNNING, started_at, \
                result.initiated_at
            in_flight.add(node.name)
            self._event("started", node.name, result.message, len(in_flight))
            return
        message = result.message.lower()
        if "disabled" in message:
            self._finish(node, "skipped_disabled", result.message, len(in_flight))
        elif "already applying" in message:
            # Its own run got there first: it is in flight now, and keeps its place.
            node.state = QUEUED
            self._queue.appendleft(node.name)
            in_flight.add(node.name)
            self._event("requeued", node.name, result.message, len(in_flight))
        else:
            self._finish(node, "failed", result.message, len(in_flight))

    def _give_up(self) -> None:
        in_flight = len(self._running())
        for node in list(self._nodes.values()):
            if node.state != DONE:
                self._finish(node, "timeout", f"runall stopped after {self.max_time:g}s",
                             in_flight)


class OrchPuppetFleet:
    """:class:`PuppetFleet` over an orch :class:`~orch.core.client.Client`.

    Requests go straight to the listed identities (no filter: the nodes were chosen by
    discovery already, and a node whose facts change mid-way should still finish).
    """

    def __init__(self, client: Any, run_data: Mapping[str, Any] | None = None) -> None:
        self.client = client
        self.run_data = dict(run_data or {})

    def status(self, nodes: Sequence[str]) -> Mapping[str, NodeStatus]:
        result = self.client.call("puppet", "status", {}, nodes=list(nodes))
        out: dict[str, NodeStatus] = {}
        for name, reply in result.replies.items():
            if reply.ok:
                out[name] = NodeStatus.from_data(reply.data)
            else:
                out[name] = NodeStatus(False, True, error=reply.statusmsg)
        return out

    def runonce(self, nodes: Sequence[str]) -> Mapping[str, StartResult]:
        data = {"force": True, **self.run_data}
        result = self.client.call("puppet", "runonce", data, nodes=list(nodes))
        out: dict[str, StartResult] = {}
        for name, reply in result.replies.items():
            initiated = reply.data.get("initiated_at")
            out[name] = StartResult(
                reply.ok, str(reply.data.get("summary") if reply.ok else reply.statusmsg),
                int(initiated) if isinstance(initiated, int | float) else None)
        return out
