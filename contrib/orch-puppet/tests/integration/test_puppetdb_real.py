"""``orch find --discovery-method puppetdb`` against a REAL PuppetDB (Debian's ``puppetdb``)
fed by the real puppetserver of ``puppet_stack``: three nodes, each a real ``puppet agent``
run with its own certname and custom facts (``FACTER_role`` / ``FACTER_env``) and a class
from its node definition, so PuppetDB holds their facts and catalogs. Discovery goes over
HTTPS with a client certificate from the puppetserver's CA; wrong, missing or unverifiable
certificates and a PuppetDB that is down are clear errors, never a traceback.

The orch side of the PQL (every operator, bad answers) is pinned against a stand-in in
``tests/integration/test_puppetdb_discovery.py``; this file shows that PuppetDB itself
accepts the queries and answers what it stored.
"""

from __future__ import annotations

import logging
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from orch.testing.servers import orch_argv
from puppet_fleet import run
from puppet_stack import PuppetStack, free_port
from puppetdb_stack import FedNode, PuppetDB, feed

log = logging.getLogger(__name__)
NODES = [
    FedNode("web1.pdb.localhost", {"role": "web", "env": "prod"}, "pdbtest::web"),
    FedNode("web2.pdb.localhost", {"role": "web", "env": "dev"}, "pdbtest::web"),
    FedNode("db1.pdb.localhost", {"role": "db", "env": "prod"}, "pdbtest::db"),
]
ALL = sorted(node.certname for node in NODES)
WEB = ["web1.pdb.localhost", "web2.pdb.localhost"]
OURS = r"-I /\.pdb\.localhost$/"
CLIENT = "orch-client.pdb.localhost"


@dataclass
class Finder:
    """Runs ``orch find --discovery-method puppetdb`` with a config file of its own."""

    workdir: Path
    url: str
    tls: dict[str, str]

    def config(self, name: str, url: str | None = None,
               puppetdb: dict[str, str] | None = None) -> Path:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump({
            "broker": "memory://", "discovery_timeout": 20, "identity": CLIENT, **self.tls,
            "plugins": {"puppetdb": {"url": url or self.url, **(puppetdb or {})}}}))
        return path

    def find(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``--log-level info``: orch logs how long the PuppetDB query took (the figure
        docs/inventory.md gives); it is logged here, never asserted."""
        started = time.monotonic()
        result = subprocess.run(
            [*orch_argv(), "--log-level", "info", "find", "--discovery-method",
             "puppetdb", "--config", str(config or self.config("default")), *args],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        took = [line.split("seconds=")[-1] for line in result.stderr.splitlines()
                if "discovery method=puppetdb" in line]
        log.info("orch find %s: exit %d in %.2f s (query %s s)", " ".join(args),
                 result.returncode, time.monotonic() - started, took[0] if took else "-")
        return result

    def found(self, *args: str) -> list[str]:
        result = self.find(*args)
        assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
        return sorted(result.stdout.split())


@pytest.fixture(scope="module")
def finder(puppet_stack: PuppetStack, puppetdb: PuppetDB,
           tmp_path_factory: pytest.TempPathFactory) -> Finder:
    # orch's client certificate: one more certname signed by the puppetserver's CA (no
    # agent run, so PuppetDB knows nothing of it), made while the agents run.
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        bootstrapped = pool.submit(puppet_stack.add_agent, CLIENT)
        feed(puppet_stack, puppetdb, NODES)
        client = bootstrapped.result(timeout=180)
    log.info("3 agent runs stored in PuppetDB in %.1f s", time.monotonic() - started)
    ssl = client.root / "ssl"
    tls = {"tls_cert": str(ssl / "certs" / f"{client.certname}.pem"),
           "tls_key": str(ssl / "private_keys" / f"{client.certname}.pem"),
           "tls_ca": str(ssl / "certs" / "ca.pem")}
    return Finder(tmp_path_factory.mktemp("puppetdb-find"), puppetdb.url, tls)


def test_puppetdb_holds_what_the_agent_runs_sent(puppetdb: PuppetDB, finder: Finder) -> None:
    rows = puppetdb.query('facts[certname, value] { name = "role" }')
    assert sorted((str(r["certname"]), str(r["value"])) for r in rows) == [
        ("db1.pdb.localhost", "db"), ("web1.pdb.localhost", "web"),
        ("web2.pdb.localhost", "web")]


def test_fact_filters(finder: Finder) -> None:
    assert finder.found("-F", "role=web") == WEB
    assert finder.found("-F", "role=web", "-F", "env=prod") == ["web1.pdb.localhost"]
    assert finder.found("-F", "env!=prod", "-F", "role=/./") == ["web2.pdb.localhost"]
    assert finder.found("-F", "role=/^d/") == ["db1.pdb.localhost"]
    # Structured facts (fact_contents) and a numeric comparison, from facter's own facts.
    assert finder.found("-F", "os.family=Debian", *OURS.split(" ", 1)) == ALL
    assert finder.found("-F", "processors.count>=1", *OURS.split(" ", 1)) == ALL
    result = finder.find("-F", "processors.count<1", *OURS.split(" ", 1))
    assert (result.returncode, result.stdout) == (1, "")


def test_class_filters(finder: Finder) -> None:
    assert finder.found("-C", "pdbtest::db") == ["db1.pdb.localhost"]
    assert finder.found("-C", "pdbtest::web") == WEB
    assert finder.found("-C", "/^pdbtest::/") == ALL
    assert finder.found("-C", "pdbtest::web", "-F", "env=dev") == ["web2.pdb.localhost"]


def test_identity_filters(finder: Finder) -> None:
    assert finder.found(*OURS.split(" ", 1)) == ALL
    assert finder.found("-I", "/^web/", "-C", "/pdbtest/") == WEB
    assert finder.found("-I", "db1.pdb.localhost", "-F", "env=prod") == ["db1.pdb.localhost"]
    assert finder.found("-I", "web1.pdb.localhost", "-I", "db1.pdb.localhost",
                        "-F", "role=/./") == ["db1.pdb.localhost", "web1.pdb.localhost"]


def test_no_match_is_exit_1(finder: Finder) -> None:
    result = finder.find("-F", "role=mail")
    assert (result.returncode, result.stdout) == (1, "")
    assert "Traceback" not in result.stderr


def assert_clear_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 1 (as for an unreachable broker, docs/cli.md), nothing printed as found, and
    one ``Error:`` line saying what PuppetDB did."""
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1, result.stderr
    for word in words:
        assert word in error[0], error[0]


def test_client_certificate_from_another_ca_is_refused(
        finder: Finder, tmp_path: Path) -> None:
    orch = orch_argv()
    run([*orch, "ca", "init", "--dir", str(tmp_path / "ca")])
    run([*orch, "ca", "issue", "--dir", str(tmp_path / "ca"), "--client", "stranger"])
    issued = tmp_path / "ca" / "issued" / "client"
    cert, key = issued / "stranger.pem", issued / "stranger.key"
    result = finder.find("-F", "role=web", config=finder.config(
        "stranger", puppetdb={"cert": str(cert), "key": str(key)}))
    assert_clear_error(result, f"PuppetDB at {finder.url} refused the TLS handshake",
                       f"sent client certificate {cert}")


def test_missing_client_certificate_is_refused(finder: Finder) -> None:
    config = finder.config("nocert")
    data = yaml.safe_load(config.read_text())
    del data["tls_cert"], data["tls_key"]
    data["security"] = "insecure"
    config.write_text(yaml.safe_dump(data))
    result = finder.find("-F", "role=web", config=config)
    assert_clear_error(result, f"PuppetDB at {finder.url} refused the TLS handshake",
                       "sent no client certificate")


def test_server_certificate_from_another_ca_is_refused(finder: Finder, tmp_path: Path) -> None:
    orch = orch_argv()
    run([*orch, "ca", "init", "--dir", str(tmp_path / "ca")])
    result = finder.find("-F", "role=web", config=finder.config(
        "otherca", puppetdb={"ca": str(tmp_path / "ca" / "ca.pem")}))
    assert_clear_error(result, f"PuppetDB at {finder.url}: its certificate is not trusted",
                       str(tmp_path / "ca" / "ca.pem"))


def test_puppetdb_down_is_a_clear_error(finder: Finder) -> None:
    url = f"https://localhost:{free_port()}"
    result = finder.find("-F", "role=web", config=finder.config("down", url=url))
    assert_clear_error(result, f"PuppetDB at {url} not reachable", "refused")
