"""The server's request path (:class:`orch.core.server.Node`), driven with raw request bytes.

Replies are captured by a fake ``send`` callable instead of a transport; the agents are the
real ``rpcutil`` plus small test agents whose DDL lives in ``tests/unit/ddl/``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orch.core.agent import ActionFailed, ActionReply, ActionRequest, Agent, action
from orch.core.audit import AuditLog
from orch.core.authorization import Decision
from orch.core.config import Settings
from orch.core.decoded import DecodedRequests
from orch.core.errors import ProtocolError
from orch.core.filter import FilterEngine, NodeView
from orch.core.plugins import default_registry
from orch.core.protocol import Envelope, Reply, Request, Status
from orch.core.runner import ActionRunner
from orch.core.security import Verified
from orch.core.server import Node, NodeServices
from orch.ddl.model import AgentDDL, load_ddl
from orch.security.insecure import InsecureProvider

DDL_DIR = Path(__file__).resolve().parent / "ddl"
ECHO_DDL = load_ddl(DDL_DIR / "echo.json")
COLLECTIVE = "nodetest"
IDENTITY = "node1.example"
FACTS = {"role": "web", "os": {"family": "Debian"}, "cpus": 4}
CLASSES = frozenset({"nginx", "profile::web"})
WAIT = 5.0

#: Released at the end of every test so that blocked ``slow`` actions finish.
RELEASE = threading.Event()


class Echo(Agent):
    """Test agent; its DDL (``tests/unit/ddl/echo.json``) sets a 0.3 s timeout."""

    name = "echo"
    calls: list[ActionRequest] = []
    finished = threading.Event()

    @classmethod
    def ddl(cls) -> AgentDDL:
        return ECHO_DDL

    @action
    def echo(self, request: ActionRequest, reply: ActionReply) -> None:
        Echo.calls.append(request)
        reply["arguments"] = dict(request.data)
        reply["caller"] = request.caller

    @action
    def crash(self, request: ActionRequest, reply: ActionReply) -> None:
        Echo.calls.append(request)
        raise RuntimeError("boom in the agent")

    @action
    def refuse(self, request: ActionRequest, reply: ActionReply) -> None:
        reply["partial"] = 7
        raise ActionFailed("not today", Status.INVALID_DATA)

    @action
    def slow(self, request: ActionRequest, reply: ActionReply) -> None:
        RELEASE.wait(WAIT)
        reply["done"] = True
        Echo.finished.set()

    @action
    def undocumented(self, request: ActionRequest, reply: ActionReply) -> None:
        Echo.calls.append(request)


class Bare(Agent):
    """An agent without a DDL: any implemented action runs with the raw arguments."""

    name = "bare"

    @action
    def raw(self, request: ActionRequest, reply: ActionReply) -> None:
        reply["data"] = dict(request.data)


class Sent:
    """The fake ``send``: records ``(collective, reply_to, payload, ttl)`` per reply."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes, float]] = []
        self._cond = threading.Condition()

    def __call__(self, collective: str, reply_to: str, payload: bytes, ttl: float) -> None:
        with self._cond:
            self.calls.append((collective, reply_to, payload, ttl))
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> list[Reply]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.calls) >= count, timeout)
        return self.replies()

    def replies(self) -> list[Reply]:
        with self._cond:
            payloads = [payload for _, _, payload, _ in self.calls]
        envelopes = [Envelope.decode(p) for p in payloads]
        assert all(e.kind == "reply" for e in envelopes)
        return [Reply.decode(e.body) for e in envelopes]


class DenyEcho:
    """An authorizer that denies ``echo.*`` and allows everything else."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def authorize(self, request: Request, caller: str, node: NodeView,
                  filters: FilterEngine) -> Decision:
        self.asked.append((caller, f"{request.agent}.{request.action}"))
        if request.agent == "echo":
            return Decision(False, "echo is not for you")
        return Decision(True, "fine")


def make_node(send: Sent, runner: ActionRunner, **services: Any) -> Node:
    registry = default_registry()
    node_services = NodeServices(
        settings=Settings(),
        filters=services.pop("filters", None)
        or FilterEngine(registry.filter_kinds(), registry.filter_functions()),
        security=InsecureProvider(),
        runner=runner,
        validators=registry.validators(),
        send=send,
        **{"default_timeout": 60.0, "clock_skew": 5.0, **services},
    )
    agents = {"rpcutil": registry.agents()["rpcutil"], "echo": Echo, "bare": Bare}
    return Node(IDENTITY, COLLECTIVE, agents, lambda: dict(FACTS), CLASSES, node_services)


@pytest.fixture
def runner() -> Iterator[ActionRunner]:
    RELEASE.clear()
    Echo.calls.clear()
    Echo.finished.clear()
    runner = ActionRunner(workers=4)
    yield runner
    RELEASE.set()
    runner.shutdown(wait=1.0)


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def node(sent: Sent, runner: ActionRunner) -> Node:
    return make_node(sent, runner)


def make_request(agent: str = "rpcutil", action: str = "ping",
                 data: Mapping[str, Any] | None = None,
                 filter: Mapping[str, list[Any]] | None = None, **fields: Any) -> Request:
    values: dict[str, Any] = {
        "collective": COLLECTIVE, "sender": "client.example", "caller": "user=tester",
        "reply_to": "orch.nodetest.reply.abc", "ttl": 60.0, **fields,
    }
    return Request(agent=agent, action=action, data=dict(data or {}),
                   filter=dict(filter or {}), **values)


def raw(request: Request) -> bytes:
    return Envelope("request", request.encode(), {}).encode()


def ask(node: Node, sent: Sent, request: Request) -> Reply:
    """Handle ``request`` and return the one reply it produced."""
    before = len(sent.calls)
    node.handle(raw(request))
    replies = sent.wait_for(before + 1)
    assert len(replies) == before + 1, "no reply"
    reply = replies[-1]
    assert reply.request_id == request.id
    return reply


def stats(node: Node) -> dict[str, Any]:
    return node.statistics()


# --------------------------------------------------------------------- the happy path


def test_ping_reply(node: Node, sent: Sent) -> None:
    request = make_request()
    before = time.time()
    reply = ask(node, sent, request)
    assert reply.statuscode is Status.OK
    assert reply.statusmsg == "OK"
    assert (reply.sender, reply.agent, reply.action) == (IDENTITY, "rpcutil", "ping")
    assert before - 1 <= reply.data["pong"] <= time.time() + 1
    collective, reply_to, _, ttl = sent.calls[0]
    assert (collective, reply_to) == (COLLECTIVE, request.reply_to)
    assert 1.0 <= ttl <= 60.0
    counters = stats(node)
    assert {k: counters[k] for k in ("total", "passed", "filtered", "replies", "failed",
                                     "dropped", "ttlexpired")} == {
        "total": 1, "passed": 1, "filtered": 0, "replies": 1, "failed": 0, "dropped": 0,
        "ttlexpired": 0}
    assert counters["agents"] == {"rpcutil": 1}


@pytest.mark.parametrize("filter", [
    {"identity": [IDENTITY]},
    {"identity": ["/^node1/"]},
    {"identity": ["other", IDENTITY]},
    {"fact": [{"fact": "role", "operator": "==", "value": "web"}]},
    {"fact": [{"fact": "os.family", "operator": "==", "value": "Debian"}]},
    {"class": ["nginx"]},
    {"agent": ["echo"]},
    {"compound": ["role=web and cpus>2"]},
    {},
])
def test_matching_filter_gets_a_reply(node: Node, sent: Sent, filter: dict[str, Any]) -> None:
    assert ask(node, sent, make_request(filter=filter)).ok


def test_inventory_describes_the_node(node: Node, sent: Sent) -> None:
    reply = ask(node, sent, make_request(action="inventory"))
    assert reply.ok
    assert reply.data["facts"] == FACTS
    assert reply.data["classes"] == sorted(CLASSES)
    assert reply.data["agents"] == ["bare", "echo", "rpcutil"]
    assert reply.data["main_collective"] == COLLECTIVE
    assert reply.data["stats"]["passed"] == 1


def test_ddl_defaults_are_applied_and_caller_passed(node: Node, sent: Sent) -> None:
    reply = ask(node, sent, make_request("echo", "echo", {"message": "hi"}))
    assert reply.ok, reply.statusmsg
    assert reply.data["arguments"] == {"message": "hi", "count": 1}
    assert reply.data["caller"] == "user=tester"
    assert Echo.calls[0].request_id == reply.request_id
    assert Echo.calls[0].sender == "client.example"


def test_agent_without_ddl_gets_raw_arguments(node: Node, sent: Sent) -> None:
    reply = ask(node, sent, make_request("bare", "raw", {"anything": [1, 2]}))
    assert reply.ok
    assert reply.data == {"data": {"anything": [1, 2]}}


# --------------------------------------------------------------------- silently ignored


@pytest.mark.parametrize("filter", [
    {"identity": ["node2.example"]},
    {"identity": ["/^db/"]},
    {"fact": [{"fact": "role", "operator": "==", "value": "db"}]},
    {"fact": [{"fact": "missing", "operator": "==", "value": "x"}]},
    {"class": ["postgresql"]},
    {"agent": ["puppet"]},
    {"compound": ["role=db or cpus>8"]},
    {"fact": [{"fact": "role", "operator": "==", "value": "web"}], "class": ["nope"]},
])
def test_non_matching_filter_is_silent_and_counted(node: Node, sent: Sent,
                                                   filter: dict[str, Any]) -> None:
    node.handle(raw(make_request(filter=filter)))
    assert sent.calls == []
    counters = stats(node)
    assert (counters["total"], counters["filtered"], counters["passed"]) == (1, 1, 0)


@pytest.mark.parametrize("filter", [
    {"no_such_kind": ["x"]},
    {"fact": ["not a fact term"]},
    {"fact": [{"fact": "role", "operator": "<>", "value": "web"}]},
    {"compound": ["(role=web"]},
    {"compound": [42]},
    {"identity": ["/[unclosed/"]},
])
def test_bad_or_unknown_filter_is_silent(node: Node, sent: Sent,
                                         filter: dict[str, Any]) -> None:
    node.handle(raw(make_request(filter=filter)))
    assert sent.calls == []
    assert stats(node)["filtered"] == 1


def test_expired_request_is_dropped(node: Node, sent: Sent) -> None:
    node.handle(raw(make_request(ttl=10.0, time=time.time() - 100)))
    assert sent.calls == []
    counters = stats(node)
    assert (counters["ttlexpired"], counters["passed"], counters["replies"]) == (1, 0, 0)


def test_request_expired_within_clock_skew_is_served(node: Node, sent: Sent) -> None:
    assert ask(node, sent, make_request(ttl=2.0, time=time.time() - 4)).ok
    assert stats(node)["ttlexpired"] == 0


def test_request_from_the_future_is_dropped(node: Node, sent: Sent) -> None:
    node.handle(raw(make_request(time=time.time() + 60)))
    assert sent.calls == []
    counters = stats(node)
    assert (counters["dropped"], counters["passed"]) == (1, 0)


def test_request_slightly_in_the_future_is_served(node: Node, sent: Sent) -> None:
    assert ask(node, sent, make_request(time=time.time() + 3)).ok


def test_wrong_collective_is_dropped(node: Node, sent: Sent) -> None:
    node.handle(raw(make_request(collective="othercollective")))
    assert sent.calls == []
    assert stats(node)["dropped"] == 1


def test_replayed_request_is_dropped(node: Node, sent: Sent, runner: ActionRunner) -> None:
    payload = raw(make_request())
    node.handle(payload)
    sent.wait_for(1)
    node.handle(payload)
    runner.shutdown(wait=WAIT)  # barrier: every action submitted so far has replied
    assert len(sent.calls) == 1
    assert stats(node)["dropped"] == 1


@pytest.mark.parametrize(("field", "number"), [
    ("ttl", "NaN"), ("ttl", "Infinity"), ("ttl", "1e999"), ("ttl", "-1e999"),
    ("ttl", "1e12"), ("time", "1e999"), ("time", "-1e999"), ("time", "1e308"),
])
def test_request_with_non_finite_ttl_is_dropped(node: Node, sent: Sent, runner: ActionRunner,
                                                field: str, number: str) -> None:
    """Python's json reads ``NaN``/``Infinity``, and ``1e999`` overflows to infinity. With
    an infinite ``time`` or ``ttl`` the expiry is NaN or infinite: the request never expires
    and the replay cache never matches it, so the same bytes would be served again and
    again."""
    request = make_request()
    body = request.encode()
    current = f'"{field}":{json.dumps(getattr(request, field))}'
    assert current in body
    body = body.replace(current, f'"{field}":{number}')
    payload = Envelope("request", body, {}).encode()
    node.handle(payload)
    node.handle(payload)
    runner.shutdown(wait=WAIT)  # barrier: every action submitted so far has replied
    assert sent.calls == []
    assert stats(node)["dropped"] == 2


def test_request_over_max_ttl_is_dropped_and_audited(sent: Sent, runner: ActionRunner,
                                                     tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    node = make_node(sent, runner, max_ttl=120.0, audit=audit)
    node.handle(raw(make_request(ttl=121.0)))
    assert ask(node, sent, make_request(ttl=120.0)).ok  # the barrier: served after it
    assert (stats(node)["dropped"], stats(node)["replies"]) == (1, 1)
    lines = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert any("over this node's max_ttl 120s" in line["reason"] for line in lines)


def test_message_over_max_message_bytes_is_dropped_before_parsing(
        sent: Sent, runner: ActionRunner, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    node = make_node(sent, runner, max_message_bytes=4096, audit=audit)
    parsed: list[int] = []
    real_decode = Envelope.decode

    def counting_decode(raw: bytes | str) -> Envelope:
        parsed.append(len(raw))
        return real_decode(raw)

    monkeypatch.setattr(Envelope, "decode", staticmethod(counting_decode))
    big = raw(make_request("echo", "echo", {"text": "x" * 5000}))
    assert len(big) > 4096
    node.handle(big)
    assert parsed == []  # refused on its size alone
    assert ask(node, sent, make_request()).ok  # the barrier
    assert stats(node)["dropped"] == 1
    lines = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert any("over max_message_bytes (4096)" in line["reason"] for line in lines)


def test_request_created_before_the_node_started_is_dropped(node: Node, sent: Sent) -> None:
    """A captured request replayed after a restart: the replay cache that saw it is gone,
    so the start time is what refuses it."""
    started = node.statistics()["starttime"]
    node.handle(raw(make_request(time=started - 6, ttl=3600.0)))
    assert ask(node, sent, make_request(time=started - 4, ttl=3600.0)).ok  # within skew
    counters = stats(node)
    assert (counters["dropped"], counters["replies"]) == (1, 1)


@pytest.mark.parametrize("payload", [
    b"",
    b"garbage",
    b"\xff\xfe\xfd",
    b"[]",
    b'{"v": 2, "kind": "request", "body": "{}"}',
    b'{"v": 2, "kind": "reply", "body": "{}"}',
    b'{"v": 2, "kind": "request", "body": "not json"}',
    b'{"v": 2, "kind": "request", "body": "{\\"v\\": 2}"}',
    b'{"v": 1, "kind": "request", "body": "{\\"v\\": 1}"}',
    b'{"v": 3, "kind": "request", "body": "{\\"v\\": 3}"}',
])
def test_malformed_messages_are_dropped_and_counted(node: Node, sent: Sent,
                                                    payload: bytes) -> None:
    node.handle(payload)
    assert sent.calls == []
    counters = stats(node)
    assert (counters["total"], counters["dropped"], counters["passed"]) == (1, 1, 0)


# --------------------------------------------------------------------- addressed requests


def audited(tmp_path: Path, sent: Sent, runner: ActionRunner) -> tuple[Node, Path]:
    path = tmp_path / "audit.log"
    return make_node(sent, runner, audit=AuditLog(str(path))), path


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_direct_request_for_other_nodes_is_refused_and_audited(
    tmp_path: Path, sent: Sent, runner: ActionRunner
) -> None:
    """A signed direct request for web1, re-published into this node's queue: refused
    before the filter, the agent, or the replay cache sees it, and audited."""
    node, path = audited(tmp_path, sent, runner)
    request = make_request("echo", "echo", {"message": "hi"}, targets=("web1", "web2"))
    node.handle(raw(request))
    assert ask(node, sent, make_request(targets=(IDENTITY,))).ok  # barrier: handled in order
    assert Echo.calls == []
    assert request.id not in {r.request_id for r in sent.replies()}
    counters = stats(node)
    assert (counters["dropped"], counters["filtered"], counters["passed"]) == (1, 0, 1)
    assert node.services.audit is not None
    node.services.audit.close()
    first = audit_lines(path)[0]
    assert (first["request_id"], first["decision"]) == (request.id, "rejected")
    assert first["reason"] == "not addressed to this node (a direct request for 2 other nodes)"


def test_direct_request_naming_this_node_among_others_runs(node: Node, sent: Sent) -> None:
    request = make_request(targets=("a", IDENTITY, "z"))
    assert ask(node, sent, request).ok


def test_direct_request_still_needs_its_filter(node: Node, sent: Sent) -> None:
    """Targets narrow who may run it; a filter sent along narrows further."""
    node.handle(raw(make_request(targets=(IDENTITY,), filter={"class": ["postgresql"]})))
    assert sent.calls == []
    assert stats(node)["filtered"] == 1


@pytest.mark.parametrize("near", ["node1", "node1.example.", "NODE1.EXAMPLE", "node1.exampl",
                                  "xnode1.example", "/node1/"])
def test_only_the_exact_identity_is_addressed(node: Node, sent: Sent, near: str) -> None:
    node.handle(raw(make_request(targets=(near,))))
    assert sent.calls == []
    assert stats(node)["dropped"] == 1


def test_misdirected_copy_does_not_use_up_the_request_id(node: Node, sent: Sent) -> None:
    """Another part of the same call (same id, other targets) arriving first must not make
    the genuine request look like a replay."""
    genuine = make_request(targets=(IDENTITY,))
    node.handle(raw(replace(genuine, targets=("web1",))))
    assert ask(node, sent, genuine).ok


def test_reply_envelope_sent_to_a_node_is_dropped(node: Node, sent: Sent) -> None:
    request = make_request()
    node.handle(Envelope("reply", request.encode(), {}).encode())
    assert sent.calls == []
    assert stats(node)["dropped"] == 1


# --------------------------------------------------------------------- failure replies


def test_unknown_agent_gets_unknown_action(node: Node, sent: Sent) -> None:
    reply = ask(node, sent, make_request("nosuchagent", "run"))
    assert reply.statuscode is Status.UNKNOWN_ACTION
    assert reply.statusmsg == f"unknown agent 'nosuchagent' on {IDENTITY}"
    counters = stats(node)
    assert (counters["replies"], counters["failed"]) == (1, 1)


@pytest.mark.parametrize(("agent", "action_name"), [
    ("rpcutil", "nosuch"),
    ("echo", "documented_only"),   # in the DDL, not implemented
    ("echo", "undocumented"),      # implemented, not in the DDL
    ("echo", "ddl"),               # a method of the class, but not an action
    ("bare", "nosuch"),
])
def test_unknown_action(node: Node, sent: Sent, agent: str, action_name: str) -> None:
    reply = ask(node, sent, make_request(agent, action_name))
    assert reply.statuscode is Status.UNKNOWN_ACTION
    assert reply.statusmsg == f"unknown action {action_name!r} for agent {agent!r}"
    assert Echo.calls == []


def test_missing_required_argument_does_not_run(node: Node, sent: Sent) -> None:
    reply = ask(node, sent, make_request("echo", "echo", {"count": 2}))
    assert reply.statuscode is Status.MISSING_DATA
    assert "argument 'message' is required" in reply.statusmsg
    assert Echo.calls == []


@pytest.mark.parametrize(("data", "named"), [
    ({"message": 5}, "message"),
    ({"message": "hi", "count": "2"}, "count"),
    ({"message": "hi", "count": True}, "count"),
    ({"message": "hi", "loud": "yes"}, "loud"),
    ({"message": "x" * 21}, "message"),
    ({"message": "hi", "colour": "red"}, "colour"),
])
def test_invalid_arguments_do_not_run(node: Node, sent: Sent, data: dict[str, Any],
                                      named: str) -> None:
    reply = ask(node, sent, make_request("echo", "echo", data))
    assert reply.statuscode is Status.INVALID_DATA
    assert named in reply.statusmsg
    assert Echo.calls == []


def test_raising_agent_gives_unknown_error(node: Node, sent: Sent) -> None:
    reply = ask(node, sent, make_request("echo", "crash"))
    assert reply.statuscode is Status.UNKNOWN_ERROR
    assert reply.statusmsg == "RuntimeError: boom in the agent"
    assert stats(node)["failed"] == 1


def test_action_failed_keeps_status_and_partial_data(node: Node, sent: Sent) -> None:
    reply = ask(node, sent, make_request("echo", "refuse"))
    assert reply.statuscode is Status.INVALID_DATA
    assert reply.statusmsg == "not today"
    assert reply.data == {"partial": 7}


def test_action_exceeding_ddl_timeout_is_aborted_once(node: Node, sent: Sent,
                                                      runner: ActionRunner) -> None:
    reply = ask(node, sent, make_request("echo", "slow"))
    assert reply.statuscode is Status.ABORTED
    assert reply.statusmsg == "echo.slow did not finish within 0.3s"
    RELEASE.set()
    assert Echo.finished.wait(WAIT)
    # Barrier: shutdown returns once every submitted action (and its result handling)
    # is over, so the late result has been handled — and must have been discarded.
    assert runner.shutdown(wait=WAIT) == 0
    assert len(sent.calls) == 1, "the late result must be discarded"


def test_request_ttl_shorter_than_ddl_timeout_bounds_the_action(sent: Sent,
                                                               runner: ActionRunner) -> None:
    node = make_node(sent, runner, clock_skew=0.0)
    allowed: list[float] = []
    submit = runner.submit

    def spy(work: Any, deadline: float, *args: Any, **kwargs: Any) -> Any:
        allowed.append(deadline - time.monotonic())
        return submit(work, deadline, *args, **kwargs)

    runner.submit = spy  # type: ignore[method-assign]
    reply = ask(node, sent, make_request("echo", "slow", ttl=0.1))
    assert reply.statuscode is Status.ABORTED
    # The deadline handed to the runner came from the 0.1 s TTL, not the 0.3 s DDL timeout.
    [left] = allowed
    assert left <= 0.1


def test_default_timeout_applies_when_ddl_has_none(sent: Sent, runner: ActionRunner,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Echo, "ddl", classmethod(
        lambda cls: AgentDDL("echo", timeout=0, actions=ECHO_DDL.actions)))
    node = make_node(sent, runner, default_timeout=0.2)
    reply = ask(node, sent, make_request("echo", "slow"))
    assert reply.statuscode is Status.ABORTED
    assert reply.statusmsg == "echo.slow did not finish within 0.2s"


# --------------------------------------------------------------------- authorization


def test_authorizer_denial_is_aborted_and_counted(sent: Sent, runner: ActionRunner) -> None:
    authorizer = DenyEcho()
    node = make_node(sent, runner, authorizer=authorizer)
    reply = ask(node, sent, make_request("echo", "echo", {"message": "hi"}))
    assert reply.statuscode is Status.ABORTED
    assert "echo.echo" in reply.statusmsg
    assert "echo is not for you" in reply.statusmsg
    assert Echo.calls == []
    assert stats(node)["unauthorized"] == 1
    assert ask(node, sent, make_request()).ok
    assert authorizer.asked == [("user=tester", "echo.echo"), ("user=tester", "rpcutil.ping")]


def test_authorizer_not_asked_for_invalid_requests(sent: Sent, runner: ActionRunner) -> None:
    authorizer = DenyEcho()
    node = make_node(sent, runner, authorizer=authorizer)
    assert ask(node, sent, make_request("echo", "echo", {})).statuscode is Status.MISSING_DATA
    assert authorizer.asked == []


# --------------------------------------------------------------------- never raises


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Node, Sent]]:
    runner = ActionRunner(workers=2)
    sent = Sent()
    yield make_node(sent, runner), sent
    RELEASE.set()
    runner.shutdown(wait=1.0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8,
)
filter_terms = json_values | st.fixed_dictionaries({
    "fact": st.sampled_from(["role", "os.family", "cpus", "nope"]) | json_values,
    "operator": st.sampled_from(["==", "!=", "<", ">", "<=", ">=", "=~"]) | json_values,
    "value": json_values,
}) | st.text(alphabet="()=!<>~/ andortnotrolewebcpus0123.'", max_size=25)
filters = st.dictionaries(
    st.sampled_from(["fact", "class", "identity", "agent", "compound", "other"]),
    st.lists(filter_terms, max_size=3), max_size=3)
NEVER_RAISES = settings(max_examples=150, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])


@NEVER_RAISES
@given(filters, st.sampled_from(["ping", "nosuch"]),
       st.dictionaries(st.text(max_size=6), json_values, max_size=2))
def test_handle_never_raises_for_any_filter_or_data(
    shared: tuple[Node, Sent], filter: dict[str, Any], action_name: str, data: dict[str, Any]
) -> None:
    node, _ = shared
    node.handle(raw(make_request(action=action_name, filter=filter, data=data)))


@NEVER_RAISES
@given(st.binary(max_size=300))
def test_handle_never_raises_for_any_bytes(shared: tuple[Node, Sent], payload: bytes) -> None:
    node, _ = shared
    before = node.statistics()["dropped"]
    node.handle(payload)
    assert node.statistics()["dropped"] == before + 1


# --------------------------------------------------------------------- filter budget, queue


class Blocking:
    """A filter kind whose evaluation waits for :attr:`release`: a filter as slow as the
    sender wants, without a clock."""

    name = "block"
    match_any = False

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def parse(self, text: str) -> str:
        return text

    def match(self, term: Any, node: NodeView, engine: FilterEngine) -> bool:
        self.entered.set()
        return self.release.wait(WAIT)


def queued_node(sent: Sent, runner: ActionRunner, queue: Any, blocking: Blocking,
                audit: Any = None, **budget: Any) -> Node:
    from orch.core.filter import FilterBudget

    registry = default_registry()
    kinds = {**registry.filter_kinds(), "block": blocking}
    queued = {} if queue is None else {"queue": queue}
    return make_node(sent, runner, audit=audit, **queued,
                     filters=FilterEngine(kinds, registry.filter_functions(),
                                          FilterBudget(**budget)))


def test_slow_filter_does_not_hold_up_the_next_request(sent: Sent, runner: ActionRunner) -> None:
    """handle() returns while the filter is still being evaluated on the work queue, and a
    ping sent after it is answered before it finishes."""
    from orch.core.runner import WorkQueue

    blocking, queue = Blocking(), WorkQueue(2, 100)
    node = queued_node(sent, runner, queue, blocking)
    try:
        node.handle(raw(make_request(filter={"block": ["x"]})))
        assert blocking.entered.wait(WAIT)
        ping = make_request()
        node.handle(raw(ping))
        replies = sent.wait_for(1)
        assert [reply.request_id for reply in replies] == [ping.id]
        assert not blocking.release.is_set()
    finally:
        blocking.release.set()
        queue.shutdown()
    assert len(sent.wait_for(2)) == 2  # the slow one is answered once it is let through


def test_full_backlog_drops_and_audits(sent: Sent, runner: ActionRunner,
                                       tmp_path: Path) -> None:
    from orch.core.audit import AuditLog
    from orch.core.runner import WorkQueue

    blocking, queue = Blocking(), WorkQueue(1, 1)
    audit = AuditLog(str(tmp_path / "audit.log"))
    node = queued_node(sent, runner, queue, blocking, audit)
    try:
        node.handle(raw(make_request(filter={"block": ["x"]})))
        refused = make_request()
        node.handle(raw(refused))  # the only slot is taken until the first one finishes
        assert stats(node)["dropped"] == 1
    finally:
        blocking.release.set()
        queue.shutdown()
        audit.close()
    records = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    busy = [r for r in records if r["request_id"] == refused.id]
    assert busy and busy[0]["decision"] == "rejected" and "filter_backlog" in busy[0]["reason"]


@pytest.mark.parametrize(("filter", "budget", "why"), [
    ({"fact": [{"fact": "role", "operator": "==", "value": "web"}] * 5}, {"max_terms": 4},
     "filter_max_terms"),
    ({"compound": ["role=web or " * 20 + "cpus>1"]}, {"max_terms": 10}, "filter_max_terms"),
    ({"compound": ["(" * 10 + "role=web" + ")" * 10 + " and not (a or not b)"]},
     {"max_depth": 2}, "filter_max_depth"),
    ({"class": ["nginx" * 100]}, {"max_bytes": 200}, "filter_max_bytes"),
    ({"block": ["x"] * 3}, {"max_seconds": 1e-9}, "filter_max_seconds"),
])
def test_filter_over_budget_is_refused_and_audited(
    sent: Sent, runner: ActionRunner, tmp_path: Path, filter: dict[str, Any],
    budget: dict[str, Any], why: str,
) -> None:
    """Over budget: no reply, counted as dropped, audited ``filter over budget: …``; a
    ping right after it is served (the barrier that shows nothing else was sent)."""
    from orch.core.audit import AuditLog

    blocking = Blocking()
    blocking.release.set()
    audit = AuditLog(str(tmp_path / "audit.log"))
    node = queued_node(sent, runner, None, blocking, audit, **budget)
    request = make_request(filter=filter)
    node.handle(raw(request))
    assert ask(node, sent, make_request()).ok
    assert len(sent.calls) == 1
    audit.close()
    records = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    refused = [r for r in records if r["request_id"] == request.id]
    assert len(refused) == 1 and refused[0]["decision"] == "rejected"
    assert refused[0]["reason"].startswith("filter over budget: ") and why in refused[0]["reason"]
    assert stats(node)["dropped"] == 1


@pytest.mark.parametrize("filter", [
    {"identity": ["/(?=node)/"]},
    {"fact": [{"fact": "role", "operator": "=~", "value": "a{100000}{100000}"}]},
    {"compound": ["role=~/(a)\\1/"]},
    {"nosuchkind": ["x"]},
])
def test_invalid_filter_is_silent_and_audited_as_rejected(
    sent: Sent, runner: ActionRunner, tmp_path: Path, filter: dict[str, Any]
) -> None:
    from orch.core.audit import AuditLog

    audit = AuditLog(str(tmp_path / "audit.log"))
    node = make_node(sent, runner, audit=audit)
    request = make_request(filter=filter)
    node.handle(raw(request))
    assert ask(node, sent, make_request()).ok  # the barrier: only the ping was answered
    assert len(sent.calls) == 1
    audit.close()
    records = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    [record] = [r for r in records if r["request_id"] == request.id]
    assert record["decision"] == "rejected" and record["reason"].startswith("invalid filter: ")
    assert stats(node)["filtered"] == 1


def test_a_simulated_fleet_backlog_holds_a_broadcast_to_every_node() -> None:
    """Every node of a Fleet shares one work queue: one broadcast fills it with a request
    per node, so the backlog is raised to twice the fleet's size whatever the setting."""
    from orch.core.fleet import Fleet, NodeSpec

    settings = Settings(broker=["memory://"], collective="backlogtest", security="insecure",
                        filter_backlog=3)
    fleet = Fleet(settings, [NodeSpec(f"n{i}") for i in range(5)], default_registry())
    queue = fleet.services.queue
    assert queue is not None
    hold = threading.Event()

    def held() -> None:
        hold.wait(WAIT)

    try:
        accepted = 0
        while accepted <= 20 and queue.submit(held):
            accepted += 1  # each held job keeps its slot until released
        assert accepted == 10
    finally:
        hold.set()
        fleet.services.close()
        fleet.transport.close()


def test_request_signed_with_a_revoked_certificate_is_audited_as_revoked(
        sent: Sent, runner: ActionRunner, tmp_path: Path) -> None:
    """The signer of a revoked request is known: the audit says who, with the fingerprint."""
    from orch.core.errors import RevokedError

    class Revoking(InsecureProvider):
        def verify(self, envelope: Envelope) -> Verified:
            raise RevokedError("certificate 'alice' (serial 1f) is revoked", "cert=alice",
                               "ab" * 32)

    audit = AuditLog(tmp_path / "audit.log")
    node = make_node(sent, runner, audit=audit)
    node.security = Revoking()
    node.handle(raw(make_request()))
    audit.close()
    [line] = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
    assert (line["decision"], line["caller"], line["fingerprint"]) == (
        "revoked", "cert=alice", "ab" * 32)
    assert "is revoked" in line["reason"]
    assert sent.calls == [] and stats(node)["dropped"] == 1


# --------------------------------------------------------------------- bounded actions


@pytest.fixture
def blocked() -> Iterator[None]:
    """``echo.slow`` blocks until the test sets RELEASE (and is released at the end)."""
    RELEASE.clear()
    Echo.finished.clear()
    yield
    RELEASE.set()


def test_requests_over_max_actions_get_a_busy_reply(sent: Sent, blocked: None) -> None:
    """The limit counts admitted actions (running or waiting for a worker), not workers."""
    runner = ActionRunner(workers=1, limit=2)
    try:
        node = make_node(sent, runner)
        for _ in range(2):  # one running, one waiting for the single worker
            node.handle(raw(make_request("echo", "slow")))
        busy = ask(node, sent, make_request("echo", "slow"))
        assert busy.statuscode is Status.BUSY
        assert "max_actions" in busy.statusmsg and "2" in busy.statusmsg
        assert stats(node)["busy"] == 1 and stats(node)["failed"] == 1
        RELEASE.set()
        done = sent.wait_for(3)
        assert sorted(r.statuscode for r in done) == [Status.OK, Status.OK, Status.BUSY]
        # The slots are free again: a new request runs.
        assert ask(node, sent, make_request("rpcutil", "ping")).statuscode is Status.OK
    finally:
        RELEASE.set()
        runner.shutdown(wait=1.0)


def test_busy_reply_is_audited(tmp_path: Path, sent: Sent, blocked: None) -> None:
    runner = ActionRunner(workers=1, limit=1)
    audit = AuditLog(str(tmp_path / "audit.log"))
    try:
        node = make_node(sent, runner, audit=audit)
        node.handle(raw(make_request("echo", "slow")))
        request = make_request("echo", "slow")
        assert ask(node, sent, request).statuscode is Status.BUSY
        record = [r for r in audit_lines(tmp_path / "audit.log")
                  if r["request_id"] == request.id][-1]
        assert record["decision"] == "rejected" and record["reason"].startswith("busy:")
    finally:
        RELEASE.set()
        runner.shutdown(wait=1.0)
        audit.close()


def test_shutdown_replies_to_finished_and_aborts_the_rest(sent: Sent, blocked: None) -> None:
    """SIGTERM's path: what finishes within the wait replies normally; what is still
    running gets 'aborted' at once, and its late result is never sent."""
    runner = ActionRunner(workers=2, limit=4)
    node = make_node(sent, runner)
    node.handle(raw(make_request("echo", "echo", {"message": "quick"})))
    assert sent.wait_for(1)[0].statuscode is Status.OK
    node.handle(raw(make_request("echo", "slow")))
    assert runner.shutdown(wait=0.0) == 1
    replies = sent.wait_for(2)
    assert replies[1].statuscode is Status.ABORTED
    assert "still running when node1.example shut down" in replies[1].statusmsg
    refused = make_request("rpcutil", "ping")
    assert ask(node, sent, refused).statuscode is Status.BUSY
    assert "shutting down" in sent.replies()[-1].statusmsg
    RELEASE.set()
    assert Echo.finished.wait(WAIT)
    assert ask(node, sent, make_request("rpcutil", "ping")).statuscode is Status.BUSY
    assert [r.statuscode for r in sent.replies()].count(Status.OK) == 1  # no late reply


# --------------------------------------------------------------------- shared decoding


class CountingProvider(InsecureProvider):
    """Accepts (or, ``refuse``, rejects) every request and counts what it was asked."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.verified = 0

    def verify(self, envelope: Envelope) -> Verified:
        self.verified += 1
        if self.refuse:
            raise ProtocolError("signature does not verify (test)")
        return Verified()


def test_nodes_sharing_decoded_requests_decode_once_and_each_verify(
        sent: Sent, runner: ActionRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """A simulated fleet's nodes receive copies of the same bytes: the request is decoded
    once, but every node checks the signature with its own provider, and a node whose
    provider refuses it does not run it, whoever decoded it first."""
    decoded: list[str] = []
    original = Request.decode.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Request], body: str) -> Request:
        decoded.append(body)
        return original(cls, body)

    monkeypatch.setattr(Request, "decode", classmethod(counting))
    shared = make_node(sent, runner, decoded=DecodedRequests()).services
    agents = {"rpcutil": default_registry().agents()["rpcutil"]}
    accepting, refusing = CountingProvider(), CountingProvider(refuse=True)
    nodes = [Node(name, COLLECTIVE, agents, lambda: dict(FACTS), CLASSES, shared, provider)
             for name, provider in (("a.example", accepting), ("b.example", refusing),
                                    ("c.example", accepting))]
    request = make_request(targets=("a.example", "b.example", "c.example"))
    message = raw(request)
    for node in nodes:
        node.handle(bytes(message))  # a copy each, as each delivery is
    replies = sent.wait_for(2)
    assert sorted(reply.sender for reply in replies) == ["a.example", "c.example"]
    assert len(decoded) == 1
    assert (accepting.verified, refusing.verified) == (2, 1)
    assert stats(nodes[1])["dropped"] == 1


def test_shared_decoding_is_bounded() -> None:
    from orch.core import decoded as module

    cache = DecodedRequests(size=2)
    request = make_request()
    envelope = Envelope("request", request.encode(), {})
    for key in (b"one", b"two", b"three"):
        cache.put(key, envelope, request)
    assert cache.get(b"one") is None  # the oldest went first
    assert cache.get(b"three") == (envelope, request)
    large = b"x" * (module.MAX_BYTES + 1)
    cache.put(large, envelope, request)
    assert cache.get(large) is None
