"""``orch puppet ...`` through orch's real command line (in-process, memory broker)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from typing import Any

from click.testing import CliRunner, Result
from fakepuppet import argv_log, make_node, summary_document
from orch.cli.main import cli
from orch.core.fleet import NodeSpec
from orch.testing import wait_until
from simfleet import SimulatedFleet


def orch(sim: SimulatedFleet, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["puppet", *args, *sim.cli_args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def small_fleet(sim: SimulatedFleet) -> None:
    now = int(time.time())
    make_node(sim.root, "web1", summary=summary_document(now - 30, total=20, changed=2,
                                                         total_time=4.0), run_seconds=0.5,
              classes=["role::web"])
    make_node(sim.root, "web2", summary=summary_document(now - 7200, total=25, failed=3,
                                                         total_time=9.5), run_seconds=0.5,
              classes=["role::web"])
    make_node(sim.root, "db1", summary=summary_document(now - 60), disabled="db upgrade",
              run_seconds=0.5)
    make_node(sim.root, "new1", run_seconds=0.5)
    web = frozenset({"role::web"})
    sim.start([], specs=[NodeSpec("web1", {"role": "web"}, web),
                         NodeSpec("web2", {"role": "web"}, web),
                         NodeSpec("db1", {"role": "db"}), NodeSpec("new1")])


def test_status_text_and_json(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    result = orch(sim, "status")
    assert result.exit_code == 0, result.output
    assert "db1" in result.output and "Currently disabled (db upgrade)" in result.output
    assert "Summary of Status:" in result.output
    assert "Finished processing 4 / 4 hosts" in result.output
    document = as_json(orch(sim, "status", "--json", "-I", "web1"))
    (reply,) = document["replies"]
    assert reply["sender"] == "web1" and reply["data"]["status"] == "stopped"


def _summaries(text: str) -> str:
    """The "Summary of ..." blocks of a command's output (up to orch's closing lines)."""
    start = text.index("Summary of ")
    return text[start:text.index("Finished processing", start)]


def test_status_prints_the_ddls_summaries_as_rpc_does(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    plugin = orch(sim, "status")
    rpc = CliRunner().invoke(cli, ["rpc", "puppet", "status", *sim.cli_args])
    assert plugin.exit_code == rpc.exit_code == 0, (plugin.output, rpc.output)
    assert _summaries(plugin.output) == _summaries(rpc.output)
    assert "Summary of Enabled:\n\n    enabled = 3\n   disabled = 1\n" in plugin.output
    assert "never ran = 1" in plugin.output  # not an empty label
    assert "web2  Currently stopped; last run" in plugin.output  # the failed run, marked
    documents = [as_json(orch(sim, "status", "--json")),
                 json.loads(CliRunner().invoke(
                     cli, ["rpc", "puppet", "status", "--json", *sim.cli_args]).stdout)]
    assert documents[0]["aggregates"] == documents[1]["aggregates"]
    assert {"function": "puppet_run_status", "output": "last_run_status",
            "result": {"counts": {"changed": 1, "failed": 1, "never ran": 1,
                                  "unchanged": 1}}} in documents[0]["aggregates"]


def test_filters_from_the_core_apply(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    document = as_json(orch(sim, "status", "--json", "-I", "/^web/"))
    assert sorted(r["sender"] for r in document["replies"]) == ["web1", "web2"]
    none = orch(sim, "status", "-I", "/^nothing/")
    assert none.exit_code == 1 and "no node matching the filter" in none.output


def test_count(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    result = orch(sim, "count")
    assert result.exit_code == 0
    assert "Total Puppet nodes: 4" in result.output
    assert "Nodes currently disabled: 1" in result.output
    document = as_json(orch(sim, "count", "--json"))
    assert document["enabled"] == 3 and document["by_status"] == {"disabled": 1, "stopped": 3}


def test_summary(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    result = orch(sim, "summary", "--stale", "3600")
    assert result.exit_code == 0, result.output
    assert "Puppet summary for 4 node(s)" in result.output
    assert "stale (no run for 1h or never): 2 (1 never ran)" in result.output
    assert "web2: 3" in result.output
    assert "Total run-time (s):" in result.output and "max: 9.5s" in result.output
    document = as_json(orch(sim, "summary", "--json", "--stale", "3600"))
    assert document["stale"] == ["new1", "web2"] and document["never_ran"] == ["new1"]
    assert document["failed_resources"] == {"web2": 3}
    assert document["distributions"]["total_resources"]["max"] == 25


def test_enable_disable(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    result = orch(sim, "disable", "kernel patching", "-I", "web1")
    assert result.exit_code == 0 and "Disabled the Puppet agent: kernel patching" in \
        result.output
    again = orch(sim, "disable", "-I", "web1")
    assert again.exit_code == 1 and "already disabled (kernel patching)" in again.output
    assert orch(sim, "enable", "-I", "web1").exit_code == 0


def test_runonce_and_batches(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    result = orch(sim, "runonce", "--batch", "2", "--batch-sleep", "0", "--noop", "-C",
                  "role::web", "-F", "role=web")
    assert result.exit_code == 0, result.output
    assert "batch 1: web1, web2" in result.output
    for node in ("web1", "web2"):
        wait_until(lambda n=node: argv_log(sim.root, n), 10, f"the run on {node}")
        assert "--noop" in argv_log(sim.root, node)[0]
    refused = orch(sim, "runonce", "-I", "db1")
    assert refused.exit_code == 1 and "disabled (db upgrade)" in refused.output


def test_runonce_batches_json(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    document = as_json(orch(sim, "runonce", "--json", "--batch", "1", "--batch-sleep", "0",
                            "-I", "web1", "-I", "db1"))
    assert len(document["batches"]) == 2
    assert document["started"] == ["web1"] and document["failed"] == ["db1"]


def test_runall(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    result = orch(sim, "runall", "2", "--json", "--poll-interval", "0.2")
    document = as_json(result)
    assert document["tally"]["finished"] == 3
    assert document["nodes"]["skipped_disabled"] == ["db1"]
    assert document["max_in_flight"] <= 2 and document["max_applying"] <= 2
    assert all(len(sample["applying"]) <= 2 for sample in document["timeline"])
    assert result.exit_code == 0
    text = orch(sim, "runall", "1", "--poll-interval", "0.2", "-I", "web1", "-I", "db1")
    assert "skipped_disabled db1: disabled: db upgrade" in text.output
    assert "1 finished, 1 skipped disabled" in text.output


def test_last_run_summary(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    result = orch(sim, "last_run_summary", "-I", "web2", "-I", "new1")
    assert result.exit_code == 0
    assert "25 resources, 0 changed, 3 failed" in result.output
    assert "never completed a run" in result.output


def test_resource_refused_by_default(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    result = orch(sim, "resource", "file", "/tmp/x", "ensure=file", "-I", "web1")
    assert result.exit_code == 1 and "allows no resource types" in result.output
    bad = orch(sim, "resource", "file", "/tmp/x", "ensure", "-I", "web1")
    assert bad.exit_code == 2 and "is not PROPERTY=VALUE" in bad.output


def test_runall_reports_a_node_that_disappears(sim: SimulatedFleet) -> None:
    """A node whose daemon goes away mid-run is reported lost after --lost-after, not
    waited for (its run would take 60 s)."""
    import threading

    from orch.core.fleet import Fleet
    from orch.core.plugins import default_registry

    make_node(sim.root, "stays", run_seconds=0.5)
    make_node(sim.root, "leaves", run_seconds=60)
    sim.start(["stays"])
    leaving = Fleet(sim.settings, [NodeSpec("leaves")], default_registry()).start()
    stopped = threading.Event()

    def stop_when_running() -> None:
        lock = sim.root / "leaves" / "var" / "state" / "agent_catalog_run.lock"
        wait_until(lock.exists, 30, "the run on 'leaves' to start")
        leaving.stop()
        stopped.set()

    threading.Thread(target=stop_when_running, daemon=True).start()
    result = orch(sim, "runall", "2", "--json", "--poll-interval", "0.2", "--lost-after", "2",
                  "--timeout", "1", "-I", "stays", "-I", "leaves")
    assert stopped.is_set()
    document = as_json(result)
    assert document["nodes"]["lost"] == ["leaves"] and document["nodes"]["finished"] == ["stays"]
    assert result.exit_code == 1
    lost = next(e for e in document["events"] if e["kind"] == "lost")
    assert "its run's end was never seen" in lost["message"]
    lock = sim.root / "leaves" / "var" / "state" / "agent_catalog_run.lock"
    with contextlib.suppress(OSError, ValueError):  # end the orphaned 60 s fake run
        os.kill(int(lock.read_text()), signal.SIGTERM)


# -- issue 8: failed runs, nodes without Puppet, mco habits ---------------------------------


def failed_run_fleet(sim: SimulatedFleet) -> None:
    """ok1 healthy; bad1 whose runs get no catalog and whose last run already failed."""
    now = int(time.time())
    make_node(sim.root, "ok1", summary=summary_document(now - 60, total=12), run_seconds=0.3)
    failed = summary_document(now - 30, total=0)
    failed["version"]["config"] = None
    make_node(sim.root, "bad1", summary=failed, run_seconds=0.3, fail_runs=True)
    sim.start(["ok1", "bad1"])


def test_a_failed_run_shows_in_every_text_output(sim: SimulatedFleet) -> None:
    failed_run_fleet(sim)
    status = orch(sim, "status")
    assert "bad1  Currently stopped; last run" in status.output
    assert "FAILED (no catalog)" in status.output
    assert "failed = 1" in status.output  # Summary of Last Run
    count = orch(sim, "count")
    assert "Nodes whose last run failed: 1" in count.output
    assert as_json(orch(sim, "count", "--json"))["last_run_failed"] == 1
    summary = orch(sim, "summary")
    assert "failed last runs: 1 (1 without a catalog)" in summary.output
    assert "bad1: no catalog" in summary.output
    assert as_json(orch(sim, "summary", "--json"))["failed_runs"] == {"bad1": "no catalog"}
    last = orch(sim, "last_run_summary", "-I", "bad1")
    assert "run FAILED (no catalog)" in last.output
    assert "0 resources, 0 changed, 0 failed" not in last.output


def test_runall_and_runonce_wait_exit_1_on_a_failed_run(sim: SimulatedFleet) -> None:
    failed_run_fleet(sim)
    result = orch(sim, "runall", "2", "--poll-interval", "0.2")
    assert result.exit_code == 1, result.output
    assert "1 finished, 1 run failed" in result.output
    assert "run_failed       bad1: run FAILED: no catalog" in result.output
    document = as_json(orch(sim, "runall", "1", "--json", "--poll-interval", "0.2"))
    assert document["nodes"]["run_failed"] == ["bad1"]
    waited = orch(sim, "runonce", "--wait", "-I", "bad1", "-I", "ok1")
    assert waited.exit_code == 1, waited.output
    assert "1 finished, 1 run failed" in waited.output
    good = orch(sim, "runonce", "--wait", "-I", "ok1")
    assert good.exit_code == 0 and "1 finished" in good.output


def test_a_node_without_puppet_is_flagged(sim: SimulatedFleet) -> None:
    make_node(sim.root, "ok1", summary=summary_document(int(time.time()) - 60))
    sim.settings = sim.settings.with_values({"plugins": {"puppet": {
        **sim.settings.plugin("puppet"), "puppet_bin": "/nonexistent/puppet"}}}, "test")
    sim.start(["none1"])
    status = orch(sim, "status")
    assert "none1  Puppet is not installed on this node" in status.output
    count = as_json(orch(sim, "count", "--json"))
    assert count["not_installed"] == 1 and count["total"] == 0 and count["enabled"] == 0
    refused = orch(sim, "disable", "x", "-I", "none1")
    assert refused.exit_code == 1 and "puppet is not installed" in refused.output
    assert not (sim.root / "none1").exists()
    runall = orch(sim, "runall", "1", "--poll-interval", "0.2")
    assert runall.exit_code == 1 and "puppet is not installed" in runall.output


def test_disable_message_habits(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    for args, node in ((["--message", "kernel 6.1"], "web1"),
                       (["message=kernel 6.1"], "web2"), (["-m", "kernel 6.1"], "new1")):
        result = orch(sim, "disable", *args, "-I", node)
        assert result.exit_code == 0, result.output
        lock = sim.root / node / "var" / "state" / "agent_disabled.lock"
        assert json.loads(lock.read_text()) == {"disabled_message": "kernel 6.1"}
    both = orch(sim, "disable", "a", "--message", "b", "-I", "web1")
    assert both.exit_code == 2 and "give the message once" in both.output
    bad = orch(sim, "disable", "two\nlines", "-I", "web1")
    assert bad.exit_code == 2 and "control characters" in bad.output and "^[" not in bad.output


def test_runonce_ignoreschedules_and_messages_without_patterns(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    result = orch(sim, "runonce", "--ignoreschedules", "-I", "web1")
    assert result.exit_code == 0, result.output
    wait_until(lambda: argv_log(sim.root, "web1"), 10, "the run on web1")
    assert "--ignoreschedules" in argv_log(sim.root, "web1")[0]
    for args, words in ((["--tags", "bad tag!"], "Puppet tags"),
                        (["--environment", "Prod-1"], "environment name"),
                        (["--server", "host:99999"], "port")):
        bad = orch(sim, "runonce", *args, "-I", "web2")
        assert bad.exit_code == 2 and words in bad.output, bad.output
        assert "^" not in bad.output and "$" not in bad.output


def test_resource_types_in_any_case(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    result = orch(sim, "resource", "File", "/tmp/x", "ensure=file", "-I", "web1")
    # Accepted and sent as `file`; the node's settings then refuse the type, by name.
    assert "resource type 'file' is not allowed" in result.output
    bad = orch(sim, "resource", "File[x]", "/tmp/x", "-I", "web1")
    assert bad.exit_code == 2 and "not a Puppet resource type" in bad.output
    assert "^" not in bad.output


def test_runall_rerun(sim: SimulatedFleet) -> None:
    small_fleet(sim)
    result = orch(sim, "runall", "2", "--rerun", "1", "--passes", "2", "--poll-interval",
                  "0.2", "-I", "web1")
    assert result.exit_code == 0, result.output
    assert "== pass 1 of 2" in result.output and "== pass 2 of 2" in result.output
    assert len(argv_log(sim.root, "web1")) == 2
    alone = orch(sim, "runall", "2", "--passes", "2")
    assert alone.exit_code == 2 and "--passes goes with --rerun" in alone.output


def test_puppet_commands_take_orchs_limit_option(sim: SimulatedFleet) -> None:
    """--limit/-1 are options of every orch command, plugin commands included."""
    small_fleet(sim)
    document = as_json(orch(sim, "status", "--json", "--limit", "2", "--limit-method",
                            "first"))
    assert [r["sender"] for r in document["replies"]] == ["db1", "new1"]
    assert len(as_json(orch(sim, "status", "--json", "-1"))["replies"]) == 1
