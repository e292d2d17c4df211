"""The puppet agent on simulated nodes: real orch nodes and client, Puppet's real file
formats, and a fake ``puppet`` executable (tests/fakepuppet.py) for runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fakepuppet import (
    REAL_REPORT,
    REAL_SUMMARY,
    argv_log,
    make_node,
    puppet_like_process,
    summary_document,
)
from orch.core.client import CallResult, Client
from orch.core.fleet import NodeSpec
from orch.core.protocol import Status
from orch.testing import wait_until
from simfleet import SimulatedFleet


def ok(result: CallResult, node: str) -> dict[str, Any]:
    reply = result.replies[node]
    assert reply.ok, f"{node}: {reply.statusmsg}"
    assert not result.warnings, result.warnings  # every reply matches the DDL
    return dict(reply.data)


def failed(result: CallResult, node: str) -> str:
    reply = result.replies[node]
    assert not reply.ok, f"{node} unexpectedly succeeded: {reply.data}"
    return reply.statusmsg


def test_status_of_every_state(sim: SimulatedFleet) -> None:
    now = int(time.time())
    daemon = sim.puppet_process()
    make_node(sim.root, "stopped", summary=summary_document(now - 120))
    make_node(sim.root, "never")
    make_node(sim.root, "idle", summary=summary_document(now - 60), daemon_pid=daemon)
    make_node(sim.root, "busy", applying_pid=sim.puppet_process(), daemon_pid=daemon)
    make_node(sim.root, "off", summary=summary_document(now - 10), disabled="db maintenance")
    make_node(sim.root, "stale-lock", applying_pid=999_999_999)
    names = ["stopped", "never", "idle", "busy", "off", "stale-lock"]
    client = sim.start(names)
    result = client.call("puppet", "status", nodes=names)
    stopped = ok(result, "stopped")
    assert stopped["status"] == "stopped" and stopped["enabled"] and not stopped["applying"]
    assert stopped["lastrun"] == now - 120 and 119 <= stopped["since_lastrun"] <= 125
    assert stopped["message"].startswith("Currently stopped; last completed run 2 minutes")
    never = ok(result, "never")
    assert never["lastrun"] == 0 and never["since_lastrun"] is None
    assert never["message"] == "Currently stopped; never completed a run"
    idle = ok(result, "idle")
    assert idle["status"] == "idling" and idle["daemon_present"] and idle["idling"]
    busy = ok(result, "busy")
    assert busy["status"] == "applying" and busy["applying"] and not busy["idling"]
    off = ok(result, "off")
    assert off["status"] == "disabled" and not off["enabled"]
    assert off["disable_message"] == "db maintenance"
    assert "(db maintenance)" in off["message"]
    assert ok(result, "stale-lock")["status"] == "stopped"  # a dead PID's lock is stale


def test_runonce_returns_at_once_and_the_run_happens(sim: SimulatedFleet) -> None:
    make_node(sim.root, "n1", summary=summary_document(int(time.time()) - 600),
              run_seconds=1.5)
    client = sim.start(["n1"])
    before = time.time()
    data = ok(client.call("puppet", "runonce", {"noop": True, "tags": "a, b::c",
                                                "environment": "dev"}, nodes=["n1"]), "n1")
    assert data["summary"].startswith("Started a background Puppet run (PID ")
    assert int(before) <= data["initiated_at"] <= time.time()
    # The reply came back while the run is still going.
    assert ok(client.call("puppet", "status", nodes=["n1"]), "n1")["status"] == "applying"
    # The summary is written a moment before the process exits (and stops counting as
    # applying): wait for both.
    wait_until(lambda: (lambda d: d["lastrun"] > data["initiated_at"] and d["status"]
                        == "stopped")(ok(client.call("puppet", "status", nodes=["n1"]), "n1")),
               20, "the run to finish")
    (argv,) = argv_log(sim.root, "n1")
    assert argv[:3] == ["agent", "--confdir", str(sim.root / "n1" / "conf")]
    assert {"--onetime", "--no-daemonize", "--noop", "--no-splay",
            "--no-usecacheonfailure"} <= set(argv)
    assert argv[argv.index("--tags") + 1] == "a,b::c"
    assert argv[argv.index("--environment") + 1] == "dev"
    log = sim.root / "n1" / "log" / "orch-runonce.log"
    assert log.exists()  # the run's output is kept (puppet logs nowhere else without syslog)


def test_runonce_refuses_when_disabled_or_applying(sim: SimulatedFleet) -> None:
    make_node(sim.root, "off", disabled="maintenance")
    make_node(sim.root, "busy", applying_pid=sim.puppet_process())
    client = sim.start(["off", "busy"])
    result = client.call("puppet", "runonce", {}, nodes=["off", "busy"])
    assert "disabled (maintenance)" in failed(result, "off")
    assert "already applying" in failed(result, "busy")
    assert result.replies["off"].statuscode == Status.ABORTED
    assert argv_log(sim.root, "off") == [] and argv_log(sim.root, "busy") == []


def test_inputs_are_checked_by_the_agent_too(sim: SimulatedFleet) -> None:
    """A request that passes the DDL's patterns but not the agent's checks is refused
    as invalid data and starts nothing."""
    make_node(sim.root, "n1")
    client = sim.start(["n1"])
    request = client.new_request("puppet", "runonce", {"server": "puppet:99999"})
    result = client.send_direct(request, ["n1"], 10)
    assert result.replies["n1"].statuscode == Status.INVALID_DATA
    assert "port" in result.replies["n1"].statusmsg
    from orch.core.errors import ArgumentError

    with pytest.raises(ArgumentError):  # the client's DDL check stops shell-like input
        client.call("puppet", "runonce", {"tags": "a;reboot"}, nodes=["n1"])
    assert argv_log(sim.root, "n1") == []


def test_an_idle_daemon_is_signalled(sim: SimulatedFleet, tmp_path: Path) -> None:
    marker = tmp_path / "usr1"
    daemon = puppet_like_process(tmp_path / "bin", (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGUSR1, lambda *a: open({str(marker)!r}, 'a').write('x'))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"), stdout=subprocess.PIPE)
    sim.helpers.append(daemon)
    assert daemon.stdout is not None and daemon.stdout.readline().strip() == b"ready"
    make_node(sim.root, "d1", daemon_pid=daemon.pid)
    client = sim.start(["d1"])
    data = ok(client.call("puppet", "runonce", {"force": True}, nodes=["d1"]), "d1")
    assert data["summary"] == (f"Signalled the running Puppet daemon (PID {daemon.pid}) to "
                               "start a run")
    wait_until(marker.exists, 10, "SIGUSR1 to reach the daemon")
    assert argv_log(sim.root, "d1") == []
    # A daemon cannot take options: a noop request runs a one-off process beside it.
    data = ok(client.call("puppet", "runonce", {"noop": True}, nodes=["d1"]), "d1")
    assert data["summary"].startswith("Started a background Puppet run")


def test_simultaneous_runonce_requests_start_one_run(sim: SimulatedFleet) -> None:
    make_node(sim.root, "n1", run_seconds=2)
    sim.start(["n1"])
    results: list[CallResult] = []

    def call() -> None:
        with Client(sim.settings) as own:
            results.append(own.call("puppet", "runonce", {}, nodes=["n1"]))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    replies = [r.replies["n1"] for r in results]
    assert sum(r.ok for r in replies) == 1
    assert all("already applying" in r.statusmsg for r in replies if not r.ok)
    wait_until(lambda: len(argv_log(sim.root, "n1")) == 1, 10, "the one run")


def test_enable_and_disable_use_puppets_lock(sim: SimulatedFleet) -> None:
    make_node(sim.root, "n1")
    client = sim.start(["n1"])
    lock = sim.root / "n1" / "var" / "state" / "agent_disabled.lock"
    data = ok(client.call("puppet", "disable", {"message": "maintenance"}, nodes=["n1"]), "n1")
    assert data == {"enabled": False, "status": "Disabled the Puppet agent: maintenance"}
    assert json.loads(lock.read_text()) == {"disabled_message": "maintenance"}
    again = client.call("puppet", "disable", {"message": "other"}, nodes=["n1"])
    assert "already disabled (maintenance)" in failed(again, "n1")
    status = ok(client.call("puppet", "status", nodes=["n1"]), "n1")
    assert status["status"] == "disabled" and status["disable_message"] == "maintenance"
    data = ok(client.call("puppet", "enable", nodes=["n1"]), "n1")
    assert data["enabled"] and not lock.exists()
    assert "already enabled" in failed(client.call("puppet", "enable", nodes=["n1"]), "n1")
    ok(client.call("puppet", "disable", nodes=["n1"]), "n1")
    assert "Disabled via orch by user=" in json.loads(lock.read_text())["disabled_message"]


def test_last_run_summary_of_a_real_run(sim: SimulatedFleet) -> None:
    node = make_node(sim.root, "n1", resources=["File[/tmp/a]", "exec[x]", "notify[y]"])
    (node / "var" / "public" / "last_run_summary.yaml").write_text(REAL_SUMMARY)
    (node / "var" / "state" / "last_run_report.yaml").write_text(REAL_REPORT)
    make_node(sim.root, "never")
    client = sim.start(["n1", "never"])
    result = client.call("puppet", "last_run_summary", nodes=["n1", "never"])
    data = ok(result, "n1")
    assert (data["total_resources"], data["changed_resources"], data["failed_resources"],
            data["out_of_sync_resources"], data["corrected_resources"]) == (11, 2, 0, 2, 1)
    assert data["config_version"] == "1795676793" and data["lastrun"] == 1795676796
    assert data["type_distribution"] == {"exec": 1, "file": 1, "notify": 1}
    assert data["summary"]["version"]["puppet"] == "7.23.0"
    assert len(data["logs"]) == 2 and data["run_status"] == "changed"
    never = ok(result, "never")
    assert never["lastrun"] == 0 and never["total_resources"] == 0 and never["logs"] == []


def _fake_ruby(tmp_path: Path, reply: dict[str, Any]) -> Path:
    """A stand-in for Puppet's Ruby: records the request and answers ``reply``."""
    script = tmp_path / "fake-ruby"
    script.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"request = json.load(sys.stdin)\n"
        f"open({str(tmp_path / 'ral-request.json')!r}, 'w').write(json.dumps("
        "{'argv': sys.argv[1:], 'request': request}))\n"
        f"print('Warning: noise before the answer')\n"
        f"print(json.dumps({reply!r}))\n")
    script.chmod(0o755)
    return script


def test_resource_is_refused_unless_allowed(sim: SimulatedFleet) -> None:
    make_node(sim.root, "n1")
    client = sim.start(["n1"])
    result = client.call("puppet", "resource", {"type": "file", "name": "/tmp/x"}, nodes=["n1"])
    assert "allows no resource types" in failed(result, "n1")


@pytest.mark.plugin_settings(resource_types_allow=["file", "exec"],
                             resource_types_deny=["exec"])
def test_resource_applies_allowed_types(sim: SimulatedFleet, tmp_path: Path) -> None:
    ruby = _fake_ruby(tmp_path, {"changed": True, "failed": False, "resource": "file {...}",
                                 "events": [{"property": "ensure", "status": "success",
                                             "message": "created"}], "logs": []})
    sim.settings = sim.settings.with_values(
        {"plugins": {"puppet": {**sim.settings.plugin("puppet"), "puppet_ruby": str(ruby)}}},
        "test")
    make_node(sim.root, "n1")
    client = sim.start(["n1"])
    data = ok(client.call("puppet", "resource", {"type": "file", "name": "/tmp/x",
                                                 "properties": {"ensure": "file",
                                                                "mode": "0600"}},
                          nodes=["n1"]), "n1")
    assert data["changed"] and data["result"] == "file {...}"
    sent = json.loads((tmp_path / "ral-request.json").read_text())
    assert sent["argv"][0].endswith("ral_apply.rb")
    assert sent["request"] == {"settings": ["--confdir", str(sim.root / "n1" / "conf")],
                               "type": "file", "title": "/tmp/x",
                               "parameters": {"ensure": "file", "mode": "0600"}}
    denied = client.call("puppet", "resource", {"type": "exec", "name": "/bin/true"},
                         nodes=["n1"])
    assert "denied" in failed(denied, "n1")


@pytest.mark.plugin_settings(resource_types_allow=["file"])
def test_resource_failures_keep_their_outputs(sim: SimulatedFleet, tmp_path: Path) -> None:
    ruby = _fake_ruby(tmp_path, {"changed": False, "failed": True, "resource": "file {}",
                                 "events": [{"property": "ensure", "status": "failure",
                                             "message": "No such file or directory"}],
                                 "logs": []})
    sim.settings = sim.settings.with_values(
        {"plugins": {"puppet": {**sim.settings.plugin("puppet"), "puppet_ruby": str(ruby)}}},
        "test")
    make_node(sim.root, "n1")
    client = sim.start(["n1"])
    result = client.call("puppet", "resource", {"type": "file", "name": "/no/dir/x"},
                         nodes=["n1"])
    assert "file[/no/dir/x] failed: No such file or directory" in failed(result, "n1")
    assert result.replies["n1"].data["events"][0]["status"] == "failure"


@pytest.mark.plugin_settings(resource_types_allow=["file"], resource_allow_managed=False)
def test_resources_puppet_manages_can_be_protected(sim: SimulatedFleet) -> None:
    make_node(sim.root, "n1", resources=["File[/etc/motd]"])
    client = sim.start(["n1"])
    result = client.call("puppet", "resource", {"type": "file", "name": "/etc/motd"},
                         nodes=["n1"])
    assert "managed by this node's Puppet catalog" in failed(result, "n1")


def test_classes_follow_the_runs_orch_starts(sim: SimulatedFleet) -> None:
    """With orch's ``classes`` setting on Puppet's classes.txt, a run's new classes select
    the node without a SIGHUP."""
    node = make_node(sim.root, "n1", run_seconds=0.3)
    sim.settings = sim.settings.with_values(
        {"classes": str(node / "var" / "state" / "classes.txt")}, "test")
    client = sim.start(["n1"])

    def with_class() -> list[str]:
        return client.discover({"class": ["role::fake"]}, "puppet")

    assert with_class() == []
    ok(client.call("puppet", "runonce", {}, nodes=["n1"]), "n1")
    wait_until(lambda: with_class() == ["n1"], 20, "classes.txt to reach the node")


@pytest.mark.plugin_settings(puppet_bin="/nonexistent/puppet")
def test_a_node_without_puppet_says_so(sim: SimulatedFleet) -> None:
    """Flagged "not installed" (never a healthy stopped node); every other action refuses
    and creates nothing (disable used to create Puppet's state directory)."""
    client = sim.start(["n1"])
    status = ok(client.call("puppet", "status", nodes=["n1"]), "n1")
    assert status["status"] == "not installed" and status["installed"] is False
    assert not status["enabled"] and status["message"] == "Puppet is not installed on this node"
    for action, data in (("runonce", {}), ("disable", {"message": "x"}), ("enable", {}),
                         ("last_run_summary", {})):
        assert "puppet is not installed" in failed(
            client.call("puppet", action, data, nodes=["n1"]), "n1"), action
    assert not (sim.root / "n1").exists()


def test_signed_requests_with_certificates(sim: SimulatedFleet, tmp_path: Path) -> None:
    """The plugin under x509: node certificates from a throw-away CA."""
    from orch.demo import DemoPKI

    pki = DemoPKI.create(tmp_path / "ca")
    sim.settings = sim.settings.with_values(dict(pki.client_settings), "test")
    make_node(sim.root, "n1", disabled="signed")
    client = sim.start(["n1"], security_for=pki.node_security)
    data = ok(client.call("puppet", "status", nodes=["n1"]), "n1")
    assert data["disable_message"] == "signed"


def test_a_run_outliving_max_run_time_is_terminated(sim: SimulatedFleet) -> None:
    make_node(sim.root, "n1", run_seconds=60)
    sim.settings = sim.settings.with_values(
        {"plugins": {"puppet": {**sim.settings.plugin("puppet"), "max_run_time": 1}}}, "test")
    client = sim.start(["n1"])
    data = ok(client.call("puppet", "runonce", {}, nodes=["n1"]), "n1")
    pid = int(data["summary"].split("PID ")[1].split(")")[0])
    wait_until(lambda: not _alive(pid), 15, "the run to be terminated")
    # Its lock file stays behind (SIGTERM'd mid-run), naming a dead PID: not applying.
    assert (sim.root / "n1" / "var" / "state" / "agent_catalog_run.lock").exists()
    assert ok(client.call("puppet", "status", nodes=["n1"]), "n1")["applying"] is False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for the reaper counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_fleet_nodes_keep_their_own_state(sim: SimulatedFleet) -> None:
    """{identity} in the path overrides: one process, many nodes, one state dir each."""
    now = int(time.time())
    for index in range(20):
        make_node(sim.root, f"n{index:02d}", summary=summary_document(now - index),
                  disabled="x" if index % 5 == 0 else None)
    client = sim.start([], specs=[NodeSpec(f"n{i:02d}") for i in range(20)])
    result = client.call("puppet", "status", nodes=[f"n{i:02d}" for i in range(20)])
    assert len(result.replies) == 20
    for index in range(20):
        data = ok(result, f"n{index:02d}")
        assert data["lastrun"] == now - index
        assert data["enabled"] == (index % 5 != 0)
