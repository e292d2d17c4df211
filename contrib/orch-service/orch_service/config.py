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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orch.plugin import Settings, convert, documented_settings, setting

from orch_service.names import NAME_HELP, valid_name

#: The agent's DDL timeout: the server gives up on an action after this long.
ACTION_TIMEOUT = 60.0
SECTION = "service"
PROVIDERS = ("auto", "systemd", "sysv", "simulated")
#: Actions that change a node; every other action only reads.
CHANGING = frozenset({"start", "stop", "restart", "reload"})
#: Actions the CLI asks about before sending to many nodes.
DESTRUCTIVE = frozenset({"stop"})


def _positive_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a positive number")
    try:
        number = float(value)
    except ValueError:
        raise ValueError("expected a positive number") from None
    if not 0 < number < float("inf"):
        raise ValueError("expected a positive number")
    return number


def _command_timeout(value: Any) -> float:
    """A positive number of seconds under the action's deadline, so that a command killed
    for running too long still leaves time for a reply saying so."""
    number = _positive_float(value)
    if number >= ACTION_TIMEOUT:
        raise ValueError(f"must be below the action's {ACTION_TIMEOUT:g} s deadline, so that "
                         "the reply says what happened")
    return number


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected a whole number, 0 or more")
    try:
        number = int(value)
    except ValueError:
        raise ValueError("expected a whole number, 0 or more") from None
    if number < 0:
        raise ValueError("expected a whole number, 0 or more")
    return number


def _names(value: Any) -> tuple[str, ...]:
    """A list of service names (or ``all``), or a comma-separated string of them."""
    if value is None:
        return ()
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        items = [part.strip() for part in value]
    else:
        raise ValueError("expected a list of service names or 'all'")
    names = tuple(item for item in items if item)
    for name in names:
        if name != "all" and not valid_name(name):
            raise ValueError(f"{name!r} is not a service name ({NAME_HELP})")
    return names


_optional_path = convert.optional_path


def _init_dir(value: Any) -> str:
    """A directory path; unset (``None``, ``""``) keeps the default, /etc/init.d."""
    return convert.optional_path(value) or "/etc/init.d"


_key = setting
_choice = convert.choice


@dataclass(frozen=True)
class ServicePluginConfig:
    """The checked ``plugins.service`` section. Documented key by key in docs/service.md."""

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

    @classmethod
    def documented(cls) -> dict[str, str]:
        """``{key: description}`` of every key, for docs."""
        return documented_settings(cls)

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> ServicePluginConfig:
        """Check a raw ``plugins.service`` mapping as orch checks the configured one."""
        return Settings().with_values({"plugins": {SECTION: dict(section)}}, "settings"
                                      ).section(SECTION, cls)

    @classmethod
    def from_settings(cls, settings: Settings) -> ServicePluginConfig:
        """The checked section of orch ``settings``; ConfigError naming a bad key."""
        return settings.section(SECTION, cls)

    def allows(self, service: str) -> tuple[bool, str]:
        """Whether the changing actions may act on ``service``, and why not."""
        if service in self.deny or "all" in self.deny:
            return False, (f"service {service!r} is denied on this node "
                           f"(plugins.{SECTION}.deny)")
        if service in self.allow or "all" in self.allow:
            return True, ""
        if not self.allow:
            return False, (f"changing services is not enabled on this node: add {service!r} "
                           f"(or 'all') to plugins.{SECTION}.allow")
        return False, (f"service {service!r} is not in plugins.{SECTION}.allow on this node "
                       f"(allowed: {', '.join(self.allow)})")
