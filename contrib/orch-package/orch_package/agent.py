"""The ``package`` agent: install, uninstall, update, status, count, md5 and outdated.

Action names and the ``ensure`` output follow MCollective's package agent. The changing
actions (install, uninstall, update) are refused unless the node's ``plugins.package``
settings allow the package (:meth:`PackagePluginConfig.allows`); they run one at a time
per node and answer "busy" when another package manager holds dpkg's lock. A command past
``command_timeout`` is stopped and the reply says what state the package was left in —
never a silent half-done change.

:class:`PackageAgent` drives apt/dpkg; :class:`SimulatedPackageAgent` keeps packages in
memory (:mod:`orch_package.simulated`) and is what simulated nodes host.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import ClassVar

from orch.plugin import (
    ActionFailed,
    ActionReply,
    ActionRequest,
    Agent,
    NodeContext,
    action,
)

from orch_package.commands_run import CommandError
from orch_package.config import PackagePluginConfig
from orch_package.lock import LOCK_MESSAGES, NODE_LOCK, Busy, one_at_a_time
from orch_package.providers import PackageProvider, PackageState, ProviderError, choose
from orch_package.simulated import SimulatedProvider

log = logging.getLogger(__name__)


class _PackageActions(Agent):
    """The actions, over whatever :meth:`provider` returns."""

    name = "package"
    ddl_file = "package.json"

    def __init__(self, node: NodeContext) -> None:
        super().__init__(node)
        self.config = PackagePluginConfig.from_settings(node.settings)

    def provider(self) -> PackageProvider:
        raise NotImplementedError

    def operation_lock(self) -> threading.Lock:
        raise NotImplementedError

    def _provider(self) -> PackageProvider:
        try:
            return self.provider()
        except ProviderError as exc:
            raise ActionFailed(str(exc)) from None

    def _status(self, provider: PackageProvider, package: str) -> PackageState:
        try:
            return provider.status(package)
        except (ProviderError, CommandError) as exc:
            raise ActionFailed(str(exc)) from None

    # -- read-only ------------------------------------------------------------------------

    @action
    def status(self, request: ActionRequest, reply: ActionReply) -> None:
        state = self._status(self._provider(), str(request.data["package"]))
        for key, value in state.outputs().items():
            reply[key] = value

    @action
    def outdated(self, request: ActionRequest, reply: ActionReply) -> None:
        package = request.data.get("package")
        try:
            found = self._provider().outdated(str(package) if package else None)
        except (ProviderError, CommandError) as exc:
            raise ActionFailed(str(exc)) from None
        reply["outdated"] = [item.to_json() for item in found]
        reply["count"] = len(found)
        if package:
            reply["package"] = str(package)
            reply["candidate"] = found[0].candidate if found else ""

    @action
    def count(self, request: ActionRequest, reply: ActionReply) -> None:
        reply["count"] = len(self._inventory())

    @action
    def md5(self, request: ActionRequest, reply: ActionReply) -> None:
        """The digest of the sorted ``name version`` list: equal digests, equal packages."""
        inventory = self._inventory()
        text = "".join(f"{name} {version}\n" for name, version in inventory)
        reply["md5"] = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
        reply["count"] = len(inventory)

    def _inventory(self) -> list[tuple[str, str]]:
        try:
            return self._provider().inventory()
        except (ProviderError, CommandError) as exc:
            raise ActionFailed(str(exc)) from None

    # -- changing -------------------------------------------------------------------------

    @action
    def install(self, request: ActionRequest, reply: ActionReply) -> None:
        self._change(request, reply, "install")

    @action
    def update(self, request: ActionRequest, reply: ActionReply) -> None:
        self._change(request, reply, "update")

    @action
    def uninstall(self, request: ActionRequest, reply: ActionReply) -> None:
        self._change(request, reply, "uninstall")

    def _change(self, request: ActionRequest, reply: ActionReply, verb: str) -> None:
        package = str(request.data["package"])
        wanted = request.data.get("version") or None
        version = None if wanted in (None, "latest") else str(wanted)
        allowed, why = self.config.allows(package)
        if not allowed:
            raise ActionFailed(why)
        provider = self._provider()
        reply["package"], reply["action"] = package, verb
        try:
            with one_at_a_time(self.operation_lock(), self.config.lock_wait):
                provider.check_free()
                self._change_locked(provider, request, reply, verb, package, version)
        except Busy as exc:
            reply["busy"] = True
            raise ActionFailed(str(exc)) from None

    def _change_locked(self, provider: PackageProvider, request: ActionRequest,
                       reply: ActionReply, verb: str, package: str,
                       version: str | None) -> None:
        before = self._status(provider, package)
        reply["previous"] = before.ensure
        done = {"install": before.installed and (version is None or before.ensure == version),
                "uninstall": not before.installed,
                "update": before.installed and version is not None and before.ensure == version}
        if verb == "update" and not before.installed:
            self._fill(reply, before, False)
            raise ActionFailed(f"{package} is not installed; install it first")
        if done[verb]:
            self._fill(reply, before, False)
            reply["message"] = f"{package} is already {before.ensure}"
            return
        try:
            result = provider.change(verb, package, version)
        except (ProviderError, CommandError) as exc:
            raise ActionFailed(str(exc)) from None
        after = self._status(provider, package)
        self._fill(reply, after, after.ensure != before.ensure)
        reply["output"] = result.output
        log.info("node=%s caller=%s package %s %s: %s -> %s (exit %s)", self.node.identity,
                 request.caller, verb, package, before.ensure, after.ensure,
                 result.returncode)
        if result.timed_out:
            reply.fail(f"{verb} {package} did not finish within "
                       f"{self.config.command_timeout:g}s and was stopped; {package} is now "
                       f"{after.ensure} ({after.status}); if it is half-installed run "
                       "`dpkg --configure -a` on the node")
        elif any(message in result.output for message in LOCK_MESSAGES):
            reply["busy"] = True
            reply.fail(f"busy: another package manager took dpkg's lock; {package} is "
                       f"unchanged ({after.ensure}); try again later")
        elif not result.ok:
            errors = [line for line in result.output.splitlines() if line.startswith("E:")]
            last = (errors or result.output.splitlines() or ["no output"])[-1]
            reply.fail(f"{verb} {package} failed (exit {result.returncode}): {last}; "
                       f"{package} is {after.ensure}")
        elif verb == "uninstall" and after.installed:
            reply.fail(f"uninstall {package} exited 0 but it is still {after.ensure}")
        elif verb != "uninstall" and not after.installed:
            reply.fail(f"{verb} {package} exited 0 but it is not installed")
        elif version is not None and after.ensure != version:
            reply.fail(f"{verb} {package} exited 0 but it is {after.ensure}, not {version}")
        else:
            reply["message"] = (f"{package} removed" if verb == "uninstall" else
                                f"{package} is now {after.ensure}")

    @staticmethod
    def _fill(reply: ActionReply, state: PackageState, changed: bool) -> None:
        for key, value in state.outputs().items():
            reply[key] = value
        reply["changed"] = changed


class SimulatedPackageAgent(_PackageActions):
    """The agent a simulated node hosts: packages kept in memory per node identity."""

    simulation_safe: ClassVar[bool] = True

    def __init__(self, node: NodeContext) -> None:
        super().__init__(node)
        self._simulated = SimulatedProvider(node.identity, node.view().classes)
        self._lock = threading.Lock()

    def provider(self) -> PackageProvider:
        return self._simulated

    def operation_lock(self) -> threading.Lock:
        return self._lock


class PackageAgent(_PackageActions):
    """The agent a real node hosts: apt/dpkg."""

    simulation_safe: ClassVar[bool] = False

    @classmethod
    def simulation(cls) -> type[Agent] | None:
        """What a simulated node hosts instead (``Agent.simulation()``); ``provider:
        simulated`` selects the same class anywhere else (see plugin.py)."""
        return SimulatedPackageAgent

    def __init__(self, node: NodeContext) -> None:
        super().__init__(node)
        self._chosen: PackageProvider | None = None

    def provider(self) -> PackageProvider:
        """Chosen on first use, so that a node without apt still starts."""
        if self._chosen is None:
            self._chosen = choose(self.config)
        return self._chosen

    def operation_lock(self) -> threading.Lock:
        """dpkg is one per machine: one lock for every agent instance in the process."""
        return NODE_LOCK
