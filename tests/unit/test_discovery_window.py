"""Collection ends when replies stop — measured against the fleet's own pace — and says so
when a timeout ended it instead; deadlines start once publishing is over.

A scripted fleet stands in for the broker so the moments replies arrive are exact, and a
virtual clock stands in for ``time`` in the client (and its reply checker): every "sleep"
advances it at once, so the scripted moments are exact however loaded the machine is. No
test here asserts how long anything took: each checks which replies were kept and what
the result (or the command line) says about them.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from click.testing import CliRunner, Result

from orch.cli.main import cli
from orch.core import checkpool
from orch.core import client as client_module
from orch.core import collect as collect_module
from orch.core.client import PER_NODE_ALLOWANCE, CallResult, Client
from orch.core.config import load_settings
from orch.core.protocol import Envelope, Reply, Request, Status


class VirtualClock:
    """``time`` as the client sees it: ``sleep`` moves ``monotonic`` on, and nothing else does.

    Installed in place of the ``time`` module of :mod:`orch.core.client`,
    :mod:`orch.core.collect` and :mod:`orch.core.checkpool`; the scripted fleet and the
    tests' slow callbacks sleep on it too, so "0.3 s of work" is exactly 0.3 s of this
    clock and no real time passes.
    """

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


CLOCK = VirtualClock()


@pytest.fixture(autouse=True)
def virtual_time(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    monkeypatch.setattr(client_module, "time", CLOCK)
    monkeypatch.setattr(collect_module, "time", CLOCK)
    monkeypatch.setattr(checkpool, "time", CLOCK)
    return CLOCK


class ScriptedFleet:
    """A client channel whose "nodes" answer each request at scripted moments.

    A broadcast is answered by ``node0``, ``node1`` … at ``offsets`` (seconds after it was
    published); a direct request by its node at once, unless the node is ``silent``. Each
    direct publish costs ``publish_cost`` seconds, as 10,000 of them do on a real broker.
    After the ``stall_after``-th reply, the next receive oversleeps by ``stall`` seconds
    and returns nothing, as when the client's process is descheduled.
    """

    reply_to = "orch.window.reply.test"

    def __init__(self, offsets: Sequence[float] = (), *, publish_cost: float = 0.0,
                 silent: Sequence[str] = (), stall_after: int | None = None,
                 stall: float = 0.0) -> None:
        self.offsets = list(offsets)
        self.stall_after, self.stall, self.delivered = stall_after, stall, 0
        self.publish_cost = publish_cost
        self.silent = set(silent)
        self._due: list[tuple[float, int, bytes]] = []
        self._order = itertools.count()

    def _answer(self, payload: bytes, sender: str, at: float) -> None:
        request = Request.decode(Envelope.decode(payload).body)
        reply = Reply(request.id, sender, request.agent, request.action, Status.OK, "OK", {})
        heapq.heappush(self._due, (at, next(self._order),
                                   Envelope("reply", reply.encode()).encode()))

    def broadcast(self, agent: str, payload: bytes, ttl: float) -> None:
        now = CLOCK.monotonic()
        for index, offset in enumerate(self.offsets):
            self._answer(payload, f"node{index}", now + offset)

    def direct(self, identity: str, payload: bytes, ttl: float) -> None:
        CLOCK.sleep(self.publish_cost)
        if identity not in self.silent:
            self._answer(payload, identity, CLOCK.monotonic())

    def receive(self, timeout: float) -> bytes | None:
        if self.delivered == self.stall_after:
            self.stall_after = None
            CLOCK.sleep(max(timeout, 0) + self.stall)
            return None
        now = CLOCK.monotonic()
        if not self._due or self._due[0][0] > now + timeout:
            CLOCK.sleep(max(timeout, 0))
            return None
        CLOCK.sleep(max(self._due[0][0] - now, 0))
        self.delivered += 1
        return heapq.heappop(self._due)[2]

    def close(self) -> None:
        pass


def steady(count: int, every: float) -> list[float]:
    """Reply offsets of a fleet still answering, one reply every ``every`` seconds."""
    return [i * every for i in range(count)]


@pytest.fixture
def client() -> Iterator[Client]:
    settings = load_settings(overrides={
        "broker": "memory://", "collective": f"w{uuid.uuid4().hex[:8]}",
        "security": "insecure"}, environ={})
    with Client(settings) as client:
        client.verify_workers = 0  # checked in this process, on the virtual clock
        yield client


def broadcast(client: Client, fleet: ScriptedFleet, timeout: float = 5.0,
              window: float = 0.2) -> CallResult:
    client._channel = fleet
    return client.broadcast("rpcutil", "ping", timeout=timeout, quiet=window)


# --------------------------------------------------------------------- the quiet window


def test_collection_ends_one_window_after_a_steady_stream(client: Client) -> None:
    # Replies 50 ms apart, then silence: a 0.2 s window ends it with all of them.
    result = broadcast(client, ScriptedFleet([0.0, 0.05, 0.10, 0.15]))
    assert sorted(result.replies) == ["node0", "node1", "node2", "node3"]
    assert result.cut_short is None


def test_a_fleet_that_paused_once_is_waited_for_longer(client: Client) -> None:
    # After a 0.15 s gap the window stretches to 0.3 s, so a reply 0.25 s after the previous
    # one still counts; a fixed 0.2 s window would have stopped before it.
    result = broadcast(client, ScriptedFleet([0.0, 0.15, 0.40]))
    assert sorted(result.replies) == ["node0", "node1", "node2"]
    assert result.cut_short is None


def test_a_reply_after_a_long_silence_is_not_waited_for(client: Client) -> None:
    # No gap longer than 50 ms was seen; 1 s of silence ends collection — the replies had
    # stopped, so the result is complete as far as anyone can tell.
    result = broadcast(client, ScriptedFleet([0.0, 0.05, 1.05]))
    assert sorted(result.replies) == ["node0", "node1"]
    assert result.cut_short is None


def test_a_client_busy_with_a_reply_is_not_silence(client: Client) -> None:
    # Handling the first reply takes 0.3 s, longer than the 0.2 s window, while the fleet
    # keeps answering: the window counts only time spent waiting for replies.
    client._channel = ScriptedFleet(steady(10, 0.02))

    def busy(reply: Reply, result: CallResult) -> None:
        if len(result.replies) == 1:
            CLOCK.sleep(0.3)

    result = client.broadcast("rpcutil", "ping", timeout=5.0, quiet=0.2, on_reply=busy)
    assert len(result.replies) == 10 and result.cut_short is None


def test_a_descheduled_client_looks_again_before_ending(client: Client) -> None:
    # The client oversleeps its wait by 0.3 s after the third reply; the replies that came
    # meanwhile are already there, so the window did not really pass in silence.
    result = broadcast(client, ScriptedFleet(steady(10, 0.02), stall_after=3, stall=0.3))
    assert len(result.replies) == 10 and result.cut_short is None


# --------------------------------------------------------------------- cut short


def test_a_broadcast_ended_by_its_timeout_while_replies_arrive_says_so(client: Client) -> None:
    # Replies every 20 ms for 2 s; the 0.3 s timeout comes while they are still arriving.
    result = broadcast(client, ScriptedFleet(steady(100, 0.02)), timeout=0.3)
    assert result.replies and len(result.replies) < 100
    assert result.cut_short is not None
    assert result.cut_short.startswith("the broadcast was cut off at the 0.3 s timeout while "
                                       "replies were still arriving")
    assert f"; {len(result.replies)} node(s) answered" in result.cut_short
    assert not result.succeeded


def test_a_broadcast_nobody_answered_is_not_cut_short(client: Client) -> None:
    result = broadcast(client, ScriptedFleet([]), timeout=0.1)
    assert result.replies == {} and result.cut_short is None


def test_a_cut_short_ping_names_the_setting_to_raise(client: Client) -> None:
    client._channel = ScriptedFleet(steady(100, 0.02))
    client.settings = client.settings.with_values({"discovery_timeout": 0.3}, "test")
    result = client.ping()
    assert result.cut_short is not None
    assert result.cut_short.startswith("the ping was cut off at the 0.3 s timeout")
    assert result.cut_short.endswith(
        "raise --discovery-timeout (discovery_timeout) to wait longer")


def test_a_call_after_cut_short_discovery_does_not_succeed(client: Client) -> None:
    client._channel = ScriptedFleet(steady(100, 0.02))
    client.settings = client.settings.with_values({"discovery_timeout": 0.3}, "test")
    discovered = client.discover()
    assert discovered and discovered.cut_short is not None
    assert discovered.cut_short.startswith("discovery was cut off at the 0.3 s timeout")

    client._channel = ScriptedFleet(steady(100, 0.02))
    result = client.call("rpcutil", "ping")
    # Every discovered node answered the call itself; the call still did not succeed.
    assert result.replies and not result.missing and not result.failed
    assert result.cut_short is not None and result.cut_short.startswith("discovery was cut")
    assert not result.succeeded


# --------------------------------------------------------------------- remembered answers


def remembered(client: Client, fleet: ScriptedFleet, timeout: float = 5.0,
               filter: dict[str, list[Any]] | None = None) -> CallResult:
    """A broadcast that remembers who answered (as discovery and a broadcast ping do)."""
    client._channel = fleet
    return client.broadcast("rpcutil", "ping", filter=filter, timeout=timeout, quiet=0.2,
                            remember=True)


def test_a_remembered_node_slower_than_the_window_is_waited_for(client: Client) -> None:
    remembered(client, ScriptedFleet([0.0, 0.05, 0.10]))
    # node2 now answers 0.55 s after node1: past the 0.2 s window (even doubled by the
    # 0.05 s gap), which alone would have ended the broadcast without it.
    result = remembered(client, ScriptedFleet([0.0, 0.05, 0.60]))
    assert sorted(result.replies) == ["node0", "node1", "node2"]
    assert result.absent == [] and result.cut_short is None
    # The same fleet, without the memory: node2 is left out, and nothing says so.
    plain = broadcast(client, ScriptedFleet([0.0, 0.05, 0.60]))
    assert sorted(plain.replies) == ["node0", "node1"] and plain.absent == []


def test_a_remembered_node_that_stays_silent_is_named_then_forgotten(client: Client) -> None:
    remembered(client, ScriptedFleet([0.0, 0.01, 0.02]))
    started = CLOCK.monotonic()
    result = remembered(client, ScriptedFleet([0.0, 0.01]), timeout=1.0)
    assert sorted(result.replies) == ["node0", "node1"]
    assert result.absent == ["node2"]
    assert CLOCK.monotonic() - started >= 1.0  # waited for it up to the timeout
    assert result.cut_short is None  # the replies had stopped long before
    # Silent for a whole timeout, it is no longer waited for nor named.
    again = remembered(client, ScriptedFleet([0.0, 0.01]), timeout=1.0)
    assert sorted(again.replies) == ["node0", "node1"] and again.absent == []


def test_once_every_remembered_node_answered_the_settle_replaces_the_window(
        client: Client) -> None:
    remembered(client, ScriptedFleet([0.0, 0.01, 0.02]))
    # node3 is new and answers in step (20 ms after node2); node4, new too, 0.1 s after
    # node3: inside the 0.2 s window, past the 0.05 s settle that follows the last
    # remembered node and node3.
    started = CLOCK.monotonic()
    result = remembered(client, ScriptedFleet([0.0, 0.01, 0.02, 0.04, 0.14]))
    assert sorted(result.replies) == ["node0", "node1", "node2", "node3"]
    assert CLOCK.monotonic() - started == pytest.approx(0.04 + 0.05)
    # node3 is remembered now, and waited for when it is slow.
    result = remembered(client, ScriptedFleet([0.0, 0.01, 0.02, 0.6]))
    assert sorted(result.replies) == ["node0", "node1", "node2", "node3"]


def test_a_new_node_slower_than_the_settle_is_learned_by_the_next_whole_window(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from orch.core import answered

    remembered(client, ScriptedFleet([0.0, 0.01, 0.02]))
    # node3 is new and answers 0.13 s after node2: past the settle, inside the window.
    slow_newcomer = [0.0, 0.01, 0.02, 0.15]
    assert len(remembered(client, ScriptedFleet(slow_newcomer)).replies) == 3
    # RELEARN seconds after the memory last waited the whole window, a broadcast does so
    # again, and hears it; it is remembered (and waited for) from then on.
    monkeypatch.setattr(answered, "RELEARN", 0.0)
    assert len(remembered(client, ScriptedFleet(slow_newcomer)).replies) == 4
    monkeypatch.undo()
    assert len(remembered(client, ScriptedFleet(slow_newcomer)).replies) == 4


def test_a_pause_does_not_stretch_the_settle_once_all_answered(client: Client) -> None:
    # The fleet pauses 0.3 s once (a plain window would then wait 0.6 s after the last
    # reply); once every remembered node answered, the 0.05 s settle alone ends it.
    remembered(client, ScriptedFleet([0.0, 0.10, 0.11]))
    started = CLOCK.monotonic()
    result = remembered(client, ScriptedFleet([0.0, 0.30, 0.31]))
    assert len(result.replies) == 3
    assert CLOCK.monotonic() - started == pytest.approx(0.31 + 0.05)


def test_a_remembered_fleet_gets_the_time_its_size_needs(client: Client) -> None:
    # 1,000 nodes whose replies take 0.4 s to come through, a 0.3 s timeout: cut short
    # while nobody knows how many will answer; remembered, the timeout grows by
    # PER_NODE_ALLOWANCE a node (0.5 s here), as a direct call's does, and all are heard.
    every = 0.4 / 1000
    assert 1000 * PER_NODE_ALLOWANCE > 0.4 - 0.3
    remembered(client, ScriptedFleet(steady(1000, every)), timeout=5.0)
    plain = broadcast(client, ScriptedFleet(steady(1000, every)), timeout=0.3)
    assert plain.cut_short is not None
    result = remembered(client, ScriptedFleet(steady(1000, every)), timeout=0.3)
    assert len(result.replies) == 1000 and result.cut_short is None


def test_each_question_is_remembered_apart(client: Client) -> None:
    remembered(client, ScriptedFleet([0.0, 0.01, 0.02]), filter={"fact": ["role=web"]})
    other = remembered(client, ScriptedFleet([0.0, 0.01]), timeout=1.0,
                       filter={"fact": ["role=db"]})
    assert other.absent == []
    same = remembered(client, ScriptedFleet([0.0, 0.01]), timeout=1.0,
                      filter={"fact": ["role=web"]})
    assert same.absent == ["node2"]


def test_a_broadcast_cut_short_forgets_nobody(client: Client) -> None:
    remembered(client, ScriptedFleet(steady(10, 0.01)))
    cut = remembered(client, ScriptedFleet(steady(100, 0.02)), timeout=0.1)
    assert cut.cut_short is not None and len(cut.replies) < 10
    # What the cut broadcast did not hear is still expected: the next one waits for it.
    result = remembered(client, ScriptedFleet([0.0, 0.01]), timeout=1.0)
    assert result.absent == [f"node{i}" for i in range(2, 10)]


def test_damaged_memory_costs_only_the_plain_window(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from orch.core import answered, cache

    # As on a real broker: what is learned goes to the cache directory.
    monkeypatch.setattr(client.transport, "process_local", False)
    remembered(client, ScriptedFleet([0.0, 0.01, 0.02]))
    directory = cache.cache_dir()
    assert directory is not None
    files = sorted(directory.glob(f"{answered.PREFIX}*.json"))
    assert files
    for path in files:
        path.write_text('{"digest": "not this one", "nodes": ["node9"]}')
    result = remembered(client, ScriptedFleet([0.0, 0.01]), timeout=1.0)
    assert sorted(result.replies) == ["node0", "node1"] and result.absent == []


def test_a_broker_of_this_process_is_remembered_in_this_process_only(
        client: Client) -> None:
    # memory:// lives in the process: `orch demo --nodes 60` then `orch demo` are two
    # fleets on "the same" broker. What one learned is neither on disk nor in the other.
    from orch.core import answered, cache

    directory = cache.cache_dir()
    assert directory is not None
    before = set(directory.glob(f"{answered.PREFIX}*"))
    remembered(client, ScriptedFleet([0.0, 0.01, 0.02]))
    assert set(directory.glob(f"{answered.PREFIX}*")) == before
    assert remembered(client, ScriptedFleet([0.0, 0.01]), timeout=1.0).absent == ["node2"]


def test_memory_can_be_turned_off(client: Client) -> None:
    client.settings = client.settings.with_values({"discovery_memory": False}, "test")
    remembered(client, ScriptedFleet([0.0, 0.01, 0.02]))
    result = remembered(client, ScriptedFleet([0.0, 0.01]), timeout=1.0)
    assert result.absent == []


# --------------------------------------------------------------------- deadlines


def test_the_deadline_starts_when_publishing_ends(client: Client) -> None:
    # Publishing to 20 nodes takes 0.6 s, three times the 0.2 s timeout; every node answered
    # during it. A deadline started before publishing would have ended before collecting.
    nodes = [f"n{i:02d}" for i in range(20)]
    client._channel = ScriptedFleet(publish_cost=0.03)
    request = client.new_request("rpcutil", "ping")
    result = client.send_direct(request, nodes, timeout=0.2)
    assert sorted(result.replies) == nodes and not result.missing


def test_time_spent_verifying_replies_is_not_counted_against_the_fleet(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every reply is waiting when collection starts, but verifying each costs 0.05 s: the
    # 20 of them take 1 s of this client's time, five times the 0.2 s timeout.
    verify = client.security.verify

    def slow_verify(envelope: Envelope) -> Any:
        CLOCK.sleep(0.05)
        return verify(envelope)

    monkeypatch.setattr(client.security, "verify", slow_verify)
    nodes = [f"n{i:02d}" for i in range(20)]
    client._channel = ScriptedFleet()
    request = client.new_request("rpcutil", "ping")
    result = client.send_direct(request, nodes, timeout=0.2)
    assert sorted(result.replies) == nodes and not result.missing


def test_a_direct_call_allows_for_the_size_of_its_list(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(client, "collect", lambda request, nodes, timeout, **_: waits.append(
        timeout) or CallResult("rpcutil", "ping", request.id, list(nodes)))
    client._channel = ScriptedFleet()
    request = client.new_request("rpcutil", "ping")
    for count in (1, 10_000):
        client.send_direct(request, [f"n{i}" for i in range(count)], timeout=2.0)
    assert waits == [2.0 + PER_NODE_ALLOWANCE, 2.0 + 10_000 * PER_NODE_ALLOWANCE]


def test_silent_nodes_are_still_reported_missing_at_the_deadline(client: Client) -> None:
    client._channel = ScriptedFleet(silent=["n1"])
    request = client.new_request("rpcutil", "ping")
    result = client.send_direct(request, ["n0", "n1", "n2"], timeout=0.2)
    assert sorted(result.replies) == ["n0", "n2"] and result.missing == ["n1"]
    assert result.cut_short is None


# --------------------------------------------------------------------- the command line


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ScriptedFleet]]:
    """Every Client the CLI creates talks to the next scripted fleet of the list."""
    fleets: list[ScriptedFleet] = []

    def channel(self: Client) -> ScriptedFleet:
        # Kept on the client itself: keyed by id(), a later client at the address of a
        # collected one would get that one's fleet.
        fleet: ScriptedFleet | None = self.__dict__.get("_scripted_fleet")
        if fleet is None:
            self.verify_workers = 0  # checked in this process, on the virtual clock
            fleet = self.__dict__["_scripted_fleet"] = fleets.pop(0)
        return fleet

    monkeypatch.setattr(Client, "channel", property(channel))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield fleets
    root.handlers[:] = handlers  # the CLI reconfigures logging onto CliRunner's stderr
    root.setLevel(level)


def run(*args: str, input: str | None = None, collective: str | None = None) -> Result:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ORCH_")}
    env.update({"ORCH_BROKER": "memory://",
                "ORCH_COLLECTIVE": collective or f"w{uuid.uuid4().hex[:8]}",
                "ORCH_SECURITY": "insecure", "ORCH_DISCOVERY_TIMEOUT": "0.3",
                "ORCH_LOG_LEVEL": "error"})
    return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)


def test_cli_ping_cut_short_exits_1_and_says_why(scripted: list[ScriptedFleet]) -> None:
    scripted.append(ScriptedFleet(steady(100, 0.02)))
    result = run("ping")
    assert result.exit_code == 1, result.output
    assert "time=" in result.stdout
    assert ("Incomplete: the ping was cut off at the 0.3 s timeout while replies were still "
            "arriving;") in result.stderr
    assert "raise --discovery-timeout (discovery_timeout) to wait longer" in result.stderr


def test_cli_ping_json_carries_the_cut(scripted: list[ScriptedFleet]) -> None:
    scripted.append(ScriptedFleet(steady(100, 0.02)))
    result = run("ping", "--json")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["replies"]
    assert document["cut_short"].startswith("the ping was cut off at the 0.3 s timeout")
    assert f"; {len(document['replies'])} node(s) answered" in document["cut_short"]


def test_cli_ping_complete_broadcast_exits_0(scripted: list[ScriptedFleet]) -> None:
    scripted.append(ScriptedFleet([0.0, 0.01, 0.02]))
    result = run("ping", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert len(document["replies"]) == 3 and document["cut_short"] is None


def test_cli_rpc_after_cut_short_discovery_exits_1(scripted: list[ScriptedFleet]) -> None:
    scripted.append(ScriptedFleet(steady(100, 0.02)))
    result = run("rpc", "rpcutil", "ping", "--json")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["missing"] == [] and document["replies"]
    assert document["cut_short"].startswith("discovery was cut off at the 0.3 s timeout")


def test_cli_find_cut_short_prints_what_it_found_and_exits_1(
        scripted: list[ScriptedFleet]) -> None:
    scripted.append(ScriptedFleet(steady(100, 0.02)))
    result = run("find")
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[0] == "node0"
    assert "Incomplete: discovery was cut off" in result.stderr

    scripted.append(ScriptedFleet(steady(100, 0.02)))
    document = json.loads(run("find", "--json").stdout)
    assert document["nodes"] and document["cut_short"].startswith("discovery was cut off")


def test_cli_ping_known_nodes_slower_to_publish_than_the_timeout(
        scripted: list[ScriptedFleet]) -> None:
    nodes = [f"n{i:02d}" for i in range(20)]
    scripted.append(ScriptedFleet(publish_cost=0.03))  # 0.6 s of publishing, 0.3 s timeout
    result = run("ping", "--nodes", "-", "--json", input="\n".join(nodes))
    assert result.exit_code == 0, result.output
    assert [reply["sender"] for reply in json.loads(result.stdout)["replies"]] == nodes


def test_cli_names_nodes_that_answered_before_and_not_now(
        scripted: list[ScriptedFleet]) -> None:
    collective = f"w{uuid.uuid4().hex[:8]}"
    scripted.append(ScriptedFleet([0.0, 0.01, 0.02]))
    assert run("ping", collective=collective).exit_code == 0
    scripted.append(ScriptedFleet([0.0, 0.01]))
    result = run("ping", collective=collective)
    assert result.exit_code == 0, result.output  # a broadcast's absent nodes do not fail it
    assert ("1 node(s) that answered this before did not answer now (gone, slow, or no "
            "longer selected):\n    node2") in result.stdout

    for command in (("find",), ("rpc", "rpcutil", "ping"), ("rpc", "rpcutil", "ping",
                                                              "--batch", "1")):
        scripted.extend([ScriptedFleet([0.0, 0.01, 0.02]), ScriptedFleet([0.0, 0.01])])
        run(*command, collective=collective)
        document = json.loads(run(*command, "--json", collective=collective).stdout)
        assert document["absent"] == ["node2"], command
