"""Certificates already verified, remembered on disk so that a new process trusts them at once.

Why: a client that hears from 10,000 nodes would otherwise parse 10,000 certificates and check
10,000 CA signatures in every new ``orch`` process — before the cache, 41 % of a fleet-wide
ping's client CPU. What a process learns is written here and the next process reads it back
in one file read; the per-message checks (validity dates, role, the signature over the body,
the sender's name) still run on every message, cache or not.

What an entry holds is only what those checks need: the certificate's name, its orch role,
its public key, its validity window, its serial number and the fingerprint the audit log
records, under the SHA-256 of the PEM text that arrived. Only certificates that passed every
certificate check are stored; failures stay in memory.

An entry must never make an invalid certificate valid, so a file is used only when all hold:

* it lies in a directory owned by this user (effective uid) and closed to everyone else
  (mode 0700, no symbolic link); a directory that is not is ignored with a warning, never
  repaired;
* the file is a regular file owned by this user, mode 0600, opened without following links
  relative to the directory already checked (no race between the check and the use);
* its scope — the trusted CA certificates, the ``client_certnames`` patterns that decide
  roles under a foreign CA, and the revocation state — is this process's: another CA's or
  another configuration's entries live in another file and are never consulted;
* its HMAC-SHA256 verifies, with a key derived from this process's own private key: whoever
  can write the directory but cannot read the key cannot forge an entry, and anything
  damaged or edited is ignored as a whole (and replaced at the next write).

The revocation state (issue 17) is part of the scope: when a CRL changes, the provider passes
a new ``revocation`` value, the file name changes with it and every entry is learnt again.

Writes are atomic (a private temporary file renamed over the old one); two processes that
write at once lose nothing but cache entries, which the next one learns again.

A command that talks to a few nodes must not pay for every node it ever met: a user of a
10,000-node fleet has a 3 MB file, and decoding all of it took a new process 60-140 ms
before its first reply was checked. So the file holds one line per entry, and reading it
costs one authentication code and one split: an entry is decoded when a certificate asks for
it. The layout, after the code's line: a JSON header ``{"format": 2, "scope": …}``, then
``<key> TAB <not_after> TAB <entry JSON>`` lines (the expiry in front, so that writing
drops expired entries without decoding the others).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = 2
#: Entries kept per file; the ones expiring first are dropped beyond it.
MAX_ENTRIES = 50_000
#: Larger files are not read (50,000 entries take about 17 MB).
MAX_FILE_BYTES = 32 * 1024 * 1024
#: Files of other scopes untouched this long are removed when a file is written.
STALE_SECONDS = 30 * 86_400
_SUFFIX = ".trust"


def default_directory() -> Path | None:
    """``x509`` in orch's per-user cache directory (:func:`orch.core.cache.cache_dir`:
    ``$ORCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/orch`` or ``~/.cache/orch``); None when
    caching is off or there is no home."""
    from orch.core.cache import cache_dir

    root = cache_dir()
    return None if root is None else root / "x509"


@dataclass(frozen=True)
class Entry:
    """What one verified certificate contributes to later checks (see the module docstring)."""

    name: str
    role: str
    fingerprint: str
    #: ``ed25519`` (``public`` is the raw 32 bytes) or ``spki`` (DER SubjectPublicKeyInfo).
    key_format: str
    public: bytes
    not_before: float
    not_after: float
    #: SHA-256 (hex) of the DER of the CA certificate that issued it.
    anchor: str
    serial: str

    def to_json(self) -> list[Any]:
        return [self.name, self.role, self.fingerprint, self.key_format,
                base64.b64encode(self.public).decode("ascii"), self.not_before,
                self.not_after, self.anchor, self.serial]

    @classmethod
    def from_json(cls, value: Any) -> Entry:
        # A client meets thousands of entries per command: plain loops, no generators.
        name, role, fingerprint, key_format, public, nb, na, anchor, serial = value
        for text in (name, role, fingerprint, key_format, public, anchor, serial):
            if type(text) is not str:
                raise ValueError("entry field of the wrong type")
        for date in (nb, na):
            if type(date) is not float and type(date) is not int:
                raise ValueError("entry date of the wrong type")
        return cls(name, role, fingerprint, key_format,
                   binascii.a2b_base64(public, strict_mode=True), float(nb), float(na),
                   anchor, serial)


def scope_of(anchors_der: Iterable[bytes], client_certnames: Iterable[str],
             revocation: str = "", owner: str = "") -> str:
    """The name of everything an entry's validity depends on besides the certificate.

    ``owner`` names the key the file is authenticated with: a renewed certificate (a new
    key) starts a file of its own instead of finding one it cannot authenticate and warning
    about it; the old file is pruned once stale.
    """
    digest = hashlib.sha256(f"orch-x509-trust-cache-{FORMAT}\n".encode())
    for der in sorted(hashlib.sha256(d).hexdigest() for d in anchors_der):
        digest.update(f"anchor {der}\n".encode())
    for pattern in client_certnames:
        digest.update(f"client {pattern}\n".encode())
    digest.update(f"revocation {revocation}\n".encode())
    if owner:
        digest.update(f"owner {owner}\n".encode())
    return digest.hexdigest()


class TrustCache:
    """One scope's entries on disk, loaded on the first lookup and written by :meth:`flush`.

    Thread-safe. Every failure to use the directory (unsafe, unreadable, full) turns the
    cache off for this process with one log line: it only ever costs speed, never an error.
    """

    def __init__(self, directory: Path, scope: str, secret: bytes) -> None:
        self.directory = directory
        self.scope = scope
        self._mac_key = hmac.new(secret, f"orch-x509-trust-cache-{FORMAT}".encode(),
                                 hashlib.sha256).digest()
        #: Entries decoded (asked for) or learnt in this process.
        self._entries: dict[str, Entry] = {}
        #: The file's entries not decoded yet: key -> ``not_after TAB entry JSON``.
        self._stored: dict[bytes, bytes] = {}
        self._new: dict[str, Entry] = {}
        self._loaded = False
        self._disabled = False
        self._lock = threading.Lock()

    @property
    def file_name(self) -> str:
        return f"{self.scope[:40]}{_SUFFIX}"

    # -- lookups -------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        with self._lock:
            if not self._loaded:
                self._loaded = True
                self._stored = self._read_quietly()
            entry = self._entries.get(key)
            if entry is None:
                line = self._stored.pop(_stored_key(key), None)
                if line is not None:
                    entry = _decode_entry(line)
                    if entry is not None:
                        self._entries[key] = entry
            return entry

    def put(self, key: str, entry: Entry) -> None:
        with self._lock:
            if self._disabled:
                return
            self._stored.pop(_stored_key(key), None)
            self._entries[key] = entry
            self._new[key] = entry

    def take_new(self) -> dict[str, Entry]:
        """What was learnt since the last flush or take, handed over (and forgotten here).

        A reply-checking worker process hands its findings to the process that owns the
        cache file instead of writing it itself.
        """
        with self._lock:
            new, self._new = self._new, {}
            return new

    def __len__(self) -> int:
        return len(self._entries) + len(self._stored)

    # -- the directory -------------------------------------------------------------------

    def _open_directory(self, create: bool) -> int | None:
        """A descriptor of the directory if it is safe to use, else None (and disable)."""
        if self._disabled:
            return None
        try:
            return open_directory(self.directory, create)
        except Unusable as exc:
            self._disable(str(exc), warn=exc.warn)
            return None

    def _disable(self, reason: str, warn: bool = False) -> None:
        self._disabled = True
        self._entries, self._stored, self._new = {}, {}, {}
        (log.warning if warn else log.info)("certificate cache off: %s", reason)
        return None

    def _read_quietly(self) -> dict[bytes, bytes]:
        fd = self._open_directory(create=False)
        if fd is None:
            return {}
        try:
            return self._read(fd)
        finally:
            os.close(fd)

    def _read(self, dir_fd: int) -> dict[bytes, bytes]:
        """The file's entries, undecoded, if it is safe and authentic, else nothing (never
        raises)."""
        try:
            data = read_file(dir_fd, self.file_name, MAX_FILE_BYTES)
        except Unusable as exc:
            log.warning("certificate cache %s/%s ignored: %s", self.directory, self.file_name,
                        exc)
            return {}
        return {} if data is None else self._authentic(data)

    def _authentic(self, data: bytes) -> dict[bytes, bytes]:
        mac, _, payload = data.partition(b"\n")
        if not hmac.compare_digest(mac, self._mac(payload)):
            log.warning("certificate cache %s/%s ignored: its authentication code does not "
                        "match (damaged, edited, or written with another key)", self.directory,
                        self.file_name)
            return {}
        try:
            header, stored = parse_payload(payload)
        except ValueError as exc:
            log.warning("certificate cache %s/%s ignored: %s", self.directory, self.file_name,
                        exc)
            return {}
        if header.get("format") != FORMAT or header.get("scope") != self.scope:
            return {}
        return stored

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._mac_key, self.scope.encode() + b"\n" + payload,
                        hashlib.sha256).hexdigest().encode()

    def flush(self, now: float | None = None) -> int:
        """Write what was learnt since the last flush (merged with the file); entries written.

        Expired entries are dropped, and so are files of other scopes untouched for
        :data:`STALE_SECONDS` (throw-away CAs of tests and benchmarks).
        """
        with self._lock:
            if not self._new or self._disabled:
                return 0
            fd = self._open_directory(create=True)
            if fd is None:
                return 0
            try:
                merged = self._read(fd)
                merged.update((_stored_key(key), _encode_entry(entry))
                              for key, entry in self._new.items())
                now = time.time() if now is None else now
                expiry = {key: _not_after(line) for key, line in merged.items()}
                live = [key for key, not_after in expiry.items() if not_after > now]
                if len(live) > MAX_ENTRIES:
                    live = sorted(live, key=expiry.__getitem__)[-MAX_ENTRIES:]
                kept = {key: merged[key] for key in live}
                self._write(fd, kept)
                self._stored = {key: line for key, line in kept.items()
                                if key.decode("ascii", "replace") not in self._entries}
                self._loaded = True  # what was just written is known: no lookup reads it again
                self._new = {}
                self._prune(fd, now)
                return len(kept)
            except OSError as exc:
                self._disable(f"cannot write {self.directory}: {exc.strerror}")
                return 0
            finally:
                os.close(fd)

    def _write(self, dir_fd: int, stored: Mapping[bytes, bytes]) -> None:
        payload = build_payload({"format": FORMAT, "scope": self.scope}, stored)
        write_file(dir_fd, self.file_name, self._mac(payload) + b"\n" + payload)

    def _prune(self, dir_fd: int, now: float) -> None:
        prune(dir_fd, _SUFFIX, self.file_name, now)


# -- the file's payload ------------------------------------------------------------------


def parse_payload(payload: bytes) -> tuple[dict[str, Any], dict[bytes, bytes]]:
    """The header and the undecoded entries (key -> ``not_after TAB entry JSON``) of a
    file's payload (what follows its authentication code); ValueError if malformed."""
    head, _, body = payload.partition(b"\n")
    header = json.loads(head)
    if not isinstance(header, dict):
        raise ValueError("the header is not an object")
    # No list per line: at 50,000 entries those lists alone woke the garbage collector
    # often enough to cost a third of the parse.
    stored: dict[bytes, bytes] = {}
    for line in body.split(b"\n"):
        if line:
            tab = line.find(b"\t")
            if tab <= 0:
                raise ValueError("an entry line without a key")
            stored[line[:tab]] = line[tab + 1:]
    return header, stored


def build_payload(header: Mapping[str, Any], stored: Mapping[bytes, bytes]) -> bytes:
    """The payload :func:`parse_payload` reads back."""
    lines = [json.dumps(header, separators=(",", ":")).encode()]
    lines.extend(key + b"\t" + line for key, line in stored.items())
    return b"\n".join(lines) + b"\n"


def _stored_key(key: str) -> bytes:
    """A key as the file holds it (keys are SHA-256 hex digests: ASCII)."""
    return key.encode("ascii", "replace")


def _encode_entry(entry: Entry) -> bytes:
    return (repr(entry.not_after) + "\t"
            + json.dumps(entry.to_json(), separators=(",", ":"))).encode()


def _not_after(line: bytes) -> float:
    """The expiry in front of an entry line (0, so dropped, if it is not a number)."""
    try:
        return float(line.partition(b"\t")[0])
    except ValueError:
        return 0.0


def _decode_entry(line: bytes) -> Entry | None:
    """The entry of a stored line, or None (logged) if it does not decode: the file was
    authentic, so only a bug writes one, and one bad line must not cost the others."""
    try:
        return Entry.from_json(json.loads(line.partition(b"\t")[2]))
    except (ValueError, TypeError) as exc:
        log.warning("certificate cache: an entry that does not decode was ignored: %s", exc)
        return None


def _unsafe(info: os.stat_result, *, directory: bool) -> str | None:
    """Why a cache directory or file must not be trusted, or None when it may be."""
    if directory and not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if not directory and not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_uid != os.geteuid():
        return f"is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})"
    if info.st_mode & 0o077:
        return f"is open to other users (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


# -- private files, shared with orch.security.owncache -------------------------------------


class Unusable(Exception):
    """A cache directory or file that must not be used; ``warn`` when the operator should
    hear of it (unsafe ownership or mode) rather than only the debug log."""

    def __init__(self, reason: str, warn: bool = False) -> None:
        super().__init__(reason)
        self.warn = warn


def open_directory(directory: Path, create: bool) -> int | None:
    """A descriptor of ``directory`` if it is safe to use; None when it does not exist (and
    ``create`` is false). Raises :class:`Unusable` saying why it must not be used."""
    if create:
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise Unusable(f"cannot create {directory}: {exc.strerror}") from None
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(directory, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Unusable(f"cannot open {directory}: {exc.strerror}") from None
    problem = _unsafe(os.fstat(fd), directory=True)
    if problem is not None:
        os.close(fd)
        raise Unusable(f"{directory} {problem}; certificate cache not used (it must be a "
                       "directory owned by you, mode 0700)", warn=True)
    return fd


def read_file(dir_fd: int, name: str, max_bytes: int) -> bytes | None:
    """The bytes of ``name`` in the directory ``dir_fd`` (from :func:`open_directory`); None
    when there is no such file. Raises :class:`Unusable` when it is not a private regular
    file of this user, is larger than ``max_bytes`` or cannot be read."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Unusable(str(exc.strerror)) from None
    try:
        info = os.fstat(fd)
        problem = _unsafe(info, directory=False)
        if problem is None and info.st_size > max_bytes:
            problem = "is too large"
        if problem is not None:
            raise Unusable(f"it {problem}")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(max_bytes + 1)
    except OSError as exc:
        raise Unusable(str(exc.strerror)) from None
    finally:
        os.close(fd)


def write_file(dir_fd: int, name: str, data: bytes) -> None:
    """Write ``name`` atomically, mode 0600 (a private temporary file renamed over it)."""
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)


def prune(dir_fd: int, suffix: str, keep: str, now: float) -> None:
    """Remove the ``suffix`` files but ``keep`` untouched for :data:`STALE_SECONDS`."""
    with contextlib.suppress(OSError):
        for name in os.listdir(dir_fd):
            if not name.endswith(suffix) or name == keep:
                continue
            with contextlib.suppress(OSError):
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if now - info.st_mtime > STALE_SECONDS:
                    os.unlink(name, dir_fd=dir_fd)
