"""CheckedReceiver: replies checked in worker processes come back complete, in arrival order,
with failures as values; lone messages are checked by the caller; the pool stops."""

from __future__ import annotations

import os
import threading
from collections import deque

import pytest

from orch.core import checkpool
from orch.core.checkpool import MAX_BATCH, CheckedReceiver
from orch.core.errors import ProtocolError, TransportError

DEFAULT_POOL_BACKLOG = checkpool.POOL_BACKLOG


class FakeChannel:
    """A channel whose messages are all there at once (a backlog), then a failure or None."""

    reply_to = "replies"

    def __init__(self, messages: list[bytes], fail_after: bool = False) -> None:
        self.messages = deque(messages)
        self.fail_after = fail_after
        self.receiver_threads: set[str] = set()

    def receive(self, timeout: float) -> bytes | None:
        self.receiver_threads.add(threading.current_thread().name)
        if self.messages:
            return self.messages.popleft()
        if self.fail_after:
            self.fail_after = False
            raise TransportError("broker went away")
        return None

    def broadcast(self, agent: str, payload: bytes, ttl: float) -> None: ...
    def direct(self, identity: str, payload: bytes, ttl: float) -> None: ...
    def close(self) -> None: ...


def check(raw: bytes) -> tuple[bytes, int]:
    if raw.startswith(b"bad"):
        raise ProtocolError(f"rejected {raw.decode()}")
    return raw, os.getpid()


@pytest.fixture(autouse=True)
def pool_at_first_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests exercise the pool itself: start it at the first backlog, as a long call
    does after POOL_BACKLOG looks (see the last test for the default)."""
    monkeypatch.setattr(checkpool, "POOL_BACKLOG", 1)


def drain(receiver: CheckedReceiver[tuple[bytes, int]]) -> list[tuple[bytes, object]]:
    out: list[tuple[bytes, object]] = []
    while (item := receiver.receive(5.0)) is not None:
        out.append(item)
    return out


def test_backlog_is_checked_in_worker_processes_and_returned_in_arrival_order() -> None:
    """Everything but the first message (checked here, before the workers fork)."""
    messages = [f"bad{i}".encode() if i % 7 == 0 else f"m{i}".encode()
                for i in range(5 * MAX_BATCH + 3)]
    channel = FakeChannel(messages)
    with CheckedReceiver(channel, check, workers=3) as receiver:
        out = drain(receiver)
        assert receiver.pooled
    assert [raw for raw, _ in out] == messages
    for raw, outcome in out:
        if raw.startswith(b"bad"):
            assert isinstance(outcome, ProtocolError)
            assert str(outcome) == f"rejected {raw.decode()}"
        else:
            assert isinstance(outcome, tuple) and outcome[0] == raw
    workers = {o[1] for _, o in out[1:] if isinstance(o, tuple)}
    assert workers and os.getpid() not in workers
    assert channel.receiver_threads == {threading.current_thread().name}


def test_bytes_handed_over_are_bounded_whatever_the_message_count(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Large messages fill the byte bound long before the batch count bound: the rest stay
    on the channel (the broker's queue) until checkers catch up, and all come back."""
    monkeypatch.setattr(checkpool, "MAX_IN_FLIGHT_BYTES", 10 * 600)
    messages = [f"m{i}".encode().ljust(600, b".") for i in range(1000)]
    channel = FakeChannel(messages)
    with CheckedReceiver(channel, check, workers=2) as receiver:
        first = receiver.receive(5.0)
        assert first is not None and receiver.pooled
        taken = len(messages) - len(channel.messages)
        # The first two (one checked here, one handed over) and 9 more reach the bound.
        assert taken <= 12, taken
        out = [first, *drain(receiver)]
    assert [raw for raw, _ in out] == messages


def test_lone_message_is_checked_in_the_calling_thread_without_a_pool() -> None:
    receiver = CheckedReceiver(FakeChannel([b"only"]), check, workers=2)
    (item,) = drain(receiver)
    assert item == (b"only", (b"only", os.getpid()))
    assert not receiver.pooled


def test_no_pool_when_one_worker_is_asked_for() -> None:
    receiver = CheckedReceiver(FakeChannel([b"a", b"b", b"c"]), check, workers=1)
    out = drain(receiver)
    assert [o for _, o in out] == [(m, os.getpid()) for m in (b"a", b"b", b"c")]
    assert not receiver.pooled


def test_close_stops_the_worker_processes() -> None:
    receiver = CheckedReceiver(FakeChannel([b"m"] * 100), check, workers=2)
    drain(receiver)
    assert receiver.pooled
    processes = list(receiver._pool._pool)
    assert len(processes) == 2 and all(p.is_alive() for p in processes)
    receiver.close()
    assert not any(p.is_alive() for p in processes)
    assert not receiver.pooled


def test_a_transport_failure_comes_after_every_message_received_before_it() -> None:
    messages = [f"m{i}".encode() for i in range(3 * MAX_BATCH)]
    receiver = CheckedReceiver(FakeChannel(messages, fail_after=True), check, workers=2)
    got: list[bytes] = []
    with pytest.raises(TransportError, match="broker went away"):
        while (item := receiver.receive(5.0)) is not None:
            got.append(item[0])
    receiver.close()
    assert got == messages


def test_a_bug_in_the_check_rejects_that_message_only() -> None:
    def buggy(raw: bytes) -> bytes:
        if raw == b"boom":
            raise KeyError("bug")
        return raw

    messages = [b"a", b"boom", *[b"z"] * 10]
    receiver = CheckedReceiver(FakeChannel(messages), buggy, workers=2)
    out = drain(receiver)
    receiver.close()
    assert [raw for raw, _ in out] == messages
    assert isinstance(out[1][1], ProtocolError) and "KeyError" in str(out[1][1])
    assert [o for _, o in out[2:]] == [b"z"] * 10


def test_what_workers_learn_is_carried_back_to_the_caller() -> None:
    learnt: list[bytes] = []
    seen: list[bytes] = []

    def remembering(raw: bytes) -> bytes:
        learnt.append(raw)  # in the worker's own memory
        return raw

    def take() -> list[bytes]:
        batch = list(learnt)
        learnt.clear()
        return batch

    messages = [f"m{i}".encode() for i in range(2 * MAX_BATCH)]
    receiver = CheckedReceiver(FakeChannel(messages), remembering, workers=2,
                               carry=(take, seen.extend))
    out = drain(receiver)
    receiver.close()
    assert receiver is not None and [raw for raw, _ in out] == messages
    # The first message is checked here, before the workers fork (they inherit it, too);
    # they checked the rest and handed every one of them back.
    assert learnt == messages[:1]
    assert set(seen) == set(messages)


@pytest.mark.parametrize("fault", ["hangs", "dies"])
def test_a_lost_checker_costs_its_bound_not_the_replies(
        monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    """multiprocessing.Pool never completes the task of a worker that died, and a worker
    that hangs never answers: past BATCH_TIMEOUT the pool is dropped and every message is
    still handed back, in order, checked by the caller instead."""
    monkeypatch.setattr(checkpool, "BATCH_TIMEOUT", 0.5)
    parent = os.getpid()

    def faulty(raw: bytes) -> tuple[bytes, int]:
        if raw == b"fault" and os.getpid() != parent:
            if fault == "dies":
                os._exit(1)
            threading.Event().wait()  # stuck for good: only the pool's end stops it
        return check(raw)

    messages = [b"first", b"fault", *[f"m{i}".encode() for i in range(3 * MAX_BATCH)]]
    receiver = CheckedReceiver(FakeChannel(messages), faulty, workers=2)
    out = drain(receiver)
    assert not receiver.pooled
    receiver.close()
    assert [raw for raw, _ in out] == messages
    assert out[1][1] == (b"fault", parent)
    assert all(isinstance(o, tuple) and o[0] == raw for raw, o in out)


def test_a_short_backlog_is_checked_here_and_a_long_one_starts_the_workers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A 50-node call does not fork checkers for what the caller checks in milliseconds;
    a call that keeps falling behind does."""
    monkeypatch.setattr(checkpool, "POOL_BACKLOG", DEFAULT_POOL_BACKLOG)
    short = [f"s{i}".encode() for i in range(50)]
    receiver = CheckedReceiver(FakeChannel(short), check, workers=2)
    assert [o for _, o in drain(receiver)] == [(m, os.getpid()) for m in short]
    assert not receiver.pooled

    long = [f"l{i}".encode() for i in range(2 * checkpool.POOL_BACKLOG + 4 * MAX_BATCH)]
    with CheckedReceiver(FakeChannel(long), check, workers=2) as receiver:
        out = drain(receiver)
        assert receiver.pooled
    assert [raw for raw, _ in out] == long
    assert {o[1] for _, o in out[-MAX_BATCH:]} - {os.getpid()}  # type: ignore[index]
