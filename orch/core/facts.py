"""Facts: what a node knows about itself, gathered from fact-source plugins.

Sources are merged in order, later ones overriding earlier ones key by key. A source that
fails is logged and skipped, so one plugin's trouble never leaves a node without facts —
except a :class:`FactsError`: the operator's own fact file does not parse. Serving without
those facts would make every filter on them silently miss the node, so the daemon refuses
to start with it, and on SIGHUP :class:`FactLoader` keeps the last good facts and logs the
error loudly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from orch.core.errors import OrchError

log = logging.getLogger(__name__)


class FactSource(Protocol):
    """A provider of facts. Return plain JSON-compatible data; nest freely.

    An optional ``priority`` attribute orders the merge (see :data:`DEFAULT_PRIORITY`).

    A source that learns on its own that its facts changed (a timer re-running a tool) may
    define ``watch(changed)``: the daemon calls it once with a function that makes the
    node re-read its facts and classes now (see :func:`watch_sources`). Call it from the
    source's own thread, never from ``load``; a later ``watch`` replaces the earlier one.
    The state stays with the source and the node that uses it, never in a module global,
    so every node of a process (a simulated fleet) is told only about its own sources.
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


def watch_sources(sources: Iterable[FactSource], changed: Callable[[], None]) -> None:
    """Hand ``changed`` to every source that offers ``watch`` (see :class:`FactSource`);
    a source whose ``watch`` raises is logged and left unwatched."""
    for source in sources:
        watch = getattr(source, "watch", None)
        if not callable(watch):
            continue
        try:
            watch(changed)
        except Exception:  # third-party code: the node serves on without its notices
            log.exception("fact source %s: watch() failed", getattr(source, "name", "?"))


class FactsError(OrchError):
    """Facts the operator wrote cannot be read (a fact file that does not parse); the
    message names the file and the line. Raised by a source, it is never skipped."""


def collect_facts(sources: Iterable[FactSource]) -> dict[str, Any]:
    """Merge the facts of every source, lowest ``priority`` first (later ones win).

    Failures are logged with the source's name; a :class:`FactsError` is raised.
    """
    facts: dict[str, Any] = {}
    ordered = sorted(sources, key=lambda source: getattr(source, "priority", DEFAULT_PRIORITY))
    for source in ordered:
        try:
            facts.update(source.load())
        except FactsError:
            raise
        except Exception as exc:  # a fact source is third-party code reading the outside world
            log.error("fact source %s failed: %s", source.name, exc)
    return facts


class FactLoader:
    """Loads facts for a node: the first load must succeed, later ones keep the last good.

    The first call raises :class:`FactsError` (the daemon refuses to start, naming the file
    and line). Afterwards — SIGHUP after an edit that broke the file — the error is logged
    at error level and the last facts that did load are served on.
    """

    def __init__(self, sources: Iterable[FactSource], label: str = "") -> None:
        self.sources = list(sources)
        self.label = label
        self.last_good: dict[str, Any] | None = None
        #: The error of the latest load that failed and was replaced by the last good facts.
        self.error: FactsError | None = None

    def __call__(self) -> dict[str, Any]:
        try:
            facts = collect_facts(self.sources)
        except FactsError as exc:
            if self.last_good is None:
                raise
            self.error = exc
            log.error("%sFACTS NOT RELOADED: %s; serving the last good facts until it is "
                      "fixed (then send SIGHUP again)", self.label, exc)
            return self.last_good
        self.last_good, self.error = facts, None
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
