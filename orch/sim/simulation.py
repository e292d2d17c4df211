"""A simulated fleet: N full orch servers spread over worker processes sharing one CA.

Why: a fleet of 10,000 nodes is what orch must handle, and nobody has 10,000 machines to
test on. Each simulated node is a real :class:`~orch.core.server.Node` — its own queue on
the broker, its own key and certificate, facts from :mod:`orch.sim.facts` — running the
same request path as ``orch server``: every request verified, every reply signed. Many
nodes share a worker process (one broker connection, one action pool); the workers share
one CA, so one client certificate talks to all of them.

With ``workers=0`` the nodes are served in this process (threads), which is what
``orch demo`` does on ``memory://``, the broker that only exists inside one process.

What a simulation leaves in its state directory::

    STATE/ca/               the simulation's own CA (unless --ca DIR names another)
    STATE/client/           the operator's client certificate and key (0600)
    STATE/client.yaml       settings for orch clients: ORCH_CONFIG=STATE/client.yaml orch ping
    STATE/policies/         the nodes' action policy, unless --config names a policy_dir
                            (:mod:`orch.sim.policy`)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orch.core.errors import OrchError
from orch.sim.facts import partition
from orch.sim.pki import SimCA, SimPKIError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from orch.core.fleet import Fleet
    from orch.core.plugins import PluginRegistry

log = logging.getLogger(__name__)

#: Seconds to reach the broker before a simulation refuses to start.
CONNECT_TIMEOUT = 5.0
#: Seconds each worker gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0
#: How often the parent looks at its workers while it waits.
POLL = 0.2


class SimError(OrchError):
    """A simulation cannot start: bad arguments, the broker, the state directory, the CA."""


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_start_timeout(nodes: int) -> float:
    """Enough for the slowest broker seen declaring queues (about 2 ms a node), and then some."""
    return 60.0 + nodes * 0.01


@dataclass(frozen=True)
class SimConfig:
    """What to simulate and where."""

    nodes: int
    broker: str
    state_dir: Path
    collective: str = "orch"
    #: Worker processes; 0 serves every node in this process.
    workers: int = field(default_factory=default_workers)
    seed: int = 7
    #: An ``orch ca`` directory to issue from; None: the simulation's own in ``state_dir/ca``.
    ca_dir: Path | None = None
    #: False: no certificates, no signatures (development only).
    secure: bool = True
    start_timeout: float | None = None
    #: Keep issued node certificates in the state directory for the next start.
    keep_certificates: bool = True
    #: Settings for every node besides those the simulation sets (policy_dir, audit_log …).
    extra_settings: dict[str, Any] = field(default_factory=dict)
    #: The agents to host (rpcutil always); None: every installed agent with a simulation.
    agents: tuple[str, ...] | None = None


@dataclass
class Progress:
    """How far a start has come."""

    total: int
    issued: int = 0
    consuming: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def ready(self) -> bool:
        return self.consuming >= self.total

    def line(self) -> str:
        return (f"{self.consuming}/{self.total} nodes consuming, {self.issued}/{self.total} "
                f"certificates issued, {self.elapsed:.1f}s")


class Simulation:
    """Start with :meth:`start`, stop with :meth:`stop` (or use it as a context manager)."""

    def __init__(self, config: SimConfig,
                 on_progress: Callable[[Progress], None] | None = None,
                 registry: PluginRegistry | None = None) -> None:
        """``registry`` is the plugins the simulated nodes host (the command line passes
        its own); a simulation is an entry point, so without one it uses the installed
        plugins."""
        if config.nodes < 1:
            raise SimError(f"--nodes must be at least 1, not {config.nodes}")
        if config.workers < 0:
            raise SimError(f"--workers must be 0 or more, not {config.workers}")
        if config.workers > 0 and config.broker.strip().startswith("memory:"):
            raise SimError("memory:// exists only inside one process: worker processes "
                           "cannot share it; use a real broker, or workers=0 (orch demo)")
        if registry is None:
            from orch.core.plugins import default_registry

            registry = default_registry()
        self.registry = registry
        self.config = config
        self.on_progress = on_progress
        self.progress = Progress(config.nodes)
        self.state_dir = Path(config.state_dir).expanduser().resolve()
        self.client_config = self.state_dir / "client.yaml"
        self.client_settings: dict[str, str] = {}
        self._ca: SimCA | None = None
        self._fleet: Fleet | None = None
        self._workers: list[tuple[BaseProcess, Connection]] = []  # (process, its pipe)
        self._stopped = False
        #: Set by a signal (:meth:`handle_signals`): a start in progress gives up.
        self.stop_requested = False

    @property
    def display_url(self) -> str:
        """The broker URL(s) with every password masked (a cluster's list is comma-separated,
        and kombu masks only the first URL of such a string)."""
        from kombu.utils.url import maybe_sanitize_url

        return ",".join(str(maybe_sanitize_url(url.strip()))
                        for url in self.config.broker.split(","))

    # -- preparing ----------------------------------------------------------------------

    def prepare(self) -> None:
        """State directory, CA, client credentials and settings, broker reachability."""
        self._prepare_state_dir()
        settings: dict[str, str] = {"broker": self.config.broker,
                                    "collective": self.config.collective}
        if self.config.secure:
            ca_dir = self.config.ca_dir or self.state_dir / "ca"
            self._ca = SimCA.open(ca_dir, create=self.config.ca_dir is None)
            cert, key = self._ca.write_client(self.state_dir / "client")
            settings.update(security="x509", tls_cert=str(cert), tls_key=str(key),
                            tls_ca=str(self._ca.ca_file))
        else:
            settings["security"] = "insecure"
        self.client_settings = settings
        self._write_client_config()
        self._check_broker()
        self.node_settings()  # an agent without a simulation is refused before any start

    def _prepare_state_dir(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            probe = self.state_dir / f".probe.{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SimError(f"the state directory {self.state_dir} is not writable: "
                           f"{exc.strerror or exc}; pass --state-dir DIR") from None

    def _write_client_config(self) -> None:
        # JSON strings are YAML scalars: no quoting rules to get wrong.
        lines = [f"{key}: {json.dumps(value)}" for key, value in self.client_settings.items()]
        try:
            self.client_config.write_text(
                "# orch client settings for the simulation; use: "
                f"ORCH_CONFIG={self.client_config} orch ping\n" + "\n".join(lines) + "\n")
        except OSError as exc:
            raise SimError(f"cannot write {self.client_config}: {exc.strerror or exc}") from None

    def _check_broker(self) -> None:
        if self.config.broker.strip().startswith("memory:"):
            return
        from orch.core.config import load_settings

        try:
            settings = load_settings(overrides=self.client_settings, environ={},
                                     registry=self.registry)
            channel = self.registry.transport_for(settings).open_client(
                self.config.collective, CONNECT_TIMEOUT)
        except OrchError as exc:
            raise SimError(str(exc)) from None
        channel.close()

    # -- starting -----------------------------------------------------------------------

    def node_settings(self) -> dict[str, Any]:
        """The settings every simulated node runs with (and ``orch demo``'s fleet)."""
        from orch.core.config import load_settings
        from orch.sim.policy import with_explicit_policy
        from orch.sim.worker import simulated_agents

        values = with_explicit_policy({**self.config.extra_settings, **self.client_settings},
                                      self.state_dir)
        settings = load_settings(overrides=values, environ={}, registry=self.registry)
        agents = simulated_agents(self.registry, settings)
        if self.config.agents is not None:
            wanted = ["rpcutil", *(a for a in dict.fromkeys(self.config.agents)
                                   if a != "rpcutil")]
            unknown = [a for a in wanted if a not in agents]
            if unknown:
                raise SimError(f"agent(s) {', '.join(unknown)} cannot be simulated (not "
                               "installed, or no simulation); simulated agents here: "
                               f"{', '.join(agents)}")
            agents = wanted
        left_out = sorted(set(self.registry.agents(settings)) - set(agents))
        if left_out:
            log.info("simulated nodes leave out agent(s): %s", ", ".join(left_out))
        values["agents"] = agents
        return values

    def start(self) -> Simulation:
        """Start every node; return once all of them consume, or raise :class:`SimError`."""
        if not self.client_settings:
            self.prepare()
        timeout = self.config.start_timeout or default_start_timeout(self.config.nodes)
        try:
            if self.config.workers == 0:
                self._start_here(timeout)
            else:
                self._start_workers(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)

    def _start_here(self, timeout: float) -> None:
        from orch.sim.facts import node_specs
        from orch.sim.worker import build_fleet, issue_all

        specs = node_specs(self.config.nodes, self.config.seed)
        providers: dict[str, Any] = {}
        if self._ca is not None:
            def issued(done: int) -> None:
                self.progress.issued = done
                self._report()

            providers = issue_all(self._ca, specs, issued,
                                  self._cache_file(1, self.config.nodes))
        self.progress.issued = len(specs)

        def security_for(spec: Any) -> Any:
            return providers[spec.identity]

        self._fleet = build_fleet(self.node_settings(), specs,
                                  security_for if providers else None, self.registry)
        providers.clear()
        self._fleet.start(timeout)
        self.progress.consuming = len(specs)
        self._report()

    def _start_workers(self, timeout: float) -> None:
        import multiprocessing
        from multiprocessing.connection import wait

        from orch.sim.worker import WorkerPlan, run_worker

        settings = self.node_settings()
        # fork: the workers inherit the imported modules and the loaded plugins, which is
        # most of a worker's start; nothing in this process runs a thread yet.
        context = multiprocessing.get_context("fork")
        slices = partition(self.config.nodes, self.config.workers)
        for number, (first, last) in enumerate(slices):
            parent_end, child_end = context.Pipe(duplex=False)
            plan = WorkerPlan(number, first, last, self.config.nodes, self.config.seed,
                              self._ca, settings, timeout, self._cache_file(first, last))
            process: BaseProcess = context.Process(target=run_worker, args=(plan, child_end),
                                      name=f"orch-sim-{number}", daemon=False)
            process.start()
            child_end.close()
            self._workers.append((process, parent_end))
        issued = [0] * len(slices)
        ready = [0] * len(slices)
        deadline = time.monotonic() + timeout
        while sum(ready) < self.config.nodes:
            if self.stop_requested:
                raise SimError(f"interrupted with {sum(ready)} of {self.config.nodes} "
                               "nodes consuming")
            left = deadline - time.monotonic()
            if left <= 0:
                raise SimError(f"only {sum(ready)} of {self.config.nodes} nodes were "
                               f"consuming on {self.display_url} after {timeout:g}s")
            readable = wait([conn for _, conn in self._workers], min(left, 1.0))
            for number, (_, conn) in enumerate(self._workers):
                if conn not in readable:
                    continue
                kind, value = self._receive(conn)
                if kind == "issued":
                    issued[number] = value
                elif kind == "ready":
                    ready[number] = value
                elif kind == "error":
                    raise SimError(f"simulation worker {number} failed: {value}")
            self.progress.issued, self.progress.consuming = sum(issued), sum(ready)
            self._report()
            for number, (process, _) in enumerate(self._workers):
                first, last = slices[number]
                if process.exitcode is not None and ready[number] < last - first + 1:
                    raise SimError(f"simulation worker {number} exited with code "
                                   f"{process.exitcode} before its nodes were consuming")

    def _cache_file(self, first: int, last: int) -> Path | None:
        """Where the certificates of nodes ``first``..``last`` are kept: keyed by the CA,
        the seed and the fleet size, which together decide every node's name."""
        if self._ca is None or not self.config.keep_certificates:
            return None
        return (self.state_dir / "issued"
                / f"{self._ca.fingerprint[:16]}-seed{self.config.seed}-n{self.config.nodes}"
                  f"-{first}-{last}.json")

    @staticmethod
    def _receive(conn: Connection) -> tuple[str, Any]:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return ("error", "it exited without a word (see its log above)")
        if not (isinstance(message, tuple) and len(message) == 2):
            return ("error", f"unexpected message {message!r}")
        return message

    # -- running and stopping -----------------------------------------------------------

    @property
    def worker_pids(self) -> list[int]:
        return [process.pid for process, _ in self._workers if process.pid is not None]

    def wait(self, should_stop: Callable[[], bool]) -> str | None:
        """Serve until ``should_stop()`` is true or a worker dies; return why it ended
        when a worker died (None when asked to stop)."""
        while not should_stop():
            for number, (process, _) in enumerate(self._workers):
                if process.exitcode is not None:
                    return f"simulation worker {number} exited with code {process.exitcode}"
            time.sleep(POLL)
        return None

    def handle_signals(self) -> None:
        """From now on SIGTERM and SIGINT ask the simulation to stop (call in the main
        thread before :meth:`start`, so no signal falls between starting and serving).

        The handler only raises a flag: the start loop and :meth:`wait` look at it."""
        def flag(*_: object) -> None:
            self.stop_requested = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, flag)

    def serve_until_signalled(self) -> str | None:
        """:meth:`wait` until SIGTERM or SIGINT (see :meth:`handle_signals`)."""
        return self.wait(lambda: self.stop_requested)

    def stop(self) -> None:
        """Stop every node: SIGTERM each worker, then SIGKILL one that outlives
        :data:`STOP_TIMEOUT`. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._fleet is not None:
            self._fleet.stop()
        for process, _ in self._workers:
            if process.exitcode is None and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for number, (process, conn) in enumerate(self._workers):
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.exitcode is None:
                log.warning("simulation worker %d did not stop within %gs; killing it",
                            number, STOP_TIMEOUT)
                process.kill()
                process.join(5.0)
            conn.close()

    def __enter__(self) -> Simulation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fleet(self) -> Fleet | None:
        """The in-process fleet (``workers=0``), for the demo and tests."""
        return self._fleet

    @property
    def ca(self) -> SimCA | None:
        return self._ca


__all__ = ["Progress", "SimConfig", "SimError", "SimPKIError", "Simulation"]
