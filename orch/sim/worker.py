"""One worker process of a simulation: its slice of the nodes, served until told to stop.

A worker is forked by :class:`orch.sim.simulation.Simulation`. It builds its nodes from
``(seed, index)``, issues their certificates with the shared CA, serves them as one
:class:`~orch.core.fleet.Fleet` (one broker connection, every node a full server with its
own queue), and talks to the parent over a pipe: progress, readiness, errors. It stops on
SIGTERM or SIGINT, and on its own when the parent disappears, so a killed simulation never
leaves nodes answering.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from orch.core.fleet import Fleet, NodeSpec
    from orch.core.plugins import PluginRegistry
    from orch.core.security import SecurityProvider
    from orch.sim.pki import SimCA

log = logging.getLogger(__name__)

#: Certificates issued between two progress messages.
PROGRESS_EVERY = 250
#: How often a serving worker looks at its stop flag and at its parent.
POLL = 0.2
#: Seconds a worker gives its fleet to stop before it exits anyway.
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker serves: nodes ``first``..``last`` of a fleet of ``count``."""

    number: int
    first: int
    last: int
    count: int
    seed: int
    #: None: an insecure simulation (no certificates).
    ca: SimCA | None
    #: Settings of the fleet (broker, collective, agents, the shared provider's files).
    settings: Mapping[str, Any] = field(default_factory=dict)
    start_timeout: float = 120.0
    #: Where this slice's issued certificates are kept between starts (None: nowhere).
    cache: Path | None = None


def simulated_agents(registry: PluginRegistry, settings: Any) -> list[str]:
    """The installed agents a simulated node may host: those that offer a simulation
    (:meth:`~orch.core.agent.Agent.simulation`; ``simulation_safe`` agents are their own)
    — anything else could act on the machine the simulation runs on."""
    from orch.core.agent import simulated_agents as simulations

    return sorted(simulations(registry.agents(settings)))


def build_fleet(
    settings_values: Mapping[str, Any],
    specs: Sequence[NodeSpec],
    security_for: Callable[[NodeSpec], SecurityProvider] | None,
    registry: PluginRegistry,
) -> Fleet:
    """A :class:`Fleet` of ``specs`` with the given settings, not started."""
    from orch.core.agent import simulated_agents as simulated_agents_of
    from orch.core.config import load_settings
    from orch.core.fleet import Fleet
    from orch.sim.simulation import SimError

    settings = load_settings(overrides=dict(settings_values), environ={}, registry=registry)
    agents = registry.agents_for(settings)
    try:
        hosted = simulated_agents_of(agents)
    except TypeError as exc:
        raise SimError(str(exc)) from None
    unsafe = sorted(set(agents) - set(hosted))
    if unsafe:
        raise SimError(f"agent(s) {', '.join(unsafe)} may act on this machine, offer no "
                       "simulation and cannot be hosted by simulated nodes")
    # Every hosted agent is a simulation that only touches memory and returns at once: run
    # actions in the consuming thread.
    return Fleet(settings, specs, registry, security_for=security_for, inline_actions=True,
                 simulated=True)


def issue_all(ca: SimCA, specs: Sequence[NodeSpec],
              progress: Callable[[int], None] | None = None,
              cache: Path | None = None) -> dict[str, SecurityProvider]:
    """A provider with its own certificate for every spec, reporting every few hundred.

    With ``cache``, certificates issued by an earlier start (same CA, same nodes) are
    reused and new ones are added to it: a restarted 10,000-node simulation skips issuing.
    """
    from orch.sim.pki import load_issued, store_issued

    issued = load_issued(cache, ca) if cache is not None else {}
    fresh = 0
    providers: dict[str, SecurityProvider] = {}
    for done, spec in enumerate(specs, 1):
        pair = issued.get(spec.identity)
        if pair is None:
            pair = issued[spec.identity] = ca.issue_node(spec.identity)
            fresh += 1
        providers[spec.identity] = ca.provider(*pair)
        if progress is not None and (done % PROGRESS_EVERY == 0 or done == len(specs)):
            progress(done)
    if cache is not None and fresh:
        try:
            store_issued(cache, ca, {spec.identity: issued[spec.identity] for spec in specs})
        except OSError as exc:  # a cache that cannot be written costs time, nothing else
            log.warning("cannot keep the issued certificates in %s: %s", cache, exc)
    return providers


def run_worker(plan: WorkerPlan, conn: Connection) -> None:
    """The worker process's main function (the target of ``multiprocessing.Process``)."""
    requested = {"stop": False}

    def flag(*_: object) -> None:
        requested["stop"] = True

    signal.signal(signal.SIGTERM, flag)
    signal.signal(signal.SIGINT, flag)
    _die_with_parent()
    parent = os.getppid()
    try:
        code = _serve(plan, conn, requested, parent)
    except BaseException as exc:  # tell the parent why, then go
        log.debug("simulation worker %d failed", plan.number, exc_info=True)
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}" if str(exc)
                       else type(exc).__name__))
        code = 1
    finally:
        with contextlib.suppress(Exception):
            conn.close()
    os._exit(code)  # skip atexit handlers inherited from the parent


def _serve(plan: WorkerPlan, conn: Connection, requested: dict[str, bool],
           parent: int) -> int:
    from orch.core.errors import OrchError
    from orch.core.plugins import default_registry
    from orch.sim.facts import node_specs

    began = time.monotonic()
    specs = node_specs(plan.count, plan.seed, plan.first, plan.last)
    providers: dict[str, SecurityProvider] = {}
    if plan.ca is not None:
        providers = issue_all(plan.ca, specs, lambda done: conn.send(("issued", done)),
                              plan.cache)
    else:
        conn.send(("issued", len(specs)))
    if requested["stop"]:
        return 0
    issued = time.monotonic()
    # A worker process is an entry point: it hosts the installed plugins.
    fleet = build_fleet(plan.settings, specs,
                        (lambda spec: providers[spec.identity]) if providers else None,
                        default_registry())
    providers.clear()
    built = time.monotonic()
    try:
        fleet.start(plan.start_timeout)
    except OrchError as exc:
        conn.send(("error", str(exc)))
        return 1
    log.info("simulation worker %d: nodes %d-%d consuming after %.1fs (certificates "
             "%.1fs, nodes %.1fs, queues %.1fs)", plan.number, plan.first, plan.last,
             time.monotonic() - began, issued - began, built - issued,
             time.monotonic() - built)
    conn.send(("ready", len(specs)))
    try:
        while not requested["stop"] and os.getppid() == parent:
            time.sleep(POLL)
    finally:
        _stop(fleet)
    conn.send(("stopped", len(specs)))
    return 0


def _stop(fleet: Fleet) -> None:
    try:
        fleet.stop(STOP_TIMEOUT)
    except Exception:  # the process ends anyway; the broker drops its queues
        log.warning("stopping a simulation worker's fleet failed", exc_info=True)


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the parent dies, even by SIGKILL (no-op elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
