"""Telling the node that its facts or classes changed.

orch's daemon reads facts and classes when it starts and on SIGHUP. Puppet changes both
behind its back: a run rewrites ``classes.txt``, and the facter source refreshes its facts
on a timer. After each run it started, the puppet agent asks its own node to re-read them
(:func:`refresh_node`, through ``NodeContext.refresh``); the facter source is told by the
daemon how to reach its node (``FactSource.watch``). Both happen on this plugin's threads,
never on the request path, and no state is shared between the nodes of a process.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from orch.plugin import read_classes

log = logging.getLogger(__name__)

#: How long to wait for a node that is still being constructed.
READY_TIMEOUT = 30.0


def refresh_node(node: Any, classfile: Path | None) -> bool:
    """Make ``node`` re-read its facts, and its classes when ``classfile`` exists; False
    when it could not (a node without ``refresh``, not ready in time, or failing)."""
    if not callable(getattr(node, "refresh", None)):
        log.debug("node %s has no refresh(): facts and classes update on SIGHUP only",
                  getattr(node, "identity", "?"))
        return False
    if not wait_ready(node, READY_TIMEOUT):
        log.warning("node %s not ready after %gs; not refreshing it",
                    getattr(node, "identity", "?"), READY_TIMEOUT)
        return False
    classes = (read_classes(str(classfile)) if classfile is not None and classfile.exists()
               else None)
    try:
        node.refresh(classes)
    except Exception:  # a node being torn down, or a core that changed
        log.exception("refreshing node %s failed", getattr(node, "identity", "?"))
        return False
    return True


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
