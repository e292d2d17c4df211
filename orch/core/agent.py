"""Writing agents: a class with one method per action, described by a DDL.

::

    from orch.plugin import Agent, action, hookimpl

    class Hello(Agent):
        name = "hello"
        ddl_file = "hello.json"          # next to this module, shipped as package data

        @action
        def greet(self, request, reply):
            reply["message"] = f"hello {request.data['name']} from {self.node.identity}"

    @hookimpl
    def orch_agents():
        return [Hello]

An action receives the :class:`ActionRequest` (validated arguments with defaults applied,
the caller, the request id) and an :class:`ActionReply` to fill in. Raise
:class:`ActionFailed` (or call ``reply.fail``) to answer with a failure status; any other
exception is caught and reported to the caller as ``unknown error``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from orch.core.config import Settings
from orch.core.protocol import Status
from orch.ddl.model import AgentDDL, load_ddl

if TYPE_CHECKING:
    from orch.core.filter import NodeView

ActionMethod = Callable[[Any, "ActionRequest", "ActionReply"], None]
M = TypeVar("M", bound=ActionMethod)


class NodeContext(Protocol):
    """What an agent may know about the node it runs on."""

    identity: str
    collective: str

    def view(self) -> NodeView:
        """The node's identity, facts, classes and agents, as filters see them."""
        ...

    def statistics(self) -> dict[str, Any]:
        """The daemon's counters (uptime, requests handled and failed, per-agent counts)."""
        ...

    def agent_ddl(self, name: str) -> AgentDDL:
        """The DDL of an agent this node hosts."""
        ...

    @property
    def settings(self) -> Settings:
        """The daemon's settings; read your plugin's declared section with
        ``settings.section(name, YourSettings)``."""
        ...

    def refresh(self, classes: frozenset[str] | None = None) -> None:
        """Re-collect the node's facts now (and replace its classes if given).

        For plugins that learn the facts changed (a finished Puppet run); filters see the
        new values from the next request on.
        """
        ...


class ActionFailed(Exception):
    """Raise from an action to answer with ``status`` and ``message``."""

    def __init__(self, message: str, status: Status = Status.ABORTED) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ActionRequest:
    agent: str
    action: str
    data: Mapping[str, Any]
    caller: str
    request_id: str
    sender: str


@dataclass
class ActionReply:
    """The reply an action fills in: item access sets output fields."""

    data: dict[str, Any] = field(default_factory=dict)
    statuscode: Status = Status.OK
    statusmsg: str = "OK"

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def fail(self, message: str, status: Status = Status.ABORTED) -> None:
        """Mark the reply failed but keep the data set so far (the caller still sees it)."""
        self.statuscode, self.statusmsg = status, message


def action(method: M | None = None, *, name: str | None = None) -> Any:
    """Mark an agent method as an action, named after the method or ``name``.

    ``@action`` or ``@action(name="run")`` (for an action whose name would clash with a
    Python keyword or one of :data:`RESERVED`).
    """

    def mark(function: M) -> M:
        function.__orch_action__ = name or function.__name__  # type: ignore[attr-defined]
        return function

    return mark(method) if method is not None else mark


#: Methods of :class:`Agent` that an action method must not replace.
RESERVED = frozenset({"run", "ddl", "actions"})


class Agent:
    """Base class of Python agents; subclass it, set :attr:`name`, decorate actions."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        clash = RESERVED.intersection(
            name for name, member in vars(cls).items()
            if getattr(member, "__orch_action__", False))
        if clash:
            raise TypeError(
                f"{cls.__name__}: an action method may not be called {sorted(clash)[0]!r} "
                "(it would replace Agent's own method); name the method differently and "
                "give the action's name with @action(name=...)")

    #: The agent's name, used on the command line and in routing keys.
    name: ClassVar[str]
    #: The DDL's file name, relative to the module defining the subclass.
    ddl_file: ClassVar[str | None] = None
    #: True when the actions only read the node's own view (facts, classes, counters) and
    #: never touch the machine: only such agents are hosted by simulated nodes (``orch sim``,
    #: ``orch demo``), where a thousand "nodes" share the one real machine.
    simulation_safe: ClassVar[bool] = False
    #: Seconds the server waits past the DDL timeout before answering for the agent. Agents
    #: that enforce their own deadline (external agents kill their process group at the
    #: timeout) set it, so that their more precise reply wins the race.
    deadline_grace: ClassVar[float] = 0.0

    def __init__(self, node: NodeContext) -> None:
        self.node = node

    @classmethod
    def simulation(cls) -> type[Agent] | None:
        """The class a simulated node hosts in this agent's place, or None: no simulation.

        Simulated nodes (``orch demo``, ``orch sim``, ``orch_fleet(simulated=True)``) share
        one real machine, so they must never run an agent that acts on it. An agent that
        does (runs commands, writes files) can still appear in a simulation by returning
        here a class with the same :attr:`name` and DDL whose actions only change state
        kept in memory per node — see "Simulated nodes" in docs/plugins.md. The default is
        the agent itself when it is :attr:`simulation_safe`, else None (left out).
        """
        return cls if cls.simulation_safe else None

    @classmethod
    def ddl(cls) -> AgentDDL:
        """The agent's DDL, loaded once per class."""
        return _load_class_ddl(cls)

    @classmethod
    def actions(cls) -> dict[str, ActionMethod]:
        return _class_actions(cls)

    def run(self, request: ActionRequest) -> ActionReply:
        """Run one action and return its reply; never raises."""
        reply = ActionReply()
        method = self.actions().get(request.action)
        if method is None:
            reply.fail(f"unknown action {request.action!r} for agent {self.name!r}",
                       Status.UNKNOWN_ACTION)
            return reply
        try:
            method(self, request, reply)
        except ActionFailed as exc:
            reply.fail(str(exc), exc.status)
        except Exception as exc:  # the agent's bug becomes the caller's error message
            reply.fail(f"{type(exc).__name__}: {exc}", Status.UNKNOWN_ERROR)
        return reply


def simulated_agents(agents: Mapping[str, type[Agent]]) -> dict[str, type[Agent]]:
    """Each agent's simulation (:meth:`Agent.simulation`), keyed by name; agents that offer
    none are left out. A simulation must be ``simulation_safe`` and keep the agent's name,
    or :class:`TypeError` says which plugin is wrong (a silent substitute would answer for
    an agent the operator did not ask for)."""
    out: dict[str, type[Agent]] = {}
    for name, cls in agents.items():
        simulated = cls.simulation()
        if simulated is None:
            continue
        if not (isinstance(simulated, type) and issubclass(simulated, Agent)
                and simulated.simulation_safe and simulated.name == name):
            raise TypeError(
                f"agent {name!r}: {cls.__qualname__}.simulation() must return None or an "
                f"Agent subclass named {name!r} with simulation_safe = True, not "
                f"{simulated!r}")
        out[name] = simulated
    return out


def _class_actions(cls: type[Agent]) -> dict[str, ActionMethod]:
    cached: dict[str, ActionMethod] | None = cls.__dict__.get("_orch_actions")
    if cached is None:
        cached = {
            getattr(member, "__orch_action__"): member  # noqa: B009 (set by @action)
            for _, member in inspect.getmembers(cls, inspect.isfunction)
            if getattr(member, "__orch_action__", False)
        }
        cls._orch_actions = cached  # type: ignore[attr-defined]
    return cached


def _load_class_ddl(cls: type[Agent]) -> AgentDDL:
    cached: AgentDDL | None = cls.__dict__.get("_orch_ddl")
    if cached is None:
        if cls.ddl_file is None:
            cached = AgentDDL(name=cls.name)
        else:
            cached = load_ddl(Path(inspect.getfile(cls)).parent / cls.ddl_file)
        cls._orch_ddl = cached  # type: ignore[attr-defined]
    return cached


def agent_or_simulation(agent: type[Agent], simulated: bool) -> list[type[Agent]]:
    """What an ``orch_agents`` hook returns for an agent whose settings can ask for its
    simulation (orch-service's and orch-package's ``provider: simulated``): ``[agent]``, or
    ``[agent.simulation()]`` when ``simulated``.

    One rule for both ways of simulating: a daemon configured to simulate hosts the class
    ``orch demo`` and simulated test fleets host. An agent without a simulation is an error
    here rather than a daemon that silently acts on its machine.
    """
    if not simulated:
        return [agent]
    simulation = agent.simulation()
    if simulation is None:
        from orch.core.errors import PluginError

        raise PluginError(f"agent {agent.name!r} has no simulation to host")
    return [simulation]
