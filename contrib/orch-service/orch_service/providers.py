"""Service providers: how a node's service manager is asked to act, and what it reports.

A provider answers three questions — is the service known, is it running, and run this
action — with argv built here (:meth:`argv`), so tests can check the exact commands without
the service manager. :func:`choose` picks one by what the node has: systemd when the node
booted with it (``/run/systemd/system`` exists, as ``sd_booted(3)`` checks), else SysV init
scripts through ``service(8)``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orch_service.commands_run import CommandResult, run_command
from orch_service.config import ServicePluginConfig
from orch_service.names import NAME_HELP, valid_name

RUNNING, STOPPED, UNKNOWN = "running", "stopped", "unknown"
#: What each action leaves a service as, when it worked.
EXPECTED = {"start": RUNNING, "restart": RUNNING, "reload": RUNNING, "stop": STOPPED}
SYSTEMD_BOOTED = Path("/run/systemd/system")


class ProviderError(Exception):
    """The provider cannot act at all (no service manager, a bad name)."""


class ServiceProvider(Protocol):
    """What the agent needs from a service manager."""

    name: str

    def state(self, service: str) -> str:
        """:data:`RUNNING`, :data:`STOPPED` or :data:`UNKNOWN` (no such service)."""
        ...

    def act(self, service: str, action: str) -> CommandResult:
        """Run ``action`` (start, stop, restart, reload) on ``service``."""
        ...


def check_name(service: str) -> str:
    if not valid_name(service):
        raise ProviderError(f"{service!r} is not a service name ({NAME_HELP})")
    return service


@dataclass
class SystemdProvider:
    """``systemctl``: units by name (``nginx`` means ``nginx.service``)."""

    systemctl: str
    timeout: float
    name: str = "systemd"

    def argv(self, action: str, service: str) -> list[str]:
        """The command for ``action`` (``status`` reads the unit's load and active state)."""
        check_name(service)
        if action == "status":
            return [self.systemctl, "show", "--no-pager",
                    "--property=LoadState,ActiveState,SubState", "--", service]
        if action not in EXPECTED:
            raise ProviderError(f"unknown action {action!r}")
        return [self.systemctl, "--no-ask-password", action, "--", service]

    @staticmethod
    def parse_show(output: str) -> str:
        """The state from ``systemctl show``'s ``Key=value`` lines."""
        values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
        if values.get("LoadState") in (None, "", "not-found"):
            return UNKNOWN
        if values.get("ActiveState") in ("active", "reloading", "activating"):
            return RUNNING
        return STOPPED

    def state(self, service: str) -> str:
        result = run_command(self.argv("status", service), self.timeout)
        if result.timed_out:
            raise ProviderError(f"systemctl show {service} did not answer within "
                                f"{self.timeout:g}s")
        return self.parse_show(result.output)

    def act(self, service: str, action: str) -> CommandResult:
        return run_command(self.argv(action, service), self.timeout)


@dataclass
class SysVProvider:
    """``service(8)`` driving the init scripts in ``init_dir``.

    Status follows the LSB exit codes of ``status``: 0 running; 1, 2 and 3 not running;
    4 (or no script in ``init_dir``) unknown.
    """

    service_command: str
    init_dir: Path
    timeout: float
    name: str = "sysv"

    def argv(self, action: str, service: str) -> list[str]:
        check_name(service)
        if action != "status" and action not in EXPECTED:
            raise ProviderError(f"unknown action {action!r}")
        return [self.service_command, service, action]

    def known(self, service: str) -> bool:
        script = self.init_dir / check_name(service)
        return script.is_file() and os.access(script, os.X_OK)

    def state(self, service: str) -> str:
        if not self.known(service):
            return UNKNOWN
        result = run_command(self.argv("status", service), self.timeout)
        if result.timed_out:
            raise ProviderError(f"service {service} status did not answer within "
                                f"{self.timeout:g}s")
        if result.returncode == 0:
            return RUNNING
        return STOPPED if result.returncode in (1, 2, 3) else UNKNOWN

    def act(self, service: str, action: str) -> CommandResult:
        return run_command(self.argv(action, service), self.timeout)


def _find(configured: str | None, command: str) -> str | None:
    if configured:
        return configured
    return shutil.which(command, path="/usr/sbin:/usr/bin:/sbin:/bin")


def choose(config: ServicePluginConfig, booted: Path = SYSTEMD_BOOTED) -> ServiceProvider:
    """The provider ``config.provider`` names; for ``auto``, what this node has."""
    wanted = config.provider
    if wanted == "simulated":
        raise ProviderError("the simulated provider belongs to a simulated node's agent")
    if wanted in ("auto", "systemd") and (wanted == "systemd" or booted.is_dir()):
        systemctl = _find(config.systemctl, "systemctl")
        if systemctl is None:
            raise ProviderError("systemctl not found (set plugins.service.systemctl)")
        return SystemdProvider(systemctl, config.command_timeout)
    service = _find(config.service_command, "service")
    if service is None:
        raise ProviderError("neither systemd nor service(8) found on this node "
                            "(set plugins.service.provider or service_command)")
    return SysVProvider(service, Path(config.init_dir), config.command_timeout)
