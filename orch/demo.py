"""The demo fleet: plausible simulated nodes, deterministic for a given seed."""

from __future__ import annotations

import random

from orch.core.fleet import NodeSpec

ROLES = {
    "web": ["nginx", "profile::web"],
    "db": ["postgresql", "profile::database"],
    "cache": ["redis", "profile::cache"],
    "app": ["python", "profile::app"],
    "lb": ["haproxy", "profile::loadbalancer"],
}
ENVIRONMENTS = ("production", "production", "staging", "development")
DATACENTERS = ("ams1", "fra1", "nyc2")
SYSTEMS = (
    {"name": "Debian", "family": "Debian", "release": "12"},
    {"name": "Ubuntu", "family": "Debian", "release": "22.04"},
    {"name": "RedHat", "family": "RedHat", "release": "9"},
)


def demo_specs(count: int, seed: int = 7) -> list[NodeSpec]:
    """``count`` nodes with roles, environments, datacenters, OS facts and classes."""
    rng = random.Random(seed)
    roles = list(ROLES)
    specs = []
    for index in range(1, count + 1):
        role = roles[(index - 1) % len(roles)]
        datacenter = rng.choice(DATACENTERS)
        environment = rng.choice(ENVIRONMENTS)
        system = rng.choice(SYSTEMS)
        facts = {
            "role": role,
            "environment": environment,
            "datacenter": datacenter,
            "os": dict(system),
            "kernel": "Linux",
            "processorcount": rng.choice((2, 4, 8, 16)),
            "memorysize_mb": rng.choice((4096, 8192, 16384, 65536)),
            "uptime_seconds": rng.randint(600, 90 * 86400),
        }
        classes = frozenset(["profile::base", f"role::{role}", *ROLES[role]])
        specs.append(NodeSpec(f"{role}-{index:03d}.{datacenter}", facts, classes))
    return specs
