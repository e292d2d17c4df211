"""The node side: turn request bytes into actions and replies, and the ``orch server`` daemon.

:class:`Node` is one identity — its facts, classes, agents and counters. It checks each
request in the order the design fixes — envelope and signature, protocol, collective, time
window and replay, filter, agent and action, arguments, authorization — hands the action to
the shared :class:`~orch.core.runner.ActionRunner`, and sends the reply. Every decision is
written to the audit log when one is configured.

Only the cheap checks (decoding, signature, collective, time window, replay) run on the
thread that reads the broker. The rest — the filter, whose cost the sender chooses, then
the DDL and the policy — runs on the services' :class:`~orch.core.runner.WorkQueue`, so a
request that is slow to evaluate never holds up the ones behind it; the filter is first
measured against its budget, and a request over budget is refused and audited unevaluated.
Requests are not kept in order once they leave the reading thread.

Many nodes can share one :class:`NodeServices` (transport, runner, security, authorizer):
that is how ``orch demo`` simulates a fleet in one process. :class:`Server` wires one node
from :class:`~orch.core.config.Settings` and runs until stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orch
from orch.core.agent import ActionReply, ActionRequest, Agent
from orch.core.audit import AuditLog
from orch.core.authorization import Authorizer
from orch.core.config import Settings
from orch.core.errors import ArgumentError, OrchError, ProtocolError
from orch.core.facts import collect_facts, read_classes
from orch.core.filter import (
    FilterBudget,
    FilterBudgetError,
    FilterEngine,
    FilterSyntaxError,
    NodeView,
)
from orch.core.plugins import PluginRegistry
from orch.core.protocol import Envelope, Reply, Request, Status
from orch.core.replay import ReplayCache
from orch.core.runner import ActionRunner, WorkQueue
from orch.core.security import SecurityProvider, Verified
from orch.core.transport import NodeBinding
from orch.ddl.model import AgentDDL

log = logging.getLogger(__name__)

#: ``send(collective, reply_to, payload, ttl)`` — how a node publishes its replies.
ReplySender = Callable[[str, str, bytes, float], None]


@dataclass
class NodeServices:
    """What nodes of one process share: plugins chosen by settings, pool, reply path."""

    settings: Settings
    filters: FilterEngine
    security: SecurityProvider
    runner: ActionRunner
    validators: Mapping[str, Callable[[Any], bool]]
    send: ReplySender
    authorizer: Authorizer | None = None
    audit: AuditLog | None = None
    default_timeout: float = 60.0
    clock_skew: float = 5.0
    max_ttl: float = 3600.0
    max_message_bytes: int = 8 * 1024 * 1024
    #: Where requests go after the cheap checks; None evaluates on the calling thread
    #: (unit tests drive :meth:`Node.handle` directly and expect the work done on return).
    queue: WorkQueue | None = None
    #: Told ``(collective, payload)`` after each reply is sent (a server service may add
    #: one: job history keeps copies). Called on the request path: queue and return; what
    #: a listener raises is logged and ignored.
    reply_listeners: list[Callable[[str, bytes], None]] = field(default_factory=list)

    @classmethod
    def from_settings(
        cls, settings: Settings, registry: PluginRegistry, send: ReplySender
    ) -> NodeServices:
        authorizers = registry.authorizers()
        authorizer = None
        if settings.authorization in authorizers:
            authorizer = authorizers[settings.authorization](settings)
        else:
            log.warning("authorization plugin %r is not installed; every authenticated "
                        "caller may run every action", settings.authorization)
        return cls(
            settings=settings,
            filters=FilterEngine(registry.filter_kinds(), registry.filter_functions(),
                                 FilterBudget.from_settings(settings)),
            security=registry.security_for(settings),
            runner=ActionRunner(settings.workers),
            validators=registry.validators(),
            send=send,
            authorizer=authorizer,
            audit=AuditLog(settings.audit_log, settings.audit_redact)
            if settings.audit_log else None,
            default_timeout=settings.action_timeout,
            clock_skew=settings.clock_skew,
            max_ttl=settings.max_ttl,
            max_message_bytes=settings.max_message_bytes,
            queue=WorkQueue(settings.filter_workers, settings.filter_backlog, "orch-filter"),
        )

    def close(self) -> None:
        if self.queue is not None:
            self.queue.shutdown()  # first: its jobs hand actions to the runner
        self.runner.shutdown()
        if self.audit is not None:
            self.audit.close()


class Node:
    """One node identity: decides whether and how to answer each request."""

    def __init__(
        self,
        identity: str,
        collective: str,
        agents: Mapping[str, type[Agent]],
        facts: Callable[[], Mapping[str, Any]],
        classes: frozenset[str],
        services: NodeServices,
        security: SecurityProvider | None = None,
    ) -> None:
        self.identity = identity
        self.collective = collective
        self.services = services
        #: Usually the shared provider; a simulated node may carry its own credentials.
        self.security = security or services.security
        self._load_facts = facts
        self._classes = classes
        # A first view without facts, so agents may look at the node while being built.
        self._view = NodeView(identity, {}, classes, frozenset(agents))
        self.set_agents(agents, refresh=False)
        self._replay = ReplayCache()
        self._started = time.time()
        self._stats: Counter[str] = Counter()
        self._per_agent: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self.refresh()

    # -- NodeContext -------------------------------------------------------------------

    def view(self) -> NodeView:
        return self._view

    def statistics(self) -> dict[str, Any]:
        with self._stats_lock:
            counts = dict(self._stats)
            per_agent = dict(self._per_agent)
        keys = ("total", "passed", "filtered", "replies", "failed", "dropped", "ttlexpired",
                "unauthorized")
        return {
            **{key: counts.get(key, 0) for key in keys},
            "agents": per_agent,
            "uptime": round(time.time() - self._started, 3),
            "starttime": self._started,
            "version": orch.__version__,
            "pid": os.getpid(),
        }

    def agent_ddl(self, name: str) -> AgentDDL:
        return self._agent_classes[name].ddl()

    @property
    def settings(self) -> Settings:
        """The process's settings; plugins read their section with ``settings.plugin(name)``."""
        return self.services.settings

    # -- lifecycle ---------------------------------------------------------------------

    def set_agents(self, agents: Mapping[str, type[Agent]], refresh: bool = True) -> bool:
        """Host exactly ``agents`` from now on; return whether the set of names changed."""
        changed = set(agents) != set(getattr(self, "_agents", {}))
        self._agent_classes = dict(agents)
        self._agents = {name: cls(self) for name, cls in agents.items()}
        if refresh:
            self.refresh()
        return changed

    def refresh(self, classes: frozenset[str] | None = None) -> None:
        """Re-read facts (and optionally replace classes); called at start and on SIGHUP."""
        if classes is not None:
            self._classes = classes
        self._view = NodeView(
            identity=self.identity,
            facts=self._load_facts(),
            classes=self._classes,
            agents=frozenset(self._agents),
        )

    def binding(self) -> NodeBinding:
        return NodeBinding(self.collective, self.identity, tuple(self._agents), self.handle)

    # -- the request path --------------------------------------------------------------

    def _count(self, key: str, agent: str | None = None) -> None:
        with self._stats_lock:
            self._stats[key] += 1
            if agent is not None:
                self._per_agent[agent] += 1

    def _audit(
        self, decision: str, reason: str, request: Request | None = None,
        verified: Verified | None = None,
    ) -> None:
        audit = self.services.audit
        if audit is None:
            return
        audit.record(
            node=self.identity, decision=decision, reason=reason,
            request_id=request.id if request else None,
            caller=(verified.caller if verified and verified.caller else
                    request.caller if request else None),
            fingerprint=verified.fingerprint if verified else None,
            agent=request.agent if request else None,
            action=request.action if request else None,
            arguments=request.data if request else None,
        )

    def _reject(self, counter: str, reason: str, request: Request | None = None,
                verified: Verified | None = None, level: int = logging.WARNING) -> None:
        self._count(counter)
        log.log(level, "node=%s request=%s rejected: %s", self.identity,
                request.id if request else "?", reason)
        self._audit("rejected", reason, request, verified)

    def handle(self, raw: bytes) -> None:
        """Process one message from the network. Never raises; bad input is logged."""
        self._count("total")
        if len(raw) > self.services.max_message_bytes:
            # Before any parsing: decoding a 60 MB message cost a node 200 MB of memory.
            self._reject("dropped", f"message of {len(raw)} bytes is over max_message_bytes "
                         f"({self.services.max_message_bytes})")
            return
        try:
            envelope = Envelope.decode(raw)
            if envelope.kind != "request":
                raise ProtocolError(f"expected a request, got a {envelope.kind}")
            verified = self.security.verify(envelope)
            request = Request.decode(envelope.body)
        except ProtocolError as exc:
            self._reject("dropped", str(exc))
            return
        if not self._acceptable(request, verified):
            return
        queue = self.services.queue
        if queue is None:
            self._select(request, verified)
        elif not queue.submit(lambda: self._select(request, verified)):
            self._reject("dropped", "busy: too many requests waiting for a filter thread "
                         "(filter_backlog)", request, verified)

    def _select(self, request: Request, verified: Verified) -> None:
        """Budget, then filter, then :meth:`_dispatch`; runs on the work queue."""
        filters = self.services.filters
        try:
            filters.check(request.filter)
            selected = filters.matches(request.filter, self._view)
        except FilterBudgetError as exc:
            self._reject("dropped", f"filter over budget: {exc}", request, verified)
            return
        except FilterSyntaxError as exc:
            # Silent as for a filter that does not select this node, but audited as what
            # it is: a hostile or broken filter must leave a trace.
            log.warning("node=%s request=%s bad filter, staying silent: %s",
                        self.identity, request.id, exc)
            self._count("filtered")
            self._audit("rejected", f"invalid filter: {exc}", request, verified)
            return
        if not selected:
            self._count("filtered")
            self._audit("ignored", "filter does not select this node", request, verified)
            return
        self._count("passed", request.agent)
        self._dispatch(request, verified)

    def _acceptable(self, request: Request, verified: Verified) -> bool:
        """Collective, addressee, time window and replay checks."""
        now = time.time()
        skew = self.services.clock_skew
        if request.collective != self.collective:
            self._reject("dropped", f"request for collective {request.collective}",
                         request, verified)
            return False
        if not self._addressed(request, verified):
            return False
        if request.ttl > self.services.max_ttl:
            self._reject("dropped", f"ttl {request.ttl:g}s is over this node's max_ttl "
                         f"{self.services.max_ttl:g}s", request, verified)
            return False
        if now > request.expires_at() + skew:
            self._reject("ttlexpired", f"expired {now - request.expires_at():.1f}s ago",
                         request, verified, logging.INFO)
            return False
        if request.time > now + skew:
            self._reject("dropped", f"created {request.time - now:.1f}s in the future "
                         "(clock skew?)", request, verified)
            return False
        if request.time < self._started - skew:
            # The replay cache lives in memory: without this, a request captured before a
            # restart could be played again after it.
            self._reject("dropped", "created before this node started (a replay across a "
                         "restart?)", request, verified)
            return False
        if self._replay.seen(request.id, request.expires_at() + skew, now):
            self._reject("dropped", "replayed request id", request, verified)
            return False
        return True

    def _addressed(self, request: Request, verified: Verified) -> bool:
        """A direct request runs only on the identities its signed body names.

        Without this, a signed request for one node, captured on the broker and re-published
        into other nodes' queues, would run on all of them. Checked before the replay cache,
        so a misdirected copy cannot use up the id before the genuine request arrives.
        """
        if request.addresses(self.identity):
            return True
        count = len(request.targets or ())
        self._reject("dropped", f"not addressed to this node (a direct request for {count} "
                     f"other node{'s' if count != 1 else ''})", request, verified)
        return False

    def _dispatch(self, request: Request, verified: Verified) -> None:
        caller = verified.caller or request.caller
        agent = self._agents.get(request.agent)
        if agent is None:
            self._refuse(request, verified, Status.UNKNOWN_ACTION,
                         f"unknown agent {request.agent!r} on {self.identity}")
            return
        ddl = agent.ddl()
        action_ddl = ddl.action(request.action)
        if request.action not in agent.actions() or (ddl.actions and action_ddl is None):
            self._refuse(request, verified, Status.UNKNOWN_ACTION,
                         f"unknown action {request.action!r} for agent {request.agent!r}")
            return
        data: Mapping[str, Any] = request.data
        if action_ddl is not None:
            try:
                data = action_ddl.check_arguments(request.data, self.services.validators)
            except ArgumentError as exc:
                status = Status.MISSING_DATA if getattr(exc, "kind", "") == "missing" \
                    else Status.INVALID_DATA
                self._refuse(request, verified, status, str(exc))
                return
        authorizer = self.services.authorizer
        if authorizer is not None:
            decision = authorizer.authorize(request, caller, self._view, self.services.filters)
            if not decision.allowed:
                self._count("unauthorized")
                self._audit("denied", decision.reason, request, verified)
                self._reply(request, Status.ABORTED,
                            f"{request.agent}.{request.action} not authorized: "
                            f"{decision.reason}")
                return
            self._audit("allowed", decision.reason, request, verified)
        else:
            self._audit("allowed", "no authorizer configured", request, verified)
        self._run(agent, ddl, ActionRequest(
            request.agent, request.action, data, caller, request.id, request.sender), request)

    def _refuse(self, request: Request, verified: Verified, status: Status,
                message: str) -> None:
        self._audit("rejected", message, request, verified)
        self._reply(request, status, message)

    def _run(self, agent: Agent, ddl: AgentDDL, action_request: ActionRequest,
             request: Request) -> None:
        timeout = ddl.timeout or self.services.default_timeout
        # Agents that enforce their own deadline (external agents kill their process group at
        # the DDL timeout) get a little longer, so their more precise reply wins the race.
        grace = float(getattr(agent, "deadline_grace", 0.0))
        deadline = time.monotonic() + min(timeout + grace,
                                          max(request.expires_at() - time.time(), 0.01))
        log.debug("node=%s request=%s caller=%s running %s.%s", self.identity, request.id,
                  action_request.caller, request.agent, request.action)
        self.services.runner.submit(
            lambda: agent.run(action_request),
            deadline,
            on_result=lambda reply: self._reply_checked(request, ddl, reply),
            on_timeout=lambda: self._reply(
                request, Status.ABORTED,
                f"{request.agent}.{request.action} did not finish within {timeout:g}s"),
        )

    def _reply_checked(self, request: Request, ddl: AgentDDL, reply: ActionReply) -> None:
        """Send an action's reply, logging (not hiding) data that breaks the DDL."""
        action = ddl.action(request.action)
        problems = action.check_reply(reply.data) if action is not None else []
        if problems:
            log.warning("node=%s request=%s %s.%s reply does not match its DDL: %s",
                        self.identity, request.id, request.agent, request.action,
                        "; ".join(problems))
        self._reply(request, reply.statuscode, reply.statusmsg, reply.data)

    def _reply(
        self, request: Request, status: Status, message: str,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        reply = Reply(request.id, self.identity, request.agent, request.action, status,
                      message, dict(data or {}))
        body = reply.encode()
        envelope = Envelope("reply", body, self.security.seal("reply", body))
        self._count("replies")
        if status != Status.OK:
            self._count("failed")
        ttl = max(request.expires_at() - time.time(), 1.0)
        payload = envelope.encode()
        self.services.send(self.collective, request.reply_to, payload, ttl)
        for listener in self.services.reply_listeners:
            try:
                listener(self.collective, payload)
            except Exception:
                log.exception("node=%s reply listener failed", self.identity)


class Server:
    """``orch server``: one node on one transport, until SIGTERM or SIGINT."""

    def __init__(self, settings: Settings, registry: PluginRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.transport = registry.transport_for(settings)
        self.services = NodeServices.from_settings(settings, registry, self.transport.send_reply)
        self.stop_event = threading.Event()
        #: Ends one consuming cycle: set by stop(), or by reload() when agents changed.
        self._cycle = threading.Event()
        self.ready = threading.Event()
        sources = registry.fact_sources(settings)
        self.node = Node(
            settings.identity,
            settings.collective,
            registry.agents_for(settings),
            lambda: collect_facts(sources),
            read_classes(settings.classes),
            self.services,
        )

        #: Plugins' services run beside the daemon (registration is one).
        self.extras = registry.server_services(settings)

        if settings.policy_dir is None:
            log.warning("node=%s no policy_dir set: every authenticated caller may run "
                        "every action", settings.identity)

    def reload(self) -> None:
        """SIGHUP: rescan agents, re-read facts and classes, reopen the audit log.

        When the set of agents changed, the consumer is rebuilt so broadcasts for new
        agents arrive and those for removed ones stop.
        """
        self.registry.hook.orch_reload(settings=self.settings)
        try:
            agents = self.registry.agents_for(self.settings)
        except OrchError as exc:
            log.error("node=%s keeping the current agents: %s", self.node.identity, exc)
            agents = None
        if agents is not None and self.node.set_agents(agents, refresh=False):
            log.info("node=%s agents now %s", self.node.identity, ",".join(sorted(agents)))
            self._cycle.set()
        self.node.refresh(read_classes(self.settings.classes))
        if self.services.audit is not None:
            self.services.audit.reopen()
        self._each_extra("reloaded")
        log.info("node=%s reloaded agents, facts and classes", self.node.identity)

    def run(self) -> None:
        """Serve until :meth:`stop` is called (or a signal arrives, in the main thread)."""
        if threading.current_thread() is threading.main_thread():
            self._install_signal_handlers()
        log.info("node=%s collective=%s agents=%s broker=%s starting",
                 self.node.identity, self.node.collective,
                 ",".join(sorted(self.node.view().agents)), self.transport.display_url)
        self._each_extra("start", self.node, self.transport, self.ready)
        try:
            while not self.stop_event.is_set():
                self._cycle.clear()
                if self.stop_event.is_set():
                    break
                self.transport.serve([self.node.binding()], self._cycle, self.ready)
        finally:
            self._each_extra("stop")
            self.services.close()
            self.transport.close()
            log.info("node=%s stopped", self.node.identity)

    def _each_extra(self, method: str, *args: object) -> None:
        """Call ``method`` on every server service; one that raises is logged and dropped."""
        for extra in list(self.extras):
            try:
                getattr(extra, method)(*args)
            except Exception:
                log.exception("node=%s server service %r failed in %s; dropped",
                              self.node.identity, type(extra).__name__, method)
                self.extras.remove(extra)

    def stop(self) -> None:
        self.stop_event.set()
        self._cycle.set()

    def _install_signal_handlers(self) -> None:
        """Signals only raise flags; a helper thread acts on them.

        Python runs handlers in the main thread, between any two bytecodes of whatever it
        was doing — here, handling a request while holding the audit log's lock. Doing the
        work in the handler (reopening that log, setting an Event) can deadlock.
        """
        requested: dict[str, bool] = {"stop": False, "reload": False}

        def flag(name: str) -> Callable[..., None]:
            def handler(*_: object) -> None:
                requested[name] = True

            return handler

        def act() -> None:
            while not self.stop_event.wait(0.1):
                if requested["stop"]:
                    self.stop()
                elif requested["reload"]:
                    requested["reload"] = False
                    try:
                        self.reload()
                    except Exception:  # keep serving whatever a reload hits
                        log.exception("node=%s reload failed", self.node.identity)

        signal.signal(signal.SIGTERM, flag("stop"))
        signal.signal(signal.SIGINT, flag("stop"))
        signal.signal(signal.SIGHUP, flag("reload"))
        threading.Thread(target=act, name="orch-signals", daemon=True).start()
