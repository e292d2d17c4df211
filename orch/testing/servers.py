"""Fleets of real ``orch server`` processes for integration tests, and the ``orch`` CLI.

:mod:`orch.testing.fleet` runs nodes in the test's process on ``memory://``; this module
runs what an operator runs: separate ``orch server`` processes, each with its own identity,
fact and class files and log, on a real broker, and the ``orch`` console script as a
subprocess. orch's own integration suite, the contrib suites and third-party plugins use
the same code, so a fleet is started, awaited and stopped one way everywhere:

* :class:`ServerFleet` starts daemons and waits until each answers a direct ping (a node
  that answered has subscribed, so requests sent after it are not lost);
* :meth:`ServerFleet.stop` sends SIGTERM and reports a daemon that ignored it or exited
  with an error — shutdown is part of what a test checks;
* every daemon runs signed (``security: x509``) with a certificate from a throw-away CA of
  the test session, as production does;
* every collective starts with a token of the session, so concurrent runs on a shared
  broker and leftovers of earlier runs never see each other's requests.

The ``orch_servers`` fixture (:mod:`orch.testing.fixtures`) is a :class:`ServerFleetFactory`
that stops and checks every fleet after the test and purges the broker.

Nothing of orch is imported at import time (the fixtures plugin imports this module).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

#: One random token per test session: every collective of this session starts with it, so
#: concurrent runs and leftovers of earlier runs never see each other's requests.
SESSION_TOKEN = uuid.uuid4().hex[:10]

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0
#: Seconds broadcast discovery waits after the latest reply (orch's default: 0.2). The test
#: daemons share a small machine with other test runs; 0.5 s keeps a briefly descheduled
#: daemon from being "not found".
DISCOVERY_WINDOW = 0.5


# --------------------------------------------------------------------------- the CLI


def orch_argv() -> list[str]:
    """How to run the ``orch`` console script of the interpreter running the tests."""
    script = Path(sys.executable).parent / "orch"
    if script.exists():
        return [str(script)]
    found = shutil.which("orch")
    if found:
        return [found]
    return [sys.executable, "-c", "from orch.cli.main import main; main()"]


CLIENT_CERTNAME = "it.client"


@functools.cache
def session_ca() -> Path:
    """A CA for this test session (made with orch's own PKI library), with a client
    certificate: the integration fleet runs signed, as production does."""
    from orch.security import pki

    directory = Path(tempfile.mkdtemp(prefix="orch-it-ca-"))
    pki.init_ca(directory, common_name="orch integration CA")
    pki.issue(directory, CLIENT_CERTNAME, pki.ROLE_CLIENT)
    return directory


def client_security() -> dict[str, str]:
    """``ORCH_*`` variables that make a client use the session's client certificate."""
    ca = session_ca()
    return {"ORCH_SECURITY": "x509",
            "ORCH_TLS_CERT": str(ca / "issued" / "client" / f"{CLIENT_CERTNAME}.pem"),
            "ORCH_TLS_KEY": str(ca / "issued" / "client" / f"{CLIENT_CERTNAME}.key"),
            "ORCH_TLS_CA": str(ca / "ca.pem")}


def client_security_settings() -> dict[str, str]:
    """The same, as settings overrides for the client library."""
    return {k[len("ORCH_"):].lower(): v for k, v in client_security().items()}


def node_security_flags(identity: str) -> list[str]:
    """``orch server`` flags with a node certificate for ``identity`` (issued once)."""
    from orch.security import pki

    ca = session_ca()
    cert = ca / "issued" / "node" / f"{identity}.pem"
    if not cert.exists():
        pki.issue(ca, identity, pki.ROLE_NODE)
    return ["--security", "x509", "--tls-cert", str(cert),
            "--tls-key", str(cert.with_suffix(".key")), "--tls-ca", str(ca / "ca.pem")]


#: ``ORCH_*`` variables every process started through :func:`clean_environment` gets
#: (under the caller's own): a suite's settings for every daemon and command it starts. A
#: suite's ``conftest.py`` may add to it at import, e.g. orch's core suite, whose daemons
#: never run a puppet action, sets ``ORCH_PUPPET_DISCOVER_AT_START=0`` so an orch-puppet
#: installed beside orch does not start Ruby in each of them.
SUITE_ENVIRONMENT: dict[str, str] = {}


def bare_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``ORCH_*`` variable but ``ORCH_SESSION=off``,
    plus ``extra``: for an ``orch`` a test starts that must see none of the run's settings.

    ``ORCH_SESSION=off`` because by default a command starts a resident session, which
    would outlive the test and run the next test's commands (as would a developer's own).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env["ORCH_SESSION"] = "off"
    env.update(extra or {})
    return env


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """:func:`bare_environment` plus :data:`SUITE_ENVIRONMENT`, plus ``extra``."""
    return bare_environment({**SUITE_ENVIRONMENT, **(extra or {})})


@dataclass(frozen=True)
class CliResult:
    """What one ``orch`` run produced; unpacks as ``rc, stdout, stderr = result``."""

    rc: int
    stdout: str
    stderr: str
    #: Wall-clock seconds the command took.
    elapsed: float = 0.0

    def __iter__(self) -> Iterator[Any]:
        return iter((self.rc, self.stdout, self.stderr))

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(
                f"stdout is not JSON ({exc}):\n{self.stdout}\nstderr:\n{self.stderr}"
            ) from None

    def describe(self) -> str:
        return f"exit {self.rc}\n--- stdout:\n{self.stdout}\n--- stderr:\n{self.stderr}"


def run_orch(
    *args: str,
    broker: str | None = None,
    collective: str | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = CLI_TIMEOUT,
    orch: Sequence[str] | None = None,
) -> CliResult:
    """Run ``orch ARGS`` with ORCH_BROKER / ORCH_COLLECTIVE set; never hangs past ``timeout``.

    ``orch`` is the command to run (default: :func:`orch_argv`), e.g. another virtualenv's.
    """
    extra: dict[str, str] = client_security()
    if broker is not None:
        extra["ORCH_BROKER"] = broker
    if collective is not None:
        extra["ORCH_COLLECTIVE"] = collective
    extra.update(env or {})
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [*(orch or orch_argv()), *args],
            env=clean_environment(extra),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"orch {' '.join(args)} did not finish within {timeout:g}s\n"
            f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}"
        ) from None
    return CliResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


# --------------------------------------------------------------------------- nodes


@dataclass(frozen=True)
class ServerNode:
    """One node of a test fleet: its identity, the facts file and the classes file."""

    identity: str
    facts: Mapping[str, Any]
    classes: tuple[str, ...] = ()

    def fact(self, path: str) -> Any:
        value: Any = self.facts
        for part in path.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
        return value


def _node(identity: str, role: str, env: str, dc: str, cores: int, family: str,
          classes: Iterable[str]) -> ServerNode:
    return ServerNode(
        identity,
        {"role": role, "env": env, "datacenter": dc, "cores": cores,
         "os": {"family": family, "distro": family.lower()}},
        tuple(classes),
    )


#: The default fleet. Facts are chosen so that every filter test separates the nodes:
#: ``cores>4`` differs between a numeric (8, 16, 6) and a text ("8", "6") comparison.
SERVER_NODES: tuple[ServerNode, ...] = (
    _node("web1", "web", "prod", "ams", 8, "Debian", ["base", "nginx", "role::web", "monitoring"]),
    _node("web2", "web", "dev", "fra", 2, "RedHat", ["base", "nginx", "role::web"]),
    _node("db1", "db", "prod", "ams", 16, "Debian",
          ["base", "postgresql", "role::db", "monitoring"]),
    _node("db2", "db", "dev", "fra", 4, "Debian", ["base", "postgresql", "role::db"]),
    _node("cache1", "cache", "prod", "lon", 6, "Alpine",
          ["base", "redis", "role::cache", "monitoring"]),
)


class ServerDaemon:
    """One ``orch server`` process with its own identity, facts, classes and log file."""

    def __init__(self, spec: ServerNode, broker: str, collective: str, workdir: Path,
                 log_level: str = "info", orch: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        #: The ``orch`` command this daemon runs (default: :func:`orch_argv`).
        self.orch = list(orch) if orch is not None else orch_argv()
        self.env = dict(env or {})
        self.identity = spec.identity
        self.broker = broker
        self.collective = collective
        workdir.mkdir(parents=True, exist_ok=True)
        self.facts_file = workdir / f"{spec.identity}.facts.yaml"
        self.classes_file = workdir / f"{spec.identity}.classes.txt"
        self.log_file = workdir / f"{spec.identity}.log"
        self.facts_file.write_text(yaml.safe_dump(dict(spec.facts)))
        self.classes_file.write_text("".join(f"{c}\n" for c in spec.classes))
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        #: Set when the test killed the daemon on purpose (teardown does not judge it).
        self.killed = False
        #: Set when teardown needed SIGKILL because SIGTERM was not obeyed.
        self.needed_sigkill = False

    def argv(self) -> list[str]:
        return [
            *self.orch, "server",
            "--identity", self.identity,
            "--facts", str(self.facts_file),
            "--classes", str(self.classes_file),
            "--broker", self.broker,
            "--collective", self.collective,
            "--log-level", self.log_level,
            *self.security_flags(),
            *self.extra_flags(),
        ]

    def security_flags(self) -> list[str]:
        """The daemon's certificate flags; subclasses may run it otherwise."""
        return node_security_flags(self.identity)

    def extra_flags(self) -> list[str]:
        return []

    def environment(self) -> dict[str, str]:
        """``ORCH_*`` variables to start the daemon with (on top of a clean environment)."""
        return dict(self.env)

    def start(self) -> None:
        self._log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            self.argv(), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=clean_environment(self.environment()),
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug would; waits until the process is gone."""
        assert self.proc is not None
        self.killed = True
        self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT)

    def terminate(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = STOP_TIMEOUT) -> None:
        """Wait for exit after :meth:`terminate`; SIGKILL (and remember it) past ``timeout``."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.needed_sigkill = True
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


class ServerFleet:
    """N daemons in one collective on one broker, and the CLI pointed at them."""

    def __init__(self, broker: str, collective: str, workdir: Path,
                 log_level: str = "info", orch: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        #: The ``orch`` command the daemons and :meth:`run_orch` use (default: ours).
        self.orch = orch
        self.broker = broker
        self.collective = collective
        self.workdir = workdir
        self.log_level = log_level
        #: ``ORCH_*`` variables every daemon of this fleet starts with.
        self.env = dict(env or {})
        self.daemons: dict[str, ServerDaemon] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def add(self, specs: Iterable[ServerNode], wait: bool = True) -> list[ServerDaemon]:
        """Start one daemon per spec; by default wait until every one answers a ping."""
        started = []
        for spec in specs:
            if spec.identity in self.daemons:
                raise ValueError(f"duplicate identity {spec.identity}")
            daemon = ServerDaemon(spec, self.broker, self.collective, self.workdir,
                                  self.log_level, self.orch, self.env)
            daemon.start()
            self.daemons[spec.identity] = daemon
            started.append(daemon)
        if wait:
            try:
                self.wait_ready([d.identity for d in started])
            except BaseException:
                for daemon in started:  # never leave a half-started node in a shared fleet
                    if daemon.running():
                        daemon.kill()
                raise
        return started

    def wait_ready(self, identities: Sequence[str] | None = None,
                   timeout: float = READY_TIMEOUT) -> None:
        """Poll with direct pings until each of ``identities`` answered (bounded)."""
        wait_answering(
            {"broker": self.broker, "collective": self.collective,
             **client_security_settings()},
            identities if identities is not None else self.alive(),
            running=lambda identity: self.daemons[identity].running(),
            logs=self.logs, timeout=timeout)

    def stop(self) -> list[str]:
        """SIGTERM every daemon (in parallel); return a list of problems, empty if none."""
        for daemon in self.daemons.values():
            daemon.terminate()
        problems = []
        for daemon in self.daemons.values():
            daemon.wait_stopped()
            if daemon.needed_sigkill:
                problems.append(f"{daemon.identity} ignored SIGTERM for {STOP_TIMEOUT:g}s "
                                "and had to be killed")
            elif daemon.running():
                problems.append(f"{daemon.identity} is still running")
            elif not daemon.killed and daemon.proc is not None and daemon.proc.returncode != 0:
                problems.append(f"{daemon.identity} exited with status "
                                f"{daemon.proc.returncode} after SIGTERM")
        return problems

    # -- queries -----------------------------------------------------------------------

    def alive(self) -> list[str]:
        return sorted(i for i, d in self.daemons.items() if not d.killed)

    def select(self, predicate: Callable[[ServerNode], bool]) -> set[str]:
        """The live identities whose spec satisfies ``predicate`` — the expected repliers."""
        return {i for i in self.alive() if predicate(self.daemons[i].spec)}

    def spec(self, identity: str) -> ServerNode:
        return self.daemons[identity].spec

    def run_orch(self, *args: str, env: Mapping[str, str] | None = None,
                 input: str | None = None, timeout: float = CLI_TIMEOUT) -> CliResult:
        """``orch ARGS`` with this fleet's broker and collective in the environment.

        Broadcast discovery ends :data:`DISCOVERY_WINDOW` seconds after the latest reply
        (unless ``env`` says otherwise), so a loaded test machine cannot cut it short.
        """
        return run_orch(*args, broker=self.broker, collective=self.collective,
                        env={"ORCH_DISCOVERY_WINDOW": str(DISCOVERY_WINDOW), **(env or {})},
                        input=input, timeout=timeout, orch=self.orch)

    def start_orch(self, *args: str, env: Mapping[str, str] | None = None
                   ) -> subprocess.Popen[str]:
        """``orch ARGS`` started in the background (stdout and stderr piped, text), for
        tests that watch output arrive or interrupt the command. The caller must end it:
        use it in a ``with`` block, or :func:`stop_process`."""
        extra = {**client_security(), "ORCH_BROKER": self.broker,
                 "ORCH_COLLECTIVE": self.collective,
                 "ORCH_DISCOVERY_WINDOW": str(DISCOVERY_WINDOW), "PYTHONUNBUFFERED": "1",
                 **(env or {})}
        return subprocess.Popen([*(self.orch or orch_argv()), *args], env=clean_environment(extra),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def logs(self, identities: Iterable[str] | None = None) -> str:
        names = list(identities) if identities is not None else list(self.daemons)
        return "\n".join(
            f"===== orch server {name} ({self.daemons[name].log_file}) =====\n"
            f"{self.daemons[name].log()}"
            for name in names
        )

    def failure_logs(self) -> list[tuple[str, str]]:
        return [(f"{self.collective} {name}", d.log()) for name, d in self.daemons.items()]


class ServerFleetFactory:
    """Starts fleets of this test's own; remembers them for teardown and failure logs.

    The value of the ``orch_servers`` fixture: ``orch_servers(broker_url, nodes, label=...,
    log_level=..., wait=True, orch=None, env=None)`` starts a :class:`ServerFleet` in a new
    collective and (by default) waits until every daemon answers. :meth:`close` stops them.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.fleets: list[ServerFleet] = []

    def __call__(self, broker: str, nodes: Iterable[ServerNode] = SERVER_NODES, *,
                 label: str = "own", log_level: str = "info", wait: bool = True,
                 orch: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None) -> ServerFleet:
        fleet = ServerFleet(broker, new_collective(label),
                            self.workdir / f"fleet{len(self.fleets)}", log_level, orch, env)
        self.fleets.append(fleet)
        fleet.add(nodes, wait=wait)
        return fleet

    def failure_logs(self) -> list[tuple[str, str]]:
        return [section for fleet in self.fleets for section in fleet.failure_logs()]

    def close(self) -> None:
        """Stop every fleet this factory started (see :func:`stop_fleets`)."""
        stop_fleets(self.fleets)


def stop_fleets(fleets: Iterable[ServerFleet]) -> None:
    """SIGTERM the daemons, purge each collective from its broker, and fail (with the logs
    of the daemons concerned) if any did not stop cleanly.

    A daemon that ignores SIGTERM or exits with an error is a bug the test should show,
    not hide; the purge is best effort, since an outage test may leave the broker down.
    """
    from orch.testing.brokers import purge_collective

    problems: list[str] = []
    for fleet in fleets:
        for problem in fleet.stop():
            problems.append(f"{problem}\n{fleet.logs([problem.split()[0]])}")
        with contextlib.suppress(Exception):  # the broker may be down (outage tests)
            purge_collective(fleet.broker, fleet.collective)
    assert not problems, "orch server shutdown problems:\n" + "\n".join(problems)


def read_line_until(stream: IO[str], predicate: Callable[[str], bool], timeout: float,
                    what: str) -> list[str]:
    """Lines read from ``stream`` up to and including the first one ``predicate`` accepts;
    fails after ``timeout`` seconds (read in a thread: a pipe read has no timeout)."""
    import threading

    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in stream:
            lines.append(line)
            if predicate(line):
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout):
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; read: "
                             f"{''.join(lines)!r}")
    return lines


def stop_process(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT,
                 sig: int | None = None) -> bool:
    """Stop ``process`` if it still runs, and reap it: ``sig`` first (SIGTERM, SIGINT)
    with up to ``timeout`` seconds to obey, then SIGKILL; without ``sig``, SIGKILL at once.

    True when the process ended without SIGKILL — what a test checks to prove a daemon
    obeys SIGTERM. Every wait is bounded by ``timeout``.
    """
    if process.poll() is not None:
        return True
    if sig is not None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            pass
    process.kill()
    process.wait(timeout)
    return False


def identity_args(identities: Iterable[str]) -> list[str]:
    """``-I a -I b …``"""
    return [arg for name in identities for arg in ("-I", name)]


def wait_answering(client_settings: Mapping[str, Any], identities: Iterable[str], *,
                   running: Callable[[str], bool], logs: Callable[[Sequence[str]], str],
                   timeout: float = READY_TIMEOUT) -> None:
    """Ping ``identities`` directly until each answered (any status), bounded by
    ``timeout``; fail at once, with ``logs`` of the dead, if one is no longer ``running``.

    The one readiness check of every suite that starts ``orch server`` processes: a node
    that answers a direct ping has subscribed, so requests sent after it are not lost.
    """
    from orch.core.client import Client
    from orch.core.config import load_settings
    from orch.core.errors import OrchError

    pending = set(identities)
    settings = load_settings(None, {**client_settings, "discovery_timeout": 1.0},
                             environ={})
    deadline = time.monotonic() + timeout
    last_error = ""
    while pending:
        dead = sorted(i for i in pending if not running(i))
        if dead:
            raise AssertionError(
                f"orch server {', '.join(dead)} exited while starting:\n" + logs(dead))
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"orch server {', '.join(sorted(pending))} not answering pings after "
                f"{timeout:g}s (last error: {last_error or 'none'}):\n"
                + logs(sorted(pending)))
        try:
            with Client(settings) as client:
                result = client.ping(nodes=sorted(pending))
            pending -= set(result.replies)
            last_error = result.error or last_error
        except OrchError as exc:  # the broker is not reachable (yet)
            last_error = str(exc)
            time.sleep(0.2)


def new_collective(label: str) -> str:
    """A collective no other test, run or session uses: ``it<session token>-<label>-<random>``."""
    return f"it{SESSION_TOKEN}-{label}-{uuid.uuid4().hex[:6]}"
