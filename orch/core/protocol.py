"""Wire protocol v1: requests, replies and the envelope that carries them.

Every message on the broker is an *envelope*: a small JSON object whose ``body`` is the
request or reply serialised as JSON text, carried as an opaque string. Security providers
sign and verify exactly those body bytes, so the body never has to be re-serialised before a
check. See ``docs/protocol.md`` for the field-by-field description.

Decoding is strict: anything that is not a well-formed v1 message raises
:class:`~orch.core.errors.ProtocolError` (and nothing else), which the server logs before
dropping the message.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from enum import IntEnum
from typing import Any

from orch.core.errors import ProtocolError

PROTOCOL_VERSION = 1
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
        _check_version(obj, "envelope")
        kind = obj.get("kind")
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
    """One action invocation addressed to the nodes a filter selects."""

    agent: str
    action: str
    collective: str
    sender: str
    caller: str
    reply_to: str
    data: Mapping[str, Any] = field(default_factory=dict)
    filter: Mapping[str, list[Any]] = field(default_factory=dict)
    ttl: float = 60.0
    time: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def encode(self) -> str:
        return json.dumps({"v": PROTOCOL_VERSION, **asdict(self)}, separators=(",", ":"))

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
        if obj["ttl"] <= 0:
            raise ProtocolError("request ttl must be positive")
        return cls(**{k: obj[k] for k in _REQUEST_FIELDS})

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


#: One decoder for every message (``json.loads`` with options builds a new one each call).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


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
        raise ProtocolError(
            f"{what} has protocol version {version!r}; this orch speaks "
            f"{PROTOCOL_VERSION} (upgrade the older side)"
        )


def _require_types(
    obj: Mapping[str, Any], what: str, types: Mapping[str, type | tuple[type, ...]]
) -> None:
    for name, expected in types.items():
        value = obj.get(name)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ProtocolError(f"{what} field {name!r} is missing or has the wrong type")
