"""Wire protocol v2: requests, replies and the envelope that carries them.

Every message on the broker is an *envelope*: a small JSON object whose ``body`` is the
request or reply serialised as JSON text, carried as an opaque string. Security providers
sign and verify exactly those body bytes, so the body never has to be re-serialised before a
check. See ``docs/protocol.md`` for the field-by-field description.

Every request says whom it is for, inside the signed body: its collective, and either its
filter (a broadcast, for every node the filter selects) or the exact identities it is
addressed to (``targets``, a direct request). A signature thus proves who asked, what, and of
whom; a direct request re-published into another node's queue is refused there. A large
target set is split over several requests by :func:`split_targets`, each naming only the
identities it is published to (see ``docs/protocol.md`` for the figures behind the choice).

Decoding is strict: anything that is not a well-formed v2 message raises
:class:`~orch.core.errors.ProtocolError` (and nothing else), which the server logs before
dropping the message.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from enum import IntEnum
from functools import cached_property
from typing import Any

from orch.core.errors import ProtocolError

PROTOCOL_VERSION = 2
#: Most identities one request body may name; a larger target set is split by the client.
MAX_TARGETS = 10_000
#: Bytes of target names (as JSON) one request carries at most when a client splits a
#: target set (:func:`split_targets`): a signed broadcast is about 1.1 KB, so an addressed
#: request stays under about twice that, and 10,000 targets of 26 characters take 286
#: signatures (bench/test_bench_targets.py).
TARGET_BYTES_PER_REQUEST = 1024
#: Names usable as identities, collectives, agents and actions: they become routing keys.
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


class Status(IntEnum):
    """Reply status codes; the numbers are those MCollective and Choria users know."""

    OK = 0
    ABORTED = 1
    UNKNOWN_ACTION = 2
    MISSING_DATA = 3
    INVALID_DATA = 4
    UNKNOWN_ERROR = 5
    #: orch's own: the node is at its ``max_actions`` and did not run the action; the
    #: caller may try again later. Not a code MCollective knows.
    BUSY = 6

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


def valid_name(value: object) -> bool:
    """True if ``value`` can be used as an identity, collective, agent or action name."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 255
        and NAME_CHARS.issuperset(value)
        and not value.startswith(".")
    )


def invalid_names(values: Iterable[object]) -> list[object]:
    """The values that :func:`valid_name` refuses, checked fast enough for 10,000 names."""
    values = list(values)
    if all(type(v) is str and 0 < len(v) <= 255 and v[0] != "." for v in values) and \
            NAME_CHARS.issuperset("".join(values)):  # type: ignore[arg-type]
        return []
    return [v for v in values if not valid_name(v)]


@dataclass(frozen=True)
class Envelope:
    """What travels on the broker: a body plus whatever the security provider adds."""

    kind: str  # "request" or "reply"
    body: str
    security: Mapping[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(
            {"v": PROTOCOL_VERSION, "kind": self.kind, "body": self.body,
             "security": dict(self.security)},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> Envelope:
        obj = _load_object(raw, "envelope")
        kind = obj.get("kind")
        # Name what arrived ("request has protocol version 1"), not the wrapping.
        _check_version(obj, kind if kind in ("request", "reply") else "envelope")
        if kind not in ("request", "reply"):
            raise ProtocolError(f"envelope kind must be 'request' or 'reply', got {kind!r}")
        body = obj.get("body")
        if not isinstance(body, str):
            raise ProtocolError("envelope body must be a string")
        security = obj.get("security", {})
        if not isinstance(security, dict):
            raise ProtocolError("envelope security must be an object")
        return cls(kind, body, security)


@dataclass(frozen=True)
class Request:
    """One action invocation, for the nodes its filter selects, or for exactly its targets."""

    agent: str
    action: str
    collective: str
    sender: str
    caller: str
    reply_to: str
    data: Mapping[str, Any] = field(default_factory=dict)
    filter: Mapping[str, list[Any]] = field(default_factory=dict)
    #: The identities a direct request is for (and only they may run it), or None for a
    #: broadcast, which is for every node of the collective its filter selects.
    targets: tuple[str, ...] | None = None
    ttl: float = 60.0
    time: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def encode(self) -> str:
        # Not dataclasses.asdict: it deep-copies every value, which for a request naming
        # its targets costs four times the signature.
        fields = {name: getattr(self, name) for name in _REQUEST_FIELDS}
        return json.dumps({"v": PROTOCOL_VERSION, **fields}, separators=(",", ":"))

    def addresses(self, identity: str) -> bool:
        """Whether this request is for ``identity`` (a broadcast is for any node: the
        filter decides). Exact: a name is in the target set or it is not."""
        return self.targets is None or identity in self._target_set

    @cached_property
    def _target_set(self) -> frozenset[str]:
        # Built once per request: the client checks every reply against it.
        return frozenset(self.targets or ())

    @classmethod
    def decode(cls, body: str) -> Request:
        obj = _load_object(body, "request")
        _check_version(obj, "request")
        for name in ("agent", "action", "collective"):
            if not valid_name(obj.get(name)):
                raise ProtocolError(f"request {name} is missing or not a valid name")
        strings = ("sender", "caller", "reply_to", "id")
        _require_types(obj, "request", {s: str for s in strings} | {
            "data": dict, "filter": dict, "ttl": (int, float), "time": (int, float)})
        if not all(isinstance(v, list) for v in obj["filter"].values()):
            raise ProtocolError("request filter must map each kind to a list of terms")
        if not 0 < obj["ttl"] <= MAX_TTL:
            raise ProtocolError(f"request ttl must be positive and at most {MAX_TTL:g}s")
        if not 0 <= obj["time"] <= MAX_TIME:
            raise ProtocolError("request time is not a plausible Unix time")
        if "targets" not in obj:
            raise ProtocolError("request field 'targets' is missing (null for a broadcast)")
        return cls(**{k: obj[k] for k in _REQUEST_FIELDS} | {
            "targets": _decode_targets(obj["targets"])})

    def expires_at(self) -> float:
        return self.time + self.ttl


@dataclass(frozen=True)
class Reply:
    """One node's answer to one request."""

    request_id: str
    sender: str
    agent: str
    action: str
    statuscode: Status
    statusmsg: str
    data: Mapping[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.statuscode == Status.OK

    def encode(self) -> str:
        # Field by field, not dataclasses.asdict: every node encodes a reply per request,
        # and asdict's deep copy of the data was a tenth of a simulated node's CPU.
        data = self.data if type(self.data) is dict else dict(self.data)
        return _REPLY_ENCODER.encode({
            "v": PROTOCOL_VERSION, "request_id": self.request_id, "sender": self.sender,
            "agent": self.agent, "action": self.action, "statuscode": int(self.statuscode),
            "statusmsg": self.statusmsg, "data": data, "time": self.time})

    @classmethod
    def decode(cls, body: str) -> Reply:
        obj = _load_object(body, "reply")
        _check_version(obj, "reply")
        _require_types(obj, "reply", {
            "request_id": str, "sender": str, "agent": str, "action": str,
            "statuscode": int, "statusmsg": str, "data": dict, "time": (int, float)})
        try:
            status = Status(obj["statuscode"])
        except ValueError:
            raise ProtocolError(f"unknown reply statuscode {obj['statuscode']!r}") from None
        return cls(**{k: obj[k] for k in _REPLY_FIELDS} | {"statuscode": status})


_REQUEST_FIELDS = tuple(Request.__dataclass_fields__)
_REPLY_FIELDS = tuple(Reply.__dataclass_fields__)


def _decode_targets(value: Any) -> tuple[str, ...] | None:
    """``targets`` from the wire: null, or 1 to :data:`MAX_TARGETS` non-empty strings.

    Names are not checked against the identity alphabet here (that costs more than the
    signature check for a long list): a string that cannot be an identity matches no node.
    """
    if value is None:
        return None
    if not isinstance(value, list):
        raise ProtocolError("request targets must be a list of identities or null")
    if not value:
        raise ProtocolError("request targets is empty: the request is addressed to no node")
    if len(value) > MAX_TARGETS:
        raise ProtocolError(f"request names {len(value)} targets; at most {MAX_TARGETS} "
                            "per request")
    if not all(type(name) is str and 0 < len(name) <= 255 for name in value):
        raise ProtocolError("request targets must be identities (non-empty strings of at "
                            "most 255 characters)")
    return tuple(value)


def split_targets(
    identities: Iterable[str], budget: int | None = None
) -> list[tuple[str, ...]]:
    """A direct request's target set, cut into the parts that each go in one signed request.

    Each part holds at most ``budget`` bytes of names (at least one name, at most
    :data:`MAX_TARGETS`), so every node receives a request that names it and a bounded
    number of others, and the client signs ``total size / budget`` bodies, not one per
    node. ``budget`` defaults to :data:`TARGET_BYTES_PER_REQUEST`. Duplicates are dropped;
    the order is sorted, so equal sets split alike.
    """
    budget = TARGET_BYTES_PER_REQUEST if budget is None else budget
    parts: list[tuple[str, ...]] = []
    current: list[str] = []
    size = 1  # '[' and ']', less the comma the first name does not need
    for name in sorted(set(identities)):
        cost = len(name.encode("utf-8")) + 3  # the quotes and a comma
        if current and (size + cost > budget or len(current) >= MAX_TARGETS):
            parts.append(tuple(current))
            current, size = [], 1
        current.append(name)
        size += cost
    if current:
        parts.append(tuple(current))
    return parts


def value_text(value: Any) -> str:
    """One reply value as text: strings as they are, anything else as canonical JSON.

    Grouping (``orch facts``), aggregate summaries and the console all use it, so equal
    values always read, and count, the same.
    """
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _json_fallback(value: Any) -> Any:
    """Agents may return sets, tuples, dataclasses or paths; send them as lists, objects
    and strings, never fail."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


#: One encoder for every reply (``json.dumps`` with options builds a new one each call).
_REPLY_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_json_fallback)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid number here")


def _finite_float(text: str) -> float:
    """``1e999`` parses to infinity, and an infinite ``time`` or ``ttl`` turned the expiry
    into NaN, which passes every comparison the time window and replay cache make."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


#: One decoder for every message (``json.loads`` with options builds a new one each call).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)

#: Bounds on the request's clock fields, whatever a node's own settings: a time after the
#: year 2200 or a ttl over a week is not a mistake any client makes.
MAX_TIME = 7_258_118_400.0
MAX_TTL = 7 * 24 * 3600.0


def _load_object(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        obj = _DECODER.decode(text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ProtocolError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def _check_version(obj: Mapping[str, Any], what: str) -> None:
    version = obj.get("v")
    if isinstance(version, bool) or version != PROTOCOL_VERSION:
        raise ProtocolError(version_mismatch(what, version))


def version_mismatch(what: str, version: Any) -> str:
    """The message for a ``what`` (request, reply, envelope) of another protocol version:
    which side to upgrade, in words an operator can act on."""
    head = f"{what} has protocol version {version!r}; this orch speaks {PROTOCOL_VERSION}"
    if isinstance(version, int) and not isinstance(version, bool):
        if version < PROTOCOL_VERSION:
            return (f"{head} — upgrade the orch that sent it (version {PROTOCOL_VERSION} "
                    "binds each request to the nodes it is addressed to)")
        return f"{head} — upgrade this orch to talk to the newer one that sent it"
    return f"{head} — not a message orch can read"


def _require_types(
    obj: Mapping[str, Any], what: str, types: Mapping[str, type | tuple[type, ...]]
) -> None:
    for name, expected in types.items():
        value = obj.get(name)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ProtocolError(f"{what} field {name!r} is missing or has the wrong type")
