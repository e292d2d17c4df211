"""Many nodes in one process: the demo, benchmarks and plugin authors' tests use this.

Each simulated node is a real :class:`~orch.core.server.Node` — its own identity, facts,
classes, agent instances and counters, running the same request path as ``orch server`` —
but they share one transport connection and one set of :class:`NodeServices`, so
a thousand of them fit in one process.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from orch.core.agent import simulated_agents
from orch.core.config import Settings
from orch.core.decoded import DecodedRequests
from orch.core.errors import TransportError
from orch.core.plugins import PluginRegistry
from orch.core.runner import InlineRunner
from orch.core.security import SecurityProvider
from orch.core.server import Node, NodeServices

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeSpec:
    """One simulated node: its identity, facts and Puppet classes."""

    identity: str
    facts: Mapping[str, Any] = field(default_factory=dict)
    classes: frozenset[str] = frozenset()


def _facts_of(spec: NodeSpec) -> Callable[[], Mapping[str, Any]]:
    """A read-only view of the spec's facts, not a copy: 10,000 nodes, 10,000 fewer dicts."""
    view = MappingProxyType(spec.facts) if isinstance(spec.facts, dict) else spec.facts
    return lambda: view


class Fleet:
    """Serve ``specs`` on the broker of ``settings`` until :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        specs: Sequence[NodeSpec],
        registry: PluginRegistry,
        security_for: Callable[[NodeSpec], SecurityProvider] | None = None,
        *,
        inline_actions: bool = False,
        simulated: bool = False,
    ) -> None:
        """``security_for`` gives each node its own provider (its own certificate);
        without it they all share the one ``settings`` names. ``inline_actions`` evaluates
        each request's filter and runs its action in the consuming thread (no work queue,
        :class:`~orch.core.runner.InlineRunner`): only for fleets hosting nothing but
        ``simulation_safe`` agents, which return at once. ``simulated`` hosts each agent's
        simulation (:meth:`~orch.core.agent.Agent.simulation`) instead of the agent, and
        leaves out agents that offer none: such nodes never act on this machine."""
        self.settings = settings
        self.transport = registry.transport_for(settings)
        # One broadcast puts a request for every simulated node on the shared work queue at
        # once (and an action on the shared runner): both must hold at least that many, or
        # the fleet drops its own work or answers "busy" to itself.
        backlog = max(settings.filter_backlog, 2 * len(specs))
        self.services = NodeServices.from_settings(
            replace(settings, filter_backlog=backlog,
                    max_actions=max(settings.max_actions, 2 * len(specs))),
            registry, self.transport.send_reply)
        if inline_actions:
            # Nothing to hand over to other threads: filters are bounded by their budget
            # and the actions only read the node's view, and each hand-off cost more.
            if self.services.queue is not None:
                self.services.queue.shutdown(0.1)
                self.services.queue = None
            self.services.runner.shutdown(0.1)
            self.services.runner = InlineRunner()
        agents = registry.agents_for(settings)
        if simulated:
            # Every node of this process gets a copy of each request: decode it once.
            self.services.decoded = DecodedRequests()
            hosted = simulated_agents(agents)
            if set(hosted) != set(agents):
                log.info("simulated nodes leave out agent(s) without a simulation: %s",
                         ", ".join(sorted(set(agents) - set(hosted))))
            agents = hosted
        #: The agent classes every node hosts (simulations, for a simulated fleet).
        self.agents = agents
        self.nodes = [
            Node(spec.identity, settings.collective, agents, _facts_of(spec), spec.classes,
                 self.services, security_for(spec) if security_for else None)
            for spec in specs
        ]
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="orch-fleet", daemon=True)

    def _serve(self) -> None:
        self.transport.serve([node.binding() for node in self.nodes], self._stop, self._ready)

    def start(self, timeout: float = 30.0) -> Fleet:
        """Start serving in a background thread; return once every queue is consuming."""
        # Thousands of long-lived node objects make every full garbage collection long
        # enough to stall replies; they live as long as the fleet, so stop scanning them.
        gc.freeze()
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TransportError(
                f"the simulated fleet could not start consuming on "
                f"{self.transport.display_url} within {timeout:g}s"
            )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self.services.close()
        self.transport.close()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
