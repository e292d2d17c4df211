"""Collecting the replies to one request: the receive loop behind
:meth:`~orch.core.client.Client.collect`, and what makes a received reply count.

Why the loop is apart from the client: it is the one place that decides when a call is
over — the deadline, the quiet window of broadcast discovery, the bounded wait for replies
still being verified, and :attr:`~orch.core.result.CallResult.cut_short` — and it reads
best on its own. It is pure over what the client hands it (a receiver, an acceptance
check), so the client keeps the connection and the plugins, this module the timing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orch.core.errors import ProtocolError, TransportError
from orch.core.protocol import Envelope, Reply, Request
from orch.core.result import CallResult
from orch.core.security import verify_reply

if TYPE_CHECKING:
    from orch.core.checkpool import CheckedReceiver
    from orch.core.config import Settings
    from orch.core.security import SecurityProvider

log = logging.getLogger("orch.core.client")

#: The longest a call waits, past its deadline, for replies it already received to be
#: verified by the checker processes (a stuck checker must not hold the call).
BACKLOG_WAIT = 10.0

ReplyCallback = Callable[[Reply, CallResult], None]
#: ``(raw, request, result, checked)`` to the reply if it counts for ``request``, else None.
Accept = Callable[[bytes, Request, CallResult, Reply | ProtocolError | None], Reply | None]


@dataclass
class Quiet:
    """When a broadcast's replies have stopped coming (see :meth:`Client.collect`).

    ``window`` seconds without a reply end it — or twice the longest gap between replies so
    far, if longer. With ``awaited`` (the nodes that answered the same broadcast before,
    :mod:`orch.core.answered`), silence ends nothing while one of them has not answered, and
    once all have, ``settle`` seconds do. The gap rule does not stretch ``settle``: it guards
    against ending while the expected nodes are still coming, and they all came. (At 10,000
    nodes the client takes replies in batches from its checker processes, with gaps of
    half a second between them, and doubling those kept a complete broadcast a second more.)
    """

    window: float
    #: None: once every awaited node answered, the window (with its gap rule) still ends it.
    settle: float | None = None
    awaited: frozenset[str] | None = None
    #: The longest gap between two replies so far.
    gap: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._silent = set(self.awaited) if self.awaited is not None else None

    def heard(self, sender: str, gap: float | None) -> None:
        """A reply from ``sender`` came ``gap`` seconds after the previous one (or first)."""
        if gap is not None:
            self.gap = max(self.gap, gap)
        if self._silent is not None:
            self._silent.discard(sender)

    def plain_end(self, last: float) -> float:
        """When the window alone would end a collection whose last reply came at ``last``."""
        return last + max(self.window, 2 * self.gap)

    def end(self, last: float) -> float | None:
        """When silence ends the collection (None: only the deadline does)."""
        if self._silent is None:
            return self.plain_end(last)
        if self._silent:
            return None  # a node that answered before has not yet
        return self.plain_end(last) if self.settle is None else last + self.settle


def collect_loop(receiver_of: Callable[[], CheckedReceiver[Reply]], accept: Accept,
                 request: Request, result: CallResult, pending: set[str] | None,
                 deadline: float, quiet: Quiet | None, on_reply: ReplyCallback | None,
                 started: float, label: str, timeout: float) -> None:
    """The receive loop of :meth:`~orch.core.client.Client.collect`, filling ``result`` in
    place. ``receiver_of`` gives the client's current receiver (asked on every turn, as the
    client's channel may be replaced); ``accept`` decides whether a reply counts."""
    credit = 0.0  # this client's own work on accepted replies, added to the deadline
    #: When the client was last free again after handling a reply (None: no reply yet).
    waiting_since: float | None = None
    backlog_waited = False
    while pending is None or pending:
        now = time.monotonic()
        quiet_end = (quiet.end(waiting_since)
                     if quiet is not None and waiting_since is not None else None)
        remaining = min(deadline, quiet_end if quiet_end is not None else deadline) - now
        receiver = receiver_of()
        wait = max(remaining, 0.0)
        # Replies taken off the wire before the deadline but still being verified by
        # checker processes are the client's own work: wait for them (bounded, once).
        checking_backlog = remaining <= 0 and receiver.backlog and not backlog_waited
        if checking_backlog:
            wait, backlog_waited = BACKLOG_WAIT, True
        last_look = remaining <= 0 and not checking_backlog
        checking = receiver.check_seconds
        try:
            got = receiver.receive(wait)
        except TransportError as exc:
            result.error = str(exc)
            log.error("%s; keeping the %d replies received", exc, len(result.replies))
            break
        if got is None:
            if last_look:
                if (now >= deadline and quiet is not None and waiting_since is not None
                        and quiet.plain_end(waiting_since) > deadline):
                    cut_short(result, label, timeout, credit)
                break
            continue
        received = time.monotonic()
        checking = receiver.check_seconds - checking  # verifying, inside receive()
        reply = accept(got[0], request, result, got[1])
        if reply is None:
            if last_look and received >= deadline:
                break  # neither late nor bad replies may keep a call past its deadline
            continue
        if quiet is not None:
            # A fleet that paused once (a loaded host, a GC) may pause again: the window
            # is at least twice the longest gap seen before deciding the replies stopped.
            quiet.heard(reply.sender,
                        received - waiting_since if waiting_since is not None else None)
        backlog_waited = False  # only an accepted reply earns another wait
        result.replies[reply.sender] = reply
        result.rtt[reply.sender] = received - started
        if pending is not None:
            pending.discard(reply.sender)
        if on_reply is not None:
            on_reply(reply, result)
        waiting_since = time.monotonic()
        if last_look and now >= deadline:
            # A reply was already waiting at the deadline: they were still arriving.
            if quiet is not None:
                cut_short(result, label, timeout, credit)
            break
        # This client's own work on an accepted reply does not count against the fleet's
        # time (bounded: each node is accepted once; rejected replies are not credited).
        # Verifying happens inside receive(), here or in checker processes.
        own_work = checking + (waiting_since - received)
        credit += own_work
        deadline += own_work


def cut_short(result: CallResult, label: str, timeout: float, credit: float) -> None:
    """Say in ``result`` that the deadline ended a collection while replies still came."""
    verifying = f" (plus {credit:.1f} s spent verifying replies)" if credit >= 0.05 else ""
    result.cut_short = (
        f"{label} was cut off at the {timeout:.1f} s timeout{verifying} while replies "
        f"were still arriving; {len(result.replies)} node(s) answered")
    log.warning("%s", result.cut_short)


def accept_reply(raw: bytes, request: Request, result: CallResult,
                 checked: Reply | ProtocolError | None, verify: Callable[[bytes], Reply],
                 ) -> Reply | None:
    """The reply in ``raw`` if it belongs to ``request`` (``checked``: already verified)."""
    try:
        if isinstance(checked, ProtocolError):
            raise checked
        reply = checked if checked is not None else verify(raw)
    except ProtocolError as exc:
        result.rejected.append(str(exc))
        log.warning("rejected a reply: %s", exc)
        return None
    if reply.request_id != request.id:
        return None  # a late reply to an earlier request on this channel (discovery)
    if not request.addresses(reply.sender):
        if reply.sender not in result.unexpected:
            result.unexpected.append(reply.sender)
        log.warning("not counted: a reply from %r, a node request %s was not addressed to",
                    reply.sender, request.id)
        return None
    if reply.sender in result.replies:
        log.warning("duplicate reply from %s ignored", reply.sender)
        return None
    return reply


def verified_reply(raw: bytes, settings: Settings, security: SecurityProvider) -> Reply:
    """Decode and verify one reply, each JSON text decoded once (ProtocolError if bad).

    The body is decoded before it is verified only to learn the sender the signature
    must belong to; nothing of it is used unless the verification passes. A body that
    does not decode is verified first, so that an unsigned or forged message is
    reported as such, as it always was.
    """
    if len(raw) > settings.max_message_bytes:
        # Before any parsing, here or in a checker process.
        raise ProtocolError(f"a reply of {len(raw)} bytes is over max_message_bytes "
                            f"({settings.max_message_bytes}); not read")
    envelope = Envelope.decode(raw)
    if envelope.kind != "reply":
        raise ProtocolError(f"expected a reply, got a {envelope.kind}")
    try:
        reply = Reply.decode(envelope.body)
    except ProtocolError:
        security.verify(envelope)
        raise
    verify_reply(security, envelope, reply.sender)
    return reply
