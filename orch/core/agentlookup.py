"""The agents a client knows, found by name: one agent's DDL imports one agent plugin.

A client needs agents for their DDLs (argument options, validation, output, timeouts),
almost always one agent per command. Asking every plugin for every agent imports each
agent plugin installed (orch-puppet, orch-package … some tens of milliseconds at every
start); :meth:`orch.core.plugins.PluginRegistry.agent` imports only those that may provide
the name. Listing all of them (help, completion, an "installed here" error) still asks every
plugin.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orch.core.agent import Agent
    from orch.core.config import Settings
    from orch.core.plugins import PluginRegistry


class AgentLookup(Mapping[str, "type[Agent]"]):
    """The agents installed for ``settings``, as a read-only mapping by name.

    Looking one up (``lookup[name]``, ``.get``, ``in``) imports only the plugins that may
    provide it; iterating or ``len`` loads them all, once.
    """

    def __init__(self, registry: PluginRegistry, settings: Settings) -> None:
        self._registry = registry
        self._settings = settings
        self._found: dict[str, type[Agent] | None] = {}
        self._all: dict[str, type[Agent]] | None = None

    def __getitem__(self, name: str) -> type[Agent]:
        if self._all is not None:
            return self._all[name]
        if name not in self._found:
            self._found[name] = self._registry.agent(name, self._settings)
        cls = self._found[name]
        if cls is None:
            raise KeyError(name)
        return cls

    def _everything(self) -> dict[str, type[Agent]]:
        if self._all is None:
            self._all = self._registry.agents(self._settings)
        return self._all

    def __iter__(self) -> Iterator[str]:
        return iter(self._everything())

    def __len__(self) -> int:
        return len(self._everything())
