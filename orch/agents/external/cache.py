"""Scans reused while nothing in the agents directories changed; forgotten on SIGHUP."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Iterable
from typing import Any

from orch.agents.external.scanning import scan
from orch.agents.external.settings import PLUGIN_NAME, ExternalSettings
from orch.core.agent import Agent
from orch.core.config import Settings

#: One logger for the whole plugin, so the daemon log names it as before the split.
log = logging.getLogger("orch.agents.external")



_cache_lock = threading.Lock()
_cache: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[type[Agent]]]] = {}


def _fingerprint(directories: Iterable[str]) -> tuple[Any, ...]:
    """What the scan depends on: every entry (and nested entry) with mtime, size, mode.

    Cheap (one ``scandir`` per directory) and catches edits in place, which a directory's
    own mtime does not.
    """
    parts: list[Any] = []

    def entries(path: str, depth: int) -> None:
        try:
            listing = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            parts.append((path, "error", exc.errno))
            return
        for entry in listing:
            try:
                info = entry.stat()
            except OSError:
                continue
            parts.append((entry.path, info.st_mtime_ns, info.st_size, info.st_mode,
                          info.st_ino))
            if depth and stat.S_ISDIR(info.st_mode):
                entries(entry.path, depth - 1)

    for directory in directories:
        entries(directory, 1)
    return tuple(parts)


def rescan() -> None:
    """Forget every cached scan: the next ``orch_agents`` call re-reads the directories and
    re-runs the activation checks (the server calls this on SIGHUP)."""
    with _cache_lock:
        _cache.clear()


def cached_scan(settings: Settings) -> list[type[Agent]]:
    """:func:`scan` of ``settings.agents_dir``, reused while nothing on disk changed.

    The client asks for agents (for their DDLs) on every call; re-running every activation
    check each time would cost up to seconds. Loaded and refused agents are logged when a
    scan actually runs.
    """
    directories = tuple(str(d) for d in settings.section(PLUGIN_NAME,
                                                          ExternalSettings).agents_dir)
    if not directories:
        return []
    key = (directories, json.dumps(settings.plugins, sort_keys=True, default=str))
    with _cache_lock:
        fingerprint = _fingerprint(directories)
        cached = _cache.get(key)
        if cached is not None and cached[0] == fingerprint:
            return list(cached[1])
        agents, refusals = scan(directories, settings)
        for refusal in refusals:
            log.warning("external agent refused: %s: %s", refusal.path, refusal.reason)
        for agent in agents:
            ddl = agent.ddl()
            log.info("external agent %s loaded from %s (actions: %s; timeout %gs)",
                     agent.name, getattr(agent, "executable", "?"),
                     ", ".join(sorted(ddl.actions)), ddl.timeout)
        _cache[key] = (fingerprint, agents)
        return list(agents)
