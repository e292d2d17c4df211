"""The ``service`` agent: start, stop, restart, reload and status of one named service.

The action names and outputs follow MCollective's service agent (``status`` is
``running``/``stopped``), so ``mco service`` habits carry over. Every changing action is
refused unless the node's ``plugins.service`` settings allow that service
(:meth:`ServicePluginConfig.allows`); ``status`` is always answered. ``start`` on a running
service and ``stop`` on a stopped one change nothing and say so.

Two classes share the DDL and the action code: :class:`ServiceAgent` drives the node's real
service manager; :class:`SimulatedServiceAgent` keeps services in memory
(:mod:`orch_service.simulated`) and is what simulated nodes host.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from orch.plugin import (
    ActionFailed,
    ActionReply,
    ActionRequest,
    Agent,
    NodeContext,
    Status,
    action,
)

from orch_service.commands_run import CommandError
from orch_service.config import ServicePluginConfig
from orch_service.providers import (
    EXPECTED,
    RUNNING,
    STOPPED,
    UNKNOWN,
    ProviderError,
    ServiceProvider,
    choose,
)
from orch_service.simulated import SimulatedProvider

log = logging.getLogger(__name__)

PAST = {"start": "started", "stop": "stopped", "restart": "restarted", "reload": "reloaded"}


class _ServiceActions(Agent):
    """The actions, over whatever :meth:`provider` returns."""

    name = "service"
    ddl_file = "service.json"

    def __init__(self, node: NodeContext) -> None:
        super().__init__(node)
        self.config = ServicePluginConfig.from_settings(node.settings)

    def provider(self) -> ServiceProvider:
        raise NotImplementedError

    def _state(self, provider: ServiceProvider, service: str) -> str:
        try:
            return provider.state(service)
        except (ProviderError, CommandError) as exc:
            raise ActionFailed(str(exc)) from None

    def _change(self, request: ActionRequest, reply: ActionReply, verb: str) -> None:
        service = str(request.data["service"])
        allowed, why = self.config.allows(service)
        if not allowed:
            raise ActionFailed(why)
        try:
            provider = self.provider()
        except ProviderError as exc:
            raise ActionFailed(str(exc)) from None
        before = self._state(provider, service)
        reply["service"], reply["action"], reply["provider"] = service, verb, provider.name
        reply["previous"] = before
        if before == UNKNOWN:
            reply["status"], reply["changed"] = UNKNOWN, False
            raise ActionFailed(f"unknown service {service!r} on this node", Status.ABORTED)
        if (verb, before) in (("start", RUNNING), ("stop", STOPPED)):
            reply["status"], reply["changed"] = before, False
            reply["message"] = f"{service} was already {before}"
            return
        try:
            result = provider.act(service, verb)
        except (ProviderError, CommandError) as exc:
            raise ActionFailed(str(exc)) from None
        after = self._state(provider, service)
        reply["status"], reply["changed"] = after, True
        reply["output"] = result.output
        log.info("node=%s caller=%s service %s %s: %s -> %s (exit %s)", self.node.identity,
                 request.caller, service, verb, before, after, result.returncode)
        if result.timed_out:
            reply.fail(f"{verb} {service} did not finish within "
                       f"{self.config.command_timeout:g}s and was killed; the service is "
                       f"now {after}")
        elif not result.ok:
            last = result.output.splitlines()[-1] if result.output else "no output"
            reply.fail(f"{verb} {service} failed (exit {result.returncode}): {last}; the "
                       f"service is {after}")
        elif after != EXPECTED[verb]:
            reply.fail(f"{verb} {service} exited 0 but the service is {after}")
        else:
            reply["message"] = f"{service} {PAST[verb]}: now {after}"

    @action
    def status(self, request: ActionRequest, reply: ActionReply) -> None:
        service = str(request.data["service"])
        try:
            provider = self.provider()
        except ProviderError as exc:
            raise ActionFailed(str(exc)) from None
        state = self._state(provider, service)
        reply["service"], reply["status"], reply["provider"] = service, state, provider.name
        if state == UNKNOWN:
            reply.fail(f"unknown service {service!r} on this node")

    @action
    def start(self, request: ActionRequest, reply: ActionReply) -> None:
        self._change(request, reply, "start")

    @action
    def stop(self, request: ActionRequest, reply: ActionReply) -> None:
        self._change(request, reply, "stop")

    @action
    def restart(self, request: ActionRequest, reply: ActionReply) -> None:
        self._change(request, reply, "restart")

    @action
    def reload(self, request: ActionRequest, reply: ActionReply) -> None:
        self._change(request, reply, "reload")


class SimulatedServiceAgent(_ServiceActions):
    """The agent a simulated node hosts: services kept in memory per node identity."""

    simulation_safe: ClassVar[bool] = True

    def __init__(self, node: NodeContext) -> None:
        super().__init__(node)
        self._provider = SimulatedProvider(node.identity, node.view().classes)

    def provider(self) -> ServiceProvider:
        return self._provider


class ServiceAgent(_ServiceActions):
    """The agent a real node hosts: its systemd or SysV service manager."""

    simulation_safe: ClassVar[bool] = False

    @classmethod
    def simulation(cls) -> type[Agent] | None:
        """What a simulated node hosts instead (``Agent.simulation()``); ``provider:
        simulated`` selects the same class anywhere else (see plugin.py)."""
        return SimulatedServiceAgent

    def __init__(self, node: NodeContext) -> None:
        super().__init__(node)
        self._provider: ServiceProvider | None = None

    def provider(self) -> ServiceProvider:
        """Chosen on first use, so that a node without a service manager still starts."""
        if self._provider is None:
            self._provider = choose(self.config)
        return self._provider
