"""Private brokers of the integration suite: RabbitMQ nodes and clusters, a TLS-only Redis,
network namespaces to partition them, and a proxy that makes a broker stall — each on free
ports of its own, stopped by PID.

Split from ``orch_integration.py`` (which keeps the CLI and ``orch server`` fleets).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orch_integration import (
    STOP_TIMEOUT,
    session_ca,
)

from orch.testing import wait_until
from orch.testing.servers import stop_process

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

    def connections(self) -> dict[str, float]:
        """``{connection pid: negotiated heartbeat timeout}`` of every AMQP connection: on
        a node of its own a test can tell exactly which connections its processes hold."""
        listed = self.ctl("list_connections", "pid", "timeout", "--no-table-headers",
                          "--quiet")
        assert listed.returncode == 0, listed.stderr
        found = {}
        for line in listed.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                found[parts[0]] = float(parts[1])
        return found

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
        self.thaw()
        with contextlib.suppress(Exception):
            self.stop(timeout=30)
        self._kill_group()

    def kill(self) -> None:
        """SIGKILL the whole node, as a crash or a pulled plug would."""
        self._kill_group()

    def freeze(self) -> None:
        """SIGSTOP the whole node: its connections stay open and nothing answers on them,
        as with a hung broker or a link that drops every packet (no reset, no close)."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze` (harmless on a node that is not frozen)."""
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, signum: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)

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
        wait_until(lambda: self.running_nodes() == {m.node for m in self.members}, timeout,
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


# --------------------------------------------------------------------------- Redis


class PrivateRedis:
    """A throw-away ``redis-server`` on a free port of its own (``redis://127.0.0.1:<port>/0``),
    which a test may freeze: what a Redis that hangs, or a link that drops every packet,
    looks like to its clients."""

    #: What the log's title calls it.
    kind = "redis-server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arguments(self) -> list[str]:
        """``redis-server`` arguments besides the common ones (listening, no persistence)."""
        return ["--port", str(self.port)]

    def start(self, timeout: float = 30.0) -> None:
        redis_server = shutil.which("redis-server")
        assert redis_server, "redis-server is not installed"
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [redis_server, *self.arguments(), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        wait_until(self._accepts, timeout, f"{self.kind} on port {self.port}")

    def _accepts(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited:\n{self.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers on them."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze` (harmless otherwise)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def log_tail(self) -> str:
        try:
            return (self.workdir / "redis.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        if self.proc is not None:
            self.thaw()
            stop_process(self.proc, STOP_TIMEOUT, signal.SIGTERM)

    def failure_logs(self) -> list[tuple[str, str]]:
        return [(f"{self.kind} :{self.port}", self.log_tail())]


class PrivateTLSRedis(PrivateRedis):
    """A throw-away ``redis-server`` that speaks only TLS on a free port of its own.

    Its certificate is issued by the session CA (:func:`session_ca`) for ``localhost`` and
    127.0.0.1, and it requires a client certificate of that CA: what an operator's
    ``rediss://`` broker looks like. The URL is ``rediss://127.0.0.1:<port>/0``.
    """

    kind = "redis-server TLS"

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def arguments(self) -> list[str]:
        from tls_rabbitmq import issue

        ca = session_ca()
        # `orch ca issue --server localhost`: names localhost, 127.0.0.1 and ::1.
        cert, key = issue(ca, "server", "localhost")
        return ["--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(ca / "ca.pem"), "--tls-auth-clients", "yes"]


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


# --------------------------------------------------------------------------- a stalling member


class StallingAMQPProxy:
    """A TCP proxy in front of a real AMQP broker that forwards the handshake and then
    stops answering: what a client sees of a cluster member that accepted it and then
    froze, or is too loaded to answer (a frozen broker, by contrast, never completes the
    handshake).

    Everything the client sends reaches the broker; of the broker's frames only the first
    :attr:`FORWARDED` (connection.start, .tune and .open-ok) come back, the rest are
    dropped. :meth:`cut` closes every proxied connection at once and refuses new ones, as a
    member that died does. Threads stop with :meth:`close`.
    """

    FORWARDED = 3

    def __init__(self, target: str, *, stall: bool = True) -> None:
        host, port = target.rsplit("@", 1)[-1].split("/", 1)[0].rsplit(":", 1)
        self._target = (host, int(port))
        self.stall = stall
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        #: Connections accepted so far.
        self.connections = 0
        self._closed = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            client.settimeout(None)
            upstream = socket.create_connection(self._target, timeout=10)
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            for pump in (self._pump(client, upstream, None),
                         self._pump(upstream, client, self.FORWARDED if self.stall else None)):
                thread = threading.Thread(target=pump, daemon=True)
                thread.start()
                self._threads.append(thread)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket,
              frames: int | None) -> Callable[[], None]:
        """Copy ``source`` to ``sink``; with ``frames``, only that many AMQP frames."""

        def run() -> None:
            pending = b""
            left = frames
            while True:
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    return
                if left is None:
                    with contextlib.suppress(OSError):
                        sink.sendall(data)
                    continue
                pending += data
                # A frame: type (1), channel (2), size (4), payload (size), end (1).
                while left > 0 and len(pending) >= 7:
                    size = 8 + int.from_bytes(pending[3:7], "big")
                    if len(pending) < size:
                        break
                    with contextlib.suppress(OSError):
                        sink.sendall(pending[:size])
                    pending, left = pending[size:], left - 1
                if left == 0:
                    pending = b""  # everything after the handshake is dropped

        return run

    def cut(self) -> None:
        """Close every proxied connection and stop accepting: a member that died."""
        with contextlib.suppress(OSError):
            self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        for thread in self._threads:
            thread.join(5)
