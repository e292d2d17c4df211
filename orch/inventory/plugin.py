"""The inventory plugin's hooks: registration beside ``orch server``, discovery from the
store, and job history for every client. Each part is read from the ``inventory`` plugin
section and switched off there."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from orch.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from orch.core.config import Settings
    from orch.core.discovery import DiscoveryMethod
    from orch.core.inventory import CallObserver, InventoryStore, ServerService
    from orch.core.plugins import PluginRegistry


@hookimpl
def orch_settings() -> Mapping[str, type]:
    """Declare the ``inventory`` section."""
    from orch.inventory.settings import SECTION, InventorySettings

    return {SECTION: InventorySettings}


@hookimpl
def orch_server_services(settings: Settings) -> Iterable[ServerService]:
    from orch.inventory.publisher import RegistrationPublisher
    from orch.inventory.replycopy import ReplyCopier
    from orch.inventory.settings import InventorySettings

    inventory = InventorySettings.from_settings(settings)
    services: list[ServerService] = []
    if inventory.registration:
        services.append(RegistrationPublisher(inventory))
    if inventory.reply_copies:
        services.append(ReplyCopier())
    return services


@hookimpl
def orch_discovery_methods() -> Mapping[str, DiscoveryMethod]:
    from orch.inventory.discovery import AutoDiscovery, InventoryDiscovery

    return {"inventory": InventoryDiscovery(), "auto": AutoDiscovery()}


@hookimpl
def orch_call_observers(settings: Settings, registry: PluginRegistry) -> Iterable[CallObserver]:
    from orch.inventory.settings import InventorySettings

    inventory = InventorySettings.from_settings(settings)
    url = inventory.store
    if not url or not inventory.job_history:
        return []
    from orch.inventory.jobs import JobRecorder  # only with a store: every call asks

    def open_store() -> InventoryStore:
        return registry.inventory_store(url, settings)

    return [JobRecorder(open_store, settings.audit_redact)]
