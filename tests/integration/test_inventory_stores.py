"""The built-in inventory stores against real SQLite files and the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import postgres_schema

from orch.core.config import load_settings
from orch.core.errors import ConfigError
from orch.core.inventory import InventoryStore, JobRecord, NodeRecord, ReplyRecord
from orch.core.plugins import default_registry


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/inventory.db"
    else:
        with postgres_schema() as url:
            yield url


def open_store(url: str) -> InventoryStore:
    return default_registry().inventory_store(url, load_settings(overrides={}))


def node(identity: str, seen: float, **facts: object) -> NodeRecord:
    return NodeRecord(identity, "c1", facts, ("base",), ("rpcutil",), "1.0", 100.0, seen)


def test_nodes_are_upserted_marked_stale_and_expired(store_url: str) -> None:
    store = open_store(store_url)
    try:
        store.upsert_nodes([node("a", 10.0, role="web"), node("b", 20.0, role="db")])
        store.upsert_nodes([node("a", 30.0, role="cache")])
        records = {r.identity: r for r in store.nodes("c1")}
        assert records["a"].facts == {"role": "cache"} and records["a"].last_seen == 30.0
        assert records["a"].classes == ("base",) and records["a"].agents == ("rpcutil",)
        assert store.mark_stale(25.0) == 1
        assert [r.identity for r in store.nodes("c1", include_stale=False)] == ["a"]
        assert [r.stale for r in store.nodes()] == [False, True]
        store.upsert_nodes([node("b", 40.0, role="db")])  # a registration revives it
        assert not any(r.stale for r in store.nodes())
        assert store.expire(35.0) == 1
        assert [r.identity for r in store.nodes()] == ["b"]
        assert store.nodes("other") == []
    finally:
        store.close()


def test_jobs_are_recorded_listed_found_by_prefix_and_expired(store_url: str) -> None:
    store = open_store(store_url)
    try:
        job = JobRecord("abcdef01", "user=me", "c1", "rpcutil", "ping", {}, {"identity": ["a"]},
                        ("a", "b", "c"), 50.0)
        store.record_job(job)
        store.record_job(job)  # idempotent
        reply = ReplyRecord("a", 0, "OK", {"pong": 1}, 51.0)
        store.record_replies("abcdef01", [reply, ReplyRecord("b", 1, "failed", {}, 52.0)])
        store.record_replies("abcdef01", [reply])  # a duplicate reply is not doubled
        store.finish_job("abcdef01", 53.0)
        store.record_job(JobRecord("ffff0000", "user=me", "c1", "x", "y", {}, {}, None, 60.0))
        assert [j.request_id for j in store.jobs()] == ["ffff0000", "abcdef01"]
        found = store.job("abcd")
        assert found is not None and found.finished == 53.0
        assert (found.ok, found.failed, found.no_response) == (1, 1, 1)
        assert found.replies[0].data == {"pong": 1}
        assert store.job("zzz") is None and store.job("") is None and store.job("%") is None
        assert store.expire_jobs(55.0) == 1
        assert [j.request_id for j in store.jobs()] == ["ffff0000"]
    finally:
        store.close()


def test_jobs_page_after_a_cursor(store_url: str) -> None:
    """``jobs(limit, before=(sent, request_id))``: newest first, ties on ``sent`` ordered
    by id, each page starting right after the last one's final job."""
    store = open_store(store_url)
    try:
        for index in range(7):  # pairs share a time: the id breaks the tie
            store.record_job(JobRecord(f"job{index}", "user=me", "c1", "rpcutil", "ping",
                                       {}, {}, ("a",), 100.0 - index // 2))
        walked: list[str] = []
        before = None
        while True:
            page = store.jobs(3, before=before)
            walked += [job.request_id for job in page]
            if len(page) < 3:
                break
            before = (page[-1].sent, page[-1].request_id)
        assert walked == ["job1", "job0", "job3", "job2", "job5", "job4", "job6"]
    finally:
        store.close()


def test_two_connections_share_one_store(store_url: str) -> None:
    first, second = open_store(store_url), open_store(store_url)
    try:
        first.upsert_nodes([node("a", 1.0)])
        second.upsert_nodes([node("b", 2.0)])
        assert [r.identity for r in first.nodes()] == ["a", "b"]
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("url, message", [
    ("nosuch://x", "no plugin provides inventory stores for nosuch://"),
    ("sqlite://", "names no file"),
    ("postgresql://postgres@127.0.0.1:1/test", "cannot connect"),
])
def test_a_bad_store_url_is_a_clear_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_store(url)
