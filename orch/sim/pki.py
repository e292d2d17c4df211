"""The certificate authority of a simulation: one CA, a client certificate, node certificates.

Every simulated node gets its own ed25519 key and certificate, issued by the one CA all
worker processes share, so a client verifies each reply exactly as it would from a real
node. Issuing is cheap (about 0.16 ms a certificate), so each worker issues its own slice in
memory when it starts: nothing per node is ever written to disk, and N worker processes
issue N times faster than one.

The CA is either the operator's (``orch sim --ca DIR``, an ``orch ca`` directory) or the
simulation's own, kept in its state directory so that a restarted simulation is trusted by
the same client settings.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orch.core.errors import OrchError

if TYPE_CHECKING:
    from orch.core.fleet import NodeSpec
    from orch.core.security import SecurityProvider

#: The name of the client certificate a simulation writes for its operator.
CLIENT_NAME = "sim.operator"


class SimPKIError(OrchError):
    """The CA cannot be used or the client credentials cannot be written."""


@dataclass(frozen=True)
class SimCA:
    """A CA as PEM bytes: what a worker process needs to issue its nodes' certificates."""

    directory: Path
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def open(cls, directory: Path, *, create: bool) -> SimCA:
        """The CA in ``directory``; with ``create``, made there first when there is none."""
        from orch.security import pki

        directory = Path(directory)
        try:
            if create and not (directory / "ca.pem").exists():
                pki.init_ca(directory, common_name="orch sim CA")
            cert, key = pki.load_ca(directory)
        except OrchError as exc:
            raise SimPKIError(str(exc)) from None
        return cls(directory, pki.certificate_pem(cert), pki.private_key_pem(key))

    def _loaded(self) -> tuple[Any, Any]:
        loaded = self.__dict__.get("_loaded_pair")
        if loaded is None:
            from cryptography import x509
            from cryptography.hazmat.primitives import serialization

            loaded = (x509.load_pem_x509_certificate(self.cert_pem),
                      serialization.load_pem_private_key(self.key_pem, password=None))
            object.__setattr__(self, "_loaded_pair", loaded)
        return loaded

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def write_client(self, directory: Path, name: str = CLIENT_NAME) -> tuple[Path, Path]:
        """Issue a client certificate for ``name`` into ``directory``; return (cert, key).

        A new one each time (issuing is cheap), written beside the simulation's state, never
        into the operator's CA directory.
        """
        from orch.security import pki

        ca_cert, ca_key = self._loaded()
        cert, key = pki.issue_certificate(ca_cert, ca_key, name, pki.ROLE_CLIENT)
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            _write_private(key_path, pki.private_key_pem(key))
            cert_path.write_bytes(pki.certificate_pem(cert))
        except OSError as exc:
            raise SimPKIError(f"cannot write the client certificate in {directory}: "
                              f"{exc.strerror or exc}") from None
        return cert_path, key_path

    @property
    def fingerprint(self) -> str:
        from orch.security import pki

        return pki.fingerprint(self._loaded()[0])

    def node_security(self, spec: NodeSpec) -> SecurityProvider:
        """A security provider holding a new certificate and key for ``spec.identity``."""
        return self.provider(*self.issue_node(spec.identity))

    def issue_node(self, identity: str) -> tuple[Any, Any]:
        """A new node certificate and its key."""
        from orch.security import pki

        ca_cert, ca_key = self._loaded()
        return pki.issue_certificate(ca_cert, ca_key, identity, pki.ROLE_NODE)

    def provider(self, cert: Any, key: Any) -> SecurityProvider:
        from orch.security import pki
        from orch.security.x509 import X509Provider

        return X509Provider(credentials=pki.Credentials(cert, key, (self._loaded()[0],)))


#: A cached certificate is issued again when it expires sooner than this (seconds).
CACHE_MARGIN = 86400.0


def load_issued(path: Path, ca: SimCA) -> dict[str, tuple[Any, Any]]:
    """``{identity: (certificate, key)}`` from a cache file :func:`store_issued` wrote;
    empty when it is missing or unreadable. Certificates that are not this CA's or expire
    within a day are left out (and so issued again)."""
    import base64
    import json
    import time

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from orch.security import pki

    try:
        stored = json.loads(path.read_text())
        entries = stored["nodes"] if stored.get("ca") == ca.fingerprint else {}
    except (OSError, ValueError, AttributeError, KeyError):
        return {}
    horizon = time.time() + CACHE_MARGIN
    issued: dict[str, tuple[Any, Any]] = {}
    try:
        for identity, (cert_b64, key_b64) in entries.items():
            cert = x509.load_der_x509_certificate(base64.b64decode(cert_b64))
            if pki.not_after(cert).timestamp() < horizon:
                continue
            key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(key_b64))
            issued[identity] = (cert, key)
    except (ValueError, TypeError, AttributeError):
        return {}
    return issued


def store_issued(path: Path, ca: SimCA, issued: dict[str, tuple[Any, Any]]) -> None:
    """Keep node certificates and keys ``ca`` issued (0600), so that a restart need not
    issue them again."""
    import base64
    import json

    from cryptography.hazmat.primitives import serialization

    raw = serialization.Encoding.Raw, serialization.PrivateFormat.Raw, \
        serialization.NoEncryption()
    entries = {
        identity: [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
                   base64.b64encode(key.private_bytes(*raw)).decode()]
        for identity, (cert, key) in issued.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, json.dumps({"ca": ca.fingerprint, "nodes": entries}).encode())


def _write_private(path: Path, data: bytes) -> None:
    """Write a key readable by its owner only, from the first byte on."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
