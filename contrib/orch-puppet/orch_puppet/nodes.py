"""Telling the node that its facts or classes changed.

orch's daemon reads facts and classes when it starts and on SIGHUP. Puppet changes both
behind its back: a run rewrites ``classes.txt``, and the facter source refreshes its facts
on a timer. So the puppet agent registers its node here, and after each run it started and
each facter refresh the node re-reads them — on this plugin's threads, never on the
request path.

orch's public :class:`~orch.core.agent.NodeContext` has no "re-read your facts" method yet,
so this uses ``Node.refresh(classes)`` (what SIGHUP calls) when the node has it, and does
nothing otherwise (facts and classes then update on SIGHUP, as for any other source).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orch.plugin import read_classes

log = logging.getLogger(__name__)

#: How long to wait for a node that is still being constructed.
READY_TIMEOUT = 30.0


class NodeRefresher:
    """Nodes of this process and where each one's classes come from."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: weakref.WeakKeyDictionary[Any, Callable[[], Path | None]] = (
            weakref.WeakKeyDictionary())

    def register(self, node: Any, classfile: Callable[[], Path | None]) -> None:
        """Remember ``node``; ``classfile()`` names its classes file (or None)."""
        if not callable(getattr(node, "refresh", None)):
            log.debug("node %s has no refresh(): facts and classes update on SIGHUP only",
                      getattr(node, "identity", "?"))
            return
        with self._lock:
            self._nodes[node] = classfile

    def refresh(self, node: Any) -> bool:
        """Re-read ``node``'s facts, and its classes when the classes file exists."""
        with self._lock:
            classfile = self._nodes.get(node)
        if classfile is None:
            return False
        if not wait_ready(node, READY_TIMEOUT):
            log.warning("node %s not ready after %gs; not refreshing it",
                        getattr(node, "identity", "?"), READY_TIMEOUT)
            return False
        path = classfile()
        classes = read_classes(str(path)) if path is not None and path.exists() else None
        try:
            node.refresh(classes)
        except Exception:  # a node being torn down, or a core that changed
            log.exception("refreshing node %s failed", getattr(node, "identity", "?"))
            return False
        return True

    def refresh_all(self) -> int:
        """Refresh every registered node; return how many were refreshed."""
        with self._lock:
            nodes = list(self._nodes.keys())
        return sum(1 for node in nodes if self.refresh(node))


def wait_ready(node: Any, timeout: float) -> bool:
    """Wait (bounded) until ``node.view()`` works: agents are built before their node has
    read its facts for the first time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            node.view()
            return True
        except AttributeError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


#: The process-wide refresher (one per daemon; a simulated fleet shares it).
REFRESHER = NodeRefresher()
