"""Simulated nodes: identities, facts and Puppet classes drawn from a plausible fleet.

Why a distribution and not copies of one node: filters, fact summaries and discovery only
show their cost and their bugs on a fleet that looks like a real one — most nodes in
production, a few roles much more common than others, several operating systems, hardware
that fits the role. Every node is a pure function of ``(seed, index)``, so a worker process
builds exactly its own slice of the fleet without the others, and a restarted simulation
gives every node the same name and facts again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from orch.core.fleet import NodeSpec

#: role: (share of the fleet, Puppet classes, CPU counts, memory sizes in MB).
ROLES: dict[str, tuple[int, tuple[str, ...], tuple[int, ...], tuple[int, ...]]] = {
    "web": (30, ("nginx", "profile::web"), (2, 4, 4, 8), (4096, 8192)),
    "app": (25, ("python", "profile::app"), (4, 8, 8, 16), (8192, 16384, 32768)),
    "worker": (15, ("python", "profile::worker"), (8, 16), (16384, 32768)),
    "db": (10, ("postgresql", "profile::database"), (8, 16, 32), (65536, 131072)),
    "cache": (10, ("redis", "profile::cache"), (2, 4), (16384, 32768, 65536)),
    "lb": (5, ("haproxy", "profile::loadbalancer"), (2, 4), (4096, 8192)),
    "monitoring": (5, ("prometheus", "profile::monitoring"), (4, 8), (8192, 16384)),
}
#: environment: share of the fleet.
ENVIRONMENTS: dict[str, int] = {"production": 60, "staging": 25, "development": 15}
#: datacenter: (share of the fleet, second octet of its addresses, time zone).
DATACENTERS: dict[str, tuple[int, int, str]] = {
    "ams1": (40, 10, "Europe/Amsterdam"),
    "fra1": (35, 20, "Europe/Berlin"),
    "nyc2": (25, 30, "America/New_York"),
}
#: (share, name, family, release, kernel release) of the operating systems.
SYSTEMS: tuple[tuple[int, str, str, str, str], ...] = (
    (45, "Debian", "Debian", "12", "6.1.0-27-amd64"),
    (25, "Ubuntu", "Debian", "22.04", "5.15.0-124-generic"),
    (10, "Ubuntu", "Debian", "24.04", "6.8.0-48-generic"),
    (15, "RedHat", "RedHat", "9", "5.14.0-427.el9.x86_64"),
    (5, "RedHat", "RedHat", "8", "4.18.0-553.el8_10.x86_64"),
)
DOMAIN = "example.net"


def _pick(rng: random.Random, weighted: Sequence[tuple[int, Any]]) -> Any:
    total = sum(weight for weight, _ in weighted)
    point = rng.random() * total
    for weight, value in weighted:
        point -= weight
        if point < 0:
            return value
    return weighted[-1][1]


_ROLE_WEIGHTS = [(share, name) for name, (share, *_) in ROLES.items()]
_ENV_WEIGHTS = [(share, name) for name, share in ENVIRONMENTS.items()]
_DC_WEIGHTS = [(share, name) for name, (share, _, _) in DATACENTERS.items()]
_SYSTEM_WEIGHTS = [(system[0], system) for system in SYSTEMS]


def identity_width(count: int) -> int:
    """Digits in the node number: ``web-007.ams1`` for small fleets, ``web-00007`` for 10,000+."""
    return max(3, len(str(count)))


def node_spec(index: int, seed: int = 7, width: int = 3) -> NodeSpec:
    """Node number ``index`` (from 1) of the fleet of ``seed``; the same every time."""
    if index < 1:
        raise ValueError(f"node numbers start at 1, not {index}")
    rng = random.Random(f"orch-sim/{seed}/{index}")
    role = _pick(rng, _ROLE_WEIGHTS)
    _, role_classes, cpus, memory = ROLES[role]
    environment = _pick(rng, _ENV_WEIGHTS)
    datacenter = _pick(rng, _DC_WEIGHTS)
    _, octet, timezone = DATACENTERS[datacenter]
    _, os_name, family, release, kernel_release = _pick(rng, _SYSTEM_WEIGHTS)
    hostname = f"{role}-{index:0{width}d}"
    identity = f"{hostname}.{datacenter}"
    virtual = "physical" if role == "db" and rng.random() < 0.7 else "kvm"
    facts: dict[str, Any] = {
        "role": role,
        "environment": environment,
        "datacenter": datacenter,
        "os": {"name": os_name, "family": family, "release": release},
        "kernel": "Linux",
        "kernelrelease": kernel_release,
        "hostname": hostname,
        "domain": f"{datacenter}.{DOMAIN}",
        "fqdn": f"{hostname}.{datacenter}.{DOMAIN}",
        "ipaddress": f"10.{octet}.{(index >> 8) & 0xFF}.{index & 0xFF}",
        "timezone": timezone,
        "virtual": virtual,
        "is_virtual": virtual != "physical",
        "processorcount": rng.choice(cpus),
        "memorysize_mb": rng.choice(memory),
        "uptime_seconds": rng.randint(600, 90 * 86400),
    }
    classes = frozenset(["profile::base", f"role::{role}", *role_classes])
    return NodeSpec(identity, facts, classes)


def node_specs(count: int, seed: int = 7, first: int = 1,
               last: int | None = None) -> list[NodeSpec]:
    """Nodes ``first`` to ``last`` (inclusive; default: all) of a fleet of ``count`` nodes."""
    if count < 1:
        raise ValueError(f"a simulated fleet needs at least one node, not {count}")
    last = count if last is None else last
    if not 1 <= first <= last <= count:
        raise ValueError(f"nodes {first}..{last} are not within a fleet of {count}")
    width = identity_width(count)
    return [node_spec(index, seed, width) for index in range(first, last + 1)]


def partition(count: int, parts: int) -> list[tuple[int, int]]:
    """``(first, last)`` node numbers of ``parts`` slices as equal as can be (none empty)."""
    if count < 1 or parts < 1:
        raise ValueError("count and parts must be positive")
    parts = min(parts, count)
    size, extra = divmod(count, parts)
    slices = []
    first = 1
    for part in range(parts):
        last = first + size - 1 + (1 if part < extra else 0)
        slices.append((first, last))
        first = last + 1
    return slices
