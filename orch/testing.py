"""Test fixtures for orch plugins: a signed in-memory fleet, a client, and reply assertions.

This module is a pytest plugin. Installing orch registers it through pytest's ``pytest11``
entry point, so its fixtures are available in every test of a project whose environment has
orch — the tests ``orch plugin new`` scaffolds rely on exactly that::

    from orch.testing import assert_all_ok

    def test_greet(orch_fleet):
        fleet = orch_fleet({"web1": {"role": "web"}, "db1": {"role": "db"}})
        result = fleet.call("hello", "greet", name="world", filter="role=web")
        assert_all_ok(result, expected=["web1"])
        assert result.replies["web1"].data["message"] == "hello world, from web1"

Why it looks like this:

* Every fleet is a real :class:`orch.core.fleet.Fleet` — each simulated node runs the same
  request path as ``orch server`` (filters, DDL validation of arguments and replies,
  authorization, the worker pool with the DDL timeout) — on the in-process ``memory://``
  broker, so no broker needs to run. Each fleet gets a collective of its own, so fleets of
  one test, and of tests running one after the other, never see each other's requests.
* Every fleet is secured like production: a throw-away CA (:class:`orch.demo.DemoPKI`, one
  per test session) gives the client a certificate and each node its own, so requests and
  replies are signed and verified with ``security: x509``. An agent that passes these tests
  was not helped by a shortcut that production lacks.
* A call without a filter addresses every node directly (no discovery), so it returns as
  soon as the last node answered and ``missing`` names any node that did not. A call with a
  filter discovers first, exactly as ``orch rpc`` does.
* Nothing happens at import time: orch's own modules are imported when a fixture is first
  used, so having orch installed costs other projects' test runs nothing.

The fixtures:

``orch_fleet``
    A factory: ``orch_fleet(nodes=None, classes=None, agents=None, broker="memory://",
    settings=None)`` starts a fleet and returns an :class:`OrchFleet`; every fleet a test
    started is stopped after it.
``orch_client``
    The :class:`orch.core.client.Client` of a fleet of :data:`DEFAULT_NODES`.
``orch_pki``
    The session's throw-away CA (:class:`orch.demo.DemoPKI`).

Outside pytest, :meth:`OrchFleet.start` gives the same fleet as a context manager.

PYTEST_DONT_REWRITE — the assertion helpers write their own messages, so this module needs
no assertion rewriting; the marker also spares a warning when a test module imports it
before pytest loads it as a plugin (``pytest_plugins = ["orch.testing"]``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import types
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import pytest

from orch.installcheck import check_fresh_install

if TYPE_CHECKING:
    from orch.core.agent import Agent
    from orch.core.client import CallResult, Client
    from orch.core.config import Settings
    from orch.core.fleet import Fleet, NodeSpec
    from orch.core.plugins import PluginRegistry
    from orch.core.protocol import Status
    from orch.core.server import Node
    from orch.demo import DemoPKI

__all__ = [
    "DEFAULT_CLASSES",
    "DEFAULT_NODES",
    "FleetFactory",
    "OrchFleet",
    "SimProcess",
    "assert_all_failed",
    "assert_all_ok",
    "check_fresh_install",
    "data_by_node",
    "describe_result",
    "node_specs",
    "orch_client",
    "orch_fleet",
    "orch_pki",
]

log = logging.getLogger(__name__)

#: The nodes of a fleet started without ``nodes``: two web servers and a database server
#: in two environments, with Puppet-like classes, so filters have something to choose.
DEFAULT_NODES: Mapping[str, Mapping[str, Any]] = types.MappingProxyType({
    "web1": {"role": "web", "environment": "production", "os": {"family": "Debian"}},
    "web2": {"role": "web", "environment": "staging", "os": {"family": "Debian"}},
    "db1": {"role": "db", "environment": "production", "os": {"family": "RedHat"}},
})
#: The classes of :data:`DEFAULT_NODES`.
DEFAULT_CLASSES: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    "web1": ("role::web", "nginx"),
    "web2": ("role::web", "nginx"),
    "db1": ("role::db", "postgresql"),
})

#: The longest broadcast discovery waits (orch's default: 2 s): nodes in this process answer
#: in milliseconds, and a test of a filter that selects nothing waits this long.
DISCOVERY_TIMEOUT = 1.0
#: Broadcast discovery ends this long after the latest reply. orch's default (0.2 s) is
#: plenty in one process; a loaded CI machine is given a little more.
DISCOVERY_WINDOW = 0.3
#: Seconds a background stop of a fleet may take before the session gives up on it.
STOP_TIMEOUT = 15.0

#: What ``nodes`` may be: ``{identity: facts}``, or identities and/or ``NodeSpec`` objects.
NodesArg: TypeAlias = "Mapping[str, Mapping[str, Any]] | Iterable[NodeSpec | str] | str"
#: What ``classes`` may be: ``{identity: [class, ...]}``, or classes every node gets.
ClassesArg: TypeAlias = "Mapping[str, Iterable[str]] | Iterable[str] | str"
#: What ``filter`` may be: a compound expression (``"role=web and not env=dev"``, what
#: ``-S`` takes) or a request filter as :meth:`OrchFleet.filter` builds it.
FilterArg: TypeAlias = "str | Mapping[str, Sequence[Any]]"


# ----------------------------------------------------------------------------- the fleet


class OrchFleet:
    """A started fleet of simulated nodes with a client of its collective.

    Attributes:
        identities: the node names, sorted.
        nodes: ``{identity: NodeSpec}`` — the facts and classes each node was given.
        settings: the client's settings (broker, collective, certificate).
        client: an :class:`orch.core.client.Client` of this fleet, signing with the client
            certificate; use it for anything :meth:`call` does not cover.
        fleet: the underlying :class:`orch.core.fleet.Fleet`.
        registry: the plugins the nodes and the client use.
        pki: the CA that issued the certificates.
    """

    def __init__(self, fleet: Fleet, client: Client, specs: Sequence[NodeSpec],
                 registry: PluginRegistry, pki: DemoPKI,
                 cleanup: Iterable[Path] = ()) -> None:
        self.fleet = fleet
        self.client = client
        self.settings: Settings = client.settings
        self.registry = registry
        self.pki = pki
        self.nodes: dict[str, NodeSpec] = {spec.identity: spec for spec in specs}
        self.identities: list[str] = sorted(self.nodes)
        self._clients: list[Client] = [client]
        self._cleanup = list(cleanup)
        self._stopped = False

    # -- building ------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        nodes: NodesArg | None = None,
        classes: ClassesArg | None = None,
        agents: Iterable[str | type[Agent]] | None = None,
        broker: str = "memory://",
        *,
        settings: Mapping[str, Any] | None = None,
        pki: DemoPKI | None = None,
        collective: str | None = None,
        simulated: bool = False,
    ) -> OrchFleet:
        """Start a fleet and return it once every node is consuming requests.

        ``nodes`` — ``{identity: facts}``, or a list of identities and/or
        :class:`~orch.core.fleet.NodeSpec`; :data:`DEFAULT_NODES` when omitted.
        ``classes`` — ``{identity: classes}``, or classes for every node (added to those of
        a ``NodeSpec``).
        ``agents`` — what the nodes host: names of installed agents and/or
        :class:`~orch.core.agent.Agent` subclasses that need not be installed (test an agent
        before packaging it). ``rpcutil`` is always hosted: discovery needs it. Default:
        every installed agent, as ``orch server`` does.
        ``broker`` — ``memory://`` (in this process) or a real broker URL.
        ``settings`` — further settings for the nodes and the client (``policy_dir``,
        ``timeout``, ``audit_log`` …).
        ``pki`` — the CA to use; a temporary one (removed by :meth:`stop`) when omitted.
        ``simulated`` — host each agent's simulation (``Agent.simulation()``) instead of
        the agent, as ``orch demo`` does, and leave out agents that offer none: the fleet
        never acts on this machine (test a plugin's simulation, or code that drives one).

        Usable as a context manager, without pytest::

            with OrchFleet.start({"n1": {"role": "web"}}) as fleet:
                assert fleet.call("rpcutil", "ping").ok == ["n1"]
        """
        from orch.core.client import Client
        from orch.core.config import load_settings
        from orch.core.fleet import Fleet
        from orch.demo import DemoPKI

        specs = node_specs(DEFAULT_NODES if nodes is None else nodes,
                           DEFAULT_CLASSES if nodes is None and classes is None else classes)
        registry, hosted = _registry_for(agents)
        cleanup: list[Path] = []
        if pki is None:
            scratch = Path(tempfile.mkdtemp(prefix="orch-testing-"))
            cleanup.append(scratch)
            pki = DemoPKI.create(scratch / "ca", client_name="orch.tester")
        values: dict[str, Any] = {
            "broker": broker,
            "collective": collective or f"test-{uuid.uuid4().hex[:12]}",
            "discovery_timeout": DISCOVERY_TIMEOUT,
            "discovery_window": DISCOVERY_WINDOW,
            **pki.client_settings,
            **(settings or {}),
        }
        if hosted is not None:
            values["agents"] = hosted
        try:
            resolved = load_settings(overrides=values, environ={})
            registry.agents_for(resolved)  # a missing agent fails here, before any thread
            client = Client(resolved, registry)
            try:
                fleet = Fleet(resolved, specs, registry, security_for=pki.node_security,
                              simulated=simulated)
                fleet.start()
            except BaseException:
                client.close()
                raise
        except BaseException:
            for path in cleanup:
                shutil.rmtree(path, ignore_errors=True)
            raise
        return cls(fleet, client, specs, registry, pki, cleanup)

    def __enter__(self) -> OrchFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- using ---------------------------------------------------------------------------

    @property
    def agents(self) -> list[str]:
        """The agents every node of this fleet hosts."""
        return sorted(self.fleet.agents)

    def node(self, identity: str) -> Node:
        """The running :class:`orch.core.server.Node` (its ``statistics()``, ``view()`` …)."""
        for node in self.fleet.nodes:
            if node.identity == identity:
                return node
        raise KeyError(f"no node {identity!r} in this fleet; its nodes: "
                       f"{', '.join(self.identities)}")

    def filter(
        self,
        *,
        fact: str | Iterable[str] = (),
        cls: str | Iterable[str] = (),
        identity: str | Iterable[str] = (),
        agent: str | Iterable[str] = (),
        compound: str | Iterable[str] = (),
        with_: str | Iterable[str] = (),
    ) -> dict[str, list[Any]]:
        """A request filter from the values ``orch`` takes after -F, -C, -I, -A, -S and -W.

        ``fleet.filter(fact="role=web", cls="nginx")`` selects what
        ``orch rpc ... -F role=web -C nginx`` would. Every kind must match; several terms of
        one kind must all match, except identities (any of them).
        """
        from orch.core.filterargs import build_filter

        return build_filter(self.client.filters, fact=_strings(fact),
                            classes=_strings(cls), identities=_strings(identity),
                            agents=_strings(agent), compound=_strings(compound),
                            with_=_strings(with_))

    def discover(self, filter: FilterArg | None = None, agent: str = "rpcutil") -> list[str]:
        """The identities ``filter`` selects, found by broadcast discovery like ``orch find``."""
        return self.client.discover(self._wire_filter(filter), agent)

    def call(
        self,
        agent: str,
        action: str,
        arguments: Mapping[str, Any] | None = None,
        /,
        *,
        filter: FilterArg | None = None,
        nodes: Iterable[str] | None = None,
        **args: Any,
    ) -> CallResult:
        """Run ``agent.action`` with ``args`` and return every node's reply.

        Without ``filter`` and ``nodes`` every node is addressed directly. With ``filter``
        (a compound expression such as ``"role=web"`` or a :meth:`filter` result) the nodes
        are discovered first, as ``orch rpc`` does. ``nodes`` addresses exactly those
        identities (``missing`` names those that did not answer).

        Arguments are checked against the DDL before anything is sent, so a wrong one raises
        :class:`orch.core.errors.ArgumentError` here, as ``orch rpc`` would refuse it. An
        argument whose name clashes with ``filter`` or ``nodes`` goes in ``arguments``:
        ``fleet.call("pkg", "install", {"nodes": 3})``.
        """
        hosted = self.agents
        if agent not in hosted:
            from orch.core.errors import UnknownAgentError

            raise UnknownAgentError(
                f"agent {agent!r} is not hosted by this fleet (it hosts "
                f"{', '.join(hosted)}); install your plugin in this environment "
                "(pip install -e .) or pass its class: orch_fleet(agents=[YourAgent])"
            )
        data = {**(arguments or {}), **args}
        wire = self._wire_filter(filter)
        addressed = sorted(nodes) if nodes is not None else None
        if addressed is None and not wire:
            addressed = list(self.identities)
        return self.client.call(agent, action, data, filter=wire or None, nodes=addressed)

    def cli_environment(self, **extra: str | None) -> dict[str, str | None]:
        """``ORCH_*`` variables pointing the ``orch`` command at this fleet (others unset)."""
        env: dict[str, str | None] = {k: None for k in os.environ
                                      if k.startswith("ORCH_") and k != "ORCH_CACHE_DIR"}
        keys = ("broker", "collective", "discovery_timeout", "discovery_window", "security",
                "tls_cert", "tls_key", "tls_ca")
        for key in keys:
            value = getattr(self.settings, key)
            if value is not None:
                text = ",".join(value) if isinstance(value, list | tuple) else str(value)
                env[f"ORCH_{key.upper()}"] = text
        env["ORCH_LOG_LEVEL"] = "error"
        env.update(extra)
        return env

    def run_cli(self, *args: str, input: str | None = None,
                env: Mapping[str, str | None] | None = None) -> Any:
        """Run ``orch ARGS`` in this process against this fleet (click's ``CliRunner``).

        Returns click's ``Result`` (``exit_code``, ``stdout``, ``stderr``, ``output``): what
        a plugin's command prints, and its exit code, tested without a broker. ``env``
        adds or unsets (None) variables. Root logging is restored afterwards.
        """
        from click.testing import CliRunner

        from orch.cli.main import cli

        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            return CliRunner().invoke(cli, list(args), input=input,
                                      env=self.cli_environment(**(env or {})),
                                      catch_exceptions=False)
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)

    def ping(self, filter: FilterArg | None = None) -> CallResult:
        """``rpcutil ping`` by broadcast, like ``orch ping``: who is alive and matches."""
        return self.client.ping(self._wire_filter(filter) or None)

    def client_for(self, name: str, **settings: Any) -> Client:
        """A client signing with a new certificate for ``name`` (caller ``cert=NAME``).

        For authorization tests: an actionpolicy rule ``allow cert=alice ...`` applies to
        ``fleet.client_for("alice")``. ``settings`` override the fleet's client settings.
        The client is closed when the fleet stops.
        """
        from orch.core.client import Client
        from orch.core.config import load_settings
        from orch.security import pki as pki_module

        issued = pki_module.issue(self.pki.directory, name, pki_module.ROLE_CLIENT, force=True)
        values: dict[str, Any] = {
            "broker": self.settings.broker, "collective": self.settings.collective,
            "discovery_timeout": self.settings.discovery_timeout,
            "discovery_window": self.settings.discovery_window,
            "security": "x509", "tls_cert": str(issued.cert_path),
            "tls_key": str(issued.key_path), "tls_ca": self.pki.client_settings["tls_ca"],
            **settings,
        }
        client = Client(load_settings(overrides=values, environ={}), self.registry)
        self._clients.append(client)
        return client

    def _wire_filter(self, filter: FilterArg | None) -> dict[str, list[Any]]:
        if filter is None:
            return {}
        if isinstance(filter, str):
            return self.filter(compound=filter)
        return {kind: list(terms) for kind, terms in filter.items()}

    # -- stopping ------------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called (the fleet may still be winding down)."""
        return self._stopped

    def stop(self, wait: bool = True) -> threading.Thread | None:
        """Close the clients and stop serving; idempotent.

        Stopping takes up to half a second (the serving loop's drain slice). With
        ``wait=False`` it happens in a thread that is returned (the fixtures join them at
        the end of the session), so tests do not wait for it one by one.
        """
        if self._stopped:
            return None
        self._stopped = True
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()
        if wait:
            self._stop_fleet()
            return None
        thread = threading.Thread(target=self._stop_fleet, name="orch-testing-stop",
                                  daemon=True)
        thread.start()
        return thread

    def _stop_fleet(self) -> None:
        try:
            self.fleet.stop()
        except Exception:  # a test's teardown must not fail on a transport hiccup
            log.warning("stopping the fleet of %s failed", self.settings.collective,
                        exc_info=True)
        finally:
            for path in self._cleanup:
                shutil.rmtree(path, ignore_errors=True)

    def __repr__(self) -> str:
        return (f"<OrchFleet {self.settings.collective} on {self.fleet.transport.display_url}: "
                f"{', '.join(self.identities)}>")


def node_specs(nodes: NodesArg, classes: ClassesArg | None = None) -> list[NodeSpec]:
    """The :class:`~orch.core.fleet.NodeSpec` list described by ``nodes`` and ``classes``.

    Raises ValueError for an identity that is not a valid name, a duplicate identity, or
    ``classes`` for a node that is not in ``nodes`` (a typo would otherwise go unnoticed).
    """
    from orch.core.fleet import NodeSpec
    from orch.core.protocol import valid_name

    specs: list[NodeSpec] = []
    if isinstance(nodes, Mapping):
        for identity, facts in nodes.items():
            if not isinstance(facts, Mapping):
                raise ValueError(f"the facts of node {identity!r} must be a mapping, "
                                 f"not {type(facts).__name__}")
            specs.append(NodeSpec(identity, dict(facts)))
    else:
        for item in [nodes] if isinstance(nodes, str) else nodes:
            specs.append(NodeSpec(item) if isinstance(item, str) else item)
    seen: set[str] = set()
    for spec in specs:
        if not valid_name(spec.identity):
            raise ValueError(f"{spec.identity!r} is not a valid node identity: use letters, "
                             "digits, '.', '_' and '-'")
        if spec.identity in seen:
            raise ValueError(f"node {spec.identity!r} is listed twice")
        seen.add(spec.identity)
    if not specs:
        raise ValueError("a fleet needs at least one node")
    if classes is None:
        return specs
    if isinstance(classes, Mapping):
        unknown = sorted(set(classes) - seen)
        if unknown:
            raise ValueError(f"classes given for node(s) {', '.join(unknown)} that are not "
                             f"in the fleet ({', '.join(sorted(seen))})")
        extra = {identity: frozenset(_strings(names)) for identity, names in classes.items()}
    else:
        common = frozenset(_strings(classes))
        extra = {spec.identity: common for spec in specs}
    return [NodeSpec(spec.identity, spec.facts,
                     frozenset(spec.classes) | extra.get(spec.identity, frozenset()))
            for spec in specs]


def _strings(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _registry_for(
    agents: Iterable[str | type[Agent]] | None,
) -> tuple[PluginRegistry, list[str] | None]:
    """The registry a fleet uses and the agent names it hosts (None: all installed).

    Agent classes passed directly are registered in a registry of this fleet only, so they
    never leak into other tests or into the process-wide registry the CLI uses.
    """
    from orch.core.agent import Agent
    from orch.core.hookspecs import hookimpl
    from orch.core.plugins import PluginRegistry, default_registry

    if agents is None:
        return default_registry(), None
    items = [agents] if isinstance(agents, str) else list(agents)
    names: list[str] = []
    classes: list[type[Agent]] = []
    for item in items:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, type) and issubclass(item, Agent):
            classes.append(item)
            names.append(item.name)
        else:
            raise TypeError(f"agents must be agent names or Agent subclasses, not {item!r}")
    registry = default_registry()
    if classes:
        @hookimpl
        def orch_agents() -> list[type[Agent]]:
            return list(classes)

        registry = PluginRegistry.from_entry_points()
        plugin = types.ModuleType("orch_testing_agents")
        plugin.orch_agents = orch_agents  # type: ignore[attr-defined]
        if not registry.register(plugin, "orch.testing agents", "orch.testing"):
            raise ValueError(registry.infos["orch.testing agents"].error)
    hosted = ["rpcutil", *(name for name in dict.fromkeys(names) if name != "rpcutil")]
    return registry, hosted


# ----------------------------------------------------------------------------- orch sim


class SimProcess:
    """An ``orch sim`` subprocess, started and waited for by :meth:`start`.

    For tests and benchmarks that need thousands of nodes on a real broker: the nodes run
    in the simulation's worker processes, the test talks to them with any orch client
    using :attr:`client_config`. :meth:`stop` sends SIGTERM and reports what went wrong.
    """

    #: The line ``orch sim`` prints on stdout once every node consumes.
    READY = re.compile(r"^orch sim: (\d+) nodes ready in ([\d.]+)s \(worker pids ([\d ]+)\)$")

    def __init__(self, process: subprocess.Popen[str], state_dir: Path) -> None:
        self.process = process
        self.state_dir = state_dir
        self.client_config = state_dir / "client.yaml"
        self.worker_pids: list[int] = []
        self.start_seconds = 0.0
        self.output: list[str] = []

    @classmethod
    def start(cls, argv: Sequence[str], nodes: int, broker: str, state_dir: Path,
              *extra: str, env: Mapping[str, str] | None = None,
              timeout: float = 120.0) -> SimProcess:
        """Run ``argv sim --nodes N --broker URL --state-dir DIR EXTRA…``; return once the
        ready line appeared, or stop it and raise AssertionError with its output."""
        process = subprocess.Popen(
            [*argv, "sim", "--nodes", str(nodes), "--broker", broker,
             "--state-dir", str(state_dir), *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=dict(env) if env is not None else None)
        sim = cls(process, state_dir)
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=read, name="orch-sim-output", daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                sim.stop()
                raise AssertionError(f"orch sim was not ready within {timeout:g}s:\n"
                                     + "\n".join(sim.output)) from None
            if line is None:
                process.wait(10)
                raise AssertionError(f"orch sim exited with {process.returncode} before "
                                     "it was ready:\n" + "\n".join(sim.output))
            sim.output.append(line)
            match = cls.READY.match(line)
            if match:
                sim.start_seconds = float(match.group(2))
                sim.worker_pids = [int(pid) for pid in match.group(3).split()]
                return sim

    def stop(self, timeout: float = 30.0) -> list[str]:
        """SIGTERM, wait; return problems (a non-zero exit, a worker still alive). Idempotent."""
        problems: list[str] = []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            problems.append(f"orch sim did not stop within {timeout:g}s after SIGTERM")
        if self.process.returncode not in (0, -signal.SIGKILL) and not problems:
            problems.append(f"orch sim exited with {self.process.returncode}")
        for pid in self.worker_pids:
            if _alive(pid):
                problems.append(f"worker {pid} still running after orch sim stopped")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return problems

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


# ----------------------------------------------------------------------------- assertions


def describe_result(result: CallResult) -> str:
    """One line per node (status and message, or the data of an OK reply), then problems.

    What the assertion helpers show when they fail, so a failing test explains itself.
    """
    lines = [f"{result.agent}.{result.action}: {len(result.replies)} replies"
             + (f", {len(result.expected)} nodes addressed" if result.expected is not None
                else " (broadcast)")]
    for name in sorted(result.replies):
        reply = result.replies[name]
        if reply.ok:
            lines.append(f"  {name}: OK {dict(reply.data)!r}")
        else:
            lines.append(f"  {name}: {reply.statuscode.label}: {reply.statusmsg}"
                         + (f" {dict(reply.data)!r}" if reply.data else ""))
    lines.extend(f"  {name}: no reply" for name in result.missing)
    lines.extend(f"  rejected reply: {reason}" for reason in result.rejected)
    if result.error:
        lines.append(f"  transport error: {result.error}")
    if result.cut_short:
        lines.append(f"  incomplete: {result.cut_short}")
    return "\n".join(lines)


def _roster_problems(result: CallResult, expected: Iterable[str] | None) -> list[str]:
    problems = []
    if result.missing:
        problems.append(f"no reply from {', '.join(result.missing)}")
    if result.rejected:
        problems.append(f"{len(result.rejected)} reply(ies) rejected: "
                        + "; ".join(result.rejected))
    if result.error:
        problems.append(f"the call ended with a transport error: {result.error}")
    if result.cut_short:
        problems.append(f"the answer is incomplete: {result.cut_short}")
    if expected is None:
        if not result.replies and not result.missing:
            problems.append("no node answered (did the filter match nothing?)")
        return problems
    wanted = set(_strings(expected))
    absent = sorted(wanted - set(result.replies) - set(result.missing))
    if absent:
        problems.append(f"expected {', '.join(absent)} to answer, but "
                        + ("it was" if len(absent) == 1 else "they were")
                        + " not selected")
    extra = sorted(set(result.replies) - wanted)
    if extra:
        problems.append(f"unexpected replies from {', '.join(extra)}")
    return problems


def assert_all_ok(result: CallResult, expected: Iterable[str] | None = None) -> None:
    """Assert that every addressed node answered OK and nothing went wrong.

    ``expected`` — when given, exactly these identities must have answered (a filter test
    states which nodes it selects). Without it, at least one node must have answered.
    The message names failed nodes with their status and message, silent nodes, rejected
    replies and transport errors, followed by every reply (:func:`describe_result`).
    """
    __tracebackhide__ = True
    problems = _roster_problems(result, expected)
    failed = [f"{name} ({result.replies[name].statuscode.label}: "
              f"{result.replies[name].statusmsg})" for name in result.failed]
    if failed:
        problems.insert(0, f"failed on {', '.join(failed)}")
    if problems:
        raise AssertionError(f"{result.agent}.{result.action} was not OK everywhere: "
                             + "; ".join(problems) + "\n" + describe_result(result))


def assert_all_failed(
    result: CallResult,
    status: Status | int | str | None = None,
    message: str | None = None,
    expected: Iterable[str] | None = None,
) -> None:
    """Assert that every addressed node answered, and every one with a failure.

    ``status`` — the status each reply must have (a :class:`orch.core.protocol.Status`,
    its number, or its label such as ``"aborted"``); ``message`` — text each status message
    must contain; ``expected`` — as for :func:`assert_all_ok`.
    """
    __tracebackhide__ = True
    problems = _roster_problems(result, expected)
    if result.ok:
        problems.insert(0, f"succeeded on {', '.join(result.ok)}")
    wanted = _status(status) if status is not None else None
    for name in result.failed:
        reply = result.replies[name]
        if wanted is not None and reply.statuscode != wanted:
            problems.append(f"{name} answered {reply.statuscode.label}, not {wanted.label}")
        if message is not None and message not in reply.statusmsg:
            problems.append(f"{name}'s message {reply.statusmsg!r} does not contain "
                            f"{message!r}")
    if problems:
        raise AssertionError(f"{result.agent}.{result.action} did not fail as expected: "
                             + "; ".join(problems) + "\n" + describe_result(result))


def _status(value: Status | int | str) -> Status:
    from orch.core.protocol import Status

    if isinstance(value, str):
        for status in Status:
            if value.lower().replace("_", " ") == status.label:
                return status
        raise ValueError(f"unknown status {value!r}; one of "
                         f"{', '.join(s.label for s in Status)}")
    return Status(value)


def data_by_node(result: CallResult, *, ok_only: bool = True) -> dict[str, dict[str, Any]]:
    """``{identity: reply data}`` — of OK replies only, unless ``ok_only`` is false.

    Compare a whole fleet's answers in one assertion:
    ``assert data_by_node(result) == {"web1": {...}, "db1": {...}}``.
    """
    return {name: dict(reply.data) for name, reply in sorted(result.replies.items())
            if reply.ok or not ok_only}


# ----------------------------------------------------------------------------- fixtures


class _Stopper:
    """Stops fleets in the background and joins them at the end of the session."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def stop(self, fleet: OrchFleet) -> None:
        thread = fleet.stop(wait=False)
        if thread is not None:
            self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                log.warning("a test fleet did not stop within %gs", STOP_TIMEOUT)
        self.threads.clear()


class FleetFactory:
    """The ``orch_fleet`` fixture's value: call it to start a fleet (see :meth:`__call__`)."""

    def __init__(self, pki: DemoPKI, stopper: _Stopper) -> None:
        self.pki = pki
        self.fleets: list[OrchFleet] = []
        self._stopper = stopper

    def __call__(
        self,
        nodes: NodesArg | None = None,
        classes: ClassesArg | None = None,
        agents: Iterable[str | type[Agent]] | None = None,
        broker: str = "memory://",
        *,
        settings: Mapping[str, Any] | None = None,
        simulated: bool = False,
    ) -> OrchFleet:
        """Start a fleet of its own collective, signed by the session's CA.

        See :meth:`OrchFleet.start` for the arguments. The fleet is stopped after the test.
        """
        fleet = OrchFleet.start(nodes, classes, agents, broker, settings=settings,
                                pki=self.pki, simulated=simulated)
        self.fleets.append(fleet)
        return fleet

    def close(self) -> None:
        for fleet in self.fleets:
            self._stopper.stop(fleet)
        self.fleets.clear()


@pytest.fixture(scope="session")
def orch_pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    """The session's throw-away CA: a client certificate on disk, node certificates made
    as fleets start. One per session because making a CA is the slow part of a fleet."""
    from orch.demo import DemoPKI

    return DemoPKI.create(tmp_path_factory.mktemp("orch-pki") / "ca",
                          client_name="orch.tester")


@pytest.fixture(scope="session")
def _orch_fleet_stopper() -> Iterator[_Stopper]:
    stopper = _Stopper()
    try:
        yield stopper
    finally:
        stopper.join()


@pytest.fixture
def orch_fleet(orch_pki: DemoPKI, _orch_fleet_stopper: _Stopper) -> Iterator[FleetFactory]:
    """Start in-memory fleets: ``orch_fleet({"web1": {"role": "web"}}).call(...)``.

    Each call starts a new fleet in a collective of its own, secured with certificates
    from ``orch_pki``; all are stopped after the test.
    """
    factory = FleetFactory(orch_pki, _orch_fleet_stopper)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def orch_client(orch_fleet: FleetFactory) -> Client:
    """The client of a fleet of :data:`DEFAULT_NODES` (web1, web2, db1) hosting every
    installed agent."""
    return orch_fleet().client
