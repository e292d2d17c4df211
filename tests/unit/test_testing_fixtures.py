"""The orch.testing fixtures, used the way a plugin author uses them.

orch.testing is loaded here with ``pytest_plugins`` so that this module works whether or not
orch's ``pytest11`` entry point is installed (with it installed the line is a no-op, because
the entry point is named after the module).
"""

from __future__ import annotations

import importlib
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from orch import scaffold
from orch.core.agent import ActionFailed, ActionReply, ActionRequest, Agent, action
from orch.core.client import CallResult, Client
from orch.core.config import load_settings
from orch.core.errors import ArgumentError, PluginError, UnknownAgentError
from orch.core.fleet import NodeSpec
from orch.core.protocol import Reply, Status
from orch.testing import (
    DEFAULT_NODES,
    FleetFactory,
    OrchFleet,
    assert_all_failed,
    assert_all_ok,
    broker_problem,
    data_by_node,
    describe_result,
    node_specs,
    wait_until,
)

pytest_plugins = ["orch.testing"]

NODES = {
    "web1": {"role": "web", "env": "prod", "os": {"family": "Debian"}, "cores": 8},
    "web2": {"role": "web", "env": "dev", "os": {"family": "Debian"}, "cores": 2},
    "db1": {"role": "db", "env": "prod", "os": {"family": "RedHat"}, "cores": 16},
}
CLASSES = {"web1": ["nginx", "role::web"], "web2": ["nginx", "role::web"],
           "db1": ["postgresql", "role::db"]}
ALL = ["db1", "web1", "web2"]

PROBE_DDL = {
    "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
    "metadata": {"name": "probe", "description": "orch.testing's test agent",
                 "author": "orch tests", "license": "Apache-2.0", "version": "1.0.0",
                 "timeout": 2},
    "actions": [
        {"action": "whoami", "description": "Who asked, and who answers",
         "display": "always", "input": {},
         "output": {"caller": {"description": "The authenticated caller", "type": "string"},
                    "identity": {"description": "The node", "type": "string"}}},
        {"action": "refuse_role", "description": "Fail on the nodes of one role",
         "input": {"role": {"description": "The role to fail on", "type": "string",
                            "optional": False}},
         "output": {"role": {"description": "This node's role", "type": "string"}}},
    ],
}


@pytest.fixture(scope="module")
def probe_agent(tmp_path_factory: pytest.TempPathFactory) -> type[Agent]:
    """An agent that is not installed: the fleet gets the class itself."""
    ddl = tmp_path_factory.mktemp("probe") / "probe.json"
    ddl.write_text(json.dumps(PROBE_DDL))

    class Probe(Agent):
        name = "probe"
        ddl_file = str(ddl)  # an absolute path wins over "next to the module"

        @action
        def whoami(self, request: ActionRequest, reply: ActionReply) -> None:
            reply["caller"] = request.caller
            reply["identity"] = self.node.identity

        @action
        def refuse_role(self, request: ActionRequest, reply: ActionReply) -> None:
            role = self.node.view().fact("role")
            reply["role"] = role
            if role == request.data["role"]:
                raise ActionFailed(f"refusing on {role} nodes")

    return Probe


def fake_result(replies: dict[str, Status], expected: list[str] | None = None) -> CallResult:
    """A CallResult with one reply per identity, each with the given status."""
    result = CallResult("probe", "whoami", "req-1", expected)
    for name, status in replies.items():
        message = "OK" if status == Status.OK else f"{name} went wrong"
        result.replies[name] = Reply("req-1", name, "probe", "whoami", status, message,
                                     {"identity": name} if status == Status.OK else {})
    return result


# ----------------------------------------------------------------------------- fleets


def test_fleet_with_chosen_facts_and_classes(orch_fleet: FleetFactory) -> None:
    fleet = orch_fleet(NODES, classes=CLASSES)
    assert fleet.identities == ALL
    assert fleet.nodes["db1"].facts["cores"] == 16
    assert fleet.nodes["web1"].classes == frozenset({"nginx", "role::web"})
    result = fleet.call("rpcutil", "get_fact", fact="os.family")
    assert_all_ok(result, expected=ALL)
    assert data_by_node(result) == {
        "db1": {"fact": "os.family", "value": "RedHat"},
        "web1": {"fact": "os.family", "value": "Debian"},
        "web2": {"fact": "os.family", "value": "Debian"},
    }
    inventory = fleet.call("rpcutil", "inventory", nodes=["web2"]).replies["web2"].data
    assert inventory["classes"] == ["nginx", "role::web"]
    assert inventory["facts"]["env"] == "dev"


def test_default_fleet_through_orch_client(orch_client: Client) -> None:
    result = orch_client.ping()
    assert sorted(result.replies) == sorted(DEFAULT_NODES)
    assert orch_client.settings.broker == ["memory://"]


def test_requests_are_signed_like_production(orch_fleet: FleetFactory) -> None:
    fleet = orch_fleet(["n1"])
    assert fleet.settings.security == "x509"
    # An unsigned request is dropped by the node: it never reaches an agent.
    unsigned = load_settings(overrides={
        "broker": "memory://", "collective": fleet.settings.collective,
        "security": "insecure", "timeout": 0.5}, environ={})
    with Client(unsigned) as client:
        result = client.call("rpcutil", "ping", nodes=["n1"])
    assert result.missing == ["n1"]
    assert fleet.node("n1").statistics()["dropped"] == 1
    assert fleet.call("rpcutil", "ping").ok == ["n1"]


def test_each_fleet_has_its_own_collective(orch_fleet: FleetFactory) -> None:
    first = orch_fleet(["a1", "a2"])
    second = orch_fleet({"b1": {}})
    assert first.settings.collective != second.settings.collective
    assert sorted(first.ping().replies) == ["a1", "a2"]
    assert sorted(second.ping().replies) == ["b1"]


def test_nodes_as_specs_and_identities() -> None:
    specs = node_specs([NodeSpec("n1", {"role": "x"}, frozenset({"base"})), "n2"],
                       classes=["monitoring"])
    assert specs == [NodeSpec("n1", {"role": "x"}, frozenset({"base", "monitoring"})),
                     NodeSpec("n2", {}, frozenset({"monitoring"}))]
    assert node_specs("solo") == [NodeSpec("solo")]
    assert node_specs({"n1": {}}, classes={"n1": "one"})[0].classes == frozenset({"one"})


@pytest.mark.parametrize(("nodes", "classes", "message"), [
    (["n1", "n1"], None, "node 'n1' is listed twice"),
    (["bad name"], None, "'bad name' is not a valid node identity"),
    ([], None, "at least one node"),
    ({"n1": {}}, {"n2": ["x"]}, "classes given for node(s) n2 that are not in the fleet"),
    ({"n1": ["role=web"]}, None, "the facts of node 'n1' must be a mapping"),
])
def test_node_specs_refuse_mistakes(nodes: Any, classes: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        node_specs(nodes, classes)


def test_fleet_outside_pytest_is_a_context_manager() -> None:
    with OrchFleet.start({"solo": {"role": "x"}}, agents=["rpcutil"]) as fleet:
        scratch = fleet.pki.directory.parent
        assert scratch.is_dir()
        assert_all_ok(fleet.call("rpcutil", "ping"), expected=["solo"])
    assert not scratch.exists()  # its own throw-away CA is removed with it
    fleet.stop()  # idempotent


# ----------------------------------------------------------------------------- agents


def test_agent_class_that_is_not_installed(orch_fleet: FleetFactory,
                                           probe_agent: type[Agent]) -> None:
    fleet = orch_fleet(NODES, agents=[probe_agent])
    assert fleet.agents == ["probe", "rpcutil"]  # rpcutil stays: discovery needs it
    result = fleet.call("probe", "whoami", filter="role=web")
    assert_all_ok(result, expected=["web1", "web2"])
    # The caller is the name in the client certificate, authenticated by the node.
    assert data_by_node(result)["web1"] == {"caller": "cert=orch.tester", "identity": "web1"}


def test_client_for_another_caller(orch_fleet: FleetFactory, probe_agent: type[Agent]) -> None:
    fleet = orch_fleet(["n1"], agents=[probe_agent])
    alice = fleet.client_for("alice")
    result = alice.call("probe", "whoami", nodes=["n1"])
    assert result.replies["n1"].data["caller"] == "cert=alice"


def test_action_policy_with_settings_and_client_for(
    orch_fleet: FleetFactory, probe_agent: type[Agent], tmp_path: Path,
) -> None:
    """The example of docs/author-kit.md: nodes enforce a policy, callers are certificates."""
    (tmp_path / "probe.policy").write_text(
        "policy default deny\n"
        "allow\tcert=alice\twhoami\t*\t*\n"
        "allow\t*\twhoami\trole=db\t*\n"
    )
    fleet = orch_fleet(NODES, agents=[probe_agent], settings={"policy_dir": str(tmp_path)})
    assert_all_ok(fleet.client_for("alice").call("probe", "whoami", nodes=fleet.identities),
                  expected=ALL)
    result = fleet.call("probe", "whoami")  # the fleet's own caller: cert=orch.tester
    assert result.ok == ["db1"]
    assert_all_failed(fleet.call("probe", "whoami", filter="role=web"), status="aborted",
                      message="not authorized", expected=["web1", "web2"])


def test_hosting_a_subset_of_installed_agents(orch_fleet: FleetFactory) -> None:
    fleet = orch_fleet(["n1"], agents=["rpcutil"])
    assert fleet.agents == ["rpcutil"]
    with pytest.raises(PluginError, match="nosuchagent"):
        orch_fleet(["n1"], agents=["nosuchagent"])


def test_calling_an_agent_the_fleet_does_not_host(orch_fleet: FleetFactory) -> None:
    fleet = orch_fleet(["n1"], agents=["rpcutil"])
    with pytest.raises(UnknownAgentError, match=r"pip install -e \.") as caught:
        fleet.call("hello", "greet", name="x")
    assert "orch_fleet(agents=[YourAgent])" in str(caught.value)


def test_arguments_are_checked_against_the_ddl_before_sending(
    orch_fleet: FleetFactory,
) -> None:
    fleet = orch_fleet(["n1"], agents=["rpcutil"])
    with pytest.raises(ArgumentError, match="fact"):
        fleet.call("rpcutil", "get_fact")
    # An argument named like a keyword of call() goes in the positional mapping.
    result = fleet.call("rpcutil", "get_fact", {"fact": "role"}, nodes=["n1"])
    assert_all_ok(result, expected=["n1"])


def test_scaffolded_agent_runs_before_it_is_installed(
    orch_fleet: FleetFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What `orch plugin new` writes works with the fixtures (installed: test_scaffold.py)."""
    created = scaffold.create("unitecho", tmp_path, author="me", description="Unit echo")
    monkeypatch.syspath_prepend(str(created.root))
    module = importlib.import_module("orch_unitecho.agent")
    fleet = orch_fleet(NODES, agents=[module.UnitechoAgent])
    result = fleet.call("unitecho", "echo", message="hi", filter="env=prod")
    assert_all_ok(result, expected=["db1", "web1"])
    assert data_by_node(result) == {"db1": {"message": "hi", "node": "db1"},
                                    "web1": {"message": "hi", "node": "web1"}}


# ----------------------------------------------------------------------------- filters


@pytest.mark.parametrize(("where", "expected"), [
    ("role=web", ["web1", "web2"]),
    ("role=web and env=prod", ["web1"]),
    ("os.family=RedHat or env=dev", ["db1", "web2"]),
    ("cores>4", ["db1", "web1"]),
    ("not role=web", ["db1"]),
])
def test_compound_filter_strings(orch_fleet: FleetFactory, where: str,
                                 expected: list[str]) -> None:
    fleet = orch_fleet(NODES, classes=CLASSES)
    result = fleet.call("rpcutil", "ping", filter=where)
    assert_all_ok(result, expected=expected)
    assert result.expected == expected  # discovered first, then addressed directly


def test_filter_builder_takes_what_the_cli_takes(orch_fleet: FleetFactory) -> None:
    fleet = orch_fleet(NODES, classes=CLASSES)
    assert fleet.discover(fleet.filter(cls="nginx")) == ["web1", "web2"]
    assert fleet.discover(fleet.filter(fact=["role=web", "env=dev"])) == ["web2"]
    assert fleet.discover(fleet.filter(identity=["db1", "web2"])) == ["db1", "web2"]
    assert fleet.discover(fleet.filter(identity="/^web/", cls="role::web")) == ["web1", "web2"]
    assert fleet.discover(fleet.filter(with_="role=db postgresql")) == ["db1"]
    assert fleet.discover(fleet.filter(agent="rpcutil")) == ALL
    assert sorted(fleet.ping("env=prod").replies) == ["db1", "web1"]


def test_addressing_nodes_directly(orch_fleet: FleetFactory) -> None:
    fleet = orch_fleet(NODES, settings={"timeout": 0.5})
    result = fleet.call("rpcutil", "ping", nodes=["web1", "ghost"])
    assert result.expected == ["ghost", "web1"]
    assert result.ok == ["web1"]
    assert result.missing == ["ghost"]


def test_a_filter_that_matches_nothing(orch_fleet: FleetFactory) -> None:
    fleet = orch_fleet(NODES)
    result = fleet.call("rpcutil", "ping", filter="role=mail")
    assert result.expected == []
    with pytest.raises(AssertionError, match=r"no node answered \(did the filter match"):
        assert_all_ok(result)
    assert_all_ok(result, expected=[])


# ----------------------------------------------------------------------------- assertions


def test_assert_all_ok_names_failed_nodes(orch_fleet: FleetFactory,
                                          probe_agent: type[Agent]) -> None:
    fleet = orch_fleet(NODES, agents=[probe_agent])
    result = fleet.call("probe", "refuse_role", role="db")
    with pytest.raises(AssertionError) as caught:
        assert_all_ok(result)
    message = str(caught.value)
    assert message.startswith("probe.refuse_role was not OK everywhere: failed on db1 "
                              "(aborted: refusing on db nodes)")
    assert "  web1: OK {'role': 'web'}" in message
    assert "  db1: aborted: refusing on db nodes {'role': 'db'}" in message
    assert_all_failed(fleet.call("probe", "refuse_role", role="web", filter="role=web"),
                      status="aborted", message="refusing on web nodes",
                      expected=["web1", "web2"])


def test_assert_all_ok_names_missing_and_unexpected_nodes() -> None:
    result = fake_result({"web1": Status.OK, "db1": Status.OK}, expected=["db1", "ghost",
                                                                          "web1"])
    with pytest.raises(AssertionError, match="no reply from ghost"):
        assert_all_ok(result)
    with pytest.raises(AssertionError, match="unexpected replies from db1") as caught:
        assert_all_ok(fake_result({"web1": Status.OK, "db1": Status.OK}), expected=["web1"])
    assert "web1" not in str(caught.value).split("\n")[0].split("unexpected")[1]
    with pytest.raises(AssertionError, match="expected web3 to answer, but it was not "
                                             "selected"):
        assert_all_ok(fake_result({"web1": Status.OK}), expected=["web1", "web3"])


def test_assert_all_ok_names_rejected_replies_and_transport_errors() -> None:
    result = fake_result({"web1": Status.OK})
    result.rejected.append("signature does not match the message")
    result.error = "connection to the broker lost"
    with pytest.raises(AssertionError) as caught:
        assert_all_ok(result)
    message = str(caught.value)
    assert "1 reply(ies) rejected: signature does not match the message" in message
    assert "transport error: connection to the broker lost" in message


def test_assert_all_ok_passes_quietly() -> None:
    assert_all_ok(fake_result({"web1": Status.OK}, expected=["web1"]))
    assert_all_ok(fake_result({"web1": Status.OK, "db1": Status.OK}), expected=["db1", "web1"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "succeeded on web1"),
    ({"status": Status.UNKNOWN_ERROR}, None),
    ({"status": "invalid data"}, "db1 answered unknown error, not invalid data"),
    ({"status": 4}, "db1 answered unknown error, not invalid data"),
    ({"message": "went wrong"}, None),
    ({"message": "exploded"}, "db1's message 'db1 went wrong' does not contain 'exploded'"),
])
def test_assert_all_failed(kwargs: dict[str, Any], message: str | None) -> None:
    failing = fake_result({"db1": Status.UNKNOWN_ERROR})
    mixed = fake_result({"db1": Status.UNKNOWN_ERROR, "web1": Status.OK})
    result = mixed if message == "succeeded on web1" else failing
    if message is None:
        assert_all_failed(result, **kwargs)
    else:
        with pytest.raises(AssertionError, match=re.escape(message)):
            assert_all_failed(result, **kwargs)


def test_assert_all_failed_refuses_unknown_status_names() -> None:
    with pytest.raises(ValueError, match="unknown status 'exploded'"):
        assert_all_failed(fake_result({"db1": Status.ABORTED}), status="exploded")


def test_describe_result_and_data_by_node() -> None:
    result = fake_result({"web1": Status.OK, "db1": Status.ABORTED}, expected=["db1", "web1",
                                                                                "x1"])
    assert describe_result(result).splitlines() == [
        "probe.whoami: 2 replies, 3 nodes addressed",
        "  db1: aborted: db1 went wrong",
        "  web1: OK {'identity': 'web1'}",
        "  x1: no reply",
    ]
    assert data_by_node(result) == {"web1": {"identity": "web1"}}
    assert data_by_node(result, ok_only=False) == {"db1": {}, "web1": {"identity": "web1"}}


# ----------------------------------------------------------------------------- lifecycle


def test_fleets_stop_after_the_test(orch_fleet: FleetFactory) -> None:
    fleet = orch_fleet(["n1"])
    orch_fleet.close()  # what the fixture does at teardown
    assert orch_fleet.fleets == []
    assert fleet.stopped
    fleet.stop()  # a second stop is harmless


# ----------------------------------------------------------------------------- waiting


def test_wait_until_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, "", "ready"])
    assert wait_until(lambda: next(answers), 5, "the answer", interval=0) == "ready"


def test_wait_until_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0s waiting for the moon"):
        wait_until(lambda: False, 0, "the moon")


def test_broker_problem_is_none_for_a_broker_that_answers() -> None:
    assert broker_problem("memory://") is None


def test_broker_problem_says_why_a_broker_cannot_be_used() -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        problem = broker_problem(f"amqp://guest:guest@127.0.0.1:{port}//", timeout=1)
    assert problem is not None and problem.strip()
