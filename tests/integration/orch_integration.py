"""Support code for the integration suite: `orch` CLI runs, `orch server` fleets, RabbitMQ.

Everything here drives orch the way an operator does: separate ``orch server`` processes
with their own fact and class files, and the ``orch`` CLI run as a subprocess. The only
in-process use of the client library is the readiness probe of a fleet.

Imported by ``conftest.py`` and the test modules (pytest puts this directory on
``sys.path`` because it has no ``__init__.py``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

BROKERS: dict[str, str] = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
    "redis": "redis://127.0.0.1:6379/0",
}

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


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


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


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``ORCH_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(extra or {})
    return env


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


def pip_build_options() -> list[str]:
    """``--no-build-isolation`` when setuptools here can build a wheel without downloads.

    Otherwise pip fetches setuptools and wheel for an isolated build from the configured
    package index, as a user's ``pip install .`` does.
    """
    try:
        import setuptools
    except ImportError:
        return []
    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    if (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None:
        return ["--no-build-isolation"]
    return []


# --------------------------------------------------------------------------- nodes


@dataclass(frozen=True)
class NodeSpec:
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
          classes: Iterable[str]) -> NodeSpec:
    return NodeSpec(
        identity,
        {"role": role, "env": env, "datacenter": dc, "cores": cores,
         "os": {"family": family, "distro": family.lower()}},
        tuple(classes),
    )


#: The default fleet. Facts are chosen so that every filter test separates the nodes:
#: ``cores>4`` differs between a numeric (8, 16, 6) and a text ("8", "6") comparison.
DEFAULT_NODES: tuple[NodeSpec, ...] = (
    _node("web1", "web", "prod", "ams", 8, "Debian", ["base", "nginx", "role::web", "monitoring"]),
    _node("web2", "web", "dev", "fra", 2, "RedHat", ["base", "nginx", "role::web"]),
    _node("db1", "db", "prod", "ams", 16, "Debian",
          ["base", "postgresql", "role::db", "monitoring"]),
    _node("db2", "db", "dev", "fra", 4, "Debian", ["base", "postgresql", "role::db"]),
    _node("cache1", "cache", "prod", "lon", 6, "Alpine",
          ["base", "redis", "role::cache", "monitoring"]),
)


class Daemon:
    """One ``orch server`` process with its own identity, facts, classes and log file."""

    def __init__(self, spec: NodeSpec, broker: str, collective: str, workdir: Path,
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


class Fleet:
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
        self.daemons: dict[str, Daemon] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def add(self, specs: Iterable[NodeSpec], wait: bool = True) -> list[Daemon]:
        """Start one daemon per spec; by default wait until every one answers a ping."""
        started = []
        for spec in specs:
            if spec.identity in self.daemons:
                raise ValueError(f"duplicate identity {spec.identity}")
            daemon = Daemon(spec, self.broker, self.collective, self.workdir, self.log_level,
                            self.orch, self.env)
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
        from orch.core.client import Client
        from orch.core.config import load_settings
        from orch.core.errors import OrchError

        pending = set(identities if identities is not None else self.alive())
        settings = load_settings(None, {
            "broker": self.broker, "collective": self.collective, "discovery_timeout": 1.0,
            **client_security_settings(),
        }, environ={})
        deadline = time.monotonic() + timeout
        last_error = ""
        while pending:
            dead = [i for i in pending if not self.daemons[i].running()]
            if dead:
                raise AssertionError(
                    f"orch server {', '.join(dead)} exited while starting:\n"
                    + self.logs(dead))
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"orch server {', '.join(sorted(pending))} not answering pings after "
                    f"{timeout:g}s (last error: {last_error or 'none'}):\n"
                    + self.logs(sorted(pending)))
            try:
                with Client(settings) as client:
                    result = client.ping(nodes=sorted(pending))
                pending -= set(result.replies)
                last_error = result.error or last_error
            except OrchError as exc:  # the broker is not reachable (yet)
                last_error = str(exc)
                time.sleep(0.2)

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

    def select(self, predicate: Callable[[NodeSpec], bool]) -> set[str]:
        """The live identities whose spec satisfies ``predicate`` — the expected repliers."""
        return {i for i in self.alive() if predicate(self.daemons[i].spec)}

    def spec(self, identity: str) -> NodeSpec:
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


class FleetFactory:
    """Starts fleets of this test's own; remembers them for teardown and failure logs."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.fleets: list[Fleet] = []

    def __call__(self, broker: str, nodes: Iterable[NodeSpec] = DEFAULT_NODES, *,
                 label: str = "own", log_level: str = "info", wait: bool = True,
                 orch: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None) -> Fleet:
        fleet = Fleet(broker, new_collective(label),
                      self.workdir / f"fleet{len(self.fleets)}", log_level, orch, env)
        self.fleets.append(fleet)
        fleet.add(nodes, wait=wait)
        return fleet

    def failure_logs(self) -> list[tuple[str, str]]:
        return [section for fleet in self.fleets for section in fleet.failure_logs()]


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


def stop_process(process: subprocess.Popen[str], timeout: float = STOP_TIMEOUT) -> None:
    """Kill ``process`` if it still runs, and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout)


def identity_args(identities: Iterable[str]) -> list[str]:
    """``-I a -I b …``"""
    return [arg for name in identities for arg in ("-I", name)]


def new_collective(label: str) -> str:
    return f"it{SESSION_TOKEN}-{label}-{uuid.uuid4().hex[:6]}"


def purge_broker(broker: str, collective: str) -> None:
    """Remove what a collective left on the broker (exchanges on RabbitMQ, keys on Redis)."""
    if broker.startswith("redis"):
        import redis

        client = redis.Redis.from_url(broker)
        try:
            keys = list(client.scan_iter(match=f"*{collective}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
        return
    from kombu import Connection

    from orch.transports.kombu import request_exchange_name

    with Connection(broker, connect_timeout=5) as conn:
        conn.channel().exchange_delete(request_exchange_name(collective))


# --------------------------------------------------------------------------- RabbitMQ


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rabbitmq_tools() -> tuple[str, str] | None:
    """(rabbitmq-server, rabbitmqctl) able to run as the current user, or None.

    Debian's /usr/sbin wrappers switch to the ``rabbitmq`` user, which cannot write the
    test's temporary directories, so the real scripts in /usr/lib/rabbitmq/bin come first.
    """
    for directory in ("/usr/lib/rabbitmq/bin", "/usr/local/lib/rabbitmq/bin"):
        server, ctl = Path(directory, "rabbitmq-server"), Path(directory, "rabbitmqctl")
        if server.exists() and ctl.exists():
            return str(server), str(ctl)
    server_found, ctl_found = shutil.which("rabbitmq-server"), shutil.which("rabbitmqctl")
    if server_found and ctl_found:
        return server_found, ctl_found
    return None


@dataclass
class PrivateRabbitMQ:
    """A throw-away RabbitMQ node on its own ports, data and logs, for outage tests."""

    server_bin: str
    ctl_bin: str
    workdir: Path
    node: str = field(default_factory=lambda: f"orchit-{os.getpid()}-{uuid.uuid4().hex[:6]}"
                                              "@localhost")
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    #: HOME for the node and rabbitmqctl: where cluster members share an Erlang cookie.
    home: Path | None = None
    #: Lines added to the node's rabbitmq.conf (a cluster's peer discovery).
    extra_config: str = ""

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def address(self) -> str:
        """How orch's messages name this broker (passwords are masked there)."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "rabbitmq-server.out"

    def environment(self) -> dict[str, str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        plugins = self.workdir / "enabled_plugins"
        plugins.write_text("[].\n")
        config = self.workdir / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n" + self.extra_config
        )
        env_file = self.workdir / "rabbitmq-env.conf"
        env_file.write_text("")  # keep the system's rabbitmq-env.conf (node name, port) out
        env = dict(os.environ)
        if self.home is not None:
            env["HOME"] = str(self.home)
        env.update({
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_PID_FILE": str(self.workdir / "rabbitmq.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.workdir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(env_file),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        return env

    def ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.ctl_bin, "-n", self.node, *args], env=self.environment(),
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def start(self, timeout: float = 60.0) -> None:
        """Start the node and wait (bounded) until it accepts AMQP connections."""
        self.launch()
        self.wait_up(timeout)

    def launch(self) -> None:
        """Start the node's process without waiting for it (see :meth:`wait_up`)."""
        assert not self.running(), "already running"
        env = self.environment()  # also creates the work directory
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.server_bin], env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, so cleanup reaches erl too
            )
        self.starts += 1

    def wait_up(self, timeout: float = 60.0) -> None:
        """Wait (bounded) until the launched node accepts AMQP connections."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                raise AssertionError(f"rabbitmq-server exited during startup:\n{self.log_tail()}")
            try:
                done = self.ctl("await_startup", "--timeout", "5", timeout=15)
                if done.returncode == 0 and self._accepts_amqp():
                    return
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"RabbitMQ node {self.node} not up after {timeout:g}s:\n{self.log_tail()}")
            time.sleep(0.3)

    def _accepts_amqp(self) -> bool:
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=2) as conn:
                conn.connect()
            return True
        except Exception:
            return False

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node (``rabbitmqctl stop``) and wait until its process is gone."""
        if not self.running():
            return
        assert self.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.ctl("stop", timeout=timeout)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            raise AssertionError(
                f"RabbitMQ node {self.node} did not stop within {timeout:g}s") from None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self) -> None:
        """Whatever happened: no process of this node survives."""
        with contextlib.suppress(Exception):
            self.stop(timeout=30)
        self._kill_group()

    def kill(self) -> None:
        """SIGKILL the whole node, as a crash or a pulled plug would."""
        self._kill_group()

    def _kill_group(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no rabbitmq-server output)"
        return "\n".join(text.splitlines()[-lines:])

    def failure_logs(self) -> list[tuple[str, str]]:
        return [(f"rabbitmq {self.node}", self.log_tail())]


class PrivateRabbitMQCluster:
    """Throw-away RabbitMQ nodes on their own ports, clustered, sharing an Erlang cookie."""

    def __init__(self, server_bin: str, ctl_bin: str, workdir: Path, size: int = 3) -> None:
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        names = [f"orchit-{tag}-{i}@localhost" for i in range(size)]
        # Members started together find each other (no stop_app/join_cluster round trips).
        discovery = "cluster_formation.peer_discovery_backend = classic_config\n" + "".join(
            f"cluster_formation.classic_config.nodes.{i + 1} = {name}\n"
            for i, name in enumerate(names)) + (
            "cluster_formation.randomized_startup_delay_range.min = 0\n"
            "cluster_formation.randomized_startup_delay_range.max = 2\n")
        self.members = [PrivateRabbitMQ(server_bin, ctl_bin, workdir / f"member{i}",
                                        node=name, home=home, extra_config=discovery)
                        for i, name in enumerate(names)]

    @property
    def urls(self) -> list[str]:
        return [member.url for member in self.members]

    @property
    def broker(self) -> str:
        """Every member's URL, comma-separated: what ``--broker`` takes for a cluster."""
        return ",".join(self.urls)

    def start(self, timeout: float = 120.0) -> None:
        """Start every member at once; join any that formed a cluster of its own to the
        first (bounded)."""
        for member in self.members:
            member.launch()
        for member in self.members:
            member.wait_up(timeout)
        first = self.members[0].node
        clustered = self.running_nodes(via=0)
        for member in self.members[1:]:
            if member.node in clustered:
                continue
            for args in (("stop_app",), ("join_cluster", first), ("start_app",)):
                done = member.ctl(*args, timeout=timeout)
                if done.returncode != 0:
                    raise AssertionError(f"rabbitmqctl {' '.join(args)} on {member.node} "
                                         f"failed:\n{done.stdout}\n{done.stderr}")
            member.wait_up(timeout)
        wait_for(lambda: self.running_nodes() == {m.node for m in self.members}, timeout,
                 "every member to show in the cluster status")

    def running_nodes(self, via: int | None = None) -> set[str]:
        """The members the cluster reports running, asked of one running member."""
        asked = [m for m in self.members if m.running()] if via is None else [self.members[via]]
        if not asked:
            return set()
        done = asked[0].ctl("cluster_status", "--formatter", "json", timeout=30)
        if done.returncode != 0:
            return set()
        try:
            return set(json.loads(done.stdout).get("running_nodes", []))
        except ValueError:
            return set()

    def cleanup(self) -> None:
        """Kill every member at once: the data is thrown away, so a graceful stop of each,
        one after the other, would only cost time."""
        for member in self.members:
            member.kill()

    def failure_logs(self) -> list[tuple[str, str]]:
        return [section for member in self.members for section in member.failure_logs()]


# --------------------------------------------------------------------------- Redis over TLS


class PrivateTLSRedis:
    """A throw-away ``redis-server`` that speaks only TLS on a free port of its own.

    Its certificate is issued by the session CA (:func:`session_ca`) for ``localhost`` and
    127.0.0.1, and it requires a client certificate of that CA: what an operator's
    ``rediss://`` broker looks like. The URL is ``rediss://127.0.0.1:<port>/0``.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        from tls_rabbitmq import issue

        redis_server = shutil.which("redis-server")
        assert redis_server, "redis-server is not installed"
        self.workdir.mkdir(parents=True, exist_ok=True)
        ca = session_ca()
        # `orch ca issue --server localhost`: names localhost, 127.0.0.1 and ::1.
        cert, key = issue(ca, "server", "localhost")
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [redis_server, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(cert), "--tls-key-file", str(key),
             "--tls-ca-cert-file", str(ca / "ca.pem"), "--tls-auth-clients", "yes",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        wait_for(self._accepts, timeout, f"redis-server with TLS on port {self.port}")

    def _accepts(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited:\n{self.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def log_tail(self) -> str:
        try:
            return (self.workdir / "redis.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)

    def failure_logs(self) -> list[tuple[str, str]]:
        return [(f"redis-server TLS :{self.port}", self.log_tail())]


# --------------------------------------------------------------------------- partitions


class NetworkNamespace:
    """A network namespace joined to this host by a veth pair: a host behind a link the test
    can cut and heal (``ip netns``, as root).

    The host side gets ``HOST_ADDRESS``, the namespace side ``INSIDE_ADDRESS`` (link-local
    addresses on a /30 of their own: the only traffic is between this machine and a
    namespace the test made). :meth:`cut` takes the host side of the link down, so packets
    are dropped silently as in a real partition; :meth:`heal` brings it back.
    """

    HOST_ADDRESS = "169.254.213.1"
    INSIDE_ADDRESS = "169.254.213.2"

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.name = f"orchit-{tag}"
        self.host_link, self.inside_link = f"oh{tag}", f"oi{tag}"
        self.created = False

    @staticmethod
    def available() -> str | None:
        """None if this process can make namespaces, else why not."""
        if shutil.which("ip") is None:
            return "the ip command (iproute2) is not installed"
        probe = f"orchprobe{uuid.uuid4().hex[:6]}"
        done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                              timeout=30)
        if done.returncode != 0:
            return f"cannot create a network namespace: {done.stderr.strip()}"
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
        return None

    def _ip(self, *args: str, inside: bool = False) -> None:
        argv = ["ip", *(["-n", self.name] if inside else []), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed: {done.stderr.strip()}")

    def create(self) -> None:
        self._ip("netns", "add", self.name)
        self.created = True
        self._ip("link", "add", self.host_link, "type", "veth", "peer", "name",
                 self.inside_link)
        self._ip("link", "set", self.inside_link, "netns", self.name)
        self._ip("addr", "add", f"{self.HOST_ADDRESS}/30", "dev", self.host_link)
        self._ip("link", "set", self.host_link, "up")
        self._ip("link", "set", "lo", "up", inside=True)
        self._ip("addr", "add", f"{self.INSIDE_ADDRESS}/30", "dev", self.inside_link,
                 inside=True)
        self._ip("link", "set", self.inside_link, "up", inside=True)

    def prefix(self) -> list[str]:
        """What to put before a command to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        self._ip("link", "set", self.host_link, "down")

    def heal(self) -> None:
        self._ip("link", "set", self.host_link, "up")

    def cleanup(self) -> None:
        """Delete the namespace (and with it the veth pair)."""
        if self.created:
            subprocess.run(["ip", "link", "del", self.host_link], capture_output=True,
                           timeout=30)
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)
            self.created = False


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
        wait_for(self._listening, READY_TIMEOUT, f"orch api on port {self.port}")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"orch api exited with {self.proc.returncode}:\n{self.log()}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
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
        purge_broker(fleet.broker, fleet.collective)
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
        found = wait_for(lambda: pattern.search(proc.stdout.readline() if proc.stdout else ""),
                         READY_TIMEOUT + nodes * 0.02, "the demo to print the API address")
        yield found.group(1), found.group(2), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
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
        wait_for(lambda: "consuming registrations" in self.log() or proc.poll() is not None,
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
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(f"orch registry ignored SIGTERM:\n{self.log()}") from None


def inventory_config(path: Path, store: str, **settings: Any) -> Path:
    """A config file whose ``plugins.inventory`` section names ``store`` (and ``settings``)."""
    path.write_text(yaml.safe_dump({"plugins": {"inventory": {"store": store, **settings}}}))
    return path
