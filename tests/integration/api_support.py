"""The HTTP API, the inventory registry and PostgreSQL, as the integration suite runs them.

Split from ``orch_integration.py`` (which keeps the CLI and ``orch server`` fleets).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from orch_integration import (
    BROKERS,
    CLIENT_CERTNAME,
    DEFAULT_NODES,
    DISCOVERY_WINDOW,
    READY_TIMEOUT,
    SESSION_TOKEN,
    STOP_TIMEOUT,
    Fleet,
    NodeSpec,
    clean_environment,
    client_security,
    new_collective,
    orch_argv,
    session_ca,
)
from private_brokers import free_port

from orch.testing import purge_collective, wait_until
from orch.testing.servers import stop_process

# --------------------------------------------------------------------------- orch api


API_TOKEN = "it-app-token-0123456789abcdef"
DENIED_TOKEN = "it-denied-token-0123456789abcdef"
DENIED_CERTNAME = "it.denied"


def api_tokens_file(directory: Path) -> Path:
    """A tokens file: ``it-app`` signs as the session client, ``it-denied`` as a client
    certificate that :func:`deny_policy` refuses some actions to."""
    from orch.security import pki

    ca = session_ca()
    denied = ca / "issued" / "client" / f"{DENIED_CERTNAME}.pem"
    if not denied.exists():
        pki.issue(ca, DENIED_CERTNAME, pki.ROLE_CLIENT)
    client = ca / "issued" / "client" / f"{CLIENT_CERTNAME}.pem"
    path = directory / "tokens.yaml"
    path.write_text(yaml.safe_dump({"tokens": [
        {"name": "it-app", "token": API_TOKEN, "tls_cert": str(client),
         "tls_key": str(client.with_suffix(".key"))},
        {"name": "it-denied", "token": DENIED_TOKEN, "tls_cert": str(denied),
         "tls_key": str(denied.with_suffix(".key"))},
    ]}))
    return path


def deny_policy(directory: Path, actions: str = "get_fact daemon_stats") -> Path:
    """A policy directory where ``cert=it.denied`` may not run rpcutil ``actions``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rpcutil.policy").write_text(
        f"policy default allow\ndeny\tcert={DENIED_CERTNAME}\t{actions}\t*\t*\n")
    return directory


class ApiProcess:
    """An ``orch api`` process for a fleet, on a free port, with its log file."""

    def __init__(self, fleet: Fleet, workdir: Path, tokens: Path,
                 extra: Sequence[str] = (), scheme: str = "http",
                 config: Path | None = None) -> None:
        self.fleet = fleet
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log_file = workdir / f"orch-api-{self.port}.log"
        argv = [*orch_argv(), "--log-level", "info", "api", "--listen",
                f"127.0.0.1:{self.port}", "--tokens", str(tokens), *extra]
        env = clean_environment({
            **client_security(), "ORCH_BROKER": fleet.broker,
            "ORCH_COLLECTIVE": fleet.collective,
            "ORCH_DISCOVERY_WINDOW": str(DISCOVERY_WINDOW),
            **({"ORCH_CONFIG": str(config)} if config else {})})
        self._log = open(self.log_file, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        wait_until(self._listening, READY_TIMEOUT, f"orch api on port {self.port}")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"orch api exited with {self.proc.returncode}:\n{self.log()}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        stop_process(self.proc, STOP_TIMEOUT, signal.SIGTERM)
        self._log.close()

    def failure_logs(self) -> list[tuple[str, str]]:
        return [("orch api", self.log())]


@contextlib.contextmanager
def api_fleet(workdir: Path, nodes: Iterable[NodeSpec] = DEFAULT_NODES,
              config: Path | None = None) -> Iterator[ApiProcess]:
    """``nodes`` on RabbitMQ, their policy denying some rpcutil actions to ``it.denied``
    (:func:`deny_policy`), and an ``orch api`` with the two tokens of
    :func:`api_tokens_file` (and the config file ``config``, if given); everything is
    stopped (and checked) on the way out."""
    fleet = Fleet(BROKERS["rabbitmq"], new_collective("api"), workdir / "fleet",
                  env={"ORCH_POLICY_DIR": str(deny_policy(workdir / "policies"))})
    server = None
    try:
        fleet.add(nodes)
        server = ApiProcess(fleet, workdir, api_tokens_file(workdir), config=config)
        yield server
    finally:
        if server is not None:
            server.stop()
        problems = fleet.stop()
        purge_collective(fleet.broker, fleet.collective)
        assert not problems, problems


@contextlib.contextmanager
def demo_api(workdir: Path, nodes: int) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    """``orch demo -n NODES --api``: yields the API's URL, the token it printed and the
    process; stopped with Ctrl-C (SIGINT) at the end if the test did not stop it."""
    import re

    port = free_port()
    proc = subprocess.Popen(
        [*orch_argv(), "demo", "-n", str(nodes), "--no-tour", "--no-interactive",
         "--api", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=clean_environment({"ORCH_CACHE_DIR": str(workdir)}))
    try:
        pattern = re.compile(r"on (http://\S+)/console/ .*API token: (\S+)")
        found = wait_until(lambda: pattern.search(proc.stdout.readline() if proc.stdout else ""),
                         READY_TIMEOUT + nodes * 0.02, "the demo to print the API address")
        yield found.group(1), found.group(2), proc
    finally:
        stop_process(proc, STOP_TIMEOUT, signal.SIGINT)
        if proc.stdout is not None:
            proc.stdout.close()


#: The PostgreSQL the machine runs (trust authentication, database ``test``).
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def postgres_schema(label: str = "inv") -> Iterator[str]:
    """A connection URL whose every table lives in a fresh schema, dropped afterwards, so
    tests (and concurrent test runs) sharing the one database never see each other's rows."""
    from urllib.parse import quote

    import psycopg

    schema = f"it{SESSION_TOKEN}_{label}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{POSTGRES_URL}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


class RegistryDaemon:
    """One ``orch registry`` process writing a fleet's registrations into ``store``."""

    def __init__(self, broker: str, collective: str, store: str, workdir: Path,
                 name: str = "registry", config: Path | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_file = workdir / f"{name}.log"
        self.argv = [*orch_argv(), "registry", "--broker", broker, "--collective", collective,
                     "--store", store, "--log-level", "debug"]
        self.env = {**client_security(), **({"ORCH_CONFIG": str(config)} if config else {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RegistryDaemon:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         env=clean_environment(self.env))
        proc = self.proc
        wait_until(lambda: "consuming registrations" in self.log() or proc.poll() is not None,
                 READY_TIMEOUT, "orch registry to start")
        assert self.proc.poll() is None, self.log()
        return self

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int:
        """SIGTERM and wait (SIGKILL past :data:`STOP_TIMEOUT`); the exit status."""
        if self.proc is None:
            return 0
        if not stop_process(self.proc, STOP_TIMEOUT, signal.SIGTERM):
            raise AssertionError(f"orch registry ignored SIGTERM:\n{self.log()}")
        return self.proc.returncode


def inventory_config(path: Path, store: str, **settings: Any) -> Path:
    """A config file whose ``plugins.inventory`` section names ``store`` (and ``settings``)."""
    path.write_text(yaml.safe_dump({"plugins": {"inventory": {"store": store, **settings}}}))
    return path
