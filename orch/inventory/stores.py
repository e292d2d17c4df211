"""The built-in inventory stores, registered through ``orch_inventory_stores`` like any
third-party store would be: ``sqlite://`` (embedded default) and ``postgresql://``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from orch.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from orch.core.config import Settings
    from orch.core.inventory import InventoryStore


def _sqlite(url: str, settings: Settings) -> InventoryStore:
    from orch.inventory.sqlite import open_sqlite

    return open_sqlite(url, settings)


def _postgres(url: str, settings: Settings) -> InventoryStore:
    from orch.inventory.postgres import open_postgres

    return open_postgres(url, settings)


@hookimpl
def orch_inventory_stores() -> Mapping[str, Callable[[str, Settings], InventoryStore]]:
    return {"sqlite": _sqlite, "postgresql": _postgres, "postgres": _postgres}
