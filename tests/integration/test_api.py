"""``orch api`` against a real fleet: ``orch server`` processes on RabbitMQ, ``orch api`` as a
process of its own, spoken to over HTTP as an application would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import API_TOKEN, DENIED_TOKEN, ApiProcess, api_fleet
from orch_integration import DEFAULT_NODES

pytest.importorskip("starlette")

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
DENIED = {"Authorization": f"Bearer {DENIED_TOKEN}"}
ALL = sorted(spec.identity for spec in DEFAULT_NODES)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    with api_fleet(tmp_path_factory.mktemp("api")) as server:
        yield server


@pytest.fixture
def http(api: ApiProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=60) as client:
        yield client


def error_of(response: httpx.Response) -> str:
    message: str = response.json()["error"]["message"]
    return message


# -- authentication ---------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-xxxxxxxxx"},
                                     {"Authorization": f"Basic {API_TOKEN}"},
                                     {"Authorization": "Bearer"}])
def test_no_valid_token_is_401_with_a_json_message(http: httpx.Client,
                                                    headers: dict[str, str]) -> None:
    response = http.get("/api/v1/agents", headers=headers)
    assert response.status_code == 401
    assert "bearer token" in error_of(response)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_every_call_is_logged_with_the_token_name(http: httpx.Client, api: ApiProcess) -> None:
    http.get("/api/v1/agents", headers=AUTH)
    http.get("/api/v1/jobs", headers=DENIED)
    http.get("/api/v1/agents")
    log = api.log()
    assert "GET /api/v1/agents 200 token=it-app" in log
    assert "GET /api/v1/jobs 200 token=it-denied" in log
    assert "GET /api/v1/agents 401 token=-" in log


# -- nodes ------------------------------------------------------------------------------------

def test_nodes_list_all_and_by_filter(http: httpx.Client) -> None:
    everyone = http.get("/api/v1/nodes", headers=AUTH).json()
    assert everyone["total"] == len(ALL) and everyone["nodes"] == ALL
    web = http.get("/api/v1/nodes", params={"fact": "role=web"}, headers=AUTH).json()
    assert web["nodes"] == ["web1", "web2"]
    both = http.get("/api/v1/nodes", params=[("class", "monitoring"), ("fact", "env=prod")],
                    headers=AUTH).json()
    assert both["nodes"] == ["cache1", "db1", "web1"]
    compound = http.get("/api/v1/nodes", params={"compound": "role=db and cores>8"},
                        headers=AUTH).json()
    assert compound["nodes"] == ["db1"]


def test_nodes_pages(http: httpx.Client) -> None:
    page = http.get("/api/v1/nodes", params={"offset": 1, "limit": 2}, headers=AUTH).json()
    assert page == {"total": 5, "offset": 1, "limit": 2, "nodes": ALL[1:3], "cut_short": None,
                    "absent": []}


@pytest.mark.parametrize("params, message", [
    ({"fact": "role"}, "bad filter"),
    ({"compound": "role=web and ("}, "bad filter"),
    ({"limit": "lots"}, "must be an integer"),
    ({"limit": "0"}, "between 1 and 1000"),
])
def test_nodes_bad_query_is_400(http: httpx.Client, params: dict[str, str],
                                message: str) -> None:
    response = http.get("/api/v1/nodes", params=params, headers=AUTH)
    assert response.status_code == 400
    assert message in error_of(response)


def test_one_node(http: httpx.Client) -> None:
    node = http.get("/api/v1/nodes/db1", headers=AUTH).json()
    assert node["identity"] == "db1"
    assert node["facts"]["role"] == "db" and node["facts"]["cores"] == 16
    assert "role::db" in node["classes"] and "rpcutil" in node["agents"]
    assert node["last_seen"] > 0
    missing = http.get("/api/v1/nodes/nosuchnode", headers=AUTH)
    assert missing.status_code == 404 and "nosuchnode" in error_of(missing)
    bad = http.get("/api/v1/nodes/bad%20name", headers=AUTH)
    assert bad.status_code == 400


# -- agents -----------------------------------------------------------------------------------

def test_agents_and_their_ddl(http: httpx.Client) -> None:
    agents = {a["name"]: a for a in http.get("/api/v1/agents", headers=AUTH).json()["agents"]}
    assert "ping" in agents["rpcutil"]["actions"]
    ddl = http.get("/api/v1/agents/rpcutil", headers=AUTH).json()
    assert ddl["actions"]["get_fact"]["input"]["required"] == ["fact"]
    assert http.get("/api/v1/agents/nosuch", headers=AUTH).status_code == 404


# -- run and jobs -----------------------------------------------------------------------------

def sse_events(http: httpx.Client, job: str, headers: dict[str, str]
               ) -> list[tuple[str, dict[str, Any]]]:
    events = []
    with http.stream("GET", f"/api/v1/jobs/{job}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[len("data: "):])))
                if kind == "done":
                    break
    return events


def test_run_returns_a_job_then_streams_replies_and_a_final_document(
        http: httpx.Client) -> None:
    started = http.post("/api/v1/run/rpcutil/ping", json={"filter": {"fact": ["env=prod"]}},
                        headers=AUTH)
    assert started.status_code == 202, started.text
    job = started.json()["job"]
    events = sse_events(http, job, AUTH)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "discovered" and kinds[-1] == "done"
    assert sorted(data["sender"] for kind, data in events if kind == "reply") == [
        "cache1", "db1", "web1"]
    document = http.get(f"/api/v1/jobs/{job}", headers=AUTH).json()
    assert document["state"] == "done"
    assert sorted(r["sender"] for r in document["result"]["replies"]) == ["cache1", "db1", "web1"]
    assert document["result"]["missing"] == []
    listed = http.get("/api/v1/jobs", headers=AUTH).json()["jobs"]
    assert job in [j["id"] for j in listed]
    # Another application does not see this job.
    assert job not in [j["id"] for j in http.get("/api/v1/jobs", headers=DENIED).json()["jobs"]]
    assert http.get(f"/api/v1/jobs/{job}", headers=DENIED).status_code == 404


def test_run_synchronously_with_arguments_nodes_and_limit(http: httpx.Client) -> None:
    response = http.post("/api/v1/run/rpcutil/get_fact", params={"wait": "true"},
                         json={"arguments": {"fact": "datacenter"}, "nodes": ["db1", "web2"]},
                         headers=AUTH)
    assert response.status_code == 200, response.text
    replies = {r["sender"]: r["data"]["value"] for r in response.json()["result"]["replies"]}
    assert replies == {"db1": "ams", "web2": "fra"}
    limited = http.post("/api/v1/run/rpcutil/ping?wait=true", json={"limit": 2},
                        headers=AUTH).json()
    assert len(limited["result"]["replies"]) == 2


def test_run_in_batches_streams_every_reply_as_one_job(http: httpx.Client) -> None:
    started = http.post("/api/v1/run/rpcutil/ping", json={"batch": 2}, headers=AUTH).json()
    events = sse_events(http, started["job"], AUTH)
    assert events[0] == ("discovered", {"count": 5, "nodes": ALL})
    assert sorted(data["sender"] for kind, data in events if kind == "reply") == ALL
    document = http.get(f"/api/v1/jobs/{started['job']}", headers=AUTH).json()["result"]
    assert document["expected"] == ALL and document["missing"] == []
    assert len(document["replies"]) == 5


def test_a_token_whose_certificate_the_policy_denies_gets_denied_replies(
        http: httpx.Client) -> None:
    response = http.post("/api/v1/run/rpcutil/get_fact?wait=true",
                         json={"arguments": {"fact": "role"}, "filter": {"identity": ["db1"]}},
                         headers=DENIED)
    assert response.status_code == 200, response.text
    (reply,) = response.json()["result"]["replies"]
    assert reply["sender"] == "db1" and reply["statuscode"] != 0
    assert "denied" in reply["statusmsg"], reply
    # The same action is allowed to the other application's certificate.
    ok = http.post("/api/v1/run/rpcutil/get_fact?wait=true",
                   json={"arguments": {"fact": "role"}, "filter": {"identity": ["db1"]}},
                   headers=AUTH).json()
    assert ok["result"]["replies"][0]["data"]["value"] == "db"


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (b"[]", 422, "is not of type 'object'"),
    (b'{"filter": {"fact": "role=web"}}', 422, "filter/fact"),
    (b'{"bogus": 1}', 422, "Additional properties"),
    (b'{"limit": 0}', 422, "limit"),
    (b'{"arguments": {}}', 422, "fact"),
    (b'{"arguments": {"fact": "x", "other": 1}}', 422, "invalid arguments"),
    (b"x" * (70 * 1024), 413, "over"),
])
def test_malformed_bodies_are_refused_with_a_json_message(
        http: httpx.Client, body: bytes, status: int, message: str) -> None:
    response = http.post("/api/v1/run/rpcutil/get_fact", content=body,
                         headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert message in error_of(response)


def test_unknown_agent_action_and_wait_value(http: httpx.Client) -> None:
    assert http.post("/api/v1/run/nosuch/ping", json={}, headers=AUTH).status_code == 404
    assert http.post("/api/v1/run/rpcutil/nosuch", json={}, headers=AUTH).status_code == 404
    response = http.post("/api/v1/run/rpcutil/ping?wait=maybe", json={}, headers=AUTH)
    assert response.status_code == 400 and "wait" in error_of(response)
    assert http.get("/api/v1/nosuch", headers=AUTH).status_code == 404
    assert "error" in http.get("/api/v1/nosuch", headers=AUTH).json()


# -- OpenAPI ----------------------------------------------------------------------------------

def test_openapi_document_is_valid_and_matches_the_routes(http: httpx.Client) -> None:
    from openapi_spec_validator import validate

    document = http.get("/openapi.json").json()
    validate(document)
    paths = document["paths"]
    run = paths["/api/v1/run/rpcutil/get_fact"]["post"]
    arguments = run["requestBody"]["content"]["application/json"]["schema"]["properties"][
        "arguments"]
    assert arguments["required"] == ["fact"]
    # Every documented path answers (not 404/405) with the documented auth.
    for path, operations in paths.items():
        concrete = (path.replace("{identity}", "db1").replace("{agent}", "rpcutil")
                    .replace("{job}", "nojob"))
        for method in operations:
            if path.endswith("/events") or "{job}" in path:
                continue  # needs a job; covered above
            if method == "post":
                response = http.post(concrete + "?wait=true", json={
                    "arguments": {"fact": "role", "facts": "role"}, "nodes": ["db1"]}
                    if "get_fact" in path else {"nodes": ["db1"]}, headers=AUTH)
            else:
                response = http.request(method.upper(), concrete, headers=AUTH)
            assert response.status_code not in (404, 405), (method, path, response.text)
            assert str(response.status_code) in operations[method]["responses"], (
                method, path, response.status_code)


# -- TLS for the listener ---------------------------------------------------------------------

def test_the_listener_serves_https_when_given_a_certificate(api: ApiProcess,
                                                            tmp_path: Path) -> None:
    import ssl

    from api_support import api_tokens_file
    from orch_integration import session_ca

    from orch.security import pki

    ca = session_ca()
    server = ca / "issued" / "server" / "localhost.pem"
    if not server.exists():
        pki.issue(ca, "localhost", pki.ROLE_SERVER)
    secure = ApiProcess(api.fleet, tmp_path, api_tokens_file(tmp_path), scheme="https",
                        extra=["--tls-listen-cert", str(server),
                               "--tls-listen-key", str(server.with_suffix(".key"))])
    try:
        trust = ssl.create_default_context(cafile=str(ca / "ca.pem"))
        with httpx.Client(base_url=secure.url, verify=trust, timeout=60) as https:
            agents = https.get("/api/v1/agents", headers=AUTH)
            assert agents.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(secure.url.replace("https:", "http:") + "/api/v1/agents", headers=AUTH,
                      timeout=10)
    finally:
        secure.stop()


# -- orch demo --api --------------------------------------------------------------------------

def test_orch_demo_serves_the_api_and_console_and_prints_their_address(tmp_path: Path) -> None:
    """``orch demo --api`` on memory://: the printed token works, Ctrl-C stops it all."""
    import signal

    from api_support import demo_api
    from orch_integration import STOP_TIMEOUT

    with demo_api(tmp_path, 12) as (url, token, proc):
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/api/v1/nodes", headers=headers, timeout=30).json()[
            "total"] == 12
        ran = httpx.post(f"{url}/api/v1/run/rpcutil/ping?wait=true", json={},
                         headers=headers, timeout=60).json()
        assert len(ran["result"]["replies"]) == 12
        console = httpx.get(f"{url}/console/", timeout=10)
        assert console.status_code == 200
        assert "default-src 'self'" in console.headers["content-security-policy"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=STOP_TIMEOUT) == 0
