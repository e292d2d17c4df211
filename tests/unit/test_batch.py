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
