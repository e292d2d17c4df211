"""The demo fleet: plausible simulated nodes (deterministic for a seed) and a throw-away CA
for tests (``orch.testing``); ``orch demo`` itself runs on :mod:`orch.sim`, whose
:mod:`orch.sim.policy` gives its nodes their action policy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orch.core.fleet import NodeSpec
from orch.core.security import SecurityProvider


def demo_specs(count: int, seed: int = 7) -> list[NodeSpec]:
    """``count`` simulated nodes — the fleet ``orch demo`` and ``orch sim`` serve
    (see :mod:`orch.sim.facts` for the distribution of roles, systems and hardware)."""
    from orch.sim.facts import node_specs

    return node_specs(count, seed)


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
