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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orch.plugin import PluginSection, convert, setting, setting_group

SECTION = "puppet"

#: Puppet settings whose paths orch-puppet reads or writes. Any of them may be overridden.
PATH_KEYS: tuple[str, ...] = (
    "vardir", "statedir", "publicdir", "rundir", "logdir", "lastrunfile", "lastrunreport",
    "agent_catalog_run_lockfile", "agent_disabled_lockfile", "classfile", "resourcefile",
    "pidfile",
)

FACTS_COMMANDS = ("facter", "puppet")


def _names(value: Any) -> tuple[str, ...]:
    """Resource type names (a list, or a comma-separated string), lower-cased."""
    if value is None:
        return ()
    try:
        items = convert.string_list(value)
    except ValueError:
        raise ValueError("expected a list of resource type names") from None
    return tuple(item.strip().lower() for item in items if item.strip())


_key = setting
_bool = convert.boolean
_path = convert.optional_path
_optional_str = convert.optional_string
_positive_float = convert.positive(float)
_choice = convert.choice


@dataclass(frozen=True)
class PuppetPluginConfig(PluginSection):
    """The checked ``plugins.puppet`` section. Documented key by key in docs/puppet.md."""

    section_name = SECTION

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
        None, convert.optional(convert.positive(int)),
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
    paths: Mapping[str, str] = setting_group(
        PATH_KEYS, _path, "Overrides of the Puppet paths orch-puppet reads or writes "
        "(`vardir`, `statedir`, … — see docs/puppet.md); `{identity}` is expanded.")

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
