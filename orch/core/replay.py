"""A bounded memory of request ids, so the same signed bytes cannot be played twice.

A request is only accepted inside its time-to-live (plus clock skew), so an id needs to be
remembered only until then; after that the time-window check rejects a replay by itself.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class ReplayCache:
    """Remembers ids until they expire; at most ``capacity`` of them (oldest forgotten first).

    If the cache is full of unexpired ids (a flood), the oldest are evicted; the time window
    still bounds how old a replay can be.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, request_id: str, expires_at: float, now: float | None = None) -> bool:
        """Record ``request_id``; True if it was already recorded and has not expired."""
        now = time.time() if now is None else now
        with self._lock:
            self._expire(now)
            previous = self._seen.get(request_id)
            if previous is not None and previous >= now:
                return True
            self._seen[request_id] = expires_at
            self._seen.move_to_end(request_id)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            return False

    def _expire(self, now: float) -> None:
        # Ids are mostly inserted in expiry order; stop at the first live one.
        while self._seen:
            oldest_id, expiry = next(iter(self._seen.items()))
            if expiry >= now:
                return
            del self._seen[oldest_id]

    def __len__(self) -> int:
        return len(self._seen)
