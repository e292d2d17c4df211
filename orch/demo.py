"""The demo fleet: plausible simulated nodes (deterministic for a seed), the settings they
run with, and a throw-away CA for tests (``orch.testing``); ``orch demo`` itself runs on
:mod:`orch.sim`."""

from __future__ import annotations

from collections.abc import Mapping
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


#: The demo's action policy: what a server without ``policy_dir`` does, said on purpose.
DEMO_POLICY = """\
# orch demo: the simulated nodes' action policy (docs/actionpolicy.md explains the rules).
# The demo's throw-away client may run every action on every node: on a real fleet, allow
# named callers and leave the default at deny.
policy default allow
"""


def demo_node_settings(settings: Mapping[str, Any], scratch: Path) -> dict[str, Any]:
    """``settings`` for the demo's nodes, with an explicit action policy unless they name one.

    A server started without ``policy_dir`` warns that every caller may run every action —
    right for a real server, but as the first line of a demo it names this machine as if it
    were a node, and says nothing the demo does not intend. So the demo writes
    :data:`DEMO_POLICY` into ``scratch`` and points the nodes at it; a ``--config`` that sets
    its own ``policy_dir`` (``plugins.actionpolicy``, or the top-level alias) is kept as is.
    """
    values = dict(settings)
    plugins = values.get("plugins")
    section = plugins.get("actionpolicy") if isinstance(plugins, Mapping) else None
    if "policy_dir" in values or (isinstance(section, Mapping) and "policy_dir" in section):
        return values
    directory = scratch / "policies"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "default.policy").write_text(DEMO_POLICY, encoding="utf-8")
    values["plugins"] = {**(plugins if isinstance(plugins, Mapping) else {}),
                         "actionpolicy": {**(section or {}), "policy_dir": str(directory)}}
    return values


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
