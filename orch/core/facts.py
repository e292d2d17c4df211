"""Facts: what a node knows about itself, gathered from fact-source plugins.

Sources are merged in order, later ones overriding earlier ones key by key. A source that
fails is logged and skipped, so one unreadable file never leaves a node without facts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class FactSource(Protocol):
    """A provider of facts. Return plain JSON-compatible data; nest freely.

    An optional ``priority`` attribute orders the merge (see :data:`DEFAULT_PRIORITY`).
    """

    @property
    def name(self) -> str:
        """Shown in logs: where these facts come from."""
        ...

    def load(self) -> Mapping[str, Any]:
        """Read the facts now. Raise any exception on failure; it is logged and skipped."""
        ...


#: Where a source without a ``priority`` attribute goes: after the built-in system facts
#: (0), before the operator's own fact files (100), which therefore always win.
DEFAULT_PRIORITY = 50


def collect_facts(sources: Iterable[FactSource]) -> dict[str, Any]:
    """Merge the facts of every source, lowest ``priority`` first (later ones win).

    Failures are logged with the source's name.
    """
    facts: dict[str, Any] = {}
    ordered = sorted(sources, key=lambda source: getattr(source, "priority", DEFAULT_PRIORITY))
    for source in ordered:
        try:
            facts.update(source.load())
        except Exception as exc:  # a fact source is third-party code reading the outside world
            log.error("fact source %s failed: %s", source.name, exc)
    return facts


def read_classes(path: str | None) -> frozenset[str]:
    """Read a Puppet ``classes.txt`` (one class per line); a missing file means no classes."""
    if not path:
        return frozenset()
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        log.error("cannot read classes file %s: %s", path, exc.strerror)
        return frozenset()
    return frozenset(line.strip() for line in lines if line.strip())
