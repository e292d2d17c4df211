"""The audit log: one JSON line for every request a node receives, whatever became of it.

The file is created 0600 and appended to; :meth:`AuditLog.reopen` (called on SIGHUP) starts
a new file after log rotation moved the old one away. Argument values named in
``audit_redact`` are replaced by ``"[redacted]"`` before they are written.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

log = logging.getLogger(__name__)
REDACTED = "[redacted]"


class AuditLog:
    """Appends audit records to ``path``; safe to call from any thread."""

    def __init__(self, path: str, redact: Iterable[str] = ()) -> None:
        self.path = path
        self.redact = frozenset(redact)
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._open()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", buffering=1, encoding="utf-8")

    def reopen(self) -> None:
        """Close and reopen the file (after rotation). The new file is opened first: if
        that fails, the OSError is raised and records keep going to the old one."""
        self.retarget(self.path, self.redact)

    def retarget(self, path: str, redact: Iterable[str] = ()) -> None:
        """Write to ``path`` with ``redact`` from now on (SIGHUP with a new audit_log).

        The same object carries on, so a request that already holds it is recorded in the
        new file instead of being lost; if the new file cannot be opened, nothing changes
        and the OSError is raised.
        """
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        new = os.fdopen(fd, "a", buffering=1, encoding="utf-8")
        with self._lock:
            if self._file is not None:
                self._file.close()
            self._file, self.path, self.redact = new, path, frozenset(redact)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def record(
        self,
        *,
        node: str,
        decision: str,
        reason: str,
        request_id: str | None = None,
        caller: str | None = None,
        fingerprint: str | None = None,
        agent: str | None = None,
        action: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """Write one line. ``decision`` is allowed, denied, rejected, revoked or ignored."""
        entry = {
            "time": round(time.time(), 6),
            "node": node,
            "request_id": request_id,
            "caller": caller,
            "fingerprint": fingerprint,
            "agent": agent,
            "action": action,
            "arguments": self._redacted(arguments or {}),
            "decision": decision,
            "reason": reason,
        }
        line = json.dumps(entry, default=str, separators=(",", ":"))
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(line + "\n")
            except OSError as exc:
                log.error("cannot write audit log %s: %s", self.path, exc)

    def _redacted(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return {k: (REDACTED if k in self.redact else v) for k, v in arguments.items()}
