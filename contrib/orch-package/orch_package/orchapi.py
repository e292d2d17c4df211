"""Everything orch-package uses from orch, in one place.

orch's public plugin facade (``orch.plugin``) is being written; until it lands these are the
same names orch-puppet imports today. Every other module of this distribution imports orch
only through here, so switching to the facade is a change to this file alone.

Names are imported on first use (PEP 562): ``plugin.py`` runs in every ``orch`` command and
must not pull in the client and the CLI's output module to register a hook.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orch.cli import output
    from orch.cli.options import ClientContext, OrchCommandError, client_options
    from orch.core.agent import (
        ActionFailed,
        ActionReply,
        ActionRequest,
        Agent,
        NodeContext,
        action,
    )
    from orch.core.client import CallResult, Client
    from orch.core.errors import ConfigError
    from orch.core.hookspecs import hookimpl
    from orch.core.protocol import Status

#: ``{name: (module, attribute)}``; attribute None means the module itself.
_WHERE: dict[str, tuple[str, str | None]] = {
    "output": ("orch.cli.output", None),
    "ClientContext": ("orch.cli.options", "ClientContext"),
    "OrchCommandError": ("orch.cli.options", "OrchCommandError"),
    "client_options": ("orch.cli.options", "client_options"),
    "ActionFailed": ("orch.core.agent", "ActionFailed"),
    "ActionReply": ("orch.core.agent", "ActionReply"),
    "ActionRequest": ("orch.core.agent", "ActionRequest"),
    "Agent": ("orch.core.agent", "Agent"),
    "NodeContext": ("orch.core.agent", "NodeContext"),
    "action": ("orch.core.agent", "action"),
    "CallResult": ("orch.core.client", "CallResult"),
    "Client": ("orch.core.client", "Client"),
    "ConfigError": ("orch.core.errors", "ConfigError"),
    "hookimpl": ("orch.core.hookspecs", "hookimpl"),
    "Status": ("orch.core.protocol", "Status"),
}

__all__ = [
    "ActionFailed", "ActionReply", "ActionRequest", "Agent", "CallResult", "Client",
    "ClientContext", "ConfigError", "NodeContext", "OrchCommandError", "Status", "action",
    "client_options", "hookimpl", "output",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = importlib.import_module(module)
    found = value if attribute is None else getattr(value, attribute)
    globals()[name] = found
    return found
