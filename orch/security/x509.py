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

In a daemon (:func:`orch.core.security.long_running`) with an Ed25519 key, ``cryptography``
is used only in short-lived forked children: one reads the credentials and CRL (at start, on
SIGHUP), one checks each never-seen certificate; the daemon signs and verifies with
libsodium (:mod:`orch.security.isolated`). The checks and their order are the same.

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
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orch.core import forked
from orch.core.errors import RevokedError, SecurityError
from orch.core.hookspecs import hookimpl
from orch.core.protocol import Envelope
from orch.core.security import SecurityProvider, Verified
from orch.security import isolated, owncache, peercerts, sodium
from orch.security.isolated import ProviderState as _State
from orch.security.isolated import Snapshot
from orch.security.peercerts import LRU as _LRU
from orch.security.peercerts import CertInfo as _CertInfo
from orch.security.x509_settings import SECTION, X509Settings

if TYPE_CHECKING:
    from orch.core.config import Settings
    from orch.security.certcache import Entry, TrustCache
    from orch.security.pki import Credentials
    from orch.security.revoked import RevocationList

# ``cryptography`` (through orch.security.pki) is imported when a provider is created, not
# when the plugin is loaded: every ``orch`` command loads every plugin, most never sign. In a
# daemon with an Ed25519 key it is imported only in short-lived children (isolated.py).

log = logging.getLogger(__name__)

#: Parsed certificates remembered by the verifier; the least recently used go first.
DEFAULT_CACHE_SIZE = 20_000
#: Larger certificates or signatures are rejected before any parsing (RSA-8192 fits easily).
MAX_CERT_PEM = 16_384
MAX_SIG_B64 = 4_096
_NEEDED_ROLE = {"request": "client", "reply": "node"}
#: Client certificate names of a CA not made by ``orch ca`` (pki.DEFAULT_CLIENT_CERTNAMES).
DEFAULT_CLIENT_CERTNAMES = ("*.mcollective",)
#: While running, the own-expiry check is repeated at most this often (seconds).
EXPIRY_CHECK_INTERVAL = 6 * 3600.0
#: Seconds a child process may take to load the credentials / check one certificate.
LOAD_TIMEOUT = 60.0
INSPECT_TIMEOUT = 20.0


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
        crl: str | os.PathLike[str] | None = None,
    ) -> None:
        from orch.core.security import long_running
        from orch.security.x509_settings import ED25519_BACKENDS

        if credentials is None and settings is None:
            raise SecurityError("the x509 provider needs settings or credentials")
        self._settings = settings
        if clock_skew is None:
            clock_skew = settings.clock_skew if settings is not None else 5.0
        self._skew = float(clock_skew)
        section = settings.section(SECTION, X509Settings) if settings is not None else None
        if client_certnames is None:
            configured = section.client_certnames if section is not None else None
            client_certnames = configured or DEFAULT_CLIENT_CERTNAMES
        self._client_certnames = tuple(client_certnames)
        self._cache_size = cache_size
        self._cert_cache_dir = cert_cache
        self._crl_path = crl
        if ed25519_backend is None:
            ed25519_backend = section.ed25519 if section is not None else "auto"
        if ed25519_backend not in ED25519_BACKENDS:
            raise SecurityError(f"plugins.x509.ed25519 must be one of "
                                f"{', '.join(ED25519_BACKENDS)}, not {ed25519_backend!r}")
        self._backend = ed25519_backend
        # A daemon keeps cryptography out of its own memory when it can (isolated.py).
        self._isolate = (long_running() and credentials is None and forked.available()
                         and ed25519_backend != "cryptography" and sodium.available())
        self._expiry_warning = (section or X509Settings()).expiry_warning_days
        self._next_expiry_check = 0.0
        self._state = self._load(settings, credentials)
        self._warn_identity_mismatch(settings)
        self._check_own_expiry()

    # Everything that depends on the credentials lives in one _State, replaced whole by
    # reload(): a message being checked meanwhile sees the old or the new one, never a mix.

    @property
    def certificate(self) -> Any:
        """This process's certificate (``cryptography``; parsed on demand when isolated)."""
        state = self._state
        if state.certificate is None:
            from cryptography import x509

            state.certificate = x509.load_pem_x509_certificate(state.cert_pem.encode())
        return state.certificate

    @property
    def isolated(self) -> bool:
        """True when ``cryptography`` is used only in child processes (see isolated.py)."""
        return self._isolate and self._state.isolated

    @property
    def revocation(self) -> str:
        """The revocation list in force ("" without one): part of the disk cache's scope."""
        return self._state.revocation

    @property
    def _key(self) -> Any:
        return self._state.key

    @property
    def _anchors(self) -> tuple[Any, ...]:
        state = self._state
        if state.anchors is None:
            from cryptography import x509

            return tuple(x509.load_der_x509_certificate(d) for d in state.own.anchors_der)
        return state.anchors

    @property
    def _cache(self) -> _LRU:
        return self._state.cache

    @property
    def _disk(self) -> TrustCache | None:
        return self._state.disk

    def _load(self, settings: Settings | None, credentials: Credentials | None) -> _State:
        """Read credentials, CA bundle and CRL (from settings unless given) into a _State.

        In a daemon (see ``_isolate``) they are read in a forked child; if the key turns out
        not to be Ed25519 they are read again here, with ``cryptography`` in this process.
        """
        remembered = self._remembered(settings, credentials)
        if remembered is not None:
            own = owncache.load(*remembered)
            if own is not None and own.seed is not None:
                log.debug("x509 credentials from %s: certificate %r, remembered in %s",
                          remembered[1].source, own.name, remembered[0])
                return self._state_of(own, sodium.signer(own.seed)[0], None, None, None,
                                      settings)
        if self._isolate and settings is not None and credentials is None:
            try:
                own = forked.run(isolated.snapshot, settings, self._crl_path, self._skew,
                                 self._client_certnames, timeout=LOAD_TIMEOUT)
            except forked.ForkError as exc:
                raise SecurityError(f"x509: could not load the credentials ({exc})") from None
            if own.seed is not None:
                self._remember(settings, remembered, own)
                return self._state_of(own, sodium.signer(own.seed)[0], None, None, None,
                                      settings)
        own, credentials = isolated.derive(settings, credentials, self._crl_path, self._skew,
                                           self._client_certnames)
        from orch.security import pki

        key = credentials.key
        sign: Callable[[bytes], bytes] = functools.partial(pki.sign, key)
        if own.seed is not None and self._backend != "cryptography" and sodium.available():
            sign = sodium.signer(own.seed)[0]  # the same bytes, about 30 % cheaper
            self._remember(settings, remembered, own)
        return self._state_of(own, sign, key, credentials.certificate,
                              tuple(credentials.ca), settings)

    def _remembered(self, settings: Settings | None, credentials: Credentials | None,
                    ) -> tuple[Path, owncache.Inputs] | None:
        """Where this process's own credentials may be remembered (orch.security.owncache),
        and what they are read from; None when they may not (given credentials, no libsodium
        to sign with, ``ed25519: cryptography``, the cache off, a key that is not Ed25519)."""
        if (settings is None or credentials is not None or self._backend == "cryptography"
                or not sodium.available()):
            return None
        directory = self._cache_directory(settings, self._cert_cache_dir)
        if directory is None:
            return None
        from orch.core.credentials import resolve_crl_path

        crl_path = self._crl_path if self._crl_path is not None else resolve_crl_path(settings)
        inputs = owncache.read_inputs(settings, crl_path, self._skew, self._client_certnames)
        return None if inputs is None else (directory, inputs)

    def _remember(self, settings: Settings | None,
                  remembered: tuple[Path, owncache.Inputs] | None, own: Snapshot) -> None:
        """Store what was just derived, if the files are still those it was derived from."""
        if remembered is None or settings is None:
            return
        again = self._remembered(settings, None)
        if again is not None and again[1] == remembered[1]:
            owncache.store(remembered[0], remembered[1], own, self._skew)

    def _state_of(self, own: Snapshot, sign: Callable[[bytes], bytes], key: Any,
                  certificate: Any, anchors: tuple[Any, ...] | None,
                  settings: Settings | None) -> _State:
        for level, message in own.notes:
            log.log(level, "%s", message)
        state = _State(own=own, sign=sign, key=key, certificate=certificate, anchors=anchors,
                       cache=_LRU(self._cache_size), disk=None,
                       revocation=self._revocation_state(own.crl))
        state.disk = self._trust_cache(settings, self._cert_cache_dir, state)
        return state

    def reload(self, settings: Settings | None = None) -> None:
        """SIGHUP: re-read certificate, key, CA bundle and CRL, then swap them in at once.

        A failure (a half-copied file, a CRL of another CA) raises and leaves everything as
        it was: the daemon keeps serving with its current credentials. Certificates learnt
        so far are forgotten, so each one is checked again against the new CA and CRL.
        """
        settings = settings if settings is not None else self._settings
        if settings is None:
            raise SecurityError("this x509 provider was built from credentials, not settings; "
                                "it has nothing to reload")
        state = self._load(settings, None)
        old, self._state = self._state, state
        self._settings = settings
        if old.disk is not None:
            old.disk.flush()
        self._next_expiry_check = 0.0
        self._check_own_expiry()
        log.info("x509: reloaded certificate %r (serial %x), %d CA certificate(s), CRL %s",
                 state.own.name, state.own.serial, len(state.own.anchors_der),
                 state.crl.path or "none")

    def _check_own_expiry(self) -> None:
        """Warn in the log, ahead of time, that this process's own certificate expires.

        Runs at start, on reload, and then at most every :data:`EXPIRY_CHECK_INTERVAL`
        seconds from the message path, so a long-running daemon keeps warning daily-ish
        until its certificate is renewed (and SIGHUP-ed in).
        """
        now = time.time()
        if now < self._next_expiry_check:
            return
        self._next_expiry_check = now + EXPIRY_CHECK_INTERVAL
        own = self._state.own
        left = own.not_after - time.time()
        if left < self._expiry_warning * 86400:
            log.warning("x509: this process's certificate %r (serial %x) expires at %s, in "
                        "%.1f days; renew it (`orch ca renew NAME`) and send SIGHUP",
                        own.name, own.serial, _stamp(own.not_after), left / 86400)

    def _trust_cache(self, settings: Settings | None,
                     directory: str | os.PathLike[str] | None,
                     state: _State) -> TrustCache | None:
        """The per-user disk cache: from ``cert_cache`` (explicit, else the setting).

        Providers built from credentials alone (tests, the demo) have none unless given a
        directory: only processes configured like a real client or server write to disk.
        """
        from orch.security import certcache

        directory = self._cache_directory(settings, directory)
        if directory is None:
            return None
        secret = state.own.cache_secret
        owner = hashlib.sha256(b"orch-x509-cache-owner\n" + secret).hexdigest()
        scope = certcache.scope_of(state.own.anchors_der, self._client_certnames,
                                   state.revocation, owner)
        return certcache.TrustCache(Path(directory), scope, secret)

    @staticmethod
    def _cache_directory(settings: Settings | None,
                         directory: str | os.PathLike[str] | None) -> Path | None:
        """The per-user cache directory: ``directory`` if given, else the ``cert_cache``
        setting (``off``: None), else the default."""
        from orch.security import certcache

        if directory is None and settings is not None:
            configured = settings.section(SECTION, X509Settings).cert_cache
            if configured == "off":
                return None
            directory = configured or certcache.default_directory()
        if directory is None or str(directory) == "off":
            return None
        return Path(directory)

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
        own = self._state.own.name
        if self._state.own.role == "node" and own != settings.identity:
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
        state = self._state
        signature = state.sign(data)
        if time.time() >= self._next_expiry_check:
            self._check_own_expiry()
        return {"cert": state.cert_pem, "sig": base64.b64encode(signature).decode("ascii")}

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
        if time.time() >= self._next_expiry_check:
            self._check_own_expiry()
        now = time.time()
        self._check_dates(info, now)
        needed = _NEEDED_ROLE[kind]
        if info.role != needed:
            raise SecurityError(self._role_error(info, kind))
        revoked = self._revoked(info)
        if revoked is not None:
            raise RevokedError(revoked, f"cert={info.name}", info.fingerprint)

        try:
            signature = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            raise SecurityError(f"{kind} signature is not valid base64") from None
        try:
            data = envelope.body.encode("utf-8")
        except (UnicodeEncodeError, AttributeError):
            raise SecurityError(f"{kind} body is not valid text") from None
        # A request is signed once for many nodes, and a simulation verifies it for each of
        # them in one process: the memo answers the repeats. A reply is verified once, by
        # the one client it is for, so looking it up would only cost.
        if kind == "request":
            valid = peercerts.SIGNATURES.valid(info, self._backend, signature, data)
        else:
            valid = info.check is not None and info.check(signature, data)
        if not valid:
            raise SecurityError(f"signature does not match the message ({kind} signed with "
                                f"certificate {info.name!r})")
        if kind == "reply":
            if sender is None:
                sender = _reply_sender(envelope.body)
            if sender != info.name:
                raise SecurityError(f"reply from {sender!r} is signed with the certificate of "
                                    f"{info.name!r}; a node may only sign its own replies")
        return Verified(caller=f"cert={info.name}", fingerprint=info.fingerprint)

    def _revocation_state(self, crl: RevocationList) -> str:
        """A name for the revocation list in force ("" without one): its digest."""
        return crl.state

    def _revoked(self, info: _CertInfo) -> str | None:
        """Why ``info``'s certificate is revoked, or None.

        It runs for every message, whether the certificate came from a cache (memory or
        disk) or not: a certificate verified yesterday and revoked today is refused today.
        """
        crl = self._state.crl
        if not crl.revoked or not info.serial:
            return None
        try:
            serial = int(info.serial, 16)
        except ValueError:
            return f"certificate {info.name!r} has an unreadable serial number"
        if crl.is_revoked(info.anchor, serial):
            return (f"certificate {info.name!r} (serial {info.serial}) is revoked "
                    f"(CRL {crl.path})")
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
        if info.role == "server":
            return (f"certificate {info.name!r} is a server (broker) certificate and cannot "
                    f"sign {what}")
        return (f"certificate {info.name!r} has no orch role (node or client); it was not "
                "issued by `orch ca issue` — issue a new one")

    def _certificate(self, pem: str) -> _CertInfo:
        """What is known about ``pem``, from the cache or worked out once and cached.

        Failures are cached as well (bounded like the rest), so a peer that keeps sending a
        bad certificate costs a dictionary lookup, not a parse and a chain check.
        """
        raw = pem.encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(raw).digest()
        state = self._state
        info = state.cache.get(digest)
        if info is None:
            info = self._from_disk(digest)
            if info is None:
                info = self._inspect(raw)
            if self._state is not state:  # reloaded meanwhile: judged by the old trust
                return info               # for this message only, remembered nowhere
            if state.disk is not None and info.entry is not None:
                state.disk.put(digest.hex(), info.entry)
            state.cache.put(digest, info)
        return info

    def _from_disk(self, digest: bytes) -> _CertInfo | None:
        """What an earlier process learnt about this certificate (see certcache), or None."""
        disk = self._disk
        entry = disk.get(digest.hex()) if disk is not None else None
        if entry is None:
            return None
        return peercerts.from_entry(entry, self._state.anchor_info, self._backend)

    def _inspect(self, raw: bytes) -> _CertInfo:
        """Everything checked once per certificate (parse, chain, role), never raising —
        except when the child process that checks it for an isolated provider fails: then
        SecurityError, and nothing is cached (the next message tries again)."""
        state = self._state
        if state.anchors is None and not self._isolate:
            # Credentials remembered by a command (owncache): check it here, parsing the
            # trusted CA certificates now that one is needed.
            state.anchors = self._anchors
        if state.anchors is None:
            try:
                info = forked.run(isolated.inspect_peer, raw, state.own.anchors_der,
                                  self._client_certnames, timeout=INSPECT_TIMEOUT)
            except forked.ForkError as exc:
                log.error("x509: could not check a certificate in a child process: %s", exc)
                raise SecurityError(f"message rejected: its certificate could not be "
                                    f"checked ({exc})") from None
            return isolated.with_check(info, self._backend)
        return peercerts.inspect(raw, state.anchors, self._client_certnames,
                                 self._backend, with_entry=self._disk is not None)


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
