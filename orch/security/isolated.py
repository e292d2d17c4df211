"""What the x509 provider derives from its credentials, CA bundle and CRL, as plain data —
and the two ``cryptography`` jobs a daemon can leave to a short-lived child process.

Why: an idle ``orch server`` with ``cryptography`` imported is about 11 MB larger (its Rust
extension and ``cryptography.x509``), yet a daemon uses it only to read its own files (at
start and on SIGHUP) and to check a client certificate it has never seen (once per
certificate: the verdict is cached in memory and on disk). With an Ed25519 key everything else
— signing replies, verifying requests, the CRL and date checks on every message — works on
plain data with libsodium (:mod:`orch.security.sodium`). So a long-running node
(:func:`orch.core.security.long_running`) runs :func:`snapshot` and :func:`inspect_peer` in a
forked child (:mod:`orch.core.forked`) and never imports ``cryptography`` itself.

Parsing PEM/PKCS#8 in the daemon with a hand-written decoder was the other option; it was
not taken because the child runs the very same ``cryptography`` code as before, so every
check (key/certificate match, CA chain, CRL signature, role) keeps exactly its tested
behaviour, at the price of a fork (tens of milliseconds) per load or new certificate.
Keys other than Ed25519 (RSA/ECDSA from an adopted Puppet CA) are loaded in-process, as
before, and a peer's RSA/ECDSA key is checked with ``cryptography`` in-process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orch.core.errors import SecurityError
from orch.security import peercerts
from orch.security.peercerts import LRU, CertInfo
from orch.security.revoked import RevocationList

if TYPE_CHECKING:
    from orch.core.config import Settings
    from orch.security.certcache import TrustCache
    from orch.security.pki import Credentials


@dataclass(frozen=True)
class Snapshot:
    """Everything the provider needs of its credentials, with no ``cryptography`` object."""

    #: The Ed25519 private key's 32 raw bytes; None for any other key type.
    seed: bytes | None
    cert_pem: str
    name: str
    serial: int
    not_after: float
    #: The own certificate's role (node, client, ...); None when it has none.
    role: str | None
    anchors_der: tuple[bytes, ...]
    #: SHA-256 of each anchor's DER → (name, not before, not after), for disk-cache entries.
    anchor_info: dict[str, tuple[str, float, float]]
    crl: RevocationList
    #: SHA-256 of the private key's PKCS#8 DER: keys the disk cache (never the key itself).
    cache_secret: bytes
    #: Log records (level, message) for the process that keeps this snapshot.
    notes: tuple[tuple[int, str], ...] = ()
    not_before: float = 0.0


def derive(settings: Settings | None, credentials: Credentials | None,
           crl_path: str | os.PathLike[str] | None, skew: float,
           client_certnames: Sequence[str]) -> tuple[Snapshot, Credentials]:
    """Load (unless given) the credentials and the CRL, and derive the :class:`Snapshot`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from orch.security import pki

    if credentials is None:
        if settings is None:
            raise SecurityError("the x509 provider needs settings or credentials")
        credentials = pki.load_credentials(settings, clock_skew=skew)
    anchors = tuple(credentials.ca)
    if not anchors:
        raise SecurityError("the x509 provider needs at least one CA certificate")
    if crl_path is None and settings is not None:
        crl_path = pki.resolve_crl_path(settings)
    crl = pki.load_revocation(None if crl_path is None else str(crl_path), anchors)
    cert = credentials.certificate
    notes: list[tuple[int, str]] = []
    if crl.path:
        notes.append((logging.INFO, f"x509: checking revocation against {crl.path} "
                                    f"({len(crl)} revoked)"))
        own = pki.chains_to(cert, anchors)
        if own is not None and crl.is_revoked(pki.fingerprint(own), cert.serial_number):
            notes.append((logging.ERROR,
                          f"x509: this process's own certificate {pki.common_name(cert)!r} "
                          f"(serial {cert.serial_number:x}) is revoked by {crl.path}: its "
                          "peers refuse what it signs; issue a new one"))
    der = serialization.Encoding.DER
    try:
        role: str | None = pki.effective_role(cert, anchors[0], client_certnames)
    except ValueError:
        role = None
    key = credentials.key
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption()) \
        if isinstance(key, ed25519.Ed25519PrivateKey) else None
    secret = key.private_bytes(der, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    snap = Snapshot(
        seed=seed,
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        name=pki.common_name(cert) or "",
        serial=cert.serial_number,
        not_after=pki.not_after(cert).timestamp(),
        not_before=pki.not_before(cert).timestamp(),
        role=role,
        anchors_der=tuple(a.public_bytes(der) for a in anchors),
        anchor_info={
            hashlib.sha256(a.public_bytes(der)).hexdigest():
                (pki.common_name(a) or a.subject.rfc4514_string(),
                 pki.not_before(a).timestamp(), pki.not_after(a).timestamp())
            for a in anchors},
        crl=crl,
        cache_secret=hashlib.sha256(secret).digest(),
        notes=tuple(notes))
    return snap, credentials


def snapshot(settings: Settings, crl_path: str | os.PathLike[str] | None, skew: float,
             client_certnames: Sequence[str]) -> Snapshot:
    """:func:`derive` from settings, keeping only the plain data (runs in the child)."""
    return derive(settings, None, crl_path, skew, client_certnames)[0]


def inspect_peer(raw: bytes, anchors_der: Sequence[bytes],
                 client_certnames: Sequence[str]) -> CertInfo:
    """:func:`orch.security.peercerts.inspect` for a PEM certificate, run in the child.

    The verdict comes back without its ``check`` function (a closure cannot cross the pipe);
    the parent rebuilds it from the disk-cache entry with :func:`with_check`.
    """
    from cryptography import x509

    anchors = tuple(x509.load_der_x509_certificate(d) for d in anchors_der)
    info = peercerts.inspect(raw, anchors, client_certnames, "cryptography", with_entry=True)
    return dataclasses.replace(info, check=None)


def with_check(info: CertInfo, backend: str) -> CertInfo:
    """A verdict from :func:`inspect_peer` made whole again (errors stay as they are)."""
    if info.error is not None:
        return info
    if info.entry is None:
        return CertInfo(info.name, error="signer certificate could not be checked")
    try:
        check: Any = peercerts.entry_verifier(info.entry, backend)
    except (ValueError, TypeError):
        return CertInfo(info.name, error=f"certificate {info.name!r} has an unusable key")
    return dataclasses.replace(info, check=check)


@dataclass
class ProviderState:
    """Everything the provider derives from its credentials, CA bundle and CRL.

    ``own`` is plain data; ``key``, ``certificate`` and ``anchors`` are ``cryptography``
    objects, None when the credentials were loaded in a child process (see
    :mod:`orch.security.isolated`): then ``sign`` is libsodium's and never-seen peer
    certificates are checked in a child as well.
    """

    own: Snapshot
    sign: Callable[[bytes], bytes]
    key: Any
    certificate: Any
    anchors: tuple[Any, ...] | None
    cache: LRU
    disk: TrustCache | None
    #: The revocation list in force ("" without one): part of the disk cache's scope.
    revocation: str = ""

    @property
    def isolated(self) -> bool:
        return self.anchors is None

    @property
    def cert_pem(self) -> str:
        return self.own.cert_pem

    @property
    def anchor_info(self) -> dict[str, tuple[str, float, float]]:
        return self.own.anchor_info

    @property
    def crl(self) -> RevocationList:
        return self.own.crl
