"""The ``plugins: {service: {...}}`` section of orch's configuration, checked once.

Every key is declared with its type, default and description (the shape of orch's declared
settings sections), so a typo is a start-up error naming the key::

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

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from orch_service.names import NAME_HELP, valid_name
from orch_service.orchapi import ConfigError

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


def _choice(*options: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return str(value)

    return convert


def _optional_path(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or "\0" in value:
        raise ValueError("expected a path")
    return value


def _key(default: Any, convert: Callable[[Any], Any], doc: str) -> Any:
    return field(default=default, metadata={"convert": convert, "doc": doc})


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
        50.0, _positive_float, "Seconds one systemctl or service(8) command may take (under "
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
        "/etc/init.d", _optional_path, "Where the SysV init scripts are.")

    @classmethod
    def documented(cls) -> dict[str, str]:
        """``{key: description}`` of every key, for docs."""
        return {f.name: f.metadata["doc"] for f in fields(cls)}

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> ServicePluginConfig:
        """Check ``section``; raise ``ConfigError`` naming ``plugins.service.<key>``."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in section.items():
            where = f"plugins.{SECTION}.{key}"
            if key not in known:
                hint = difflib.get_close_matches(key, list(known), n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ConfigError(f"unknown setting {where}{suggestion}")
            try:
                values[key] = known[key].metadata["convert"](value)
            except ValueError as exc:
                raise ConfigError(f"{where}: bad value {value!r}: {exc}") from None
        if values.get("init_dir", "") is None:
            values.pop("init_dir")
        timeout = values.get("command_timeout")
        if timeout is not None and timeout >= ACTION_TIMEOUT:
            raise ConfigError(f"plugins.{SECTION}.command_timeout: bad value {timeout:g}: must "
                              f"be below the action's {ACTION_TIMEOUT:g} s deadline, so that the "
                              "reply says what happened")
        return cls(**values)

    @classmethod
    def from_settings(cls, settings: Any) -> ServicePluginConfig:
        """The section of orch ``settings`` (anything with ``plugin(name)``)."""
        return cls.from_section(settings.plugin(SECTION))

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
