"""The demo fleet: plausible simulated nodes (deterministic for a seed) and a throw-away CA."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orch.core.fleet import NodeSpec
from orch.core.security import SecurityProvider

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


@dataclass(frozen=True)
class DemoPKI:
    """A throw-away CA for the demo: one client certificate on disk, node certificates
    issued in memory as the fleet is built."""

    directory: Path
    client_settings: dict[str, str]
    ca_cert: Any
    ca_key: Any

    @classmethod
    def create(cls, directory: Path, client_name: str = "demo.user") -> DemoPKI:
        from orch.security import pki

        ca = pki.init_ca(directory, common_name="orch demo CA")
        client = pki.issue(directory, client_name, pki.ROLE_CLIENT)
        ca_cert, ca_key = pki.load_ca(directory)
        settings = {"security": "x509", "tls_cert": client.cert_path,
                    "tls_key": str(client.key_path), "tls_ca": ca.cert_path}
        return cls(directory, settings, ca_cert, ca_key)

    def node_security(self, spec: NodeSpec) -> SecurityProvider:
        """A provider holding a fresh node certificate for ``spec.identity``."""
        from orch.security import pki
        from orch.security.x509 import X509Provider

        cert, key = pki.issue_certificate(self.ca_cert, self.ca_key, spec.identity,
                                          pki.ROLE_NODE)
        return X509Provider(credentials=pki.Credentials(cert, key, (self.ca_cert,)))
