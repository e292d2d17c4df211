"""The ``plugins: {service: {...}}`` section of orch's configuration, checked once.

Declared to orch through the ``orch_settings`` hook (:mod:`orch_service.plugin`), so orch
checks it like its own settings: a typo is an error naming the key and suggesting the right one, the
environment can set a key (``ORCH_SERVICE_<KEY>``), and ``orch server`` checks it at start::

    plugins:
      service:
        allow: [nginx, cron]        # or "all"; default: none, only status is answered
        deny: [sshd]                # never changed, whatever allow says
        provider: auto              # auto, systemd, sysv, simulated
        confirm_above: 1            # `orch service NAME stop` asks above this many nodes

The section is read by the daemon (what the agent may do) and by the client (when the CLI
asks for confirmation); unknown keys are refused on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orch.plugin import PluginSection, allow_decision, convert, setting

from orch_service.names import NAME_HELP, valid_name

#: The agent's DDL timeout: the server gives up on an action after this long.
ACTION_TIMEOUT = 60.0
SECTION = "service"
PROVIDERS = ("auto", "systemd", "sysv", "simulated")
#: Actions that change a node; every other action only reads.
CHANGING = frozenset({"start", "stop", "restart", "reload"})
#: Actions the CLI asks about before sending to many nodes.
DESTRUCTIVE = frozenset({"stop"})


_optional_path = convert.optional_path


def _init_dir(value: Any) -> str:
    """A directory path; unset (``None``, ``""``) keeps the default, /etc/init.d."""
    return convert.optional_path(value) or "/etc/init.d"


_command_timeout = convert.seconds_below(ACTION_TIMEOUT)
_count = convert.count
_names = convert.names_or_all("service name", valid_name, NAME_HELP)
_key = setting
_choice = convert.choice


@dataclass(frozen=True)
class ServicePluginConfig(PluginSection):
    """The checked ``plugins.service`` section. Documented key by key in docs/service.md."""

    section_name = SECTION

    allow: tuple[str, ...] = _key(
        (), _names, "Services the changing actions (start, stop, restart, reload) may act on; "
        "`all` allows every service not denied. Default: none (only status is answered).")
    deny: tuple[str, ...] = _key(
        (), _names, "Services never changed, whatever `allow` says.")
    provider: str = _key(
        "auto", _choice(*PROVIDERS), "`auto` uses systemd when the node booted with it "
        "(/run/systemd/system exists), else SysV init scripts through service(8); "
        "`simulated` keeps services in memory and never touches the machine.")
    command_timeout: float = _key(
        50.0, _command_timeout, "Seconds one systemctl or service(8) command may take (under "
        "the agent's 60 s action deadline); a command still running then is killed and the "
        "action fails saying so.")
    confirm_above: int = _key(
        1, _count, "Client side: `orch service NAME stop` asks for confirmation when it "
        "would address more nodes than this (`--yes` skips the question).")
    systemctl: str | None = _key(
        None, _optional_path, "The systemctl command (default: found on PATH).")
    service_command: str | None = _key(
        None, _optional_path, "The service(8) command (default: found on PATH).")
    init_dir: str = _key(
        "/etc/init.d", _init_dir, "Where the SysV init scripts are.")

    def allows(self, service: str) -> tuple[bool, str]:
        """Whether the changing actions may act on ``service``, and why not."""
        return allow_decision(service, self.allow, self.deny, noun="service",
                              setting=f"plugins.{SECTION}")
