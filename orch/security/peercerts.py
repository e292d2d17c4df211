"""What a verifier learns about one peer certificate, once, and keeps: its name, role, key,
validity, serial and issuing CA — or why it is unacceptable.

Why apart from :mod:`orch.security.x509`: this is the expensive, once-per-certificate part
(parse, chain to a CA, decide the role; or rebuild it from a disk-cache entry), where the
provider does the cheap per-message checks. ``cryptography`` is imported inside the
functions, so importing this module costs nothing to a command that never verifies.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orch.security.certcache import Entry
    from orch.security.pki import Verifier


@dataclass(frozen=True)
class CertInfo:
    """What the verifier learnt about one certificate PEM, or why it is unacceptable."""

    name: str
    error: str | None = None
    role: str | None = None
    fingerprint: str = ""
    #: ``(signature, data) -> bool`` for the certificate's public key.
    check: Verifier | None = None
    not_before: float = 0.0
    not_after: float = 0.0
    #: The validity window of the CA that issued it (it must still be valid, too).
    ca_name: str = ""
    ca_not_before: float = 0.0
    ca_not_after: float = 0.0
    #: Serial number (hex), for the revocation check.
    serial: str = ""
    #: SHA-256 (hex) of the DER of the CA certificate that issued it (the CRL is per CA).
    anchor: str = ""
    #: What the disk cache stores about it (only for a certificate that passed every check
    #: and only when this provider has a disk cache).
    entry: Entry | None = None


class LRU:
    """A small thread-safe LRU map: bounded memory however many certificates a fleet uses."""

    def __init__(self, size: int) -> None:
        self._size = max(1, size)
        self._data: OrderedDict[bytes, CertInfo] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> CertInfo | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: bytes, value: CertInfo) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class SignatureMemo:
    """Signatures already found valid in this process: ``(signer fingerprint, backend,
    signature, data)`` of each, the last ``size`` of them, for bodies up to ``max_data`` bytes.

    Why: a known-list request is signed once for many nodes (``split_targets``), and a
    simulation serves hundreds of those nodes in one process, each verifying the very same
    bytes — the Ed25519 check was an eighth of a simulated node's CPU per request. Whether
    a signature is valid depends on nothing but the key (bound by the certificate's
    fingerprint), the signature and the data, so one success serves every provider of the
    process; each still runs every other check (chain, dates, role, revocation, sender) on
    its own. Only successes are kept, whole (a hit compares every byte, not a hash). Replies
    do not use it: each is verified once, by the client it is for.
    """

    def __init__(self, size: int = 1024, max_data: int = 16_384) -> None:
        self._size = size
        self._max_data = max_data
        self._seen: OrderedDict[tuple[str, str, bytes, bytes], None] = OrderedDict()
        self._lock = threading.Lock()

    def valid(self, info: CertInfo, backend: str, signature: bytes, data: bytes) -> bool:
        """``info.check(signature, data)``, answered from memory when seen before."""
        check = info.check
        if check is None:
            return False
        if len(data) > self._max_data or not info.fingerprint:
            return check(signature, data)
        key = (info.fingerprint, backend, signature, data)
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return True
        if not check(signature, data):
            return False
        with self._lock:
            self._seen[key] = None
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)
        return True


#: The memo every x509 provider of this process shares.
SIGNATURES = SignatureMemo()


def inspect(raw: bytes, anchors: Sequence[Any], client_certnames: Sequence[str],
            backend: str, *, with_entry: bool) -> CertInfo:
    """Parse ``raw`` (a PEM certificate), chain it to one of ``anchors`` and decide its role.

    Never raises: whatever is wrong comes back as ``CertInfo(error=...)``, so that failures
    can be cached like successes. ``with_entry`` adds the disk-cache form.
    """
    try:
        return _inspect(raw, anchors, client_certnames, backend, with_entry)
    except Exception as exc:  # malformed certificates surface in many ways; cache them all
        return CertInfo("?", error=f"signer certificate is malformed ({exc})")


def _inspect(raw: bytes, anchors: Sequence[Any], client_certnames: Sequence[str],
             backend: str, with_entry: bool) -> CertInfo:
    from orch.security import pki

    try:
        cert = pki.x509.load_pem_x509_certificate(raw)
    except ValueError:
        return CertInfo("?", error="signer certificate is not a valid PEM certificate")
    name = pki.common_name(cert)
    if not name:
        return CertInfo("?", error="signer certificate has no common name")
    anchor = pki.chains_to(cert, anchors)
    if anchor is None:
        return CertInfo(name, error=f"certificate for {name!r} is not issued by the "
                                    "configured CA")
    try:
        role = pki.effective_role(cert, anchor, client_certnames)
    except ValueError as exc:
        return CertInfo(name, error=f"certificate {name!r}: {exc}")
    info = CertInfo(
        name=name,
        role=role,
        fingerprint=pki.fingerprint(cert),
        check=pki.verifier_for(cert.public_key(), backend),
        serial=format(cert.serial_number, "x"),
        not_before=pki.not_before(cert).timestamp(),
        not_after=pki.not_after(cert).timestamp(),
        ca_name=pki.common_name(anchor) or anchor.subject.rfc4514_string(),
        ca_not_before=pki.not_before(anchor).timestamp(),
        ca_not_after=pki.not_after(anchor).timestamp(),
        anchor=pki.fingerprint(anchor),
    )
    if with_entry:
        info = dataclasses.replace(info, entry=entry_of(cert, anchor, info))
    return info


def entry_of(cert: Any, anchor: Any, info: CertInfo) -> Entry:
    """The disk-cache form of a certificate that passed every certificate check."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from orch.security.certcache import Entry

    key = cert.public_key()
    if isinstance(key, ed25519.Ed25519PublicKey):
        key_format = "ed25519"
        public = key.public_bytes(serialization.Encoding.Raw,
                                  serialization.PublicFormat.Raw)
    else:
        key_format = "spki"
        public = key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return Entry(name=info.name, role=info.role or "", fingerprint=info.fingerprint,
                 key_format=key_format, public=public, not_before=info.not_before,
                 not_after=info.not_after,
                 anchor=hashlib.sha256(anchor.public_bytes(
                     serialization.Encoding.DER)).hexdigest(),
                 serial=info.serial)


def from_entry(entry: Entry, anchor_info: Mapping[str, tuple[str, float, float]],
               backend: str) -> CertInfo | None:
    """A disk-cache entry back as what :func:`inspect` would have said; None when it cannot
    be used (its CA is not one of ``anchor_info``, or its key does not load)."""
    anchor = anchor_info.get(entry.anchor)
    if anchor is None:  # cannot happen within one scope; never trust it if it does
        return None
    try:
        check = entry_verifier(entry, backend)
    except (ValueError, TypeError):
        return None
    ca_name, ca_not_before, ca_not_after = anchor
    return CertInfo(
        name=entry.name, role=entry.role, fingerprint=entry.fingerprint, check=check,
        not_before=entry.not_before, not_after=entry.not_after, ca_name=ca_name,
        ca_not_before=ca_not_before, ca_not_after=ca_not_after, serial=entry.serial,
        anchor=entry.anchor)


def entry_verifier(entry: Entry, backend: str) -> Verifier:
    """The signature check for a cached certificate's key: libsodium for Ed25519 (no
    ``cryptography`` needed), else :mod:`orch.security.pki` (RSA/ECDSA load it)."""
    from orch.security import sodium

    if entry.key_format == "ed25519" and backend != "cryptography" and sodium.available():
        if len(entry.public) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        return functools.partial(sodium.verify, bytes(entry.public))
    from cryptography.hazmat.primitives import serialization

    from orch.security import pki

    if entry.key_format == "ed25519":
        return pki.ed25519_verifier(entry.public, backend)
    if entry.key_format == "spki":
        key = serialization.load_der_public_key(entry.public)
        return pki.verifier_for(key, backend)
    raise ValueError(f"unknown key format {entry.key_format!r}")
