"""Policy and groups files kept parsed, re-read only when they changed.

Why per request and not on SIGHUP: an edited policy is picked up on the next request, and
an unchanged file costs one ``stat``. Why the version is more than the mtime: see
:class:`FileCache`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from orch.security.policyfile import PolicyError

#: The authorizer's logger: an operator follows one name for everything about policies.
log = logging.getLogger("orch.security.actionpolicy")

# A file modified this close (seconds) to when it was read may change again without its
# mtime, ctime or size changing (coarse file system clocks), so it is re-read and compared.
RACY_SECONDS = 2.0

T = TypeVar("T")


@dataclass
class Loaded(Generic[T]):
    """One version of a file: parsed, or the reason it cannot be used."""

    signature: tuple[int, int, int, int]
    #: The file's bytes; None when it could not be read (never "unchanged" then).
    raw: bytes | None
    value: T | None
    error: str | None
    read_at: float = field(default_factory=time.time)


class FileCache(Generic[T]):
    """Parsed files keyed by path, re-read only when the file changed.

    A file's version is ``(mtime_ns, ctime_ns, size, inode)``: an edit, a ``chmod`` that
    makes it (un)readable, or an atomic replace all change it. A file read within
    :data:`RACY_SECONDS` of its modification is also re-read and compared, since a second
    same-size edit inside one tick of a coarse file-system clock leaves the version alone.
    """

    def __init__(self, parse: Callable[[str, str], T], what: str) -> None:
        self._parse = parse
        self._what = what
        self._entries: dict[str, Loaded[T]] = {}
        self._lock = threading.Lock()

    def get(self, path: str) -> Loaded[T] | None:
        """The current version of ``path``, or None when there is no such file."""
        try:
            stat = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            with self._lock:
                self._entries.pop(path, None)
            return None
        except OSError as exc:
            return Loaded((0, 0, 0, 0), None, None, f"cannot read {path}: {exc.strerror}")
        signature = (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            entry = self._entries.get(path)
            if (
                entry is not None
                and entry.signature == signature
                and entry.read_at - stat.st_mtime_ns / 1e9 >= RACY_SECONDS
            ):
                return entry
            entry = self._load(path, signature, entry)
            self._entries[path] = entry
            return entry

    def _load(
        self, path: str, signature: tuple[int, int, int, int], previous: Loaded[T] | None
    ) -> Loaded[T]:
        """Read and parse ``path``; errors are logged here, hence once per file version.

        Bytes identical to ``previous`` (a ``touch``, or a racy re-check) reuse its result.
        """
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            error = f"cannot read {path}: {exc.strerror}"
            log.error("%s %s", self._what, error)
            return Loaded(signature, None, None, error)
        if previous is not None and raw == previous.raw:
            previous.signature, previous.read_at = signature, time.time()
            return previous
        try:
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                line = raw[: exc.start].count(b"\n") + 1
                raise PolicyError(path, line, "not valid UTF-8 text") from None
            value = self._parse(text, path)
        except PolicyError as exc:
            log.error("%s %s is invalid, denying the requests it governs: %s",
                      self._what, path, exc)
            return Loaded(signature, raw, None, str(exc))
        log.info("%s %s loaded", self._what, path)
        return Loaded(signature, raw, value, None)
