"""Everything orch-service uses from orch, in one place.

They all come from orch's public plugin facade, ``orch.plugin``; every other module of this
distribution imports orch only through here.

Names are imported on first use (PEP 562): ``plugin.py`` runs in every ``orch`` command and
must not pull in the client and the CLI's output module to register a hook.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orch.plugin import (
        ActionFailed,
        ActionReply,
        ActionRequest,
        Agent,
        CallResult,
        Client,
        ClientContext,
        ConfigError,
        NodeContext,
        OrchCommandError,
        Status,
        action,
        client_options,
        hookimpl,
        output,
    )

#: ``{name: (module, attribute)}``; attribute None means the module itself.
_WHERE: dict[str, tuple[str, str | None]] = {name: ("orch.plugin", name) for name in (
    "output", "ClientContext", "OrchCommandError", "client_options", "ActionFailed",
    "ActionReply", "ActionRequest", "Agent", "NodeContext", "action", "CallResult", "Client",
    "ConfigError", "hookimpl", "Status")}

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
