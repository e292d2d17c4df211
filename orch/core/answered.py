"""Whom a broadcast should hear from: the nodes that answered the same broadcast last time.

A broadcast cannot know who will answer, so it ends a quiet window (``discovery_window``)
after the last reply. That window is a guess both ways: on a loaded fleet a node can answer
after it and be left out without a word, and on a quick fleet every command waits it out
after the last reply has come. Remembering who answered the same question — the same
request, filter and routing, on the same broker and collective — lets the next broadcast
do better on both counts:

- while a remembered node has not answered, the quiet window does not end the broadcast
  (its timeout still does), so a slow node is waited for, and one that never answers is
  named (:attr:`~orch.core.result.CallResult.absent`) instead of silently left out;
- once every remembered node has answered, the shorter ``discovery_settle`` replaces the
  window: a node new since then still counts when it answers in step with the others. A
  new node slower than that (in a distant datacenter, on a loaded host) would be left out
  of every such broadcast, so at least every :data:`RELEARN` seconds one of them waits the
  whole window again, and learns of it.

The memory is a hint in the per-user cache (:mod:`orch.core.cache`) that changes only how
long a broadcast waits: lost, stale, foreign or damaged, it costs one broadcast the plain
window, never a wrong answer. Every reply is still verified, only repliers are counted,
and a remembered node that does not answer is reported, never assumed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from orch.core import cache
from orch.core.config import Settings
from orch.core.result import CallResult

#: Cache files are ``answered-<digest>.json``; this many of the most recent are kept.
PREFIX = "answered-"
KEEP = 64
#: More repliers than this are not remembered (the file would pass the cache's size bound).
MAX_NODES = 50_000
#: Seconds after which a broadcast waits the whole quiet window again (not the settle),
#: to learn of nodes new since that answer later than the remembered ones.
RELEARN = 300.0

#: The answers learned on a broker of this process's own (``memory://``), oldest first.
_IN_PROCESS: dict[str, dict[str, Any]] = {}


class Recollection:
    """Who answered one broadcast question before, and how to remember this time's answer."""

    def __init__(self, settings: Settings, agent: str, action: str, route_agent: str,
                 filter: Mapping[str, Sequence[Any]] | None, process_local: bool = False,
                 ) -> None:
        """``process_local``: the broker lives in this process (``memory://``), so the
        same URL in another process is another fleet: the answer is kept in this process
        only, never on disk."""
        question = json.dumps(
            {"broker": settings.broker, "collective": settings.collective,
             "agent": agent, "action": action, "route": route_agent, "filter": filter or {}},
            sort_keys=True, separators=(",", ":"), default=str)
        self._local = process_local
        self.digest = hashlib.sha256(question.encode()).hexdigest()[:32]
        self._name = f"{PREFIX}{self.digest}.json"
        #: When a broadcast of this question last waited the whole quiet window (epoch).
        self.learned: float | None = None
        #: The nodes that answered last time (None: nothing remembered).
        self.nodes = self._read()
        now = time.time()
        #: Whether this broadcast may end ``discovery_settle`` after every remembered node
        #: answered; if not, it waits the whole window (nothing remembered, or not for
        #: :data:`RELEARN` seconds — a clock set back counts as long ago).
        self.settles = (bool(self.nodes) and self.learned is not None
                        and self.learned <= now < self.learned + RELEARN)

    def _read(self) -> frozenset[str] | None:
        stored = _IN_PROCESS.get(self._name) if self._local else cache.read_json(self._name)
        if not isinstance(stored, dict) or stored.get("digest") != self.digest:
            return None
        nodes, learned = stored.get("nodes"), stored.get("learned")
        if (not isinstance(nodes, list) or len(nodes) > MAX_NODES
                or not all(isinstance(name, str) for name in nodes)):
            return None
        if isinstance(learned, int | float) and not isinstance(learned, bool):
            self.learned = float(learned)
        return frozenset(nodes)

    def remember(self, result: CallResult) -> None:
        """Store who answered ``result``: every replier, whatever its status.

        A broadcast cut short by its timeout heard only part of the fleet, so what was
        remembered before is kept beside it; otherwise a remembered node that stayed silent
        for the whole timeout is forgotten (gone, or no longer selected) and costs at most
        one broadcast its wait.
        """
        if result.error is not None:
            return  # the broker failed mid-way: this answer says little about the fleet
        answered: Iterable[str] = result.replies
        learned = self.learned
        if result.cut_short is not None and self.nodes:
            answered = self.nodes | set(result.replies)
        elif result.cut_short is None and not self.settles:
            learned = time.time()  # it waited the whole window: all there was to hear
        nodes = sorted(answered)
        if (not nodes or len(nodes) > MAX_NODES
                or (frozenset(nodes) == self.nodes and learned == self.learned)):
            return
        stored = {"digest": self.digest, "nodes": nodes, "learned": learned}
        if self._local:
            _IN_PROCESS.pop(self._name, None)
            _IN_PROCESS[self._name] = stored
            while len(_IN_PROCESS) > KEEP:
                del _IN_PROCESS[next(iter(_IN_PROCESS))]
            return
        cache.write_json(self._name, stored)
        cache.prune(PREFIX, KEEP)
