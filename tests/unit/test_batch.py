"""Calling part of a fleet, or a few nodes at a time (orch.core.batch)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orch.core.batch import CallPlan, Limit, call_nodes
from orch.core.errors import ArgumentError, CallInterrupted
from orch.testing import FleetFactory

NAMES = st.lists(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True), unique=True,
                 max_size=40)


@given(NAMES, st.integers(1, 50), st.integers(0, 2 ** 16))
def test_a_count_limit_keeps_that_many_of_the_nodes(nodes: list[str], count: int,
                                                    seed: int) -> None:
    chosen = Limit(count=count, seed=seed).apply(nodes)
    assert len(chosen) == min(count, len(nodes))
    assert set(chosen) <= set(nodes) and chosen == sorted(chosen)
    assert chosen == Limit(count=count, seed=seed).apply(list(reversed(nodes)))


@given(NAMES, st.floats(0.1, 100))
def test_a_percentage_keeps_at_least_one(nodes: list[str], percent: float) -> None:
    chosen = Limit(percent=percent, method="first").apply(nodes)
    assert len(chosen) == (0 if not nodes else max(1, min(len(nodes),
                                                           round(len(nodes) * percent / 100))))
    assert chosen == sorted(nodes)[:len(chosen)]


@given(NAMES, st.integers(1, 10))
def test_batches_cover_every_chosen_node_once(nodes: list[str], size: int) -> None:
    batches = CallPlan(batch=size).batches(nodes)
    assert [n for b in batches for n in b] == sorted(nodes)
    assert all(1 <= len(b) <= size for b in batches)


@pytest.mark.parametrize("text", ["0", "x", "1.5", "0%", "101%", "-3", ""])
def test_bad_limits_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ArgumentError, match="--limit"):
        Limit.parse(text)


def test_ctrl_c_between_batches_keeps_the_earlier_replies(orch_fleet: FleetFactory) -> None:
    fleet = orch_fleet({"a": {}, "b": {}, "c": {}}, agents=["rpcutil"])
    seen: list[int] = []

    def on_batch(index: int, count: int, nodes: list[str]) -> None:
        seen.append(index)
        if index == 2:
            raise KeyboardInterrupt

    with pytest.raises(CallInterrupted) as caught:
        call_nodes(fleet.client, "rpcutil", "ping", nodes=fleet.identities,
                   plan=CallPlan(batch=1), on_batch=on_batch)
    result = caught.value.result
    assert list(result.replies) == ["a"]
    assert result.missing == ["b", "c"]
    assert seen == [1, 2]


class _Recorder:
    """A call observer that keeps what it hears (as the job history's recorder would)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def sent(self, request, expected) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("sent", request.id, *expected))

    def replied(self, request, reply) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("replied", request.id, reply.sender))

    def finished(self, result) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("finished", result.request_id))

    def close(self) -> None:
        self.events.append(("close",))


def test_batches_are_one_job_for_the_observers(orch_fleet: FleetFactory) -> None:
    """Three batches, one job: sent once expecting every node, every reply under its id,
    finished once — what makes ``--batch`` one entry in the job history."""
    fleet = orch_fleet({"a": {}, "b": {}, "c": {}}, agents=["rpcutil"])
    recorder = _Recorder()
    fleet.client.__dict__["observers"] = [recorder]
    result = call_nodes(fleet.client, "rpcutil", "ping", nodes=fleet.identities,
                        plan=CallPlan(batch=1))
    job = result.request_id
    assert recorder.events[0] == ("sent", job, "a", "b", "c")
    assert sorted(e[2] for e in recorder.events if e[0] == "replied") == ["a", "b", "c"]
    assert {e[1] for e in recorder.events if e[0] == "replied"} == {job}
    assert [e for e in recorder.events if e[0] in ("sent", "finished")] == [
        ("sent", job, "a", "b", "c"), ("finished", job)]
    assert fleet.client.observers == [recorder]  # restored after the group
    # an ordinary call afterwards is its own job again
    fleet.client.call("rpcutil", "ping", nodes=["a"])
    assert recorder.events[-1][0] == "finished" and recorder.events[-1][1] != job


def test_an_interrupted_batch_run_is_still_finished_once(orch_fleet: FleetFactory) -> None:
    fleet = orch_fleet({"a": {}, "b": {}}, agents=["rpcutil"])
    recorder = _Recorder()
    fleet.client.__dict__["observers"] = [recorder]

    def on_batch(index: int, count: int, nodes: list[str]) -> None:
        if index == 2:
            raise KeyboardInterrupt

    with pytest.raises(CallInterrupted) as caught:
        call_nodes(fleet.client, "rpcutil", "ping", nodes=fleet.identities,
                   plan=CallPlan(batch=1), on_batch=on_batch)
    job = caught.value.result.request_id
    assert [e for e in recorder.events if e[0] in ("sent", "finished")] == [
        ("sent", job, "a", "b"), ("finished", job)]
