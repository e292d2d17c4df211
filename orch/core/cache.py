"""A small per-user cache for what every start would otherwise recompute the same way.

A short-lived command (``orch ping --nodes FILE``) should not pay for scanning every installed
distribution's entry points or for re-checking an unchanged DDL against the meta-schema each
time it starts. What is stored here is only ever a hint that the reader checks (every entry
carries the key it was computed for), so a stale, foreign or damaged file costs one
recomputation, never a wrong answer.

The directory is ``$ORCH_CACHE_DIR`` when set (``off`` or empty turns caching off), else
``$XDG_CACHE_HOME/orch`` or ``~/.cache/orch``. Files are read only when they belong to the
current user and nobody else may write them, because what they name gets imported.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_ENV = "ORCH_CACHE_DIR"
#: Larger files are not ours (or are damaged): ignore them rather than parse them.
MAX_BYTES = 4 * 1024 * 1024


def cache_dir() -> Path | None:
    """Where cache files live, or None when caching is off or no home is known."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip() in ("", "off") else Path(value)
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except (RuntimeError, KeyError):  # no HOME and no passwd entry: a system daemon
            return None
    return Path(base) / "orch"


def _private(info: os.stat_result) -> bool:
    """Owned by us and not writable by group or others."""
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def read_json(name: str) -> Any:
    """The JSON stored under ``name``, or None (missing, foreign, unreadable, damaged)."""
    directory = cache_dir()
    if directory is None:
        return None
    try:
        fd = os.open(directory / name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not _private(info) or info.st_size > MAX_BYTES:
            log.debug("ignoring cache file %s (not a private regular file)", name)
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return json.loads(handle.read(MAX_BYTES + 1))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def write_json(name: str, data: Any) -> None:
    """Store ``data`` under ``name`` atomically; failures are logged and ignored."""
    directory = cache_dir()
    if directory is None:
        return
    import tempfile

    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(os.stat(directory)):
            log.debug("not writing cache %s: %s is not private", name, directory)
            return
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, separators=(",", ":"))
            os.replace(temp, directory / name)
        except BaseException:
            os.unlink(temp)
            raise
    except (OSError, TypeError, ValueError) as exc:
        log.debug("could not write cache %s: %s", name, exc)


def prune(prefix: str, keep: int) -> None:
    """Delete all but the ``keep`` most recently written of this user's ``prefix*`` files.

    For entries whose name is derived from something that keeps changing (the plugin index
    is one file per interpreter and ``sys.path``, and every virtualenv a test creates is a
    new one), so they do not pile up for ever. An entry pruned while still in use is
    recomputed once by its next reader. Failures are logged and ignored.
    """
    directory = cache_dir()
    if directory is None:
        return
    try:
        entries = []
        with os.scandir(directory) as listing:
            for entry in listing:
                if entry.name.startswith(prefix) and entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    if _private(info):
                        entries.append((info.st_mtime_ns, entry.path))
        entries.sort(reverse=True)
        for _, path in entries[keep:]:
            os.unlink(path)
    except OSError as exc:
        log.debug("could not prune cache files %s*: %s", prefix, exc)
