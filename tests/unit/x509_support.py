"""Helpers shared by the x509 provider's unit suites (isolated, owncache, CA lifecycle):
settings for a certificate issued by a test CA, and messages sealed by a provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orch.core.config import Settings
from orch.core.protocol import Envelope, Reply, Request, Status
from orch.security import pki
from orch.security.x509 import X509Provider


def credential_values(ca_dir: Path, role: str, name: str, **extra: Any) -> dict[str, Any]:
    """The settings of a process using ``name``'s certificate from the CA in ``ca_dir``;
    no certificate cache unless ``extra`` names one."""
    cert, key = pki.CAPaths(ca_dir).issued(role, name)
    return {"identity": name, "tls_cert": str(cert), "tls_key": str(key),
            "tls_ca": str(ca_dir / "ca.pem"), "cert_cache": "off", **extra}


def settings_for(ca_dir: Path, role: str, name: str, **extra: Any) -> Settings:
    return Settings().with_values(credential_values(ca_dir, role, name, **extra), "test")


def request_from(provider: X509Provider) -> Envelope:
    body = Request(agent="rpcutil", action="ping", collective="orch", sender="laptop",
                   caller="cert=alice", reply_to="replies.x", data={}).encode()
    return Envelope.decode(Envelope("request", body, provider.seal("request", body)).encode())


def reply_from(provider: X509Provider, sender: str = "web1") -> Envelope:
    body = Reply("abc", sender, "rpcutil", "ping", Status.OK, "OK", {}).encode()
    return Envelope.decode(Envelope("reply", body, provider.seal("reply", body)).encode())
