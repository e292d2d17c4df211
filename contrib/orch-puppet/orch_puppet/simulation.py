"""Simulated Puppet: what simulated nodes (``orch demo``, ``orch sim``) host as ``puppet``.

A simulated fleet shares one real machine, so its nodes must never run ``puppet`` or touch
Puppet's files here (``PuppetAgent.simulation()`` names this class instead). Each simulated
node keeps its Puppet in memory: a disable lock, a daemon that runs every
:data:`RUNINTERVAL` seconds, the run in progress and the last run's summary and report —
shaped exactly like the files Puppet writes, so ``status``, ``last_run_summary`` and every
``orch puppet`` command read them with the real agent's code.

Nothing runs in the background and nothing sleeps: a run is "applying" from its start
until ``start + duration`` by the :func:`clock`, and the next request after that sees it
finished (with its summary). The same node starts from the same state for the same
identity and role (a few nodes disabled, some stale, some whose last run failed), and each
run's outcome is drawn from the node and the run's number: mostly changed or unchanged,
sometimes failed resources, now and then no catalog at all.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from orch.plugin import (
    ActionReply,
    ActionRequest,
    Agent,
    NodeContext,
    action,
)

from orch_puppet import state
from orch_puppet.agent import (
    PuppetState,
    allowed_resource,
    check_can_run,
    disable_message,
    requested_options,
)
from orch_puppet.config import PuppetPluginConfig
from orch_puppet.paths import DEBIAN_LAYOUT, PuppetPaths, default_paths
from orch_puppet.runs import effective_splay, run_argv
from orch_puppet.validation import RunOptions

#: Seconds between a simulated daemon's runs (Puppet's default runinterval).
RUNINTERVAL = 1800.0
#: Resources a node of each role manages (others: :data:`DEFAULT_RESOURCES`), ±30 %.
ROLE_RESOURCES = {"web": 180, "db": 150, "cache": 110, "lb": 90, "queue": 120,
                  "monitoring": 200, "build": 240}
DEFAULT_RESOURCES = 130
#: How resources split into types (the rest are ``file``).
TYPE_SHARES = (("package", 0.2), ("service", 0.08), ("exec", 0.05), ("user", 0.04),
               ("cron", 0.03), ("notify", 0.02))
NO_CATALOG = ("Could not retrieve catalog from remote server: Failed to open TCP connection "
              "to puppet:8140 (Connection refused - connect(2) for \"puppet\" port 8140)")
#: A simulated puppet command line, shown in runonce's summary.
SIM_PATHS = PuppetPaths("/usr/bin/puppet", None, default_paths(DEBIAN_LAYOUT),
                        source="simulated")


def clock() -> float:
    """The simulation's time (tests replace it to finish runs without waiting)."""
    return time.time()


#: Names of a node's fixed draws, and of each run's (one hash gives eight).
NODE_DRAWS = ("total", "daemon", "pid", "phase", "change", "disabled", "never", "stale")
RUN_DRAWS = ("time", "outcome", "failed", "drift", "retrieval", "splay", "age")


def _draws(names: tuple[str, ...], *salt: object) -> dict[str, float]:
    """Numbers in [0, 1) fixed by ``salt`` (the identity first): the same fleet on every
    start. One SHA-512 gives up to eight, so a node costs two hashes, not one per draw."""
    digest = hashlib.sha512("|".join(map(str, salt)).encode()).digest()
    return {name: int.from_bytes(digest[8 * i:8 * i + 8], "big") / 2**64
            for i, name in enumerate(names)}



@dataclass
class SimRun:
    number: int
    started: float
    duration: float
    options: RunOptions
    #: This run's fixed draws (:data:`RUN_DRAWS`).
    draws: dict[str, float]


class SimulatedNode:
    """One node's Puppet in memory: lock, daemon, the run in progress and the last run."""

    def __init__(self, identity: str, role: str, now: float) -> None:
        self.identity = identity
        self._fixed = _draws(NODE_DRAWS, identity, "node")
        self.total = round(ROLE_RESOURCES.get(role, DEFAULT_RESOURCES)
                           * (0.7 + 0.6 * self._u("total")))
        self.daemon = self._u("daemon") < 0.8
        self.pid = 2000 + int(self._u("pid") * 60000)
        self.phase = self._u("phase") * RUNINTERVAL
        self.disabled: str | None = (
            f"maintenance window CHG-{int(self._u('change') * 9000) + 1000}"
            if self._u("disabled") < 0.03 else None)
        self.runs = 0
        self.current: SimRun | None = None
        self.summary: dict[str, Any] = {}
        self.report: dict[str, Any] | None = None
        self.processed = now
        if self._u("never") < 0.02:
            return  # a few nodes were just built: they never ran
        if self.daemon and self.disabled is None and self._u("stale") >= 0.05:
            # The daemon's schedule fills in the last run (and the one in progress, if any).
            self.processed = now - 2 * RUNINTERVAL
            self.advance(now)
        else:  # no daemon (cron, or runs by hand), disabled, or stale: one old run
            first = self.new_run(now, RunOptions())
            first.started -= RUNINTERVAL * (2 + 10 * first.draws["age"])
            self._complete(first)

    def _u(self, name: str) -> float:
        return self._fixed[name]

    # -- time ------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Bring the node to ``now``: finish the run that ended, run the daemon's schedule."""
        if self.daemon and now > self.processed:
            first = math.floor((self.processed - self.phase) / RUNINTERVAL) + 1
            last = math.floor((now - self.phase) / RUNINTERVAL)
            for k in range(max(first, last - 1), last + 1):  # older ticks changed nothing
                tick = self.phase + k * RUNINTERVAL
                self._finish_until(tick)
                if self.current is None and self.disabled is None:
                    self.current = self.new_run(tick, RunOptions())
        self._finish_until(now)
        self.processed = max(self.processed, now)

    def _finish_until(self, now: float) -> None:
        run = self.current
        if run is not None and run.started + run.duration <= now:
            self._complete(run)
            self.current = None

    def new_run(self, started: float, options: RunOptions) -> SimRun:
        self.runs += 1
        draws = _draws(RUN_DRAWS, self.identity, "run", self.runs)
        share = 0.4 if options.tags else 1.0
        duration = (3.0 + self.total * 0.04 * share) * (0.8 + 0.4 * draws["time"])
        return SimRun(self.runs, started, round(duration, 3), options, draws)

    # -- what a finished run leaves ----------------------------------------------------------

    def _complete(self, run: SimRun) -> None:
        ended = run.started + run.duration
        draw = run.draws["outcome"]
        options = run.options
        total = round(self.total * (0.4 if options.tags else 1.0))
        no_catalog = draw < 0.03 and not options.use_cached_catalog
        failed = 1 + int(run.draws["failed"] * 3) if 0.03 <= draw < 0.08 else 0
        drift = int(run.draws["drift"] * 6) if draw >= 0.6 else 0
        out_of_sync = 0 if no_catalog else drift + failed
        changed = 0 if no_catalog or options.noop else drift
        retrieval = 0.0 if options.use_cached_catalog else round(
            0.3 + 1.5 * run.draws["retrieval"], 3)
        times: dict[str, Any] = {"fact_generation": 0.6, "total": run.duration,
                                 "last_run": int(ended)}
        if not no_catalog:
            times["config_retrieval"] = retrieval
        environment = options.environment or "production"
        self.summary = {
            "version": {"config": None if no_catalog else int(run.started),
                        "puppet": "7.23.0"},
            "application": {"run_mode": "agent", "initial_environment": environment,
                            "converged_environment": environment},
            "resources": {"changed": changed, "corrective_change": 0, "failed": failed,
                          "failed_to_restart": 0, "out_of_sync": out_of_sync,
                          "restarted": 0, "scheduled": 0, "skipped": 0,
                          "total": 0 if no_catalog else total},
            "time": times,
            "changes": {"total": changed},
            "events": {"failure": failed, "success": changed, "total": changed + failed},
        }
        logs = [{"level": "info", "source": "Puppet", "message":
                 f"Using environment '{environment}'"}]
        if no_catalog:
            logs += [{"level": "err", "source": "Puppet", "message": NO_CATALOG},
                     {"level": "err", "source": "Puppet",
                      "message": "Could not retrieve catalog; skipping run"}]
        else:
            logs += [{"level": "err", "source": f"/Stage[main]/Role/Service[app{i}]",
                      "message": "Could not start Service[app]: Execution of "
                                 "'/usr/bin/systemctl start app' returned 1"}
                     for i in range(failed)]
            logs.append({"level": "notice", "source": "Puppet", "message":
                         f"Applied catalog in {run.duration:.2f} seconds"})
        status = "failed" if no_catalog or failed else "changed" if changed else "unchanged"
        self.report = {"status": status, "cached_catalog_status":
                       "explicitly_requested" if options.use_cached_catalog else "not_used",
                       "logs": [{**line, "time": ""} for line in logs]}

    def types(self) -> dict[str, int]:
        counts = {name: round(self.total * share) for name, share in TYPE_SHARES}
        counts["file"] = self.total - sum(counts.values())
        return dict(sorted(counts.items()))

    def state(self, now: float) -> PuppetState:
        return PuppetState(enabled=self.disabled is None, disable_message=self.disabled or "",
                           applying=self.current is not None,
                           daemon_pid=self.pid if self.daemon else None,
                           lastrun=state.last_run(self.summary), now=now,
                           outcome=state.run_outcome(self.summary, self.report))


class SimulatedPuppet(Agent):
    """The ``puppet`` agent of a simulated node: same DDL, same answers, memory only."""

    name = "puppet"
    ddl_file = "puppet.json"
    simulation_safe = True

    def __init__(self, node: NodeContext) -> None:
        super().__init__(node)
        self.config = PuppetPluginConfig.from_settings(node.settings)
        self._lock = threading.Lock()
        self._sim: SimulatedNode | None = None

    def _node(self, now: float) -> SimulatedNode:
        """The node's Puppet, built on first use (the node's facts are read by then)."""
        if self._sim is None:
            role = self.node.view().fact("role")
            self._sim = SimulatedNode(self.node.identity, str(role or ""), now)
        self._sim.advance(now)
        return self._sim

    @action
    def status(self, request: ActionRequest, reply: ActionReply) -> None:
        now = clock()
        with self._lock:
            outputs = self._node(now).state(now).outputs()
        for key, value in outputs.items():
            reply[key] = value

    @action
    def runonce(self, request: ActionRequest, reply: ActionReply) -> None:
        options = requested_options(request)
        now = clock()
        with self._lock:
            sim = self._node(now)
            current = sim.state(now)
            check_can_run(current)
            splay = effective_splay(options, self.config)
            run = sim.new_run(now, options)
            if splay:  # it sleeps first, holding the run (Puppet's lock is taken later)
                limit = options.splaylimit or self.config.splaylimit or RUNINTERVAL
                run.duration += round(limit * run.draws["splay"], 3)
            sim.current = run
        if sim.daemon and not options.custom and not splay:
            summary = f"Signalled the running Puppet daemon (PID {sim.pid}) to start a run"
        else:
            argv = run_argv("puppet", SIM_PATHS, options, self.config)
            summary = (f"Started a background Puppet run (PID {sim.pid + run.number}): "
                       f"puppet {' '.join(argv[1:])} (simulated)")
        reply["summary"] = summary
        reply["initiated_at"] = int(now)

    @action
    def enable(self, request: ActionRequest, reply: ActionReply) -> None:
        with self._lock:
            sim = self._node(clock())
            was, sim.disabled = sim.disabled, None
        reply["enabled"] = True
        if was is None:
            reply.fail("Could not enable Puppet: already enabled")
        else:
            reply["status"] = "Enabled the Puppet agent"

    @action
    def disable(self, request: ActionRequest, reply: ActionReply) -> None:
        message = disable_message(request)
        with self._lock:
            sim = self._node(clock())
            was = sim.disabled
            if was is None:
                sim.disabled = message
        reply["enabled"] = False
        if was is not None:
            reply.fail(f"Could not disable Puppet: already disabled ({was})")
        else:
            reply["status"] = f"Disabled the Puppet agent: {message}"

    @action
    def last_run_summary(self, request: ActionRequest, reply: ActionReply) -> None:
        now = clock()
        with self._lock:
            sim = self._node(now)
            data = state.RunSummary.build(sim.summary, now, sim.report, sim.types()).data
        for key, value in data.items():
            reply[key] = value

    @action
    def resource(self, request: ActionRequest, reply: ActionReply) -> None:
        wanted = allowed_resource(request, self.config)
        body = "".join(f"\n  {key} => {value!r}," for key, value in
                       sorted(wanted.parameters.items()))
        reply["result"] = f"{wanted.type} {{ '{wanted.title}':{body}\n}}"
        reply["changed"] = bool(wanted.parameters)
        reply["events"] = [{"property": key, "status": "success",
                            "message": f"{key} changed (simulated)"}
                           for key in sorted(wanted.parameters)]
