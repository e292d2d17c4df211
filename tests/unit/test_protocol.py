"""Wire protocol v2: encode/decode round trips, and strict decoding that only raises
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
    MAX_TIME,
    MAX_TTL,
    NAME_CHARS,
    PROTOCOL_VERSION,
    TARGET_BYTES_PER_REQUEST,
    Envelope,
    Reply,
    Request,
    Status,
    invalid_names,
    split_targets,
    valid_name,
)

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def valid_request_dict(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "v": PROTOCOL_VERSION, "agent": "rpcutil", "action": "ping", "collective": "orch",
        "sender": "client.example", "caller": "user=alice", "reply_to": "orch.orch.reply.x",
        "data": {"a": 1}, "filter": {"fact": [{"fact": "role", "operator": "==",
                                               "value": "web"}]},
        "targets": None, "ttl": 60, "time": 1_700_000_000.5, "id": "abc123",
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
    raw = dumps({"v": PROTOCOL_VERSION, "kind": "reply", "body": "{}"})
    assert Envelope.decode(raw).security == {}


def test_status_labels() -> None:
    assert [int(s) for s in Status] == [0, 1, 2, 3, 4, 5, 6]
    assert Status.UNKNOWN_ACTION.label == "unknown action"
    assert Status.BUSY.label == "busy"
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


@pytest.mark.parametrize("version", [0, 1, 3, "2", None, True, 2.5])
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
        Envelope.decode(dumps({"v": PROTOCOL_VERSION, "kind": kind, "body": "{}"}))


@pytest.mark.parametrize("body", [None, 1, {"a": 1}, ["x"]])
def test_envelope_body_must_be_string(body: Any) -> None:
    with pytest.raises(ProtocolError, match="body must be a string"):
        Envelope.decode(dumps({"v": PROTOCOL_VERSION, "kind": "request", "body": body}))


def test_envelope_body_missing() -> None:
    with pytest.raises(ProtocolError, match="body must be a string"):
        Envelope.decode(dumps({"v": PROTOCOL_VERSION, "kind": "request"}))


@pytest.mark.parametrize("security", [None, [], "sig", 3])
def test_envelope_security_must_be_object(security: Any) -> None:
    with pytest.raises(ProtocolError, match="security must be an object"):
        Envelope.decode(dumps({"v": PROTOCOL_VERSION, "kind": "reply", "body": "",
                               "security": security}))


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
    ("ttl", math.inf), ("ttl", math.nan), ("time", math.nan), ("time", -1.0),
    ("ttl", MAX_TTL * 2), ("time", MAX_TIME * 2), ("time", 10**400), ("ttl", 10**30),
])
def test_request_ttl_and_time_must_be_finite(field: str, value: float) -> None:
    """Python's json reads ``Infinity``/``NaN`` (not JSON); with them a request never expires.

    ``ttl: Infinity`` or ``NaN`` passes the ``ttl <= 0`` check, and ``time: NaN`` makes both
    time-window comparisons of the server false, so the request is accepted forever.
    """
    with pytest.raises(ProtocolError):
        Request.decode(dumps(valid_request_dict(**{field: value})))


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1E400"])
def test_numbers_that_overflow_are_refused(number: str) -> None:
    """JSON has no infinity, but ``1e999`` parses to one: refused wherever it appears."""
    body = dumps(valid_request_dict()).replace('"ttl": 60', f'"ttl": {number}')
    assert number in body
    with pytest.raises(ProtocolError, match="out of range"):
        Request.decode(body)


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


@pytest.mark.parametrize("code", [-1, 7, 99, 1000])
def test_reply_unknown_statuscode(code: int) -> None:
    with pytest.raises(ProtocolError, match=f"unknown reply statuscode {code}"):
        Reply.decode(dumps(valid_reply_dict(statuscode=code)))


@pytest.mark.parametrize("code", list(Status))
def test_reply_every_known_statuscode(code: Status) -> None:
    assert Reply.decode(dumps(valid_reply_dict(statuscode=int(code)))).statuscode is code


def test_protocol_error_message_says_how_to_fix_version() -> None:
    cases = [
        (Request.decode, valid_request_dict(v=1),
         "request has protocol version 1; this orch speaks 2 — upgrade the orch that sent it"),
        (Reply.decode, valid_reply_dict(v=3),
         "reply has protocol version 3; this orch speaks 2 — upgrade this orch"),
        (Request.decode, valid_request_dict(v="2"),
         "request has protocol version '2'; this orch speaks 2 — not a message orch can read"),
    ]
    for decode, obj, message in cases:
        with pytest.raises(ProtocolError) as caught:
            decode(dumps(obj))
        assert str(caught.value).startswith(message)


@pytest.mark.parametrize(("kind", "version", "advice"), [
    ("request", 1, "upgrade the orch that sent it"),
    ("reply", 1, "upgrade the orch that sent it"),
    ("request", 3, "upgrade this orch"),
    ("reply", 3, "upgrade this orch"),
])
def test_envelope_of_another_version_names_what_arrived(kind: str, version: int,
                                                        advice: str) -> None:
    """Old and new meet at the envelope first: the message names the request or reply."""
    raw = dumps({"v": version, "kind": kind, "body": "{}", "security": {}})
    with pytest.raises(ProtocolError) as caught:
        Envelope.decode(raw)
    assert str(caught.value).startswith(
        f"{kind} has protocol version {version}; this orch speaks {PROTOCOL_VERSION} — {advice}")


def test_v1_request_as_sent_by_orch_0_1_is_refused() -> None:
    """The exact bytes an orch speaking v1 sent (no ``targets``) are not read as a
    broadcast: a v2 node refuses them, naming the version."""
    v1 = dumps({"v": 1, "kind": "request", "security": {}, "body": dumps({
        "v": 1, "agent": "rpcutil", "action": "ping", "collective": "orch", "sender": "s",
        "caller": "user=a", "reply_to": "orch.orch.reply.x", "data": {}, "filter": {},
        "ttl": 60, "time": 1.0, "id": "x"})})
    with pytest.raises(ProtocolError, match="request has protocol version 1; this orch "
                                            "speaks 2"):
        Envelope.decode(v1)


# --------------------------------------------------------------------- targets


def test_broadcast_request_is_for_any_node() -> None:
    request = Request.decode(dumps(valid_request_dict(targets=None)))
    assert request.targets is None
    assert request.addresses("web1") and request.addresses("anything")


def test_direct_request_is_for_its_targets_only() -> None:
    request = Request.decode(dumps(valid_request_dict(targets=["web1", "db1"])))
    assert request.targets == ("web1", "db1")
    assert request.addresses("web1") and request.addresses("db1")
    for other in ("web2", "web", "web1 ", "WEB1", "db1.example", ""):
        assert not request.addresses(other), other


def test_targets_are_in_the_signed_body() -> None:
    request = Request("a", "b", "c", "s", "u", "r", targets=("web1",))
    assert json.loads(request.encode())["targets"] == ["web1"]
    assert json.loads(Request("a", "b", "c", "s", "u", "r").encode())["targets"] is None


def test_targets_field_is_required() -> None:
    obj = valid_request_dict()
    del obj["targets"]
    with pytest.raises(ProtocolError, match="'targets' is missing"):
        Request.decode(dumps(obj))


@pytest.mark.parametrize(("targets", "message"), [
    ([], "addressed to no node"),
    ("web1", "must be a list"),
    ({"web1": True}, "must be a list"),
    (7, "must be a list"),
    ([1], "must be identities"),
    (["web1", None], "must be identities"),
    (["web1", ["db1"]], "must be identities"),
    ([""], "must be identities"),
    (["x" * 256], "must be identities"),
    (["n"] * 10_001, "at most 10000 per request"),
])
def test_bad_targets_rejected(targets: Any, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        Request.decode(dumps(valid_request_dict(targets=targets)))


def test_split_targets_bounds_each_part_and_loses_no_name() -> None:
    names = [f"web-{i:05d}.fra1.example.net" for i in range(10_000)]
    parts = split_targets(reversed(names))
    assert [n for part in parts for n in part] == sorted(names)
    for part in parts:
        assert len(json.dumps(list(part), separators=(",", ":"))) <= TARGET_BYTES_PER_REQUEST
    assert len(parts) == -(-10_000 // (TARGET_BYTES_PER_REQUEST // 29))


def test_split_targets_small_sets_drop_duplicates_and_long_names_stand_alone() -> None:
    assert split_targets(["b", "a", "b"]) == [("a", "b")]
    assert split_targets([]) == []
    long = ["x" * 255, "y" * 255, "z" * 255, "w" * 255, "v" * 255]
    assert split_targets(long, budget=300) == [(n,) for n in sorted(long)]
    assert split_targets(["a", "b", "c"], budget=1) == [("a",), ("b",), ("c",)]


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
@example(b'{"v":2,"kind":"request","body":"\\ud800"}')
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
@given(st.lists(any_json | st.text(max_size=8), max_size=12), st.text(max_size=8))
@example(["web1"], "web1")
@example(["web1", 1], "web1")
def test_decoded_targets_address_exactly_their_names(targets: list[Any], identity: str) -> None:
    """Whatever a ``targets`` list holds, decoding either refuses it or gives a request that
    is for exactly the names listed: no false positive, no false negative."""
    try:
        request = Request.decode(dumps(valid_request_dict(targets=targets)))
    except ProtocolError:
        return
    assert request.targets == tuple(targets)
    assert request.addresses(identity) == (identity in targets)


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
    obj: dict[str, Any] = {"v": PROTOCOL_VERSION, "kind": "request", "body": "{}",
                           "security": {}}
    obj[field] = value
    _only_protocol_errors(dumps(obj))


requests = st.builds(
    Request,
    agent=names, action=names, collective=names,
    sender=st.text(max_size=30), caller=st.text(max_size=30), reply_to=st.text(max_size=30),
    data=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    filter=st.dictionaries(st.text(max_size=10), st.lists(json_values, max_size=3), max_size=3),
    targets=st.none() | st.lists(st.text(min_size=1, max_size=30), min_size=1,
                                 max_size=20).map(tuple),
    ttl=st.floats(min_value=1e-6, max_value=MAX_TTL),
    time=st.floats(min_value=0, max_value=MAX_TIME),
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


@FUZZ
@given(st.lists(st.text(max_size=8) | names | st.integers() | st.none(), max_size=8))
@example(["a", ".b"])
@example(["a", "x" * 256])
@example(["a", ""])
def test_invalid_names_agrees_with_valid_name(values: list[Any]) -> None:
    assert invalid_names(values) == [v for v in values if not valid_name(v)]
