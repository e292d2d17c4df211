"""The ``puppet`` agent: runonce, status, enable, disable, last_run_summary and resource.

The actions and outputs are the ones MCollective's and Choria's puppet agents have, so
scripts written against ``mco puppet`` keep their field names. All state comes from
Puppet's own files (see :mod:`orch_puppet.state`), at the paths ``puppet config print``
reported when the daemon started (:mod:`orch_puppet.paths`).

Refusals (disabled, already applying, a resource type the node does not allow, a bad
input) answer ``aborted`` / ``invalid data`` with a sentence saying why; nothing is started
for a refused request.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orch.plugin import (
    ActionFailed,
    ActionReply,
    ActionRequest,
    Agent,
    NodeContext,
    Status,
    action,
)

from orch_puppet import state
from orch_puppet.config import PuppetPluginConfig, expand
from orch_puppet.nodes import refresh_node
from orch_puppet.paths import PathResolver, PuppetNotInstalled, PuppetPaths, find_ruby
from orch_puppet.runs import (
    BackgroundRuns,
    ResourceError,
    RunRecord,
    apply_resource,
    effective_splay,
    run_argv,
    signal_daemon,
)
from orch_puppet.validation import (
    InvalidInput,
    ResourceRequest,
    RunOptions,
    resource_request,
    run_options,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PuppetState:
    """One reading of the node's Puppet state (the ``status`` action's outputs)."""

    enabled: bool
    disable_message: str
    applying: bool
    daemon_pid: int | None
    lastrun: int
    now: float
    outcome: state.RunOutcome = state.NEVER_RAN
    installed: bool = True

    @classmethod
    def not_installed(cls, now: float) -> PuppetState:
        """A node without a puppet command: nothing enabled, nothing running, never ran."""
        return cls(enabled=False, disable_message="", applying=False, daemon_pid=None,
                   lastrun=0, now=now, installed=False)

    @property
    def daemon_present(self) -> bool:
        return self.daemon_pid is not None

    @property
    def idling(self) -> bool:
        return self.daemon_present and not self.applying

    @property
    def status(self) -> str:
        """applying > disabled > idling > stopped: a run in progress matters most."""
        if not self.installed:
            return state.NOT_INSTALLED
        if self.applying:
            return "applying"
        if not self.enabled:
            return "disabled"
        return "idling" if self.daemon_present else "stopped"

    def outputs(self) -> dict[str, Any]:
        return {
            "applying": self.applying,
            "enabled": self.enabled,
            "daemon_present": self.daemon_present,
            "idling": self.idling,
            "lastrun": self.lastrun,
            "since_lastrun": int(self.now - self.lastrun) if self.lastrun else None,
            "status": self.status,
            "disable_message": self.disable_message,
            "message": state.status_message(self.status, self.lastrun, self.now,
                                            self.disable_message, self.outcome),
            "installed": self.installed,
            "last_run_status": self.outcome.status,
            "last_run_failure": self.outcome.failure,
        }


def read_state(paths: PuppetPaths, started_by_us: bool = False) -> PuppetState:
    """Read the lock files, the pidfile and the summary once."""
    if paths.puppet_bin is None:
        return PuppetState.not_installed(time.time())
    message = state.read_disabled(paths["agent_disabled_lockfile"])
    lock_pid = state.live_puppet_pid(paths["agent_catalog_run_lockfile"])
    summary = state.read_summary(paths["lastrunfile"])
    return PuppetState(
        enabled=message is None,
        disable_message=message or "",
        applying=lock_pid is not None or started_by_us,
        daemon_pid=state.live_puppet_pid(paths["pidfile"]),
        lastrun=state.last_run(summary),
        now=time.time(),
        outcome=state.run_outcome(summary),
    )


def check_can_run(current: PuppetState) -> None:
    """Refuse a run, saying why, when Puppet is disabled or already applying."""
    if not current.enabled:
        raise ActionFailed(f"Puppet is disabled ({current.disable_message}); not starting a "
                           "run: enable it first")
    if current.applying:
        raise ActionFailed("Puppet is already applying a catalog; not starting another run")


def requested_options(request: ActionRequest) -> RunOptions:
    """runonce's options; INVALID_DATA naming the bad one (real and simulated nodes refuse
    alike, before anything runs)."""
    try:
        return run_options({k: v for k, v in request.data.items() if v is not None})
    except InvalidInput as exc:
        raise ActionFailed(str(exc), Status.INVALID_DATA) from None


def allowed_resource(request: ActionRequest, config: PuppetPluginConfig) -> ResourceRequest:
    """The resource ``resource`` is asked to manage, once its inputs are valid
    (INVALID_DATA otherwise) and the section allows its type (a failure saying why)."""
    try:
        wanted = resource_request(request.data)
    except InvalidInput as exc:
        raise ActionFailed(str(exc), Status.INVALID_DATA) from None
    allowed, why = config.allows_type(wanted.type)
    if not allowed:
        raise ActionFailed(why)
    return wanted


def disable_message(request: ActionRequest) -> str:
    """The lock's message: the request's, else who disabled Puppet and when."""
    message = str(request.data.get("message") or "").strip() or (
        f"Disabled via orch by {request.caller} at {time.strftime('%Y-%m-%d %H:%M')}")
    if any(ord(ch) < 32 for ch in message):
        raise ActionFailed("message cannot contain control characters", Status.INVALID_DATA)
    return message


class PuppetAgent(Agent):
    """Puppet on this node. One instance per node identity (a fleet has many)."""

    name = "puppet"
    ddl_file = "puppet.json"

    @classmethod
    def simulation(cls) -> type[Agent]:
        """Simulated nodes (``orch demo``, ``orch sim``) host :class:`SimulatedPuppet`:
        the same actions on Puppet state kept in memory, never this machine's Puppet."""
        from orch_puppet.simulation import SimulatedPuppet

        return SimulatedPuppet

    def __init__(self, node: NodeContext) -> None:
        super().__init__(node)
        self.config = PuppetPluginConfig.from_settings(node.settings)
        # Starts `puppet config print` in the background: start-up is not slowed down.
        self.resolver = PathResolver(self.config, node.identity)
        self.runs = BackgroundRuns()
        self._start_lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------

    def paths(self) -> PuppetPaths:
        return self.resolver.get()

    def installed_paths(self) -> PuppetPaths:
        """The paths, or the refusal of every action but ``status`` on a node without
        Puppet: nothing is read, and no Puppet directory is ever created there."""
        paths = self.resolver.get()
        self._puppet(paths)
        return paths

    def _classfile(self) -> Path | None:
        """The classes file the node reads: orch's ``classes`` setting, when set."""
        configured = self.node.settings.classes
        return Path(configured) if configured else None

    def _run_log(self, paths: PuppetPaths) -> Path | None:
        if self.config.run_log == "":
            return None
        if self.config.run_log is None:
            return paths["logdir"] / "orch-runonce.log"
        return Path(str(expand(self.config.run_log, self.node.identity)))

    def _puppet(self, paths: PuppetPaths) -> str:
        try:
            return paths.require_puppet()
        except PuppetNotInstalled as exc:
            raise ActionFailed(str(exc)) from None

    def _after_run(self, record: RunRecord) -> None:
        """A run we started ended: classes.txt (and facts) may have changed."""
        refresh_node(self.node, self._classfile())

    def state(self) -> PuppetState:
        return read_state(self.paths(), self.runs.alive())

    # -- actions -------------------------------------------------------------------------

    @action
    def status(self, request: ActionRequest, reply: ActionReply) -> None:
        for key, value in self.state().outputs().items():
            reply[key] = value

    @action
    def runonce(self, request: ActionRequest, reply: ActionReply) -> None:
        options = requested_options(request)
        paths = self.installed_paths()
        puppet = self._puppet(paths)
        with self._start_lock:  # two runonce requests at once start one run, not two
            current = read_state(paths, self.runs.alive())
            check_can_run(current)
            initiated_at = int(time.time())
            if (current.daemon_pid is not None and current.idling and not options.custom
                    and not effective_splay(options, self.config)):
                try:
                    signal_daemon(current.daemon_pid)
                except OSError as exc:
                    raise ActionFailed(f"cannot signal the puppet daemon (PID "
                                       f"{current.daemon_pid}): {exc.strerror}") from None
                summary = (f"Signalled the running Puppet daemon (PID {current.daemon_pid}) "
                           "to start a run")
            else:
                argv = run_argv(puppet, paths, options, self.config)
                try:
                    record = self.runs.start(argv, self._run_log(paths),
                                             self.config.max_run_time, self._after_run)
                except OSError as exc:
                    raise ActionFailed(f"cannot start {puppet}: {exc.strerror}") from None
                summary = (f"Started a background Puppet run (PID {record.pid}): "
                           f"puppet {' '.join(argv[1:])}")
        log.info("node=%s caller=%s %s", self.node.identity, request.caller, summary)
        reply["summary"] = summary
        reply["initiated_at"] = initiated_at

    @action
    def enable(self, request: ActionRequest, reply: ActionReply) -> None:
        lock = self.installed_paths()["agent_disabled_lockfile"]
        message = state.read_disabled(lock)
        if message is None:
            reply["enabled"] = True
            reply.fail("Could not enable Puppet: already enabled")
            return
        try:
            state.remove_disabled(lock)
        except OSError as exc:
            raise ActionFailed(f"Could not enable Puppet: cannot remove {lock}: "
                               f"{exc.strerror}") from None
        log.info("node=%s caller=%s enabled puppet (was: %s)", self.node.identity,
                 request.caller, message)
        reply["enabled"] = True
        reply["status"] = "Enabled the Puppet agent"

    @action
    def disable(self, request: ActionRequest, reply: ActionReply) -> None:
        lock = self.installed_paths()["agent_disabled_lockfile"]
        current = state.read_disabled(lock)
        if current is not None:
            reply["enabled"] = False
            reply.fail(f"Could not disable Puppet: already disabled ({current})")
            return
        message = disable_message(request)
        try:
            state.write_disabled(lock, message)
        except OSError as exc:
            raise ActionFailed(f"Could not disable Puppet: cannot write {lock}: "
                               f"{exc.strerror}") from None
        log.info("node=%s caller=%s disabled puppet: %s", self.node.identity, request.caller,
                 message)
        reply["enabled"] = False
        reply["status"] = f"Disabled the Puppet agent: {message}"

    @action
    def last_run_summary(self, request: ActionRequest, reply: ActionReply) -> None:
        paths = self.installed_paths()
        summary = state.read_summary(paths["lastrunfile"])
        report = state.read_report(paths["lastrunreport"]) if summary else None
        types = state.type_distribution(paths["resourcefile"])
        for key, value in state.RunSummary.build(summary, time.time(), report,
                                                 types).data.items():
            reply[key] = value

    @action
    def resource(self, request: ActionRequest, reply: ActionReply) -> None:
        wanted = allowed_resource(request, self.config)
        paths = self.installed_paths()
        if not self.config.resource_allow_managed and \
                wanted.ref in state.managed_resources(paths["resourcefile"]):
            raise ActionFailed(f"{wanted.ref} is managed by this node's Puppet catalog; "
                               "refusing to change it (plugins.puppet.resource_allow_managed "
                               "is false)")
        ruby = find_ruby(self.config.puppet_ruby, paths.puppet_bin)
        if ruby is None:
            raise ActionFailed("cannot find the Ruby that runs Puppet (set "
                               "plugins.puppet.puppet_ruby)")
        try:
            result = apply_resource(ruby, paths, wanted, self.config.command_timeout)
        except ResourceError as exc:
            raise ActionFailed(f"{wanted.ref}: {exc}") from None
        log.info("node=%s caller=%s resource %s changed=%s failed=%s", self.node.identity,
                 request.caller, wanted.ref, result.get("changed"), result.get("failed"))
        reply["result"] = str(result.get("resource", ""))
        reply["changed"] = bool(result.get("changed"))
        reply["events"] = list(result.get("events") or [])
        if result.get("failed"):
            errors = [e["message"] for e in reply["events"] if e.get("status") == "failure"]
            errors += [line["message"] for line in result.get("logs") or []
                       if line.get("level") in ("err", "alert", "emerg", "crit")]
            reply.fail(f"{wanted.ref} failed: {errors[0] if errors else 'see the events'}")
