"""Security end to end: broker TLS with certificate logins, signed requests and replies,
action policies and the audit log — with real ``orch server`` processes, the ``orch`` CLI and
real RabbitMQ nodes.

* Broker TLS runs on a RabbitMQ node of this module only (:mod:`tls_rabbitmq`): TLS listener
  only, client certificates required, EXTERNAL (certificate) logins only, an RSA test CA made
  with ``orch ca init --key-type rsa``.
* Everything else runs on the shared RabbitMQ on 127.0.0.1:5672 (plain AMQP), in collectives
  of its own, signed with the session CA of the integration suite (``session_ca``) — except
  the SIGHUP-under-load test, which floods a private RabbitMQ node (``private_rabbitmq``).

Tests whose docstring says "orch bug" assert the correct behaviour and fail until the bug
they describe is fixed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from orch_integration import (
    BROKERS,
    CLI_TIMEOUT,
    READY_TIMEOUT,
    CliResult,
    Daemon,
    NodeSpec,
    clean_environment,
    client_security_settings,
    new_collective,
    node_security_flags,
    orch_argv,
    session_ca,
)
from orch_integration import (
    wait_answering as wait_answering_as,
)
from private_brokers import PrivateRabbitMQ, rabbitmq_tools
from tls_rabbitmq import (
    PROBE_CERTNAME,
    TLSRabbitMQ,
    issue,
    make_rsa_ca,
    tls_probe,
    tls_rabbitmq_unavailable,
)

from orch.testing import purge_collective, wait_until

pytestmark = pytest.mark.integration

PLAIN_BROKER = BROKERS["rabbitmq"]
#: Seconds a client waits for replies where none is expected: long enough for a loaded
#: machine, short enough to keep the suite quick.
SILENCE_TIMEOUT = 3.0
#: Settings of a client or server identity: security, tls_cert/tls_key/tls_ca or ssldir.
Credentials = dict[str, str]


# --------------------------------------------------------------------------- helpers


def x509_settings(cert: Path, key: Path, ca: Path) -> Credentials:
    return {"security": "x509", "tls_cert": str(cert), "tls_key": str(key), "tls_ca": str(ca)}


def as_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """``{"tls_cert": …}`` → ``{"ORCH_TLS_CERT": …}``."""
    return {f"ORCH_{key.upper()}": value for key, value in settings.items()}


def session_client(name: str) -> Credentials:
    """A client certificate ``name`` from the session CA (issued once)."""
    from orch.security import pki

    ca = session_ca()
    cert = ca / "issued" / "client" / f"{name}.pem"
    if not cert.exists():
        pki.issue(ca, name, pki.ROLE_CLIENT)
    return x509_settings(cert, cert.with_suffix(".key"), ca / "ca.pem")


def orch_cli(*args: str, env: Mapping[str, str], timeout: float = CLI_TIMEOUT) -> CliResult:
    """``orch ARGS`` with exactly ``env``'s ORCH_* variables (nothing from the session)."""
    started = time.monotonic()
    try:
        proc = subprocess.run([*orch_argv(), *args], env=clean_environment(env),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"orch {' '.join(args)} did not finish within {timeout:g}s\n"
                             f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}") from None
    return CliResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def certificate_fingerprint(path: str | Path) -> str:
    from cryptography import x509

    from orch.security import pki

    return pki.fingerprint(x509.load_pem_x509_certificate(Path(path).read_bytes()))


class SecurityDaemon(Daemon):
    """An ``orch server`` with the security flags and extra flags/environment a test gives."""

    def __init__(self, identity: str, broker: str, collective: str, workdir: Path,
                 security_args: Sequence[str], extra_args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None,
                 facts: Mapping[str, Any] | None = None, classes: Sequence[str] = ()) -> None:
        super().__init__(NodeSpec(identity, {"role": "secure", "env": "test", **(facts or {})},
                                  tuple(classes)),
                         broker, collective, workdir)
        self.security_args = list(security_args)
        self.audit_file = workdir / "audit.log"
        self.extra_args = list(extra_args)
        self.env = dict(env or {})

    def security_flags(self) -> list[str]:
        return list(self.security_args)

    def extra_flags(self) -> list[str]:
        return list(self.extra_args)

    def environment(self) -> dict[str, str]:
        return dict(self.env)


class Lab:
    """The daemons of one test (or module): started, waited for, stopped and judged."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.daemons: list[SecurityDaemon] = []
        self.brokers: list[TLSRabbitMQ] = []
        self._collectives: set[tuple[str, str]] = set()

    def start(self, identity: str, *, broker: str = PLAIN_BROKER,
              collective: str | None = None, security_args: Sequence[str],
              ready_client: Credentials, extra_args: Sequence[str] = (),
              env: Mapping[str, str] | None = None, audit: bool = False,
              facts: Mapping[str, Any] | None = None,
              classes: Sequence[str] = ()) -> SecurityDaemon:
        """Start a daemon and wait (bounded) until it answers ``ready_client``'s ping.

        With ``audit``, the daemon writes its audit log to ``daemon.audit_file``; ``facts``
        are added to its default facts, ``classes`` are its classes.
        """
        collective = collective or new_collective("sec")
        workdir = self.workdir / f"daemon{len(self.daemons)}"
        if audit:
            extra_args = [*extra_args, "--audit-log", str(workdir / "audit.log")]
        daemon = SecurityDaemon(identity, broker, collective, workdir, security_args,
                                extra_args, env, facts, classes)
        self.daemons.append(daemon)
        self._collectives.add((broker, collective))
        daemon.start()
        wait_answering(daemon, ready_client)
        return daemon

    def stop(self) -> None:
        problems = []
        for daemon in self.daemons:
            daemon.terminate()
        for daemon in self.daemons:
            daemon.wait_stopped()
            if daemon.killed:  # the test killed it on purpose (and said why)
                continue
            if daemon.needed_sigkill:
                problems.append(f"{daemon.identity} ignored SIGTERM\n{log_tail(daemon)}")
            elif daemon.proc is not None and daemon.proc.returncode not in (0, None):
                problems.append(f"{daemon.identity} exited with status "
                                f"{daemon.proc.returncode}\n{log_tail(daemon)}")
        for broker, collective in self._collectives:
            if broker == PLAIN_BROKER:
                with contextlib.suppress(Exception):
                    purge_collective(broker, collective)
        assert not problems, "orch server shutdown problems:\n" + "\n".join(problems)

    def failure_logs(self) -> list[tuple[str, str]]:
        logs = [(f"orch server {d.identity} ({d.log_file})", d.log()) for d in self.daemons]
        for broker in self.brokers:
            logs += broker.failure_logs()
        return logs


def log_tail(daemon: Daemon, lines: int = 40) -> str:
    return "\n".join(daemon.log().splitlines()[-lines:])


def wait_answering(daemon: SecurityDaemon, client: Credentials,
                   timeout: float = READY_TIMEOUT) -> None:
    """Poll with direct pings from ``client`` until ``daemon`` answers (any status)."""
    wait_answering_as(
        {"broker": daemon.broker, "collective": daemon.collective, **client},
        [daemon.identity], running=lambda _: daemon.running(),
        logs=lambda _: log_tail(daemon), timeout=timeout)


def audit_records(path: Path, start: int = 0) -> list[dict[str, Any]]:
    """The JSON records of an audit log, from byte offset ``start``."""
    try:
        data = path.read_bytes()[start:]
    except FileNotFoundError:
        return []
    text = data.decode()
    complete = text[: text.rfind("\n") + 1]  # a line being written is not complete yet
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def wait_audit(path: Path, predicate: Callable[[dict[str, Any]], bool], what: str,
               start: int = 0, timeout: float = 10.0) -> dict[str, Any]:
    """The first record after ``start`` for which ``predicate(record)`` is true (bounded)."""
    def find() -> dict[str, Any] | None:
        return next((r for r in audit_records(path, start) if predicate(r)), None)

    record: dict[str, Any] = wait_until(find, timeout, what)
    return record


def ping_env(daemon: SecurityDaemon, client: Mapping[str, str]) -> dict[str, str]:
    return as_environment({"broker": daemon.broker, "collective": daemon.collective,
                           **client})


def json_result(result: CliResult) -> dict[str, Any]:
    document = result.json()
    assert isinstance(document, dict), result.describe()
    return document


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.stop()


# --------------------------------------------------------------------------- broker TLS


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The RSA test CA of the broker TLS tests (``orch ca init --key-type rsa``)."""
    return make_rsa_ca(tmp_path_factory.mktemp("tls-ca") / "ca", "orch TLS test CA")


@pytest.fixture(scope="module")
def tls_broker(tls_ca: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRabbitMQ]:
    """A RabbitMQ node of this module: TLS only, certificate logins only."""
    reason = tls_rabbitmq_unavailable()
    if reason is not None:
        pytest.skip(f"cannot run a TLS RabbitMQ node: {reason}")
    tools = rabbitmq_tools()
    assert tools is not None
    broker = TLSRabbitMQ(tools[0], tools[1], tmp_path_factory.mktemp("tls-rabbitmq"),
                         ca_dir=tls_ca)
    try:
        broker.start()
        yield broker
    finally:
        broker.cleanup()


@pytest.fixture
def tls_lab(lab: Lab, tls_broker: TLSRabbitMQ) -> Lab:
    lab.brokers.append(tls_broker)
    return lab


def tls_identity(broker: TLSRabbitMQ, role: str, name: str) -> Credentials:
    """A certificate ``name`` from the broker's CA, also a RabbitMQ user (EXTERNAL login)."""
    cert, key = issue(broker.ca_dir, role, name)
    broker.add_external_user(name)
    return x509_settings(cert, key, broker.ca_file)


def server_flags(credentials: Credentials) -> list[str]:
    return ["--security", credentials["security"], "--tls-cert", credentials["tls_cert"],
            "--tls-key", credentials["tls_key"], "--tls-ca", credentials["tls_ca"]]


def kombu_connect(url: str, ssl_options: dict[str, Any],
                  login_method: str | None = "EXTERNAL") -> None:
    """Connect with kombu/py-amqp directly (no orch code); raises when refused."""
    from kombu import Connection

    options: dict[str, Any] = {"ssl": ssl_options, "connect_timeout": 5}
    if login_method:
        options["login_method"] = login_method
    with Connection(url, **options) as conn:
        conn.connect()


def test_broker_tls_certificate_login_ping_and_rpc(tls_lab: Lab,
                                                   tls_broker: TLSRabbitMQ) -> None:
    """amqps:// without a user: the node and the client log in with their certificates."""
    node = tls_identity(tls_broker, "node", "tls-node1")
    alice = tls_identity(tls_broker, "client", "tls-alice")
    daemon = tls_lab.start("tls-node1", broker=tls_broker.url,
                           security_args=server_flags(node), ready_client=alice)
    env = ping_env(daemon, alice)

    result = orch_cli("ping", "-I", "tls-node1", "--json", env=env)
    assert result.rc == 0, result.describe()
    assert [r["sender"] for r in json_result(result)["replies"]] == ["tls-node1"]

    result = orch_cli("rpc", "rpcutil", "get_fact", "fact=role", "-I", "tls-node1", "--json",
                      env=env)
    assert result.rc == 0, result.describe()
    replies = json_result(result)["replies"]
    assert [(r["sender"], r["status"], r["data"]) for r in replies] == [
        ("tls-node1", "ok", {"fact": "role", "value": "secure"})]

    # A broadcast (discovery, then the call) works over TLS too.
    result = orch_cli("rpc", "rpcutil", "ping", "--json", env=env)
    assert result.rc == 0, result.describe()
    assert [r["sender"] for r in json_result(result)["replies"]] == ["tls-node1"]

    # RabbitMQ itself says who is connected, and how: the daemon's connections are TLS,
    # logged in by EXTERNAL as the certificate's common name.
    listed = tls_broker.ctl("list_connections", "user", "auth_mechanism", "ssl",
                            "peer_cert_subject", "--quiet", "--no-table-headers")
    assert listed.returncode == 0, listed.stderr
    # The fixture's readiness probe (certificate tls-probe) opens TLS and AMQP without ever
    # logging in; the broker may still list its closing connection, user-less: not orch's.
    rows = [row for line in listed.stdout.splitlines() if line.strip()
            if (row := line.split("\t"))[3:] != [f"CN={PROBE_CERTNAME}"]]
    assert rows, listed.stdout
    assert all(row[:3] == ["tls-node1", "EXTERNAL", "true"] for row in rows), listed.stdout
    assert all(row[3] == "CN=tls-node1" for row in rows), listed.stdout


def test_broker_tls_refuses_connection_without_client_certificate(
    tls_broker: TLSRabbitMQ,
) -> None:
    def refusals() -> int:
        return tls_broker.broker_log().count("Certificate required")

    before = refusals()
    # Raw TLS: the session ends before AMQP starts. (Whether the client sees the broker's
    # "certificate required" alert or just the connection closing depends on timing.)
    refusal = tls_probe(tls_broker.port, tls_broker.ca_file)
    assert refusal is not None, "the broker accepted a TLS client without a certificate"

    # kombu / py-amqp with TLS but no certfile.
    with pytest.raises(Exception):  # noqa: B017 - an SSL error or a closed connection
        kombu_connect(tls_broker.url, {"ca_certs": str(tls_broker.ca_file),
                                       "cert_reqs": ssl.CERT_REQUIRED})
    # The broker says why, once per attempt.
    wait_until(lambda: refusals() >= before + 2, 10,
             "RabbitMQ to log 'Certificate required' for both attempts")

    # There is no plain AMQP listener: the only way in is TLS.
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do
        kombu_connect(f"amqp://guest:guest@127.0.0.1:{tls_broker.port}//", {},
                      login_method=None)


def test_broker_tls_refuses_password_login(tls_broker: TLSRabbitMQ) -> None:
    """A valid certificate, but a user and password in the URL (PLAIN): refused, with a
    message naming the mechanisms, without a traceback."""
    alice = tls_identity(tls_broker, "client", "tls-alice")
    url = f"amqps://tls-alice:secret@127.0.0.1:{tls_broker.port}//"
    result = orch_cli("ping", env=as_environment({"broker": url, "collective": "itsecplain",
                                                  **alice}), timeout=30)
    assert result.rc == 1, result.describe()
    assert f"127.0.0.1:{tls_broker.port}" in result.stderr, result.describe()
    assert "EXTERNAL" in result.stderr, result.describe()
    assert "secret" not in result.stderr + result.stdout, "the password was printed"
    assert "Traceback" not in result.stderr, result.describe()


def test_orch_without_tls_settings_on_amqps_fails_clearly(tls_broker: TLSRabbitMQ) -> None:
    """``orch ping`` at an amqps:// broker with no certificate configured: a clear message,
    a non-zero exit, no traceback, no hang."""
    env = as_environment({"broker": tls_broker.url, "collective": "itsecnotls"})
    result = orch_cli("ping", env=env, timeout=30)
    assert result.rc != 0, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert "tls_cert" in result.stderr, result.describe()
    assert result.elapsed < 20, f"took {result.elapsed:.1f}s"


def test_orch_insecure_on_amqps_error_names_the_broker(tls_broker: TLSRabbitMQ) -> None:
    """With ``--security insecure`` nothing is signed, so only the amqps:// broker needs the
    certificate: the message must say so, not blame the x509 security provider.

    orch bug: the error reads "security provider x509 needs tls_cert, tls_key, tls_ca" (from
    orch.security.pki.resolve_credential_paths, called by orch.transports.kombu._tls_options).
    """
    env = as_environment({"broker": tls_broker.url, "collective": "itsecnotls"})
    result = orch_cli("ping", "--security", "insecure", env=env, timeout=30)
    assert result.rc != 0, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert "tls_cert" in result.stderr, result.describe()
    assert "security provider x509" not in result.stderr, result.describe()
    assert "amqps" in result.stderr or f"127.0.0.1:{tls_broker.port}" in result.stderr, \
        result.describe()


def test_broker_tls_refuses_certificate_from_another_ca(
    tls_broker: TLSRabbitMQ, tmp_path: Path
) -> None:
    other = make_rsa_ca(tmp_path / "other-ca", "orch TLS test CA")  # same name, other key
    cert, key = issue(other, "client", "tls-mallory")
    tls_broker.add_external_user("tls-mallory")  # the user exists: only the CA is wrong

    before = tls_broker.broker_log().count("Unknown CA")
    # kombu / py-amqp: trusts the broker, presents a certificate the broker does not trust.
    with pytest.raises(Exception):  # noqa: B017 - an SSL error or a closed connection
        kombu_connect(tls_broker.url, {"certfile": str(cert), "keyfile": str(key),
                                       "ca_certs": str(tls_broker.ca_file),
                                       "cert_reqs": ssl.CERT_REQUIRED})
    assert tls_probe(tls_broker.port, tls_broker.ca_file, cert, key) is not None
    wait_until(lambda: tls_broker.broker_log().count("Unknown CA") >= before + 2, 10,
             "RabbitMQ to log 'Unknown CA' for both attempts")

    # The orch client: its tls_ca holds both CAs, so it starts and trusts the broker; the
    # broker refuses its certificate. Exit 1, the broker named, no traceback.
    bundle = tmp_path / "both-cas.pem"
    bundle.write_bytes((other / "ca.pem").read_bytes() + tls_broker.ca_file.read_bytes())
    env = as_environment({"broker": tls_broker.url, "collective": "itsecotherca",
                          **x509_settings(cert, key, bundle)})
    result = orch_cli("ping", env=env, timeout=30)
    assert result.rc == 1, result.describe()
    assert f"127.0.0.1:{tls_broker.port}" in result.stderr, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert "No responses" not in result.stdout, "the client got in: " + result.describe()


def test_broker_tls_certificate_without_rabbitmq_user_is_refused(
    tls_broker: TLSRabbitMQ,
) -> None:
    """A valid certificate whose common name is not a RabbitMQ user cannot log in."""
    cert, key = issue(tls_broker.ca_dir, "client", "tls-nobody")  # no add_external_user
    env = as_environment({"broker": tls_broker.url, "collective": "itsecnouser",
                          **x509_settings(cert, key, tls_broker.ca_file)})
    result = orch_cli("ping", env=env, timeout=30)
    assert result.rc == 1, result.describe()
    assert "refused the credentials" in result.stderr, result.describe()
    assert "a user of the certificate's name" in result.stderr, result.describe()
    assert f"127.0.0.1:{tls_broker.port}" in result.stderr, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    wait_until(lambda: "tls-nobody" in tls_broker.broker_log(), 10,
             "RabbitMQ to log the refused login of tls-nobody")


def test_broker_tls_client_checks_the_broker_name(tls_lab: Lab,
                                                  tls_broker: TLSRabbitMQ) -> None:
    """The client must check that the broker's certificate names the host in the URL.

    The broker's certificate names localhost and 127.0.0.1; the same listener reached at
    127.0.0.2 presents a certificate that does not name that address — as a man in the
    middle holding any certificate of the CA would (every orch node certificate carries
    serverAuth). Expected: refused, like any TLS client that verifies the server.

    orch bug: orch.transports.kombu._tls_options passes no ``server_hostname`` to py-amqp,
    so only the chain is checked, never the name; the connection succeeds.
    """
    alice = tls_identity(tls_broker, "client", "tls-alice")
    # The correct name works (so the refusal below is about the name only).
    env = as_environment({"broker": tls_broker.url, "collective": "itsecname", **alice})
    result = orch_cli("ping", "--timeout", "1", env=env, timeout=30)
    assert "cannot reach the broker" not in result.stderr, result.describe()

    env = as_environment({"broker": tls_broker.other_url, "collective": "itsecname", **alice})
    result = orch_cli("ping", "--timeout", "1", env=env, timeout=30)
    assert result.rc == 1, result.describe()
    assert "cannot reach the broker" in result.stderr, (
        "the client accepted a broker certificate that does not name 127.0.0.2:\n"
        + result.describe())
    assert "Traceback" not in result.stderr, result.describe()


def test_broker_tls_display_does_not_invent_a_user(tls_lab: Lab,
                                                   tls_broker: TLSRabbitMQ) -> None:
    """An amqps:// URL without a user logs in by certificate; messages must not claim the
    connection is made as ``guest``.

    orch bug: KombuTransport.display_url uses kombu's Connection.as_uri(), which fills in
    the default user: the daemon logs ``broker=amqps://guest:**@127.0.0.1:PORT//`` and
    errors name ``amqps://guest:**@…`` although no password login happens.
    """
    node = tls_identity(tls_broker, "node", "tls-node2")
    alice = tls_identity(tls_broker, "client", "tls-alice")
    daemon = tls_lab.start("tls-node2", broker=tls_broker.url,
                           security_args=server_flags(node), ready_client=alice)
    starting = [line for line in daemon.log().splitlines() if " starting" in line]
    assert starting, daemon.log()
    assert f"127.0.0.1:{tls_broker.port}" in starting[0], starting[0]
    assert "guest" not in starting[0], starting[0]


# --------------------------------------------------------------------------- signatures


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, SecurityDaemon]]:
    """One signed daemon on the plain RabbitMQ, with an audit log, for the rejection tests."""
    lab = Lab(tmp_path_factory.mktemp("gate"))
    try:
        daemon = lab.start("it-sec-gate", security_args=node_security_flags("it-sec-gate"),
                           ready_client=client_security_settings(), audit=True)
        yield lab, daemon
    finally:
        lab.stop()


def assert_not_answered(result: CliResult, identity: str) -> None:
    assert result.rc == 1, result.describe()
    document = json_result(result)
    assert document["replies"] == [], result.describe()
    assert document["missing"] == [identity], result.describe()
    assert "Traceback" not in result.stderr, result.describe()


def test_signed_request_answered_on_plain_rabbitmq(gate: tuple[Lab, SecurityDaemon]) -> None:
    _, daemon = gate
    alice = session_client("it-sec-alice")
    start = daemon.audit_file.stat().st_size
    result = orch_cli("rpc", "rpcutil", "ping", "-I", daemon.identity, "--json",
                      env=ping_env(daemon, alice))
    assert result.rc == 0, result.describe()
    document = json_result(result)
    assert [r["sender"] for r in document["replies"]] == [daemon.identity]
    assert document["rejected"] == []
    record = wait_audit(daemon.audit_file, lambda r: r["request_id"] == document["request_id"],
                        "the audit record of alice's ping", start)
    assert record["caller"] == "cert=it-sec-alice", record
    assert record["decision"] == "allowed", record
    assert record["fingerprint"] == certificate_fingerprint(alice["tls_cert"]), record


def test_node_certificate_cannot_sign_requests(gate: tuple[Lab, SecurityDaemon]) -> None:
    """A client using a node's certificate as its identity gets no answer."""
    from orch.security import pki

    _, daemon = gate
    ca = session_ca()
    rogue = ca / "issued" / "node" / "it-sec-rogue.pem"
    if not rogue.exists():
        pki.issue(ca, "it-sec-rogue", pki.ROLE_NODE)
    start = daemon.audit_file.stat().st_size
    client = x509_settings(rogue, rogue.with_suffix(".key"), ca / "ca.pem")
    result = orch_cli("ping", "-I", daemon.identity, "--json", "--timeout",
                      str(SILENCE_TIMEOUT), env=ping_env(daemon, client))
    assert_not_answered(result, daemon.identity)
    record = wait_audit(
        daemon.audit_file,
        lambda r: r["decision"] == "rejected" and "it-sec-rogue" in r["reason"],
        "the audit record rejecting the node certificate", start)
    assert "is a node certificate and cannot sign requests" in record["reason"], record


def test_certificate_from_another_ca_is_rejected(gate: tuple[Lab, SecurityDaemon],
                                                 tmp_path: Path) -> None:
    """A CA with the same name as the session CA but another key: its client is refused."""
    from orch.security import pki

    _, daemon = gate
    other = tmp_path / "other-ca"
    pki.init_ca(other, common_name="orch integration CA")
    pki.issue(other, "it.client", pki.ROLE_CLIENT)  # the same name as the real client
    client = x509_settings(other / "issued" / "client" / "it.client.pem",
                           other / "issued" / "client" / "it.client.key", other / "ca.pem")
    start = daemon.audit_file.stat().st_size
    result = orch_cli("ping", "-I", daemon.identity, "--json", "--timeout",
                      str(SILENCE_TIMEOUT), env=ping_env(daemon, client))
    assert_not_answered(result, daemon.identity)
    record = wait_audit(
        daemon.audit_file,
        lambda r: r["decision"] == "rejected" and "not issued by the configured CA" in r["reason"],
        "the audit record rejecting the other CA's certificate", start)
    assert "'it.client'" in record["reason"], record


def test_unsigned_request_is_rejected(gate: tuple[Lab, SecurityDaemon]) -> None:
    _, daemon = gate
    start = daemon.audit_file.stat().st_size
    result = orch_cli("ping", "-I", daemon.identity, "--json", "--timeout",
                      str(SILENCE_TIMEOUT), "--security", "insecure",
                      env=as_environment({"broker": daemon.broker,
                                          "collective": daemon.collective}))
    assert_not_answered(result, daemon.identity)
    record = wait_audit(daemon.audit_file,
                        lambda r: r["decision"] == "rejected" and "not signed" in r["reason"],
                        "the audit record rejecting the unsigned request", start)
    assert "is the sender using security x509?" in record["reason"], record


def queue_route(daemon: SecurityDaemon) -> tuple[str, str]:
    """The default exchange and the daemon's queue name: a direct request's route."""
    from orch.transports.kombu import node_queue_name

    return ("", node_queue_name(daemon.collective, daemon.identity))


def test_replayed_request_is_answered_once(gate: tuple[Lab, SecurityDaemon]) -> None:
    """The same signed bytes published twice: one reply, the second audited as a replay."""
    from orch.core.client import Client
    from orch.core.config import load_settings
    from orch.core.protocol import Envelope, Reply

    _, daemon = gate
    audit = daemon.audit_file
    start = audit.stat().st_size
    settings = load_settings(None, {"broker": daemon.broker, "collective": daemon.collective,
                                    **session_client("it-sec-alice")}, environ={})
    with Client(settings) as client:
        request = client.new_request("rpcutil", "ping")  # opens the reply queue
        body = request.encode()
        payload = Envelope("request", body, client.security.seal("request", body)).encode()
        publish_raw(daemon.broker, payload, [queue_route(daemon)] * 2, request.ttl)
        replayed = wait_audit(audit, lambda r: r["request_id"] == request.id
                              and r["decision"] == "rejected",
                              "the audit record of the replayed request", start)
        assert "replayed" in replayed["reason"], replayed
        # Collect for a while after the replay was handled: exactly one reply arrives.
        replies = []
        deadline = time.monotonic() + 1.5
        while (remaining := deadline - time.monotonic()) > 0:
            raw = client.channel.receive(remaining)
            if raw is not None:
                envelope = Envelope.decode(raw)
                client.security.verify(envelope)
                reply = Reply.decode(envelope.body)
                if reply.request_id == request.id:
                    replies.append(reply)
    assert [(r.sender, r.ok) for r in replies] == [(daemon.identity, True)]
    records = [r for r in audit_records(audit, start) if r["request_id"] == request.id]
    # The replay is refused on the consumer thread while the first copy may still be on a
    # filter thread: the two records can be written in either order.
    assert sorted(r["decision"] for r in records) == ["allowed", "rejected"], records
    assert {r["caller"] for r in records} == {"cert=it-sec-alice"}, records


# --------------------------------------------------------------------------- addressing

#: Six nodes in one collective: a-c are web servers, d-f databases.
ADDRESSED = tuple(f"it-sec-addr-{letter}" for letter in "abcdef")
WEB = ADDRESSED[:3]


@pytest.fixture(scope="module")
def addressed_fleet(tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[tuple[Lab, list[SecurityDaemon]]]:
    """Six signed daemons with audit logs, in one collective of their own."""
    lab = Lab(tmp_path_factory.mktemp("addressed"))
    collective = new_collective("addr")
    try:
        daemons = [lab.start(name, collective=collective,
                             security_args=node_security_flags(name),
                             ready_client=session_client("it-sec-alice"), audit=True,
                             facts={"role": "web" if name in WEB else "db"})
                   for name in ADDRESSED]
        yield lab, daemons
    finally:
        lab.stop()


def alice_client(daemon: SecurityDaemon) -> Any:
    from orch.core.client import Client
    from orch.core.config import load_settings

    return Client(load_settings(None, {"broker": daemon.broker,
                                       "collective": daemon.collective,
                                       **session_client("it-sec-alice")}, environ={}))


def publish_raw(broker: str, payload: bytes, routes: Sequence[tuple[str, str]],
                ttl: float) -> None:
    """Publish ``payload`` to each ``(exchange, routing_key)`` with kombu alone, as anyone
    with publish rights on the broker can. Publisher confirms: when this returns, every
    copy is queued, ahead of anything published afterwards."""
    from kombu import Connection, Producer

    with Connection(broker, connect_timeout=5,
                    transport_options={"confirm_publish": True}) as conn:
        producer = Producer(conn.channel())
        for exchange, routing_key in routes:
            producer.publish(payload, exchange=exchange, routing_key=routing_key,
                             expiration=ttl, content_type="application/json",
                             content_encoding="utf-8")


def records_for(daemon: SecurityDaemon, request_id: str, start: int) -> list[dict[str, Any]]:
    return [r for r in audit_records(daemon.audit_file, start)
            if r["request_id"] == request_id]


def barrier(client: Any, daemons: Sequence[SecurityDaemon]) -> None:
    """A follow-up direct ping that each daemon answers only after everything queued
    before it was handled (one queue, one consumer, in order)."""
    names = [d.identity for d in daemons]
    result = client.call("rpcutil", "ping", nodes=names, timeout=CLI_TIMEOUT / 2)
    assert sorted(result.replies) == sorted(names), result
    assert result.rejected == [], result.rejected


def test_request_replayed_after_a_restart_never_runs_again(lab: Lab) -> None:
    """The replay cache dies with the process: a request captured and played again after
    the daemon restarted is refused because it was created before the daemon started."""
    from orch.core.client import Client
    from orch.core.config import load_settings
    from orch.core.protocol import Envelope

    alice = session_client("it-sec-alice")
    # No clock skew allowance, so the restart need not take longer than the default 5 s.
    daemon = lab.start("it-sec-restart", security_args=node_security_flags("it-sec-restart"),
                       ready_client=alice, audit=True, env={"ORCH_CLOCK_SKEW": "0"})
    settings = load_settings(None, {"broker": daemon.broker, "collective": daemon.collective,
                                    **alice}, environ={})
    with Client(settings) as client:
        request = client.new_request("rpcutil", "ping")
        body = request.encode()
        payload = Envelope("request", body, client.security.seal("request", body)).encode()
    publish_raw(daemon.broker, payload, [queue_route(daemon)], request.ttl)
    wait_audit(daemon.audit_file, lambda r: r["request_id"] == request.id
               and r["decision"] == "allowed", "the audit record of the first run")

    daemon.terminate()
    daemon.wait_stopped()
    daemon.start()
    wait_answering(daemon, alice)
    start = daemon.audit_file.stat().st_size
    publish_raw(daemon.broker, payload, [queue_route(daemon)], request.ttl)
    barrier = orch_cli("ping", "-I", daemon.identity, "--json", env=ping_env(daemon, alice))
    assert barrier.rc == 0, barrier.describe()  # answered after the replay was handled
    record = wait_audit(daemon.audit_file, lambda r: r["request_id"] == request.id,
                        "the audit record of the replay after the restart", start)
    assert record["decision"] == "rejected", record
    assert "created before this node started" in record["reason"], record
    assert [r["decision"] for r in audit_records(daemon.audit_file, start)
            if r["request_id"] == request.id] == ["rejected"]


def test_captured_direct_request_redirected_to_other_nodes_never_runs(
    addressed_fleet: tuple[Lab, list[SecurityDaemon]],
) -> None:
    """The attack of issue 16: a signed direct request for node a, captured and re-published
    raw into the queues of b-f and into the broadcast exchange. Only a runs it (once);
    each of b-f refuses every copy as not addressed to it and never runs it."""
    from orch.transports.kombu import node_queue_name, request_exchange_name

    _, daemons = addressed_fleet
    target, others = daemons[0], daemons[1:]
    collective = target.collective
    starts = {d.identity: d.audit_file.stat().st_size for d in daemons}
    with alice_client(target) as client:
        request, payloads = client.addressed(client.new_request("rpcutil", "ping"),
                                             [target.identity])
        [(named, payload)] = payloads
        assert named == (target.identity,)
        # a's genuine delivery, the copies for b-f, then one into the broadcast exchange
        # (every node of the collective hosts rpcutil, so all six get that one).
        publish_raw(target.broker, payload, [
            *[("", node_queue_name(collective, d.identity)) for d in daemons],
            (request_exchange_name(collective), "agent.rpcutil"),
        ], request.ttl)
        result = client.collect(request, [target.identity], CLI_TIMEOUT / 2)
        assert sorted(result.replies) == [target.identity], result
        assert result.rejected == [], result.rejected
        barrier(client, daemons)

    for daemon in others:
        records = records_for(daemon, request.id, starts[daemon.identity])
        assert [(r["decision"], r["reason"]) for r in records] == [
            ("rejected", "not addressed to this node (a direct request for 1 other node)"),
        ] * 2, (daemon.identity, records)
        assert {r["caller"] for r in records} == {"cert=it-sec-alice"}, records
        refused = [line for line in daemon.log().splitlines()
                   if request.id in line and "not addressed to this node" in line]
        assert len(refused) == 2, log_tail(daemon)
    records = records_for(target, request.id, starts[target.identity])
    # The copy is refused on the consumer thread while the genuine request may still be on
    # a filter thread: the two records can be written in either order.
    decisions = sorted((r["decision"], r["reason"]) for r in records)
    assert [d for d, _ in decisions] == ["allowed", "rejected"], records
    assert decisions[1][1] == "replayed request id", records


def test_filtered_broadcast_reaches_exactly_the_matching_nodes(
    addressed_fleet: tuple[Lab, list[SecurityDaemon]],
) -> None:
    """A broadcast names no targets: its filter alone chooses, as before. Discovery by the
    same filter followed by direct requests reaches the same nodes."""
    _, daemons = addressed_fleet
    env = ping_env(daemons[0], session_client("it-sec-alice"))
    for args in (("ping", "-F", "role=web"), ("rpc", "rpcutil", "ping", "-F", "role=web")):
        result = orch_cli(*args, "--json", env=env)
        assert result.rc == 0, result.describe()
        document = json_result(result)
        assert sorted(r["sender"] for r in document["replies"]) == list(WEB), document
        assert document["rejected"] == [], document
    with alice_client(daemons[0]) as client:
        result = client.broadcast("rpcutil", "ping", filter={"fact": [
            {"fact": "role", "operator": "==", "value": "db"}]}, timeout=CLI_TIMEOUT / 2,
            quiet=1.0)
    assert sorted(result.replies) == list(ADDRESSED[3:]), result
    assert result.rejected == [], result.rejected


def test_target_set_in_several_signed_parts_and_a_subset_of_discovered_nodes(
    addressed_fleet: tuple[Lab, list[SecurityDaemon]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches: a call whose target set goes out as three signed requests (two names each,
    one id) is answered once by every node, each running the part that names it. Limits:
    calling a subset of the discovered nodes reaches that subset only."""
    from orch.core import protocol

    _, daemons = addressed_fleet
    monkeypatch.setattr(protocol, "TARGET_BYTES_PER_REQUEST", 2 * (len(ADDRESSED[0]) + 3) + 1)
    starts = {d.identity: d.audit_file.stat().st_size for d in daemons}
    with alice_client(daemons[0]) as client:
        _, payloads = client.addressed(client.new_request("rpcutil", "ping"), ADDRESSED)
        assert [named for named, _ in payloads] == [ADDRESSED[0:2], ADDRESSED[2:4],
                                                    ADDRESSED[4:6]]
        result = client.call("rpcutil", "ping", nodes=list(ADDRESSED))
        assert sorted(result.replies) == list(ADDRESSED) and result.succeeded, result
        for daemon in daemons:
            records = records_for(daemon, result.request_id, starts[daemon.identity])
            assert [r["decision"] for r in records] == ["allowed"], records

        discovered = client.discover({"fact": [
            {"fact": "role", "operator": "==", "value": "web"}]})
        assert discovered == list(WEB)
        limited = client.call("rpcutil", "ping", nodes=discovered[:2])
        assert sorted(limited.replies) == list(WEB[:2]) and limited.succeeded, limited
        barrier(client, daemons)
    for daemon in daemons:
        records = records_for(daemon, limited.request_id, starts[daemon.identity])
        expected = ["allowed"] if daemon.identity in WEB[:2] else []
        assert [r["decision"] for r in records] == expected, (daemon.identity, records)


def test_old_protocol_request_is_refused_with_the_version(
    addressed_fleet: tuple[Lab, list[SecurityDaemon]],
) -> None:
    """A correctly signed request as orch speaking protocol v1 sent it: refused, audited
    and logged with the versions and what to upgrade; never run."""
    from orch.transports.kombu import node_queue_name

    _, daemons = addressed_fleet
    daemon = daemons[0]
    start = daemon.audit_file.stat().st_size
    with alice_client(daemon) as client:
        current = client.new_request("rpcutil", "ping")
        old = json.loads(current.encode())
        old["v"] = 1
        del old["targets"]
        body = json.dumps(old, separators=(",", ":"))
        payload = json.dumps({"v": 1, "kind": "request", "body": body,
                              "security": dict(client.security.seal("request", body))})
        publish_raw(daemon.broker, payload.encode(),
                    [("", node_queue_name(daemon.collective, daemon.identity))], current.ttl)
        barrier(client, [daemon])
    message = ("request has protocol version 1; this orch speaks 2 — upgrade the orch that "
               "sent it")
    records = audit_records(daemon.audit_file, start)
    refused = [r for r in records if r["reason"].startswith(message)]
    assert [r["decision"] for r in refused] == ["rejected"], records
    assert not [r for r in records if r["request_id"] == current.id], records
    assert message in daemon.log(), log_tail(daemon)


# --------------------------------------------------------------------------- policies


def write_policy(directory: Path, name: str, lines: Sequence[str]) -> Path:
    """Write a policy file atomically (as docs/actionpolicy.md recommends)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    tmp = directory / f".{name}.tmp"
    tmp.write_text("".join(f"{line}\n" for line in lines))
    os.replace(tmp, path)
    return path


def test_action_policy_allows_alice_and_denies_bob(lab: Lab, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policy = write_policy(policies, "rpcutil.policy", [
        "policy default deny",
        "allow\tcert=it-alice\tping",
    ])
    alice, bob = session_client("it-alice"), session_client("it-bob")
    daemon = lab.start("it-sec-policy", security_args=node_security_flags("it-sec-policy"),
                       ready_client=alice, extra_args=["--policy-dir", str(policies)])

    result = orch_cli("rpc", "rpcutil", "ping", "-I", daemon.identity,
                      env=ping_env(daemon, alice))
    assert result.rc == 0, result.describe()

    result = orch_cli("rpc", "rpcutil", "ping", "-I", daemon.identity, "--json",
                      env=ping_env(daemon, bob))
    assert result.rc == 1, result.describe()
    [reply] = json_result(result)["replies"]
    assert reply["sender"] == daemon.identity
    assert reply["status"] != "ok", reply
    message = reply["statusmsg"]
    assert "rpcutil.ping not authorized" in message, message
    assert f"denied by default policy of {policy}" in message, message
    assert "agent rpcutil, action ping, caller 'cert=it-bob'" in message, message

    # The text output shows the reason too.
    result = orch_cli("rpc", "rpcutil", "ping", "-I", daemon.identity,
                      env=ping_env(daemon, bob))
    assert result.rc == 1, result.describe()
    assert "not authorized" in result.stdout + result.stderr, result.describe()
    assert "Traceback" not in result.stderr

    # Bob cannot borrow Alice's name: the caller written in the request is ignored, the
    # policy sees the certificate that signed it.
    from orch.core.client import Client
    from orch.core.config import load_settings

    settings = load_settings(None, {"broker": daemon.broker, "collective": daemon.collective,
                                    **bob}, environ={})
    with Client(settings, caller="cert=it-alice") as client:
        claimed = client.call("rpcutil", "ping", nodes=[daemon.identity])
    reply = claimed.replies[daemon.identity]
    assert not reply.ok, reply
    assert "caller 'cert=it-bob'" in reply.statusmsg, reply

    # Alice may ping, nothing else.
    result = orch_cli("rpc", "rpcutil", "get_fact", "fact=role", "-I", daemon.identity,
                      "--json", env=ping_env(daemon, alice))
    assert result.rc == 1, result.describe()
    [reply] = json_result(result)["replies"]
    assert "action get_fact, caller 'cert=it-alice'" in reply["statusmsg"], reply


def test_policy_default_then_default_policy_file(lab: Lab, tmp_path: Path) -> None:
    """No policy file: ``policy_default`` decides; a ``default.policy`` written later is
    used from the next request on, without a restart."""
    policies = tmp_path / "policies"
    policies.mkdir()
    alice = session_client("it-alice")
    daemon = lab.start("it-sec-default", security_args=node_security_flags("it-sec-default"),
                       ready_client=alice, extra_args=["--policy-dir", str(policies)],
                       env={"ORCH_POLICY_DEFAULT": "deny"}, audit=True)
    args = ("rpc", "rpcutil", "ping", "-I", daemon.identity, "--json")
    result = orch_cli(*args, env=ping_env(daemon, alice))
    assert result.rc == 1, result.describe()
    [reply] = json_result(result)["replies"]
    assert "no policy for agent rpcutil: denied (policy_default=deny)" in reply["statusmsg"]

    default = write_policy(policies, "default.policy", ["allow\tcert=it-alice\t*"])
    result = orch_cli(*args, env=ping_env(daemon, alice))
    assert result.rc == 0, result.describe()
    [reply] = json_result(result)["replies"]
    assert reply["status"] == "ok", reply
    request_id = json_result(result)["request_id"]
    record = wait_audit(daemon.audit_file, lambda r: r["request_id"] == request_id,
                        "the audit record of the allowed ping")
    assert record["reason"].startswith(f"allowed by policy {default} line 1"), record


# --------------------------------------------------------------------------- audit log


def test_audit_log_records_redacts_and_reopens_on_sighup(lab: Lab, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    write_policy(policies, "rpcutil.policy", [
        "policy default deny",
        "allow\tcert=it-alice\tget_fact ping",
    ])
    audit = tmp_path / "logs" / "audit.log"
    audit.parent.mkdir()
    config = tmp_path / "server.yaml"
    config.write_text(yaml.safe_dump({"audit_redact": ["fact"], "policy_dir": str(policies)}))
    alice, bob = session_client("it-alice"), session_client("it-bob")
    daemon = lab.start("it-sec-audit", security_args=node_security_flags("it-sec-audit"),
                       ready_client=alice,
                       extra_args=["--config", str(config), "--audit-log", str(audit)])

    allowed = orch_cli("rpc", "rpcutil", "get_fact", "fact=role", "-I", daemon.identity,
                       "--json", env=ping_env(daemon, alice))
    assert allowed.rc == 0, allowed.describe()
    assert json_result(allowed)["replies"][0]["data"]["value"] == "secure"
    denied = orch_cli("rpc", "rpcutil", "get_fact", "fact=role", "-I", daemon.identity,
                      "--json", env=ping_env(daemon, bob))
    assert denied.rc == 1, denied.describe()

    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    ids = {json_result(allowed)["request_id"]: "allowed",
           json_result(denied)["request_id"]: "denied"}
    wait_audit(audit, lambda r: r["request_id"] == json_result(denied)["request_id"],
               "the audit record of bob's call")
    lines = audit.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(r, dict) for r in records)
    by_id = {r["request_id"]: r for r in records if r["request_id"] in ids}
    assert set(by_id) == set(ids), records
    for request_id, decision in ids.items():
        record = by_id[request_id]
        who = alice if decision == "allowed" else bob
        name = "it-alice" if decision == "allowed" else "it-bob"
        assert set(record) >= {"time", "node", "request_id", "caller", "fingerprint", "agent",
                               "action", "arguments", "decision", "reason"}, record
        assert abs(record["time"] - time.time()) < 120, record
        assert record["node"] == daemon.identity
        assert record["caller"] == f"cert={name}", record
        assert record["fingerprint"] == certificate_fingerprint(who["tls_cert"]), record
        assert (record["agent"], record["action"]) == ("rpcutil", "get_fact"), record
        assert record["arguments"] == {"fact": "[redacted]"}, record
        assert record["decision"] == decision, record
        assert f"caller 'cert={name}'" in record["reason"], record
    assert by_id[json_result(allowed)["request_id"]]["reason"].startswith("allowed by policy")
    assert by_id[json_result(denied)["request_id"]]["reason"].startswith("denied by")
    assert '"role"' not in audit.read_text(), "a redacted value reached the audit log"

    # Rotation: move the file away, SIGHUP, and the daemon writes a new one (0600).
    rotated = audit.with_name("audit.log.1")
    audit.rename(rotated)
    os.kill(daemon.pid, signal.SIGHUP)
    wait_until(audit.exists, 10, "the daemon to reopen the audit log after SIGHUP")
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    after = orch_cli("rpc", "rpcutil", "ping", "-I", daemon.identity, "--json",
                     env=ping_env(daemon, alice))
    assert after.rc == 0, after.describe()
    request_id = json_result(after)["request_id"]
    wait_audit(audit, lambda r: r["request_id"] == request_id,
               "the new audit log to record the next request")
    assert request_id not in rotated.read_text()
    assert daemon.running()


def flood_unsigned_requests(broker: str, collective: str, identity: str,
                            stop: threading.Event, limit: int = 50_000) -> int:
    """Publish unsigned ``rpcutil ping`` requests to ``identity`` until ``stop`` (or
    ``limit``); each one is rejected and audited by the daemon. Returns how many."""
    from kombu import Connection, Producer

    from orch.core.protocol import Envelope, Request
    from orch.transports.kombu import node_queue_name

    sent = 0
    with Connection(broker, connect_timeout=5) as conn:
        producer = Producer(conn.channel())
        while not stop.is_set() and sent < limit:
            request = Request(agent="rpcutil", action="ping", collective=collective,
                              sender="flood", caller="user=flood", reply_to="nowhere",
                              data={}, filter={}, ttl=30)
            producer.publish(Envelope("request", request.encode(), {}).encode(), exchange="",
                             routing_key=node_queue_name(collective, identity),
                             expiration=30)
            sent += 1
    return sent


def test_audit_log_sighup_while_requests_arrive(lab: Lab,
                                                private_rabbitmq: PrivateRabbitMQ) -> None:
    """SIGHUP (log rotation) must never stop a busy daemon.

    A busy daemon writes audit records all the time; logrotate's SIGHUP arrives whenever it
    does. Here requests flood in and SIGHUPs come every 20 ms for a few seconds (to make a
    rare interleaving likely); afterwards the daemon must still answer, and stop on SIGTERM.

    orch bug: Server.run installs ``signal.signal(SIGHUP, lambda *_: self.reload())``. Python
    runs a signal handler in the main thread — the thread that also handles every request
    (kombu drain_events → Node.handle → AuditLog.record, which writes under
    ``AuditLog._lock``). When SIGHUP lands while the main thread holds that lock,
    ``reload()`` → ``AuditLog.reopen()`` waits for the (non-reentrant) lock held by its own
    thread: the daemon hangs for good — no request is handled, SIGTERM is ignored.
    """
    daemon = lab.start("it-sec-hup", broker=private_rabbitmq.url,
                       security_args=node_security_flags("it-sec-hup"),
                       ready_client=client_security_settings(), audit=True)
    stop = threading.Event()
    sent: list[int] = []
    flood = threading.Thread(target=lambda: sent.append(flood_unsigned_requests(
        daemon.broker, daemon.collective, daemon.identity, stop)), daemon=True)
    flood.start()
    try:
        wait_until(lambda: daemon.audit_file.stat().st_size > 10_000, 20,
                 "the daemon to audit the flood of requests")
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline and daemon.running():
            os.kill(daemon.pid, signal.SIGHUP)
            time.sleep(0.02)
    finally:
        stop.set()
        flood.join(timeout=30)
    assert daemon.running(), log_tail(daemon)
    try:
        wait_answering(daemon, client_security_settings(), timeout=20)
    except AssertionError:
        daemon.kill()
        raise AssertionError(
            f"orch server stopped serving after SIGHUPs during a flood of {sum(sent)} requests "
            "(deadlock: the SIGHUP handler's AuditLog.reopen() waits for the audit lock "
            "held by the interrupted AuditLog.record() in the same thread)") from None
    daemon.terminate()
    daemon.wait_stopped()
    assert not daemon.needed_sigkill, "orch server ignored SIGTERM after the SIGHUPs"
    assert daemon.proc is not None and daemon.proc.returncode == 0, log_tail(daemon)


# --------------------------------------------------------------------------- Puppet CA


def _puppet_name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def build_puppet_ssl(root_dir: Path, certnames: Sequence[str]) -> dict[str, Path]:
    """A Puppet 6+ style CA (root + intermediate, RSA, no orch role marker) and RSA
    certificates for ``certnames``; returns ``{certname: ssldir}``, one ssldir per
    certname in Puppet's layout: certs/ca.pem (intermediate + root), certs/<certname>.pem,
    private_keys/<certname>.pem (PKCS#1, mode 0600)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = dt.datetime.now(dt.UTC)

    def build(subject: str, issuer: Any, issuer_key: Any, key: Any, ca: bool,
              path_length: int | None = None) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_puppet_name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
        )
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        else:
            builder = (builder
                       .add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]),
                                      critical=False)
                       .add_extension(x509.ExtendedKeyUsage([
                           ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False))
        return builder.sign(issuer_key, hashes.SHA256())

    def new_key() -> Any:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    root_key, intermediate_key = new_key(), new_key()
    root = build("Puppet Root CA: test", _puppet_name("Puppet Root CA: test"), root_key,
                 root_key, ca=True, path_length=1)
    intermediate = build("Puppet CA: puppet.test", root.subject, root_key,
                         intermediate_key, ca=True, path_length=0)
    pem = serialization.Encoding.PEM
    chain = intermediate.public_bytes(pem) + root.public_bytes(pem)
    ssldirs: dict[str, Path] = {}
    for certname in certnames:
        key = new_key()
        cert = build(certname, intermediate.subject, intermediate_key, key, ca=False)
        ssldir = root_dir / certname / "ssl"
        (ssldir / "certs").mkdir(parents=True)
        (ssldir / "private_keys").mkdir(mode=0o750)
        (ssldir / "certs" / "ca.pem").write_bytes(chain)
        (ssldir / "certs" / f"{certname}.pem").write_bytes(cert.public_bytes(pem))
        key_path = ssldir / "private_keys" / f"{certname}.pem"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption()))
        ssldirs[certname] = ssldir
    return ssldirs


def test_puppet_ssldir_with_rsa_keys(lab: Lab, tmp_path: Path) -> None:
    node, user, other_node = "web1.puppet.test", "alice.mcollective", "web2.puppet.test"
    ssldirs = build_puppet_ssl(tmp_path / "puppet", [node, user, other_node])
    assert b"BEGIN RSA PRIVATE KEY" in (ssldirs[user] / "private_keys" /
                                        f"{user}.pem").read_bytes()
    alice = {"security": "x509", "ssldir": str(ssldirs[user]), "identity": user}

    # orch ca check reads the same settings and sees the roles the names give.
    check = orch_cli("ca", "check", "--json", env=as_environment(alice))
    assert check.rc == 0, check.describe()
    assert json_result(check)["role"] == "client", check.stdout
    assert json_result(check)["key_type"] == "rsa-2048", check.stdout

    daemon = lab.start(node, security_args=["--security", "x509",
                                            "--ssldir", str(ssldirs[node])],
                       ready_client=alice)
    result = orch_cli("ping", "-I", node, "--json", env=ping_env(daemon, alice))
    assert result.rc == 0, result.describe()
    assert [r["sender"] for r in json_result(result)["replies"]] == [node]
    result = orch_cli("rpc", "rpcutil", "get_fact", "fact=role", "-I", node, "--json",
                      env=ping_env(daemon, alice))
    assert result.rc == 0, result.describe()
    assert json_result(result)["replies"][0]["data"]["value"] == "secure"

    # Another node's Puppet certificate is a node certificate: it cannot run actions.
    impostor = {"security": "x509", "ssldir": str(ssldirs[other_node]),
                "identity": other_node}
    result = orch_cli("ping", "-I", node, "--json", "--timeout", str(SILENCE_TIMEOUT),
                      env=ping_env(daemon, impostor))
    assert_not_answered(result, node)
    wait_until(lambda: f"certificate '{other_node}' is a node certificate" in daemon.log(), 10,
             "the daemon to log the rejected node certificate")


# --------------------------------------------------------------------------- hostile filters

#: Patterns that backtrack exponentially in Python's ``re`` before they match (the first
#: branch explores every split of the text, then ``[a-z]`` matches): each one, in any place
#: a node accepts a pattern, froze an ``orch server`` before issue 18. Under RE2 they are
#: plain matches, so the request reaches the policy, which denies it.
HOSTILE = [r"(?:(.+)+X|[a-z])", r"(?:(\w|\w\w)+X|[a-z])", r"(?:(\w+\s?)*X|[a-z])"]
#: Patterns the bounded engine refuses outright: huge repetitions, backtracking-only syntax.
REFUSED = [r"a{100000}{100000}", r"(a{1000}){1000}", r"(?=a)a", r"(a)\1"]
LONG = "a" * 48
DDL_BOMB = {
    "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
    "metadata": {"name": "ddlbomb", "description": "A DDL validation pattern that backtracks",
                 "author": "orch tests", "license": "Apache-2.0", "version": "1.0.0",
                 "url": "https://example.invalid/orch", "timeout": 5, "provider": "external"},
    "actions": [{"action": "echo", "description": "Echo", "display": "always",
                 "input": {"message": {"prompt": "Message", "description": "Anything",
                                       "type": "string", "optional": False,
                                       "validation": "^(a+)+$", "maxlength": 0}},
                 "output": {"message": {"description": "The message",
                                        "display_as": "Message"}}}],
}


def _hostile_requests() -> list[tuple[str, str, dict[str, Any], dict[str, list[Any]], str]]:
    """``(agent, action, data, filter, expected audit)`` for every place a pattern is taken."""
    requests: list[tuple[str, str, dict[str, Any], dict[str, list[Any]], str]] = []
    for pattern in HOSTILE:
        slashed = f"/{pattern}/"
        for hostile_filter in (
            {"fact": [{"fact": "os_description", "operator": "=~", "value": pattern}]},
            {"class": [slashed]}, {"identity": [slashed]}, {"agent": [slashed]},
            {"compound": [f"os_description=~{slashed} and {slashed} and "
                          f"identity()=~{slashed} and has_agent('{slashed}')"]},
        ):
            requests.append(("rpcutil", "ping", {}, hostile_filter, "denied"))
    for pattern in REFUSED:
        requests.append(("rpcutil", "ping", {},
                         {"fact": [{"fact": "os_description", "operator": "=~",
                                    "value": pattern}]}, "invalid filter: "))
        requests.append(("rpcutil", "ping", {}, {"compound": [f"/{pattern}/ or role=secure"]},
                         "invalid filter: "))
    requests.append(("rpcutil", "ping", {}, {"compound": ["role=secure or " * 3000 + "x"]},
                     "filter over budget: "))
    requests.append(("rpcutil", "ping", {}, {"class": [f"/{HOSTILE[0]}/"] * 500},
                     "filter over budget: "))
    requests.append(("ddlbomb", "echo", {"message": LONG + "!"}, {},
                     "argument 'message' has an invalid value"))
    return requests


def test_hostile_patterns_and_filters_never_freeze_the_fleet(lab: Lab, tmp_path: Path) -> None:
    """Issue 18, end to end: a caller whom policy denies everything sends catastrophic
    patterns in every place a node accepts one — fact, class, identity and agent terms,
    compound filters, a DDL validation, and (through the policy's own caller, fact and
    class patterns) the action policy — plus filters over budget. Every node still answers
    another caller's ping within a bounded wait, and audits each request as refused."""
    from orch.core.client import Client
    from orch.core.config import load_settings
    from orch.core.filter import FilterBudget, FilterEngine
    from orch.core.protocol import Envelope

    policies = tmp_path / "policies"
    write_policy(policies, "default.policy", [
        "policy default deny",
        f"deny\t/^{HOSTILE[0]}$/\t*",
        f"deny\t*\t*\tos_description=~/^{HOSTILE[1]}$/",
        f"deny\t*\t*\tos_description=~/^{HOSTILE[2]}$/ or has_class('/^{HOSTILE[0]}$/')",
        f"deny\t*\t*\t*\t/^{HOSTILE[1]}$/",
        "allow\tcert=it-flt-alice\tping",
    ])
    agents = tmp_path / "agents"
    agents.mkdir()
    script = agents / "ddlbomb"
    script.write_text((Path(__file__).parents[1] / "unit" / "external_agents" / "pyecho")
                      .read_text())
    script.chmod(0o755)
    (agents / "ddlbomb.json").write_text(json.dumps(DDL_BOMB))

    alice = session_client("it-flt-alice")
    mallory = session_client(f"it-flt-mallory-{LONG}")
    collective = new_collective("flt")
    daemons = [
        lab.start(f"it-flt-{n}-{LONG}", collective=collective,
                  security_args=node_security_flags(f"it-flt-{n}-{LONG}"), ready_client=alice,
                  extra_args=["--policy-dir", str(policies)], audit=True,
                  env={"ORCH_AGENTS_DIR": str(agents)},
                  facts={"os_description": LONG}, classes=[LONG + "!", LONG])
        for n in range(3)
    ]
    identities = [daemon.identity for daemon in daemons]

    # Mallory's client checks nothing: it sends what a hostile or outdated client would.
    settings = load_settings(None, {"broker": PLAIN_BROKER, "collective": collective,
                                    **mallory}, environ={})
    sent: list[tuple[str, str]] = []
    with Client(settings) as hostile:
        hostile.filters = FilterEngine({}, {}, FilterBudget(10**9, 10**9, 10**9, 10**9))
        for agent, action, data, hostile_filter, expected in _hostile_requests():
            request = hostile.new_request(agent, action, data, hostile_filter)
            body = request.encode()
            payload = Envelope("request", body, hostile.security.seal("request", body)).encode()
            for identity in identities:
                hostile.channel.direct(identity, payload, request.ttl)
            sent.append((request.id, expected))

        # While the nodes work through that burst, another caller is served by all of them.
        answering = load_settings(None, {"broker": PLAIN_BROKER, "collective": collective,
                                         "timeout": 5.0, **alice}, environ={})
        with Client(answering) as client:
            result = client.ping(nodes=identities)
        assert sorted(result.ok) == sorted(identities), (result.missing, result.replies)

    for daemon in daemons:
        assert daemon.running(), log_tail(daemon)
        for request_id, expected in sent:
            record = wait_audit(daemon.audit_file, lambda r, i=request_id: r["request_id"] == i,
                                f"{daemon.identity}'s audit record of request {request_id}")
            if expected == "denied":
                assert record["decision"] == "denied", record
                assert record["caller"] == f"cert=it-flt-mallory-{LONG}", record
            else:
                assert record["decision"] == "rejected", record
                assert expected in record["reason"], record
