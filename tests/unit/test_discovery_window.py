"""Broadcast collection ends when replies stop — measured against the fleet's own pace.

A scripted reply channel stands in for the broker so the gaps between replies are exact.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections import deque

from orch.core.client import Client
from orch.core.config import load_settings
from orch.core.protocol import Envelope, Reply, Status


class ScriptedChannel:
    """Delivers each reply at a fixed offset (seconds) from the first receive() call."""

    reply_to = "orch.window.reply.test"

    def __init__(self, request_id: str, offsets: list[float]) -> None:
        self.started: float | None = None
        self.pending = deque(
            (offset, Envelope("reply", Reply(request_id, f"node{i}", "rpcutil", "ping",
                                             Status.OK, "OK", {}).encode()).encode())
            for i, offset in enumerate(offsets))

    def receive(self, timeout: float) -> bytes | None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        if not self.pending:
            time.sleep(timeout)
            return None
        due = self.started + self.pending[0][0]
        if due > now + timeout:
            time.sleep(timeout)
            return None
        time.sleep(max(due - now, 0))
        return self.pending.popleft()[1]

    def close(self) -> None:
        pass


def collect(offsets: list[float], window: float) -> list[str]:
    settings = load_settings(overrides={
        "broker": "memory://", "collective": f"w{uuid.uuid4().hex[:8]}",
        "security": "insecure"}, environ={})
    with Client(settings) as client:
        request_id = uuid.uuid4().hex
        client._channel = ScriptedChannel(request_id, offsets)
        request = client.new_request("rpcutil", "ping")
        request = dataclasses.replace(request, id=request_id)
        result = client.collect(request, None, timeout=5.0, quiet=window)
    return sorted(result.replies)


def test_collection_ends_one_window_after_a_steady_stream() -> None:
    # Replies 50 ms apart, then silence: a 0.2 s window ends it with all of them.
    assert collect([0.0, 0.05, 0.10, 0.15], window=0.2) == ["node0", "node1", "node2", "node3"]


def test_a_fleet_that_paused_once_is_waited_for_longer() -> None:
    # After a 0.15 s gap the window stretches to 0.3 s, so a reply 0.25 s after the previous
    # one still counts; a fixed 0.2 s window would have stopped before it.
    assert collect([0.0, 0.15, 0.40], window=0.2) == ["node0", "node1", "node2"]


def test_a_reply_after_a_long_silence_is_not_waited_for() -> None:
    # No gap longer than 50 ms was seen; 1 s of silence ends collection.
    assert collect([0.0, 0.05, 1.05], window=0.2) == ["node0", "node1"]
