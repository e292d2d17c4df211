"""orch-puppet against a real puppetserver, real puppet agents and real facter.

Every test drives orch the way an operator does: the ``orch`` CLI, signed with a client
certificate, against separate ``orch server`` processes each paired with its own Puppet
agent (``p1``..``p4``). Each test uses its own node(s), so the order does not matter,
except ``runall`` which uses them all (and leaves them enabled and idle).
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import yaml
from puppet_fleet import PuppetFleet


def test_runonce_triggers_a_real_catalog_run(puppet_fleet: PuppetFleet) -> None:
    fleet, node = puppet_fleet, "p1.localhost"
    agent = fleet.nodes[node].agent
    compiled = fleet.stack.compiled_for(node)
    before = fleet.status(node)
    assert before["status"] == "stopped" and before["enabled"]

    result = fleet.orch("puppet", "runonce", "--json", "-I", node)
    assert result.rc == 0, result.describe()
    (reply,) = result.json()["replies"]
    assert reply["data"]["summary"].startswith("Started a background Puppet run")
    initiated_at = reply["data"]["initiated_at"]

    timeline = fleet.wait_idle_after(node, initiated_at)
    states = [s["status"] for s in timeline]
    assert "applying" in states, states  # seen applying ...
    assert states[-1] == "stopped" and timeline[-1]["lastrun"] > initiated_at  # ... then idle
    assert fleet.stack.compiled_for(node) == compiled + 1  # the server compiled a catalog

    # last_run_summary reflects the real summary Puppet wrote.
    summary = yaml.safe_load(agent.lastrunfile.read_text())
    result = fleet.orch("puppet", "last_run_summary", "--json", "-I", node)
    assert result.rc == 0, result.describe()
    (reply,) = result.json()["replies"]
    data = reply["data"]
    assert data["lastrun"] == summary["time"]["last_run"]
    assert data["config_version"] == str(summary["version"]["config"])
    assert data["total_resources"] == summary["resources"]["total"]
    assert data["changed_resources"] == summary["resources"]["changed"]
    assert data["failed_resources"] == 0
    assert data["run_status"] in ("changed", "unchanged")
    assert data["cached_catalog_status"] == "not_used"
    assert {"file", "exec", "notify"} <= set(data["type_distribution"])
    assert any("role::web applied" in line["message"] for line in data["logs"])
    managed = fleet.stack.managed_dir / f"{node}.web"
    assert managed.read_text() == f"managed by puppetserver for {node}\n"


def test_classes_txt_makes_class_filters_match(puppet_fleet: PuppetFleet) -> None:
    """Without classes.txt p2 has no classes; after a run started through orch, -C selects
    it (the daemon re-read classes.txt when the run ended; no SIGHUP)."""
    fleet, node = puppet_fleet, "p2.localhost"
    classfile = fleet.nodes[node].agent.classfile
    if classfile.exists():  # an earlier test ran p2: start from "never ran" again
        classfile.unlink()
        process = fleet.nodes[node].proc
        assert process is not None
        process.send_signal(signal.SIGHUP)  # orch re-reads classes on SIGHUP
    deadline = time.monotonic() + 20
    while True:
        found = fleet.orch("find", "-C", "role::web", "-I", node)
        if found.rc == 1 and found.stdout.strip() == "":
            break
        assert time.monotonic() < deadline, found.describe()
        time.sleep(0.5)

    result = fleet.orch("puppet", "runonce", "--json", "-I", node)
    assert result.rc == 0, result.describe()
    fleet.wait_idle_after(node, result.json()["replies"][0]["data"]["initiated_at"])

    assert "role::web" in fleet.nodes[node].agent.classfile.read_text().split()
    deadline = time.monotonic() + 20
    while True:
        found = fleet.orch("find", "-C", "role::web", "-I", node)
        if found.stdout.split() == [node]:
            break
        assert time.monotonic() < deadline, found.describe()
        time.sleep(0.5)
    status = fleet.orch("puppet", "status", "-C", "/^role::/", "-I", node)
    assert status.rc == 0 and node in status.stdout, status.describe()
    assert fleet.orch("find", "-C", "role::db", "-I", node).stdout.strip() == ""


def test_facter_facts_select_nodes(puppet_fleet: PuppetFleet) -> None:
    """Real facter output, nested facts addressed with dots (facts orch's built-in facts
    do not have)."""
    fleet = puppet_fleet
    found = fleet.orch("find", "-F", "os.distro.codename=bookworm")
    assert sorted(found.stdout.split()) == sorted(fleet.nodes), found.describe()
    found = fleet.orch("find", "-F", "networking.interfaces.lo.ip=127.0.0.1", "-I",
                       "p3.localhost")
    assert found.stdout.split() == ["p3.localhost"], found.describe()
    facts = fleet.orch("facts", "facterversion", "--json")
    assert facts.rc == 0, facts.describe()
    assert [v["value"] for v in facts.json()["values"]] and \
        all(str(v["value"]).startswith("4.") for v in facts.json()["values"])


def test_disable_refuses_runs_and_enable_restores(puppet_fleet: PuppetFleet) -> None:
    fleet, node = puppet_fleet, "p3.localhost"
    compiled = fleet.stack.compiled_for(node)
    result = fleet.orch("puppet", "disable", "maintenance", "-I", node)
    assert result.rc == 0 and "Disabled the Puppet agent: maintenance" in result.stdout, \
        result.describe()
    status = fleet.status(node)
    assert status["status"] == "disabled" and status["disable_message"] == "maintenance"
    assert "(maintenance)" in status["message"]

    refused = fleet.orch("puppet", "runonce", "-I", node)
    assert refused.rc == 1 and "disabled (maintenance)" in refused.stdout, refused.describe()
    # Puppet itself reads the same lock: its own run is skipped with our message.
    own = fleet.stack.run_agent(fleet.nodes[node].agent)
    assert own.returncode == 1
    assert "administratively disabled (Reason: 'maintenance')" in own.stdout + own.stderr
    assert fleet.stack.compiled_for(node) == compiled

    result = fleet.orch("puppet", "enable", "-I", node)
    assert result.rc == 0, result.describe()
    assert fleet.status(node)["enabled"]
    result = fleet.orch("puppet", "runonce", "--json", "-I", node)
    assert result.rc == 0, result.describe()
    fleet.wait_idle_after(node, result.json()["replies"][0]["data"]["initiated_at"])
    assert fleet.stack.compiled_for(node) == compiled + 1


def test_resource_changes_a_file_through_the_ral(puppet_fleet: PuppetFleet,
                                                 tmp_path: Path) -> None:
    fleet, node = puppet_fleet, "p4.localhost"
    target = tmp_path / "motd"
    first = fleet.orch("puppet", "resource", "file", str(target), "ensure=file",
                       "content=hello from orch\n", "mode=0640", "--json", "-I", node)
    assert first.rc == 0, first.describe()
    data = first.json()["replies"][0]["data"]
    assert data["changed"] is True
    assert any(e["property"] == "ensure" and e["status"] == "success" for e in data["events"])
    assert target.read_text() == "hello from orch\n"
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    again = fleet.orch("puppet", "resource", "file", str(target), "ensure=file",
                       "content=hello from orch\n", "mode=0640", "--json", "-I", node)
    assert again.rc == 0 and again.json()["replies"][0]["data"]["changed"] is False

    denied = fleet.orch("puppet", "resource", "exec", "/usr/bin/touch /tmp/pwned",
                        "-I", node)
    assert denied.rc == 1 and "resource type 'exec' is not allowed" in denied.stdout, \
        denied.describe()
    assert not Path("/tmp/pwned").exists()

    broken = fleet.orch("puppet", "resource", "file", str(tmp_path / "no" / "dir" / "x"),
                        "ensure=file", "-I", node)
    assert broken.rc == 1 and "failed" in broken.stdout, broken.describe()


def test_runall_never_exceeds_the_limit(puppet_fleet: PuppetFleet) -> None:
    """runall 2 over the four nodes: a watcher reading Puppet's run locks directly (not
    through orch) and runall's own status timeline both never see more than 2 applying."""
    fleet = puppet_fleet
    agents = [fleet.nodes[name].agent for name in sorted(fleet.nodes)]
    observed: list[tuple[float, tuple[str, ...]]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            applying = tuple(a.certname for a in agents if a.applying())
            if not observed or observed[-1][1] != applying:
                observed.append((time.monotonic(), applying))
            time.sleep(0.02)

    compiled = {a.certname: fleet.stack.compiled_for(a.certname) for a in agents}
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = fleet.orch("puppet", "runall", "2", "--json", "--poll-interval", "0.5",
                            timeout=600)
    finally:
        stop.set()
        watcher.join(5)
    assert result.rc == 0, result.describe()
    report = result.json()
    assert report["tally"]["finished"] == 4, report["tally"]
    assert max(len(s["applying"]) for s in report["timeline"]) <= 2
    assert report["max_in_flight"] <= 2
    assert max(len(names) for _, names in observed) == 2, observed  # used, never exceeded
    for agent in agents:  # every node got exactly one new catalog
        assert fleet.stack.compiled_for(agent.certname) == compiled[agent.certname] + 1


def test_runall_skips_disabled_nodes(puppet_fleet: PuppetFleet) -> None:
    fleet = puppet_fleet
    assert fleet.orch("puppet", "disable", "frozen", "-I", "p4.localhost").rc == 0
    try:
        result = fleet.orch("puppet", "runall", "2", "--poll-interval", "0.5",
                            "-I", "p3.localhost", "-I", "p4.localhost", timeout=300)
        assert result.rc == 0, result.describe()
        assert "skipped_disabled p4.localhost: disabled: frozen" in result.stdout
        assert "1 finished, 1 skipped disabled" in result.stdout
    finally:
        assert fleet.orch("puppet", "enable", "-I", "p4.localhost").rc == 0


def test_fleet_views(puppet_fleet: PuppetFleet) -> None:
    fleet = puppet_fleet
    count = fleet.orch("puppet", "count", "--json")
    assert count.rc == 0, count.describe()
    assert count.json()["total"] == 4
    summary = fleet.orch("puppet", "summary", "--json")
    assert summary.rc == 0, summary.describe()
    document = summary.json()
    assert document["nodes"] == 4
    assert document["distributions"]["total_time"]["count"] >= 1
    text = fleet.orch("puppet", "summary")
    assert "Total run-time (s):" in text.stdout, text.describe()


def test_an_idle_puppet_daemon_is_signalled(puppet_fleet: PuppetFleet) -> None:
    """With a real `puppet agent` daemon running (idle between runs), runonce signals it
    (SIGUSR1) instead of starting a second process, and the daemon runs."""
    import subprocess

    fleet, node = puppet_fleet, "p4.localhost"
    agent = fleet.nodes[node].agent
    daemon = subprocess.Popen(
        ["puppet", "agent", "--confdir", str(agent.confdir), "--no-daemonize",
         "--runinterval", "3600", "--no-splay", "--color=false", "--verbose"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # the daemon runs once at start, then idles
            status = fleet.status(node)
            if status["status"] == "idling" and status["lastrun"]:
                break
            assert daemon.poll() is None, "the puppet daemon exited"
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        compiled = fleet.stack.compiled_for(node)
        result = fleet.orch("puppet", "runonce", "--json", "-I", node)
        assert result.rc == 0, result.describe()
        data = result.json()["replies"][0]["data"]
        assert data["summary"] == (f"Signalled the running Puppet daemon (PID {daemon.pid}) "
                                   "to start a run")
        fleet.wait_idle_after(node, data["initiated_at"])
        assert fleet.stack.compiled_for(node) == compiled + 1
        assert fleet.status(node)["status"] == "idling"
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
