"""A real ``orch server`` process through SIGHUP and SIGTERM (issue 11, daemon hardening).

* SIGHUP while a client calls in a loop: no request is lost, and the reload takes the new
  settings file (``policy_dir``), facts and classes; a config file broken meanwhile is
  reported and the daemon keeps serving with what it had.
* SIGTERM during an action: the daemon stops taking requests, lets the action finish and
  reply, and exits 0; an action longer than ``shutdown_timeout`` is answered ``aborted``.

The slow action is the sample external agent ``pyecho``'s ``sleep``. "Is it running yet"
is read from the daemon's debug log, never guessed with a sleep.
"""

from __future__ import annotations

import os
import signal
import threading
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
    wait_for,
)

pytestmark = pytest.mark.integration

AGENTS_DIR = Path(__file__).resolve().parents[1] / "unit" / "external_agents"
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
        fleet_factory: FleetFactory, tmp_path: Path, broker: str) -> None:
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
            wait_for(lambda seen=seen: loop.answered > seen, READY_TIMEOUT,  # type: ignore[misc]
                     "the call loop to get a reply")
            if number == RELOADS:  # the last reload changes what a reload may change
                daemon.facts_file.write_text(yaml.safe_dump({"role": "after"}))
                daemon.classes_file.write_text("base\nreloaded\n")
                write_config(config, policy_dir=str(tmp_path / "strict"))
            os.kill(daemon.pid, signal.SIGHUP)
            wait_for(lambda n=number: log_count(daemon, "reloaded settings") >= n,  # type: ignore[misc]
                     READY_TIMEOUT, f"reload {number} to be logged")
        seen = loop.answered
        wait_for(lambda: loop.answered > seen, READY_TIMEOUT, "a reply after the last reload")
    finally:
        loop.halt.set()
        loop.join(STOP_TIMEOUT)
    assert not loop.is_alive()
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
    wait_for(lambda: "configuration not reloaded" in daemon.log(), READY_TIMEOUT,
             "the broken config to be reported")
    with client(fleet.broker, fleet.collective) as c:
        still = c.call("rpcutil", "inventory", nodes=[NODE.identity])
    assert "strict/rpcutil.policy" in still.replies[NODE.identity].statusmsg
    assert daemon.running() and "Traceback" not in daemon.log()


def slow_fleet(fleet_factory: FleetFactory, label: str, shutdown_timeout: float) -> Daemon:
    fleet = fleet_factory(BROKERS["rabbitmq"], [NODE], label=label, log_level="debug",
                          env={"ORCH_AGENTS_DIR": str(AGENTS_DIR),
                               "ORCH_SHUTDOWN_TIMEOUT": str(shutdown_timeout)})
    return fleet.daemons[NODE.identity]


def call_in_background(daemon: Daemon, seconds: float) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []

    def call() -> None:
        with client(daemon.broker, daemon.collective) as c:
            results.append(c.call("pyecho", "sleep", {"seconds": seconds},
                                  nodes=[daemon.identity], timeout=30.0))

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    wait_for(lambda: "running pyecho.sleep" in daemon.log(), READY_TIMEOUT,
             "the action to start")
    return thread, results


def test_sigterm_lets_a_running_action_finish_and_reply(fleet_factory: FleetFactory) -> None:
    daemon = slow_fleet(fleet_factory, "term-finish", shutdown_timeout=20.0)
    thread, results = call_in_background(daemon, 1.5)
    daemon.terminate()
    daemon.wait_stopped()
    thread.join(STOP_TIMEOUT)
    assert not daemon.needed_sigkill and daemon.proc is not None
    assert daemon.proc.returncode == 0, daemon.log()[-3000:]
    (result,) = results
    reply = result.replies[daemon.identity]
    assert reply.ok and reply.data == {"slept": 1.5}, reply
    assert "finishing 1 admitted action(s)" in daemon.log()


def test_sigterm_past_shutdown_timeout_answers_aborted(fleet_factory: FleetFactory) -> None:
    daemon = slow_fleet(fleet_factory, "term-abort", shutdown_timeout=0.2)
    thread, results = call_in_background(daemon, 3)
    daemon.terminate()
    daemon.wait_stopped()
    thread.join(STOP_TIMEOUT)
    assert not daemon.needed_sigkill and daemon.proc is not None
    assert daemon.proc.returncode == 0, daemon.log()[-3000:]
    (result,) = results
    reply = result.replies[daemon.identity]
    assert reply.statuscode == 1
    assert reply.statusmsg == f"pyecho.sleep was still running when {NODE.identity} shut down"
