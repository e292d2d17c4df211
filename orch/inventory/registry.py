"""``orch registry``: consume registrations into the inventory store, and keep it tidy.

The broker thread only queues what arrives (a bounded queue: when the store falls
:data:`QUEUE_LIMIT` messages behind, new ones are dropped and counted, never buffered
without end). One writer thread verifies each message (:mod:`orch.inventory.registration`),
keeps the latest registration per node, and upserts a batch in one transaction — at most
:data:`BATCH_SECONDS` after the first message of the batch arrived, so a new node is in
the store well within a second. The same thread sweeps: nodes not seen within
``stale_after`` are marked stale, after ``expire_after`` deleted, jobs past
``job_retention`` deleted.

Several registries may run at once: each binds a queue of its own (named by its
identity), so each receives every registration; on one shared PostgreSQL their upserts are
idempotent.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable

from orch.core.config import Settings
from orch.core.errors import ConfigError, OrchError
from orch.core.inventory import InventoryStore, NodeRecord, ReplyRecord
from orch.core.plugins import PluginRegistry
from orch.core.security import close_provider
from orch.core.transport import NodeBinding
from orch.inventory import registration, replycopy
from orch.inventory.settings import InventorySettings

log = logging.getLogger(__name__)

QUEUE_LIMIT = 50_000
BATCH_SIZE = 1_000
BATCH_SECONDS = 0.05
#: The longest a sweep is put off (seconds).
SWEEP_INTERVAL = 30.0
#: How long stopping waits for the writer to store what it holds (seconds).
DRAIN_TIMEOUT = 10.0


def registry_identity(settings: Settings) -> str:
    """The name this registry's queue is bound under: unique per host and process."""
    return f"registry-{socket.gethostname()}-{os.getpid()}"


class Registry:
    """One registry process: a transport binding and a writer thread over one store."""

    def __init__(self, settings: Settings, plugins: PluginRegistry,
                 identity: str | None = None) -> None:
        self.settings = settings
        self.inventory = InventorySettings.from_settings(settings)
        if not self.inventory.store:
            raise ConfigError("orch registry needs a store: set plugins.inventory.store "
                              "(sqlite:///path.db or postgresql://…) or pass --store")
        self.identity = identity or registry_identity(settings)
        self.store: InventoryStore = plugins.inventory_store(self.inventory.store, settings)
        self.security = plugins.security_for(settings)
        self.transport = plugins.transport_for(settings)
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        #: Raw registrations from the broker, or records already verified (seeding).
        self._queue: queue.Queue[bytes | NodeRecord] = queue.Queue(QUEUE_LIMIT)
        self._plugins = plugins
        self._writer = threading.Thread(target=self._write_loop, name="orch-registry-writer",
                                        daemon=True)
        self.stored = 0
        self.dropped = 0
        self.rejected = 0

    # -- the broker thread -------------------------------------------------------------

    def handle(self, raw: bytes) -> None:
        """Queue one message (must not raise, must not block: it runs on the broker thread)."""
        try:
            self._queue.put_nowait(raw)
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("registry is %d registrations behind; dropped %d so far",
                            QUEUE_LIMIT, self.dropped)

    # -- the writer thread -------------------------------------------------------------

    def _write_loop(self) -> None:
        next_sweep = time.monotonic()
        announced = False
        while True:
            if not announced and self.ready.is_set():
                announced = True
                log.info("registry=%s consuming registrations", self.identity)
            batch = self._next_batch()
            if batch:
                self._store(batch)
            if time.monotonic() >= next_sweep:
                self.sweep()
                next_sweep = time.monotonic() + min(
                    SWEEP_INTERVAL, max(self.inventory.stale_after / 4, 1.0))
            if self.stop_event.is_set() and self._queue.empty():
                return

    def _seed(self) -> None:
        """Once consuming, store what the live fleet says of itself (see seed.py)."""
        from orch.inventory.seed import seed

        while not self.ready.wait(0.5):
            if self.stop_event.is_set():
                return
        for record in seed(self.settings, self._plugins):
            try:
                self._queue.put(record, timeout=DRAIN_TIMEOUT)
            except queue.Full:
                log.warning("seed: the registry is behind; the rest waits for registrations")
                return

    def _next_batch(self) -> list[bytes | NodeRecord]:
        batch: list[bytes | NodeRecord] = []
        try:
            batch.append(self._queue.get(timeout=0.5))
        except queue.Empty:
            return batch
        deadline = time.monotonic() + BATCH_SECONDS
        while len(batch) < BATCH_SIZE:
            try:
                batch.append(self._queue.get(timeout=max(deadline - time.monotonic(), 0)))
            except queue.Empty:
                break
        return batch

    def _store(self, batch: list[bytes | NodeRecord]) -> None:
        latest: dict[str, NodeRecord] = {}
        replies: dict[str, list[ReplyRecord]] = {}
        for raw in batch:
            if isinstance(raw, NodeRecord):
                latest[raw.identity] = raw
                continue
            try:
                reply = registration.open_reply(raw, self.security,
                                                max_bytes=self.settings.max_message_bytes)
                if registration.is_registration(reply):
                    record = registration.registration_record(
                        reply, self.settings.collective, clock_skew=self.settings.clock_skew)
                    latest[record.identity] = record
                elif self.inventory.job_history:
                    replies.setdefault(reply.request_id, []).append(ReplyRecord(
                        reply.sender, int(reply.statuscode), reply.statusmsg,
                        dict(reply.data), time.time()))
            except OrchError as exc:
                self.rejected += 1
                log.warning("message rejected: %s", exc)
        try:
            if latest:
                self.store.upsert_nodes(list(latest.values()))
            for request_id, records in replies.items():
                self.store.record_replies(request_id, records)
        except Exception as exc:  # a database outage must not end the registry
            log.error("could not store %d registrations and %d reply copies: %s",
                      len(latest), sum(map(len, replies.values())), exc)
            return
        self.stored += len(latest)
        if latest or replies:
            log.debug("stored %d registrations, %d reply copies", len(latest),
                      sum(map(len, replies.values())))

    def sweep(self, now: float | None = None) -> None:
        """Mark stale, expire nodes and old jobs (errors logged, never raised)."""
        now = time.time() if now is None else now
        try:
            stale = self.store.mark_stale(now - self.inventory.stale_after)
            expired = self.store.expire(now - self.inventory.expire_after)
            jobs = self.store.expire_jobs(now - self.inventory.job_retention)
        except Exception as exc:
            log.error("inventory sweep failed: %s", exc)
            return
        if stale or expired or jobs:
            log.info("sweep: %d node(s) now stale, %d expired, %d job(s) expired",
                     stale, expired, jobs)

    # -- the daemon --------------------------------------------------------------------

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT in the main thread)."""
        if threading.current_thread() is threading.main_thread():
            _on_signals(self.stop)
        binding = NodeBinding(self.settings.collective, self.identity,
                              (registration.ROUTE, replycopy.ROUTE), self.handle)
        self._writer.start()
        if self.inventory.seed:
            threading.Thread(target=self._seed, name="orch-registry-seed", daemon=True).start()
        log.info("registry=%s collective=%s store=%s broker=%s starting", self.identity,
                 self.settings.collective, str(self.inventory.store).split("://", 1)[0],
                 self.transport.display_url)
        try:
            self.transport.serve([binding], self.stop_event, self.ready)
        finally:
            self.stop_event.set()
            self._writer.join(timeout=DRAIN_TIMEOUT)
            self.transport.close()
            self.store.close()
            close_provider(self.security)
            log.info("registry=%s stopped: %d stored, %d rejected, %d dropped",
                     self.identity, self.stored, self.rejected, self.dropped)

    def stop(self) -> None:
        self.stop_event.set()


def _on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM/SIGINT only set the stop event (safe from a handler: Event.set takes no
    lock a handler could interrupt in this thread's hands — the serve loop polls it)."""
    def handler(*_: object) -> None:
        threading.Thread(target=stop, name="orch-registry-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    # A registry holds no file it could reopen, and its settings need a restart: SIGHUP
    # (sent by log rotation and reload-minded service managers) must not end it.
    signal.signal(signal.SIGHUP, lambda *_: None)
