"""Helpers shared by the benchmarks: start and stop real ``orch server`` daemons on RabbitMQ.

These are measurements, not pass/fail timing tests: a benchmark only asserts that what it
measured was a *successful* run (every node answered), never how long it took.

The broker is RabbitMQ on 127.0.0.1:5672 (guest/guest) unless ``ORCH_BENCH_AMQP`` names
another AMQP URL. Every session uses its own collective (``bench<random hex>``) so that
daemons left over from other runs, or other people's daemons on the same broker, never answer.

The security provider is pinned (``ORCH_BENCH_SECURITY``, default ``insecure``) rather than
left to orch's default, so that a figure always says what it measured: ``insecure`` is the
fan-out itself, ``x509`` adds signing and verifying every request and reply with certificates
from a throw-away CA made for the run.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from orch.core.client import Client
from orch.core.config import Settings, load_settings
from orch.testing import bare_environment

AMQP_URL = os.environ.get("ORCH_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
DAEMONS = 50
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
#: Longest wait, before each round, for the machine to be quiet (0 turns the gate off).
SECURITY = os.environ.get("ORCH_BENCH_SECURITY", "insecure")
IDLE_WAIT = float(os.environ.get("ORCH_BENCH_IDLE_WAIT", "20"))
#: "Quiet": at most this share of all CPUs busy over two consecutive 0.5 s samples.
IDLE_BUSY_MAX = 0.30


def orch_executable() -> str:
    """The ``orch`` console script of the running interpreter's environment.

    The script next to ``sys.executable`` is preferred to the first ``orch`` on ``PATH``:
    under pyenv the first one is a bash shim that re-resolves the interpreter and adds about
    40 ms to every start, which is not orch's cost.
    """
    found = shutil.which("orch", path=str(Path(sys.executable).parent)) or shutil.which("orch")
    if found is None:
        pytest.skip("the orch console script is not installed (pip install -e .)")
    return found


def new_collective() -> str:
    return f"bench{secrets.token_hex(4)}"


#: A directory for compiled bytecode, or "" to run orch as the environment says. With the
#: editable install and PYTHONDONTWRITEBYTECODE=1 (set on the development machines) every
#: start compiles orch's ~35 modules from source, ~40 ms that an installed package never pays.
PYCACHE = os.environ.get("ORCH_BENCH_PYCACHE", "")


def base_env() -> dict[str, str]:
    """The caller's environment without any ORCH_* setting (and with ORCH_BENCH_PYCACHE).

    ``ORCH_SESSION=off``: a command measured cold must not be run by a session the person
    benchmarking happens to have; the session figures set up their own.
    """
    env = bare_environment()
    if PYCACHE:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = PYCACHE
    return env


def bytecode_cached() -> bool:
    return bool(PYCACHE) or not os.environ.get("PYTHONDONTWRITEBYTECODE")


def orch_env(collective: str, broker: str = AMQP_URL,
             security: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for orch subprocesses: broker, collective and security, no other ORCH_*.

    ``security`` is settings (``security``, ``tls_cert``...), default ``{"security":
    SECURITY}``; each becomes its ``ORCH_<NAME>`` variable.
    """
    env = base_env()
    env["ORCH_BROKER"] = broker
    env["ORCH_COLLECTIVE"] = collective
    for name, value in (security or {"security": SECURITY}).items():
        env[f"ORCH_{name.upper()}"] = value
    return env


def client_settings(collective: str, broker: str = AMQP_URL, **values: object) -> Settings:
    """Client settings independent of the caller's ORCH_* environment and config file."""
    return load_settings(
        None, {"broker": broker, "collective": collective, "security": SECURITY, **values},
        environ={})


class BenchPKI:
    """A throw-away CA (``orch ca``'s own code) for ``ORCH_BENCH_SECURITY=x509`` runs."""

    def __init__(self, directory: Path, client_name: str = "bench.user") -> None:
        from orch.security import pki

        self.directory = directory
        ca = pki.init_ca(directory, common_name="orch bench CA")
        client = pki.issue(directory, client_name, pki.ROLE_CLIENT)
        self.ca_path = ca.cert_path
        self.client = {"security": "x509", "tls_cert": client.cert_path,
                       "tls_key": str(client.key_path), "tls_ca": ca.cert_path}

    def node_flags(self, identity: str) -> list[str]:
        """``orch server`` options with a new node certificate for ``identity``."""
        from orch.security import pki

        node = pki.issue(self.directory, identity, pki.ROLE_NODE)
        return ["--security", "x509", "--tls-cert", node.cert_path, "--tls-key",
                str(node.key_path), "--tls-ca", self.ca_path]


def delete_exchanges(collective: str, broker: str = AMQP_URL) -> None:
    """Remove what the collective left on the broker (:func:`orch.testing.purge_collective`).

    Every session uses new collectives, so without this each run would leave transient
    exchanges (or Redis keys) behind until the broker restarts. A failure only warns:
    cleanup must not hide the benchmark's own result.
    """
    if not broker.startswith(("amqp", "pyamqp", "redis", "rediss")):
        return  # memory:// lives and dies with the process
    from orch.testing import purge_collective

    try:
        purge_collective(broker, collective)
    except Exception as exc:
        print(f"warning: could not delete {collective}'s exchanges: {exc}", file=sys.stderr)


def delete_node_queues(collective: str, identities: Iterable[str],
                       broker: str = AMQP_URL) -> None:
    """Delete the nodes' request queues a stopped fleet left on RabbitMQ.

    A node's queue outlives its consumer by ``queue_expiry`` (120 s), by design: a daemon
    that reconnects finds its requests. A stopped simulation's nodes never come back, and
    10,000 of them expiring at once, two minutes later, would land in the next
    measurement (and 10,000 idle queues sit in the broker until then). A failure only
    warns, like :func:`delete_exchanges`.
    """
    if not broker.startswith(("amqp", "pyamqp")):
        return  # Redis: delete_exchanges removes every key; memory:// dies with the process
    import kombu

    from orch.transports.kombu import node_queue_name

    try:
        with kombu.Connection(broker, connect_timeout=5) as conn:
            channel = conn.channel()
            for identity in identities:
                channel.queue_delete(node_queue_name(collective, identity), nowait=True)
            # A synchronous call on the same channel: every delete before it is done.
            channel.exchange_declare("amq.direct", "direct", passive=True)
    except Exception as exc:
        print(f"warning: could not delete {collective}'s node queues: {exc}", file=sys.stderr)


@dataclass
class Daemons:
    """Running ``orch server`` processes serving one collective."""

    collective: str
    broker: str
    identities: list[str]
    processes: list[subprocess.Popen[bytes]]
    nodes_file: Path
    workdir: Path
    pki: BenchPKI | None = None
    security: str = SECURITY

    @property
    def env(self) -> dict[str, str]:
        """The environment for client commands (``orch ping`` ...) against these daemons."""
        return orch_env(self.collective, self.broker,
                        self.pki.client if self.pki else {"security": self.security})

    @property
    def settings(self) -> Settings:
        """Settings for an in-process :class:`Client` against these daemons."""
        return client_settings(self.collective, self.broker,
                               **(self.pki.client if self.pki else {"security": self.security}))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]


def default_facts(index: int) -> list[str]:
    """Fact lines of node ``index``: half ``role: web`` (odd), half ``role: db``."""
    return [f"role: {'web' if index % 2 else 'db'}", "os_name: debian", f"index: {index}"]


def start_daemons(
    workdir: Path, collective: str, count: int, broker: str = AMQP_URL,
    facts: Mapping[str, str] | None = None, *, width: int = 2,
    fact_lines: Callable[[int], list[str]] = default_facts, security: str = "",
) -> Daemons:
    """Start ``count`` daemons in parallel (Popen does not wait), each with a fact file.

    Identities are ``node`` plus the index zero-padded to ``width`` digits (or more when
    ``count`` needs it); ``security`` overrides :data:`SECURITY`.
    """
    exe = orch_executable()
    security = security or SECURITY
    env = orch_env(collective, broker, {"security": security})
    workdir.mkdir(parents=True, exist_ok=True)
    width = max(width, len(str(count)))
    identities = [f"node{i:0{width}d}" for i in range(1, count + 1)]
    processes: list[subprocess.Popen[bytes]] = []
    pki = BenchPKI(workdir / "ca") if security == "x509" else None
    daemons = Daemons(collective, broker, identities, processes, workdir / "nodes.txt", workdir,
                      pki, security)
    daemons.nodes_file.write_text("\n".join(identities) + "\n")
    try:
        for index, identity in enumerate(identities, start=1):
            fact_file = workdir / f"{identity}.yaml"
            lines = [*fact_lines(index), *(f"{k}: {v}" for k, v in (facts or {}).items())]
            fact_file.write_text("\n".join(lines) + "\n")
            log = (workdir / f"{identity}.log").open("wb")
            try:
                processes.append(subprocess.Popen(
                    [exe, "server", "--identity", identity, "--facts", str(fact_file),
                     "--log-level", "warning", *(pki.node_flags(identity) if pki else [])],
                    env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT,
                ))
            finally:
                log.close()  # the child keeps its own descriptor
        wait_until_answering(daemons)
    except BaseException:
        stop_daemons(processes)
        raise
    return daemons


def wait_until_answering(daemons: Daemons, timeout: float = READY_TIMEOUT) -> None:
    """Poll with a known-list ping until every daemon answers (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    pending = set(daemons.identities)
    settings = daemons.settings.with_values({"discovery_timeout": 1.0}, "bench")
    with Client(settings) as client:
        while pending:
            dead = [p for p in daemons.processes if p.poll() is not None]
            if dead:
                raise RuntimeError(
                    f"{len(dead)} orch server(s) exited during start-up (exit codes "
                    f"{sorted({p.returncode for p in dead})}); logs in {daemons.workdir}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(pending)} of {len(daemons.identities)} daemons did not answer "
                    f"within {timeout:g}s: {sorted(pending)[:5]}...; logs in {daemons.workdir}"
                )
            result = client.ping(nodes=sorted(pending))
            pending -= set(result.replies)
            if pending:
                time.sleep(0.2)


def stop_daemons(processes: Sequence[subprocess.Popen[bytes]],
                 timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM every process, wait (bounded), then SIGKILL whatever is left."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            process.kill()
    for process in processes:
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            print(f"warning: orch server pid {process.pid} survived SIGKILL", file=sys.stderr)


class IdleGate:
    """A pytest-benchmark ``setup``: before each round, wait (bounded) for a quiet machine.

    Other people's test suites share these 2 cores; like the MCollective anchor's
    ``WAIT_IDLE`` gate, each round starts only once the machine is at least 70 % idle for
    1 s, or after :data:`IDLE_WAIT` seconds anyway (counted in ``timeouts``). The wait is
    not part of the measured time.
    """

    def __init__(self, max_wait: float = IDLE_WAIT) -> None:
        self.max_wait = max_wait
        self.waited = 0.0
        self.timeouts = 0

    def __call__(self) -> None:
        if self.max_wait <= 0:
            return
        started = time.monotonic()
        quiet = 0
        psutil.cpu_percent(interval=None)
        while quiet < 2:
            busy = psutil.cpu_percent(interval=0.5) / 100
            quiet = quiet + 1 if busy <= IDLE_BUSY_MAX else 0
            if time.monotonic() - started > self.max_wait:
                self.timeouts += 1
                break
        self.waited += time.monotonic() - started

    def record(self, extra_info: dict[str, object]) -> None:
        extra_info["idle_gate_wait_s"] = round(self.waited, 1)
        extra_info["idle_gate_timeouts"] = self.timeouts


# -- where the CPU and memory go -----------------------------------------------------------


def rss_mb(pids: Iterable[int]) -> float:
    """Resident memory of the processes, in MiB."""
    return sum(psutil.Process(pid).memory_info().rss for pid in pids) / 2**20


def broker_pids() -> list[int]:
    """The Erlang VMs on this machine: RabbitMQ's processes (run the benchmarks alone)."""
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "beam.smp"]


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU the processes have used so far (all threads; one gone counts 0)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def reaped_cpu_seconds() -> float:
    """CPU used so far by the children this process waited for, and by theirs that they
    waited for: a command run with :mod:`subprocess`, with its worker processes."""
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return reaped.ru_utime + reaped.ru_stime


def descendants_cpu_seconds() -> float:
    """CPU used so far by every process this one started, running or reaped (an in-process
    client's checker processes). Only for a process that runs nothing else: a simulation it
    started would count too."""
    try:
        live = [p.pid for p in psutil.Process().children(recursive=True)]
    except psutil.NoSuchProcess:  # a child gone between listing and reading
        live = []
    return cpu_seconds(live) + reaped_cpu_seconds()


@dataclass
class CPUBudget:
    """Where the CPU of the measured spans went, by named group of processes.

    Each group is a function returning the CPU seconds its processes have used so far;
    :meth:`span` adds what each used while its block ran. On this 2-core machine a span
    cannot take less wall time than the CPU it needs divided by the cores: :meth:`floor_s`
    is that physical limit, so a measured time can be read against it.
    """

    groups: Mapping[str, Callable[[], float]]
    used: dict[str, float] = field(default_factory=dict)
    spans: int = 0

    @contextmanager
    def span(self) -> Iterator[None]:
        before = {name: read() for name, read in self.groups.items()}
        yield
        for name, read in self.groups.items():
            self.used[name] = self.used.get(name, 0.0) + read() - before[name]
        self.spans += 1

    def reset(self) -> None:
        """Forget the spans so far (a warm-up's)."""
        self.used.clear()
        self.spans = 0

    def per_span_s(self) -> dict[str, float]:
        """Mean CPU seconds per span, by group."""
        return {name: used / max(self.spans, 1) for name, used in self.used.items()}

    def floor_s(self) -> float:
        """The shortest a span could be on this machine: its CPU over every core."""
        return sum(self.per_span_s().values()) / (os.cpu_count() or 1)

    def record(self, extra_info: dict[str, object], unit: str, per_span: int) -> str:
        """Store CPU per ``unit`` (``per_span`` units in a span) by group, the total and the
        floor, in microseconds; return them as one line for the output."""
        per_unit = {name: used * 1e6 / per_span for name, used in self.per_span_s().items()}
        for name, value in per_unit.items():
            extra_info[f"cpu_us_per_{unit}_{name}"] = round(value, 1)
        total = sum(per_unit.values())
        extra_info[f"cpu_us_per_{unit}_total"] = round(total, 1)
        extra_info["cpu_floor_s"] = round(self.floor_s(), 3)
        parts = " + ".join(f"{name} {value:.0f}" for name, value in per_unit.items())
        return (f"CPU per {unit}: {parts} = {total:.0f} µs; on {os.cpu_count()} cores no "
                f"span can take under {self.floor_s():.3f} s")


def start_session(exe: str, env: dict[str, str], directory: Path) -> dict[str, str]:
    """Get an ``orch session`` (docs/cli.md) in ``directory`` as users get one: a first
    command (``orch --version``) run with ``ORCH_SESSION`` unset runs by itself and starts
    it. Returns the environment of later commands (``ORCH_SESSION`` unset too: the default)
    once the session answers (at most :data:`READY_TIMEOUT`).

    Every other command here runs with ``ORCH_SESSION=off`` (:func:`base_env`); a figure
    "through a session" is only honest with :func:`stop_session`'s count checked (the first
    command is not in it: it ran by itself).
    """
    directory.mkdir(mode=0o700)
    session_env = {k: v for k, v in env.items() if k != "ORCH_SESSION"}
    session_env["ORCH_SESSION_DIR"] = str(directory)
    subprocess.run([exe, "--version"], env=session_env, check=True, stdout=subprocess.DEVNULL,
                   timeout=60)
    deadline = time.monotonic() + READY_TIMEOUT
    while session_status(exe, session_env) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"`{exe} --version` started no session in {directory} within "
                               f"{READY_TIMEOUT:g} s; see the session-*.log there")
        time.sleep(0.1)
    return session_env


def session_status(exe: str, env: dict[str, str]) -> dict[str, object] | None:
    """``orch session status --json``: the running session's status, or None."""
    done = subprocess.run([exe, "session", "status", "--json"], env=env, capture_output=True,
                          text=True, timeout=60)
    if done.returncode not in (0, 3):
        raise RuntimeError(f"orch session status exited {done.returncode}: {done.stderr}")
    status: dict[str, object] | None = json.loads(done.stdout)
    return status


def stop_session(exe: str, env: dict[str, str]) -> int:
    """Stop the session; how many commands it ran."""
    done = subprocess.run([exe, "session", "stop", "--json"], env=env, check=True,
                          capture_output=True, text=True, timeout=60)
    return int(json.loads(done.stdout)["served"])
