"""The registration message: what a server says about itself, signed like a reply.

A registration is a :class:`~orch.core.protocol.Reply` (agent ``registration``, action
``register``, request id ``registration``) whose data is the node's identity, collective,
facts, classes, agents, orch version and start time, sealed by the node's security
provider exactly as its replies are. It is published as a broadcast on the routing name
:data:`ROUTE`, which no agent hosts, so only registries (which bind that name) receive it.

Everything a registry reads is bounded and checked before it touches the store: the size
(``max_message_bytes``), the envelope and its signature (the sender must be the identity
its credential proves, as for any reply), the time it was made (older than
:data:`MAX_AGE` plus the configured clock skew, or from the future, is refused, so a
captured registration cannot be replayed to make a dead node look alive), the collective,
and the shape and size of every field.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orch
from orch.core.errors import ProtocolError
from orch.core.inventory import NodeRecord
from orch.core.protocol import Envelope, Reply, Status, valid_name
from orch.core.security import SecurityProvider, verify_reply

#: The broadcast routing name registrations travel on (never an agent's name).
ROUTE = "orch_registration"
AGENT, ACTION, REQUEST_ID = "registration", "register", "registration"
#: Seconds a registration stays acceptable after it was made (besides the clock skew).
MAX_AGE = 60.0
#: At most this many classes and agents are accepted from one registration.
MAX_NAMES = 10_000


def registration_data(identity: str, collective: str, facts: Mapping[str, Any],
                      classes: frozenset[str], agents: frozenset[str],
                      started: float) -> dict[str, Any]:
    """The data a node registers with (also what change detection compares)."""
    return {"identity": identity, "collective": collective, "facts": dict(facts),
            "classes": sorted(classes), "agents": sorted(agents),
            "version": orch.__version__, "started": started}


def seal(data: Mapping[str, Any], security: SecurityProvider) -> bytes:
    """The signed registration message for ``data`` (from :func:`registration_data`)."""
    reply = Reply(REQUEST_ID, str(data["identity"]), AGENT, ACTION, Status.OK, "", dict(data))
    body = reply.encode()
    return Envelope("reply", body, security.seal("reply", body)).encode()


def open_registration(raw: bytes, security: SecurityProvider, collective: str, *,
                      max_bytes: int, clock_skew: float,
                      now: float | None = None) -> NodeRecord:
    """The node record ``raw`` carries, verified; ProtocolError (or SecurityError) if not.

    ``last_seen`` is the registry's own clock (``now``), never the node's.
    """
    reply = open_reply(raw, security, max_bytes=max_bytes)
    if not is_registration(reply):
        raise ProtocolError(f"not a registration: {reply.agent}.{reply.action}")
    return registration_record(reply, collective, clock_skew=clock_skew, now=now)


def open_reply(raw: bytes, security: SecurityProvider, *, max_bytes: int) -> Reply:
    """A signed reply envelope, size-checked, decoded and verified (its sender is the
    identity its credential proves)."""
    if len(raw) > max_bytes:
        raise ProtocolError(f"a message of {len(raw)} bytes is over max_message_bytes "
                            f"({max_bytes}); not read")
    envelope = Envelope.decode(raw)
    if envelope.kind != "reply":
        raise ProtocolError(f"expected a reply envelope, got {envelope.kind}")
    reply = Reply.decode(envelope.body)
    verify_reply(security, envelope, reply.sender)
    return reply


def is_registration(reply: Reply) -> bool:
    return (reply.agent, reply.action, reply.request_id) == (AGENT, ACTION, REQUEST_ID)


def registration_record(reply: Reply, collective: str, *, clock_skew: float,
                        now: float | None = None) -> NodeRecord:
    """The node record of a verified registration (ProtocolError when stale or bad)."""
    now = time.time() if now is None else now
    if reply.time < now - MAX_AGE - clock_skew or reply.time > now + clock_skew:
        raise ProtocolError(f"registration from {reply.sender} made at {reply.time:.0f} is "
                            f"outside the accepted window (now {now:.0f}); replayed, or "
                            "the clocks differ")
    return _record(reply, collective, now)


def _record(reply: Reply, collective: str, now: float) -> NodeRecord:
    data = reply.data
    sender = reply.sender
    if data.get("identity") != sender or not valid_name(sender):
        raise ProtocolError(f"registration from {sender!r} names identity "
                            f"{data.get('identity')!r}")
    if data.get("collective") != collective:
        raise ProtocolError(f"registration from {sender} is for collective "
                            f"{data.get('collective')!r}, not {collective!r}")
    facts, classes, agents = data.get("facts"), data.get("classes"), data.get("agents")
    if not isinstance(facts, dict):
        raise ProtocolError(f"registration from {sender}: facts must be an object")
    for what, names in (("classes", classes), ("agents", agents)):
        if (not isinstance(names, list) or len(names) > MAX_NAMES
                or not all(isinstance(name, str) for name in names)):
            raise ProtocolError(f"registration from {sender}: {what} must be a list of "
                                f"at most {MAX_NAMES} strings")
    version, started = data.get("version"), data.get("started")
    if not isinstance(version, str) or len(version) > 100:
        raise ProtocolError(f"registration from {sender}: version must be a short string")
    if isinstance(started, bool) or not isinstance(started, int | float):
        raise ProtocolError(f"registration from {sender}: started must be a number")
    assert isinstance(classes, list) and isinstance(agents, list)
    return NodeRecord(sender, collective, facts, tuple(classes), tuple(agents), version,
                      float(started), now)
