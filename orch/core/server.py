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
that is how ``orch demo`` simulates a fleet in one process. The daemon that wires one node
from settings and runs it until stopped is :class:`orch.core.daemon.Server`.
"""

from __future__ import annotations

import logging
import os
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
from orch.core.decoded import DecodedRequests
from orch.core.errors import ArgumentError, ProtocolError, RevokedError
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


def _request_envelope(raw: bytes) -> Envelope:
    envelope = Envelope.decode(raw)
    if envelope.kind != "request":
        raise ProtocolError(f"expected a request, got a {envelope.kind}")
    return envelope


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
    #: Requests decoded once for every node sharing these services (a simulated fleet's
    #: nodes, which receive copies of the same bytes); None: each node decodes its own.
    decoded: DecodedRequests | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, registry: PluginRegistry, send: ReplySender
    ) -> NodeServices:
        return cls(
            settings=settings,
            filters=FilterEngine(registry.filter_kinds(), registry.filter_functions(),
                                 FilterBudget.from_settings(settings)),
            security=registry.security_for(settings),
            runner=ActionRunner(settings.workers, settings.max_actions),
            validators=registry.validators(),
            send=send,
            authorizer=_authorizer(settings, registry),
            audit=AuditLog(settings.audit_log, settings.audit_redact)
            if settings.audit_log else None,
            default_timeout=settings.action_timeout,
            clock_skew=settings.clock_skew,
            max_ttl=settings.max_ttl,
            max_message_bytes=settings.max_message_bytes,
            queue=WorkQueue(settings.filter_workers, settings.filter_backlog, "orch-filter"),
        )

    def reconfigure(self, settings: Settings, registry: PluginRegistry) -> None:
        """Take ``settings`` (SIGHUP) without stopping: each request in flight keeps the
        objects it already holds, the next one sees the new ones.

        What needs new threads or connections (``workers``, ``filter_workers``,
        ``filter_backlog``, the transport and security provider) is not changed here; see
        :data:`orch.core.daemon.RESTART_ONLY`.
        """
        # Everything that may fail is built before anything is replaced: a reload applies
        # whole or not at all.
        filters = FilterEngine(registry.filter_kinds(), registry.filter_functions(),
                               FilterBudget.from_settings(settings))
        validators = registry.validators()
        authorizer = _authorizer(settings, registry)
        self._reconfigure_audit(settings)
        self.settings, self.filters, self.validators = settings, filters, validators
        self.authorizer = authorizer
        self.default_timeout = settings.action_timeout
        self.clock_skew = settings.clock_skew
        self.max_ttl = settings.max_ttl
        self.max_message_bytes = settings.max_message_bytes
        self.runner.limit = settings.max_actions

    def _reconfigure_audit(self, settings: Settings) -> None:
        """Reopen the audit log (after rotation), or move it to a new ``audit_log``."""
        audit, path = self.audit, settings.audit_log
        try:
            if audit is None:
                self.audit = AuditLog(path, settings.audit_redact) if path else None
            elif path is None:
                self.audit = None
                audit.close()
            elif (audit.path, audit.redact) == (path, frozenset(settings.audit_redact)):
                audit.reopen()
            else:
                audit.retarget(path, settings.audit_redact)
        except OSError as exc:
            log.error("cannot open audit log %s (%s); still writing to %s", path,
                      exc.strerror, audit.path if audit is not None else "none")

    def close(self, wait: float = 5.0) -> int:
        """Finish what was admitted within ``wait`` seconds in all, replying to each;
        return how many actions were still running and were abandoned."""
        deadline = time.monotonic() + wait
        if self.queue is not None:
            self.queue.shutdown(wait)  # first: its jobs hand actions to the runner
        abandoned = self.runner.shutdown(max(deadline - time.monotonic(), 0.0))
        if abandoned:
            log.warning("%d action(s) still running after %gs were abandoned (replied "
                        "'aborted')", abandoned, wait)
        if self.audit is not None:
            self.audit.close()
        return abandoned


def _authorizer(settings: Settings, registry: PluginRegistry) -> Authorizer | None:
    authorizers = registry.authorizers()
    if settings.authorization in authorizers:
        return authorizers[settings.authorization](settings)
    log.warning("authorization plugin %r is not installed; every authenticated "
                "caller may run every action", settings.authorization)
    return None


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
                "unauthorized", "busy")
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
        """The process's settings; plugins read their declared section with
        ``settings.section(name, cls)``."""
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

    def refresh(self, classes: frozenset[str] | None = None,
                facts: Callable[[], Mapping[str, Any]] | None = None) -> None:
        """Re-read facts (optionally from new sources, and with new classes); called at
        start and on SIGHUP."""
        if classes is not None:
            self._classes = classes
        if facts is not None:
            self._load_facts = facts
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
        shared = self.services.decoded
        try:
            known = shared.get(raw) if shared is not None else None
            envelope = known[0] if known is not None else _request_envelope(raw)
            verified = self.security.verify(envelope)  # every node, shared decoding or not
            request = known[1] if known is not None else Request.decode(envelope.body)
            if shared is not None and known is None:
                shared.put(raw, envelope, request)
        except RevokedError as exc:
            self._count("dropped")
            log.warning("node=%s request rejected: %s", self.identity, exc)
            self._audit("revoked", str(exc), None, Verified(exc.caller, exc.fingerprint))
            return
        except ProtocolError as exc:
            self._reject("dropped", str(exc))
            return
        except Exception as exc:  # a decoder bug: log it, drop the message, keep consuming
            log.error("node=%s could not decode a message of %d bytes", self.identity,
                      len(raw), exc_info=True)
            self._reject("dropped", f"undecodable message ({type(exc).__name__})")
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
                status = Status.MISSING_DATA if exc.kind == "missing" else Status.INVALID_DATA
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
        grace = agent.deadline_grace
        deadline = time.monotonic() + min(timeout + grace,
                                          max(request.expires_at() - time.time(), 0.01))
        log.debug("node=%s request=%s caller=%s running %s.%s", self.identity, request.id,
                  action_request.caller, request.agent, request.action)
        admitted = self.services.runner.submit(
            lambda: agent.run(action_request),
            deadline,
            on_result=lambda reply: self._reply_checked(request, ddl, reply),
            on_timeout=lambda: self._reply(
                request, Status.ABORTED,
                f"{request.agent}.{request.action} did not finish within {timeout:g}s"),
            on_abandon=lambda: self._reply(
                request, Status.ABORTED,
                f"{request.agent}.{request.action} was still running when {self.identity} "
                "shut down"),
        )
        if not admitted:
            runner = self.services.runner
            reason = (f"busy: {self.identity} is shutting down" if runner.closing else
                      f"busy: {self.identity} is already running its limit of "
                      f"{runner.limit} actions (max_actions); try again later")
            self._count("busy")
            self._audit("rejected", reason, request, None)
            log.warning("node=%s request=%s %s", self.identity, request.id, reason)
            self._reply(request, Status.BUSY, reason)

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


def __getattr__(name: str) -> Any:
    """``orch.core.server.Server`` still works: the daemon moved to :mod:`orch.core.daemon`
    (imported lazily, as it imports this module)."""
    if name == "Server":
        from orch.core.daemon import Server

        return Server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
