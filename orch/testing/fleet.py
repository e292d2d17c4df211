"""In-process fleets of real nodes for tests: :class:`OrchFleet` and how nodes are given."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import types
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

if TYPE_CHECKING:
    from orch.core.agent import Agent
    from orch.core.client import CallResult, Client
    from orch.core.config import Settings
    from orch.core.fleet import Fleet, NodeSpec
    from orch.core.plugins import PluginRegistry
    from orch.core.server import Node
    from orch.demo import DemoPKI


log = logging.getLogger(__name__)

T = TypeVar("T")

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


