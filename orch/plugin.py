"""The public API for plugin authors: everything a plugin may import from orch, in one place.

A plugin (built-in or third-party) imports :data:`hookimpl`, the contracts it implements and
the helpers it uses from here; anything not listed is private to orch and may change. The
names are resolved lazily (:pep:`562`), so ``from orch.plugin import hookimpl`` — the first
line of every plugin module — imports pluggy and nothing else, and a plugin's cost at start-up
is only what it uses.

What is here, by purpose:

* **Registering**: :data:`hookimpl`.
* **Settings**: :class:`PluginSection` (the base of a section class), :func:`setting`,
  :func:`setting_group`, :func:`documented_settings`,
  :mod:`convert` (the converters orch's own settings use, and ``names_or_all`` for a
  plugin's allow/deny lists), :func:`allow_decision` (what those lists let a changing
  action touch, and why not), :class:`Settings`, :class:`ConfigError`.
* **Agents**: :class:`Agent`, :func:`action`, :class:`ActionRequest`, :class:`ActionReply`,
  :class:`ActionFailed`, :class:`NodeContext`, :class:`Status`, :func:`agent_or_simulation`
  (the ``orch_agents`` answer of an agent whose settings can ask for its simulation).
* **The other seams**: :class:`Transport`, :class:`ClientChannel`, :class:`NodeBinding`,
  :class:`Requirement`, :class:`SecurityProvider`, :class:`Verified`, :class:`Authorizer`,
  :class:`Decision`, :class:`FilterKind`, :class:`FilterEngine`, :class:`NodeView`,
  :class:`FactSource`, :func:`read_classes`, :class:`DiscoveryMethod`,
  :class:`Discovered`, :func:`resolve_credential_paths`.
* **Child processes**: :func:`terminate_group`, :func:`signal_group` (stopping a command
  and everything it started), :func:`run_command`, :class:`CommandResult`,
  :class:`CommandError` (one system command for an agent: argv, deadline, bounded output).
* **Errors**: :class:`OrchError`, :class:`PluginError`, :class:`SecurityError`,
  :class:`TransportError`, :class:`ProtocolError`.
* **Commands** (``orch_cli_commands``): :func:`client_options`, :class:`ClientContext`,
  :class:`OrchCommandError`, :mod:`output` (printing results as orch's own commands do),
  :class:`Client`, :class:`CallResult`, :func:`duration_text` (seconds as ``1h30m``),
  :func:`summarize` and :class:`Summary` (a DDL's aggregate summaries of a call, as
  ``orch rpc`` computes them), :func:`call_fleet`, :class:`FleetCall` and
  :func:`needs_confirmation`, :func:`ask_above`, :func:`confirm` (one action over the
  fleet, asking first with the real node count); ``output.groups``,
  ``output.summary_line`` and ``output.changed_line`` print the fleet-wide view.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from orch.core.markers import hookimpl

if TYPE_CHECKING:
    from orch.cli import output
    from orch.cli.fleetcall import (
        FleetCall,
        ask_above,
        call_fleet,
        confirm,
        needs_confirmation,
    )
    from orch.cli.options import ClientContext, OrchCommandError, client_options
    from orch.core import convert
    from orch.core.agent import (
        ActionFailed,
        ActionReply,
        ActionRequest,
        Agent,
        NodeContext,
        action,
        agent_or_simulation,
    )
    from orch.core.allowlist import allow_decision
    from orch.core.authorization import Authorizer, Decision
    from orch.core.client import CallResult, Client
    from orch.core.command import CommandError, CommandResult, run_command
    from orch.core.config import Settings
    from orch.core.credentials import CredentialPaths, resolve_credential_paths
    from orch.core.discovery import Discovered, DiscoveryMethod
    from orch.core.errors import (
        ConfigError,
        OrchError,
        PluginError,
        ProtocolError,
        SecurityError,
        TransportError,
    )
    from orch.core.facts import FactSource, read_classes
    from orch.core.filter import FilterEngine, FilterKind, NodeView
    from orch.core.processes import signal_group, terminate_group
    from orch.core.protocol import Status
    from orch.core.requirements import Requirement
    from orch.core.sections import PluginSection, setting, setting_group
    from orch.core.sections import documented as documented_settings
    from orch.core.security import SecurityProvider, Verified
    from orch.core.timefmt import duration_text
    from orch.core.transport import ClientChannel, NodeBinding, Transport
    from orch.ddl.aggregate import Summary, summarize

#: ``name: (module, attribute or None for the module itself)``.
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "output": ("orch.cli.output", None),
    "convert": ("orch.core.convert", None),
    **{name: ("orch.cli.fleetcall", name)
       for name in ("FleetCall", "ask_above", "call_fleet", "confirm", "needs_confirmation")},
    **{name: ("orch.cli.options", name)
       for name in ("ClientContext", "OrchCommandError", "client_options")},
    **{name: ("orch.core.agent", name)
       for name in ("ActionFailed", "ActionReply", "ActionRequest", "Agent", "NodeContext",
                    "action", "agent_or_simulation")},
    **{name: ("orch.core.authorization", name) for name in ("Authorizer", "Decision")},
    **{name: ("orch.core.client", name) for name in ("CallResult", "Client")},
    "Settings": ("orch.core.config", "Settings"),
    **{name: ("orch.core.command", name)
       for name in ("CommandError", "CommandResult", "run_command")},
    **{name: ("orch.core.credentials", name)
       for name in ("CredentialPaths", "resolve_credential_paths")},
    **{name: ("orch.core.discovery", name) for name in ("Discovered", "DiscoveryMethod")},
    **{name: ("orch.core.errors", name)
       for name in ("ConfigError", "OrchError", "PluginError", "ProtocolError",
                    "SecurityError", "TransportError")},
    **{name: ("orch.core.facts", name) for name in ("FactSource", "read_classes")},
    **{name: ("orch.core.filter", name) for name in ("FilterEngine", "FilterKind", "NodeView")},
    "Status": ("orch.core.protocol", "Status"),
    "allow_decision": ("orch.core.allowlist", "allow_decision"),
    **{name: ("orch.core.processes", name) for name in ("signal_group", "terminate_group")},
    "Requirement": ("orch.core.requirements", "Requirement"),
    **{name: ("orch.core.sections", name)
       for name in ("PluginSection", "setting", "setting_group")},
    "documented_settings": ("orch.core.sections", "documented"),
    **{name: ("orch.core.security", name) for name in ("SecurityProvider", "Verified")},
    **{name: ("orch.core.transport", name)
       for name in ("ClientChannel", "NodeBinding", "Transport")},
    "duration_text": ("orch.core.timefmt", "duration_text"),
    **{name: ("orch.ddl.aggregate", name) for name in ("Summary", "summarize")},
}

__all__ = [
    "ActionFailed",
    "ActionReply",
    "ActionRequest",
    "Agent",
    "Authorizer",
    "CallResult",
    "Client",
    "ClientChannel",
    "ClientContext",
    "CommandError",
    "CommandResult",
    "ConfigError",
    "CredentialPaths",
    "Decision",
    "Discovered",
    "DiscoveryMethod",
    "FactSource",
    "FilterEngine",
    "FilterKind",
    "FleetCall",
    "NodeBinding",
    "NodeContext",
    "NodeView",
    "OrchCommandError",
    "OrchError",
    "PluginError",
    "PluginSection",
    "ProtocolError",
    "Requirement",
    "SecurityError",
    "SecurityProvider",
    "Settings",
    "Status",
    "Summary",
    "Transport",
    "TransportError",
    "Verified",
    "action",
    "agent_or_simulation",
    "allow_decision",
    "ask_above",
    "call_fleet",
    "client_options",
    "confirm",
    "convert",
    "documented_settings",
    "duration_text",
    "hookimpl",
    "needs_confirmation",
    "output",
    "read_classes",
    "resolve_credential_paths",
    "run_command",
    "setting",
    "setting_group",
    "signal_group",
    "summarize",
    "terminate_group",
]


def __getattr__(name: str) -> Any:
    """Import an exported name on first use (PEP 562)."""
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'orch.plugin' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
