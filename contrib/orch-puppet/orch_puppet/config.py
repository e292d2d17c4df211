"""The ``plugins: {puppet: {...}}`` section of orch's configuration, checked once.

Every key is declared here with its type and default, so a typo is a start-up error that
names the key (and suggests the right one), exactly like orch's own settings::

    plugins:
      puppet:
        resource_types_allow: [file, service, package]
        facts_enabled: true
        facts_refresh_interval: 300
        confdir: /etc/puppet            # passed as --confdir to every puppet command
        statedir: /srv/agents/{identity}/state   # {identity}: the orch node's identity

Path keys (:data:`PATH_KEYS`) override what ``puppet config print`` reports; ``{identity}``
in ``confdir``, ``run_log`` or any path key is replaced by the node's identity, which is how
one process can host many simulated nodes, each with its own Puppet state directory.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from orch.core.errors import ConfigError

SECTION = "puppet"

#: Puppet settings whose paths orch-puppet reads or writes. Any of them may be overridden.
PATH_KEYS: tuple[str, ...] = (
    "vardir", "statedir", "publicdir", "rundir", "logdir", "lastrunfile", "lastrunreport",
    "agent_catalog_run_lockfile", "agent_disabled_lockfile", "classfile", "resourcefile",
    "pidfile",
)

FACTS_COMMANDS = ("facter", "puppet")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "no", "off", "0"):
        return False
    raise ValueError("expected true or false")


def _positive_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a positive number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("expected a positive number") from None
    if not 0 < number < float("inf"):
        raise ValueError("expected a positive number")
    return number


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected a positive whole number")
    try:
        number = int(value)
    except ValueError:
        raise ValueError("expected a positive whole number") from None
    if number <= 0:
        raise ValueError("expected a positive whole number")
    return number


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _path(value: Any) -> str | None:
    text = _optional_str(value)
    if text in (None, ""):
        return None
    if "\0" in str(text):
        raise ValueError("a path cannot contain NUL")
    return text


def _names(value: Any) -> tuple[str, ...]:
    """A list of resource type names, or a comma-separated string of them."""
    if value is None:
        return ()
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        items = [part.strip() for part in value]
    else:
        raise ValueError("expected a list of resource type names")
    return tuple(item.lower() for item in items if item)


def _choice(*options: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return str(value)

    return convert


def _key(default: Any, convert: Callable[[Any], Any], doc: str) -> Any:
    return field(default=default, metadata={"convert": convert, "doc": doc})


@dataclass(frozen=True)
class PuppetPluginConfig:
    """The checked ``plugins.puppet`` section. Documented key by key in docs/puppet.md."""

    puppet_bin: str | None = _key(
        None, _path, "The puppet command (default: `puppet` on PATH, then Puppet's AIO "
        "/opt/puppetlabs/bin/puppet).")
    puppet_ruby: str | None = _key(
        None, _path, "The Ruby that runs Puppet's library for the resource action (default: "
        "the interpreter named by the puppet script's #! line).")
    facter_bin: str | None = _key(
        None, _path, "The facter command (default: `facter` on PATH, then AIO's).")
    confdir: str | None = _key(
        None, _path, "Passed as --confdir to every puppet command (default: Puppet's own).")
    config_print: bool = _key(
        True, _bool, "Ask `puppet config print` for the paths at start-up; false uses the "
        "overrides and the platform's defaults only (simulated nodes).")
    discover_at_start: bool = _key(
        True, _bool, "Run `puppet config print` (in the background) when the daemon starts; "
        "false defers it to the first puppet action (no Ruby start-up cost for daemons that "
        "never get one).")
    command_timeout: float = _key(
        50.0, _positive_float, "Seconds any foreground puppet/ruby command may take (under "
        "the agent's 60 s action deadline).")
    run_log: str | None = _key(
        None, _optional_str, "Where the output of the latest run started by orch goes "
        "(default: <logdir>/orch-runonce.log; an empty string discards it).")
    max_run_time: float = _key(
        7200.0, _positive_float, "A run started by orch is terminated after this many seconds.")
    splay: bool = _key(
        False, _bool, "Default of runonce's splay input.")
    splaylimit: int | None = _key(
        None, lambda v: None if v is None else _positive_int(v),
        "Default of runonce's splaylimit input (default: Puppet's splaylimit).")
    usecacheonfailure: bool = _key(
        False, _bool, "Let a run whose catalog compile fails apply the cached catalog (Puppet's "
        "default). orch passes --no-usecacheonfailure unless this is true, as `puppet agent "
        "-t` does, so a failed compile is reported as a failed run.")
    resource_types_allow: tuple[str, ...] = _key(
        (), _names, "Resource types the resource action may manage; `all` allows every type "
        "not denied. Default: none (the resource action is refused).")
    resource_types_deny: tuple[str, ...] = _key(
        (), _names, "Resource types the resource action never manages (wins over allow).")
    resource_allow_managed: bool = _key(
        True, _bool, "Allow the resource action on resources that the node's catalog "
        "manages (resources.txt); false refuses them, so orch and Puppet never fight.")
    facts_enabled: bool = _key(
        False, _bool, "Add facter's facts to the node's facts (off by default, so nodes "
        "without Puppet never run facter).")
    facts_command: str = _key(
        "facter", _choice(*FACTS_COMMANDS), "`facter` runs `facter --json`; `puppet` runs "
        "`puppet facts show --render-as json` (adds facts from Puppet modules).")
    facts_refresh_interval: float = _key(
        300.0, _positive_float, "Seconds between background facter runs.")
    facts_timeout: float = _key(
        60.0, _positive_float, "Seconds one facter run may take before it is killed.")
    paths: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def documented(cls) -> dict[str, str]:
        """``{key: description}`` of every key (path overrides excluded), for docs."""
        return {f.name: f.metadata["doc"] for f in fields(cls) if "doc" in f.metadata}

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> PuppetPluginConfig:
        """Check ``section``; raise :class:`ConfigError` naming ``plugins.puppet.<key>``."""
        known = {f.name: f for f in fields(cls) if "convert" in f.metadata}
        values: dict[str, Any] = {}
        paths: dict[str, str] = {}
        for key, value in section.items():
            where = f"plugins.{SECTION}.{key}"
            if key in PATH_KEYS:
                try:
                    path = _path(value)
                except ValueError as exc:
                    raise ConfigError(f"{where}: bad value {value!r}: {exc}") from None
                if path is not None:
                    paths[key] = path
                continue
            if key not in known:
                hint = difflib.get_close_matches(key, [*known, *PATH_KEYS], n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ConfigError(f"unknown setting {where}{suggestion}")
            try:
                values[key] = known[key].metadata["convert"](value)
            except ValueError as exc:
                raise ConfigError(f"{where}: bad value {value!r}: {exc}") from None
        return cls(**values, paths=paths)

    @classmethod
    def from_settings(cls, settings: Any) -> PuppetPluginConfig:
        """The section of orch ``settings`` (anything with ``plugin(name)``)."""
        return cls.from_section(settings.plugin(SECTION))

    def allows_type(self, type_name: str) -> tuple[bool, str]:
        """Whether the resource action may manage ``type_name``, and why not."""
        name = type_name.lower()
        if name in self.resource_types_deny or "all" in self.resource_types_deny:
            return False, (f"resource type {name!r} is denied on this node "
                           f"(plugins.{SECTION}.resource_types_deny)")
        if name in self.resource_types_allow or "all" in self.resource_types_allow:
            return True, ""
        if not self.resource_types_allow:
            return False, (f"resource type {name!r} is not allowed: this node allows no "
                           f"resource types (set plugins.{SECTION}.resource_types_allow)")
        return False, (f"resource type {name!r} is not allowed on this node (allowed: "
                       f"{', '.join(self.resource_types_allow)})")


def expand(template: str | None, identity: str) -> str | None:
    """Replace ``{identity}`` in ``template`` (nothing else is interpreted)."""
    if template is None:
        return None
    return template.replace("{identity}", identity)
