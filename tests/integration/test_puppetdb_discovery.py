"""``puppetdb`` discovery against a STAND-IN PuppetDB: a small HTTP server speaking the
documented query API (``GET /pdb/query/v4?query=<PQL>`` answering a JSON array of
``{"certname": …}``). The stand-in answers canned results for the PQL it is asked, so
these tests pin the PQL orch sends, the HTTP exchange and every way an answer can be bad.
A real PuppetDB (Debian's ``puppetdb``, fed by a real puppetserver, over HTTPS) answers
the same queries in ``contrib/orch-puppet/tests/integration/test_puppetdb_real.py``."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orch.core.client import Client
from orch.core.config import load_settings
from orch.core.errors import ConfigError, OrchError
from orch.core.filter import FilterSyntaxError
from orch.discovery.pql import to_pql
from orch.discovery.puppetdb import PuppetDBDiscovery, PuppetDBError


class StandIn(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        #: PQL -> (status, body); unknown queries answer [].
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.queries: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: StandIn

    def do_GET(self) -> None:
        parsed = urllib.parse.urlparse(self.path)
        if parsed.path != "/pdb/query/v4":
            self.send_error(404)
            return
        pql = urllib.parse.parse_qs(parsed.query)["query"][0]
        self.server.queries.append(pql)
        status, body = self.server.answers.get(pql, (200, b"[]"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def puppetdb() -> Iterator[StandIn]:
    server = StandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def client_for(url: str | None) -> Client:
    section = {"url": url} if url else {}
    return Client(load_settings(overrides={
        "broker": "memory://", "security": "insecure", "discovery_timeout": 2.0,
        "plugins": {"puppetdb": section}}, environ={}))


def parsed(client: Client, **terms: list[str]) -> dict[str, list[Any]]:
    return {kind: [client.filters.parse(kind, t) for t in texts] for kind, texts in terms.items()}


ACTIVE = "deactivated is null and expired is null"


@pytest.mark.parametrize("terms, pql", [
    ({}, f"nodes[certname] {{ {ACTIVE} }}"),
    ({"fact": ["role=web"]},
     f'nodes[certname] {{ {ACTIVE} and facts {{ name = "role" and value = "web" }} }}'),
    ({"fact": ["os.family=/deb/"]},
     f'nodes[certname] {{ {ACTIVE} and fact_contents {{ path = ["os", "family"] and '
     'value ~ "deb" } }'),
    ({"fact": ["cores>4"]},
     f'nodes[certname] {{ {ACTIVE} and facts {{ name = "cores" and value > 4 }} }}'),
    ({"fact": ["env!=dev"]},
     f'nodes[certname] {{ {ACTIVE} and !facts {{ name = "env" and value = "dev" }} }}'),
    ({"class": ["role::web"]},
     f'nodes[certname] {{ {ACTIVE} and resources {{ type = "Class" and title = "Role::Web" }} }}'),
    ({"class": ["/nginx/"]},
     f'nodes[certname] {{ {ACTIVE} and resources {{ type = "Class" and title ~ "(?i)nginx" }} }}'),
    ({"identity": ["web1", "/^db/"]},
     f'nodes[certname] {{ {ACTIVE} and (certname = "web1" or certname ~ "^db") }}'),
])
def test_filters_become_the_documented_pql(terms: dict[str, list[str]], pql: str) -> None:
    with client_for(None) as client:
        assert to_pql(parsed(client, **terms), "rpcutil") == pql


@pytest.mark.parametrize("terms, agent, message", [
    ({"compound": ["role=web or role=db"]}, "rpcutil", "cannot translate compound"),
    ({"agent": ["puppet"]}, "rpcutil", r"agent\(s\) puppet"),
    ({}, "service", r"agent\(s\) service"),
])
def test_what_pql_cannot_say_is_refused(terms: dict[str, list[str]], agent: str,
                                        message: str) -> None:
    with client_for(None) as client, pytest.raises(FilterSyntaxError, match=message):
        to_pql(parsed(client, **terms), agent)


def test_discovery_returns_puppetdbs_certnames(puppetdb: StandIn) -> None:
    with client_for(puppetdb.url) as client:
        filter = parsed(client, fact=["role=web"])
        puppetdb.answers[to_pql(filter, "rpcutil")] = (
            200, json.dumps([{"certname": "web2"}, {"certname": "web1"}]).encode())
        assert PuppetDBDiscovery().discover(client, filter, "rpcutil") == ["web1", "web2"]
        assert puppetdb.queries == [to_pql(filter, "rpcutil")]


@pytest.mark.parametrize("status, body, message", [
    (400, b"PQL parse error at line 1", "refused the query \\(400\\): PQL parse error"),
    (200, b"<html>", "not JSON"),
    (200, b'{"certname": "web1"}', "not a list"),
    (200, b'[{"name": "web1"}]', "not a list"),
    (200, b'[{"certname": "bad name!"}]', "not a valid node identity"),
])
def test_a_bad_answer_is_a_clear_error(puppetdb: StandIn, status: int, body: bytes,
                                       message: str) -> None:
    with client_for(puppetdb.url) as client:
        puppetdb.answers[to_pql({}, "rpcutil")] = (status, body)
        with pytest.raises(OrchError, match=message):
            PuppetDBDiscovery().discover(client, {}, "rpcutil")


def test_an_unreachable_or_unconfigured_puppetdb_is_a_clear_error() -> None:
    with client_for("http://127.0.0.1:1") as client, \
            pytest.raises(OrchError, match="not reachable"):
        PuppetDBDiscovery().discover(client, {}, "rpcutil")
    with client_for(None) as client, pytest.raises(ConfigError, match=r"plugins\.puppetdb\.url"):
        PuppetDBDiscovery().discover(client, {}, "rpcutil")


@pytest.fixture
def tls_puppetdb(tmp_path: Path) -> Iterator[tuple[StandIn, dict[str, str], Path]]:
    """The stand-in over HTTPS, requiring a client certificate from its CA, as PuppetDB
    does; yields it, settings with a client certificate it accepts, and a CA directory."""
    import ssl

    from orch.security import pki

    ca = pki.init_ca(tmp_path / "ca", common_name="stand-in CA")
    server = pki.issue(tmp_path / "ca", "localhost", pki.ROLE_SERVER, sans=["DNS:localhost"])
    client = pki.issue(tmp_path / "ca", "alice", pki.ROLE_CLIENT)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca.cert_path)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(server.cert_path, server.key_path)
    standin = StandIn()
    standin.socket = context.wrap_socket(standin.socket, server_side=True)
    thread = threading.Thread(target=standin.serve_forever, daemon=True)
    thread.start()
    try:
        yield standin, {"cert": client.cert_path,
                        "key": str(client.key_path), "ca": ca.cert_path}, tmp_path
    finally:
        standin.shutdown()
        standin.server_close()
        thread.join(timeout=5)


def tls_client(url: str, section: dict[str, str]) -> Client:
    return Client(load_settings(overrides={
        "broker": "memory://", "security": "insecure", "discovery_timeout": 5.0,
        "plugins": {"puppetdb": {"url": url, **section}}}, environ={}))


def test_https_with_a_client_certificate(
        tls_puppetdb: tuple[StandIn, dict[str, str], Path]) -> None:
    standin, section, _ = tls_puppetdb
    url = f"https://localhost:{standin.server_address[1]}"
    standin.answers[to_pql({}, "rpcutil")] = (200, b'[{"certname": "web1"}]')
    with tls_client(url, section) as client:
        assert PuppetDBDiscovery().discover(client, {}, "rpcutil") == ["web1"]


def test_tls_failures_say_which_certificate(
        tls_puppetdb: tuple[StandIn, dict[str, str], Path]) -> None:
    from orch.security import pki

    standin, section, tmp_path = tls_puppetdb
    url = f"https://localhost:{standin.server_address[1]}"
    other = pki.init_ca(tmp_path / "other", common_name="another CA")
    stranger = pki.issue(tmp_path / "other", "mallory", pki.ROLE_CLIENT)
    cases = [
        ({"ca": section["ca"]}, "refused the TLS handshake .*sent no client certificate"),
        ({**section, "cert": stranger.cert_path, "key": str(stranger.key_path)},
         f"refused the TLS handshake .*sent client certificate {stranger.cert_path}"),
        ({**section, "ca": other.cert_path},
         f"its certificate is not trusted .*CA {other.cert_path}"),
    ]
    for settings, message in cases:
        with tls_client(url, settings) as client, pytest.raises(PuppetDBError, match=message):
            PuppetDBDiscovery().discover(client, {}, "rpcutil")
    assert standin.queries == []
