"""The client library: discover nodes, send a request, collect and verify every reply.

The CLI, the tests, the benchmarks and any program that drives a fleet use this module::

    from orch.core.client import Client
    from orch.core.config import load_settings

    with Client(load_settings()) as client:
        result = client.call("rpcutil", "get_fact", {"fact": "os.family"},
                             filter={"fact": [{"fact": "role", "operator": "==",
                                               "value": "web"}]})
        for identity, reply in result.replies.items():
            print(identity, reply.data["value"])
        print("no answer from", result.missing)

A call never raises for what happens on the network once it has started: a broker that goes
away mid-call ends collection and is reported in :attr:`CallResult.error`, with every reply
received so far kept. A broadcast (or broadcast discovery) that its timeout ended while
replies were still arriving is reported in :attr:`CallResult.cut_short`: its list of
answering nodes is known to be incomplete, and the call did not succeed.

Timeouts bound how long the fleet takes, never the client's own work: a call's deadline
starts when its requests are published (however long publishing 10,000 of them took), and
the time spent verifying and handling each accepted reply is added to it, so a reply that
arrived in time is not counted missing because thousands of others were verified first. A
direct call also allows :data:`PER_NODE_ALLOWANCE` per addressed node for the broker.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import logging
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from orch.core import protocol
from orch.core.agentlookup import AgentLookup
from orch.core.checkpool import CheckedReceiver
from orch.core.collect import (
    Quiet,
    ReplyCallback,
    accept_reply,
    collect_loop,
    verified_reply,
)
from orch.core.config import Settings
from orch.core.discovery import Discovered
from orch.core.errors import (
    ArgumentError,
    CallInterrupted,
    ConfigError,
    ProtocolError,
    TransportError,
    UnknownActionError,
)
from orch.core.plugins import PluginRegistry, default_registry
from orch.core.protocol import Envelope, Reply, Request, valid_name
from orch.core.result import CallResult
from orch.core.security import close_provider
from orch.core.transport import ClientChannel
from orch.ddl.model import DEFAULT_TIMEOUT, ActionDDL

if TYPE_CHECKING:
    from orch.core.agent import Agent
    from orch.core.filter import FilterEngine
    from orch.core.inventory import CallObserver

log = logging.getLogger(__name__)
#: Which discovery method ran and how long it took (shown by the CLI's ``-v``).
discovery_log = logging.getLogger("orch.discovery.timing")

#: Seconds added to an action's DDL timeout for the round trip through the broker.
NETWORK_MARGIN = 2.0
#: Seconds added to a direct call's wait per addressed node. The requests to N nodes and
#: their replies pass one broker (and, simulated, one process) one after another, so the
#: last node's answer comes later in a larger list however fast each node is. It lengthens
#: only the wait for silent nodes: a call returns the moment the last node answered.
PER_NODE_ALLOWANCE = 0.0005
CONNECT_TIMEOUT = 5.0
UNSIGNED_HINT = ("no node answered an unsigned request: the fleet may require signed "
                 "requests (set security: x509 with tls_cert, tls_key and tls_ca, or see "
                 "`orch config show`)")



class Client:
    """A connection to one collective, used for any number of calls.

    ``registry`` is the plugins the client uses. Given none, it uses the installed ones
    (:func:`~orch.core.plugins.default_registry`): a convenience for an application
    or script that starts here; library code and plugins pass the registry they were given.
    """

    def __init__(
        self,
        settings: Settings,
        registry: PluginRegistry | None = None,
        *,
        caller: str | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else default_registry()
        self.security = self.registry.security_for(settings)
        self.transport = self.registry.transport_for(settings)
        self.caller = caller or f"user={getpass.getuser()}"
        self.sender = socket.gethostname()
        self._channel: ClientChannel | None = None
        self._checked: CheckedReceiver[Reply] | None = None
        #: Whether the last request sealed went out without any signature.
        self._unsigned = False
        #: Processes verifying replies when they arrive faster than one core verifies
        #: (None: one per core, at most 4; 0 or 1: verify in the calling thread only).
        self.verify_workers: int | None = None

    @functools.cached_property
    def filters(self) -> FilterEngine:
        """The filter kinds and functions plugins offer (loaded when first needed: a call
        to a known list of nodes never imports the filter engine)."""
        from orch.core.filter import FilterEngine

        return FilterEngine.for_registry(self.registry, self.settings)

    @functools.cached_property
    def agents(self) -> Mapping[str, type[Agent]]:
        """The agents installed here for these settings (``agents_dir`` included), by name:
        DDLs, timeouts and help all come from this one lookup, which imports only the
        plugins providing the agents asked for (:mod:`orch.core.agentlookup`)."""
        return AgentLookup(self.registry, self.settings)

    @functools.cached_property
    def observers(self) -> list[CallObserver]:
        """What plugins want told about each call (job history); loaded on first call."""
        try:
            return self.registry.call_observers(self.settings)
        except Exception as exc:  # an observer's problem never stops a call
            log.error("call observers not loaded: %s", exc)
            return []

    def _tell(self, event: str, *args: Any) -> None:
        _tell_each(self.observers, event, *args)

    @contextlib.contextmanager
    def one_job(self, expected: Sequence[str]) -> Iterator[JobGroup]:
        """Let observers hear the calls made inside as one job addressed to ``expected``.

        Why: ``--batch`` and the API's ``batch`` make one call per batch, each with its own
        request id, but the operator asked for one thing — the job history must show one
        job, expecting every chosen node, holding every batch's replies. Set
        :attr:`JobGroup.result` to the merged result before leaving; observers are told it
        is finished on the way out (also when a batch raised).
        """
        observers = self.observers
        group = JobGroup(observers, expected)
        self.__dict__["observers"] = [group] if observers else []
        try:
            yield group
        finally:
            self.__dict__["observers"] = observers
            group.end()

    def _observed(self, request: Request,
                  on_reply: ReplyCallback | None) -> ReplyCallback | None:
        if not self.observers:
            return on_reply

        def observe(reply: Reply, result: CallResult) -> None:
            self._tell("replied", request, reply)
            if on_reply is not None:
                on_reply(reply, result)

        return observe

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if "observers" in self.__dict__:
            self._tell("close")
        if self._checked is not None:
            self._checked.close()
            self._checked = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self.transport.close()
        close_provider(self.security)

    @property
    def channel(self) -> ClientChannel:
        """The broker session, opened on first use (raises TransportError if unreachable)."""
        if self._channel is None:
            self._channel = self.transport.open_client(self.settings.collective, CONNECT_TIMEOUT)
        return self._channel

    # -- DDL ---------------------------------------------------------------------------

    def action_ddl(self, agent: str, action: str) -> ActionDDL | None:
        """The DDL of ``agent.action`` if the agent is installed here, else None."""
        cls = self.agents.get(agent)
        if cls is None:
            return None
        ddl = cls.ddl()
        if ddl.actions and action not in ddl.actions:
            raise UnknownActionError(
                f"agent {agent!r} has no action {action!r}; its actions: "
                f"{', '.join(sorted(ddl.actions))}"
            )
        return ddl.action(action)

    def call_timeout(self, agent: str) -> float:
        if self.settings.timeout is not None:
            return self.settings.timeout
        cls = self.agents.get(agent)
        return (cls.ddl().timeout if cls else DEFAULT_TIMEOUT) + NETWORK_MARGIN

    # -- building blocks ---------------------------------------------------------------

    def new_request(
        self, agent: str, action: str, data: Mapping[str, Any] | None = None,
        filter: Mapping[str, Sequence[Any]] | None = None,
    ) -> Request:
        for what, name in (("agent", agent), ("action", action)):
            if not valid_name(name):
                raise ArgumentError(f"{what} name {name!r} is not valid")
        if filter:
            self.filters.check(filter)  # what every node would refuse is never sent
        return Request(
            agent=agent, action=action, collective=self.settings.collective,
            sender=self.sender, caller=self.caller, reply_to=self.channel.reply_to,
            data=dict(data or {}), filter={k: list(v) for k, v in (filter or {}).items()},
            ttl=self.settings.ttl,
        )

    def _sealed(self, request: Request) -> bytes:
        body = request.encode()
        security = self.security.seal("request", body)
        # A provider that adds nothing to the envelope does not sign (``insecure``): a fleet
        # that requires signatures drops such requests without a word.
        self._unsigned = not security
        return Envelope("request", body, security).encode()

    @property
    def sent_unsigned(self) -> bool:
        """Whether the last request this client sent (discovery included) went unsigned."""
        return self._unsigned

    def _explain_silence(self, result: CallResult) -> CallResult:
        """Set :attr:`CallResult.hint` when nobody answered an unsigned request."""
        if not result.replies and self._unsigned and result.expected != []:
            result.hint = UNSIGNED_HINT
        return result

    def addressed(
        self, request: Request, nodes: Sequence[str]
    ) -> tuple[Request, list[tuple[tuple[str, ...], bytes]]]:
        """``request`` addressed to exactly ``nodes``, and the signed payloads to publish.

        Returns the request naming the whole target set (what replies are checked against)
        and ``(identities, payload)`` pairs: each payload is signed over a body that names
        only its identities (:func:`~orch.core.protocol.split_targets`), and goes to each of
        them — so no node receives a request it could pass on to a node it does not name,
        and the client signs a few bodies per thousand nodes, not one per node. Whatever
        publishes direct requests should build them here: a request without targets is a
        broadcast, which any node its filter selects will run, however it arrives.
        Raises ArgumentError, before anything is signed, if a name cannot be an identity.
        """
        bad = protocol.invalid_names(nodes)
        if bad:
            raise ArgumentError(f"{bad[0]!r} is not a valid node identity "
                                f"({len(bad)} invalid in the list)")
        parts = protocol.split_targets(nodes)
        whole = replace(request, targets=tuple(name for part in parts for name in part))
        return whole, [(part, self._sealed(replace(request, targets=part)))
                       for part in parts]

    def collect(
        self,
        request: Request,
        expected: Sequence[str] | None,
        timeout: float,
        *,
        quiet: float | Quiet | None = None,
        on_reply: ReplyCallback | None = None,
        started: float | None = None,
        label: str = "collection",
    ) -> CallResult:
        """Receive replies to ``request`` until all ``expected`` answered or time is up.

        Call it once the request is published: the ``timeout`` runs from now, whenever
        publishing began (``started``, from which round-trip times are measured). The time
        spent verifying and handling each accepted reply is added to the deadline: the
        timeout bounds the fleet, not this client's own work.

        With ``quiet``, collection also ends that many seconds after the latest reply
        (how broadcast discovery knows it is done) — or twice the longest gap between
        replies so far, if that is longer. Silence is judged on the wire, not by this
        client's own stalls: the window counts only time spent waiting, and before ending
        the client looks once more, without waiting, for a reply already there. If the
        deadline comes while the window is still open (or with a reply waiting), replies
        were still arriving: :attr:`CallResult.cut_short` says so, naming ``label``. A
        :class:`~orch.core.collect.Quiet` also names the nodes to wait for (see
        :mod:`orch.core.answered`).
        """
        if isinstance(quiet, int | float):
            quiet = Quiet(float(quiet))
        now = time.monotonic()
        started = now if started is None else started
        result = CallResult(request.agent, request.action, request.id,
                            sorted(expected) if expected is not None else None)
        pending = set(expected) if expected is not None else None
        deadline = now + timeout
        try:
            self._collect_loop(request, result, pending, deadline, quiet, on_reply, started,
                               label, timeout)
        except KeyboardInterrupt:
            result.elapsed = time.monotonic() - started
            raise CallInterrupted(result) from None
        result.elapsed = time.monotonic() - started
        return result

    def _collect_loop(self, request: Request, result: CallResult, pending: set[str] | None,
                      deadline: float, window: Quiet | None, on_reply: ReplyCallback | None,
                      started: float, label: str, timeout: float) -> None:
        """The receive loop of :meth:`collect` (:func:`orch.core.collect.collect_loop`)."""
        collect_loop(lambda: self._receiver, self._accept, request, result, pending,
                     deadline, window, on_reply, started, label, timeout)

    @property
    def _receiver(self) -> CheckedReceiver[Reply]:
        """Replies from the channel, decoded and verified (on every core when they pile up)."""
        channel = self.channel
        if self._checked is not None and self._checked.channel is not channel:
            self._checked.close()  # the channel was replaced: read the new one
            self._checked = None
        if self._checked is None:
            take = getattr(self.security, "take_learnt", None)
            keep = getattr(self.security, "keep_learnt", None)
            self._checked = CheckedReceiver(channel, self._verified_reply,
                                            self.verify_workers,
                                            (take, keep) if take and keep else None)
        return self._checked

    def _accept(self, raw: bytes, request: Request, result: CallResult,
                checked: Reply | ProtocolError | None = None) -> Reply | None:
        """The reply in ``raw`` if it belongs to ``request`` (``checked``: already verified)."""
        return accept_reply(raw, request, result, checked, self._verified_reply)

    def _verified_reply(self, raw: bytes) -> Reply:
        """Decode and verify one reply (:func:`orch.core.collect.verified_reply`)."""
        return verified_reply(raw, self.settings, self.security)


    # -- calls -------------------------------------------------------------------------

    def broadcast(
        self,
        agent: str,
        action: str,
        data: Mapping[str, Any] | None = None,
        *,
        filter: Mapping[str, Sequence[Any]] | None = None,
        route_agent: str | None = None,
        timeout: float,
        quiet: float | None = None,
        on_reply: ReplyCallback | None = None,
        label: str = "the broadcast",
        observe: bool = True,
        remember: bool = False,
    ) -> CallResult:
        """Send one request to every node hosting ``route_agent`` (default ``agent``).

        Nobody knows who will answer, so collection ends ``quiet`` seconds after the last
        reply, or at ``timeout`` — then, if replies were still arriving,
        :attr:`CallResult.cut_short` says so (``label`` names what was cut). With
        ``remember`` (and the ``discovery_memory`` setting), the nodes that answered the
        same broadcast before are waited for, and named in :attr:`CallResult.absent` if
        they stay silent; once all have answered, ``discovery_settle`` replaces ``quiet``
        (see :mod:`orch.core.answered`). Knowing how many to expect, the timeout then grows
        by :data:`PER_NODE_ALLOWANCE` for each, as a direct call's does: 10,000 replies
        take a while to pass one broker and one client, however quick each node is.
        """
        route = route_agent or agent
        recollection = None
        window = None if quiet is None else Quiet(quiet)
        if remember and quiet is not None and self.settings.discovery_memory:
            from orch.core.answered import Recollection

            recollection = Recollection(self.settings, agent, action, route, filter,
                                        getattr(self.transport, "process_local", False))
            settle = self.settings.discovery_settle if recollection.settles else None
            window = Quiet(quiet, settle, recollection.nodes)
            timeout += len(recollection.nodes or ()) * PER_NODE_ALLOWANCE
        request = self.new_request(agent, action, data, filter)
        if observe:
            self._tell("sent", request, None)
            on_reply = self._observed(request, on_reply)
        started = time.monotonic()
        self.channel.broadcast(route, self._sealed(request), request.ttl)
        result = self._explain_silence(
            self.collect(request, None, timeout, quiet=window, on_reply=on_reply,
                         started=started, label=label))
        if recollection is not None:
            if recollection.nodes:
                result.absent = sorted(recollection.nodes - set(result.replies))
            recollection.remember(result)
        if observe:
            self._tell("finished", result)
        return result

    def discover(
        self, filter: Mapping[str, Sequence[Any]] | None = None, agent: str = "rpcutil"
    ) -> Discovered:
        """The identities ``filter`` selects among nodes hosting ``agent``, sorted.

        Check :attr:`Discovered.cut_short`: set when the list is known to be incomplete.
        """
        name = self.settings.discovery_method
        method = self.registry.discovery_methods(name).get(name)
        if method is None:
            raise ConfigError(
                f"unknown discovery method {name!r}; "
                f"installed: {', '.join(sorted(self.registry.discovery_methods()))}"
            )
        started = time.monotonic()
        found = method.discover(self, filter or {}, agent)
        discovered = found if isinstance(found, Discovered) else Discovered(found)
        discovered.seconds = time.monotonic() - started
        discovery_log.info("discovery: method %s found %d node(s) in %.1f ms",
                           self.settings.discovery_method, len(found),
                           discovered.seconds * 1000)
        return discovered

    def call(
        self,
        agent: str,
        action: str,
        data: Mapping[str, Any] | None = None,
        *,
        filter: Mapping[str, Sequence[Any]] | None = None,
        nodes: Sequence[str] | None = None,
        on_discovered: Callable[[list[str]], None] | None = None,
        on_reply: ReplyCallback | None = None,
        timeout: float | None = None,
    ) -> CallResult:
        """Run ``agent.action`` on the selected nodes and collect every reply.

        ``timeout`` overrides, for this call only, how long to wait for replies (default:
        the ``timeout`` setting, else the action's DDL timeout plus a network margin).

        ``nodes`` skips discovery: exactly those identities are addressed directly.
        Otherwise the configured discovery method finds them first. Arguments are checked
        against the agent's DDL (when installed here) before anything is sent.
        """
        ddl = self.action_ddl(agent, action)
        checked = (ddl.check_arguments(data or {}, self.registry.validators()) if ddl is not None
                   else dict(data or {}))
        # A known list is addressed directly: no discovery ran.
        discovered = self.discover(filter, agent) if nodes is None else None
        if discovered is not None:
            nodes = discovered
        assert nodes is not None
        if on_discovered is not None:
            on_discovered(list(nodes))
        request = self.new_request(agent, action, checked, filter)
        if not nodes:
            # Discovery found nobody: if its request went unsigned, a signing fleet
            # dropped it without a word — say so.
            empty = CallResult(agent, action, request.id, [],
                               hint=UNSIGNED_HINT if self.sent_unsigned else None)
            if discovered is not None:
                discovered.mark(empty)
            return empty
        wait = timeout if timeout is not None else self.call_timeout(agent)
        try:
            result = self.send_direct(request, nodes, wait, on_reply)
        except CallInterrupted as exc:
            if discovered is not None:
                discovered.mark(exc.result)
            raise
        if discovered is not None:
            discovered.mark(result)
        explain = getattr(nodes, "explain", None)
        if result.missing and explain is not None:
            try:
                result.notes = dict(explain(result.missing))
            except Exception as exc:  # a note is a courtesy; never fail the call for it
                log.warning("could not say why %d node(s) were silent: %s",
                            len(result.missing), exc)
        if ddl is not None:
            for name, reply in result.replies.items():
                problems = ddl.check_reply(reply.data) if reply.ok else []
                if problems:
                    result.warnings[name] = problems
                    log.warning("reply from %s does not match the %s.%s DDL: %s",
                                name, agent, action, "; ".join(problems))
        return result

    def send_direct(
        self, request: Request, nodes: Sequence[str], timeout: float,
        on_reply: ReplyCallback | None = None,
    ) -> CallResult:
        """Send ``request`` to each of ``nodes`` and collect their replies.

        ``timeout`` runs from the moment the last request is published (see :meth:`collect`),
        plus :data:`PER_NODE_ALLOWANCE` for each node (5 s for 10,000 nodes, 25 ms for 50).
        """
        request, payloads = self.addressed(request, nodes)
        self._tell("sent", request, list(nodes))
        on_reply = self._observed(request, on_reply)
        started = time.monotonic()
        channel = self.channel
        many = getattr(channel, "direct_many", None)
        try:
            for targets, payload in payloads:
                if many is not None:
                    many(targets, payload, request.ttl)
                    continue
                for identity in targets:
                    channel.direct(identity, payload, request.ttl)
        except TransportError as exc:
            result = CallResult(request.agent, request.action, request.id, sorted(nodes))
            result.error = str(exc)
            return result
        except KeyboardInterrupt:
            raise CallInterrupted(CallResult(request.agent, request.action, request.id,
                                             sorted(nodes))) from None
        wait = timeout + len(nodes) * PER_NODE_ALLOWANCE
        result = self._explain_silence(
            self.collect(request, nodes, wait, on_reply=on_reply, started=started))
        self._tell("finished", result)
        return result

    def ping(
        self,
        filter: Mapping[str, Sequence[Any]] | None = None,
        nodes: Sequence[str] | None = None,
        on_reply: ReplyCallback | None = None,
    ) -> CallResult:
        """``rpcutil ping`` the selected nodes: direct to ``nodes``, else a broadcast.

        Waits up to the ``timeout`` setting when set, else ``discovery_timeout``; a
        broadcast also ends ``discovery_window`` after the last reply, and says (in
        :attr:`CallResult.cut_short`) when its timeout ended it while replies still came.
        """
        timeout = self.settings.timeout or self.settings.discovery_timeout
        if nodes is not None:
            request = self.new_request("rpcutil", "ping", {}, filter)
            return self.send_direct(request, nodes, timeout, on_reply)
        result = self.broadcast(
            "rpcutil", "ping", filter=filter, timeout=timeout,
            quiet=self.settings.discovery_window, on_reply=on_reply, label="the ping",
            remember=True,
        )
        if result.cut_short is not None:
            which = ("--timeout (timeout)" if self.settings.timeout
                     else "--discovery-timeout (discovery_timeout)")
            result.cut_short += f"; raise {which} to wait longer"
        return result


def _tell_each(observers: Sequence[CallObserver], event: str, *args: Any) -> None:
    """Tell each observer ``event``; what one raises is logged, never passed to the call."""
    for observer in observers:
        try:
            getattr(observer, event)(*args)
        except Exception:
            log.exception("call observer %s failed in %s", type(observer).__name__, event)


class JobGroup:
    """A call observer standing in for the real ones during :meth:`Client.one_job`: the
    first request sent names the job (with every node of the group expected), later
    requests' replies are filed under it, and it is finished once, when the group ends."""

    def __init__(self, observers: Sequence[CallObserver], expected: Sequence[str]) -> None:
        self._observers = list(observers)
        self._expected = sorted(expected)
        #: The first request sent in the group: the job's id for the observers.
        self.request: Request | None = None
        #: The merged result of every call in the group (set by the caller).
        self.result: CallResult | None = None

    def sent(self, request: Request, expected: Sequence[str] | None) -> None:
        if self.request is None:
            self.request = request
            _tell_each(self._observers, "sent", request, self._expected)

    def replied(self, request: Request, reply: Reply) -> None:
        _tell_each(self._observers, "replied", self.request or request, reply)

    def finished(self, result: CallResult) -> None:
        """One call of the group ended: the job has not (see :meth:`end`)."""

    def close(self) -> None:
        """The client closes its real observers itself."""

    def end(self) -> None:
        if self.request is None:
            return  # nothing was sent: no job
        request = self.request
        result = self.result or CallResult(request.agent, request.action, request.id,
                                           self._expected)
        if result.request_id != request.id:
            result = replace(result, request_id=request.id)
        _tell_each(self._observers, "finished", result)
