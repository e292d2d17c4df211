"""The node side: turn request bytes into actions and replies, and the ``orch server`` daemon.

:class:`Node` is one identity — its facts, classes, agents and counters. It checks each
request in order (envelope, security, protocol, collective, time window, filter, agent,
action, arguments), hands the action to the shared :class:`~orch.core.runner.ActionRunner`,
and sends the reply. Many nodes can share one transport and one runner: that is how
``orch demo`` simulates a fleet in one process.

:class:`Server` wires one node to its transport from :class:`~orch.core.config.Settings`
and runs until stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import orch
from orch.core.agent import ActionRequest, Agent
from orch.core.config import Settings
from orch.core.errors import ArgumentError, ProtocolError
from orch.core.facts import collect_facts, read_classes
from orch.core.filter import FilterEngine, FilterSyntaxError, NodeView
from orch.core.plugins import PluginRegistry
from orch.core.protocol import Envelope, Reply, Request, Status
from orch.core.runner import ActionRunner
from orch.core.security import SecurityProvider
from orch.core.transport import NodeBinding
from orch.ddl.model import AgentDDL

log = logging.getLogger(__name__)

#: ``send(collective, reply_to, payload, ttl)`` — how a node publishes its replies.
ReplySender = Callable[[str, str, bytes, float], None]


class Node:
    """One node identity: decides whether and how to answer each request."""

    def __init__(
        self,
        identity: str,
        collective: str,
        agents: Mapping[str, type[Agent]],
        facts: Callable[[], Mapping[str, Any]],
        classes: frozenset[str],
        *,
        filters: FilterEngine,
        security: SecurityProvider,
        runner: ActionRunner,
        send: ReplySender,
        default_timeout: float = 60.0,
        clock_skew: float = 5.0,
    ) -> None:
        self.identity = identity
        self.collective = collective
        self._agent_classes = dict(agents)
        self._agents = {name: cls(self) for name, cls in agents.items()}
        self._load_facts = facts
        self._classes = classes
        self._filters = filters
        self._security = security
        self._runner = runner
        self._send = send
        self._default_timeout = default_timeout
        self._clock_skew = clock_skew
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
        keys = ("total", "passed", "filtered", "replies", "failed", "dropped", "ttlexpired")
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

    # -- lifecycle ---------------------------------------------------------------------

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

    def handle(self, raw: bytes) -> None:
        """Process one message from the network. Never raises; bad input is logged."""
        self._count("total")
        try:
            envelope = Envelope.decode(raw)
            if envelope.kind != "request":
                raise ProtocolError(f"expected a request, got a {envelope.kind}")
            verified = self._security.verify(envelope)
            request = Request.decode(envelope.body)
        except ProtocolError as exc:
            self._count("dropped")
            log.warning("node=%s dropped message: %s", self.identity, exc)
            return
        caller = verified.caller or request.caller
        if not self._acceptable(request):
            return
        try:
            selected = self._filters.matches(request.filter, self._view)
        except FilterSyntaxError as exc:
            log.warning("node=%s request=%s bad filter, staying silent: %s",
                        self.identity, request.id, exc)
            selected = False
        if not selected:
            self._count("filtered")
            return
        self._count("passed", request.agent)
        self._dispatch(request, caller)

    def _acceptable(self, request: Request) -> bool:
        now = time.time()
        if request.collective != self.collective:
            self._count("dropped")
            log.warning("node=%s request=%s for collective %s dropped",
                        self.identity, request.id, request.collective)
            return False
        if now > request.expires_at() + self._clock_skew:
            self._count("ttlexpired")
            log.info("node=%s request=%s expired %.1fs ago, dropped", self.identity,
                     request.id, now - request.expires_at())
            return False
        if request.time > now + self._clock_skew:
            self._count("dropped")
            log.warning("node=%s request=%s is from %.1fs in the future (clock skew?), dropped",
                        self.identity, request.id, request.time - now)
            return False
        return True

    def _dispatch(self, request: Request, caller: str) -> None:
        agent = self._agents.get(request.agent)
        if agent is None:
            self._reply(request, Status.UNKNOWN_ACTION,
                        f"unknown agent {request.agent!r} on {self.identity}")
            return
        ddl = agent.ddl()
        action_ddl = ddl.action(request.action)
        if request.action not in agent.actions() or (ddl.actions and action_ddl is None):
            self._reply(request, Status.UNKNOWN_ACTION,
                        f"unknown action {request.action!r} for agent {request.agent!r}")
            return
        data: Mapping[str, Any] = request.data
        if action_ddl is not None:
            try:
                data = action_ddl.check_arguments(request.data)
            except ArgumentError as exc:
                status = Status.MISSING_DATA if getattr(exc, "kind", "") == "missing" \
                    else Status.INVALID_DATA
                self._reply(request, status, str(exc))
                return
        action_request = ActionRequest(
            request.agent, request.action, data, caller, request.id, request.sender)
        timeout = ddl.timeout if ddl.timeout else self._default_timeout
        deadline = time.monotonic() + min(timeout, max(request.expires_at() - time.time(), 0.01))
        log.debug("node=%s request=%s caller=%s running %s.%s", self.identity, request.id,
                  caller, request.agent, request.action)
        self._runner.submit(
            lambda: agent.run(action_request),
            deadline,
            on_result=lambda reply: self._reply(
                request, reply.statuscode, reply.statusmsg, reply.data),
            on_timeout=lambda: self._reply(
                request, Status.ABORTED,
                f"{request.agent}.{request.action} did not finish within {timeout:g}s"),
        )

    def _reply(
        self, request: Request, status: Status, message: str,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        reply = Reply(request.id, self.identity, request.agent, request.action, status,
                      message, dict(data or {}))
        body = reply.encode()
        envelope = Envelope("reply", body, self._security.seal("reply", body))
        self._count("replies")
        if status != Status.OK:
            self._count("failed")
        ttl = max(request.expires_at() - time.time(), 1.0)
        self._send(self.collective, request.reply_to, envelope.encode(), ttl)


class Server:
    """``orch server``: one node on one transport, until SIGTERM or SIGINT."""

    def __init__(self, settings: Settings, registry: PluginRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.transport = registry.transport_for(settings)
        self.runner = ActionRunner(settings.workers)
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self._sources = registry.fact_sources(settings)
        self.node = Node(
            settings.identity,
            settings.collective,
            registry.agents_for(settings.agents),
            lambda: collect_facts(self._sources),
            read_classes(settings.classes),
            filters=FilterEngine(registry.filter_kinds(), registry.filter_functions()),
            security=registry.security_for(settings),
            runner=self.runner,
            send=self.transport.send_reply,
            default_timeout=settings.action_timeout,
            clock_skew=settings.clock_skew,
        )

    def reload(self) -> None:
        """Re-read facts and classes (SIGHUP)."""
        self.node.refresh(read_classes(self.settings.classes))
        log.info("node=%s reloaded facts and classes", self.node.identity)

    def run(self) -> None:
        """Serve until :meth:`stop` is called (or a signal arrives, in the main thread)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
            signal.signal(signal.SIGHUP, lambda *_: self.reload())
        log.info("node=%s collective=%s agents=%s broker=%s starting",
                 self.node.identity, self.node.collective,
                 ",".join(sorted(self.node.view().agents)), self.transport.display_url)
        try:
            self.transport.serve([self.node.binding()], self.stop_event, self.ready)
        finally:
            self.runner.shutdown()
            self.transport.close()
            log.info("node=%s stopped", self.node.identity)

    def stop(self) -> None:
        self.stop_event.set()
