"""Certificates over a deployment's life (issue 17), and the per-identity broker permissions
(issue 11, item 6) — on a private TLS RabbitMQ with EXTERNAL (certificate) logins, with real
``orch server`` processes and the ``orch`` CLI, as docs/security.md tells an operator to run
them: broker certificate from ``orch ca issue --server localhost``, a CRL from ``orch ca
revoke`` copied to where ``tls_crl`` points, rotation by ``orch ca renew`` and SIGHUP.

The broker, the lab and its helpers are those of test_security.py (one TLS broker per
module, daemons stopped and judged at the end of each test).
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from orch_integration import node_security_flags, session_ca
from test_security import (
    Lab,
    SecurityDaemon,
    as_environment,
    audit_records,
    json_result,
    lab,
    orch_cli,
    server_flags,
    session_client,
    tls_broker,
    tls_ca,
    tls_identity,
    tls_lab,
    x509_settings,
)
from tls_rabbitmq import TLSRabbitMQ, identity_permissions, issue

from orch.testing import wait_until

pytestmark = pytest.mark.integration
#: test_security's fixtures, used here by name (one TLS broker for this module).
SHARED_FIXTURES = (lab, tls_ca, tls_broker, tls_lab)


def ca_cli(ca_dir: Path, *args: str) -> Any:
    """``orch ca SUBCOMMAND --dir CA_DIR ARGS`` as an operator runs it."""
    return orch_cli("ca", args[0], "--dir", str(ca_dir), *args[1:], env={})


def publish_crl(ca_dir: Path, target: Path) -> Path:
    """Copy the CA's crl.pem where the fleet's ``tls_crl`` points (as an operator would),
    atomically so that a daemon never reads half a file."""
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(ca_dir / "crl.pem", tmp)
    os.replace(tmp, target)
    return target


def sighup_and_wait(daemon: SecurityDaemon, what: str = "x509: reloaded certificate") -> None:
    """SIGHUP the daemon and wait (bounded) for the log line that says it reloaded."""
    before = daemon.log().count(what)
    os.kill(daemon.pid, signal.SIGHUP)
    wait_until(lambda: daemon.log().count(what) > before, 15, f"{daemon.identity} to reload")


def client_settings(broker: TLSRabbitMQ, collective: str, credentials: dict[str, str],
                    **extra: Any) -> Any:
    from orch.core.config import load_settings

    return load_settings(None, {"broker": broker.url, "collective": collective,
                                "discovery_timeout": 1.0, "cert_cache": "off",
                                **credentials, **extra}, environ={})


@pytest.fixture
def crl_file(tls_broker: TLSRabbitMQ, tmp_path: Path) -> Path:
    """The fleet's copy of the CA's current CRL (``orch ca crl``)."""
    result = ca_cli(tls_broker.ca_dir, "crl")
    assert result.rc == 0, result.describe()
    return publish_crl(tls_broker.ca_dir, tmp_path / "fleet-crl.pem")


def start_node(lab: Lab, broker: TLSRabbitMQ, name: str, ready: dict[str, str],
               collective: str, crl: Path | None = None, audit: bool = True) -> SecurityDaemon:
    node = tls_identity(broker, "node", name)
    env = {"ORCH_TLS_CRL": str(crl)} if crl is not None else {}
    return lab.start(name, broker=broker.url, collective=collective,
                     security_args=server_flags(node), ready_client=ready, env=env,
                     audit=audit)


# --------------------------------------------------------------------------- revocation


def test_revoked_client_is_refused_by_every_node_and_cut_at_the_broker(
        tls_lab: Lab, tls_broker: TLSRabbitMQ, crl_file: Path) -> None:
    carol = tls_identity(tls_broker, "client", "lc-carol")
    nodes = [start_node(tls_lab, tls_broker, name, carol, "lcrevoke", crl_file)
             for name in ("lc-node1", "lc-node2")]
    env = as_environment({"broker": tls_broker.url, "collective": "lcrevoke", **carol})
    result = orch_cli("rpc", "rpcutil", "ping", "-I", "lc-node1", "-I", "lc-node2", "--json",
                      env=env)
    assert result.rc == 0, result.describe()

    revoked = ca_cli(tls_broker.ca_dir, "revoke", "lc-carol", "--reason", "key-compromise")
    assert revoked.rc == 0, revoked.describe()
    publish_crl(tls_broker.ca_dir, crl_file)
    starts = {d.identity: d.audit_file.stat().st_size for d in nodes}
    for daemon in nodes:
        sighup_and_wait(daemon)

    result = orch_cli("rpc", "rpcutil", "ping", "-I", "lc-node1", "-I", "lc-node2", "--json",
                      "--timeout", "3", env=env)
    assert result.rc != 0, result.describe()
    assert json_result(result)["replies"] == [], result.describe()
    fingerprint = next(c["fingerprint"] for c in ca_cli(
        tls_broker.ca_dir, "list", "--json").json() if c["name"] == "lc-carol")
    for daemon in nodes:
        record = wait_until(lambda d=daemon: next(
            (r for r in audit_records(d.audit_file, starts[d.identity])
             if r["decision"] == "revoked"), None), 15, f"{daemon.identity}'s revoked audit")
        assert record["caller"] == "cert=lc-carol", record
        assert record["fingerprint"] == fingerprint, record
        assert "is revoked" in record["reason"], record
        assert all(r["decision"] != "allowed" for r in
                   audit_records(daemon.audit_file, starts[daemon.identity]))

    # The broker side, as docs/security.md says: delete the user, close its connections.
    from kombu import Connection

    options = {"ssl": {"ca_certs": str(tls_broker.ca_file), "certfile": carol["tls_cert"],
                       "keyfile": carol["tls_key"], "cert_reqs": ssl.CERT_REQUIRED},
               "login_method": "EXTERNAL", "connect_timeout": 5}
    with Connection(tls_broker.url, **options) as open_conn:
        open_conn.connect()
        assert tls_broker.ctl("delete_user", "lc-carol").returncode == 0
        tls_broker.ctl("close_all_user_connections", "lc-carol", "revoked")

        def cut() -> bool:
            try:
                open_conn.drain_events(timeout=0.2)
            except TimeoutError:
                return False
            except Exception:
                return True
            return False

        wait_until(cut, 15, "the broker to close the revoked client's open connection")
    result = orch_cli("ping", "--timeout", "1", env=env, timeout=30)
    # The broker user is gone: the broker refuses the certificate's login.
    assert result.rc != 0 and "refused the credentials" in result.stderr, result.describe()


def test_revoked_node_replies_are_rejected_by_the_client(
        tls_lab: Lab, tls_broker: TLSRabbitMQ, crl_file: Path) -> None:
    from orch.core.client import Client

    dave = tls_identity(tls_broker, "client", "lc-dave")
    start_node(tls_lab, tls_broker, "lc-node3", dave, "lcnode", audit=False)
    start_node(tls_lab, tls_broker, "lc-node4", dave, "lcnode", audit=False)
    assert ca_cli(tls_broker.ca_dir, "revoke", "lc-node3").rc == 0
    publish_crl(tls_broker.ca_dir, crl_file)
    settings = client_settings(tls_broker, "lcnode", dave, tls_crl=str(crl_file))
    with Client(settings) as client:
        result = client.ping(nodes=["lc-node3", "lc-node4"])
    assert sorted(result.replies) == ["lc-node4"], result
    assert any("lc-node3" in reason and "revoked" in reason for reason in result.rejected), (
        result.rejected)


def cryptography_mapped(pid: int) -> list[str]:
    """The shared objects of ``cryptography`` (its Rust extension) mapped into ``pid``."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({line.split()[-1] for line in maps.splitlines()
                   if "/cryptography/" in line and ".so" in line})


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_idle_node_with_ed25519_keys_never_imports_cryptography(
        lab: Lab, tmp_path: Path) -> None:
    """A daemon reads its credentials and CRL, and checks a never-seen client certificate,
    in short-lived child processes (orch.security.isolated): the daemon process itself signs
    and verifies with libsodium and has not loaded cryptography — at start, after serving a
    new client (cold cache), after a SIGHUP, and while refusing a revoked client. (The TLS
    lab's RSA certificates load cryptography in the daemon, as documented.)"""
    ca_dir = session_ca()  # orch ca's default: Ed25519
    erin, frank = session_client("it-lean-erin"), session_client("it-lean-frank")
    assert ca_cli(ca_dir, "crl").rc == 0
    crl_file = publish_crl(ca_dir, tmp_path / "fleet-crl.pem")
    node = lab.start("it-lean-node", security_args=node_security_flags("it-lean-node"),
                     ready_client=erin, env={"ORCH_TLS_CRL": str(crl_file)})
    collective = node.collective
    assert cryptography_mapped(node.pid) == []

    def ping(who: dict[str, str]) -> Any:
        env = as_environment({"broker": node.broker, "collective": collective, **who})
        return orch_cli("rpc", "rpcutil", "ping", "-I", "it-lean-node", "--json",
                        "--timeout", "3", env=env)

    for who in (erin, frank):  # frank's certificate is new to the node: a cache miss
        result = ping(who)
        assert result.rc == 0, result.describe()
    assert cryptography_mapped(node.pid) == []

    assert ca_cli(ca_dir, "revoke", "it-lean-frank").rc == 0
    publish_crl(ca_dir, crl_file)
    sighup_and_wait(node)
    result = ping(frank)
    assert result.rc != 0 and json_result(result)["replies"] == [], result.describe()
    result = ping(erin)
    assert result.rc == 0, result.describe()
    assert cryptography_mapped(node.pid) == []


# --------------------------------------------------------------------------- broker name


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_server_certificate_with_sans_passes_the_host_name_check(
        tls_lab: Lab, tls_broker: TLSRabbitMQ, host: str) -> None:
    """The broker runs with `orch ca issue --server localhost` (no --san needed): a client
    checking the broker's name accepts it at localhost and at 127.0.0.1."""
    erin = tls_identity(tls_broker, "client", "lc-erin")
    context = ssl.create_default_context(cafile=str(tls_broker.ca_file))
    context.load_cert_chain(erin["tls_cert"], erin["tls_key"])
    import socket

    with socket.create_connection((host, tls_broker.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        assert tls.getpeercert() is not None
    env = as_environment({"broker": f"amqps://{host}:{tls_broker.port}//",
                          "collective": "lcname", **erin})
    result = orch_cli("ping", "--timeout", "1", env=env, timeout=30)
    assert "cannot reach the broker" not in result.stderr, result.describe()


# --------------------------------------------------------------------------- rotation


def test_node_certificate_rotated_with_sighup_while_calls_run(
        tls_lab: Lab, tls_broker: TLSRabbitMQ) -> None:
    """`orch ca renew` the node's certificate in place and SIGHUP the daemon while a client
    calls it in a loop: every call is answered, and the daemon signs with the new one."""
    from orch.core.client import Client

    frank = tls_identity(tls_broker, "client", "lc-frank")
    daemon = start_node(tls_lab, tls_broker, "lc-rot", frank, "lcrot", audit=False)
    settings = client_settings(tls_broker, "lcrot", frank)
    stop = threading.Event()
    outcomes: list[tuple[int, int]] = []  # (replies, rejected) per call
    errors: list[str] = []

    def loop() -> None:
        try:
            with Client(settings) as client:
                while not stop.is_set() and len(outcomes) < 2000:
                    result = client.ping(nodes=["lc-rot"])
                    outcomes.append((len(result.replies), len(result.rejected)))
        except Exception as exc:  # reported below, never swallowed
            errors.append(repr(exc))

    worker = threading.Thread(target=loop, name="call-loop")
    worker.start()
    try:
        wait_until(lambda: len(outcomes) >= 5 or errors, 30, "calls before the rotation")
        renewed = ca_cli(tls_broker.ca_dir, "renew", "lc-rot")
        assert renewed.rc == 0, renewed.describe()
        new_serial = next(c["serial"] for c in ca_cli(
            tls_broker.ca_dir, "list", "--json").json()
            if c["name"] == "lc-rot" and c["state"] == "valid")
        sighup_and_wait(daemon)
        assert any(f"serial {new_serial}" in line for line in daemon.log().splitlines()
                   if "reloaded certificate" in line), daemon.log()
        count = len(outcomes)
        wait_until(lambda: len(outcomes) >= count + 5 or errors, 30, "calls after the rotation")
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive()
    assert not errors, errors
    assert outcomes and all(o == (1, 0) for o in outcomes), outcomes
    # The reply after the rotation is signed with the renewed certificate.
    from orch.core.protocol import Envelope

    with Client(settings) as client:
        seen: list[str] = []
        real = client.security.verify_reply  # type: ignore[attr-defined]

        def spy(envelope: Envelope, sender: str) -> Any:
            verified = real(envelope, sender)
            seen.append(verified.fingerprint)
            return verified

        client.security.verify_reply = spy  # type: ignore[attr-defined]
        assert client.ping(nodes=["lc-rot"]).replies
    current = next(c["fingerprint"] for c in ca_cli(
        tls_broker.ca_dir, "list", "--json").json()
        if c["name"] == "lc-rot" and c["state"] == "valid")
    assert seen == [current]


# --------------------------------------------------------------------------- expiry


def test_expiring_soon_certificate_is_listed(tls_broker: TLSRabbitMQ) -> None:
    assert ca_cli(tls_broker.ca_dir, "issue", "--node", "lc-soon", "--days", "3").rc == 0
    result = ca_cli(tls_broker.ca_dir, "list", "--expiring", "30d")
    assert result.rc == 1, result.describe()
    assert "lc-soon" in result.stdout and "lc-node1" not in result.stdout, result.describe()


# --------------------------------------------------------------------------- permissions


@pytest.fixture
def per_identity(tls_lab: Lab, tls_broker: TLSRabbitMQ
                 ) -> Iterator[tuple[dict[str, str], dict[str, str], dict[str, str]]]:
    """Two nodes and a client with the documented per-identity permissions, serving."""
    collective = "lcperm"
    made = {}
    for role, name in (("node", "lc-perm1"), ("node", "lc-perm2"), ("client", "lc-permc")):
        cert, key = issue(tls_broker.ca_dir, role, name)
        tls_broker.add_external_user(name, identity_permissions(role, name, (collective,)))
        made[name] = x509_settings(cert, key, tls_broker.ca_file)
    for name in ("lc-perm1", "lc-perm2"):
        tls_lab.start(name, broker=tls_broker.url, collective=collective,
                      security_args=server_flags(made[name]), ready_client=made["lc-permc"])
    yield made["lc-perm1"], made["lc-perm2"], made["lc-permc"]


def test_documented_permissions_let_orch_work_and_stop_other_queues(
        per_identity: tuple[dict[str, str], dict[str, str], dict[str, str]],
        tls_broker: TLSRabbitMQ) -> None:
    from amqp.exceptions import AccessRefused
    from kombu import Connection

    _, node2, client = per_identity
    env = as_environment({"broker": tls_broker.url, "collective": "lcperm", **client})
    result = orch_cli("rpc", "rpcutil", "ping", "--json", env=env)  # broadcast works
    assert result.rc == 0, result.describe()
    assert sorted(r["sender"] for r in json_result(result)["replies"]) == [
        "lc-perm1", "lc-perm2"]

    victim = "orch.lcperm.node.lc-perm1"

    def as_identity(creds: dict[str, str]) -> Connection:
        return Connection(tls_broker.url, login_method="EXTERNAL", connect_timeout=5, ssl={
            "ca_certs": str(tls_broker.ca_file), "certfile": creds["tls_cert"],
            "keyfile": creds["tls_key"], "cert_reqs": ssl.CERT_REQUIRED})

    attacks = {
        "consume": lambda ch: ch.basic_consume(victim, callback=lambda m: None),
        "get": lambda ch: ch.basic_get(victim),
        "unbind": lambda ch: ch.queue_unbind(victim, "orch.lcperm.requests",
                                             "agent.rpcutil"),
        "purge": lambda ch: ch.queue_purge(victim),
        "delete": lambda ch: ch.queue_delete(victim),
        "bind elsewhere": lambda ch: ch.queue_bind(victim, "orch.lcperm.requests", "#"),
    }
    for creds in (node2, client):
        for attack in attacks.values():
            with as_identity(creds) as conn:
                channel = conn.channel()
                with pytest.raises(AccessRefused):
                    attack(channel)
                    conn.drain_events(timeout=2)  # asynchronous refusals arrive here
    # The victim still serves: its queue and binding are intact.
    result = orch_cli("rpc", "rpcutil", "ping", "-I", "lc-perm1", "--json", env=env)
    assert result.rc == 0, result.describe()
    listed = tls_broker.ctl("list_permissions", "-p", "/", "--quiet", "--no-table-headers")
    assert "lc-perm2" in listed.stdout, listed.stdout
