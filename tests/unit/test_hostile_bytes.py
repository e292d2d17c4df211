"""Any byte sequence on a node's queue is survived and accounted for (issue 11).

The node's message handler (:meth:`orch.core.server.Node.handle`, what the transport calls
for every message) is fed raw bytes, byte-level mutations of genuine signed requests, and
well-formed envelopes whose fields hold arbitrary JSON — with the real x509 provider, so
the signature path sees the garbage too. For every message: it returns without raising,
and exactly one outcome counter moves (dropped, ttlexpired, filtered or passed), so no
message vanishes uncounted. A genuine request handled after each example still gets its
reply: the node keeps working.

The broker-level stress test (hostile messages on every exchange and queue of a running
fleet) is tests/integration's; this is the decoder's contract, at hypothesis speed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orch.core.config import Settings
from orch.core.filter import FilterEngine
from orch.core.plugins import default_registry
from orch.core.protocol import PROTOCOL_VERSION, Envelope, Reply, Request, Status
from orch.core.server import Node, NodeServices
from orch.security import pki
from orch.security.x509 import X509Provider

COLLECTIVE = "hostile"
IDENTITY = "web1"
OUTCOMES = ("dropped", "ttlexpired", "filtered", "passed")
HOSTILE = settings(max_examples=300, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow,
                                          HealthCheck.function_scoped_fixture])


class Harness:
    """One x509-signing node and a client provider of the same CA; replies are kept."""

    def __init__(self) -> None:
        ca_cert, ca_key = pki.create_ca("hostile CA", "ed25519")

        def provider(name: str, role: str) -> X509Provider:
            cert, key = pki.issue_certificate(ca_cert, ca_key, name, role,
                                              key_type="ed25519")
            return X509Provider(credentials=pki.Credentials(cert, key, (ca_cert,)),
                                clock_skew=5)

        self.client = provider("alice", "client")
        self.replies: list[bytes] = []
        registry = default_registry()
        services = NodeServices(
            settings=Settings(), security=provider(IDENTITY, "node"),
            filters=FilterEngine(registry.filter_kinds(), registry.filter_functions()),
            runner=inline_runner(), validators=registry.validators(),
            send=lambda _c, _r, payload, _t: self.replies.append(payload),
        )
        agents = {"rpcutil": registry.agents()["rpcutil"]}
        self.node = Node(IDENTITY, COLLECTIVE, agents, lambda: {"role": "web"},
                         frozenset(), services)

    def signed(self, **fields: Any) -> bytes:
        request = Request(agent="rpcutil", action="ping", collective=COLLECTIVE,
                          sender="laptop", caller="cert=alice",
                          reply_to=f"orch.{COLLECTIVE}.reply.x", **fields)
        body = request.encode()
        return Envelope("request", body, self.client.seal("request", body)).encode()

    def counts(self) -> dict[str, int]:
        stats = self.node.statistics()
        return {key: stats[key] for key in ("total", *OUTCOMES)}


def inline_runner() -> Any:
    from orch.core.runner import InlineRunner

    return InlineRunner()  # the action runs before handle() returns: no threads to wait on


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    yield Harness()


def survive(harness: Harness, payload: bytes) -> None:
    """Handle ``payload``; then prove it was counted once and the node still answers."""
    before = harness.counts()
    harness.node.handle(payload)
    after = harness.counts()
    assert after["total"] == before["total"] + 1
    moved = {key: after[key] - before[key] for key in OUTCOMES if after[key] != before[key]}
    assert list(moved.values()) == [1], moved
    replies = len(harness.replies)
    harness.node.handle(harness.signed())
    assert len(harness.replies) == replies + 1
    reply = Reply.decode(Envelope.decode(harness.replies[-1]).body)
    assert reply.statuscode is Status.OK


@HOSTILE
@given(st.binary(max_size=4096))
def test_any_bytes(harness: Harness, payload: bytes) -> None:
    survive(harness, payload)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A genuine signed request with bytes flipped, inserted, deleted, or cut short."""
    data = bytearray(draw(st.sampled_from(GENUINE)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete" and data:
            del data[at:at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


GENUINE: list[bytes] = []


@pytest.fixture(scope="module", autouse=True)
def genuine(harness: Harness) -> None:
    GENUINE[:] = [harness.signed(), harness.signed(data={"n": 1}, filter={"fact": [
        {"fact": "role", "operator": "==", "value": "web"}]}), harness.signed(ttl=5.0)]


@HOSTILE
@given(mutated())
def test_mutated_signed_requests(harness: Harness, payload: bytes) -> None:
    survive(harness, payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


@HOSTILE
@given(st.fixed_dictionaries({}, optional={
    "v": st.just(PROTOCOL_VERSION) | json_values,
    "kind": st.sampled_from(["request", "reply"]) | json_values,
    "body": st.text(max_size=200) | json_values,
    "security": st.fixed_dictionaries({}, optional={
        "cert": st.text(max_size=300) | json_values,
        "signature": st.text(max_size=120) | json_values,
        "alg": json_values, "fingerprint": json_values,
    }) | json_values,
}), st.integers(0, 3))
def test_well_formed_envelopes_with_arbitrary_fields(
        harness: Harness, fields: dict[str, Any], keep_signature: int) -> None:
    """Field by field, the types a decoder does not expect; sometimes with the genuine
    signature and certificate, so the verifier reaches its later checks."""
    if keep_signature == 0:
        fields["security"] = json.loads(GENUINE[0])["security"]
    survive(harness, json.dumps(fields).encode())


@HOSTILE
@given(st.fixed_dictionaries({}, optional={
    name: json_values for name in ("v", "agent", "action", "collective", "sender", "caller",
                                   "reply_to", "data", "filter", "targets", "ttl", "time",
                                   "id")}))
def test_signed_bodies_with_arbitrary_request_fields(
        harness: Harness, fields: dict[str, Any]) -> None:
    """A body signed with a real client key but holding any JSON: past the signature,
    into the request decoder and the node's checks."""
    body = json.dumps(fields)
    survive(harness, Envelope("request", body, harness.client.seal("request", body)).encode())


@pytest.mark.parametrize("payload", [
    b"[" * 100_000, b"{\"a\":" * 50_000, b"\xff\xfe\x00", b"1e999", b"{\"v\": 1e999}",
    b"\"" + b"\\u0000" * 1000 + b"\"", b"",
])
def test_pathological_inputs(harness: Harness, payload: bytes) -> None:
    survive(harness, payload)
