"""``inventory`` and ``auto`` discovery: answer from the store, without asking the fleet.

``inventory`` evaluates the whole filter — facts, classes, identities, agents and compound
expressions, through the very filter kinds the nodes use — against each non-stale node's
latest registration. ``auto`` uses the inventory when a store is configured and *fresh*
(some node of the collective registered within ``stale_after``: a registry is feeding it),
else broadcast discovery; it says which in the log. The store's answer is the fleet as it
last described itself: a node that left since is reported by the call as not answering,
with when it was last seen.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orch.core.discovery import Discovered
from orch.core.errors import ConfigError, OrchError
from orch.core.filter import FilterSyntaxError, NodeView
from orch.inventory.settings import InventorySettings

if TYPE_CHECKING:
    from orch.core.client import Client
    from orch.core.inventory import InventoryStore, NodeRecord

log = logging.getLogger(__name__)


def open_client_store(client: Client) -> InventoryStore | None:
    """The store the client's settings name, or None when none is configured."""
    url = InventorySettings.from_settings(client.settings).store
    if not url:
        return None
    return client.registry.inventory_store(url, client.settings)


def select(client: Client, records: Sequence[NodeRecord],
           filter: Mapping[str, Sequence[Any]], agent: str | None) -> list[str]:
    """The identities among ``records`` hosting ``agent`` (any, for None) that ``filter``
    selects, sorted."""
    engine = client.filters
    if filter:
        engine.check(filter)  # a filter every node would refuse is refused here too
    chosen = []
    for record in records:
        if agent is not None and agent not in record.agents:
            continue
        view = NodeView(record.identity, record.facts, frozenset(record.classes),
                        frozenset(record.agents))
        try:
            if not filter or engine.matches(filter, view):
                chosen.append(record.identity)
        except FilterSyntaxError as exc:  # as a node would: not selected
            log.debug("%s not selected: %s", record.identity, exc)
    return sorted(chosen)


def discover_in(client: Client, store: InventoryStore, filter: Mapping[str, Sequence[Any]],
                agent: str) -> list[str]:
    """The non-stale nodes of the store ``filter`` selects among those hosting ``agent``:
    by distinct value when the filter allows (:mod:`orch.inventory.select`: every built-in
    kind, compound expressions included), else node by node."""
    if filter:
        client.filters.check(filter)
    # Imported here: ``auto`` without a store configured (the common case) never selects.
    from orch.inventory.select import indexed_select

    found = indexed_select(store, client.filters, client.settings.collective, filter, agent)
    if found is not None:
        return found
    records = store.nodes(client.settings.collective, include_stale=False)
    return select(client, records, filter, agent)


def _last_seen_notes(client: Client) -> Callable[[Sequence[str]], Mapping[str, str]]:
    """Notes for silent nodes: when the inventory last heard from each."""
    def explain(silent: Sequence[str]) -> Mapping[str, str]:
        store = open_client_store(client)
        if store is None or not hasattr(store, "last_seen"):
            return {}
        try:
            seen = store.last_seen(client.settings.collective, silent)
        finally:
            store.close()
        return {name: "last seen " + datetime.datetime.fromtimestamp(when).strftime(
            "%Y-%m-%d %H:%M:%S") for name, when in seen.items()}

    return explain


class InventoryDiscovery:
    """Discovery from the store alone (a ConfigError when no store is configured)."""

    def discover(self, client: Client, filter: Mapping[str, Sequence[Any]],
                 agent: str) -> Discovered:
        started = time.monotonic()
        store = open_client_store(client)
        if store is None:
            raise ConfigError("--discovery-method inventory needs a store: set "
                              "plugins.inventory.store in the config")
        try:
            found = Discovered(discover_in(client, store, filter, agent),
                               explain=_last_seen_notes(client))
        finally:
            store.close()
        log.info("discovery method=inventory nodes=%d seconds=%.4f", len(found),
                 time.monotonic() - started)
        return found

    def records(self, client: Client, filter: Mapping[str, Sequence[Any]],
                identities: Sequence[str] | None) -> list[NodeRecord]:
        """What the store holds of the nodes ``filter`` and ``identities`` name, stale
        ones included (``orch inventory --from-inventory``; see
        :class:`orch.core.inventory.InventoryReader`)."""
        store = open_client_store(client)
        if store is None:
            raise ConfigError("--from-inventory needs a store: set plugins.inventory.store "
                              "in the config")
        try:
            records = store.nodes(client.settings.collective)
        finally:
            store.close()
        chosen = set(select(client, records, filter, None))
        if identities is not None:
            chosen &= set(identities)
        return sorted((r for r in records if r.identity in chosen), key=lambda r: r.identity)


class AutoDiscovery:
    """The inventory when configured and fresh, else broadcast."""

    def discover(self, client: Client, filter: Mapping[str, Sequence[Any]],
                 agent: str) -> list[str]:
        started = time.monotonic()
        settings = InventorySettings.from_settings(client.settings)
        found: list[str] | None = None
        try:
            store = open_client_store(client)
        except OrchError as exc:  # an unreachable store must not stop the command
            log.warning("inventory not used (%s); discovering by broadcast", exc)
            store = None
        if store is not None:
            try:
                fresh = store.fresh(client.settings.collective,
                                    time.time() - settings.stale_after)
                found = discover_in(client, store, filter, agent) if fresh else None
            finally:
                store.close()
            if found is not None:
                found = Discovered(found, explain=_last_seen_notes(client))
                log.info("discovery method=inventory (auto) nodes=%d seconds=%.4f",
                         len(found), time.monotonic() - started)
                return found
            log.info("inventory has no node seen within %.0f s; discovering by broadcast",
                     settings.stale_after)
        broadcast = client.registry.discovery_methods("broadcast")["broadcast"]
        result = broadcast.discover(client, filter, agent)
        log.info("discovery method=broadcast (auto) nodes=%d seconds=%.4f", len(result),
                 time.monotonic() - started)
        return result
