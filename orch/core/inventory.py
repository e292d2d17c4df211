"""The inventory seam: what an inventory store keeps and the contract every store honours.

A store remembers the fleet between commands — each node's last registration (identity,
facts, classes, agents, collective, version, start time) with the time it was last seen —
and the job history: every request a client sent and every reply it received. Stores come
from plugins through the ``orch_inventory_stores`` hook, keyed by the URL scheme of the
``store`` setting of the ``inventory`` plugin section (``sqlite:///var/lib/orch/inv.db``,
``postgresql://host/db``), so a site can add its own database without touching orch.

Nothing here knows a database: the built-in SQLite and PostgreSQL stores live in
:mod:`orch.inventory`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from orch.core.client import CallResult, Client
    from orch.core.protocol import Reply, Request
    from orch.core.server import Node
    from orch.core.transport import Transport


@dataclass(frozen=True)
class NodeRecord:
    """One node as its latest registration described it."""

    identity: str
    collective: str
    facts: Mapping[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    version: str = ""
    #: When the node's daemon started (epoch seconds, the node's clock).
    started: float = 0.0
    #: When a registry last received a registration from it (epoch seconds, the registry's).
    last_seen: float = 0.0
    #: Set by the registry's sweep when the node was not seen within ``stale_after``.
    stale: bool = False


@dataclass(frozen=True)
class ReplyRecord:
    """One reply as the client received it."""

    sender: str
    statuscode: int
    statusmsg: str
    data: Mapping[str, Any]
    received: float


@dataclass(frozen=True)
class JobRecord:
    """One request as sent, and what is known of its outcome so far."""

    request_id: str
    caller: str
    collective: str
    agent: str
    action: str
    data: Mapping[str, Any]
    filter: Mapping[str, Any]
    #: The nodes addressed, or None for a broadcast (nobody knew in advance).
    expected: tuple[str, ...] | None
    sent: float
    #: When the client finished collecting, or None while collecting (or if it died).
    finished: float | None = None
    replies: tuple[ReplyRecord, ...] = ()

    @property
    def ok(self) -> int:
        return sum(1 for reply in self.replies if reply.statuscode == 0)

    @property
    def failed(self) -> int:
        return sum(1 for reply in self.replies if reply.statuscode != 0)

    @property
    def no_response(self) -> int:
        if self.expected is None:
            return 0
        return len(set(self.expected) - {reply.sender for reply in self.replies})


class InventoryStore(Protocol):
    """Where registrations and job history are kept. Safe to use from one thread at a time;
    give each thread its own store (the job recorder does)."""

    def upsert_nodes(self, records: Sequence[NodeRecord]) -> None:
        """Insert or replace each node's record (one transaction for the batch)."""
        ...

    def nodes(self, collective: str | None = None, *,
              include_stale: bool = True) -> list[NodeRecord]:
        """Every node record, sorted by identity (of one collective when given)."""
        ...

    def fresh(self, collective: str, since: float) -> bool:
        """Whether any node of ``collective`` was seen at or after ``since``."""
        ...

    def mark_stale(self, older_than: float) -> int:
        """Mark nodes last seen before ``older_than`` stale; return how many changed."""
        ...

    def expire(self, older_than: float) -> int:
        """Delete nodes last seen before ``older_than``; return how many were deleted."""
        ...

    def record_job(self, job: JobRecord) -> None:
        """Record a request as sent (its replies, if any, are added too)."""
        ...

    def record_replies(self, request_id: str, replies: Iterable[ReplyRecord]) -> None:
        """Add replies to a recorded job (a reply already recorded is kept, not doubled)."""
        ...

    def finish_job(self, request_id: str, finished: float) -> None:
        """Note that the client stopped collecting for ``request_id``."""
        ...

    def jobs(self, limit: int = 50, before: tuple[float, str] | None = None
             ) -> list[JobRecord]:
        """The most recent jobs, newest first (by ``sent``, then ``request_id``, both
        descending), with their replies; with ``before=(sent, request_id)``, only the jobs
        after that one in this order — a page that does not shift as new jobs arrive."""
        ...

    def job(self, request_id: str) -> JobRecord | None:
        """One job by id, or by a unique prefix of it; None when unknown."""
        ...

    def expire_jobs(self, older_than: float) -> int:
        """Delete jobs sent before ``older_than`` with their replies; return how many."""
        ...

    def close(self) -> None:
        ...


class ServerService(Protocol):
    """Something that runs beside ``orch server`` (see ``orch_server_services``)."""

    def start(self, node: Node, transport: Transport, ready: threading.Event) -> None:
        """Begin (in threads of your own); ``ready`` is set whenever the daemon consumes."""
        ...

    def reloaded(self) -> None:
        ...

    def stop(self) -> None:
        ...


class InventoryReader(Protocol):
    """A discovery method that can also hand out what its store holds of each node, so a
    command can show a node without asking it (``orch inventory --from-inventory``). The
    built-in ``inventory`` discovery method is one; a command finds it with
    ``client.registry.discovery_methods()`` and checks for :meth:`records`."""

    def records(self, client: Client, filter: Mapping[str, Sequence[Any]],
                identities: Sequence[str] | None) -> list[NodeRecord]:
        """The stored nodes of the client's collective, stale ones included (and marked):
        those ``filter`` selects, and of those the ``identities`` named (all, for None),
        sorted by identity. Raises :class:`~orch.core.errors.ConfigError` when no store
        is configured."""
        ...


class CallObserver(Protocol):
    """Hears about every call a client makes (see ``orch_call_observers``)."""

    def sent(self, request: Request, expected: Sequence[str] | None) -> None:
        ...

    def replied(self, request: Request, reply: Reply) -> None:
        ...

    def finished(self, result: CallResult) -> None:
        ...

    def close(self) -> None:
        """Flush what is queued (bounded in time) and stop the observer's threads."""
        ...


def job_result(job: JobRecord) -> CallResult:
    """A recorded job as the :class:`~orch.core.client.CallResult` its command printed
    (``orch jobs show`` and ``orch api`` both rebuild it here)."""
    from orch.core.client import CallResult
    from orch.core.protocol import Reply, Status

    result = CallResult(job.agent, job.action, job.request_id,
                        None if job.expected is None else sorted(job.expected))
    for record in job.replies:
        try:
            status = Status(record.statuscode)
        except ValueError:
            status = Status.UNKNOWN_ERROR
        result.replies[record.sender] = Reply(job.request_id, record.sender, job.agent,
                                              job.action, status, record.statusmsg,
                                              dict(record.data), record.received)
        result.rtt[record.sender] = max(record.received - job.sent, 0.0)
    if job.finished is not None:
        result.elapsed = max(job.finished - job.sent, 0.0)
    else:
        result.error = "the client stopped before it finished collecting (killed?)"
    return result
