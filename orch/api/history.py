"""The inventory store, read by the API: the job history and the nodes' last registration.

Why here and not through ``orch.inventory``: the API is a plugin and plugins never import
each other; it reads the same ``inventory`` plugin section (``store``, ``stale_after``) and
opens the store through the core's ``orch_inventory_stores`` hook, like any third-party
reader would. Each read opens the store, queries and closes it (in a worker thread), so a
database outage is a 502 for that request, never a broken API.

Jobs from the history are shown to every token when a person or program other than the
API made them (their caller is not ``api=…``); a job the API started is shown only to the
token that started it, as for the jobs the API keeps in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from orch.api.errors import ApiError
from orch.api.jobs import Job
from orch.core.config import Settings
from orch.core.inventory import InventoryStore, JobRecord, NodeRecord, job_result
from orch.core.plugins import PluginRegistry

SECTION = "inventory"
#: The most history jobs ``GET /api/v1/jobs`` reads from the store.
HISTORY_LIMIT = 200
#: Default of the inventory's ``stale_after`` setting (seconds).
STALE_AFTER = 300.0

T = TypeVar("T")


@dataclass(frozen=True)
class Inventory:
    """How to reach the configured store, and when its nodes count as stale."""

    url: str
    stale_after: float
    settings: Settings
    registry: PluginRegistry

    @classmethod
    def configured(cls, settings: Settings, registry: PluginRegistry) -> Inventory | None:
        """The store the ``inventory`` section names, read through its declaration (the
        registry knows the section's class, so the API imports no plugin), or None."""
        declared = registry.settings_sections().get(SECTION)
        if declared is None:  # the inventory plugin is not installed
            return None
        section: object = settings.section(SECTION, declared)
        url = getattr(section, "store", None)
        if not url:
            return None
        return cls(url, float(getattr(section, "stale_after", STALE_AFTER)), settings, registry)

    def read(self, work: Callable[[InventoryStore], T]) -> T:
        """``work(store)`` on a freshly opened store; a store error is a 502."""
        try:
            store = self.registry.inventory_store(self.url, self.settings)
        except Exception as exc:
            raise ApiError(502, f"inventory store: {exc}") from None
        try:
            return work(store)
        except ApiError:
            raise
        except Exception as exc:
            raise ApiError(502, f"inventory store: {exc}") from None
        finally:
            store.close()

    def is_stale(self, node: NodeRecord, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return node.stale or node.last_seen < now - self.stale_after


def api_token_of(caller: str) -> str | None:
    """The API token a recorded job was made with (``api=NAME``), None if not the API's."""
    return caller[4:] if caller.startswith("api=") else None


def visible(record: JobRecord, token: str) -> bool:
    owner = api_token_of(record.caller)
    return owner is None or owner == token


def history_job(record: JobRecord) -> Job:
    """A recorded job as a finished :class:`Job`: same summary, document and events."""
    from orch.cli.output import result_document

    result = job_result(record)
    document = result_document(result)
    replies = [reply for reply in document["replies"]]
    events: list[tuple[str, dict[str, Any]]] = []
    if record.expected is not None:
        events.append(("discovered", {"count": len(record.expected),
                                      "nodes": sorted(record.expected)}))
    events.extend(("reply", reply) for reply in replies)
    state = "done" if record.finished is not None else "unfinished"
    events.append(("done", {"state": state, "error": result.error}))
    job = Job(record.request_id, api_token_of(record.caller) or "", record.agent,
              record.action, {"arguments": dict(record.data), "filter": dict(record.filter),
                              "nodes": None if record.expected is None
                              else sorted(record.expected)},
              created=record.sent, state=state, events=events, document=document,
              error=result.error, finished=record.finished, source="history",
              caller=record.caller)
    job.done_event.set()
    return job
