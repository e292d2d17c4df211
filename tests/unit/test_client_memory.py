"""The client library against an in-process fleet on the ``memory://`` transport."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from orch.core import protocol
from orch.core.client import CallResult, Client
from orch.core.config import Settings
from orch.core.errors import ArgumentError, UnknownActionError
from orch.core.fleet import Fleet, NodeSpec
from orch.core.protocol import Envelope, Reply, Request, Status
from orch.demo import DemoPKI
from orch.testing import FleetFactory, OrchFleet

SPECS = [
    NodeSpec("web1", {"role": "web", "env": "prod", "os": {"family": "Debian"}, "cpus": 4},
             frozenset({"nginx", "role::web"})),
    NodeSpec("web2", {"role": "web", "env": "dev", "os": {"family": "Debian"}, "cpus": 2},
             frozenset({"nginx", "role::web"})),
    NodeSpec("db1", {"role": "db", "env": "prod", "os": {"family": "RedHat"}, "cpus": 16},
             frozenset({"postgresql", "role::db"})),
    NodeSpec("cache1", {"role": "cache", "env": "prod", "os": {"family": "Debian"}, "cpus": 2},
             frozenset({"redis"})),
]
ALL = sorted(spec.identity for spec in SPECS)


def fact(name: str, value: Any, operator: str = "==") -> dict[str, Any]:
    return {"fact": name, "operator": operator, "value": value}


@pytest.fixture
def memory_fleet(orch_fleet: FleetFactory) -> OrchFleet:
    """The test's fleet (``orch.testing``: its own collective, signed, stopped after the
    test), hosting only rpcutil whatever other agent plugins are installed here."""
    return orch_fleet(SPECS, agents=["rpcutil"], settings={
        "timeout": 4.0, "discovery_timeout": 0.6, "discovery_window": 0.2})


@pytest.fixture
def settings(memory_fleet: OrchFleet) -> Settings:
    """The client settings of the test's fleet: its collective on the memory:// broker."""
    return memory_fleet.settings


@pytest.fixture
def fleet(memory_fleet: OrchFleet) -> Fleet:
    return memory_fleet.fleet


@pytest.fixture
def client(settings: Settings, fleet: Fleet) -> Iterator[Client]:
    with Client(settings, caller="user=tester") as client:
        yield client


def total_requests(fleet: Fleet) -> int:
    return sum(node.statistics()["total"] for node in fleet.nodes)


# --------------------------------------------------------------------- ping & discovery


def test_ping_finds_every_node(client: Client) -> None:
    result = client.ping()
    assert sorted(result.replies) == ALL
    assert result.expected is None
    assert result.missing == []
    assert result.rejected == []
    assert result.error is None
    assert all(reply.ok and "pong" in reply.data for reply in result.replies.values())
    assert set(result.rtt) == set(ALL)


def test_a_broadcast_ends_when_replies_stop_not_at_its_timeout(settings: Settings,
                                                               fleet: Fleet) -> None:
    # With an hour-long discovery timeout, returning at all proves the quiet window ended
    # collection; how long the window took is bench/'s business.
    with Client(settings.with_values({"discovery_timeout": 3600.0}, "test")) as client:
        result = client.ping()
    assert sorted(result.replies) == ALL and result.cut_short is None
    assert result.elapsed < 3600.0


def test_ping_known_nodes_returns_when_all_answered(client: Client) -> None:
    result = client.ping(nodes=["web1", "db1"])
    assert sorted(result.replies) == ["db1", "web1"]
    assert result.expected == ["db1", "web1"]


def test_known_nodes_are_not_waited_for_once_all_answered(settings: Settings,
                                                          fleet: Fleet) -> None:
    # An hour-long timeout: the call returns because every expected node answered.
    with Client(settings.with_values({"discovery_timeout": 3600.0, "timeout": 3600.0},
                                     "test")) as client:
        result = client.ping(nodes=["web1", "db1"])
        called = client.call("rpcutil", "ping", nodes=["web1", "db1"])
    assert sorted(result.replies) == ["db1", "web1"] and result.elapsed < 3600.0
    assert sorted(called.replies) == ["db1", "web1"] and called.elapsed < 3600.0


def test_ping_with_filter(client: Client) -> None:
    result = client.ping(filter={"fact": [fact("role", "web")]})
    assert sorted(result.replies) == ["web1", "web2"]


@pytest.mark.parametrize(("filter", "expected"), [
    ({}, ALL),
    ({"fact": [fact("role", "web")]}, ["web1", "web2"]),
    ({"fact": [fact("role", "web"), fact("env", "prod")]}, ["web1"]),
    ({"fact": [fact("os.family", "Debian")]}, ["cache1", "web1", "web2"]),
    ({"fact": [fact("cpus", 4, ">=")]}, ["db1", "web1"]),
    ({"class": ["nginx"]}, ["web1", "web2"]),
    ({"class": ["/^role::/"]}, ["db1", "web1", "web2"]),
    ({"identity": ["db1"]}, ["db1"]),
    ({"identity": ["/^web/"]}, ["web1", "web2"]),
    ({"agent": ["rpcutil"]}, ALL),
    ({"agent": ["puppet"]}, []),
    ({"compound": ["role=db or (role=web and env=dev)"]}, ["db1", "web2"]),
    ({"compound": ["not env=prod"]}, ["web2"]),
    ({"fact": [fact("role", "nothing")]}, []),
])
def test_discovery_with_filters(client: Client, filter: dict[str, Any],
                                expected: list[str]) -> None:
    assert client.discover(filter) == expected


def test_discovery_uses_the_client_filter_engine(client: Client) -> None:
    from orch.core.filterargs import build_filter

    wire = build_filter(client.filters, fact=["role=web"], classes=["nginx"],
                        compound=["cpus > 2"])
    assert client.discover(wire) == ["web1"]


# --------------------------------------------------------------------- calls


def test_call_with_known_nodes_returns_as_soon_as_all_replied(client: Client) -> None:
    timeout = client.call_timeout("rpcutil")
    assert timeout == 4.0
    result = client.call("rpcutil", "get_fact", {"fact": "role"}, nodes=["web1", "db1"])
    assert sorted(result.replies) == ["db1", "web1"]
    assert result.succeeded
    assert result.discovery_seconds == 0.0  # a known list is addressed: no discovery ran
    assert result.replies["db1"].data == {"fact": "role", "value": "db"}


def test_call_with_discovery(client: Client) -> None:
    discovered: list[list[str]] = []
    seen: list[str] = []

    def on_reply(reply: Reply, result: CallResult) -> None:
        seen.append(reply.sender)

    result = client.call("rpcutil", "get_fact", {"fact": "os.family"},
                         filter={"fact": [fact("env", "prod")]},
                         on_discovered=discovered.append, on_reply=on_reply)
    assert discovered == [["cache1", "db1", "web1"]]
    assert result.expected == ["cache1", "db1", "web1"]
    assert sorted(seen) == ["cache1", "db1", "web1"]
    assert result.succeeded
    assert {n: r.data["value"] for n, r in result.replies.items()} == {
        "cache1": "Debian", "db1": "RedHat", "web1": "Debian"}


def test_call_matching_nothing_sends_nothing(client: Client, fleet: Fleet) -> None:
    result = client.call("rpcutil", "ping", filter={"identity": ["ghost"]})
    assert result.expected == []
    assert result.replies == {}
    assert not result.succeeded  # nothing matched: a script must not take that for success


def test_unknown_identity_is_reported_missing(settings: Settings, fleet: Fleet) -> None:
    with Client(settings.with_values({"timeout": 0.5}, "test")) as client:
        result = client.call("rpcutil", "ping", nodes=["web1", "ghost"])
    assert sorted(result.replies) == ["web1"]
    assert result.expected == ["ghost", "web1"]
    assert result.missing == ["ghost"]
    assert not result.succeeded
    assert result.elapsed >= 0.5  # it waited out the timeout for the silent node


def test_failed_replies_are_kept_apart(client: Client) -> None:
    result = client.call("rpcutil", "get_fact", {"fact": "role"}, nodes=["web1"])
    assert result.ok == ["web1"] and result.failed == []
    result = client.call("rpcutil", "get_facts", {"facts": "role,env"}, nodes=ALL)
    assert result.succeeded
    assert result.replies["db1"].data["values"] == {"role": "db", "env": "prod"}


def test_group_by(client: Client) -> None:
    result = client.call("rpcutil", "get_fact", {"fact": "role"}, nodes=ALL)
    assert result.group_by("value") == {"web": ["web1", "web2"], "db": ["db1"],
                                        "cache": ["cache1"]}
    result = client.call("rpcutil", "get_fact", {"fact": "cpus"}, nodes=ALL)
    assert result.group_by("value") == {"4": ["web1"], "2": ["cache1", "web2"], "16": ["db1"]}
    result = client.call("rpcutil", "get_fact", {"fact": "os"}, nodes=["web1"])
    assert result.group_by("value") == {'{"family": "Debian"}': ["web1"]}
    assert result.group_by("no_such_output") == {"null": ["web1"]}


def test_group_by_skips_failed_replies() -> None:
    result = CallResult("a", "b", "id", ["n1", "n2"])
    result.replies["n1"] = Reply("id", "n1", "a", "b", Status.OK, "OK", {"v": "x"})
    result.replies["n2"] = Reply("id", "n2", "a", "b", Status.ABORTED, "no", {"v": "x"})
    assert result.group_by("v") == {"x": ["n1"]}
    assert result.failed == ["n2"]
    assert not result.succeeded


def test_node_statistics_count_requests(client: Client, fleet: Fleet) -> None:
    client.call("rpcutil", "ping", nodes=["web1"])
    result = client.call("rpcutil", "daemon_stats", nodes=["web1"])
    stats = result.replies["web1"].data
    assert stats["total"] == 2 and stats["replies"] >= 1
    assert stats["agents"] == {"rpcutil": 2}


# --------------------------------------------------------------------- validation first


@pytest.mark.parametrize(("action", "data", "message"), [
    ("get_fact", {}, "argument 'fact' is required"),
    ("get_fact", {"fact": 5}, "argument 'fact' must be of type string"),
    ("get_fact", {"fact": "role", "extra": 1}, "unknown argument(s) extra"),
    ("get_fact", {"fact": "x" * 201}, "longer than 200 characters"),
    ("ping", {"unexpected": True}, "unknown argument(s) unexpected"),
])
def test_client_side_validation_before_sending(settings: Settings, fleet: Fleet, action: str,
                                               data: dict[str, Any], message: str) -> None:
    with Client(settings) as client:
        with pytest.raises(ArgumentError) as caught:
            client.call("rpcutil", action, data, nodes=["web1"])
        assert message in str(caught.value)
        assert client._channel is None, "a broker session was opened before validation"
    assert total_requests(fleet) == 0


def test_unknown_action_of_installed_agent_fails_before_sending(settings: Settings,
                                                               fleet: Fleet) -> None:
    with Client(settings) as client:
        with pytest.raises(UnknownActionError, match="agent 'rpcutil' has no action 'pnig'"):
            client.call("rpcutil", "pnig", nodes=["web1"])
        assert client._channel is None
    assert total_requests(fleet) == 0


@pytest.mark.parametrize(("agent", "action"), [("bad agent", "x"), ("ok", "bad/action")])
def test_invalid_names_are_argument_errors(client: Client, agent: str, action: str) -> None:
    with pytest.raises(ArgumentError, match="name"):
        client.call(agent, action, nodes=["web1"])


def test_agent_unknown_here_is_sent_unchecked_and_answered(client: Client) -> None:
    result = client.call("notinstalled", "run", {"x": 1}, nodes=["web1"])
    reply = result.replies["web1"]
    assert reply.statuscode is Status.UNKNOWN_ACTION
    assert "unknown agent 'notinstalled'" in reply.statusmsg
    assert result.failed == ["web1"]


def test_server_side_validation_when_client_has_no_ddl(client: Client) -> None:
    """A raw request (built without the client's DDL check) is validated by the node too."""
    request = client.new_request("rpcutil", "get_fact", {})
    result = client.send_direct(request, ["web1"], 2.0)
    assert result.replies["web1"].statuscode is Status.MISSING_DATA


# --------------------------------------------------------------------- addressed requests


class Recorder:
    """Wraps a channel's ``direct`` and ``direct_many``: records ``(identity, request body)``
    for every node a request goes to, and publishes."""

    def __init__(self, client: Client) -> None:
        self.sent: list[tuple[str, Request]] = []
        channel = client.channel
        self._direct = channel.direct
        self._many = getattr(channel, "direct_many", None)
        channel.direct = self.direct  # type: ignore[method-assign]
        if self._many is not None:
            channel.direct_many = self.direct_many  # type: ignore[attr-defined]

    def _record(self, identities: Sequence[str], payload: bytes) -> None:
        request = Request.decode(Envelope.decode(payload).body)
        self.sent.extend((identity, request) for identity in identities)

    def direct(self, identity: str, payload: bytes, ttl: float) -> None:
        self._record([identity], payload)
        self._direct(identity, payload, ttl)

    def direct_many(self, identities: Sequence[str], payload: bytes, ttl: float) -> None:
        self._record(identities, payload)
        assert self._many is not None
        self._many(identities, payload, ttl)


def test_direct_call_names_exactly_its_targets(client: Client) -> None:
    recorder = Recorder(client)
    result = client.call("rpcutil", "ping", nodes=["web1", "db1"])
    assert sorted(result.replies) == ["db1", "web1"] and result.rejected == []
    assert sorted(identity for identity, _ in recorder.sent) == ["db1", "web1"]
    for _, request in recorder.sent:
        assert request.targets == ("db1", "web1")
        assert request.id == result.request_id


def test_large_target_set_goes_out_in_signed_parts(client: Client,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for two names per request, four nodes get two signed requests with one
    id; each node receives the part that names it, every node answers once."""
    monkeypatch.setattr(protocol, "TARGET_BYTES_PER_REQUEST", 16)
    recorder = Recorder(client)
    result = client.call("rpcutil", "ping", nodes=ALL)
    assert sorted(result.replies) == ALL
    assert result.missing == [] and result.rejected == [] and result.succeeded
    parts = {request.targets for _, request in recorder.sent}
    assert parts == {("cache1", "db1"), ("web1", "web2")}
    for identity, request in recorder.sent:
        assert request.addresses(identity)
        assert request.id == result.request_id
    assert len(recorder.sent) == len(ALL)


def test_broadcast_request_names_no_targets(client: Client) -> None:
    request = client.new_request("rpcutil", "ping")
    assert request.targets is None


def test_invalid_identity_refused_before_anything_is_sent(client: Client,
                                                          fleet: Fleet) -> None:
    with pytest.raises(ArgumentError, match="'bad name' is not a valid node identity"):
        client.ping(nodes=["web1", "bad name"])
    assert total_requests(fleet) == 0


def test_reply_from_a_node_the_request_was_not_addressed_to_is_rejected(
    client: Client, fleet: Fleet, orch_pki: DemoPKI
) -> None:
    """A correctly signed reply from web2 to a request sent to web1 only: rejected and
    reported, never counted as a result."""
    request = client.new_request("rpcutil", "ping")
    body = Reply(request.id, "web2", "rpcutil", "ping", Status.OK, "OK", {}).encode()
    web2 = orch_pki.node_security(SPECS[1])
    fleet.transport.send_reply(client.settings.collective, client.channel.reply_to,
                               Envelope("reply", body, web2.seal("reply", body)).encode(), 10)
    result = client.send_direct(request, ["web1"], 4.0)
    assert sorted(result.replies) == ["web1"]
    assert result.unexpected == ["web2"]
    assert result.rejected == []
    assert not result.succeeded


def test_reply_of_the_old_protocol_is_rejected_with_the_version(client: Client,
                                                                fleet: Fleet) -> None:
    request = client.new_request("rpcutil", "ping")
    old = json.dumps({"v": 1, "kind": "reply", "body": "{}", "security": {}}).encode()
    fleet.transport.send_reply(client.settings.collective, client.channel.reply_to, old, 10)
    result = client.send_direct(request, ["web1"], 4.0)
    assert sorted(result.replies) == ["web1"]
    assert result.rejected == ["reply has protocol version 1; this orch speaks 2 — upgrade "
                               "the orch that sent it (version 2 binds each request to the "
                               "nodes it is addressed to)"]


def test_reply_over_max_message_bytes_is_rejected_unread(settings: Settings,
                                                         fleet: Fleet) -> None:
    """A huge message on the reply queue is refused on its size alone; the call goes on."""
    with Client(settings.with_values({"max_message_bytes": 2048}, "test")) as client:
        request = client.new_request("rpcutil", "ping")
        huge = b"{" + b" " * 4096 + b"}"
        fleet.transport.send_reply(client.settings.collective, client.channel.reply_to,
                                   huge, 10)
        result = client.send_direct(request, ["web1"], 4.0)
    assert sorted(result.replies) == ["web1"]
    assert result.rejected == ["a reply of 4098 bytes is over max_message_bytes (2048); "
                               "not read"]
