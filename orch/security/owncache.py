"""This process's own credentials, derived once and remembered per user: a command that signs
with an Ed25519 key starts without ``cryptography``.

Why: every ``orch`` command parsed its certificate, key, CA bundle and CRL with
``cryptography`` and checked that they fit together — importing it and doing so took 60-90 ms
of a 50-node ``--nodes`` call that must finish in 160 ms (issue 13) — although the files
rarely change. What :func:`orch.security.isolated.derive` works out from them (a
:class:`~orch.security.isolated.Snapshot`: name, serial, dates, role, trusted CA
certificates, revocation list) is kept in the certificate cache directory
(:mod:`orch.security.certcache`: owned by this user, mode 0700) and used again while all of
this holds:

* the files are byte for byte those it was derived from (a SHA-256 over the contents of the
  certificate, key, CA and CRL files, their paths, ``clock_skew`` and ``client_certnames``);
* the key file is a plain PKCS#8 Ed25519 key — its 32-byte seed is read from it here, never
  stored; any other key (RSA or ECDSA from an adopted Puppet CA, an encrypted key) is loaded
  by ``cryptography`` every time, as before;
* its HMAC-SHA256 verifies with a key derived from that private key, so whoever can write the
  directory but not read the key cannot forge an entry (for instance, one naming another CA);
* the time is inside the window in which deriving again would give the same answer without
  a word: after the certificate's start (less ``clock_skew``), before the 14 days ahead of
  its expiry in which loading it warns, before the CRL is due for renewal.

Otherwise the files are read and checked with ``cryptography`` — every error message exactly as
before — and the result is stored for the next command (entries of other keys untouched for
30 days are removed then). ``cert_cache: off`` turns this off
too. The per-message checks are not touched: this only replaces reading the process's own
files.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orch.core.credentials import resolve_credential_paths
from orch.core.errors import ConfigError
from orch.security import certcache
from orch.security.isolated import Snapshot
from orch.security.revoked import RevocationList

if TYPE_CHECKING:
    from orch.core.config import Settings

log = logging.getLogger(__name__)

#: Bump when what :func:`orch.security.isolated.derive` computes changes.
FORMAT = 1
#: Certificate, key and CA files larger than this are left to the full load (and its errors).
MAX_FILE_BYTES = 1024 * 1024
#: The largest CRL read here (pki.revocation reads up to 64 MiB; larger ones are not cached).
MAX_CRL_BYTES = 8 * 1024 * 1024
#: An entry file (a large CRL's serials included) is not read beyond this.
MAX_ENTRY_BYTES = 64 * 1024 * 1024
#: Loading a certificate that expires within this many seconds warns (pki.EXPIRY_WARNING).
EXPIRY_WARNING = 14 * 86_400.0
_SUFFIX = ".own"
#: The DER prefix of an unencrypted PKCS#8 Ed25519 private key; the 32-byte seed follows.
_ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")
_PEM_KEY = re.compile(rb"\A\s*-----BEGIN PRIVATE KEY-----\r?\n([A-Za-z0-9+/=\r\n]+)"
                      rb"-----END PRIVATE KEY-----\s*\Z")


@dataclass(frozen=True)
class Inputs:
    """What an entry is looked up and authenticated with, read from the files themselves."""

    #: SHA-256 over every input's path and contents, the skew and the client patterns.
    digest: str
    #: The Ed25519 private key's seed (never written anywhere).
    seed: bytes
    #: SHA-256 of the key's PKCS#8 DER: the snapshot's ``cache_secret``, the HMAC's root.
    secret: bytes
    #: Where the files came from, for the debug log.
    source: str


def read_inputs(settings: Settings, crl_path: str | os.PathLike[str] | None, skew: float,
                client_certnames: Sequence[str]) -> Inputs | None:
    """The inputs, or None when they cannot be remembered (any unreadable or unusual file:
    the full load then reports it exactly as it always did)."""
    try:
        paths = resolve_credential_paths(settings)
    except ConfigError:
        return None
    files: list[tuple[str, Path, int]] = [("cert", paths.cert, MAX_FILE_BYTES),
                                          ("key", paths.key, MAX_FILE_BYTES),
                                          ("ca", paths.ca, MAX_FILE_BYTES)]
    if crl_path is not None:
        files.append(("crl", Path(crl_path), MAX_CRL_BYTES))
    digest = hashlib.sha256(f"orch-own-credentials-{FORMAT}\n".encode())
    contents: dict[str, bytes] = {}
    for label, path, limit in files:
        try:
            with open(path, "rb") as handle:
                data = handle.read(limit + 1)
        except OSError:
            return None
        if len(data) > limit:
            return None
        contents[label] = data
        digest.update(f"{label} {os.path.abspath(path)} {len(data)}\n".encode())
        digest.update(data)
    digest.update(f"skew {skew!r}\n".encode())
    for pattern in client_certnames:
        digest.update(f"client {pattern}\n".encode())
    der = _pkcs8_der(contents["key"])
    if der is None or len(der) != len(_ED25519_PKCS8) + 32 or not der.startswith(
            _ED25519_PKCS8):
        return None
    return Inputs(digest.hexdigest(), der[len(_ED25519_PKCS8):], hashlib.sha256(der).digest(),
                  paths.source)


def _pkcs8_der(pem: bytes) -> bytes | None:
    match = _PEM_KEY.match(pem)
    if match is None:
        return None
    try:
        return base64.b64decode(re.sub(rb"\s+", b"", match.group(1)), validate=True)
    except (binascii.Error, ValueError):
        return None


def _file_name(inputs: Inputs) -> str:
    owner = hashlib.sha256(b"orch-x509-own-credentials\n" + inputs.secret).hexdigest()
    return f"{owner[:40]}{_SUFFIX}"


def _mac(inputs: Inputs, payload: bytes) -> bytes:
    key = hmac.new(inputs.secret, f"orch-own-credentials-{FORMAT}".encode(),
                   hashlib.sha256).digest()
    return hmac.new(key, payload, hashlib.sha256).hexdigest().encode()


def window(snapshot: Snapshot, skew: float) -> tuple[float, float]:
    """When deriving again would give ``snapshot`` without a warning: ``(from, until)``."""
    until = min(snapshot.not_after + skew, snapshot.not_after - EXPIRY_WARNING,
                snapshot.crl.due)
    return snapshot.not_before - skew, until


def load(directory: Path, inputs: Inputs, now: float | None = None) -> Snapshot | None:
    """The remembered snapshot for exactly ``inputs`` if it is safe, authentic and in its
    window; else None. Never raises: a cache can only cost time."""
    now = time.time() if now is None else now
    try:
        fd = certcache.open_directory(directory, create=False)
        if fd is None:
            return None
        try:
            data = certcache.read_file(fd, _file_name(inputs), MAX_ENTRY_BYTES)
        finally:
            os.close(fd)
    except certcache.Unusable as exc:
        (log.warning if exc.warn else log.debug)("own credentials not remembered: %s", exc)
        return None
    if data is None:
        return None
    mac, _, payload = data.partition(b"\n")
    if not hmac.compare_digest(mac, _mac(inputs, payload)):
        log.debug("own credentials entry in %s ignored: it does not authenticate", directory)
        return None
    try:
        document = json.loads(payload)
        if document["format"] != FORMAT or document["digest"] != inputs.digest:
            return None
        valid_from, valid_until = float(document["from"]), float(document["until"])
        if not valid_from <= now < valid_until:
            return None
        return _snapshot(document["snapshot"], inputs)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        log.debug("own credentials entry in %s ignored: %s", directory, exc)
        return None


def store(directory: Path, inputs: Inputs, snapshot: Snapshot, skew: float) -> None:
    """Remember ``snapshot`` (derived from exactly ``inputs``); failures are logged only."""
    if snapshot.seed != inputs.seed or snapshot.cache_secret != inputs.secret:
        return  # not derived from these files (they changed while being read)
    valid_from, valid_until = window(snapshot, skew)
    if valid_until <= time.time():
        return
    payload = json.dumps({"format": FORMAT, "digest": inputs.digest, "from": valid_from,
                          "until": valid_until, "snapshot": _plain(snapshot)},
                         separators=(",", ":")).encode()
    try:
        fd = certcache.open_directory(directory, create=True)
        if fd is None:
            return
        try:
            name = _file_name(inputs)
            certcache.write_file(fd, name, _mac(inputs, payload) + b"\n" + payload)
            certcache.prune(fd, _SUFFIX, name, time.time())
        finally:
            os.close(fd)
    except certcache.Unusable as exc:
        (log.warning if exc.warn else log.debug)("own credentials not remembered: %s", exc)
    except OSError as exc:
        log.debug("own credentials not remembered: %s", exc.strerror)


def _plain(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON, without the key's seed and secret (re-read from the key file)."""
    crl = snapshot.crl
    return {
        "cert_pem": snapshot.cert_pem, "name": snapshot.name, "serial": snapshot.serial,
        "not_after": snapshot.not_after, "not_before": snapshot.not_before,
        "role": snapshot.role,
        "anchors": [base64.b64encode(der).decode("ascii") for der in snapshot.anchors_der],
        "anchor_info": {k: list(v) for k, v in snapshot.anchor_info.items()},
        "crl": {"revoked": {k: sorted(v) for k, v in crl.revoked.items()},
                "state": crl.state, "path": crl.path,
                "due": None if crl.due == float("inf") else crl.due},
        "notes": [list(note) for note in snapshot.notes],
    }


def _snapshot(plain: dict[str, Any], inputs: Inputs) -> Snapshot:
    crl = plain["crl"]
    due = crl["due"]
    return Snapshot(
        seed=inputs.seed,
        cert_pem=str(plain["cert_pem"]),
        name=str(plain["name"]),
        serial=int(plain["serial"]),
        not_after=float(plain["not_after"]),
        not_before=float(plain["not_before"]),
        role=None if plain["role"] is None else str(plain["role"]),
        anchors_der=tuple(base64.b64decode(a, validate=True) for a in plain["anchors"]),
        anchor_info={str(k): (str(v[0]), float(v[1]), float(v[2]))
                     for k, v in plain["anchor_info"].items()},
        crl=RevocationList({str(k): frozenset(int(s) for s in v)
                            for k, v in crl["revoked"].items()},
                           str(crl["state"]), str(crl["path"]),
                           float("inf") if due is None else float(due)),
        cache_secret=inputs.secret,
        notes=tuple((int(level), str(message)) for level, message in plain["notes"]),
    )
