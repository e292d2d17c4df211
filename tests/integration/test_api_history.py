"""``orch api`` with an inventory store (a real SQLite file): jobs from the job history
beside the API's own, per token, and stale nodes with when they were last seen."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from api_support import API_TOKEN, DENIED_TOKEN, ApiProcess, api_fleet
from orch_integration import DEFAULT_NODES

pytest.importorskip("starlette")

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
DENIED = {"Authorization": f"Bearer {DENIED_TOKEN}"}
NODES = [spec for spec in DEFAULT_NODES if spec.identity in ("web1", "db1")]
#: When the records below were written (set by the ``api`` fixture, not at import: a full
#: run imports this module many minutes before it runs); stale_after (1,800 s) leaves any
#: load room before web1 would turn stale.
NOW = time.time()
#: History jobs seeded beyond the first ones: more than the jobs list's largest page.
OLD_JOBS = 230


def _store(url: str):  # type: ignore[no-untyped-def]
    from orch.core.config import load_settings
    from orch.core.plugins import default_registry

    return default_registry().inventory_store(url, load_settings(overrides={}))


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiProcess, str]]:
    from orch.core.inventory import JobRecord, NodeRecord, ReplyRecord

    global NOW
    workdir = tmp_path_factory.mktemp("api-history")
    url = f"sqlite:///{workdir / 'inventory.db'}"
    config = workdir / "orch.yaml"
    # broadcast discovery: the nodes below are recorded, not registered by the fleet
    config.write_text(yaml.safe_dump({"discovery_method": "broadcast",
                                      "plugins": {"inventory": {"store": url,
                                                                "stale_after": 1800}}}))
    with api_fleet(workdir, NODES, config=config) as server:
        collective = server.fleet.collective
        NOW = time.time()
        store = _store(url)
        try:
            store.upsert_nodes([
                NodeRecord("web1", collective, {"role": "web"}, ("role::web",), ("rpcutil",),
                           "1.0", NOW - 3600, NOW),
                NodeRecord("gone1", collective, {"role": "db"}, ("role::db",), ("rpcutil",),
                           "1.0", NOW - 7200, NOW - 3600),
                NodeRecord("gone2", collective, {"role": "db"}, (), ("rpcutil",),
                           "1.0", NOW - 7200, NOW - 2400)])
            store.record_job(JobRecord("cli-job-1", "user=alice", collective, "rpcutil",
                                       "ping", {}, {}, ("web1", "db1"), NOW - 100))
            store.record_replies("cli-job-1", [ReplyRecord("web1", 0, "OK", {"pong": 1},
                                                           NOW - 99)])
            store.finish_job("cli-job-1", NOW - 98)
            store.record_job(JobRecord("denied-job-1", "api=it-denied", collective,
                                       "rpcutil", "ping", {}, {}, ("web1",), NOW - 50))
            for index in range(OLD_JOBS):  # more than one page of history, older than those
                store.record_job(JobRecord(f"old-job-{index:03d}", "user=bob", collective,
                                           "rpcutil", "ping", {}, {}, ("web1",),
                                           NOW - 1000 - index // 2))  # pairs share a time
        finally:
            store.close()
        yield server, url


@pytest.fixture
def http(api: tuple[ApiProcess, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api[0].url, timeout=60) as client:
        yield client


def test_jobs_combine_the_history_and_the_api_per_token(http: httpx.Client,
                                                         api: tuple[ApiProcess, str]) -> None:
    done = http.post("/api/v1/run/rpcutil/ping?wait=true", json={"nodes": ["web1"]},
                     headers=AUTH).json()
    request_id = done["result"]["request_id"]
    listing = http.get("/api/v1/jobs", headers=AUTH).json()
    assert listing["history"] is True
    ids = [job["id"] for job in listing["jobs"]]
    assert done["id"] in ids and "cli-job-1" in ids and "denied-job-1" not in ids
    assert request_id not in ids  # the API's own job is listed once, from memory
    cli = next(job for job in listing["jobs"] if job["id"] == "cli-job-1")
    assert cli["source"] == "history" and cli["caller"] == "user=alice"
    assert cli["replies"] == 1 and cli["state"] == "done"
    # the other token sees the CLI's job and its own, not it-app's
    other = [job["id"] for job in http.get("/api/v1/jobs", headers=DENIED).json()["jobs"]]
    assert "cli-job-1" in other and "denied-job-1" in other and done["id"] not in other
    # one history job: the same document as `orch rpc --json`, its replies as events
    shown = http.get("/api/v1/jobs/cli-job-1", headers=AUTH).json()
    assert shown["result"]["replies"][0]["sender"] == "web1"
    assert shown["result"]["missing"] == ["db1"]
    events = http.get("/api/v1/jobs/cli-job-1/events", headers=AUTH).text
    assert "event: reply" in events and "event: done" in events
    assert http.get("/api/v1/jobs/denied-job-1", headers=AUTH).status_code == 404
    assert http.get("/api/v1/jobs/cli-job", headers=AUTH).status_code == 404  # no prefixes
    # the API's own call was recorded by its client: served from the history by request id
    recorded = http.get(f"/api/v1/jobs/{request_id}", headers=AUTH)
    assert recorded.status_code == 200 and recorded.json()["caller"] == "api=it-app"
    assert http.get(f"/api/v1/jobs/{request_id}", headers=DENIED).status_code == 404


def test_stale_nodes_and_last_seen(http: httpx.Client) -> None:
    summary = http.get("/api/v1/inventory", headers=AUTH).json()
    assert summary["configured"] is True and summary["stale_after"] == 1800
    assert summary["nodes"] == 3 and summary["stale"] == 2
    assert [node["identity"] for node in summary["stale_nodes"]] == ["gone1", "gone2"]
    assert summary["stale_nodes"][0]["last_seen"] == pytest.approx(NOW - 3600)
    web1 = http.get("/api/v1/nodes/web1", headers=AUTH).json()
    assert web1["answered"] and web1["registered"] and not web1["stale"]
    assert web1["last_seen"] == pytest.approx(NOW)
    db1 = http.get("/api/v1/nodes/db1", headers=AUTH).json()  # answers, never registered
    assert db1["answered"] and not db1["registered"]
    gone = http.get("/api/v1/nodes/gone1", headers=AUTH).json()  # silent, but recorded
    assert gone["answered"] is False and gone["stale"] is True
    assert gone["facts"] == {"role": "db"} and gone["last_seen"] == pytest.approx(NOW - 3600)
    assert http.get("/api/v1/inventory?limit=x", headers=AUTH).status_code == 400


def test_without_a_store_the_inventory_is_not_configured(tmp_path: Path) -> None:
    with api_fleet(tmp_path, NODES[:1]) as server, \
            httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.get("/api/v1/inventory", headers=AUTH).json() == {"configured": False}
        assert http.get("/api/v1/jobs", headers=AUTH).json()["history"] is False


def test_a_batched_run_is_one_job_in_the_history(http: httpx.Client,
                                                  api: tuple[ApiProcess, str]) -> None:
    """``batch: 1`` on two nodes is two calls, but one job: one id, one document, one
    history entry expecting both nodes and holding both replies."""
    started = time.time()
    done = http.post("/api/v1/run/rpcutil/ping?wait=true",
                     json={"nodes": ["web1", "db1"], "batch": 1}, headers=AUTH).json()
    assert done["state"] == "done"
    result = done["result"]
    assert sorted(reply["sender"] for reply in result["replies"]) == ["db1", "web1"]
    assert result["missing"] == []
    # the API's client flushed its history before the job finished (Client.close)
    store = _store(api[1])
    try:
        recorded = [job for job in store.jobs(50) if job.caller == "api=it-app"
                    and job.sent >= started - 5 and job.action == "ping"
                    and job.expected is not None and "db1" in job.expected]
    finally:
        store.close()
    assert [job.request_id for job in recorded] == [result["request_id"]]
    assert sorted(recorded[0].expected or ()) == ["db1", "web1"]
    assert sorted(reply.sender for reply in recorded[0].replies) == ["db1", "web1"]
    assert recorded[0].finished is not None
    shown = http.get(f"/api/v1/jobs/{result['request_id']}", headers=AUTH).json()
    assert shown["replies"] == 2 and shown["result"]["missing"] == []
    listed = [job["id"] for job in http.get("/api/v1/jobs", headers=AUTH).json()["jobs"]]
    assert done["id"] in listed and result["request_id"] not in listed  # listed once


def test_the_jobs_list_pages_by_cursor(http: httpx.Client) -> None:
    """Pages of 60 walk every job once, newest first, even when a job starts mid-walk
    (it lands before the cursor, so the walk neither repeats nor skips a job)."""
    seen: list[dict] = []  # type: ignore[type-arg]
    url: str | None = "/api/v1/jobs?limit=60"
    pages = 0
    while url is not None:
        page = http.get(url, headers=AUTH).json()
        assert len(page["jobs"]) <= 60 and page["limit"] == 60
        seen += page["jobs"]
        pages += 1
        if pages == 1:
            assert page["next"] is not None
            fresh = http.post("/api/v1/run/rpcutil/ping?wait=true", json={"nodes": ["web1"]},
                              headers=AUTH).json()
        url = page["links"]["next"]
        assert pages < 20, "the cursor does not advance"
    ids = [job["id"] for job in seen]
    assert len(ids) == len(set(ids))
    assert {f"old-job-{index:03d}" for index in range(OLD_JOBS)} <= set(ids)
    assert "cli-job-1" in ids and "denied-job-1" not in ids and fresh["id"] not in ids
    keys = [(job["created"], job["id"]) for job in seen]
    assert keys == sorted(keys, reverse=True)
    assert pages == -(-len(ids) // 60)
    # the largest page, and a bad cursor
    assert len(http.get("/api/v1/jobs", headers=AUTH).json()["jobs"]) == 200
    for bad in ("x", "nan:job", "12.5:", "inf:a"):
        response = http.get("/api/v1/jobs", params={"before": bad}, headers=AUTH)
        assert response.status_code == 400, bad
        assert "before" in response.json()["error"]["message"]
