"""A real ``orch server`` process through SIGHUP and SIGTERM (issue 11, daemon hardening).

* SIGHUP while a client calls in a loop: no request is lost, and the reload takes the new
  settings file (``policy_dir``), facts and classes; a config file broken meanwhile is
  reported and the daemon keeps serving with what it had.
* SIGTERM during an action: the daemon stops taking requests, lets the action finish and
  reply, and exits 0; an action longer than ``shutdown_timeout`` is answered ``aborted``.

* Over ``max_actions``: the CLI shows the signed ``busy`` reply for that node, as a failure
  with its reason, in text and ``--json``.

The long action is the ``holder`` external agent written by the test: it runs until the
test creates its release file, so "still running" never depends on the machine's speed.
"Is it running yet" is read from the daemon's debug log, never guessed with a sleep.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from orch_integration import (
    BROKERS,
    READY_TIMEOUT,
    STOP_TIMEOUT,
    Daemon,
    FleetFactory,
    NodeSpec,
    client_security_settings,
)

from orch.testing import wait_until

pytestmark = pytest.mark.integration

NODE = NodeSpec("life1", {"role": "before"}, ("base",))
#: SIGHUPs sent while the loop runs; each one after the loop saw replies since the last.
RELOADS = 5


def client(broker: str, collective: str) -> Any:
    from orch.core.client import Client
    from orch.core.config import load_settings

    return Client(load_settings(None, {"broker": broker, "collective": collective,
                                       "discovery_timeout": 1.0,
                                       **client_security_settings()}, environ={}))


def write_config(path: Path, **values: Any) -> None:
    path.write_text(yaml.safe_dump(values))


def log_count(daemon: Daemon, text: str) -> int:
    return daemon.log().count(text)


class CallLoop(threading.Thread):
    """Direct ``rpcutil ping`` calls to one node, back to back, until stopped."""

    def __init__(self, broker: str, collective: str, identity: str) -> None:
        super().__init__(name="call-loop", daemon=True)
        self.broker, self.collective, self.identity = broker, collective, identity
        self.sent = 0
        self.answered = 0
        self.problems: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with client(self.broker, self.collective) as c:
            while not self.halt.is_set():
                result = c.call("rpcutil", "ping", nodes=[self.identity], timeout=10.0)
                self.sent += 1
                reply = result.replies.get(self.identity)
                if reply is not None and reply.ok:
                    self.answered += 1
                else:
                    self.problems.append(f"call {self.sent}: {result.error or ''} "
                                         f"{reply.statusmsg if reply else 'no reply'}")


@pytest.mark.parametrize("broker", sorted(BROKERS))
def test_sighup_under_a_call_loop_loses_nothing_and_reloads(
        fleet_factory: FleetFactory, tmp_path: Path, broker: str,
        record_property: Callable[[str, object], None]) -> None:
    config = tmp_path / "server.yaml"
    # Two policy directories: the reload switches policy_dir from one to the other. Both
    # allow the loop's ping; only the second denies inventory.
    for name, policy in (("open", "policy default allow\n"),
                         ("strict", "policy default allow\ndeny\t*\tinventory\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "rpcutil.policy").write_text(policy)
    write_config(config, policy_dir=str(tmp_path / "open"))
    fleet = fleet_factory(BROKERS[broker], [NODE], label=f"hup-{broker}",
                          env={"ORCH_CONFIG": str(config)})
    daemon = fleet.daemons[NODE.identity]
    loop = CallLoop(fleet.broker, fleet.collective, NODE.identity)
    loop.start()
    try:
        for number in range(1, RELOADS + 1):
            seen = loop.answered
            wait_until(lambda seen=seen: loop.answered > seen, READY_TIMEOUT,  # type: ignore[misc]
                     "the call loop to get a reply")
            if number == RELOADS:  # the last reload changes what a reload may change
                daemon.facts_file.write_text(yaml.safe_dump({"role": "after"}))
                daemon.classes_file.write_text("base\nreloaded\n")
                write_config(config, policy_dir=str(tmp_path / "strict"))
            os.kill(daemon.pid, signal.SIGHUP)
            wait_until(lambda n=number: log_count(daemon, "reloaded settings") >= n,  # type: ignore[misc]
                     READY_TIMEOUT, f"reload {number} to be logged")
        seen = loop.answered
        wait_until(lambda: loop.answered > seen, READY_TIMEOUT, "a reply after the last reload")
    finally:
        loop.halt.set()
        loop.join(STOP_TIMEOUT)
    assert not loop.is_alive()
    record_property("calls_across_reloads", loop.sent)
    assert loop.problems == [] and loop.sent == loop.answered > RELOADS, \
        (loop.sent, loop.answered, loop.problems[:5], daemon.log()[-3000:])

    with client(fleet.broker, fleet.collective) as c:
        # The re-read facts and classes select the node; the re-read policy_dir denies.
        found = c.call("rpcutil", "ping", filter={"fact": [
            {"fact": "role", "operator": "==", "value": "after"}], "class": ["reloaded"]})
        denied = c.call("rpcutil", "inventory", nodes=[NODE.identity])
    assert list(found.replies) == [NODE.identity] and found.replies[NODE.identity].ok
    assert "strict/rpcutil.policy" in denied.replies[NODE.identity].statusmsg

    # A config broken on disk: reported, nothing changes, the daemon keeps answering.
    config.write_text("policy_dir: [not, a, path\n")
    os.kill(daemon.pid, signal.SIGHUP)
    wait_until(lambda: "configuration not reloaded" in daemon.log(), READY_TIMEOUT,
             "the broken config to be reported")
    with client(fleet.broker, fleet.collective) as c:
        still = c.call("rpcutil", "inventory", nodes=[NODE.identity])
    assert "strict/rpcutil.policy" in still.replies[NODE.identity].statusmsg
    assert daemon.running() and "Traceback" not in daemon.log()


#: An external agent whose ``hold`` action runs until the file it names exists: it keeps
#: an action slot taken for exactly as long as the test needs, whatever the machine's load.
HOLD_AGENT = """#!/usr/bin/env python3
import json, os, sys, time
with open(os.environ["CHORIA_EXTERNAL_REQUEST"]) as handle:
    request = json.load(handle)
reply = {"activate": True}
if os.environ.get("CHORIA_EXTERNAL_PROTOCOL", "").endswith("rpc_request"):
    release = request["data"]["release"]
    for _ in range(600):
        if os.path.exists(release):
            break
        time.sleep(0.05)
    reply = {"statuscode": 0, "statusmsg": "OK", "data": {}}
with open(os.environ["CHORIA_EXTERNAL_REPLY"], "w") as handle:
    json.dump(reply, handle)
"""
HOLD_DDL = {
    "metadata": {"name": "holder", "description": "Hold an action slot", "author": "tests",
                 "license": "Apache-2.0", "version": "1.0.0", "url": "https://example.invalid",
                 "timeout": 30, "provider": "external"},
    "actions": [{"action": "hold", "description": "Run until the release file exists",
                 "display": "always", "input": {
                     "release": {"prompt": "File", "description": "Release file",
                                 "type": "string", "optional": False, "maxlength": 4096}},
                 "output": {}}],
}


class Holder:
    """The ``holder`` agent in a directory of its own, and the requests it holds."""

    def __init__(self, directory: Path) -> None:
        self.agents = directory / "agents"
        self.agents.mkdir()
        (self.agents / "holder").write_text(HOLD_AGENT)
        (self.agents / "holder").chmod(0o755)
        (self.agents / "holder.json").write_text(json.dumps(HOLD_DDL))
        self.release = directory / "release"
        self.results: list[Any] = []
        self.thread: threading.Thread | None = None

    def start(self, daemon: Daemon) -> None:
        """Call ``holder.hold`` on ``daemon`` in the background; return once it runs."""
        def call() -> None:
            with client(daemon.broker, daemon.collective) as c:
                self.results.append(c.call("holder", "hold", {"release": str(self.release)},
                                           nodes=[daemon.identity], timeout=60.0))

        self.thread = threading.Thread(target=call, daemon=True)
        self.thread.start()
        wait_until(lambda: "running holder.hold" in daemon.log(), READY_TIMEOUT,
                 "the holding action to start")

    def finish(self) -> Any:
        """Release the action (its process exits), wait for the call; return its result."""
        self.release.touch()
        if self.thread is not None:
            self.thread.join(STOP_TIMEOUT)
        (result,) = self.results
        return result


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Holder]:
    made = Holder(tmp_path)
    yield made
    made.release.touch()  # never leave the agent's process waiting


def holding_fleet(fleet_factory: FleetFactory, holder: Holder, label: str,
                  **env: str) -> Daemon:
    fleet = fleet_factory(BROKERS["rabbitmq"], [NODE], label=label, log_level="debug",
                          env={"ORCH_AGENTS_DIR": str(holder.agents), **env})
    return fleet.daemons[NODE.identity]


def test_sigterm_lets_a_running_action_finish_and_reply(fleet_factory: FleetFactory,
                                                        holder: Holder) -> None:
    daemon = holding_fleet(fleet_factory, holder, "term-finish", ORCH_SHUTDOWN_TIMEOUT="30")
    holder.start(daemon)
    daemon.terminate()
    wait_until(lambda: "stopping: finishing 1 admitted action(s), up to 30s" in daemon.log(),
             READY_TIMEOUT, "the daemon to start stopping")
    result = holder.finish()  # released only now: it finishes after SIGTERM
    daemon.wait_stopped()
    assert not daemon.needed_sigkill and daemon.proc is not None
    assert daemon.proc.returncode == 0, daemon.log()[-3000:]
    reply = result.replies[daemon.identity]
    assert reply.ok, reply


def test_sigterm_past_shutdown_timeout_answers_aborted(fleet_factory: FleetFactory,
                                                       holder: Holder) -> None:
    daemon = holding_fleet(fleet_factory, holder, "term-abort", ORCH_SHUTDOWN_TIMEOUT="0.2")
    holder.start(daemon)
    daemon.terminate()
    daemon.wait_stopped()  # the action is still held: only the deadline can end it
    assert not daemon.needed_sigkill and daemon.proc is not None
    assert daemon.proc.returncode == 0, daemon.log()[-3000:]
    reply = holder.finish().replies[daemon.identity]
    assert reply.statuscode == 1
    assert reply.statusmsg == f"holder.hold was still running when {NODE.identity} shut down"


def test_over_max_actions_the_cli_reports_busy_per_node(fleet_factory: FleetFactory,
                                                        holder: Holder) -> None:
    """One action admitted (max_actions 1) and held: the next requests are answered
    'busy' — signed, so the client shows it for that node as a failure with its reason."""
    daemon = holding_fleet(fleet_factory, holder, "busy", ORCH_MAX_ACTIONS="1")
    fleet = fleet_factory.fleets[-1]
    holder.start(daemon)
    try:
        busy = fleet.run_orch("rpc", "rpcutil", "ping", "-I", NODE.identity, "--json")
        text = fleet.run_orch("rpc", "rpcutil", "ping", "-I", NODE.identity)
    finally:
        result = holder.finish()
    assert busy.rc == 1, busy.describe()
    document = busy.json()
    (reply,) = document["replies"]
    assert (reply["sender"], reply["status"], reply["statuscode"]) == (NODE.identity, "busy", 6)
    assert reply["statusmsg"] == (f"busy: {NODE.identity} is already running its limit of 1 "
                                  "actions (max_actions); try again later")
    assert document["stats"]["failed"] == 1 and document["stats"]["ok"] == 0
    assert text.rc == 1 and f"busy: busy: {NODE.identity} is already running" in text.stdout, \
        text.describe()
    # The admitted action was not disturbed, and once it is done the node takes work again.
    assert result.replies[NODE.identity].ok, result.replies
    after = fleet.run_orch("rpc", "rpcutil", "ping", "-I", NODE.identity, "--json")
    assert after.rc == 0 and after.json()["replies"][0]["status"] == "ok", after.describe()
