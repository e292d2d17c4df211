"""The ``x509`` security provider: every request signed by a client certificate, every reply
by a node certificate, both issued by the one CA every process trusts.

What travels beside a body (the envelope's ``security`` object)::

    {"cert": "<PEM of the signer's certificate>", "sig": "<base64 signature of the body>"}

The signature covers exactly the UTF-8 bytes of the envelope's ``body`` string — the bytes
received are the bytes checked, nothing is re-serialised. The certificate travels with every
message, so a server needs no directory of client certificates; the verifier caches what it
learnt about each certificate (parsed, chained to the CA, role) under the SHA-256 of its PEM,
so the per-message cost is one signature check plus a dictionary lookup. What it learnt is
also kept on disk, per user (:mod:`orch.security.certcache`, the ``cert_cache`` setting), so
that a new process does not parse and chain-check every node's certificate again.

Ed25519 signatures are checked with libsodium (PyNaCl) when it is installed — about twice as
fast as ``cryptography``'s OpenSSL path — else with ``cryptography``; ``plugins: {x509:
{ed25519: cryptography}}`` forces the latter (:func:`orch.security.pki.verifier_for`).

:meth:`X509Provider.verify` checks, in this order, and raises
:class:`~orch.core.errors.SecurityError` (and nothing else, whatever the input) at the first
failure:

1. the envelope carries a certificate and a signature;
2. the certificate parses and is not a CA certificate;
3. it was directly issued by a configured CA certificate (name and signature);
4. it and its CA are within their validity dates (± the ``clock_skew`` setting);
5. its role fits the message: requests need a client certificate, replies a node certificate
   (see :func:`orch.security.pki.effective_role`);
6. the signature verifies over exactly the body bytes;
7. for a reply, the ``sender`` the body names is the certificate's name.

It returns ``Verified(caller="cert=<name>", fingerprint=<SHA-256 of the DER certificate>)``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orch.core.errors import SecurityError
from orch.core.hookspecs import hookimpl
from orch.core.protocol import Envelope
from orch.core.security import SecurityProvider, Verified
from orch.security.x509_settings import SECTION, X509Settings

if TYPE_CHECKING:
    from orch.core.config import Settings
    from orch.security.certcache import Entry, TrustCache
    from orch.security.pki import Credentials, Verifier

# ``cryptography`` (through orch.security.pki) is imported when a provider is created, not
# when the plugin is loaded: every ``orch`` command loads every plugin, most never sign.

log = logging.getLogger(__name__)

#: Parsed certificates remembered by the verifier; the least recently used go first.
DEFAULT_CACHE_SIZE = 20_000
#: Larger certificates or signatures are rejected before any parsing (RSA-8192 fits easily).
MAX_CERT_PEM = 16_384
MAX_SIG_B64 = 4_096
_NEEDED_ROLE = {"request": "client", "reply": "node"}


@dataclass(frozen=True)
class _CertInfo:
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
    #: What the disk cache stores about it (only for a certificate that passed every check
    #: and only when this provider has a disk cache).
    entry: Entry | None = None


class _LRU:
    """A small thread-safe LRU map: bounded memory however many certificates a fleet uses."""

    def __init__(self, size: int) -> None:
        self._size = max(1, size)
        self._data: OrderedDict[bytes, _CertInfo] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> _CertInfo | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: bytes, value: _CertInfo) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


class X509Provider:
    """Signs outgoing bodies with this process's key; verifies incoming ones against the CA.

    Built from settings by the plugin registry (``security: x509``); ``credentials``,
    ``client_certnames`` and ``clock_skew`` may be given directly (tests, the demo).
    """

    name = "x509"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        credentials: Credentials | None = None,
        client_certnames: Sequence[str] | None = None,
        clock_skew: float | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        cert_cache: str | os.PathLike[str] | None = None,
        ed25519_backend: str | None = None,
    ) -> None:
        from cryptography.hazmat.primitives import serialization

        from orch.security import pki

        self._pki = pki
        if credentials is None:
            if settings is None:
                raise SecurityError("the x509 provider needs settings or credentials")
            credentials = pki.load_credentials(settings, clock_skew=clock_skew)
        self._key = credentials.key
        self._anchors = tuple(credentials.ca)
        if not self._anchors:
            raise SecurityError("the x509 provider needs at least one CA certificate")
        self.certificate = credentials.certificate
        self._cert_pem = credentials.certificate.public_bytes(
            serialization.Encoding.PEM).decode("ascii")
        if clock_skew is None:
            clock_skew = settings.clock_skew if settings is not None else 5.0
        self._skew = float(clock_skew)
        section = settings.section(SECTION, X509Settings) if settings is not None else None
        if client_certnames is None:
            configured = section.client_certnames if section is not None else None
            client_certnames = configured or pki.DEFAULT_CLIENT_CERTNAMES
        self._client_certnames = tuple(client_certnames)
        self._cache = _LRU(cache_size)
        if ed25519_backend is None:
            ed25519_backend = section.ed25519 if section is not None else "auto"
        if ed25519_backend not in pki.ED25519_BACKENDS:
            raise SecurityError(f"plugins.x509.ed25519 must be one of "
                                f"{', '.join(pki.ED25519_BACKENDS)}, not {ed25519_backend!r}")
        self._backend = ed25519_backend
        der = serialization.Encoding.DER
        self._anchor_info = {
            hashlib.sha256(a.public_bytes(der)).hexdigest():
                (pki.common_name(a) or a.subject.rfc4514_string(),
                 pki.not_before(a).timestamp(), pki.not_after(a).timestamp())
            for a in self._anchors}
        #: The revocation state certificates are checked against; part of the disk cache's
        #: scope, so that a new CRL makes every certificate be checked anew.
        self.revocation = self._revocation_state()
        self._disk = self._trust_cache(section, cert_cache)
        self._warn_identity_mismatch(settings)

    def _trust_cache(self, section: X509Settings | None,
                     directory: str | os.PathLike[str] | None) -> TrustCache | None:
        """The per-user disk cache: from ``cert_cache`` (explicit, else the setting).

        Providers built from credentials alone (tests, the demo) have none unless given a
        directory: only processes configured like a real client or server write to disk.
        """
        from orch.security import certcache

        if directory is None and section is not None:
            configured = section.cert_cache
            if configured == "off":
                return None
            directory = configured or certcache.default_directory()
        if directory is None or str(directory) == "off":
            return None
        from cryptography.hazmat.primitives import serialization

        scope = certcache.scope_of(
            (a.public_bytes(serialization.Encoding.DER) for a in self._anchors),
            self._client_certnames, self.revocation)
        secret = self._key.private_bytes(serialization.Encoding.DER,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        return certcache.TrustCache(Path(directory), scope, hashlib.sha256(secret).digest())

    def close(self) -> None:
        """Write the certificates learnt by this process to the disk cache (if any)."""
        if self._disk is not None:
            self._disk.flush()

    def take_learnt(self) -> dict[str, Entry] | None:
        """In a reply-checking worker process: certificates verified since the last call."""
        return self._disk.take_new() if self._disk is not None else None

    def keep_learnt(self, learnt: Mapping[str, Entry]) -> None:
        """In the process that owns the disk cache: add what a worker process verified."""
        if self._disk is not None:
            for key, entry in learnt.items():
                self._disk.put(key, entry)

    def _warn_identity_mismatch(self, settings: Settings | None) -> None:
        """A node whose identity is not its certificate's name has every reply rejected."""
        if settings is None:
            return
        own = self._pki.common_name(self.certificate)
        try:
            role = self._pki.effective_role(self.certificate, self._anchors[0],
                                            self._client_certnames)
        except ValueError:
            return
        if role == self._pki.ROLE_NODE and own != settings.identity:
            log.warning("identity %r differs from the name of this node's certificate %r: "
                        "clients will reject its replies; set identity: %s",
                        settings.identity, own, own)

    # -- sealing ------------------------------------------------------------------------

    def seal(self, kind: str, body: str) -> Mapping[str, Any]:
        """Sign ``body``'s UTF-8 bytes and attach this process's certificate."""
        try:
            data = body.encode("utf-8")
        except UnicodeEncodeError:
            raise SecurityError(f"cannot sign a {kind}: its body is not valid text") from None
        signature = self._pki.sign(self._key, data)
        return {"cert": self._cert_pem, "sig": base64.b64encode(signature).decode("ascii")}

    # -- verifying ----------------------------------------------------------------------

    def verify(self, envelope: Envelope) -> Verified:
        """Check ``envelope`` (see the module docstring for the order of the checks)."""
        return self._checked(envelope, None)

    def verify_reply(self, envelope: Envelope, sender: str) -> Verified:
        """Check a reply whose body the caller has already decoded, and found ``sender`` in.

        The same checks as :meth:`verify`, in the same order; only the body is not parsed a
        second time to find its sender. ``sender`` must come from ``envelope.body`` itself.
        """
        return self._checked(envelope, sender)

    def _checked(self, envelope: Envelope, sender: str | None) -> Verified:
        try:
            return self._verify(envelope, sender)
        except SecurityError:
            raise
        except Exception as exc:  # belt and braces: callers rely on SecurityError only
            log.debug("unexpected error verifying a message", exc_info=True)
            raise SecurityError(f"message rejected: it could not be verified ({exc!r})"
                                ) from None

    def _verify(self, envelope: Envelope, sender: str | None) -> Verified:
        kind = envelope.kind
        if kind not in _NEEDED_ROLE:
            raise SecurityError(f"cannot verify a message of kind {kind!r}")
        security = envelope.security
        if not isinstance(security, Mapping):
            raise SecurityError(f"{kind} security fields are not an object")
        pem = security.get("cert")
        sig = security.get("sig")
        if pem is None and sig is None:
            raise SecurityError(f"{kind} is not signed (no certificate, no signature); "
                                "is the sender using security x509?")
        if not isinstance(pem, str) or not pem:
            raise SecurityError(f"{kind} carries no signer certificate")
        if not isinstance(sig, str) or not sig:
            raise SecurityError(f"{kind} carries no signature")
        if len(pem) > MAX_CERT_PEM:
            raise SecurityError(f"{kind} signer certificate is too large")
        if len(sig) > MAX_SIG_B64:
            raise SecurityError(f"{kind} signature is too large")

        info = self._certificate(pem)
        if info.error is not None:
            raise SecurityError(info.error)
        now = time.time()
        self._check_dates(info, now)
        needed = _NEEDED_ROLE[kind]
        if info.role != needed:
            raise SecurityError(self._role_error(info, kind))
        revoked = self._revoked(info)
        if revoked is not None:
            raise SecurityError(revoked)

        try:
            signature = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            raise SecurityError(f"{kind} signature is not valid base64") from None
        try:
            data = envelope.body.encode("utf-8")
        except (UnicodeEncodeError, AttributeError):
            raise SecurityError(f"{kind} body is not valid text") from None
        if info.check is None or not info.check(signature, data):
            raise SecurityError(f"signature does not match the message ({kind} signed with "
                                f"certificate {info.name!r})")
        if kind == "reply":
            if sender is None:
                sender = _reply_sender(envelope.body)
            if sender != info.name:
                raise SecurityError(f"reply from {sender!r} is signed with the certificate of "
                                    f"{info.name!r}; a node may only sign its own replies")
        return Verified(caller=f"cert={info.name}", fingerprint=info.fingerprint)

    def _revocation_state(self) -> str:
        """A name for the revocation list in force, "" without one: the hook for CRLs
        (issue 17). Whatever identifies a CRL (its number, its digest) goes here."""
        return ""

    def _revoked(self, info: _CertInfo) -> str | None:
        """Why ``info``'s certificate is revoked, or None: the hook for CRLs (issue 17).

        It runs for every message, whether the certificate came from a cache or not; a
        provider that learns a new CRL must also report it through
        :meth:`_revocation_state`, so that the disk cache's scope changes with it.
        """
        return None

    def _check_dates(self, info: _CertInfo, now: float) -> None:
        skew = self._skew
        if now > info.not_after + skew:
            raise SecurityError(f"certificate {info.name!r} expired at {_stamp(info.not_after)}")
        if now < info.not_before - skew:
            raise SecurityError(f"certificate {info.name!r} is not valid before "
                                f"{_stamp(info.not_before)} (check the clocks)")
        if now > info.ca_not_after + skew:
            raise SecurityError(f"the CA {info.ca_name!r} that issued certificate {info.name!r} "
                                f"expired at {_stamp(info.ca_not_after)}")
        if now < info.ca_not_before - skew:
            raise SecurityError(f"the CA {info.ca_name!r} is not valid before "
                                f"{_stamp(info.ca_not_before)} (check the clocks)")

    @staticmethod
    def _role_error(info: _CertInfo, kind: str) -> str:
        what = "requests" if kind == "request" else "replies"
        if info.role == "node":
            return f"certificate {info.name!r} is a node certificate and cannot sign {what}"
        if info.role == "client":
            return f"certificate {info.name!r} is a client certificate and cannot sign {what}"
        if info.role == "ca":
            return f"certificate {info.name!r} is a CA certificate and cannot sign {what}"
        return (f"certificate {info.name!r} has no orch role (node or client); it was not "
                "issued by `orch ca issue` — issue a new one")

    def _certificate(self, pem: str) -> _CertInfo:
        """What is known about ``pem``, from the cache or worked out once and cached.

        Failures are cached as well (bounded like the rest), so a peer that keeps sending a
        bad certificate costs a dictionary lookup, not a parse and a chain check.
        """
        raw = pem.encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(raw).digest()
        info = self._cache.get(digest)
        if info is None:
            info = self._from_disk(digest)
            if info is None:
                info = self._inspect(raw)
                if self._disk is not None and info.entry is not None:
                    self._disk.put(digest.hex(), info.entry)
            self._cache.put(digest, info)
        return info

    def _from_disk(self, digest: bytes) -> _CertInfo | None:
        """What an earlier process learnt about this certificate (see certcache), or None."""
        if self._disk is None:
            return None
        entry = self._disk.get(digest.hex())
        if entry is None:
            return None
        anchor = self._anchor_info.get(entry.anchor)
        if anchor is None:  # cannot happen within one scope; never trust it if it does
            return None
        try:
            check = self._entry_verifier(entry)
        except (ValueError, TypeError):
            return None
        ca_name, ca_not_before, ca_not_after = anchor
        return _CertInfo(
            name=entry.name, role=entry.role, fingerprint=entry.fingerprint, check=check,
            not_before=entry.not_before, not_after=entry.not_after, ca_name=ca_name,
            ca_not_before=ca_not_before, ca_not_after=ca_not_after, serial=entry.serial)

    def _entry_verifier(self, entry: Entry) -> Verifier:
        from cryptography.hazmat.primitives import serialization

        if entry.key_format == "ed25519":
            return self._pki.ed25519_verifier(entry.public, self._backend)
        if entry.key_format == "spki":
            key = serialization.load_der_public_key(entry.public)
            return self._pki.verifier_for(key, self._backend)
        raise ValueError(f"unknown key format {entry.key_format!r}")

    def _entry(self, cert: Any, anchor: Any, info: _CertInfo) -> Entry:
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

    def _inspect(self, raw: bytes) -> _CertInfo:
        try:
            return self._inspect_certificate(raw)
        except Exception as exc:  # malformed certificates surface in many ways; cache them all
            return _CertInfo("?", error=f"signer certificate is malformed ({exc})")

    def _inspect_certificate(self, raw: bytes) -> _CertInfo:
        try:
            cert = self._pki.x509.load_pem_x509_certificate(raw)
        except ValueError:
            return _CertInfo("?", error="signer certificate is not a valid PEM certificate")
        name = self._pki.common_name(cert)
        if not name:
            return _CertInfo("?", error="signer certificate has no common name")
        anchor = self._pki.chains_to(cert, self._anchors)
        if anchor is None:
            return _CertInfo(name, error=f"certificate for {name!r} is not issued by the "
                                         "configured CA")
        try:
            role = self._pki.effective_role(cert, anchor, self._client_certnames)
        except ValueError as exc:
            return _CertInfo(name, error=f"certificate {name!r}: {exc}")
        info = _CertInfo(
            name=name,
            role=role,
            fingerprint=self._pki.fingerprint(cert),
            check=self._pki.verifier_for(cert.public_key(), self._backend),
            serial=format(cert.serial_number, "x"),
            not_before=self._pki.not_before(cert).timestamp(),
            not_after=self._pki.not_after(cert).timestamp(),
            ca_name=self._pki.common_name(anchor) or anchor.subject.rfc4514_string(),
            ca_not_before=self._pki.not_before(anchor).timestamp(),
            ca_not_after=self._pki.not_after(anchor).timestamp(),
        )
        if self._disk is not None:
            info = dataclasses.replace(info, entry=self._entry(cert, anchor, info))
        return info


def _reply_sender(body: str) -> str:
    """The ``sender`` a reply body names (SecurityError when it names none)."""
    try:
        obj = json.loads(body)
    except (ValueError, TypeError, RecursionError):
        raise SecurityError("reply body is not valid JSON") from None
    sender = obj.get("sender") if isinstance(obj, dict) else None
    if not isinstance(sender, str):
        raise SecurityError("reply body names no sender")
    return sender


@hookimpl
def orch_settings() -> Mapping[str, type]:
    return {SECTION: X509Settings}


@hookimpl
def orch_security_providers() -> Mapping[str, Callable[[Settings], SecurityProvider]]:
    return {"x509": X509Provider}
