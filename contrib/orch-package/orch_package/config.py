"""The ``plugins: {package: {...}}`` section of orch's configuration, checked once.

Declared to orch through the ``orch_settings`` hook (:mod:`orch_package.plugin`), so orch
checks it like its own settings: a typo is an error naming the key and suggesting the right one, the
environment can set a key (``ORCH_PACKAGE_<KEY>``), and ``orch server`` checks it at start::

    plugins:
      package:
        allow: [openssl, nginx]     # or "all"; default: none, only the read-only actions
        deny: [linux-image-amd64]   # never changed, whatever allow says
        provider: auto              # auto, apt, simulated
        command_timeout: 240        # seconds one apt-get may take (the action's is 300)
        apt_options: ["Acquire::Retries=3"]   # passed to apt-get and apt-cache as -o
        confirm_above: 1            # `orch package NAME uninstall` asks above this many nodes

The section is read by the daemon (what the agent may do) and by the client (when the CLI
asks for confirmation); unknown keys are refused on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orch.plugin import PluginSection, allow_decision, convert, setting

from orch_package.names import NAME_HELP, valid_name

#: The agent's DDL timeout: the server gives up on an action after this long.
ACTION_TIMEOUT = 300.0
SECTION = "package"
PROVIDERS = ("auto", "apt", "simulated")
#: Actions that change a node; every other action only reads.
CHANGING = frozenset({"install", "uninstall", "update"})
#: Actions the CLI asks about before sending to many nodes.
DESTRUCTIVE = frozenset({"uninstall"})
LOCK_FILES = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")



def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of {what}")
    if any("\0" in v or "\n" in v for v in value):
        raise ValueError(f"expected a list of {what}, without NUL or newlines")
    return tuple(value)


def _options(value: Any) -> tuple[str, ...]:
    options = _strings(value, "KEY=VALUE apt options")
    for option in options:
        if "=" not in option or option.startswith("-"):
            raise ValueError(f"{option!r} is not KEY=VALUE")
    return options


def _paths(value: Any) -> tuple[str, ...]:
    return _strings(value, "paths")


_positive_float = convert.positive_number
_command_timeout = convert.seconds_below(ACTION_TIMEOUT)
_count = convert.count
_names = convert.names_or_all("package name", valid_name, NAME_HELP)
_key = setting
_choice = convert.choice


@dataclass(frozen=True)
class PackagePluginConfig(PluginSection):
    """The checked ``plugins.package`` section. Documented key by key in docs/package.md."""

    section_name = SECTION

    allow: tuple[str, ...] = _key(
        (), _names, "Packages the changing actions (install, uninstall, update) may act on; "
        "`all` allows every package not denied. Default: none (only status, count, md5 and "
        "outdated are answered).")
    deny: tuple[str, ...] = _key(
        (), _names, "Packages never changed, whatever `allow` says.")
    provider: str = _key(
        "auto", _choice(*PROVIDERS), "`auto` uses apt/dpkg when the node has dpkg; "
        "`simulated` keeps packages in memory and never touches the machine. (rpm/dnf: "
        "the provider interface is ready, the provider is not written yet.)")
    command_timeout: float = _key(
        240.0, _command_timeout, "Seconds one apt-get or dpkg-query may take (under the "
        "agent's 300 s action deadline); a command still running then is stopped and the "
        "action fails saying what state the package is left in.")
    lock_wait: float = _key(
        10.0, _positive_float, "Seconds an action waits for another orch package action on "
        "the same node before answering busy (the node runs one at a time).")
    apt_options: tuple[str, ...] = _key(
        (), _options, "apt configuration passed to apt-get and apt-cache as `-o KEY=VALUE` "
        "(e.g. a private sources list).")
    lock_files: tuple[str, ...] = _key(
        LOCK_FILES, _paths, "dpkg's lock files: when another process holds one the changing "
        "actions answer busy at once.")
    confirm_above: int = _key(
        1, _count, "Client side: `orch package NAME uninstall` asks for confirmation when it "
        "would address more nodes than this (`--yes` skips the question).")

    def allows(self, package: str) -> tuple[bool, str]:
        """Whether the changing actions may act on ``package``, and why not."""
        return allow_decision(package.split(":", 1)[0], self.allow, self.deny, noun="package",
                              setting=f"plugins.{SECTION}")
