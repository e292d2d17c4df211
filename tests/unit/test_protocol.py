"""Wire protocol v1: encode/decode round trips, and strict decoding that only raises
ProtocolError."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orch.core.errors import ProtocolError
from orch.core.protocol import (
    NAME_CHARS,
    PROTOCOL_VERSION,
    Envelope,
    Reply,
    Request,
    Status,
    valid_name,
)

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def valid_request_dict(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "v": PROTOCOL_VERSION, "agent": "rpcutil", "action": "ping", "collective": "orch",
        "sender": "client.example", "caller": "user=alice", "reply_to": "orch.orch.reply.x",
        "data": {"a": 1}, "filter": {"fact": [{"fact": "role", "operator": "==",
                                               "value": "web"}]},
        "ttl": 60, "time": 1_700_000_000.5, "id": "abc123",
    }
    obj.update(changes)
    return obj


def valid_reply_dict(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "v": PROTOCOL_VERSION, "request_id": "abc123", "sender": "node1", "agent": "rpcutil",
        "action": "ping", "statuscode": 0, "statusmsg": "OK", "data": {"pong": 1.5},
        "time": 1_700_000_001.25,
    }
    obj.update(changes)
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(obj)


# --------------------------------------------------------------------- round trips


def test_request_round_trip() -> None:
    request = Request("rpcutil", "get_fact", "orch", "me", "user=bob", "orch.orch.reply.1",
                      data={"fact": "os.family", "n": [1, 2.5, None, True]},
                      filter={"identity": ["node1", "/web/"]}, ttl=30.0)
    decoded = Request.decode(request.encode())
    assert decoded == request
    assert decoded.expires_at() == request.time + 30.0


def test_request_defaults_are_fresh() -> None:
    one = Request("a", "b", "c", "s", "c", "r")
    two = Request("a", "b", "c", "s", "c", "r")
    assert one.id != two.id
    assert len(one.id) == 32
    assert one.ttl == 60.0


def test_reply_round_trip_keeps_status_enum() -> None:
    reply = Reply("rid", "node1", "rpcutil", "get_fact", Status.INVALID_DATA, "bad",
                  {"value": {"nested": [1, "x"]}})
    decoded = Reply.decode(reply.encode())
    assert decoded == reply
    assert decoded.statuscode is Status.INVALID_DATA
    assert not decoded.ok
    assert json.loads(reply.encode())["statuscode"] == 4


def test_reply_encodes_sets_and_other_objects() -> None:
    reply = Reply("rid", "n", "a", "b", Status.OK, "OK",
                  {"tags": {"b", "a"}, "path": PurePosixPath("/etc/hosts")})
    decoded = Reply.decode(reply.encode())
    assert decoded.data["tags"] == ["a", "b"]
    assert decoded.data["path"] == "/etc/hosts"
    assert decoded.ok


def test_envelope_round_trip() -> None:
    envelope = Envelope("request", '{"x": 1}', {"sig": "abc", "n": [1]})
    raw = envelope.encode()
    assert isinstance(raw, bytes)
    assert Envelope.decode(raw) == envelope
    assert Envelope.decode(raw.decode()) == envelope
    assert json.loads(raw)["v"] == PROTOCOL_VERSION


def test_envelope_security_defaults_to_empty() -> None:
    raw = dumps({"v": 1, "kind": "reply", "body": "{}"})
    assert Envelope.decode(raw).security == {}


def test_status_labels() -> None:
    assert [int(s) for s in Status] == [0, 1, 2, 3, 4, 5]
    assert Status.UNKNOWN_ACTION.label == "unknown action"
    assert Status.OK.label == "ok"


@pytest.mark.parametrize("name", ["a", "node-1.example.com", "A_b-C.9", "x" * 255])
def test_valid_names(name: str) -> None:
    assert valid_name(name)


@pytest.mark.parametrize("name", ["", ".hidden", "has space", "star*", "x" * 256, "é", 5, None,
                                  "a/b", "a#b"])
def test_invalid_names(name: object) -> None:
    assert not valid_name(name)


# --------------------------------------------------------------------- documented errors


@pytest.mark.parametrize("decode", [Envelope.decode, Request.decode, Reply.decode])
@pytest.mark.parametrize("raw", ["not json", "", "{", b"\xff\xfe\x00garbage"])
def test_not_json(decode: Any, raw: Any) -> None:
    with pytest.raises(ProtocolError, match="not valid JSON"):
        decode(raw)


@pytest.mark.parametrize("decode", [Envelope.decode, Request.decode, Reply.decode])
@pytest.mark.parametrize("value", [[], [1], "str", 1, None, True])
def test_non_object(decode: Any, value: Any) -> None:
    with pytest.raises(ProtocolError, match="must be a JSON object"):
        decode(dumps(value))


@pytest.mark.parametrize("version", [0, 2, "1", None, True, 1.5])
def test_wrong_version(version: Any) -> None:
    cases = [
        (Envelope.decode, {"v": version, "kind": "request", "body": "{}"}),
        (Request.decode, valid_request_dict(v=version)),
        (Reply.decode, valid_reply_dict(v=version)),
    ]
    for decode, obj in cases:
        with pytest.raises(ProtocolError, match="protocol version"):
            decode(dumps(obj))


def test_missing_version() -> None:
    obj = valid_request_dict()
    del obj["v"]
    with pytest.raises(ProtocolError, match="protocol version None"):
        Request.decode(dumps(obj))


@pytest.mark.parametrize("kind", ["requests", "", None, 1, "REPLY"])
def test_envelope_wrong_kind(kind: Any) -> None:
    with pytest.raises(ProtocolError, match="envelope kind must be"):
        Envelope.decode(dumps({"v": 1, "kind": kind, "body": "{}"}))


@pytest.mark.parametrize("body", [None, 1, {"a": 1}, ["x"]])
def test_envelope_body_must_be_string(body: Any) -> None:
    with pytest.raises(ProtocolError, match="body must be a string"):
        Envelope.decode(dumps({"v": 1, "kind": "request", "body": body}))


def test_envelope_body_missing() -> None:
    with pytest.raises(ProtocolError, match="body must be a string"):
        Envelope.decode(dumps({"v": 1, "kind": "request"}))


@pytest.mark.parametrize("security", [None, [], "sig", 3])
def test_envelope_security_must_be_object(security: Any) -> None:
    with pytest.raises(ProtocolError, match="security must be an object"):
        Envelope.decode(dumps({"v": 1, "kind": "reply", "body": "", "security": security}))


@pytest.mark.parametrize("field", ["agent", "action", "collective"])
@pytest.mark.parametrize("value", ["", "bad name", ".dot", "x" * 256, 1, None, ["a"]])
def test_request_bad_names(field: str, value: Any) -> None:
    with pytest.raises(ProtocolError, match=f"request {field} is missing or not a valid name"):
        Request.decode(dumps(valid_request_dict(**{field: value})))


@pytest.mark.parametrize("field", ["agent", "action", "collective", "sender", "caller",
                                   "reply_to", "id", "data", "filter", "ttl", "time"])
def test_request_missing_field(field: str) -> None:
    obj = valid_request_dict()
    del obj[field]
    with pytest.raises(ProtocolError, match="request"):
        Request.decode(dumps(obj))


@pytest.mark.parametrize(("field", "value"), [
    ("sender", 1), ("caller", None), ("reply_to", ["q"]), ("id", 5),
    ("data", []), ("data", "x"), ("filter", []), ("filter", None),
    ("ttl", "60"), ("ttl", None), ("time", "now"), ("time", [1]),
])
def test_request_wrong_types(field: str, value: Any) -> None:
    with pytest.raises(ProtocolError, match=f"request field '{field}' is missing or has the "
                                            "wrong type"):
        Request.decode(dumps(valid_request_dict(**{field: value})))


@pytest.mark.parametrize("field", ["ttl", "time"])
def test_request_bools_are_not_numbers(field: str) -> None:
    with pytest.raises(ProtocolError, match=f"'{field}'"):
        Request.decode(dumps(valid_request_dict(**{field: True})))


@pytest.mark.parametrize("terms", ["role=web", {"fact": "x"}, None, 3])
def test_request_filter_terms_must_be_lists(terms: Any) -> None:
    with pytest.raises(ProtocolError, match="filter must map each kind to a list"):
        Request.decode(dumps(valid_request_dict(filter={"fact": terms})))


@pytest.mark.parametrize("ttl", [0, -1, -0.5, 0.0])
def test_request_ttl_must_be_positive(ttl: float) -> None:
    with pytest.raises(ProtocolError, match="ttl must be positive"):
        Request.decode(dumps(valid_request_dict(ttl=ttl)))


@pytest.mark.parametrize(("field", "value"), [
    ("ttl", math.inf), ("ttl", math.nan), ("time", math.nan),
])
def test_request_ttl_and_time_must_be_finite(field: str, value: float) -> None:
    """Python's json reads ``Infinity``/``NaN`` (not JSON); with them a request never expires.

    ``ttl: Infinity`` or ``NaN`` passes the ``ttl <= 0`` check, and ``time: NaN`` makes both
    time-window comparisons of the server false, so the request is accepted forever.
    """
    with pytest.raises(ProtocolError):
        Request.decode(dumps(valid_request_dict(**{field: value})))


def test_request_int_ttl_and_time_accepted() -> None:
    request = Request.decode(dumps(valid_request_dict(ttl=5, time=1_700_000_000)))
    assert request.ttl == 5
    assert request.time == 1_700_000_000


def test_request_extra_fields_ignored() -> None:
    request = Request.decode(dumps(valid_request_dict(extension={"future": True})))
    assert request.agent == "rpcutil"


@pytest.mark.parametrize("field", ["request_id", "sender", "agent", "action", "statuscode",
                                   "statusmsg", "data", "time"])
def test_reply_missing_field(field: str) -> None:
    obj = valid_reply_dict()
    del obj[field]
    with pytest.raises(ProtocolError, match=f"reply field '{field}'"):
        Reply.decode(dumps(obj))


@pytest.mark.parametrize(("field", "value"), [
    ("request_id", 1), ("sender", None), ("agent", []), ("action", {}),
    ("statuscode", "0"), ("statuscode", 0.0), ("statuscode", True), ("statuscode", False),
    ("statusmsg", 0), ("data", []), ("time", "t"), ("time", False),
])
def test_reply_wrong_types(field: str, value: Any) -> None:
    with pytest.raises(ProtocolError, match=f"reply field '{field}'"):
        Reply.decode(dumps(valid_reply_dict(**{field: value})))


@pytest.mark.parametrize("code", [-1, 6, 99, 1000])
def test_reply_unknown_statuscode(code: int) -> None:
    with pytest.raises(ProtocolError, match=f"unknown reply statuscode {code}"):
        Reply.decode(dumps(valid_reply_dict(statuscode=code)))


@pytest.mark.parametrize("code", list(Status))
def test_reply_every_known_statuscode(code: Status) -> None:
    assert Reply.decode(dumps(valid_reply_dict(statuscode=int(code)))).statuscode is code


def test_protocol_error_message_says_how_to_fix_version() -> None:
    with pytest.raises(ProtocolError, match="upgrade the older side"):
        Request.decode(dumps(valid_request_dict(v=2)))


# --------------------------------------------------------------------- properties

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=15,
)
any_json = st.recursive(
    json_scalars | st.floats(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=15,
)
names = st.text(alphabet=sorted(NAME_CHARS), min_size=1, max_size=40).filter(
    lambda s: not s.startswith("."))
finite = st.floats(allow_nan=False, allow_infinity=False)


def _decoders() -> list[Any]:
    return [Envelope.decode, Request.decode, Reply.decode]


def _only_protocol_errors(raw: Any) -> None:
    for decode in _decoders():
        with contextlib.suppress(ProtocolError):
            decode(raw)


@FUZZ
@given(st.binary(max_size=200))
@example(b"[" * 100_000)
@example(b"1" * 5000)
@example(b'{"v":1,"kind":"request","body":"\\ud800"}')
def test_arbitrary_bytes_raise_only_protocol_error(raw: bytes) -> None:
    _only_protocol_errors(raw)


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_protocol_error(raw: str) -> None:
    _only_protocol_errors(raw)


@FUZZ
@given(any_json)
def test_arbitrary_json_raises_only_protocol_error(value: Any) -> None:
    _only_protocol_errors(json.dumps(value))


@FUZZ
@given(st.sampled_from(sorted(valid_request_dict())), any_json)
def test_request_with_one_field_replaced_decodes_or_raises_protocol_error(
    field: str, value: Any
) -> None:
    try:
        request = Request.decode(dumps(valid_request_dict(**{field: value})))
    except ProtocolError:
        return
    assert isinstance(request, Request)


@FUZZ
@given(st.sampled_from(sorted(valid_reply_dict())), any_json)
def test_reply_with_one_field_replaced_decodes_or_raises_protocol_error(
    field: str, value: Any
) -> None:
    try:
        reply = Reply.decode(dumps(valid_reply_dict(**{field: value})))
    except ProtocolError:
        return
    if field == "statuscode":
        assert reply.statuscode == value and not isinstance(value, bool)


@FUZZ
@given(st.sampled_from(["kind", "body", "security", "v"]), any_json)
def test_envelope_with_one_field_replaced(field: str, value: Any) -> None:
    obj: dict[str, Any] = {"v": 1, "kind": "request", "body": "{}", "security": {}}
    obj[field] = value
    _only_protocol_errors(dumps(obj))


requests = st.builds(
    Request,
    agent=names, action=names, collective=names,
    sender=st.text(max_size=30), caller=st.text(max_size=30), reply_to=st.text(max_size=30),
    data=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    filter=st.dictionaries(st.text(max_size=10), st.lists(json_values, max_size=3), max_size=3),
    ttl=st.floats(min_value=1e-6, max_value=1e9),
    time=finite,
    id=st.text(max_size=40),
)


@FUZZ
@given(requests)
def test_request_encode_decode_is_identity(request: Request) -> None:
    assert Request.decode(request.encode()) == request


@FUZZ
@given(requests, st.dictionaries(st.text(max_size=10), json_values, max_size=3))
def test_request_inside_envelope_round_trips(request: Request, security: Any) -> None:
    envelope = Envelope.decode(Envelope("request", request.encode(), security).encode())
    assert envelope.kind == "request"
    assert envelope.security == security
    assert Request.decode(envelope.body) == request


replies = st.builds(
    Reply,
    request_id=st.text(max_size=40), sender=st.text(max_size=30), agent=st.text(max_size=20),
    action=st.text(max_size=20), statuscode=st.sampled_from(list(Status)),
    statusmsg=st.text(max_size=50),
    data=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    time=finite,
)


@FUZZ
@given(replies)
def test_reply_encode_decode_is_identity(reply: Reply) -> None:
    decoded = Reply.decode(reply.encode())
    assert decoded == reply
    assert isinstance(decoded.statuscode, Status)
