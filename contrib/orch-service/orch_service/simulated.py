"""Services of a simulated node: kept in memory, never touching the machine.

Simulated nodes (``orch demo``, ``orch sim``, ``orch.testing`` fleets) share one real
machine, so their service agent must not run ``systemctl``. Each simulated node gets a
plausible set of services instead — the base ones every node has, plus those its Puppet
classes imply (``nginx`` on ``role::web`` nodes, ``postgresql`` on database nodes) — with
a few percent of them stopped, the same ones for the same identity every time. Actions
change that state as the real ones would (start, stop, restart gives a new PID), so a
fleet-wide ``orch service cron restart`` then ``status`` shows what it did.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from orch_service.commands_run import CommandResult
from orch_service.providers import EXPECTED, RUNNING, STOPPED, UNKNOWN, check_name

#: Services every simulated node has.
BASE_SERVICES = ("cron", "ssh", "rsyslog", "orch")
#: Services a Puppet class brings.
CLASS_SERVICES = {
    "nginx": ("nginx",), "postgresql": ("postgresql",), "redis": ("redis-server",),
    "haproxy": ("haproxy",), "prometheus": ("prometheus", "node-exporter"),
    "python": ("gunicorn",), "profile::worker": ("celery",),
}
#: Per mille of a node's services that are stopped when the simulation starts.
STOPPED_PER_MILLE = 30


def catalogue(classes: Iterable[str]) -> tuple[str, ...]:
    names = list(BASE_SERVICES)
    for cls in sorted(classes):
        names.extend(CLASS_SERVICES.get(cls, ()))
    return tuple(dict.fromkeys(names))


def _draw(identity: str, service: str) -> int:
    digest = hashlib.blake2s(f"{identity}/{service}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


@dataclass
class SimulatedService:
    running: bool
    pid: int


class SimulatedProvider:
    """One simulated node's services; thread-safe (actions may run concurrently)."""

    name = "simulated"

    def __init__(self, identity: str, classes: Iterable[str]) -> None:
        self.identity = identity
        self.services = frozenset(catalogue(classes))
        self._changed: dict[str, SimulatedService] = {}
        self._lock = threading.Lock()

    def _initial(self, service: str) -> SimulatedService:
        draw = _draw(self.identity, service)
        return SimulatedService(draw % 1000 >= STOPPED_PER_MILLE, 1000 + draw % 60000)

    def _get(self, service: str) -> SimulatedService:
        return self._changed.get(service) or self._initial(service)

    def state(self, service: str) -> str:
        check_name(service)
        if service not in self.services:
            return UNKNOWN
        with self._lock:
            return RUNNING if self._get(service).running else STOPPED

    def act(self, service: str, action: str) -> CommandResult:
        argv = ("simulated", service, action)
        if action not in EXPECTED:
            return CommandResult(argv, 2, f"unknown action {action}")
        with self._lock:
            current = self._get(service)
            if action == "reload" and not current.running:
                return CommandResult(argv, 7, f"{service} is not running; cannot reload")
            running = EXPECTED[action] == RUNNING
            pid = current.pid
            if action in ("start", "restart") and (action == "restart" or not current.running):
                pid = 1000 + (pid + 7919) % 60000
            self._changed[service] = SimulatedService(running, pid)
        return CommandResult(argv, 0, "")

    def pid(self, service: str) -> int | None:
        with self._lock:
            current = self._get(service)
        return current.pid if current.running and service in self.services else None


__all__ = ["STOPPED", "SimulatedProvider", "catalogue"]
